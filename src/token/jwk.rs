//! Public keys for verification: parsed once from a JWKS (or a certificate) into aws-lc-rs
//! keys, so a signature check never re-parses key material.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaParameters, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};

use super::alg::{Alg, KeyFamily};

/// Most JWKS documents hold a handful of keys; a document with more is refused rather than
/// parsed, so a hostile or broken issuer cannot make the gateway hold thousands of keys.
pub const MAX_KEYS_PER_SET: usize = 64;

/// One public key, ready to verify with every allowed algorithm its type supports.
pub struct VerifyingKey {
    kid: Option<String>,
    family: KeyFamily,
    parsed: Vec<(Alg, ParsedPublicKey)>,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .field("algs", &self.parsed.iter().map(|(a, _)| *a).collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the JWKS is not valid JSON with a \"keys\" array: {0}")]
    NotAJwks(String),
    #[error("the JWKS holds {0} keys, more than the {MAX_KEYS_PER_SET} accepted")]
    TooManyKeys(usize),
    #[error("key {kid}: {reason}")]
    BadKey { kid: String, reason: String },
}

impl VerifyingKey {
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    pub fn algorithms(&self) -> impl Iterator<Item = Alg> + '_ {
        self.parsed.iter().map(|(alg, _)| *alg)
    }

    /// The parsed key for `alg`, if this key may be used with it.
    pub fn for_alg(&self, alg: Alg) -> Option<&ParsedPublicKey> {
        self.parsed.iter().find(|(a, _)| *a == alg).map(|(_, key)| key)
    }

    /// Build from a JWK. A JWK naming its own `alg` is bound to that algorithm alone (RFC 7517
    /// §4.4), so an RS256 key can never verify a PS256 token; `allowed` is the issuer's list.
    /// Returns `Ok(None)` for keys that are not for signatures or not of a supported type.
    pub fn from_jwk(jwk: &Jwk, allowed: &[Alg]) -> Result<Option<VerifyingKey>, KeyError> {
        let kid = jwk.common.key_id.clone();
        let bad = |reason: String| KeyError::BadKey { kid: kid.clone().unwrap_or_else(|| "(no kid)".into()), reason };
        if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
            return Ok(None);
        }
        let declared = match jwk.common.key_algorithm {
            None => None,
            Some(alg) => match key_algorithm(alg) {
                Some(alg) => Some(alg),
                None => return Ok(None),
            },
        };
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => KeyFamily::Rsa,
            AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                EllipticCurve::P256 => KeyFamily::EcP256,
                EllipticCurve::P384 => KeyFamily::EcP384,
                _ => return Ok(None),
            },
            AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
                EllipticCurve::Ed25519 => KeyFamily::Ed25519,
                _ => return Ok(None),
            },
            // Symmetric ("oct") and unknown key types never verify anything here.
            _ => return Ok(None),
        };
        if let Some(alg) = declared
            && alg.family() != family
        {
            return Err(bad(format!("declares alg {alg} but is not a key of that type")));
        }
        let algs: Vec<Alg> = allowed
            .iter()
            .copied()
            .filter(|alg| alg.family() == family && declared.is_none_or(|d| d == *alg))
            .collect();
        if algs.is_empty() {
            return Ok(None);
        }
        let mut parsed = Vec::with_capacity(algs.len());
        for alg in algs {
            let key = match &jwk.algorithm {
                AlgorithmParameters::RSA(rsa) => {
                    let n = b64(&rsa.n).map_err(|e| bad(format!("n: {e}")))?;
                    let e = b64(&rsa.e).map_err(|e| bad(format!("e: {e}")))?;
                    RsaPublicKeyComponents { n: strip_zeros(&n), e: strip_zeros(&e) }
                        .to_parsed_public_key(rsa_parameters(alg))
                        .map_err(|e| bad(format!("RSA key rejected: {e}")))?
                }
                AlgorithmParameters::EllipticCurve(ec) => {
                    let x = b64(&ec.x).map_err(|e| bad(format!("x: {e}")))?;
                    let y = b64(&ec.y).map_err(|e| bad(format!("y: {e}")))?;
                    let mut point = Vec::with_capacity(1 + x.len() + y.len());
                    point.push(0x04);
                    point.extend_from_slice(&x);
                    point.extend_from_slice(&y);
                    ParsedPublicKey::new(alg.verification(), point).map_err(|e| bad(format!("EC key rejected: {e}")))?
                }
                AlgorithmParameters::OctetKeyPair(okp) => {
                    let x = b64(&okp.x).map_err(|e| bad(format!("x: {e}")))?;
                    ParsedPublicKey::new(alg.verification(), x)
                        .map_err(|e| bad(format!("Ed25519 key rejected: {e}")))?
                }
                _ => return Ok(None),
            };
            parsed.push((alg, key));
        }
        Ok(Some(VerifyingKey { kid, family, parsed }))
    }

    /// Build from a DER SubjectPublicKeyInfo (a certificate's key), for `allowed` algorithms.
    pub fn from_spki(kid: Option<String>, spki_der: &[u8], allowed: &[Alg]) -> Result<VerifyingKey, KeyError> {
        let mut parsed = Vec::new();
        let mut family = None;
        for alg in allowed {
            if let Ok(key) = ParsedPublicKey::new(alg.verification(), spki_der) {
                family.get_or_insert(alg.family());
                parsed.push((*alg, key));
            }
        }
        match family {
            Some(family) => Ok(VerifyingKey { kid, family, parsed }),
            None => Err(KeyError::BadKey {
                kid: kid.unwrap_or_else(|| "(certificate)".into()),
                reason: "the public key fits none of the allowed algorithms".into(),
            }),
        }
    }
}

