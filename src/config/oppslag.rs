//! `[oppslag]`: the Oppslagstjenesten simulator.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::Checker;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OppslagSettings {
    pub listen: SocketAddr,
    /// The register's data file (`portvakt register generate` writes one).
    pub register: PathBuf,
    /// Move the register's timestamps so its reference time is now: an entry that was 20
    /// months old when generated stays 20 months old, and the 18-month rule keeps its answer.
    #[serde(default = "yes")]
    pub rebase_timestamps: bool,
    /// SOAP requests larger than this are refused (1,000 ids take about 60 KiB).
    #[serde(default = "default_max_request")]
    pub max_request_bytes: usize,
    /// WS-Security as the real service does it; without this section, none.
    pub ws_security: Option<super::ServerWsSecurity>,
}

fn yes() -> bool {
    true
}

fn default_max_request() -> usize {
    1024 * 1024
}

impl OppslagSettings {
    pub(super) fn validate(&mut self, check: &mut Checker<'_>) {
        self.register = check.file("oppslag.register", &self.register);
        if let Some(ws_security) = &mut self.ws_security {
            ws_security.validate(check);
        }
        if !(4096..=64 * 1024 * 1024).contains(&self.max_request_bytes) {
            check.error("oppslag.max_request_bytes", "must be between 4096 and 67108864");
        }
    }
}
