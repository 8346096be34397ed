//! A real `redis-server` (Debian's package) on a loopback port of its own: single, with AOF, or
//! three masters of a cluster.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::process::{DEADLINE, free_port};

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
}

impl RedisServer {
    /// No persistence: a restart loses everything.
    pub async fn start() -> RedisServer {
        RedisServer::start_with(&["--save", "", "--appendonly", "no"]).await
    }

    /// Every write in the append-only file before it is answered: a restart loses nothing.
    pub async fn start_with_aof() -> RedisServer {
        RedisServer::start_with(&["--save", "", "--appendonly", "yes", "--appendfsync", "always"]).await
    }

    pub async fn start_with(args: &[&str]) -> RedisServer {
        let clustered = args.contains(&"--cluster-enabled");
        let mut server = RedisServer {
            child: None,
            port: if clustered { cluster_port() } else { free_port() },
            dir: tempfile::tempdir().expect("temp dir"),
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        server.run().await;
        server
    }

    async fn run(&mut self) {
        // A config file, when given, must be the first argument.
        let (file, options) = match self.args.first() {
            Some(first) if !first.starts_with("--") => (Some(first.clone()), &self.args[1..]),
            _ => (None, &self.args[..]),
        };
        let child = Command::new("redis-server")
            .args(file)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--dir"])
            .arg(self.dir.path())
            .args(options)
            .stdout(Stdio::from(std::fs::File::create(self.log()).expect("redis log")))
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt install redis-server)");
        self.child = Some(child);
        let start = Instant::now();
        while self.cli(&["PING"]).as_deref() != Some("PONG") {
            assert!(start.elapsed() < DEADLINE, "redis-server did not answer:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis-cli` against this server; `None` when it does not answer.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let output = Command::new("redis-cli").args(["-p", &self.port.to_string()]).args(args).output().ok()?;
        let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        (output.status.success() && !text.starts_with("Could not connect")).then_some(text)
    }

    /// Kill it (no shutdown save): what a crash or a lost host does.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start it again on the same port and folder (its AOF, when it has one).
    pub async fn restart(&mut self) {
        self.kill();
        self.run().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free port whose cluster bus port (the port + 10000, where a cluster node also listens) is
/// free too: another test's listener there would keep the node from starting.
fn cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port <= 55_535 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// Three masters, no replicas, every slot assigned.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub async fn start() -> RedisCluster {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(
                RedisServer::start_with(&[
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "2000",
                ])
                .await,
            );
        }
        let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(output.status.success(), "cluster create: {}", String::from_utf8_lossy(&output.stdout));
        let start = Instant::now();
        while !nodes.iter().all(|n| n.cli(&["CLUSTER", "INFO"]).is_some_and(|i| i.contains("cluster_state:ok"))) {
            assert!(start.elapsed() < DEADLINE, "the cluster did not become ok");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        RedisCluster { nodes }
    }

    /// How many keys each master holds: a cluster test shows its keys spread.
    pub fn keys_per_node(&self) -> Vec<usize> {
        self.nodes.iter().map(|n| n.cli(&["DBSIZE"]).and_then(|s| s.parse().ok()).unwrap_or(0)).collect()
    }
}

/// A master, a replica of it, and one Sentinel watching them (quorum 1, quick failover).
pub struct RedisSentinel {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinel: RedisServer,
}

pub const SENTINEL_MASTER: &str = "portvakt-master";

impl RedisSentinel {
    pub async fn start() -> RedisSentinel {
        let master = RedisServer::start().await;
        let replica = RedisServer::start_with(&[
            "--save",
            "",
            "--appendonly",
            "no",
            "--replicaof",
            "127.0.0.1",
            &master.port.to_string(),
        ])
        .await;
        // Sentinel rewrites its config file: it gets one of its own.
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n\
                 sentinel failover-timeout {SENTINEL_MASTER} 3000\n",
                master.port
            ),
        )
        .expect("sentinel.conf");
        let sentinel = RedisServer::start_with(&[conf.to_str().expect("a UTF-8 path"), "--sentinel"]).await;
        std::mem::forget(dir); // the sentinel keeps writing its config there until it stops
        let start = Instant::now();
        while !sentinel
            .cli(&["SENTINEL", "replicas", SENTINEL_MASTER])
            .is_some_and(|r| r.contains(&replica.port.to_string()))
        {
            assert!(start.elapsed() < DEADLINE, "the sentinel never saw the replica");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        RedisSentinel { master, replica, sentinel }
    }

    /// The port of the master the sentinel names now.
    pub fn master_port(&self) -> Option<u16> {
        let answer = self.sentinel.cli(&["SENTINEL", "get-master-addr-by-name", SENTINEL_MASTER])?;
        answer.lines().nth(1)?.trim().parse().ok()
    }
}
