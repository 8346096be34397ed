//! The issuer's state on Redis, shared by every issuer instance that points at it: one server,
//! a cluster or a master found through Sentinel, chosen by config.
//!
//! - Every single-use operation is one atomic command: `SET … NX` (used assertion ids, refresh
//!   tokens' first use) and `GETDEL` (codes, PAR requests). Nothing reads and then writes.
//! - Every key has a TTL from its lifetime (`PX`), and the configured prefix.
//! - A person's login history is a list and their newest Level4 login a key beside it, both
//!   under one hash tag so that a Lua script updates them together, also on a cluster.
//! - Values carry a version (`v1:` before the JSON), so a rolling upgrade can read both shapes.
//! - Every command has a deadline; an unreachable or slow Redis is [`StoreError::Unavailable`]
//!   (503 with `Retry-After`), never a hang and never a single-use item accepted twice.
//! - The connection is made lazily and remade after a failure: a restarted Redis is used again
//!   without a restart of Portvakt.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use tokio::sync::{Mutex, OnceCell};

use super::{LoginRecord, Space, Store, StoreError};
use crate::admin::metrics::{Metrics, StoreOp};
use crate::config::{RedisSettings, RedisTopology, Secret, StoreSettings};
use crate::error::{Context, Result};
use crate::token::Acr;
use crate::token::verify::unix_now;

const LOGIN_RECORD: &str = "login record";

/// The version written before every value.
const VERSION: &[u8] = b"v1:";

/// Append a login, keep the newest `max`, keep the newest Level4 beside them, renew the TTL.
const RECORD_LOGIN: &str = r"
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if ARGV[4] == '1' then redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3]) end
return 1
";

enum Connection {
    /// Connected at first use (a runtime is needed, and Redis may be down at start-up); then
    /// the manager reconnects by itself.
    Single { client: redis::Client, config: ConnectionManagerConfig, manager: OnceCell<ConnectionManager> },
    /// Connected at first use; the cluster connection follows slot moves and failovers itself.
    Cluster { client: redis::cluster::ClusterClient, connection: OnceCell<ClusterConnection> },
    /// The master Sentinel names, asked again after a failure.
    Sentinel { client: Mutex<redis::sentinel::SentinelClient>, connection: ArcSwapOption<MultiplexedConnection> },
}

/// What is sent: a command, a pipeline (keys of one slot), or a script.
enum Request<'a> {
    Command(Cmd),
    Pipeline(Pipeline),
    Script(redis::ScriptInvocation<'a>),
}

impl Request<'_> {
    async fn send<T: redis::FromRedisValue>(&self, link: &mut Link) -> redis::RedisResult<T> {
        match self {
            Request::Command(cmd) => cmd.query_async(link).await,
            Request::Pipeline(pipeline) => pipeline.query_async(link).await,
            Request::Script(script) => script.invoke_async(link).await,
        }
    }
}

/// One connection of whichever kind, for one command.
enum Link {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(MultiplexedConnection),
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Single(c) => c.req_packed_command(cmd),
            Link::Cluster(c) => c.req_packed_command(cmd),
            Link::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Link::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Link::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Single(c) => c.get_db(),
            Link::Cluster(c) => c.get_db(),
            Link::Sentinel(c) => c.get_db(),
        }
    }
}

pub struct RedisStore {
    connection: Connection,
    prefix: String,
    timeout: Duration,
    retry_after: u64,
    retention: Duration,
    max_logins_per_person: usize,
    /// Login history keys are a keyed hash of the personidentifikator, never the number.
    pid_key: hmac::Key,
    record_login: redis::Script,
    metrics: Arc<Metrics>,
    /// Where it points, for messages (no credentials).
    describe: String,
    /// The last command's failure, until a command succeeds again.
    failing: ArcSwapOption<String>,
    /// A setting that makes the store unsafe (an eviction policy), until a check finds it fixed.
    unsafe_setting: ArcSwapOption<String>,
}

