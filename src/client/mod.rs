//! A Maskinporten client: signs JWT-bearer grants (with `x5c` or `kid`) and asks an issuer for
//! machine tokens. `portvakt token` uses it, and so do the tests and the load benchmarks.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

use crate::error::{Context, Error, Result};
use crate::oauth::JWT_BEARER_GRANT;
use crate::token::Alg;
use crate::token::sign::{SigningKey, sign_compact};
use crate::token::verify::unix_now;

/// How the grant names its key.
pub enum KeyReference {
    /// The certificate chain (leaf first), base64 DER.
    X5c(Vec<String>),
    Kid(String),
}

pub struct MaskinportenClient {
    pub issuer: String,
    pub client_id: String,
    key: SigningKey,
    reference: KeyReference,
}

impl MaskinportenClient {
    pub fn new(issuer: &str, client_id: &str, key: SigningKey, reference: KeyReference) -> MaskinportenClient {
        MaskinportenClient { issuer: issuer.to_owned(), client_id: client_id.to_owned(), key, reference }
    }

    /// Read the RSA key and either a PEM certificate chain (`x5c`) or use `kid`.
    pub fn from_files(
        issuer: &str,
        client_id: &str,
        key: &Path,
        cert: Option<&Path>,
        kid: Option<&str>,
    ) -> Result<MaskinportenClient> {
        let signing = SigningKey::from_pem_file(key, Alg::RS256, Some(String::new()))?;
        let reference = match (cert, kid) {
            (_, Some(kid)) => KeyReference::Kid(kid.to_owned()),
            (Some(cert), None) => {
                let chain: Vec<String> = CertificateDer::pem_file_iter(cert)
                    .with_context(|| cert.display().to_string())?
                    .map(|c| c.map(|c| STANDARD.encode(c.as_ref())))
                    .collect::<Result<_, _>>()
                    .with_context(|| cert.display().to_string())?;
                if chain.is_empty() {
                    return Err(Error::new(format!("{} holds no certificate", cert.display())));
                }
                KeyReference::X5c(chain)
            }
            (None, None) => return Err(Error::new("give a certificate (x5c) or a kid")),
        };
        Ok(MaskinportenClient::new(issuer, client_id, signing, reference))
    }

    /// A grant for `scopes`, valid for 120 s, with a fresh `jti`. `extra` claims are merged in
    /// (`resource`, `pid`, `consumer_org`, or a deliberately wrong value in a test).
    pub fn assertion(&self, scopes: &[&str], extra: &Value) -> Result<String> {
        let now = unix_now();
        let mut header = json!({"alg": self.key.alg.name()});
        match &self.reference {
            KeyReference::X5c(chain) => header["x5c"] = json!(chain),
            KeyReference::Kid(kid) => header["kid"] = json!(kid),
        }
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).context("no randomness")?;
        let mut claims = json!({
            "aud": self.issuer,
            "iss": self.client_id,
            "scope": scopes.join(" "),
            "iat": now,
            "exp": now + 120,
            "jti": jti.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        });
        if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
            for (name, value) in extra {
                claims.insert(name.clone(), value.clone());
            }
        }
        sign_compact(&header, &claims, |input| self.key.sign_bytes(input))
    }

    /// POST the grant to `{issuer}/token` and return the JSON answer (or the error body).
    pub async fn token(&self, http: &reqwest::Client, scopes: &[&str], extra: &Value) -> Result<Value> {
        let url = format!("{}/token", self.issuer.trim_end_matches('/'));
        self.token_at(http, &url, scopes, extra).await
    }

    /// As [`MaskinportenClient::token`], posted to `url`: one instance of an issuer that runs
    /// as several (the assertion's `aud` is still the issuer identifier).
    pub async fn token_at(&self, http: &reqwest::Client, url: &str, scopes: &[&str], extra: &Value) -> Result<Value> {
        let assertion = self.assertion(scopes, extra)?;
        let url = url.to_owned();
        let response = http
            .post(&url)
            .form(&[("grant_type", JWT_BEARER_GRANT), ("assertion", assertion.as_str())])
            .send()
            .await
            .with_context(|| url.clone())?;
        let status = response.status();
        let body: Value = response.json().await.with_context(|| format!("{url}: the answer is not JSON"))?;
        if status.is_success() { Ok(body) } else { Err(Error::new(format!("{url} answered {status}: {body}"))) }
    }
}
