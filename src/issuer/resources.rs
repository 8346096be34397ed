//! `/userinfo`, `/tokeninfo` (RFC 7662) and `/revoke` (RFC 7009).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use super::clients;
use super::errors::{ErrorCode, OAuthError};
use super::model::{AccessRecord, Grant, JwtRecord, RefreshRecord};
use super::requests::{self, TokenQuery, parse_form};
use super::store::Space;
use super::tokens::{ACCESS_TOKEN_TYP, jwt_key, revoked_jwt_key};
use super::{Issuer, storage_key};
use crate::config::AuthMethod;
use crate::token::verify::{check_times, unix_now};
use crate::token::{AccessClaims, CompactJws, Reason, TokenError, VerifiedToken};
use crate::web::bearer;

/// What an access token turned out to be.
pub enum Resolved {
    Active { claims: Box<AccessClaims>, no_pid: bool, grant_id: Option<String> },
    Inactive,
}

const MAX_TOKEN_BYTES: usize = 8192;

impl Issuer {
    /// Resolve one of this issuer's access tokens: a JWT it signed, or an opaque handle whose
    /// grant is still alive.
    pub async fn resolve_access_token(&self, token: &str) -> Result<Resolved, OAuthError> {
        if token.bytes().filter(|b| *b == b'.').count() == 2 {
            // Signed by this issuer, an access token (not an id_token), and still on record: its
            // record goes when it is revoked, and its grant when the grant is.
            let Ok(claims) = self.verify_own_jwt(token) else { return Ok(Resolved::Inactive) };
            let jti = claims.jti.as_deref().unwrap_or_default();
            // A login's token (it carries the login's acr) needs its record and its grant.
            if claims.acr.is_some() {
                let Some(record) = self.state.get::<JwtRecord>(Space::AccessToken, &jwt_key(jti)).await? else {
                    return Ok(Resolved::Inactive);
                };
                if let Some(grant) = &record.grant_id
                    && self.state.get::<Grant>(Space::Grant, grant).await?.is_none()
                {
                    return Ok(Resolved::Inactive);
                }
                return Ok(Resolved::Active { claims: Box::new(claims), no_pid: false, grant_id: record.grant_id });
            }
            // A machine token stands on its signature unless it was revoked.
            if self.state.get::<JwtRecord>(Space::AccessToken, &revoked_jwt_key(jti)).await?.is_some() {
                return Ok(Resolved::Inactive);
            }
            return Ok(Resolved::Active { claims: Box::new(claims), no_pid: false, grant_id: None });
        }
        let Some(record) = self.state.get::<AccessRecord>(Space::AccessToken, &storage_key(token)).await? else {
            return Ok(Resolved::Inactive);
        };
        if let Some(grant) = &record.grant_id
            && self.state.get::<Grant>(Space::Grant, grant).await?.is_none()
        {
            return Ok(Resolved::Inactive);
        }
        if record.claims.exp.unwrap_or_default() <= unix_now() {
            return Ok(Resolved::Inactive);
        }
        Ok(Resolved::Active { claims: Box::new(record.claims), no_pid: record.no_pid, grant_id: record.grant_id })
    }

    /// Verify a JWT access token signed by this issuer and return its claims. An id_token,
    /// signed by the same key, is not one: RFC 9068's `typ` tells them apart.
    pub fn verify_own_jwt(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let jws = CompactJws::parse(token, MAX_TOKEN_BYTES)?;
        let typ = jws.header.typ.as_deref().unwrap_or_default().to_ascii_lowercase();
        if typ != ACCESS_TOKEN_TYP && typ != format!("application/{ACCESS_TOKEN_TYP}") {
            return Err(TokenError::new(
                Reason::NotAnAccessToken,
                format!("the token is not an access token (typ is not {ACCESS_TOKEN_TYP})"),
            ));
        }
        let key = self
            .own_key(jws.header.kid.as_deref(), jws.alg)
            .ok_or_else(|| TokenError::new(Reason::UnknownKey, "the token was not signed by this issuer"))?;
        jws.verify(key)?;
        let claims: AccessClaims = jws.claims()?;
        if claims.iss.as_deref() != Some(&self.id) {
            return Err(TokenError::new(Reason::UntrustedIssuer, "the token is from another issuer"));
        }
        check_times(claims.exp, claims.nbf, claims.iat, unix_now(), 0)?;
        Ok(claims)
    }