impl RedisStore {
    /// Set up the client; nothing is connected until the first command, so a Redis that is
    /// down at start-up makes the issuer unready and its stateful endpoints 503, not a crash.
    pub fn new(
        redis: &RedisSettings,
        limits: &StoreSettings,
        pid_secret: &Secret,
        metrics: Arc<Metrics>,
    ) -> Result<RedisStore> {
        let connection = match &redis.topology {
            RedisTopology::Single(url) => {
                let client = redis::Client::open(url.as_str()).context("the Redis URL is not usable")?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(redis.connect_timeout))
                    .set_response_timeout(Some(redis.timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(2));
                Connection::Single { client, config, manager: OnceCell::new() }
            }
            RedisTopology::Cluster(nodes) => {
                let client = redis::cluster::ClusterClientBuilder::new(nodes.iter().map(|u| u.as_str()))
                    .connection_timeout(redis.connect_timeout)
                    .response_timeout(redis.timeout)
                    // The client would resend any command after a dropped connection, GETDEL and
                    // SET NX too: a lost answer must not turn into "already used".
                    .retries(0)
                    .build()
                    .context("the Redis cluster URLs are not usable")?;
                Connection::Cluster { client, connection: OnceCell::new() }
            }
            RedisTopology::Sentinel { sentinels, master, master_password } => {
                let node = master_password.as_ref().map(|password| {
                    redis::sentinel::SentinelNodeConnectionInfo::default().set_redis_connection_info(
                        redis::RedisConnectionInfo::default().set_password(password.expose()),
                    )
                });
                let client = redis::sentinel::SentinelClient::build(
                    sentinels.iter().map(|u| u.as_str()).collect(),
                    master.clone(),
                    node,
                    redis::sentinel::SentinelServerType::Master,
                )
                .context("the Sentinel URLs are not usable")?;
                Connection::Sentinel { client: Mutex::new(client), connection: ArcSwapOption::empty() }
            }
        };
        let hosts: Vec<String> = redis
            .topology
            .urls()
            .iter()
            .map(|u| format!("{}:{}", u.host_str().unwrap_or_default(), u.port().unwrap_or(6379)))
            .collect();
        Ok(RedisStore {
            connection,
            prefix: redis.prefix.clone(),
            timeout: redis.timeout,
            retry_after: limits.retry_after_seconds,
            retention: Duration::from_secs(limits.login_history_days.saturating_mul(86_400)),
            max_logins_per_person: limits.max_logins_per_person.max(1),
            pid_key: hmac::Key::new(hmac::HMAC_SHA256, pid_secret.expose().as_bytes()),
            record_login: redis::Script::new(RECORD_LOGIN),
            metrics,
            describe: format!("Redis at {}", hosts.join(", ")),
            failing: ArcSwapOption::from_pointee(Some("not yet reached".to_owned())),
            unsafe_setting: ArcSwapOption::empty(),
        })
    }

    /// A command failed: unavailable, and with Sentinel the master asked for again next time
    /// (it may have moved).
    fn failed(&self, error: redis::RedisError) -> StoreError {
        if let Connection::Sentinel { connection, .. } = &self.connection {
            connection.store(None);
        }
        self.unavailable(error)
    }

    fn unavailable(&self, reason: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable { reason: format!("{}: {reason}", self.describe), retry_after: self.retry_after }
    }

    async fn link(&self) -> Result<Link, StoreError> {
        match &self.connection {
            Connection::Single { client, config, manager } => manager
                .get_or_try_init(|| ConnectionManager::new_with_config(client.clone(), config.clone()))
                .await
                .map(|m| Link::Single(m.clone()))
                .map_err(|e| self.unavailable(e)),
            Connection::Cluster { client, connection } => connection
                .get_or_try_init(|| client.get_async_connection())
                .await
                .map(|c| Link::Cluster(c.clone()))
                .map_err(|e| self.unavailable(e)),
            Connection::Sentinel { client, connection } => {
                if let Some(held) = connection.load_full() {
                    return Ok(Link::Sentinel(MultiplexedConnection::clone(&held)));
                }
                let fresh = client.lock().await.get_async_connection().await.map_err(|e| self.unavailable(e))?;
                connection.store(Some(Arc::new(fresh.clone())));
                Ok(Link::Sentinel(fresh))
            }
        }
    }

