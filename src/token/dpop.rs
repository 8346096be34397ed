//! DPoP (RFC 9449): proofs of possession of a key, checked at the token endpoint (which binds
//! the tokens it issues to the key, `cnf.jkt`) and at the gateway (which takes a bound token only
//! with a fresh proof from that key). Built on the crate's own JWS verification, with the RFC's
//! examples as test vectors.

use std::borrow::Cow;
use std::time::Duration;

use aws_lc_rs::{digest, hmac};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::Value;

use super::alg::Alg;
use super::jwk::VerifyingKey;
use super::verify::CompactJws;

/// Proof algorithms accepted (and advertised as `dpop_signing_alg_values_supported`).
pub const ALGS: [Alg; 6] = [Alg::ES256, Alg::ES384, Alg::RS256, Alg::PS256, Alg::PS384, Alg::EdDSA];
/// The names of `ALGS`, as `dpop_signing_alg_values_supported` and a challenge's `algs` list them.
pub fn alg_names() -> Vec<&'static str> {
    ALGS.iter().map(|a| a.name()).collect()
}

/// A proof longer than this is refused unread (an RSA-4096 `jwk` fits easily).
pub const MAX_PROOF_BYTES: usize = 8 * 1024;
const MAX_JTI_BYTES: usize = 256;

/// Why a proof is refused: `invalid_dpop_proof`, or `use_dpop_nonce` with the nonce to use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    #[error("{0}")]
    Invalid(Cow<'static, str>),
    #[error("a DPoP nonce is required: retry with the nonce in the DPoP-Nonce header")]
    UseNonce(String),
}

impl DpopError {
    fn invalid(reason: impl Into<Cow<'static, str>>) -> DpopError {
        DpopError::Invalid(reason.into())
    }

    /// The OAuth error code (RFC 9449 §12.2).
    pub fn code(&self) -> &'static str {
        match self {
            DpopError::Invalid(_) => "invalid_dpop_proof",
            DpopError::UseNonce(_) => "use_dpop_nonce",
        }
    }

    /// The nonce to send in `DPoP-Nonce`, when the refusal asks for one.
    pub fn nonce(&self) -> Option<&str> {
        match self {
            DpopError::UseNonce(nonce) => Some(nonce),
            DpopError::Invalid(_) => None,
        }
    }
}

/// What a proof must match: the request it came with.
pub struct Expected<'a> {
    pub method: &'a str,
    /// The request's URI (scheme, authority and path; a query is ignored).
    pub uri: &'a str,
    /// At a resource: the access token the proof goes with (`ath`).
    pub access_token: Option<&'a str>,
    pub now: i64,
    /// How old (and, for clock skew, how far ahead) a proof's `iat` may be.
    pub window: Duration,
    /// When nonces are on: the nonces to accept and to hand out.
    pub nonces: Option<&'a Nonces>,
}

/// A proof that holds: the key's thumbprint and what identifies the proof against replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// RFC 7638 SHA-256 thumbprint of the proof's key, base64url: what `cnf.jkt` names.
    pub jkt: String,
    /// SHA-256 of the `jti` and the `htu`: a replay cache's key.
    pub replay_key: [u8; 32],
}

#[derive(Deserialize)]
struct Claims {
    jti: Option<String>,
    htm: Option<String>,
    htu: Option<String>,
    iat: Option<serde_json::Number>,
    ath: Option<String>,
    nonce: Option<String>,
}

/// The request's `DPoP` header: none, or exactly one that is text; two are refused.
pub fn proof_header(headers: &http::HeaderMap) -> Result<Option<&str>, DpopError> {
    let mut values = headers.get_all("dpop").iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => value.to_str().map(Some).map_err(|_| DpopError::invalid("the DPoP header is not a JWT")),
        (Some(_), Some(_)) => Err(DpopError::invalid("send exactly one DPoP header with a proof")),
    }
}

