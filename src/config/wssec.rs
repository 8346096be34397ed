//! WS-Security on the Oppslagstjenesten link: `[gateway.krr.ws_security]` for the facade's side
//! and `[oppslag.ws_security]` for the simulator's (see `crate::wssec`).

use std::path::PathBuf;

use serde::Deserialize;

use super::Checker;
pub use crate::wssec::Mode;

/// The facade signs with its virksomhetssertifikat and accepts answers signed with the service's
/// certificate only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientWsSecurity {
    /// The virksomhetssertifikat (PEM) that signs requests; answers are encrypted to it.
    pub certificate: PathBuf,
    /// Its private key (PEM): signs, and decrypts answers.
    pub key: PathBuf,
    /// Oppslagstjenesten's certificate (PEM), pinned: the only key an answer verifies with.
    pub service_certificate: PathBuf,
}

impl ClientWsSecurity {
    pub(super) fn validate(&mut self, check: &mut Checker<'_>, key: &str) {
        self.certificate = check.file(&format!("{key}.certificate"), &self.certificate);
        self.key = check.file(&format!("{key}.key"), &self.key);
        self.service_certificate = check.file(&format!("{key}.service_certificate"), &self.service_certificate);
    }
}

/// The simulator verifies signed requests against `trusted_cas` and answers them signed with its
/// certificate and encrypted to the request's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerWsSecurity {
    /// `required`, `optional` (the default: unsigned requests get unsigned answers) or `off`.
    #[serde(default = "optional")]
    pub mode: Mode,
    /// The service's certificate (PEM) and key, which sign its answers.
    pub certificate: PathBuf,
    pub key: PathBuf,
    /// CA certificates (PEM) a client's virksomhetssertifikat must chain to.
    pub trusted_cas: Vec<PathBuf>,
}

fn optional() -> Mode {
    Mode::Optional
}

impl ServerWsSecurity {
    pub(super) fn validate(&mut self, check: &mut Checker<'_>) {
        self.certificate = check.file("oppslag.ws_security.certificate", &self.certificate);
        self.key = check.file("oppslag.ws_security.key", &self.key);
        if self.trusted_cas.is_empty() && self.mode != Mode::Off {
            check.error("oppslag.ws_security.trusted_cas", "name at least one CA that client certificates chain to");
        }
        for path in &mut self.trusted_cas {
            *path = check.file("oppslag.ws_security.trusted_cas", path);
        }
    }
}
