//! Token validation at the edge: a cached token, and uncached signature checks for RS256,
//! ES256 and EdDSA (what a cache miss costs); and the DPoP proof a bound token needs with every
//! request (what sender-constraint adds to a cached token's cost).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic where a request path may not

// The allocator the portvakt binary runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use portvakt::admin::metrics::Metrics;
use portvakt::gateway::keys::IssuerKeys;
use portvakt::gateway::validator::{TokenValidator, ValidatorSettings};
use portvakt::token::sign::SigningKey;
use portvakt::token::{Alg, KeySet};
use serde_json::json;

const ISSUER: &str = "https://issuer.bench";

fn key(alg: Alg) -> SigningKey {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
    let pkcs8: Vec<u8> = match alg {
        Alg::RS256 => aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .and_then(|k| k.as_der())
            .map(|d| d.as_ref().to_vec())
            .expect("an RSA key"),
        Alg::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .expect("an EC key")
            .as_ref()
            .to_vec(),
        _ => Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("an Ed25519 key").as_ref().to_vec(),
    };
    use base64::Engine;
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(pkcs8)
    );
    SigningKey::from_pem(pem.as_bytes(), alg, Some(format!("{alg}-bench"))).expect("a signing key")
}

fn validator(keys: &[&SigningKey], cache: bool) -> TokenValidator {
    let metrics = Arc::new(Metrics::new());
    let jwks = json!({"keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>()});
    let set = KeySet::from_jwks(jwks.to_string().as_bytes(), &Alg::ALL).expect("a key set");
    let issuer = Arc::new(IssuerKeys::with_keys(ISSUER, Alg::ALL.to_vec(), set, metrics.clone()));
    TokenValidator::new(
        vec![issuer],
        None,
        ValidatorSettings {
            leeway_seconds: 30,
            max_token_bytes: 8192,
            cache_entries: cache.then_some(10_000),
            cache_max_ttl: std::time::Duration::from_secs(600),
        },
        metrics,
    )
}

fn token(key: &SigningKey) -> String {
    let now = portvakt::token::verify::unix_now();
    key.sign_jwt(
        Some("at+jwt"),
        &json!({"iss": ISSUER, "client_id": "bench", "scope": "global/kontaktinformasjon.read", "iat": now, "exp": now + 3600,
                "consumer": {"authority": "iso6523-actorid-upis", "ID": "0192:991825827"}}),
    )
    .expect("a token")
}

fn validation(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let rsa = key(Alg::RS256);
    let ec = key(Alg::ES256);
    let ed = key(Alg::EdDSA);
    let cached = validator(&[&rsa], true);
    let rs_token = token(&rsa);
    runtime.block_on(cached.validate(&rs_token, None)).expect("valid");
    c.bench_function("validate/cached", |b| {
        b.iter(|| runtime.block_on(cached.validate(&rs_token, None)).expect("valid"))
    });
    let uncached = validator(&[&rsa, &ec, &ed], false);
    for (name, key) in [("RS256", &rsa), ("ES256", &ec), ("EdDSA", &ed)] {
        let token = token(key);
        c.bench_function(&format!("validate/uncached/{name}"), |b| {
            b.iter(|| runtime.block_on(uncached.validate(&token, None)).expect("valid"))
        });
    }
}

/// A DPoP proof signed with `key`'s algorithm, its public key in the header (as a client makes it).
fn proof(key: &SigningKey, token: &str, uri: &str) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut jwk = key.public_jwk();
    for member in ["kid", "use", "alg"] {
        jwk.as_object_mut().expect("a JWK object").remove(member);
    }
    let ath = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()));
    let now = portvakt::token::verify::unix_now();
    let header = json!({"typ": "dpop+jwt", "alg": key.alg.name(), "jwk": jwk});
    let claims = json!({"jti": "bench", "htm": "GET", "htu": uri, "iat": now, "ath": ath});
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = key.sign_bytes(input.as_bytes()).expect("a signature");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn dpop(c: &mut Criterion) {
    use portvakt::token::dpop::{Expected, check};
    let uri = "http://127.0.0.1:8080/api";
    for (name, alg) in [("ES256", Alg::ES256), ("EdDSA", Alg::EdDSA), ("RS256", Alg::RS256)] {
        let key = key(alg);
        let token = "a-bound-access-token";
        let proof = proof(&key, token, uri);
        c.bench_function(&format!("dpop/proof/{name}"), |b| {
            b.iter(|| {
                let expected = Expected {
                    method: "GET",
                    uri,
                    access_token: Some(token),
                    now: portvakt::token::verify::unix_now(),
                    window: std::time::Duration::from_secs(60),
                    nonces: None,
                };
                check(&proof, &expected).expect("a proof that holds")
            })
        });
    }
}

criterion_group!(benches, validation, dpop);
criterion_main!(benches);
