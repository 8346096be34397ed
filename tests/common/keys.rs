//! Signing keys made for a test, their JWKs, and tokens signed with them.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// A signing key made for the test, with its public JWK.
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub pem: String,
    pub jwk: Value,
}

impl TestKey {
    pub fn new(kid: &str, alg: Algorithm) -> TestKey {
        let rcgen_alg = match alg {
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => &rcgen::PKCS_RSA_SHA256,
            Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512 => &rcgen::PKCS_RSA_SHA256,
            Algorithm::ES256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Algorithm::ES384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            Algorithm::EdDSA => &rcgen::PKCS_ED25519,
            other => panic!("no test keys for {other:?}"),
        };
        let pair = rcgen::KeyPair::generate_for(rcgen_alg).expect("key generation");
        let pem = pair.serialize_pem();
        if alg == Algorithm::EdDSA {
            // jsonwebtoken cannot derive an Ed25519 JWK from a PKCS#8 v2 key: build it here.
            use base64::Engine;
            let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key_raw());
            let encoding = EncodingKey::from_ed_pem(pem.as_bytes()).expect("an Ed25519 key");
            let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA"});
            return TestKey { kid: kid.into(), alg, encoding, pem, jwk };
        }
        TestKey::from_pem(kid, alg, &pem)
    }

    pub fn from_pem(kid: &str, alg: Algorithm, pem: &str) -> TestKey {
        let encoding = match alg {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem.as_bytes()),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()),
            _ => EncodingKey::from_rsa_pem(pem.as_bytes()),
        }
        .expect("a PEM private key");
        let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, alg).expect("a public JWK");
        let mut jwk = serde_json::to_value(jwk).unwrap();
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        TestKey { kid: kid.into(), alg, encoding, pem: pem.into(), jwk }
    }

    /// An RFC 9068 access-token header: `typ: at+jwt` and the key's `kid`.
    pub fn header(&self) -> Header {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header.typ = Some("at+jwt".into());
        header
    }

    pub fn sign(&self, claims: &Value) -> String {
        jsonwebtoken::encode(&self.header(), claims, &self.encoding).expect("signing")
    }

    pub fn sign_with(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &self.encoding).expect("signing")
    }
}

pub fn jwks(keys: &[&TestKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
}

/// A certificate and key issued by the dev test CA (for `127.0.0.1` when `server`), as PEM.
pub fn issued_by_test_ca(name: &str, server: bool) -> (String, String) {
    let ca_pem = std::fs::read_to_string(super::project_path("config/dev/test-ca.cert.pem")).unwrap();
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(super::project_path("config/dev/test-ca.key.pem")).unwrap())
            .unwrap();
    let ca = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let names = if server { vec!["127.0.0.1".to_owned()] } else { Vec::new() };
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    (params.signed_by(&key, &ca).unwrap().pem(), key.serialize_pem())
}
