//! Secrets in the config: written inline (development), or read from the environment or a file.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::Checker;

#[derive(Clone, Deserialize)]
#[serde(untagged)]
enum Source {
    Inline(String),
    Env { env: String },
    File { file: PathBuf },
}

/// A secret value. Never printed; compared in constant time.
#[derive(Clone, Deserialize)]
#[serde(from = "Source")]
pub struct Secret {
    source: Source,
    value: String,
}

impl From<Source> for Secret {
    fn from(source: Source) -> Secret {
        let value = match &source {
            Source::Inline(value) => value.clone(),
            _ => String::new(),
        };
        Secret { source, value }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    /// A secret given in code (tests, generated configs).
    pub fn inline(value: impl Into<String>) -> Secret {
        Source::Inline(value.into()).into()
    }

    /// Read the value from the environment or the file; refuse an empty secret, and an inline
    /// one in a production config.
    pub(crate) fn resolve(&mut self, check: &mut Checker<'_>, key: &str) {
        match &self.source {
            Source::Inline(_) if check.production => check.error(
                key,
                "a production config may not hold secrets inline: use { env = \"NAME\" } or { file = \"PATH\" }",
            ),
            Source::Inline(_) => {}
            Source::Env { env } => match std::env::var(env) {
                Ok(value) => self.value = value,
                Err(_) => check.error(key, format!("environment variable {env} is not set")),
            },
            Source::File { file } => {
                let path = check.file(key, file);
                match std::fs::read_to_string(&path) {
                    Ok(value) => self.value = value.trim_end_matches(['\r', '\n']).to_owned(),
                    Err(e) => check.error(key, format!("cannot read {}: {e}", path.display())),
                }
            }
        }
        if self.value.is_empty() && check.errors_for(key) == 0 {
            check.error(key, "the secret is empty");
        }
    }

    pub fn expose(&self) -> &str {
        &self.value
    }

    /// Constant-time comparison (over SHA-256 digests, so the length leaks nothing either).
    pub fn matches(&self, candidate: &str) -> bool {
        use aws_lc_rs::digest::{SHA256, digest};
        let expected = digest(&SHA256, self.value.as_bytes());
        let given = digest(&SHA256, candidate.as_bytes());
        !self.value.is_empty() && bool::from(expected.as_ref().ct_eq(given.as_ref()))
    }
}
