//! `/token`: the authorization-code, refresh-token, client-credentials and JWT-bearer grants.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

use super::assertion::{self, Purpose};
use super::clients::{self, Authenticated, Client};
use super::errors::{ErrorCode, Mp, OAuthError};
use super::model::{CodeRecord, Grant, RefreshRecord, Session};
use super::requests::{ClientAuthentication, GrantRequest, TokenRequest, parse_form};
use super::scopes::{ScopeRefusal, parse_scope};
use super::store::Space;
use super::tokens::{Issued, MachineExtras};
use super::{Issuer, random_token, storage_key};
use crate::config::{AuthMethod, IntegrationType};
use crate::token::verify::unix_now;

pub async fn token(State(issuer): State<Arc<Issuer>>, headers: HeaderMap, body: String) -> Response {
    let result = async {
        let TokenRequest { grant, client } = TokenRequest::read(&parse_form(&body)?)?;
        let binding = dpop_binding(&issuer, &headers).await?;
        let binding = binding.as_deref();
        match grant {
            GrantRequest::AuthorizationCode { code, redirect_uri, code_verifier } => {
                let redeem = Redeem { code, redirect_uri, code_verifier };
                authorization_code(&issuer, &headers, &client, redeem, binding).await
            }
            GrantRequest::RefreshToken { refresh_token: token, scope } => {
                refresh_token(&issuer, &headers, &client, &token, scope.as_deref(), binding).await
            }
            GrantRequest::ClientCredentials { scope, resource } => {
                client_credentials(&issuer, &headers, &client, &scope, resource, binding).await
            }
            GrantRequest::JwtBearer { assertion } => jwt_bearer(&issuer, &assertion, binding).await,
        }
    };
    match result.await {
        Ok(issued) => issued.into_response(),
        Err(error) => {
            tracing::info!(error = %error, "token request refused");
            error.into_response()
        }
    }
}

/// How old (or, by clock skew, how far ahead) a DPoP proof's `iat` may be.
const DPOP_PROOF_WINDOW: Duration = Duration::from_secs(60);

/// A `DPoP` proof with the request (RFC 9449 §5): the thumbprint of the key the tokens are then
/// bound to. Each proof is taken once, across instances when the state is shared.
async fn dpop_binding(issuer: &Issuer, headers: &HeaderMap) -> Result<Option<String>, OAuthError> {
    use crate::token::dpop::{self, DpopError, Expected};
    let Some(proof) = dpop::proof_header(headers).map_err(OAuthError::dpop)? else { return Ok(None) };
    let uri = issuer.endpoint("/token");
    let expected = Expected {
        method: "POST",
        uri: &uri,
        access_token: None,
        now: unix_now(),
        window: DPOP_PROOF_WINDOW,
        nonces: issuer.dpop_nonces.as_ref(),
    };
    let proof = dpop::check(proof, &expected).map_err(OAuthError::dpop)?;
    let key = URL_SAFE_NO_PAD.encode(proof.replay_key);
    // Remembered while its iat could pass (two windows), with slack for whole seconds.
    let remembered = DPOP_PROOF_WINDOW * 2 + Duration::from_secs(5);
    if !issuer.state.insert_new(Space::DpopProof, &key, &(), remembered).await? {
        return Err(OAuthError::dpop(DpopError::Invalid(
            "the proof was used before: a DPoP proof is taken once".into(),
        )));
    }
    Ok(Some(proof.jkt))
}

/// Where a refresh token's first use is marked (its record stays, so that reuse is recognised).
fn used_refresh_key(key: &str) -> String {
    format!("used:{key}")
}

/// RFC 7636: `BASE64URL(SHA256(code_verifier)) == code_challenge`.
fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let hash = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()));
    bool::from(hash.as_bytes().ct_eq(challenge.as_bytes()))
}

fn valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len()) && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// What an authorization-code grant presents.
struct Redeem {
    code: String,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
}

