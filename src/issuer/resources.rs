//! `/userinfo`, `/tokeninfo` (RFC 7662) and `/revoke` (RFC 7009).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::clients;
use super::errors::{ErrorCode, OAuthError};
use super::model::{AccessRecord, Grant, RefreshRecord};
use super::store::Space;
use super::token_endpoint::parse_form;
use super::{Issuer, storage_key};
use crate::config::AuthMethod;
use crate::token::verify::{check_times, unix_now};
use crate::token::{CompactJws, VerifiedToken};
use crate::web::bearer;

/// What an access token turned out to be.
pub enum Resolved {
    Active { claims: Value, no_pid: bool, grant_id: Option<String> },
    Inactive,
}

const MAX_TOKEN_BYTES: usize = 8192;

impl Issuer {
    /// Resolve one of this issuer's access tokens: a JWT it signed, or an opaque handle whose
    /// grant is still alive.
    pub async fn resolve_access_token(&self, token: &str) -> Result<Resolved, OAuthError> {
        if token.bytes().filter(|b| *b == b'.').count() == 2 {
            return Ok(match self.verify_own_jwt(token) {
                Ok(claims) => Resolved::Active { claims, no_pid: false, grant_id: None },
                Err(_) => Resolved::Inactive,
            });
        }
        let Some(record) = self.state.get::<AccessRecord>(Space::AccessToken, &storage_key(token)).await? else {
            return Ok(Resolved::Inactive);
        };
        if let Some(grant) = &record.grant_id
            && self.state.get::<Grant>(Space::Grant, grant).await?.is_none()
        {
            return Ok(Resolved::Inactive);
        }
        let exp = record.claims.get("exp").and_then(Value::as_i64).unwrap_or_default();
        if exp <= unix_now() {
            return Ok(Resolved::Inactive);
        }
        Ok(Resolved::Active { claims: record.claims, no_pid: record.no_pid, grant_id: record.grant_id })
    }

    /// Verify a JWT access token signed by this issuer and return its claims.
    pub fn verify_own_jwt(&self, token: &str) -> Result<Value, String> {
        let jws = CompactJws::parse(token, MAX_TOKEN_BYTES).map_err(|e| e.to_string())?;
        let key = self.own_key(jws.header.kid.as_deref(), jws.alg).ok_or("the token was not signed by this issuer")?;
        jws.verify(key).map_err(|e| e.to_string())?;
        let claims: Value = jws.claims().map_err(|e| e.to_string())?;
        if claims.get("iss").and_then(Value::as_str) != Some(&self.id) {
            return Err("the token is from another issuer".into());
        }
        let date = |name: &str| claims.get(name).and_then(Value::as_i64);
        check_times(date("exp"), date("nbf"), date("iat"), unix_now(), 0).map_err(|e| e.to_string())?;
        Ok(claims)
    }

    /// An access token of this issuer as the gateway would see it (the authlevel resource).
    pub async fn verified_access_token(&self, token: &str) -> Result<VerifiedToken, OAuthError> {
        match self.resolve_access_token(token).await? {
            Resolved::Active { claims, .. } => {
                let claims = serde_json::from_value(claims)
                    .map_err(|e| OAuthError::invalid_token(format!("the token's claims are not valid: {e}")))?;
                VerifiedToken::from_claims(self.id.as_str().into(), claims, unix_now(), 0)
                    .map_err(|e| OAuthError::invalid_token(e.detail.into_owned()))
            }
            Resolved::Inactive => Err(OAuthError::invalid_token(
                "the token is not active (unknown, expired, revoked or not from this issuer)",
            )),
        }
    }
}

fn scopes_of(claims: &Value) -> Vec<&str> {
    claims.get("scope").and_then(Value::as_str).map(|s| s.split(' ').collect()).unwrap_or_default()
}

/// OIDC UserInfo: `sub`, `pid` (unless `no_pid`) and `locale`, for a token with `profile`.
pub async fn userinfo(State(issuer): State<Arc<Issuer>>, headers: HeaderMap) -> Response {
    let result = async {
        let token = bearer::extract(&headers).map_err(|e| OAuthError::invalid_token(e.describe()))?;
        let (claims, grant_id) = match issuer.resolve_access_token(token).await? {
            Resolved::Active { claims, grant_id, .. } => (claims, grant_id),
            Resolved::Inactive => return Err(OAuthError::invalid_token("the access token is not active")),
        };
        let scopes = scopes_of(&claims);
        if !scopes.contains(&"profile") {
            return Err(OAuthError {
                bearer_challenge: true,
                ..OAuthError::new(ErrorCode::InsufficientScope, "userinfo needs a token with the profile scope")
            });
        }
        let sub = claims.get("sub").cloned().ok_or_else(|| OAuthError::invalid_token("the token has no subject"))?;
        let mut answer = json!({"sub": sub});
        if let Some(pid) = claims.get("pid") {
            answer["pid"] = pid.clone();
        }
        if let Some(grant) = grant_id
            && let Some(grant) = issuer.state.get::<Grant>(Space::Grant, &grant).await?
        {
            answer["locale"] = json!(grant.auth.locale);
        }
        Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(answer)).into_response())
    };
    result.await.unwrap_or_else(|e: OAuthError| e.into_response())
}