/// RFC 7638: SHA-256 over the required members of a public JWK in lexicographic order, without
/// whitespace, base64url. `None` unless it is an RSA, EC or OKP key with those members.
pub fn thumbprint(jwk: &serde_json::Value) -> Option<String> {
    let member = |name: &str| jwk.get(name)?.as_str().and_then(|v| serde_json::to_string(v).ok());
    let canonical = match jwk.get("kty")?.as_str()? {
        "RSA" => format!(r#"{{"e":{},"kty":"RSA","n":{}}}"#, member("e")?, member("n")?),
        "EC" => format!(r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#, member("crv")?, member("x")?, member("y")?),
        "OKP" => format!(r#"{{"crv":{},"kty":"OKP","x":{}}}"#, member("crv")?, member("x")?),
        _ => return None,
    };
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    Some(URL_SAFE_NO_PAD.encode(hash))
}

fn b64(value: &str) -> Result<Vec<u8>, base64::DecodeError> {
    URL_SAFE_NO_PAD.decode(value.trim_end_matches('='))
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len().saturating_sub(1));
    &bytes[first..]
}

fn rsa_parameters(alg: Alg) -> &'static RsaParameters {
    match alg {
        Alg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Alg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Alg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Alg::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        Alg::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        _ => &signature::RSA_PKCS1_2048_8192_SHA256,
    }
}

fn key_algorithm(alg: KeyAlgorithm) -> Option<Alg> {
    Some(match alg {
        KeyAlgorithm::RS256 => Alg::RS256,
        KeyAlgorithm::RS384 => Alg::RS384,
        KeyAlgorithm::RS512 => Alg::RS512,
        KeyAlgorithm::PS256 => Alg::PS256,
        KeyAlgorithm::PS384 => Alg::PS384,
        KeyAlgorithm::PS512 => Alg::PS512,
        KeyAlgorithm::ES256 => Alg::ES256,
        KeyAlgorithm::ES384 => Alg::ES384,
        KeyAlgorithm::EdDSA => Alg::EdDSA,
        _ => return None,
    })
}

/// The keys of one issuer, looked up by `kid`.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Arc<VerifyingKey>>,
    by_kid: HashMap<String, usize>,
    /// Keys that were skipped (wrong use, unsupported type, not allowed); kept for logs.
    pub skipped: Vec<String>,
}

impl KeySet {
    pub fn new(keys: Vec<VerifyingKey>) -> KeySet {
        let mut set = KeySet::default();
        for key in keys {
            let index = set.keys.len();
            if let Some(kid) = key.kid() {
                set.by_kid.insert(kid.to_owned(), index);
            }
            set.keys.push(Arc::new(key));
        }
        set
    }

    /// Parse a JWKS document, keeping the keys usable with `allowed`. One malformed key is
    /// skipped (and named), not fatal: issuers publish encryption keys beside signing keys.
    pub fn from_jwks(document: &[u8], allowed: &[Alg]) -> Result<KeySet, KeyError> {
        #[derive(serde::Deserialize)]
        struct Doc {
            keys: Vec<serde_json::Value>,
        }
        let doc: Doc = serde_json::from_slice(document).map_err(|e| KeyError::NotAJwks(e.to_string()))?;
        if doc.keys.len() > MAX_KEYS_PER_SET {
            return Err(KeyError::TooManyKeys(doc.keys.len()));
        }
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for (index, value) in doc.keys.into_iter().enumerate() {
            let label = value
                .get("kid")
                .and_then(|k| k.as_str())
                .map_or_else(|| format!("#{index}"), |k| k.chars().take(64).collect());
            match serde_json::from_value::<Jwk>(value) {
                Ok(jwk) => match VerifyingKey::from_jwk(&jwk, allowed) {
                    Ok(Some(key)) => keys.push(key),
                    Ok(None) => skipped.push(format!("{label}: not a usable signing key")),
                    Err(e) => skipped.push(e.to_string()),
                },
                Err(e) => skipped.push(format!("{label}: {e}")),
            }
        }
        let mut set = KeySet::new(keys);
        set.skipped = skipped;
        Ok(set)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().filter_map(|k| k.kid())
    }

    /// The key for a token's `kid` and `alg`. Without a `kid`, only an unambiguous key is used:
    /// trying every key in turn would let one token cost many signature checks.
    pub fn find(&self, kid: Option<&str>, alg: Alg) -> Option<&Arc<VerifyingKey>> {
        match kid {
            Some(kid) => self.by_kid.get(kid).map(|i| &self.keys[*i]),
            None => {
                let mut candidates = self.keys.iter().filter(|k| k.for_alg(alg).is_some());
                match (candidates.next(), candidates.next()) {
                    (Some(only), None) => Some(only),
                    _ => None,
                }
            }
        }
    }
}