async fn authorization_code(
    issuer: &Issuer,
    headers: &HeaderMap,
    authentication: &ClientAuthentication,
    redeem: Redeem,
    binding: Option<&str>,
) -> Result<Issued, OAuthError> {
    let Authenticated { client, amr, .. } = clients::authenticate(issuer, headers, authentication).await?;
    let key = storage_key(&redeem.code);
    let unknown = || OAuthError::invalid_grant("the authorization code is unknown or expired");
    // Another client's code is refused untouched: presenting it must not burn or revoke it.
    let peeked: CodeRecord = issuer.state.get(Space::AuthorizationCode, &key).await?.ok_or_else(unknown)?;
    if peeked.request.client_id != client.id {
        return Err(OAuthError::invalid_grant("the authorization code was issued to another client"));
    }
    // Taken, so two redemptions racing cannot both pass; put back marked as redeemed.
    let record: CodeRecord = issuer.state.take(Space::AuthorizationCode, &key).await?.ok_or_else(unknown)?;
    let now = unix_now();
    if let Some(grant) = &record.redeemed_grant {
        issuer.revoke_grant(grant).await?;
        return Err(OAuthError::invalid_grant(
            "the authorization code was already used; the tokens issued for it are revoked",
        ));
    }
    if now > record.expires_at {
        return Err(OAuthError::invalid_grant("the authorization code has expired"));
    }
    if redeem.redirect_uri.as_deref() != Some(record.request.redirect_uri.as_str()) {
        return Err(OAuthError::invalid_grant("redirect_uri differs from the authorization request's"));
    }
    match (&record.request.code_challenge, &redeem.code_verifier) {
        (Some(challenge), Some(verifier)) => {
            if !valid_verifier(verifier) {
                return Err(OAuthError::invalid_request("code_verifier must be 43 to 128 unreserved characters"));
            }
            if !pkce_matches(verifier, challenge) {
                return Err(OAuthError::invalid_grant("code_verifier does not match the code_challenge"));
            }
        }
        (Some(_), None) => return Err(OAuthError::invalid_grant("code_verifier is required (PKCE)")),
        (None, Some(_)) => {
            return Err(OAuthError::invalid_grant("code_verifier sent, but the authorization had no code_challenge"));
        }
        (None, None) => {}
    }
    let scopes = record.granted_scopes.clone();
    let grant = Grant {
        id: random_token(),
        client_id: client.id.clone(),
        scopes: scopes.clone(),
        auth: record.auth.clone(),
        session_key: record.session_key.clone(),
        sid: record.sid.clone(),
        expires_at: now + issuer.grant_lifetime(client, &scopes) as i64,
        dpop_jkt: binding.map(str::to_owned),
    };
    let mut redeemed = record.clone();
    redeemed.redeemed_grant = Some(grant.id.clone());
    let keep = Duration::from_secs(issuer.lifetimes.access_token_seconds.max(60));
    let join_session = async {
        if let Some(mut session) = issuer.state.get::<Session>(Space::Session, &record.session_key).await? {
            session.grants.push(grant.id.clone());
            super::session::save(issuer, &record.session_key, &session).await?;
        }
        Ok::<(), OAuthError>(())
    };
    // The grant exists before the marker that names it: a second redemption that finds the
    // marker then always has a grant to revoke.
    issuer.save_grant(&grant).await?;
    tokio::try_join!(
        async { Ok::<(), OAuthError>(issuer.state.put(Space::AuthorizationCode, &key, &redeemed, keep).await?) },
        join_session,
    )?;
    issuer.issue_for_grant(client, &grant, amr, record.request.nonce.as_deref(), &scopes, binding).await
}

