//! `[audit]`: the trail of personal-data lookups (see `crate::audit`).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{Checker, Secret};

#[derive(Debug, Deserialize)]
#[serde(try_from = "AuditToml")]
pub struct AuditSettings {
    /// Where the JSON Lines files are written (relative to the config file's folder).
    pub dir: PathBuf,
    /// The key of the personidentifikator hashes and of the records' MACs.
    pub hmac_key: Secret,
    pub fsync: Fsync,
    /// A file is closed at this size and the chain goes on in the next.
    pub max_file_bytes: u64,
}

/// When a record reaches the disk, not only the page cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// After every record: none is lost in a crash (the default).
    Always,
    /// With the first record written when this long has passed since the last sync.
    Interval(Duration),
    /// When the operating system decides.
    Never,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditToml {
    dir: PathBuf,
    hmac_key: Secret,
    #[serde(default = "default_fsync")]
    fsync: String,
    fsync_interval_ms: Option<u64>,
    #[serde(default = "default_max_file_bytes")]
    max_file_bytes: u64,
}

fn default_fsync() -> String {
    "always".into()
}
fn default_max_file_bytes() -> u64 {
    64 * 1024 * 1024
}

impl TryFrom<AuditToml> for AuditSettings {
    type Error = &'static str;

    fn try_from(toml: AuditToml) -> Result<AuditSettings, &'static str> {
        let fsync = match (toml.fsync.as_str(), toml.fsync_interval_ms) {
            ("always", None) => Fsync::Always,
            ("never", None) => Fsync::Never,
            ("interval", Some(ms)) if (1..=60_000).contains(&ms) => Fsync::Interval(Duration::from_millis(ms)),
            ("interval", _) => return Err("fsync = \"interval\" needs fsync_interval_ms between 1 and 60000"),
            ("always" | "never", Some(_)) => return Err("fsync_interval_ms goes with fsync = \"interval\" only"),
            _ => return Err("fsync is \"always\", \"interval\" or \"never\""),
        };
        if toml.max_file_bytes < 4096 {
            return Err("max_file_bytes must be at least 4096");
        }
        Ok(AuditSettings { dir: toml.dir, hmac_key: toml.hmac_key, fsync, max_file_bytes: toml.max_file_bytes })
    }
}

impl AuditSettings {
    pub(super) fn validate(&mut self, check: &mut Checker<'_>) {
        self.dir = check.resolve(&self.dir);
        self.hmac_key.resolve(check, "audit.hmac_key");
        if self.hmac_key.expose().len() < 16 && check.errors_for("audit.hmac_key") == 0 {
            check.error("audit.hmac_key", "must be at least 16 characters");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_is_one_of_three_policies() {
        let read = |extra: &str| {
            toml::from_str::<AuditSettings>(&format!("dir = \"a\"\nhmac_key = \"k\"\n{extra}"))
                .map_err(|e| e.to_string())
        };
        assert_eq!(read("").unwrap().fsync, Fsync::Always);
        assert_eq!(read("fsync = \"never\"").unwrap().fsync, Fsync::Never);
        assert_eq!(
            read("fsync = \"interval\"\nfsync_interval_ms = 250").unwrap().fsync,
            Fsync::Interval(Duration::from_millis(250))
        );
        assert!(read("fsync = \"interval\"").unwrap_err().contains("fsync_interval_ms"));
        assert!(read("fsync = \"sometimes\"").unwrap_err().contains("always"));
        assert!(read("max_file_bytes = 10").unwrap_err().contains("4096"));
    }
}
