//! The configuration: one TOML file parsed once into typed structs and validated before
//! anything starts. Every error names the file, the key and the reason.

mod audit;
mod duration;
mod gateway;
mod http;
mod issuer;
mod oppslag;
mod secret;
mod server;
mod wssec;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use audit::{AuditSettings, Fsync};
pub use gateway::*;
pub use http::HttpMethod;
pub use issuer::*;
pub use oppslag::*;
pub use secret::Secret;
pub use server::*;
pub use wssec::{ClientWsSecurity, ServerWsSecurity};

/// The default config path, relative to the working directory (the project root).
pub const DEFAULT_PATH: &str = "config/portvakt.toml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub log: LogSettings,
    pub admin: AdminSettings,
    pub gateway: Option<GatewaySettings>,
    pub issuer: Option<IssuerSettings>,
    pub oppslag: Option<OppslagSettings>,
    /// The trail of personal-data lookups; none is kept without it.
    pub audit: Option<AuditSettings>,
    /// Where the file was read from; relative paths in it are resolved against its folder.
    #[serde(skip)]
    pub source: PathBuf,
}

/// A configuration error: the file, the key (a dotted path) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub key: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(f, "{}: key `{}`: {}", self.file.display(), self.key, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Collects validation errors against one file, so the operator sees all of them at once.
pub struct Checker<'a> {
    file: &'a Path,
    base: PathBuf,
    pub production: bool,
    errors: Vec<ConfigError>,
}

impl<'a> Checker<'a> {
    pub fn new(file: &'a Path, production: bool) -> Checker<'a> {
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        Checker { file, base, production, errors: Vec::new() }
    }

    pub fn error(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(ConfigError { file: self.file.to_path_buf(), key: key.into(), reason: reason.into() });
    }

    /// A path as written, made absolute against the config file's folder.
    pub fn resolve(&self, path: &std::path::Path) -> PathBuf {
        if path.is_absolute() { path.to_path_buf() } else { self.base.join(path) }
    }

    /// Resolve a path against the config file's folder and check that the file exists and is
    /// allowed (a production config never loads development material from `config/dev/`).
    pub fn file(&mut self, key: &str, path: &Path) -> PathBuf {
        let resolved = if path.is_absolute() { path.to_path_buf() } else { self.base.join(path) };
        if !resolved.is_file() {
            self.error(key, format!("file {} does not exist or is not a file", resolved.display()));
        } else if self.production && is_dev_material(&resolved) {
            self.error(
                key,
                format!(
                    "{} is development material (under config/dev/) and a production config may not load it",
                    resolved.display()
                ),
            );
        }
        resolved
    }

    pub fn errors_for(&self, key: &str) -> usize {
        self.errors.iter().filter(|e| e.key == key).count()
    }

    pub fn finish(self) -> Result<(), Vec<ConfigError>> {
        if self.errors.is_empty() { Ok(()) } else { Err(self.errors) }
    }
}

/// `…/config/dev/…` anywhere in the canonical path.
fn is_dev_material(path: &Path) -> bool {
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let parts: Vec<_> = canonical.components().map(|c| c.as_os_str().to_owned()).collect();
    parts.windows(2).any(|w| w[0] == "config" && w[1] == "dev")
}

impl Config {
    /// Read, parse and validate. All problems are returned, not just the first.
    pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
        let single =
            |key: &str, reason: String| vec![ConfigError { file: path.to_path_buf(), key: key.into(), reason }];
        let text =
            std::fs::read_to_string(path).map_err(|e| single("", format!("cannot read the config file: {e}")))?;
        let mut config = Config::parse(&text).map_err(|(key, reason)| single(&key, reason))?;
        config.source = path.to_path_buf();
        config.validate()?;
        Ok(config)
    }

    /// Parse TOML text into the typed config; errors carry the dotted key path.
    pub fn parse(text: &str) -> Result<Config, (String, String)> {
        let deserializer = toml::Deserializer::parse(text).map_err(|e| (String::new(), one_line(&e.to_string())))?;
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." { String::new() } else { key };
            (key, one_line(&e.into_inner().to_string()))
        })
    }

    fn validate(&mut self) -> Result<(), Vec<ConfigError>> {
        let production = self.server.environment == Environment::Production;
        let mut check = Checker::new(&self.source, production);
        self.server.validate(&mut check);
        if self.gateway.is_none() && self.issuer.is_none() && self.oppslag.is_none() {
            check.error("", "no role is configured: add [gateway], [issuer] or [oppslag]");
        }
        if let Some(gateway) = &mut self.gateway {
            gateway.validate(&mut check);
        }
        if let Some(issuer) = &mut self.issuer {
            issuer.validate(&mut check);
        }
        if let Some(oppslag) = &mut self.oppslag {
            oppslag.validate(&mut check);
        }
        match &mut self.audit {
            Some(audit) => audit.validate(&mut check),
            // An operator who processes personal data has to keep a record of its lookups.
            None if production
                && (self.gateway.as_ref().is_some_and(|g| g.krr.is_some())
                    || self.oppslag.is_some()
                    || self.issuer.is_some()) =>
            {
                check.error(
                    "audit",
                    "a production config that looks up personal data (KRR, authlevel, Oppslagstjenesten) must keep \
                     an audit trail: add [audit]",
                )
            }
            None => {}
        }
        let mut listeners = vec![("admin.listen", self.admin.listen)];
        listeners.extend(self.gateway.as_ref().map(|g| ("gateway.listen", g.listen)));
        listeners.extend(self.issuer.as_ref().map(|i| ("issuer.listen", i.listen)));
        listeners.extend(self.oppslag.as_ref().map(|o| ("oppslag.listen", o.listen)));
        for (i, (key, addr)) in listeners.iter().enumerate() {
            if let Some((other, _)) = listeners[..i].iter().find(|(_, a)| a == addr) {
                check.error(*key, format!("{addr} is already used by {other}"));
            }
        }
        check.finish()
    }

    pub fn error(&self, key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError { file: self.source.clone(), key: key.into(), reason: reason.into() }
    }
}

/// toml's messages span several lines (with a source excerpt); logs want one.
fn one_line(message: &str) -> String {
    message.split('\n').map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}