async fn refresh_token(
    issuer: &Issuer,
    headers: &HeaderMap,
    authentication: &ClientAuthentication,
    token: &str,
    scope: Option<&str>,
    binding: Option<&str>,
) -> Result<Issued, OAuthError> {
    let (client, amr) = confidential_client(issuer, headers, authentication, "refresh_token").await?;
    let key = storage_key(token);
    let unknown = || OAuthError::invalid_grant("the refresh token is unknown or expired");
    let record: RefreshRecord = issuer.state.get(Space::RefreshToken, &key).await?.ok_or_else(unknown)?;
    if record.client_id != client.id {
        return Err(OAuthError::invalid_grant("the refresh token was issued to another client"));
    }
    let grant: Grant = issuer
        .state
        .get(Space::Grant, &record.grant_id)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("the grant behind this refresh token is revoked or expired"))?;
    // Checked before the token is used up, so the client can retry with a proof.
    // A grant whose tokens were DPoP-bound does not fall back to bearer tokens on refresh. (The
    // client is confidential, so the refresh token is bound to its authentication and the key
    // may change, RFC 9449 §5.)
    if grant.dpop_jkt.is_some() && binding.is_none() {
        return Err(OAuthError::dpop(crate::token::dpop::DpopError::Invalid(
            "this grant's tokens are DPoP-bound: refresh with a DPoP proof".into(),
        )));
    }
    // The first use marks it, in one atomic step that every issuer instance sees: of two
    // requests racing with one token, exactly one passes (its grant already read, so it gets
    // its tokens), and the other is reuse, which revokes the grant and so those tokens too.
    let remaining = Duration::from_secs((record.expires_at - unix_now()).max(1) as u64);
    if !issuer.state.insert_new(Space::RefreshToken, &used_refresh_key(&key), &(), remaining).await? {
        // Reuse means the token leaked (or the client lost track): the whole grant dies.
        tracing::warn!(client = %client.id, "a refresh token was reused; its grant is being revoked");
        issuer.revoke_grant(&record.grant_id).await?;
        return Err(OAuthError::invalid_grant("the refresh token was already used; the grant is revoked"));
    }
    let scopes = match scope {
        Some(scope) => {
            let asked = parse_scope(scope).map_err(OAuthError::invalid_scope)?;
            if let Some(extra) = asked.iter().find(|s| !grant.scopes.contains(s)) {
                return Err(OAuthError::invalid_scope(format!("scope {extra:?} was not part of the grant")));
            }
            asked
        }
        None => grant.scopes.clone(),
    };
    issuer.issue_for_grant(client, &grant, amr, None, &scopes, binding).await
}

fn scope_error(refusal: ScopeRefusal, issuer: &Issuer) -> OAuthError {
    let mp = match refusal {
        ScopeRefusal::Unknown(_) => Mp::Mp200,
        ScopeRefusal::WrongIntegrationType(_) => Mp::Mp201,
        ScopeRefusal::NotGranted(_) => Mp::Mp250,
    };
    let description = match mp {
        Mp::Mp200 => format!("Token request contains invalid scopes for client: {}", refusal.describe()),
        Mp::Mp201 => format!("Token request contains scopes not allowed for maskinporten: {}", refusal.describe()),
        _ => format!("Invalid scope: {}", refusal.describe()),
    };
    OAuthError::mp(mp, description, &issuer.error_uri_base)
}

/// The grants a public client (no secret, no key) may not use.
async fn confidential_client<'a>(
    issuer: &'a Issuer,
    headers: &HeaderMap,
    authentication: &ClientAuthentication,
    grant: &str,
) -> Result<(&'a Client, &'static str), OAuthError> {
    let Authenticated { client, amr, method } = clients::authenticate(issuer, headers, authentication).await?;
    if method == AuthMethod::None {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            format!("a public client cannot use the {grant} grant"),
        ));
    }
    Ok((client, amr))
}

/// Machine tokens are for machine clients only: a citizen-facing client (`api_klient`) must
/// not mint tokens that name a citizen (`pid`) without that citizen's login.
fn machine_client(client: &Client, grant: &str) -> Result<(), OAuthError> {
    match client.integration_type {
        IntegrationType::Maskinporten | IntegrationType::Krr => Ok(()),
        other => Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            format!("client {} ({}) may not use the {grant} grant", client.id, other.name()),
        )),
    }
}

