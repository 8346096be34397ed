//! `[server]`, `[log]` and `[admin]`: the process as a whole.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// Let idle worker threads take tasks from busy ones (Tokio's work stealing). Off, each
    /// thread runs its own connections, which is cheaper per request at a steady load.
    pub work_stealing: bool,
    /// After SIGTERM (or after handing the listeners to a new process): the listeners are
    /// closed at once and in-flight requests get this long to finish before the process exits.
    pub grace_period_seconds: u64,
    /// Then the runtimes get this long to wind down their remaining work.
    pub graceful_shutdown_timeout_seconds: u64,
    /// The Unix socket over which an upgrading process takes over the listeners.
    pub upgrade_socket: PathBuf,
    pub pid_file: PathBuf,
    /// On every listener: a request head must arrive whole within this long of its first byte
    /// (of the connection's opening, for its first request), or the client gets a 408 and the
    /// connection closes. A client sending its head a byte at a time cannot hold a connection.
    #[serde(rename = "request_head_timeout_ms", deserialize_with = "super::duration::millis")]
    pub request_head_timeout: Duration,
    /// On every listener: a request body must arrive whole within this long of its head's end,
    /// or the request fails (408 where an answer can still be given) and the connection closes.
    #[serde(rename = "request_body_timeout_ms", deserialize_with = "super::duration::millis")]
    pub request_body_timeout: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            environment: Environment::Development,
            threads: 1,
            work_stealing: true,
            grace_period_seconds: 3,
            graceful_shutdown_timeout_seconds: 5,
            upgrade_socket: PathBuf::from("/tmp/portvakt-upgrade.sock"),
            pid_file: PathBuf::from("/tmp/portvakt.pid"),
            request_head_timeout: Duration::from_secs(10),
            request_body_timeout: Duration::from_secs(60),
        }
    }
}

impl ServerSettings {
    pub fn client_limits(&self) -> crate::web::connection::ClientLimits {
        crate::web::connection::ClientLimits { deadline: self.request_head_timeout, body: self.request_body_timeout }
    }

    pub(super) fn validate(&self, check: &mut Checker<'_>) {
        if self.threads == 0 || self.threads > 256 {
            check.error("server.threads", "must be between 1 and 256");
        }
        if self.grace_period_seconds > 3600 {
            check.error("server.grace_period_seconds", "must be at most 3600");
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(300)).contains(&self.request_head_timeout) {
            check.error("server.request_head_timeout_ms", "must be between 100 and 300000");
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&self.request_body_timeout) {
            check.error("server.request_body_timeout_ms", "must be between 100 and 3600000");
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