    /// Run one command, pipeline or script with the deadline, counting it. A request that only
    /// reads, or writes the same thing again, is sent once more when the connection turns out to
    /// have dropped (Redis restarted): the manager has reconnected by then. Single-use commands
    /// are never resent: a lost answer must not turn into "already used".
    async fn run<T: redis::FromRedisValue>(&self, op: StoreOp, request: Request<'_>) -> Result<T, StoreError> {
        let started = Instant::now();
        let resendable = matches!(op, StoreOp::Get | StoreOp::Put | StoreOp::Delete | StoreOp::Logins | StoreOp::Ping);
        let exchange = async {
            let mut link = self.link().await?;
            match request.send(&mut link).await {
                Err(e) if resendable && (e.is_connection_dropped() || e.is_io_error()) => {
                    let mut link = self.link().await?;
                    request.send(&mut link).await.map_err(|e| self.failed(e))
                }
                answer => answer.map_err(|e| self.failed(e)),
            }
        };
        // One deadline for connecting and answering (a resend included).
        let deadline = self.timeout * 2;
        let result = tokio::time::timeout(deadline, exchange).await.unwrap_or_else(|_| {
            // A master that stops answering without closing: with Sentinel, ask again.
            if let Connection::Sentinel { connection, .. } = &self.connection {
                connection.store(None);
            }
            Err(self.unavailable(format_args!("no answer within {deadline:?}")))
        });
        self.metrics.issuer.store_op(op, result.is_ok(), started.elapsed().as_secs_f64());
        match &result {
            Ok(_) if self.failing.load().is_some() => self.failing.store(None),
            Ok(_) => {}
            Err(e) => self.failing.store(Some(Arc::new(e.to_string()))),
        }
        result
    }

    fn key(&self, space: Space, key: &str) -> String {
        format!("{}{}:{key}", self.prefix, space_tag(space))
    }

    /// The history list and the newest-Level4 key of one person, under one hash tag.
    fn login_keys(&self, pid: &str) -> (String, String) {
        let mut mac = hmac::Context::with_key(&self.pid_key);
        mac.update(b"login-history\0");
        mac.update(pid.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(mac.sign().as_ref());
        (format!("{}logins:{{{tag}}}", self.prefix), format!("{}logins-level4:{{{tag}}}", self.prefix))
    }

    /// One round trip (the readiness check and `check-config`).
    async fn ping(&self) -> Result<(), StoreError> {
        self.run::<String>(StoreOp::Ping, Request::Command(redis::cmd("PING"))).await.map(|_| ())
    }
}

fn space_tag(space: Space) -> &'static str {
    match space {
        Space::Interaction => "interaction",
        Space::AuthorizationCode => "code",
        Space::PushedRequest => "par",
        Space::AssertionId => "assertion",
        Space::DpopProof => "dpop",
        Space::Session => "session",
        Space::Consent => "consent",
        Space::Grant => "grant",
        Space::RefreshToken => "refresh",
        Space::AccessToken => "access",
    }
}

fn versioned(value: &[u8]) -> Vec<u8> {
    [VERSION, value].concat()
}

/// A stored value without its version. Values written before versions (plain JSON) are read
/// as they are; an unknown version is refused rather than misread.
fn unversioned(what: &'static str, stored: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    if let Some(value) = stored.strip_prefix(VERSION) {
        return Ok(value.to_vec());
    }
    if stored.first() == Some(&b'{') {
        return Ok(stored);
    }
    Err(StoreError::Corrupt { what, reason: "a value of an unknown version".into() })
}

fn ttl_ms(ttl: Duration) -> u64 {
    ttl.as_millis().clamp(1, u64::MAX as u128) as u64
}