async fn client_credentials(
    issuer: &Issuer,
    headers: &HeaderMap,
    authentication: &ClientAuthentication,
    scope: &str,
    resource: Option<String>,
    binding: Option<&str>,
) -> Result<Issued, OAuthError> {
    let (client, amr) = confidential_client(issuer, headers, authentication, "client_credentials").await?;
    machine_client(client, "client_credentials")?;
    let scopes = parse_scope(scope).map_err(OAuthError::invalid_scope)?;
    issuer.scopes.check(&scopes, client.integration_type, &client.scopes).map_err(|r| scope_error(r, issuer))?;
    let audience = resource.into_iter().collect();
    let extras = MachineExtras { audience, binding: binding.map(str::to_owned), ..MachineExtras::default() };
    issuer.issue_machine(client, &scopes, amr, extras).await
}

/// Maskinporten's grant: steps 1–9 in `assertion`, then scopes (10) and delegation (11).
async fn jwt_bearer(issuer: &Issuer, assertion: &str, binding: Option<&str>) -> Result<Issued, OAuthError> {
    let verified = assertion::verify(issuer, assertion, Purpose::Grant).await.map_err(|e| match (e.store, e.mp) {
        (Some(store), _) => OAuthError::from(store),
        (None, Some(mp)) => OAuthError::mp(mp, e.description, &issuer.error_uri_base),
        (None, None) => OAuthError::invalid_grant(e.description),
    })?;
    let client = verified.client;
    machine_client(client, "JWT-bearer")?;
    let claims = verified.claims;
    let scope = claims.scope.as_deref().unwrap_or_default();
    let scopes = parse_scope(scope).map_err(|e| {
        OAuthError::mp(Mp::Mp011, format!("Invalid assertion. Invalid parameter value: {e}"), &issuer.error_uri_base)
    })?;
    if scopes.is_empty() {
        return Err(OAuthError::mp(
            Mp::Mp200,
            "Token request contains invalid scopes for client: no scope",
            &issuer.error_uri_base,
        ));
    }
    let mut extras = MachineExtras { audience: claims.resource.clone(), ..MachineExtras::default() };
    if let Some(pid) = &claims.pid {
        if !crate::personid::is_valid(pid) {
            return Err(OAuthError::mp(
                Mp::Mp011,
                "Invalid assertion. Invalid parameter value: pid",
                &issuer.error_uri_base,
            ));
        }
        extras.pid = Some(pid.clone());
    }
    match (&claims.consumer_org, &claims.iss_onbehalfof) {
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_request("consumer_org and iss_onbehalfof cannot be combined"));
        }
        (None, Some(_)) => return Err(OAuthError::invalid_request("iss_onbehalfof is not registered for this client")),
        (Some(consumer), None) => {
            let allowed = issuer.delegations.iter().any(|d| {
                d.consumer_orgno == *consumer
                    && d.supplier_clients.contains(&client.id)
                    && scopes.iter().all(|s| d.scopes.contains(s))
            });
            if !allowed {
                return Err(OAuthError::invalid_request(
                    "Validation of JWT claim failed: The combination consumer_org in claim and delegation scope on client is invalid",
                ));
            }
            extras.consumer_orgno = Some(consumer.clone());
            // A delegated scope need not be the supplier's own; its integration type still counts.
            issuer.scopes.check(&scopes, client.integration_type, &scopes).map_err(|r| scope_error(r, issuer))?;
        }
        (None, None) => {
            issuer
                .scopes
                .check(&scopes, client.integration_type, &client.scopes)
                .map_err(|r| scope_error(r, issuer))?;
        }
    }
    extras.binding = binding.map(str::to_owned);
    issuer.issue_machine(client, &scopes, verified.amr, extras).await
}

impl Issuer {
    pub async fn save_grant(&self, grant: &Grant) -> Result<(), OAuthError> {
        let ttl = Duration::from_secs((grant.expires_at - unix_now()).max(1) as u64);
        Ok(self.state.put(Space::Grant, &grant.id, grant, ttl).await?)
    }

    /// Revoke a grant: its refresh tokens and opaque access tokens stop working at once.
    pub async fn revoke_grant(&self, grant_id: &str) -> Result<(), OAuthError> {
        Ok(self.state.delete(Space::Grant, grant_id).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_follows_rfc_7636_appendix_b() {
        assert!(pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(valid_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"));
        assert!(!valid_verifier("short"));
        assert!(!valid_verifier(&"a".repeat(129)));
    }
}
