//! Sender-constrained tokens at the edge: a token bound to a DPoP key (`cnf.jkt`) is taken only
//! as `Authorization: DPoP` with a fresh proof from that key for this very request (RFC 9449
//! §7), and one bound to a client certificate (`cnf.x5t#S256`) only over TLS with that
//! certificate (RFC 8705 §3); a DPoP-bound token sent as Bearer, an unbound one sent as DPoP, a
//! bearer token on a route that takes bound tokens only, and a binding of another kind are
//! refused.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pingora::protocols::http::ServerSession;
use subtle::ConstantTimeEq;

use super::GatewayState;
use super::error::GatewayError;
use super::routes::Route;
use crate::replay::{FirstUse, ReplayGuard};
use crate::token::VerifiedToken;
use crate::token::dpop::{self, DpopError, Expected, Nonces};
use crate::token::verify::unix_now;
use crate::web::bearer::Scheme;

/// How old (or, by clock skew, how far ahead) a proof's `iat` may be.
const PROOF_WINDOW: Duration = Duration::from_secs(60);
/// A server nonce holds for this long (and the next period).
const NONCE_PERIOD: Duration = Duration::from_secs(300);
/// Proofs remembered against replay, each while its `iat` could still pass (two windows, and
/// slack for the whole seconds of `iat`). A guard this full refuses new proofs (503).
const MAX_REMEMBERED: usize = 1_000_000;
const REMEMBERED_FOR: Duration = Duration::from_secs(2 * 60 + 5);

/// What the gateway keeps for DPoP across requests (and reloads): its nonce key and the proofs seen.
pub struct DpopGuard {
    nonces: Nonces,
    seen: ReplayGuard,
}

impl DpopGuard {
    pub fn new() -> crate::error::Result<DpopGuard> {
        Ok(DpopGuard { nonces: Nonces::new(NONCE_PERIOD)?, seen: ReplayGuard::new(REMEMBERED_FOR, MAX_REMEMBERED) })
    }

    /// Check how `token` was presented against what it is bound to, and the route's demand.
    pub fn check(
        &self,
        session: &ServerSession,
        state: &GatewayState,
        route: &Route,
        path: &str,
        (scheme, token): (Scheme, &str),
        verified: &VerifiedToken,
    ) -> Result<(), GatewayError> {
        if verified.unchecked_binding {
            return Err(GatewayError::SenderConstraint(
                "the token is bound (cnf) in a way this gateway does not check: only DPoP keys (jkt) and client \
                 certificates (x5t#S256) are taken"
                    .into(),
            ));
        }
        if let Some(x5t) = &verified.x5t_s256 {
            // RFC 8705 §3: the certificate of this TLS connection must be the one bound.
            let presented = session
                .digest()
                .and_then(|d| d.ssl_digest.as_ref())
                .filter(|ssl| !ssl.cert_digest.is_empty())
                .map(|ssl| URL_SAFE_NO_PAD.encode(&ssl.cert_digest));
            match presented {
                Some(presented) if bool::from(presented.as_bytes().ct_eq(x5t.as_bytes())) => {
                    // A certificate-bound token is sender-constrained on its own; DPoP may add to it.
                    if verified.jkt.is_none() {
                        return match scheme {
                            Scheme::Bearer => Ok(()),
                            Scheme::Dpop => Err(GatewayError::SenderConstraint(
                                "the token is not DPoP-bound: send it as Bearer".into(),
                            )),
                        };
                    }
                }
                Some(_) => {
                    return Err(GatewayError::SenderConstraint(
                        "the token is bound to another client certificate than this connection's".into(),
                    ));
                }
                None => {
                    return Err(GatewayError::SenderConstraint(
                        "the token is bound to a client certificate: send it over TLS with that certificate".into(),
                    ));
                }
            }
        }
        let jkt = match (scheme, &verified.jkt) {
            (Scheme::Bearer, Some(_)) => {
                return Err(GatewayError::SenderConstraint(
                    "the token is DPoP-bound: send it as Authorization: DPoP with a DPoP proof".into(),
                ));
            }
            (Scheme::Bearer, None) if route.sender_constrained => {
                return Err(GatewayError::SenderConstraint(
                    "this route takes sender-constrained tokens only: get a DPoP-bound or certificate-bound token"
                        .into(),
                ));
            }
            (Scheme::Bearer, None) => return Ok(()),
            (Scheme::Dpop, None) => {
                return Err(GatewayError::SenderConstraint("the token is not DPoP-bound: send it as Bearer".into()));
            }
            (Scheme::Dpop, Some(jkt)) => jkt,
        };
        let header = session.req_header();
        let proof = dpop::proof_header(&header.headers)
            .map_err(GatewayError::Dpop)?
            .ok_or_else(|| invalid("send exactly one DPoP header with a proof"))?;
        let uri = request_uri(session, state, path)?;
        let expected = Expected {
            method: header.method.as_str(),
            uri: &uri,
            access_token: Some(token),
            now: unix_now(),
            window: PROOF_WINDOW,
            nonces: route.dpop_nonce.then_some(&self.nonces),
        };
        let proof = dpop::check(proof, &expected).map_err(GatewayError::Dpop)?;
        // The key is checked before the proof is remembered: someone else's proof uses up nothing.
        if proof.jkt != *jkt {
            return Err(invalid("the proof is signed with another key than the one the token is bound to"));
        }
        match self.seen.first_use(proof.replay_key) {
            FirstUse::Yes => Ok(()),
            FirstUse::No => Err(invalid("the proof was used before: a DPoP proof is taken once")),
            FirstUse::Full => Err(GatewayError::Unavailable {
                description: "more DPoP proofs arrive than the gateway can remember: retry shortly".into(),
                retry_after: 1,
            }),
        }
    }
}

fn invalid(reason: &'static str) -> GatewayError {
    GatewayError::Dpop(DpopError::Invalid(reason.into()))
}

/// The URI the client addressed: its `Host` (which must be a plain `host[:port]`) and the path
/// the gateway routed on; `https` only when a trusted proxy says it terminated TLS.
fn request_uri(session: &ServerSession, state: &GatewayState, path: &str) -> Result<String, GatewayError> {
    let header = session.req_header();
    let host = header.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let plain = !host.is_empty()
        && host.len() <= 255
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']'));
    if !plain {
        return Err(invalid("a DPoP request needs a Host header of the form host[:port] to match the proof's htu"));
    }
    let peer = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
    let trusted = peer.is_some_and(|ip| state.trusts_proxy(ip));
    let https =
        trusted && header.headers.get("x-forwarded-proto").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let scheme = if https { "https" } else { "http" };
    Ok(format!("{scheme}://{host}{path}"))
}