#[async_trait]
impl Store for RedisStore {
    async fn put(&self, space: Space, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(space, key)).arg(versioned(&value)).arg("PX").arg(ttl_ms(ttl));
        self.run(StoreOp::Put, Request::Command(cmd)).await
    }

    async fn insert_new(&self, space: Space, key: &str, value: Vec<u8>, ttl: Duration) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(space, key)).arg(versioned(&value)).arg("NX").arg("PX").arg(ttl_ms(ttl));
        let set: Option<String> = self.run(StoreOp::InsertNew, Request::Command(cmd)).await?;
        Ok(set.is_some())
    }

    async fn get(&self, space: Space, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.key(space, key));
        let found: Option<Vec<u8>> = self.run(StoreOp::Get, Request::Command(cmd)).await?;
        found.map(|v| unversioned(space.name(), v)).transpose()
    }

    async fn take(&self, space: Space, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut cmd = redis::cmd("GETDEL");
        cmd.arg(self.key(space, key));
        let found: Option<Vec<u8>> = self.run(StoreOp::Take, Request::Command(cmd)).await?;
        found.map(|v| unversioned(space.name(), v)).transpose()
    }

    async fn delete(&self, space: Space, key: &str) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.key(space, key));
        self.run(StoreOp::Delete, Request::Command(cmd)).await
    }

    async fn record_login(&self, record: LoginRecord) -> Result<(), StoreError> {
        let (history, level4) = self.login_keys(&record.pid);
        let value = versioned(&serde_json::to_vec(&record).map_err(|e| self.unavailable(e))?);
        let mut invocation = self.record_login.key(history);
        invocation
            .key(level4)
            .arg(value)
            .arg(self.max_logins_per_person)
            .arg(ttl_ms(self.retention))
            .arg(if record.acr == Acr::Level4 { "1" } else { "0" });
        self.run::<i64>(StoreOp::RecordLogin, Request::Script(invocation)).await.map(|_| ())
    }

    fn unready(&self) -> Option<String> {
        let reason = self.unsafe_setting.load_full().or_else(|| self.failing.load_full())?;
        Some(format!("the issuer's state store ({reason})"))
    }

    async fn check(&self) {
        if let Err(e) = self.ping().await {
            tracing::warn!(error = %e, "the issuer's state store does not answer");
            return;
        }
        // A Redis that evicts keys under memory pressure could forget a used assertion id or a
        // redeemed code before it expires, and accept it again. Where CONFIG is disabled
        // (managed services), the operator's setting is taken as given.
        // Asked apart from `run`: a refused CONFIG is no failure of the store.
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET").arg("maxmemory-policy");
        let asked = async {
            let mut link = self.link().await.ok()?;
            Request::Command(cmd).send::<Vec<String>>(&mut link).await.ok()
        };
        match tokio::time::timeout(self.timeout, asked).await.ok().flatten() {
            Some(answer) if answer.get(1).is_some_and(|p| p != "noeviction") => {
                let policy = answer.get(1).map(String::as_str).unwrap_or_default();
                let reason = format!(
                    "{}: maxmemory-policy is {policy}: Redis may evict used assertion ids and codes; set noeviction",
                    self.describe
                );
                if self.unsafe_setting.load().is_none() {
                    tracing::error!(%reason, "the issuer's state store is not safe to use");
                }
                self.unsafe_setting.store(Some(Arc::new(reason)));
            }
            Some(_) => self.unsafe_setting.store(None),
            None => {}
        }
    }

    async fn logins(&self, pid: &str) -> Result<Vec<LoginRecord>, StoreError> {
        let (history, level4) = self.login_keys(pid);
        let mut pipeline = redis::pipe();
        pipeline.cmd("LRANGE").arg(&history).arg(0).arg(-1).cmd("GET").arg(&level4);
        let (stored, level4): (Vec<Vec<u8>>, Option<Vec<u8>>) =
            self.run(StoreOp::Logins, Request::Pipeline(pipeline)).await?;
        let oldest = unix_now() - self.retention.as_secs() as i64;
        let mut logins = Vec::with_capacity(stored.len() + 1);
        for value in stored.into_iter().chain(level4) {
            let json = unversioned(LOGIN_RECORD, value)?;
            let record: LoginRecord = serde_json::from_slice(&json)
                .map_err(|e| StoreError::Corrupt { what: LOGIN_RECORD, reason: e.to_string() })?;
            if record.time >= oldest && record.pid == pid && !logins.contains(&record) {
                logins.push(record);
            }
        }
        logins.sort_by_key(|l| l.time);
        Ok(logins)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_a_version_and_both_shapes_read() {
        let written = versioned(br#"{"a":1}"#);
        assert!(written.starts_with(b"v1:"));
        assert_eq!(unversioned("x", written).unwrap(), br#"{"a":1}"#);
        assert_eq!(unversioned("x", br#"{"a":1}"#.to_vec()).unwrap(), br#"{"a":1}"#, "before versions: plain JSON");
        assert!(matches!(unversioned("x", b"v9:{}".to_vec()), Err(StoreError::Corrupt { .. })), "an unknown version");
    }

    #[test]
    fn keys_are_prefixed_and_a_person_is_named_by_a_keyed_hash() {
        let settings: RedisSettings = toml::from_str("url = \"redis://127.0.0.1:1\"\nprefix = \"p:\"").unwrap();
        let store =
            RedisStore::new(&settings, &StoreSettings::default(), &Secret::inline("k"), Arc::new(Metrics::new()))
                .unwrap();
        assert_eq!(store.key(Space::AuthorizationCode, "h"), "p:code:h");
        let (history, level4) = store.login_keys("23079421936");
        assert!(!history.contains("23079421936") && history.starts_with("p:logins:{"));
        let tag = |key: &str| key[key.find('{').unwrap()..].to_owned();
        assert_eq!(tag(&history), tag(&level4), "one hash tag: one cluster slot for the script");
        let other =
            RedisStore::new(&settings, &StoreSettings::default(), &Secret::inline("j"), Arc::new(Metrics::new()))
                .unwrap();
        assert_ne!(other.login_keys("23079421936").0, history, "keyed by the secret");
    }
}