/// Check a `DPoP` header value against the request. The caller checks the replay key (once per
/// proof) and, at a resource, that `jkt` is the token's `cnf.jkt`.
pub fn check(proof: &str, expected: &Expected<'_>) -> Result<Proof, DpopError> {
    let jws = CompactJws::parse(proof, MAX_PROOF_BYTES).map_err(|e| DpopError::invalid(e.detail))?;
    if jws.header.typ.as_deref() != Some("dpop+jwt") {
        return Err(DpopError::invalid("a DPoP proof's typ must be dpop+jwt"));
    }
    if !ALGS.contains(&jws.alg) {
        return Err(DpopError::invalid(format!("alg {} is not accepted for DPoP proofs", jws.alg)));
    }
    let jwk = jws.header.jwk.as_ref().ok_or_else(|| DpopError::invalid("a DPoP proof carries its key as jwk"))?;
    let jkt = thumbprint(jwk)?;
    let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone())
        .map_err(|e| DpopError::invalid(format!("the proof's jwk is not a valid JWK: {e}")))?;
    let key = VerifyingKey::from_jwk(&parsed, &[jws.alg])
        .map_err(|e| DpopError::invalid(format!("the proof's jwk is refused: {e}")))?
        .ok_or_else(|| DpopError::invalid(format!("the proof's jwk is not a public key for {}", jws.alg)))?;
    jws.verify(&key).map_err(|_| DpopError::invalid("the proof's signature is not valid"))?;
    let claims: Claims = jws.claims().map_err(|e| DpopError::invalid(e.detail))?;

    let jti = claims.jti.filter(|j| !j.is_empty()).ok_or_else(|| DpopError::invalid("the proof has no jti"))?;
    if jti.len() > MAX_JTI_BYTES {
        return Err(DpopError::invalid("the proof's jti is too long"));
    }
    let htm = claims.htm.ok_or_else(|| DpopError::invalid("the proof has no htm"))?;
    if htm != expected.method {
        return Err(DpopError::invalid(format!("the proof is for {htm}, not {}", expected.method)));
    }
    let htu = claims.htu.ok_or_else(|| DpopError::invalid("the proof has no htu"))?;
    if normal_uri(&htu) != normal_uri(expected.uri) || normal_uri(&htu).is_none() {
        return Err(DpopError::invalid("the proof's htu is not this request's URI"));
    }
    let iat = claims.iat.and_then(|n| n.as_i64()).ok_or_else(|| DpopError::invalid("the proof has no iat"))?;
    let window = expected.window.as_secs() as i64;
    if iat > expected.now + window || iat < expected.now - window {
        return Err(DpopError::invalid(format!("the proof's iat is outside ±{window} s of now")));
    }
    match (expected.access_token, claims.ath.as_deref()) {
        (Some(token), Some(ath))
            if ath == URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, token.as_bytes())) => {}
        (Some(_), Some(_)) => return Err(DpopError::invalid("the proof's ath is not the hash of this access token")),
        (Some(_), None) => return Err(DpopError::invalid("the proof has no ath (the hash of the access token)")),
        (None, _) => {}
    }
    if let Some(nonces) = expected.nonces
        && !claims.nonce.as_deref().is_some_and(|n| nonces.accepts(n, expected.now))
    {
        return Err(DpopError::UseNonce(nonces.current(expected.now)));
    }
    let mut hashed = digest::Context::new(&digest::SHA256);
    hashed.update(jti.as_bytes());
    hashed.update(&[0]);
    hashed.update(htu.as_bytes());
    let mut replay_key = [0u8; 32];
    replay_key.copy_from_slice(hashed.finish().as_ref());
    Ok(Proof { jkt, replay_key })
}

/// The RFC 7638 thumbprint of the proof's JWK; one with private members is refused.
pub fn thumbprint(jwk: &Value) -> Result<String, DpopError> {
    let object = jwk.as_object().ok_or_else(|| DpopError::invalid("the proof's jwk is not a JSON object"))?;
    if ["d", "p", "q", "dp", "dq", "qi", "oth", "k"].iter().any(|member| object.contains_key(*member)) {
        return Err(DpopError::invalid("the proof's jwk holds private key material"));
    }
    super::jwk::thumbprint(jwk)
        .ok_or_else(|| DpopError::invalid("the proof's jwk is not a complete RSA, EC or OKP key"))
}

/// RFC 9449 §4.3: `htu` is compared without query and fragment, after RFC 3986's syntax- and
/// scheme-based normalization (case of scheme and host, default port, dot segments,
/// percent-encoding case).
fn normal_uri(uri: &str) -> Option<String> {
    let parsed = url::Url::parse(uri).ok()?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return None;
    }
    let host = parsed.host_str()?;
    let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
    Some(format!("{}://{host}{port}{}", parsed.scheme(), parsed.path()))
}

/// Server nonces (`DPoP-Nonce`) without state: an HMAC of the time window, so any nonce this
/// process handed out in the current or the previous window is accepted.
pub struct Nonces {
    key: hmac::Key,
    period: i64,
}

