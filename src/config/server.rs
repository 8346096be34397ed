//! `[server]`, `[log]` and `[admin]`: the process as a whole.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::Checker;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Development,
    Production,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// `production` refuses development material (`config/dev/`) and inline secrets.
    pub environment: Environment,
    /// Worker threads per listener.
    pub threads: usize,
    /// After SIGTERM: seconds to keep accepting before stopping (lets a load balancer notice).
    pub grace_period_seconds: u64,
    /// After SIGTERM: the longest wait for in-flight requests to finish.
    pub graceful_shutdown_timeout_seconds: u64,
    /// The Unix socket over which an upgrading process takes over the listeners.
    pub upgrade_socket: PathBuf,
    pub pid_file: PathBuf,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            environment: Environment::Development,
            threads: 1,
            grace_period_seconds: 0,
            graceful_shutdown_timeout_seconds: 10,
            upgrade_socket: PathBuf::from("/tmp/portvakt-upgrade.sock"),
            pid_file: PathBuf::from("/tmp/portvakt.pid"),
        }
    }
}

impl ServerSettings {
    pub(super) fn validate(&self, check: &mut Checker<'_>) {
        if self.threads == 0 || self.threads > 256 {
            check.error("server.threads", "must be between 1 and 256");
        }
        if self.graceful_shutdown_timeout_seconds > 3600 {
            check.error("server.graceful_shutdown_timeout_seconds", "must be at most 3600");
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// A `tracing` filter such as `info` or `portvakt=debug,pingora=warn`; `RUST_LOG` wins.
    pub level: String,
    pub format: LogFormat,
    /// One line per request at `info` (method, path, route, status, client, latency).
    pub access_log: bool,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings { level: "info".into(), format: LogFormat::Text, access_log: true }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// `/metrics`, `/healthz`, `/readyz` and `POST /reload`. Keep it off the public network.
    pub listen: SocketAddr,
}
