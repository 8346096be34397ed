//! `/endsession`: RP-initiated logout with `id_token_hint`, a registered
//! `post_logout_redirect_uri` and `state`, and front-channel logout of the session's other clients.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::Issuer;
use subtle::ConstantTimeEq;

use super::pages::{confirm_logout, error_page, logged_out};
use super::session::{self, SSO_COOKIE};
use crate::token::{CompactJws, Reason, TokenError};

pub async fn endsession(State(issuer): State<Arc<Issuer>>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    logout(&issuer, &headers, query.as_deref().unwrap_or_default()).await
}

pub async fn endsession_post(State(issuer): State<Arc<Issuer>>, headers: HeaderMap, body: String) -> Response {
    logout(&issuer, &headers, &body).await
}

/// Claims of an `id_token_hint`: signed by this issuer; an expired one still names its session.
fn hint_claims(issuer: &Issuer, hint: &str) -> Result<Value, TokenError> {
    let jws = CompactJws::parse(hint, 8192)?;
    let key = issuer
        .own_key(jws.header.kid.as_deref(), jws.alg)
        .ok_or_else(|| TokenError::new(Reason::UnknownKey, "it was not signed by this issuer"))?;
    jws.verify(key)?;
    let claims: Value = jws.claims()?;
    if claims.get("iss").and_then(Value::as_str) != Some(&issuer.id) {
        return Err(TokenError::new(Reason::UntrustedIssuer, "it is from another issuer"));
    }
    Ok(claims)
}

/// The state store failed: a 503 page that says when to retry, naming nothing of the store.
fn unavailable(error: super::store::StoreError) -> Response {
    let error = super::errors::OAuthError::from(error);
    super::errors::with_retry_after(error_page(StatusCode::SERVICE_UNAVAILABLE, &error.description), error.retry_after)
}

async fn logout(issuer: &Issuer, headers: &HeaderMap, text: &str) -> Response {
    let params = match crate::oauth::params::parse(text, None) {
        Ok(params) => params,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &format!("The request is not valid: {e}.")),
    };
    let hint = match params.get("id_token_hint") {
        Some(hint) => match hint_claims(issuer, hint) {
            Ok(claims) => Some(claims),
            Err(e) => return error_page(StatusCode::BAD_REQUEST, &format!("The id_token_hint is not valid: {e}.")),
        },
        None => None,
    };
    let hinted_client = hint.as_ref().and_then(|c| c.get("aud")).and_then(|aud| match aud {
        Value::String(s) => Some(s.clone()),
        Value::Array(a) => a.first().and_then(Value::as_str).map(str::to_owned),
        _ => None,
    });
    let continue_to = match params.get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => {
            let registered = hinted_client
                .as_deref()
                .and_then(|id| issuer.clients.get(id))
                .is_some_and(|client| client.post_logout_redirect_uris.iter().any(|r| r == uri));
            if !registered {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "The post_logout_redirect_uri is not registered for the client named by id_token_hint.",
                );
            }
            let mut target = url::Url::parse(uri).ok();
            if let (Some(url), Some(state)) = (target.as_mut(), params.get("state")) {
                url.query_pairs_mut().append_pair("state", state);
            }
            target.map(|u| u.to_string())
        }
    };
    let current = match session::current(issuer, headers).await {
        Ok(current) => current,
        Err(e) => return unavailable(e),
    };
    // With a hint, the session it names ends (the browser's own only if it is that one). Without
    // one, a cross-site GET must not be able to log the citizen out: ask first (a CSRF-bound form).
    let found = match hint.as_ref() {
        Some(claims) => match claims.get("sid").and_then(Value::as_str) {
            Some(sid) => match current {
                Some((key, session)) if session.sid == sid => Some((key, session)),
                // A store that cannot answer must not be taken for "no such session": the
                // client would be told the citizen is logged out while the session lives on.
                _ => match session::by_sid(issuer, sid).await {
                    Ok(found) => found,
                    Err(e) => return unavailable(e),
                },
            },
            None => None,
        },
        None => match current {
            None => None,
            Some((key, session)) => {
                let expected = issuer.logout_confirmation(&key);
                let given = params.get("confirm").map(String::as_bytes).unwrap_or_default();
                if !bool::from(given.ct_eq(expected.as_bytes())) {
                    return confirm_logout(&expected);
                }
                Some((key, session))
            }
        },
    };
    let own_session = found.as_ref().is_some_and(|(key, _)| {
        session::read_cookie(headers, SSO_COOKIE).is_some_and(|secret| crate::issuer::storage_key(&secret) == *key)
    });
    let mut frontchannel = Vec::new();
    if let Some((key, ended)) = found {
        for client_id in ended.clients.iter().filter(|c| Some(c.as_str()) != hinted_client.as_deref()) {
            let Some(client) = issuer.clients.get(client_id) else { continue };
            let Some(uri) = &client.frontchannel_logout_uri else { continue };
            let mut uri = uri.clone();
            if client.frontchannel_logout_session_required {
                uri.query_pairs_mut().append_pair("iss", &issuer.id).append_pair("sid", &ended.sid);
            }
            frontchannel.push(uri.to_string());
        }
        if let Err(e) = session::end(issuer, &key, &ended).await {
            return unavailable(e);
        }
        tracing::info!(sid = %ended.sid, clients = ended.clients.len(), "session ended");
    }
    let mut response = match (&continue_to, frontchannel.is_empty()) {
        (Some(target), true) => {
            let mut response = StatusCode::SEE_OTHER.into_response();
            if let Ok(value) = HeaderValue::from_str(target) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        _ => logged_out(&frontchannel, continue_to.as_deref()),
    };
    if own_session {
        response.headers_mut().append(header::SET_COOKIE, session::clear_cookie(issuer, SSO_COOKIE));
    }
    response
}
