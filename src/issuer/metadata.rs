//! Discovery (`/.well-known/openid-configuration`, RFC 8414 metadata) and the JWKS at `/jwk`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Issuer;
use super::requests::GRANT_TYPES;
use crate::oauth::JWT_BEARER_GRANT;

const CACHE_AN_HOUR: &str = "public, max-age=3600";

pub async fn openid_configuration(State(issuer): State<Arc<Issuer>>) -> Response {
    let mut scopes: Vec<&str> = vec!["openid", "profile", "no_pid"];
    let mut registered: Vec<&str> = issuer.scopes.names().collect();
    registered.sort_unstable();
    scopes.extend(registered);
    let body = json!({
        "issuer": issuer.id,
        "authorization_endpoint": issuer.endpoint("/authorize"),
        "pushed_authorization_request_endpoint": issuer.endpoint("/par"),
        "token_endpoint": issuer.endpoint("/token"),
        "end_session_endpoint": issuer.endpoint("/endsession"),
        "revocation_endpoint": issuer.endpoint("/revoke"),
        "jwks_uri": issuer.endpoint("/jwk"),
        "userinfo_endpoint": issuer.endpoint("/userinfo"),
        "introspection_endpoint": issuer.endpoint("/tokeninfo"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post", "fragment"],
        "grant_types_supported": GRANT_TYPES,
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": [issuer.signing_key().alg.name()],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": scopes,
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "pid", "sid", "locale", "at_hash"],
        "ui_locales_supported": ["nb", "nn", "en", "se"],
        "acr_values_supported": ["Level3", "Level4"],
        "prompt_values_supported": ["login"],
        "frontchannel_logout_supported": true,
        "frontchannel_logout_session_supported": true,
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "RS384", "RS512"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "request_parameter_supported": false,
        "request_uri_parameter_supported": true,
        "require_pushed_authorization_requests": false,
        "authorization_response_iss_parameter_supported": true,
        "dpop_signing_alg_values_supported": crate::token::dpop::alg_names(),
    });
    ([(header::CACHE_CONTROL, CACHE_AN_HOUR)], axum::Json(body)).into_response()
}

/// RFC 8414 metadata as Maskinporten publishes it (the machine-to-machine view).
pub async fn authorization_server(State(issuer): State<Arc<Issuer>>) -> Response {
    let body = json!({
        "issuer": issuer.id,
        "jwks_uri": issuer.endpoint("/jwk"),
        "token_endpoint": issuer.endpoint("/token"),
        "grant_types_supported": [JWT_BEARER_GRANT],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "RS384", "RS512"],
        "dpop_signing_alg_values_supported": crate::token::dpop::alg_names(),
    });
    ([(header::CACHE_CONTROL, CACHE_AN_HOUR)], axum::Json(body)).into_response()
}

pub async fn jwk(State(issuer): State<Arc<Issuer>>) -> Response {
    (
        [(header::CACHE_CONTROL, "public, max-age=300"), (header::CONTENT_TYPE, "application/jwk-set+json")],
        issuer.jwks().to_string(),
    )
        .into_response()
}
