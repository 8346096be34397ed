//! Tokens: algorithms, keys, claims and verification, shared by the issuer and the gateway.

pub mod access;
pub mod acr;
pub mod alg;
pub mod claims;
pub mod dpop;
pub mod jwk;
pub mod sign;
pub mod verify;

pub use access::VerifiedToken;
pub use acr::Acr;
pub use alg::Alg;
pub use claims::{AccessClaims, Confirmation, Iso6523};
pub use jwk::{KeySet, VerifyingKey};
pub use verify::{CompactJws, Reason, TokenError};

/// Sign with jsonwebtoken and verify with Portvakt's own verifier. jsonwebtoken compiles
/// without a crypto backend and then panics on first use; this turns that into a start-up error.
pub fn self_test() -> crate::error::Result<()> {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use crate::error::{Context, Error};

    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
        .context("self-test: cannot generate a key")?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).context("self-test: the generated key is rejected")?;
    let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
    let token = std::panic::catch_unwind(|| {
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        let key = jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref());
        jsonwebtoken::encode(&header, &serde_json::json!({"self": "test"}), &key)
    })
    .map_err(|_| Error::new("self-test: jsonwebtoken has no crypto backend (enable exactly one)"))?
    .context("self-test: signing failed")?;
    let jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x}))
            .context("self-test: the JWK is not understood")?;
    let key = VerifyingKey::from_jwk(&jwk, &[Alg::EdDSA])
        .context("self-test: the JWK is refused")?
        .ok_or_else(|| Error::new("self-test: the key was not usable"))?;
    CompactJws::parse(&token, 1024).and_then(|jws| jws.verify(&key)).context("self-test: verification failed")
}
