//! A verified access token: what the gateway (and the issuer's own resources) decide on.

use std::sync::Arc;

use super::acr::Acr;
use super::claims::AccessClaims;
use super::verify::{Reason, TokenError, check_times};

/// The claims of an access token whose signature (or introspection answer) and times were
/// checked. Route policy (scopes, acr, audience, token kind) is decided on this.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub issuer: Arc<str>,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    /// The citizen's fødselsnummer/d-nummer; `None` for machine and `no_pid` tokens.
    pub pid: Option<String>,
    pub consumer_orgno: Option<String>,
    pub scopes: Vec<String>,
    /// The `acr` claim as sent (forwarded verbatim) and its level when it names one.
    pub acr: Option<String>,
    pub level: Option<Acr>,
    pub audiences: Vec<String>,
    pub expires_at: i64,
    /// The DPoP key the token is bound to (`cnf.jkt`): it is taken only with a proof from it.
    pub jkt: Option<String>,
    /// The client certificate the token is bound to (`cnf.x5t#S256`, RFC 8705 §3): it is taken
    /// only over TLS with that certificate.
    pub x5t_s256: Option<String>,
    /// A binding of a kind this gateway does not check (`cnf` without `jkt` or `x5t#S256`):
    /// such a token is refused, never taken as a bearer token.
    pub unchecked_binding: bool,
}

impl VerifiedToken {
    /// Check the times of `claims` (issued by `issuer`) and keep what policy needs.
    pub fn from_claims(
        issuer: Arc<str>,
        claims: AccessClaims,
        now: i64,
        leeway: i64,
    ) -> Result<VerifiedToken, TokenError> {
        check_times(claims.exp, claims.nbf, claims.iat, now, leeway)?;
        let scopes = claims.scopes();
        if claims.pid.as_deref().is_some_and(str::is_empty) {
            return Err(TokenError::new(Reason::Malformed, "the token's pid is empty"));
        }
        Ok(VerifiedToken {
            issuer,
            level: claims.acr.as_deref().and_then(Acr::parse),
            consumer_orgno: claims.consumer.as_ref().and_then(|c| c.orgno()).map(str::to_owned),
            subject: claims.sub,
            client_id: claims.client_id,
            pid: claims.pid,
            scopes,
            acr: claims.acr,
            audiences: claims.aud,
            expires_at: claims.exp.unwrap_or_default(),
            jkt: claims.cnf.as_ref().and_then(|c| c.jkt.clone()),
            x5t_s256: claims.cnf.as_ref().and_then(|c| c.x5t_s256.clone()),
            unchecked_binding: claims.cnf.as_ref().is_some_and(|c| c.jkt.is_none() && c.x5t_s256.is_none()),
        })
    }

    /// A citizen's token names the citizen (`pid`) and the login behind it (`acr`). A
    /// Maskinporten token restricted to an end user carries `pid` but no login: it is not one.
    pub fn is_citizen(&self) -> bool {
        self.pid.is_some() && self.acr.is_some()
    }

    /// A machine token has no citizen behind it: no login (`acr`) and no `pid`.
    pub fn is_machine(&self) -> bool {
        self.pid.is_none() && self.acr.is_none()
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Whose quota a request counts against: the client, or the citizen for a client-less token.
    pub fn rate_key(&self) -> &str {
        self.client_id.as_deref().or(self.pid.as_deref()).or(self.subject.as_deref()).unwrap_or("")
    }
}
