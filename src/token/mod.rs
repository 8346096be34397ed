//! Tokens: algorithms, keys, claims and verification, shared by the issuer and the gateway.

pub mod access;
pub mod acr;
pub mod alg;
pub mod claims;
pub mod jwk;
pub mod sign;
pub mod verify;

pub use access::VerifiedToken;
pub use acr::Acr;
pub use alg::Alg;
pub use claims::{AccessClaims, Iso6523};
pub use jwk::{KeySet, VerifyingKey};
pub use verify::{CompactJws, Reason, TokenError};

/// Sign with jsonwebtoken and verify with Portvakt's own verifier. jsonwebtoken compiles
/// without a crypto backend and then panics on first use; this turns that into a start-up error.
pub fn self_test() -> Result<(), String> {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
        .map_err(|_| "self-test: cannot generate a key".to_string())?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| format!("self-test: {e}"))?;
    let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
    let token = std::panic::catch_unwind(|| {
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        let key = jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref());
        jsonwebtoken::encode(&header, &serde_json::json!({"self": "test"}), &key)
    })
    .map_err(|_| "self-test: jsonwebtoken has no crypto backend (enable exactly one)".to_string())?
    .map_err(|e| format!("self-test: signing failed: {e}"))?;
    let jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x}))
            .map_err(|e| format!("self-test: {e}"))?;
    let key = VerifyingKey::from_jwk(&jwk, &[Alg::EdDSA])
        .map_err(|e| format!("self-test: {e}"))?
        .ok_or("self-test: the key was not usable")?;
    CompactJws::parse(&token, 1024).and_then(|jws| jws.verify(&key)).map_err(|e| format!("self-test: {e}"))
}
