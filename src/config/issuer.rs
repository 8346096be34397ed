//! `[issuer]`: the OpenID Connect provider and Maskinporten-style token endpoint.

use std::net::SocketAddr;

use serde::Deserialize;

use super::Checker;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSettings {
    pub listen: SocketAddr,
}

impl IssuerSettings {
    pub(super) fn validate(&mut self, _check: &mut Checker<'_>) {}
}