impl Nonces {
    /// A random key per process: a nonce from one instance is not taken by another.
    pub fn new(period: Duration) -> crate::error::Result<Nonces> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &aws_lc_rs::rand::SystemRandom::new())
            .map_err(|_| crate::error::Error::new("no random key for DPoP nonces could be made"))?;
        Ok(Nonces { key, period: period.as_secs().max(1) as i64 })
    }

    fn for_window(&self, window: i64) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, &window.to_be_bytes()))
    }

    /// The nonce to hand out now.
    pub fn current(&self, now: i64) -> String {
        self.for_window(now.div_euclid(self.period))
    }

    pub fn accepts(&self, nonce: &str, now: i64) -> bool {
        let window = now.div_euclid(self.period);
        [window, window - 1].iter().any(|w| {
            let expected = self.for_window(*w);
            subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), nonce.as_bytes()).into()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// RFC 7638 §3.1's example key and thumbprint.
    #[test]
    fn the_rfc_7638_thumbprint_example() {
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(thumbprint(&jwk).unwrap(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    /// RFC 9449 §4.1's example proof (ES256), its key's thumbprint from §6.1, and §7.1's `ath`.
    const RFC_PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";

    fn expected(method: &'static str, uri: &'static str, now: i64) -> Expected<'static> {
        Expected { method, uri, access_token: None, now, window: Duration::from_secs(60), nonces: None }
    }

    #[test]
    fn the_rfc_9449_example_proof_holds_and_names_its_key() {
        let proof = check(RFC_PROOF, &expected("POST", "https://server.example.com/token", 1_562_262_616)).unwrap();
        assert_eq!(proof.jkt, "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
        // The same proof for another method, another URI, or long after: refused.
        for (method, uri, now, words) in [
            ("GET", "https://server.example.com/token", 1_562_262_616, "is for POST"),
            ("POST", "https://server.example.com/other", 1_562_262_616, "htu"),
            ("POST", "https://server.example.com/token", 1_562_262_616 + 3600, "iat"),
        ] {
            match check(RFC_PROOF, &expected(method, uri, now)) {
                Err(DpopError::Invalid(reason)) => assert!(reason.contains(words), "{reason}"),
                other => panic!("{method} {uri}: {other:?}"),
            }
        }
        // htu is compared as RFC 9449 §4.3 says: query ignored, host case and default port normalized.
        for uri in ["https://SERVER.example.com/token?x=1", "https://server.example.com:443/token"] {
            assert!(check(RFC_PROOF, &expected("POST", uri, 1_562_262_616)).is_ok(), "{uri}");
        }
        // A proof for a resource must carry the token's hash.
        let with_token = Expected {
            access_token: Some("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            ..expected("POST", "https://server.example.com/token", 1_562_262_616)
        };
        assert!(matches!(check(RFC_PROOF, &with_token), Err(DpopError::Invalid(r)) if r.contains("no ath")));
    }

    #[test]
    fn an_altered_proof_or_a_private_key_in_it_is_refused() {
        let mut parts: Vec<String> = RFC_PROOF.split('.').map(str::to_owned).collect();
        let claims = URL_SAFE_NO_PAD.decode(&parts[1]).unwrap();
        let changed = String::from_utf8(claims).unwrap().replace("POST", "PUT ");
        parts[1] = URL_SAFE_NO_PAD.encode(changed);
        let altered = parts.join(".");
        assert!(
            matches!(check(&altered, &expected("PUT ", "https://server.example.com/token", 1_562_262_616)), Err(DpopError::Invalid(r)) if r.contains("signature"))
        );
        let private = json!({"kty": "EC", "crv": "P-256", "x": "a", "y": "b", "d": "secret"});
        assert!(thumbprint(&private).is_err());
    }

    #[test]
    fn nonces_hold_for_their_window_and_the_next() {
        let nonces = Nonces::new(Duration::from_secs(300)).unwrap();
        let nonce = nonces.current(1_000_000);
        assert!(nonces.accepts(&nonce, 1_000_000 + 299));
        assert!(!nonces.accepts(&nonce, 1_000_000 + 900));
        assert!(!nonces.accepts("made-up", 1_000_000));
        let needs_nonce =
            Expected { nonces: Some(&nonces), ..expected("POST", "https://server.example.com/token", 1_562_262_616) };
        assert!(matches!(check(RFC_PROOF, &needs_nonce), Err(DpopError::UseNonce(_))));
    }
}
