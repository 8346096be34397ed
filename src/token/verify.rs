//! Compact JWS parsing, signature verification and the time checks every token gets.
//!
//! The gateway (access tokens) and the issuer (client assertions, `id_token_hint`s) share this
//! code; what each does with the claims afterwards lives with them.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::alg::Alg;
use super::jwk::VerifyingKey;

/// Why a token was refused. The label is the metric's `reason`; the detail goes to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    Missing,
    Malformed,
    TooLarge,
    AlgRefused,
    UntrustedIssuer,
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    MissingClaim,
    Inactive,
    /// A JWT that is not an access token (an id_token, say): wrong or missing `typ`.
    NotAnAccessToken,
    /// No keys (or no introspection answer) could be had for the issuer: a 503, not a 401.
    IssuerUnavailable,
    /// A client made the gateway introspect more unknown tokens a second than it may: a 429.
    TooManyIntrospections,
    /// The token's binding (DPoP, certificate) and how it was presented disagree.
    SenderConstraint,
    /// The DPoP proof is missing, wrong, replayed or without the nonce asked for.
    DpopProof,
}

impl Reason {
    pub fn label(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Malformed => "malformed",
            Reason::TooLarge => "too_large",
            Reason::AlgRefused => "alg_refused",
            Reason::UntrustedIssuer => "untrusted_issuer",
            Reason::UnknownKey => "unknown_key",
            Reason::BadSignature => "bad_signature",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::IssuedInFuture => "issued_in_future",
            Reason::MissingClaim => "missing_claim",
            Reason::Inactive => "inactive",
            Reason::NotAnAccessToken => "not_an_access_token",
            Reason::IssuerUnavailable => "issuer_unavailable",
            Reason::TooManyIntrospections => "too_many_introspections",
            Reason::SenderConstraint => "sender_constraint",
            Reason::DpopProof => "dpop_proof",
        }
    }

    pub const ALL: [Reason; 17] = [
        Reason::Missing,
        Reason::Malformed,
        Reason::TooLarge,
        Reason::AlgRefused,
        Reason::UntrustedIssuer,
        Reason::UnknownKey,
        Reason::BadSignature,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::IssuedInFuture,
        Reason::MissingClaim,
        Reason::Inactive,
        Reason::NotAnAccessToken,
        Reason::IssuerUnavailable,
        Reason::TooManyIntrospections,
        Reason::SenderConstraint,
        Reason::DpopProof,
    ];
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct TokenError {
    pub reason: Reason,
    pub detail: Cow<'static, str>,
}

impl TokenError {
    pub fn new(reason: Reason, detail: impl Into<Cow<'static, str>>) -> TokenError {
        TokenError { reason, detail: detail.into() }
    }
}

/// The JOSE header fields Portvakt reads. `jku`/`x5u` are ignored on purpose: keys never come
/// from a URL the token names.
#[derive(Debug, Deserialize)]
pub struct JoseHeader {
    pub alg: String,
    pub kid: Option<String>,
    pub typ: Option<String>,
    pub crit: Option<Vec<String>>,
    /// Kept raw: the JWT-bearer grant must tell an array (right) from a string (MP-123).
    pub x5c: Option<serde_json::Value>,
    /// A DPoP proof's own public key (RFC 9449 §4.2); never used for any other token.
    pub jwk: Option<serde_json::Value>,
}

/// A compact JWS split and decoded, not yet verified.
pub struct CompactJws<'a> {
    pub header: JoseHeader,
    pub alg: Alg,
    signing_input: &'a [u8],
    payload: Vec<u8>,
    signature: Vec<u8>,
}

impl std::fmt::Debug for CompactJws<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompactJws").field("header", &self.header).finish_non_exhaustive()
    }
}

fn decode_part(part: &str, what: &'static str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::new(Reason::Malformed, format!("the token's {what} is not base64url")))
}

impl<'a> CompactJws<'a> {
    /// Split `header.payload.signature`, decode each part and read the header. Refuses tokens
    /// longer than `max_len`, `alg: none`, HMAC algorithms and any `crit` extension.
    pub fn parse(token: &'a str, max_len: usize) -> Result<CompactJws<'a>, TokenError> {
        if token.len() > max_len {
            return Err(TokenError::new(
                Reason::TooLarge,
                format!("the token is {} bytes, more than the {max_len} accepted", token.len()),
            ));
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::new(Reason::Malformed, "the token is not a JWT (header.payload.signature)"));
        };
        let header_json = decode_part(header_b64, "header")?;
        let header: JoseHeader = serde_json::from_slice(&header_json)
            .map_err(|e| TokenError::new(Reason::Malformed, format!("the token header is not valid: {e}")))?;
        let alg =
            Alg::parse(&header.alg).map_err(|refusal| TokenError::new(Reason::AlgRefused, refusal.to_string()))?;
        if let Some(crit) = &header.crit {
            return Err(TokenError::new(
                Reason::Malformed,
                format!("critical header extensions are not supported: {:?}", crit),
            ));
        }
        let signature = decode_part(signature_b64, "signature")?;
        if signature.is_empty() {
            return Err(TokenError::new(Reason::BadSignature, "the token has no signature"));
        }
        let payload = decode_part(payload_b64, "payload")?;
        let signing_input = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
        Ok(CompactJws { header, alg, signing_input, payload, signature })
    }

    /// The claims, deserialised. Reading them is not trusting them: verify first.
    pub fn claims<T: DeserializeOwned>(&self) -> Result<T, TokenError> {
        serde_json::from_slice(&self.payload)
            .map_err(|e| TokenError::new(Reason::Malformed, format!("the token's claims are not valid: {e}")))
    }

    pub fn verify(&self, key: &VerifyingKey) -> Result<(), TokenError> {
        let parsed = key.for_alg(self.alg).ok_or_else(|| {
            TokenError::new(
                Reason::AlgRefused,
                format!("key {} is not for alg {}", key.kid().unwrap_or("(no kid)"), self.alg),
            )
        })?;
        parsed
            .verify_sig(self.signing_input, &self.signature)
            .map_err(|_| TokenError::new(Reason::BadSignature, "the token's signature is not valid"))
    }
}

/// The time checks of RFC 7519 with a leeway: `exp` is required, `nbf` and `iat` are checked
/// when present (`iat` only for lying in the future).
pub fn check_times(
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    now: i64,
    leeway: i64,
) -> Result<(), TokenError> {
    let exp = exp.ok_or_else(|| TokenError::new(Reason::MissingClaim, "the token has no exp"))?;
    if now - leeway >= exp {
        return Err(TokenError::new(Reason::Expired, format!("the token expired at {exp}")));
    }
    if let Some(nbf) = nbf
        && now + leeway < nbf
    {
        return Err(TokenError::new(Reason::NotYetValid, format!("the token is not valid before {nbf}")));
    }
    if let Some(iat) = iat
        && now + leeway < iat
    {
        return Err(TokenError::new(Reason::IssuedInFuture, format!("the token is issued in the future ({iat})")));
    }
    Ok(())
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
