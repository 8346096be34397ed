//! JWTs a client signs itself: the JWT-bearer grant (Maskinporten) and `private_key_jwt`
//! client assertions. Checked in Maskinporten's order; the first failure wins (domain §3).

use std::time::Duration;

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::Issuer;
use super::clients::{CLIENT_JWT_ALGS, Client};
use super::errors::Mp;
use super::store::{Space, StoreError};
use crate::pki::ChainError;
use crate::telemetry::excerpt;
use crate::token::claims::{numeric_date, string_or_list};
use crate::token::verify::unix_now;
use crate::token::{CompactJws, VerifyingKey};

/// `iat` must be this close to the server's clock, and `exp − iat` at most `MAX_LIFETIME`.
pub const IAT_SKEW: i64 = 10;
pub const MAX_LIFETIME: i64 = 120;
pub(crate) const MAX_ASSERTION_BYTES: usize = 32 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`: `aud` is exactly the issuer.
    Grant,
    /// `client_assertion`: `aud` is the issuer or the token endpoint, and `sub` = `iss`.
    ClientAuthentication,
}

#[derive(Debug, Default, Deserialize)]
pub struct AssertionClaims {
    pub iss: Option<String>,
    pub sub: Option<String>,
    #[serde(default, deserialize_with = "string_or_list")]
    pub aud: Vec<String>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub exp: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub iat: Option<i64>,
    pub jti: Option<String>,
    pub scope: Option<String>,
    #[serde(default, deserialize_with = "string_or_list")]
    pub resource: Vec<String>,
    pub pid: Option<String>,
    pub consumer_org: Option<String>,
    pub iss_onbehalfof: Option<String>,
}

pub struct Verified<'a> {
    pub client: &'a Client,
    pub claims: AssertionClaims,
    /// `virksomhetssertifikat` (x5c) or `private_key_jwt` (a registered key).
    pub amr: &'static str,
}

#[derive(Debug)]
pub struct AssertionError {
    /// `None` for failures the catalogue has no code for.
    pub mp: Option<Mp>,
    pub description: String,
    /// The state store refused (full) or failed: not the client's fault, answered 503.
    pub store: Option<StoreError>,
}

fn fail(mp: Mp, description: impl Into<String>) -> AssertionError {
    AssertionError { mp: Some(mp), description: description.into(), store: None }
}

pub async fn verify<'a>(issuer: &'a Issuer, token: &str, purpose: Purpose) -> Result<Verified<'a>, AssertionError> {
    let now = unix_now();
    // (1) Parse.
    let jws = CompactJws::parse(token, MAX_ASSERTION_BYTES)
        .map_err(|e| fail(Mp::Mp011, format!("Invalid assertion. Invalid parameter value: {e}")))?;
    let claims: AssertionClaims =
        jws.claims().map_err(|e| fail(Mp::Mp011, format!("Invalid assertion. Invalid parameter value: {e}")))?;
    // (2) The client, from iss.
    let client_id = claims
        .iss
        .as_deref()
        .ok_or_else(|| fail(Mp::Mp100, "Invalid assertion. Client authentication failed. The JWT has no iss."))?;
    let client = issuer.clients.get(client_id).ok_or_else(|| {
        fail(
            Mp::Mp100,
            format!("Invalid assertion. Client authentication failed. Unknown client {:?}.", excerpt(client_id, 64)),
        )
    })?;
    if purpose == Purpose::ClientAuthentication && claims.sub.as_deref() != Some(client_id) {
        return Err(fail(Mp::Mp100, "Invalid assertion. Client authentication failed. sub must equal iss."));
    }
    if !CLIENT_JWT_ALGS.contains(&jws.alg) {
        return Err(fail(
            Mp::Mp124,
            format!("Invalid JWT signature: alg {} is not accepted (RS256, RS384, RS512)", jws.alg),
        ));
    }
    // (3–6) The key: a certificate chain (x5c) or a registered key (kid), then the signature.
    let (key, amr) = match (&jws.header.x5c, &jws.header.kid) {
        (Some(_), Some(_)) => {
            return Err(fail(Mp::Mp011, "Invalid assertion. The header must carry x5c or kid, not both."));
        }
        (None, None) => return Err(fail(Mp::Mp011, "Invalid assertion. The header carries neither x5c nor kid.")),
        (None, Some(kid)) => {
            if !client.may_use_kid() {
                return Err(fail(
                    Mp::Mp100,
                    "Invalid assertion. Client authentication failed. The client has no registered keys: use x5c.",
                ));
            }
            let key = client.keys.find(Some(kid), jws.alg).ok_or_else(|| {
                fail(
                    Mp::Mp100,
                    format!(
                        "Invalid assertion. Client authentication failed. No key registered under kid {:?}.",
                        excerpt(kid, 64)
                    ),
                )
            })?;
            (key.clone(), "private_key_jwt")
        }
        (Some(x5c), None) => {
            if !client.may_use_x5c() {
                return Err(AssertionError {
                    mp: None,
                    description:
                        "Invalid JWT. The client requires pre-registered jwk and no key identifier (kid) provided"
                            .into(),
                    store: None,
                });
            }
            let leaf = issuer.trust.verify(x5c, now).map_err(|e| match e {
                ChainError::Malformed(why) => fail(Mp::Mp123, format!("Invalid JWT header x5c: {why}")),
                ChainError::Untrusted(why) => fail(Mp::Mp120, format!("Invalid assertion. Client authentication failed. The JWT is signed with an invalid certificate: {why}")),
                ChainError::Expired(why) => fail(Mp::Mp121, format!("Invalid assertion. Client authentication failed. Expired key: {why}")),
            })?;
            if leaf.orgno.is_none() || leaf.orgno != client.orgno {
                return Err(fail(
                    Mp::Mp122,
                    format!(
                        "Invalid JWT. Invalid organization number for client. Does not match certificate orgno ({})",
                        leaf.orgno.as_deref().unwrap_or("none")
                    ),
                ));
            }
            let key = VerifyingKey::from_spki(None, &leaf.spki_der, &CLIENT_JWT_ALGS)
                .map_err(|e| fail(Mp::Mp120, format!("The JWT is signed with an invalid certificate: {e}")))?;
            (std::sync::Arc::new(key), "virksomhetssertifikat")
        }
    };
    jws.verify(&key).map_err(|e| fail(Mp::Mp124, format!("Invalid JWT signature: {e}")))?;
    // (7) Audience.
    let token_endpoint = issuer.endpoint("/token");
    let aud_ok = match purpose {
        Purpose::Grant => claims.aud.len() == 1 && claims.aud[0] == issuer.id,
        Purpose::ClientAuthentication => claims.aud.iter().any(|a| *a == issuer.id || *a == token_endpoint),
    };
    if !aud_ok {
        return Err(fail(Mp::Mp110, format!("Invalid assertion. Invalid JWT claim aud: it must be {:?}", issuer.id)));
    }
    // (8) Times.
    let exp = claims.exp.ok_or_else(|| fail(Mp::Mp130, "JWT is expired: it has no exp"))?;
    let iat = claims.iat.ok_or_else(|| fail(Mp::Mp130, "Invalid JWT: it has no iat"))?;
    if exp <= now - IAT_SKEW {
        return Err(fail(Mp::Mp130, format!("JWT is expired (exp {exp})")));
    }
    if (iat - now).abs() > IAT_SKEW {
        return Err(fail(
            Mp::Mp130,
            format!("Invalid JWT: iat {iat} is more than {IAT_SKEW} s from the server's clock"),
        ));
    }
    if exp - iat > MAX_LIFETIME {
        return Err(fail(Mp::Mp130, format!("Invalid JWT: exp − iat is {} s, more than {MAX_LIFETIME} s", exp - iat)));
    }
    // (9) Single use: the jti, or a hash of the whole JWT when there is none.
    let id = match &claims.jti {
        Some(jti) if !jti.is_empty() && jti.len() <= 256 => jti.clone(),
        Some(_) => return Err(fail(Mp::Mp011, "Invalid assertion. Invalid parameter value: jti")),
        None => URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, token.as_bytes())),
    };
    let keep = Duration::from_secs((exp - now + 2 * IAT_SKEW).max(1) as u64);
    let fresh = issuer
        .state
        .insert_new(Space::AssertionId, &format!("{}\u{0}{id}", client.id), &now, keep)
        .await
        .map_err(|e| AssertionError { mp: None, description: e.to_string(), store: Some(e) })?;
    if !fresh {
        return Err(fail(Mp::Mp012, "Grant is used before: this JWT (jti) was already used"));
    }
    Ok(Verified { client, claims, amr })
}
