//! Signing keys of the issuer: parsed once (a re-parsed RSA key doubles the cost of a token),
//! published as JWKs, used for id_tokens and self-contained access tokens.

use std::path::Path;

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use serde::Serialize;
use serde_json::{Value, json};

use super::alg::Alg;
use crate::error::{Context, Error, Result};

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

pub struct SigningKey {
    pub kid: String,
    pub alg: Alg,
    pair: Pair,
    rng: SystemRandom,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Read a PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC) for `alg`. Without a `kid`, the
    /// RFC 7638 thumbprint of the public key is used.
    pub fn from_pem_file(path: &Path, alg: Alg, kid: Option<String>) -> Result<SigningKey> {
        let der =
            PrivateKeyDer::from_pem_file(path).with_context(|| format!("{}: not a PEM private key", path.display()))?;
        SigningKey::from_der(&der, alg, kid).with_context(|| path.display().to_string())
    }

    pub fn from_pem(pem: &[u8], alg: Alg, kid: Option<String>) -> Result<SigningKey> {
        let der = PrivateKeyDer::from_pem_slice(pem).context("not a PEM private key")?;
        SigningKey::from_der(&der, alg, kid)
    }

    fn from_der(der: &PrivateKeyDer<'_>, alg: Alg, kid: Option<String>) -> Result<SigningKey> {
        use super::alg::KeyFamily;
        let bytes = der.secret_der();
        let pair = match (alg.family(), der) {
            (KeyFamily::Rsa, PrivateKeyDer::Pkcs1(_)) => {
                Pair::Rsa(RsaKeyPair::from_der(bytes).context("RSA key rejected")?)
            }
            (KeyFamily::Rsa, _) => Pair::Rsa(RsaKeyPair::from_pkcs8(bytes).context("RSA key rejected")?),
            (KeyFamily::EcP256 | KeyFamily::EcP384, der) => {
                let signing = if alg == Alg::ES256 {
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING
                } else {
                    &signature::ECDSA_P384_SHA384_FIXED_SIGNING
                };
                let pair = match der {
                    PrivateKeyDer::Sec1(_) => EcdsaKeyPair::from_private_key_der(signing, bytes),
                    _ => EcdsaKeyPair::from_pkcs8(signing, bytes),
                };
                Pair::Ec(pair.with_context(|| format!("EC key rejected (is it a {alg} key?)"))?)
            }
            (KeyFamily::Ed25519, _) => {
                Pair::Ed(Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes).context("Ed25519 key rejected")?)
            }
        };
        if let Pair::Rsa(rsa) = &pair
            && rsa.public_modulus_len() < 256
        {
            return Err(Error::new("RSA keys must have at least 2048 bits"));
        }
        let mut key = SigningKey { kid: String::new(), alg, pair, rng: SystemRandom::new() };
        key.kid = kid.unwrap_or_else(|| key.thumbprint());
        Ok(key)
    }

    /// The public JWK, as published at `/jwk`.
    pub fn public_jwk(&self) -> Value {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let mut jwk = match &self.pair {
            Pair::Rsa(rsa) => {
                let public = rsa.public_key();
                json!({"kty": "RSA", "n": b64(public.modulus().big_endian_without_leading_zero()),
                       "e": b64(public.exponent().big_endian_without_leading_zero())})
            }
            Pair::Ec(ec) => {
                let point = ec.public_key().as_ref();
                let half = (point.len() - 1) / 2;
                let crv = if self.alg == Alg::ES256 { "P-256" } else { "P-384" };
                json!({"kty": "EC", "crv": crv, "x": b64(&point[1..1 + half]), "y": b64(&point[1 + half..])})
            }
            Pair::Ed(ed) => json!({"kty": "OKP", "crv": "Ed25519", "x": b64(ed.public_key().as_ref())}),
        };
        jwk["kid"] = json!(self.kid);
        jwk["alg"] = json!(self.alg.name());
        jwk["use"] = json!("sig");
        jwk
    }

    /// RFC 7638: the thumbprint of the public JWK (the default `kid`).
    pub fn thumbprint(&self) -> String {
        super::jwk::thumbprint(&self.public_jwk()).unwrap_or_default()
    }

    pub fn sign_bytes(&self, message: &[u8]) -> Result<Vec<u8>> {
        let failed = |_| Error::new("signing failed");
        match &self.pair {
            Pair::Rsa(rsa) => {
                let encoding: &'static dyn signature::RsaEncoding = match self.alg {
                    Alg::RS384 => &signature::RSA_PKCS1_SHA384,
                    Alg::RS512 => &signature::RSA_PKCS1_SHA512,
                    Alg::PS256 => &signature::RSA_PSS_SHA256,
                    Alg::PS384 => &signature::RSA_PSS_SHA384,
                    Alg::PS512 => &signature::RSA_PSS_SHA512,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut out = vec![0u8; rsa.public_modulus_len()];
                rsa.sign(encoding, &self.rng, message, &mut out).map_err(failed)?;
                Ok(out)
            }
            Pair::Ec(ec) => Ok(ec.sign(&self.rng, message).map_err(failed)?.as_ref().to_vec()),
            Pair::Ed(ed) => Ok(ed.sign(message).as_ref().to_vec()),
        }
    }

    /// A compact JWS of `claims` with `kid`, `alg` and the given `typ`.
    pub fn sign_jwt<T: Serialize>(&self, typ: Option<&str>, claims: &T) -> Result<String> {
        let mut header = json!({"alg": self.alg.name(), "kid": self.kid});
        if let Some(typ) = typ {
            header["typ"] = json!(typ);
        }
        sign_compact(&header, claims, |input| self.sign_bytes(input))
    }
}

/// Encode header and claims, sign `header.payload` with `sign`, and join the three parts.
pub fn sign_compact<T: Serialize>(
    header: &Value,
    claims: &T,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>>,
) -> Result<String> {
    let header = URL_SAFE_NO_PAD.encode(header.to_string());
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).context("the claims cannot be serialised")?);
    let mut token = format!("{header}.{payload}");
    let signature = sign(token.as_bytes())?;
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature));
    Ok(token)
}

/// `at_hash` (OIDC Core §3.1.3.6): the left half of the SHA-256 of the access token, base64url.
pub fn at_hash(access_token: &str) -> String {
    let hash = digest::digest(&digest::SHA256, access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&hash.as_ref()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{CompactJws, KeySet};

    #[test]
    fn tokens_signed_here_verify_with_the_published_jwk() {
        let ed = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(ed.as_ref())
        );
        let key = SigningKey::from_pem(pem.as_bytes(), Alg::EdDSA, None).unwrap();
        assert_eq!(key.kid.len(), 43, "a SHA-256 thumbprint");
        let token = key.sign_jwt(Some("at+jwt"), &json!({"hello": "world"})).unwrap();
        let set = KeySet::from_jwks(json!({"keys": [key.public_jwk()]}).to_string().as_bytes(), &[Alg::EdDSA]).unwrap();
        let jws = CompactJws::parse(&token, 4096).unwrap();
        jws.verify(set.find(Some(&key.kid), Alg::EdDSA).unwrap()).unwrap();
        assert_eq!(jws.header.typ.as_deref(), Some("at+jwt"));
    }

    #[test]
    fn at_hash_matches_the_oidc_example() {
        // OIDC Core A.3: access token "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y" → "77QmUPtjPfzWtF2AnpK9RQ"
        assert_eq!(at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"), "77QmUPtjPfzWtF2AnpK9RQ");
    }
}