    /// An access token of this issuer as the gateway would see it (the authlevel resource).
    pub async fn verified_access_token(&self, token: &str) -> Result<VerifiedToken, OAuthError> {
        match self.resolve_access_token(token).await? {
            Resolved::Active { claims, .. } => {
                refuse_bound(&claims)?;
                VerifiedToken::from_claims(self.id.as_str().into(), *claims, unix_now(), 0)
                    .map_err(|e| OAuthError::invalid_token(e.detail.into_owned()))
            }
            Resolved::Inactive => Err(OAuthError::invalid_token(
                "the token is not active (unknown, expired, revoked or not from this issuer)",
            )),
        }
    }
}

/// The issuer's own resources take bearer tokens only: a token bound to a key (DPoP) or a
/// certificate is refused as Bearer, since no proof of its key comes with it.
fn refuse_bound(claims: &AccessClaims) -> Result<(), OAuthError> {
    match &claims.cnf {
        Some(_) => Err(OAuthError::invalid_token(
            "the token is sender-constrained (cnf): this resource takes bearer tokens only",
        )),
        None => Ok(()),
    }
}

/// RFC 7662 §2.2: an active token's answer is its claims plus these.
#[serde_with::skip_serializing_none]
#[derive(Serialize)]
struct Introspection {
    active: bool,
    #[serde(flatten)]
    claims: AccessClaims,
    expires_in: Option<i64>,
}

/// OIDC Core §5.3.2, with ID-porten's `pid`.
#[serde_with::skip_serializing_none]
#[derive(Serialize)]
struct UserInfo {
    sub: String,
    pid: Option<String>,
    locale: Option<String>,
}

/// OIDC UserInfo: `sub`, `pid` (unless `no_pid`) and `locale`, for a token with `profile`.
pub async fn userinfo(State(issuer): State<Arc<Issuer>>, headers: HeaderMap) -> Response {
    let result = async {
        let token = bearer::extract(&headers).map_err(|e| OAuthError::invalid_token(e.describe()))?;
        let (claims, grant_id) = match issuer.resolve_access_token(token).await? {
            Resolved::Active { claims, grant_id, .. } => (claims, grant_id),
            Resolved::Inactive => return Err(OAuthError::invalid_token("the access token is not active")),
        };
        refuse_bound(&claims)?;
        if !claims.scopes().iter().any(|s| s == "profile") {
            return Err(OAuthError {
                bearer_challenge: true,
                ..OAuthError::new(ErrorCode::InsufficientScope, "userinfo needs a token with the profile scope")
            });
        }
        let sub = claims.sub.ok_or_else(|| OAuthError::invalid_token("the token has no subject"))?;
        let mut answer = UserInfo { sub, pid: claims.pid, locale: None };
        if let Some(grant) = grant_id
            && let Some(grant) = issuer.state.get::<Grant>(Space::Grant, &grant).await?
        {
            answer.locale = Some(grant.auth.locale);
        }
        Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(answer)).into_response())
    };
    result.await.unwrap_or_else(|e: OAuthError| e.into_response())
}