/// RFC 7662 introspection. Callers must authenticate; a `no_pid` token's `pid` is shown only to
/// callers holding the `tokeninfo` scope.
pub async fn tokeninfo(State(issuer): State<Arc<Issuer>>, headers: HeaderMap, body: String) -> Response {
    let result = async {
        let form = parse_form(&body)?;
        let caller = clients::authenticate(&issuer, &headers, &form).await?;
        if caller.method == AuthMethod::None {
            return Err(OAuthError::invalid_client("introspection needs an authenticated client"));
        }
        let token = form
            .get("token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
        let now = unix_now();
        let inactive = || Ok(axum::Json(json!({"active": false})).into_response());
        let mut answer = match issuer.resolve_access_token(token).await? {
            Resolved::Active { claims, no_pid, grant_id } => {
                let mut answer = claims;
                if no_pid
                    && caller.client.has_scope("tokeninfo")
                    && let Some(grant) = grant_id
                    && let Some(grant) = issuer.state.get::<Grant>(Space::Grant, &grant).await?
                {
                    answer["pid"] = json!(grant.auth.pid);
                }
                answer
            }
            Resolved::Inactive => {
                match issuer.state.get::<RefreshRecord>(Space::RefreshToken, &storage_key(token)).await? {
                    Some(record) if !record.used && record.expires_at > now => {
                        match issuer.state.get::<Grant>(Space::Grant, &record.grant_id).await? {
                            Some(grant) => json!({
                                "iss": issuer.id,
                                "client_id": record.client_id,
                                "scope": grant.scopes.join(" "),
                                "exp": record.expires_at,
                                "token_type": "refresh_token",
                                "sub": issuer.pairwise_sub(&record.client_id, &grant.auth.pid),
                            }),
                            None => return inactive(),
                        }
                    }
                    _ => return inactive(),
                }
            }
        };
        answer["active"] = json!(true);
        if answer.get("token_type").is_none() {
            answer["token_type"] = json!("Bearer");
        }
        if let Some(exp) = answer.get("exp").and_then(Value::as_i64) {
            answer["expires_in"] = json!((exp - now).max(0));
        }
        Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(answer)).into_response())
    };
    result.await.unwrap_or_else(|e: OAuthError| e.into_response())
}

/// RFC 7009: the grant behind the token dies (all its tokens) and, as in ID-porten, the SSO
/// session it came from ends. Unknown tokens, and self-contained ones, still get 200.
pub async fn revoke(State(issuer): State<Arc<Issuer>>, headers: HeaderMap, body: String) -> Response {
    let result = async {
        let form = parse_form(&body)?;
        let caller = clients::authenticate(&issuer, &headers, &form).await?;
        let token = form
            .get("token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
        let key = storage_key(token);
        let grant_id = match issuer.state.get::<RefreshRecord>(Space::RefreshToken, &key).await? {
            Some(record) if record.client_id == caller.client.id => Some(record.grant_id),
            _ => match issuer.state.get::<AccessRecord>(Space::AccessToken, &key).await? {
                Some(record) => record.grant_id,
                None => None,
            },
        };
        if let Some(grant_id) = grant_id
            && let Some(grant) = issuer.state.get::<Grant>(Space::Grant, &grant_id).await?
            && grant.client_id == caller.client.id
        {
            issuer.revoke_grant(&grant.id).await?;
            issuer.state.delete(Space::AccessToken, &key).await?;
            if let Some(session) = issuer.state.get(Space::Session, &grant.session_key).await? {
                super::session::end(&issuer, &grant.session_key, &session).await?;
            }
            tracing::info!(client = %caller.client.id, "grant revoked");
        }
        Ok(([(header::CACHE_CONTROL, "no-store")], "").into_response())
    };
    result.await.unwrap_or_else(|e: OAuthError| e.into_response())
}
