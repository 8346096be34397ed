//! Minting tokens: self-contained or opaque access tokens, id_tokens and refresh tokens.

use std::time::Duration;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::clients::Client;
use super::errors::OAuthError;
use super::model::{AccessRecord, Grant, JwtRecord, RefreshRecord};
use super::store::Space;
use super::{Issuer, random_token, storage_key};
use crate::admin::metrics::GrantKind;
use crate::config::AccessTokenKind;
use crate::token::sign::at_hash;
use crate::token::verify::unix_now;
use crate::token::{AccessClaims, Confirmation, Iso6523};

/// RFC 9068's media type for JWT access tokens.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// A successful token response (RFC 6749 §5.1), as it goes on the wire.
#[derive(Serialize)]
pub struct Issued {
    pub access_token: String,
    /// `Bearer` (RFC 6750), or `DPoP` for a token bound to a DPoP key (RFC 9449 §5).
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

impl IntoResponse for Issued {
    fn into_response(self) -> Response {
        ([(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")], axum::Json(self)).into_response()
    }
}

/// An id_token (OIDC Core §2, ID-porten's claims).
#[serde_with::skip_serializing_none]
#[derive(Serialize)]
struct IdTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    auth_time: i64,
    acr: &'static str,
    amr: [&'a str; 1],
    locale: &'a str,
    sid: &'a str,
    at_hash: String,
    jti: String,
    nonce: Option<&'a str>,
    pid: Option<&'a str>,
}

/// What a machine token says beyond the client and its scopes.
#[derive(Default)]
pub struct MachineExtras {
    pub audience: Vec<String>,
    pub pid: Option<String>,
    /// Set when a supplier asks for a consumer (`consumer_org`).
    pub consumer_orgno: Option<String>,
    /// The DPoP key (its thumbprint) the token is bound to.
    pub binding: Option<String>,
}

/// `cnf` and `token_type` for a token bound to a DPoP key, or a bearer token's.
fn bound_to(binding: Option<&str>) -> (Option<Confirmation>, &'static str) {
    match binding {
        Some(jkt) => (Some(Confirmation { jkt: Some(jkt.to_owned()), ..Confirmation::default() }), "DPoP"),
        None => (None, "Bearer"),
    }
}

/// Where a JWT access token's record is kept. Opaque handles are stored under their SHA-256
/// (base64url, no `:`), so the two cannot meet.
pub fn jwt_key(jti: &str) -> String {
    format!("jti:{jti}")
}

/// Where a revoked machine JWT's jti is kept until the token would have expired.
pub fn revoked_jwt_key(jti: &str) -> String {
    format!("revoked-jti:{jti}")
}

fn jti() -> String {
    random_token().trim_end_matches('=').to_owned()
}

impl Issuer {
    pub fn access_lifetime(&self, client: &Client, scopes: &[String]) -> u64 {
        let base = client.access_token_seconds.unwrap_or(self.lifetimes.access_token_seconds);
        self.scopes.access_token_cap(scopes).map_or(base, |cap| base.min(cap))
    }

    pub fn grant_lifetime(&self, client: &Client, scopes: &[String]) -> u64 {
        let base = client.authorization_seconds.unwrap_or(self.lifetimes.authorization_seconds);
        self.scopes.authorization_cap(scopes).map_or(base, |cap| base.min(cap))
    }

    /// Sign the claims, or keep them behind an opaque handle, as the client is registered.
    async fn access_token(
        &self,
        client: &Client,
        claims: AccessClaims,
        lifetime: u64,
        grant_id: Option<&str>,
        pid: Option<&str>,
        no_pid: bool,
    ) -> Result<String, OAuthError> {
        match client.access_token {
            AccessTokenKind::Jwt => {
                // A login's token lives as long as its grant: kept on record so that the grant's
                // end ends it. A machine token has no grant and stands on its signature (it
                // outlives a restart); revoking one puts its jti on a deny record instead.
                if let Some(grant_id) = grant_id {
                    let jti = claims.jti.as_deref().unwrap_or_default();
                    let record = JwtRecord { client_id: client.id.clone(), grant_id: Some(grant_id.to_owned()) };
                    self.state.put(Space::AccessToken, &jwt_key(jti), &record, Duration::from_secs(lifetime)).await?;
                }
                self.signing_key()
                    .sign_jwt(Some(ACCESS_TOKEN_TYP), &claims)
                    .map_err(|e| OAuthError::server_error(e.chain()))
            }
            AccessTokenKind::Opaque => {
                let handle = random_token();
                let record =
                    AccessRecord { claims, grant_id: grant_id.map(str::to_owned), no_pid, pid: pid.map(str::to_owned) };
                self.state
                    .put(Space::AccessToken, &storage_key(&handle), &record, Duration::from_secs(lifetime))
                    .await?;
                Ok(handle)
            }
        }
    }

    /// Tokens for a citizen's grant: access token, id_token (with `openid`), refresh token
    /// (confidential clients only).
    pub async fn issue_for_grant(
        &self,
        client: &Client,
        grant: &Grant,
        client_amr: &str,
        nonce: Option<&str>,
        scopes: &[String],
        binding: Option<&str>,
    ) -> Result<Issued, OAuthError> {
        let now = unix_now();
        let lifetime = self.access_lifetime(client, scopes).min((grant.expires_at - now).max(1) as u64);
        let (cnf, token_type) = bound_to(binding);
        // From the grant, not the request: a refresh asking for fewer scopes cannot drop no_pid.
        let no_pid = grant.scopes.iter().any(|s| s == "no_pid");
        let sub = self.pairwise_sub(&client.id, &grant.auth.pid);
        let claims = AccessClaims {
            iss: Some(self.id.clone()),
            client_id: Some(client.id.clone()),
            client_amr: Some(client_amr.to_owned()),
            sub: Some(sub.clone()),
            acr: Some(grant.auth.acr.name().to_owned()),
            scope: Some(scopes.join(" ")),
            aud: vec!["unspecified".to_owned()],
            token_type: Some(token_type.to_owned()),
            cnf,
            iat: Some(now),
            exp: Some(now + lifetime as i64),
            jti: Some(jti()),
            pid: (!no_pid).then(|| grant.auth.pid.clone()),
            consumer: client.orgno.as_deref().map(Iso6523::norwegian),
            client_orgno: client.orgno.clone(),
            ..AccessClaims::default()
        };
        // Their records are independent writes: sent together, one round trip to a shared store.
        let (access_token, refresh_token) = tokio::try_join!(
            self.access_token(client, claims, lifetime, Some(&grant.id), Some(&grant.auth.pid), no_pid),
            async {
                if client.is_public() { Ok(None) } else { self.issue_refresh_token(client, grant).await.map(Some) }
            },
        )?;
        let id_token = if scopes.iter().any(|s| s == "openid") {
            let id = IdTokenClaims {
                iss: &self.id,
                sub: &sub,
                aud: &client.id,
                iat: now,
                exp: now + self.lifetimes.id_token_seconds as i64,
                auth_time: grant.auth.auth_time,
                acr: grant.auth.acr.name(),
                amr: [&grant.auth.amr],
                locale: &grant.auth.locale,
                sid: &grant.sid,
                at_hash: at_hash(&access_token),
                jti: jti(),
                nonce,
                pid: (!no_pid).then_some(grant.auth.pid.as_str()),
            };
            Some(self.signing_key().sign_jwt(None, &id).map_err(|e| OAuthError::server_error(e.chain()))?)
        } else {
            None
        };
        self.metrics.issuer.issued(GrantKind::Citizen);
        Ok(Issued { access_token, token_type, expires_in: lifetime, scope: scopes.join(" "), id_token, refresh_token })
    }

    pub async fn issue_refresh_token(&self, client: &Client, grant: &Grant) -> Result<String, OAuthError> {
        let now = unix_now();
        let lifetime = client.refresh_token_seconds.unwrap_or(self.lifetimes.refresh_token_seconds) as i64;
        let expires_at = (now + lifetime).min(grant.expires_at);
        let token = random_token();
        let record = RefreshRecord { grant_id: grant.id.clone(), client_id: client.id.clone(), expires_at };
        let ttl = Duration::from_secs((expires_at - now).max(1) as u64);
        self.state.put(Space::RefreshToken, &storage_key(&token), &record, ttl).await?;
        Ok(token)
    }

    /// A Maskinporten token: no `sub`, the client's organisation as `consumer`.
    pub async fn issue_machine(
        &self,
        client: &Client,
        scopes: &[String],
        client_amr: &str,
        extras: MachineExtras,
    ) -> Result<Issued, OAuthError> {
        let now = unix_now();
        let lifetime = self.access_lifetime(client, scopes);
        let (cnf, token_type) = bound_to(extras.binding.as_deref());
        let orgno = client.orgno.clone().unwrap_or_default();
        let mut claims = AccessClaims {
            iss: Some(self.id.clone()),
            client_id: Some(client.id.clone()),
            client_amr: Some(client_amr.to_owned()),
            scope: Some(scopes.join(" ")),
            token_type: Some(token_type.to_owned()),
            cnf,
            iat: Some(now),
            exp: Some(now + lifetime as i64),
            jti: Some(jti()),
            aud: extras.audience,
            pid: extras.pid.clone(),
            ..AccessClaims::default()
        };
        match &extras.consumer_orgno {
            Some(consumer) => {
                claims.consumer = Some(Iso6523::norwegian(consumer));
                claims.supplier = Some(Iso6523::norwegian(&orgno));
                claims.delegation_source = Some(self.id.clone());
            }
            None => {
                claims.consumer = Some(Iso6523::norwegian(&orgno));
                claims.client_orgno = Some(orgno);
            }
        }
        let access_token = self.access_token(client, claims, lifetime, None, extras.pid.as_deref(), false).await?;
        self.metrics.issuer.issued(GrantKind::Machine);
        Ok(Issued {
            access_token,
            token_type,
            expires_in: lifetime,
            scope: scopes.join(" "),
            id_token: None,
            refresh_token: None,
        })
    }
}