/// RFC 7662 introspection. Callers must authenticate; a `no_pid` token's `pid` is shown only to
/// callers holding the `tokeninfo` scope.
pub async fn tokeninfo(State(issuer): State<Arc<Issuer>>, headers: HeaderMap, body: String) -> Response {
    let result = async {
        let TokenQuery { token, client } = requests::read(&parse_form(&body)?)?;
        let caller = clients::authenticate(&issuer, &headers, &client).await?;
        if caller.method == AuthMethod::None {
            return Err(OAuthError::invalid_client("introspection needs an authenticated client"));
        }
        let now = unix_now();
        let inactive = || Ok(axum::Json(json!({"active": false})).into_response());
        let mut claims = match issuer.resolve_access_token(&token).await? {
            Resolved::Active { mut claims, no_pid, grant_id } => {
                if no_pid
                    && caller.client.has_scope("tokeninfo")
                    && let Some(grant) = grant_id
                    && let Some(grant) = issuer.state.get::<Grant>(Space::Grant, &grant).await?
                {
                    claims.pid = Some(grant.auth.pid);
                }
                claims
            }
            // Refresh tokens, id_tokens and anything unknown, expired or revoked: RFC 7662 says
            // no more than that (an id_token or refresh token is not an access token).
            Resolved::Inactive => return inactive(),
        };
        claims.token_type.get_or_insert_with(|| "Bearer".to_owned());
        let answer =
            Introspection { active: true, expires_in: claims.exp.map(|exp| (exp - now).max(0)), claims: *claims };
        Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(answer)).into_response())
    };
    result.await.unwrap_or_else(|e: OAuthError| e.into_response())
}

/// RFC 7009: the token dies, and so does the grant behind it (all its refresh tokens and all
/// its access tokens, JWT or opaque) and, as in ID-porten, the SSO session it came from.
/// Unknown tokens, and other clients' tokens, get 200 and are left alone.
pub async fn revoke(State(issuer): State<Arc<Issuer>>, headers: HeaderMap, body: String) -> Response {
    let result = async {
        let TokenQuery { token, client } = requests::read(&parse_form(&body)?)?;
        let caller = clients::authenticate(&issuer, &headers, &client).await?;
        let key = storage_key(&token);
        let client = caller.client.id.as_str();
        // What the token is, and whose: a refresh token, an opaque access token, or a JWT access
        // token of this issuer (found by its jti). Another client's token is left alone.
        let (grant_id, record_key) = if let Some(record) =
            issuer.state.get::<RefreshRecord>(Space::RefreshToken, &key).await?.filter(|r| r.client_id == client)
        {
            (Some(record.grant_id), None)
        } else if let Some(record) = issuer.state.get::<AccessRecord>(Space::AccessToken, &key).await?
            && record.claims.client_id.as_deref() == Some(client)
        {
            (record.grant_id, Some(key.clone()))
        } else if let Ok(claims) = issuer.verify_own_jwt(&token)
            && let Some(jti) = claims.jti.as_deref()
        {
            match issuer.state.get::<JwtRecord>(Space::AccessToken, &jwt_key(jti)).await? {
                Some(record) if record.client_id == client => (record.grant_id, Some(jwt_key(jti))),
                Some(_) => (None, None),
                // A machine token of the caller's own: denied by its jti until it would expire.
                None if claims.client_id.as_deref() == Some(client) => {
                    let left = claims.exp.unwrap_or_default() - unix_now();
                    let record = JwtRecord { client_id: client.to_owned(), grant_id: None };
                    let ttl = std::time::Duration::from_secs(left.max(1) as u64);
                    issuer.state.put(Space::AccessToken, &revoked_jwt_key(jti), &record, ttl).await?;
                    tracing::info!(client = %client, "machine token revoked");
                    (None, None)
                }
                None => (None, None),
            }
        } else {
            (None, None)
        };
        if let Some(record_key) = &record_key {
            issuer.state.delete(Space::AccessToken, record_key).await?;
        }
        if let Some(grant_id) = grant_id
            && let Some(grant) = issuer.state.get::<Grant>(Space::Grant, &grant_id).await?
            && grant.client_id == client
        {
            // Every token of the grant dies with it: refresh tokens, opaque and JWT access tokens.
            issuer.revoke_grant(&grant.id).await?;
            if let Some(session) = issuer.state.get(Space::Session, &grant.session_key).await? {
                super::session::end(&issuer, &grant.session_key, &session).await?;
            }
            tracing::info!(client = %client, "grant revoked");
        } else if record_key.is_some() {
            tracing::info!(client = %client, "access token revoked");
        }
        Ok(([(header::CACHE_CONTROL, "no-store")], "").into_response())
    };
    result.await.unwrap_or_else(|e: OAuthError| e.into_response())
}
