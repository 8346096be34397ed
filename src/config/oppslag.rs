//! `[oppslag]`: the Oppslagstjenesten simulator.

use std::net::SocketAddr;

use serde::Deserialize;

use super::Checker;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OppslagSettings {
    pub listen: SocketAddr,
}

impl OppslagSettings {
    pub(super) fn validate(&mut self, _check: &mut Checker<'_>) {}
}
