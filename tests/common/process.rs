//! The real `portvakt` binary in its own process, on ports and a config made for the test.

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const DEADLINE: Duration = Duration::from_secs(30);

/// A port for the process under test to bind. It is taken below Linux's ephemeral range
/// (32768 and up), so no client connection or `bind(0)` elsewhere in the run can take it between
/// this check and that bind; a counter keeps one binary's tests apart, the pid keeps binaries apart.
pub fn free_port() -> u16 {
    const FIRST: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id().wrapping_mul(97);
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + offset.wrapping_add(n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {FIRST} and {}", FIRST + SPAN)
}

pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Poll `check` until it returns `Some`, or panic with `what` at the deadline.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// The `portvakt` binary, running in its own process on a config written for the test.
pub struct Portvakt {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub gateway: String,
    pub admin: String,
    log: PathBuf,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_portvakt")
}

/// Ports for one test process: gateway, admin, issuer, simulator.
pub struct Ports {
    pub gateway: u16,
    pub admin: u16,
    pub issuer: u16,
    pub oppslag: u16,
}

impl Ports {
    pub fn new() -> Ports {
        Ports { gateway: free_port(), admin: free_port(), issuer: free_port(), oppslag: free_port() }
    }
}

impl Portvakt {
    /// Write `config` (with `{dir}` replaced by the temp folder) and start the binary.
    pub fn spawn(config: &str, ports: &Ports) -> Portvakt {
        Portvakt::spawn_with_files(config, ports, &[])
    }

    /// As `spawn`, first writing `files` (name, content) into the temp folder.
    pub fn spawn_with_files(config: &str, ports: &Ports, files: &[(&str, String)]) -> Portvakt {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).expect("write a test file");
        }
        let config = config.replace("{dir}", &dir.path().display().to_string());
        let config_path = dir.path().join("portvakt.toml");
        std::fs::write(&config_path, config).expect("write config");
        let log = dir.path().join("portvakt.log");
        let child = Command::new(binary())
            .args(["serve", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "info,portvakt=debug")
            .stdout(Stdio::from(std::fs::File::create(dir.path().join("stdout.log")).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("start portvakt");
        Portvakt {
            child: Some(child),
            dir,
            config_path,
            gateway: format!("http://127.0.0.1:{}", ports.gateway),
            admin: format!("http://127.0.0.1:{}", ports.admin),
            log,
        }
    }

    /// Start and wait for `/readyz` to answer 200.
    pub async fn start(config: &str, ports: &Ports) -> Portvakt {
        let mut portvakt = Portvakt::spawn(config, ports);
        portvakt.wait_for("/readyz").await;
        portvakt
    }

    /// Wait until an admin path answers 200 (or the process dies).
    pub async fn wait_for(&mut self, path: &str) {
        let client = reqwest::Client::new();
        let url = format!("{}{path}", self.admin);
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("portvakt exited with {status} before {path} answered:\n{}", self.logs());
            }
            if let Ok(response) = client.get(&url).send().await
                && response.status() == 200
            {
                return;
            }
            assert!(start.elapsed() < DEADLINE, "{path} never answered 200:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or_default()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args(["-s", signal, &self.pid().to_string()]).status().expect("kill");
        assert!(status.success());
    }

    /// Wait for the process to exit and return its exit code.
    pub async fn wait_exit(&mut self) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return status.code();
            }
            assert!(start.elapsed() < DEADLINE, "portvakt did not exit:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.admin)).await.unwrap().text().await.unwrap()
    }
}

impl Drop for Portvakt {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The value of a counter series in Prometheus text, 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines().find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
}

/// A `[server]` section keeping the test's pid file and upgrade socket in its own folder.
pub fn server_section() -> String {
    "[server]\nupgrade_socket = \"{dir}/upgrade.sock\"\npid_file = \"{dir}/portvakt.pid\"\ngrace_period_seconds = 1\ngraceful_shutdown_timeout_seconds = 2\n".into()
}

pub fn project_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Send a request exactly as written (clients normalise paths like `/a/../b` before sending)
/// and return the status and body.
pub async fn raw_request(base: &str, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// The default config (`config/portvakt.toml`) moved to the test's ports, with its relative
/// paths made absolute, and `extra` TOML appended.
pub fn default_config(ports: &Ports, extra: &str) -> String {
    let text = std::fs::read_to_string(project_path("config/portvakt.toml")).expect("the default config");
    let config_dir = project_path("config");
    let text = text
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{}", ports.gateway))
        .replace("127.0.0.1:9000", &format!("127.0.0.1:{}", ports.issuer))
        .replace("127.0.0.1:9100", &format!("127.0.0.1:{}", ports.oppslag))
        .replace("127.0.0.1:9901", &format!("127.0.0.1:{}", ports.admin))
        .replace("= \"dev/", &format!("= \"{}/dev/", config_dir.display()))
        .replace("[\"dev/", &format!("[\"{}/dev/", config_dir.display()))
        .replace("= \"register", &format!("= \"{}/register", config_dir.display()))
        // Each test process keeps its own audit chain.
        .replace("dir = \"../var/audit\"", "dir = \"{dir}/audit\"")
        .replace(
            "[server]\n",
            "[server]\nupgrade_socket = \"{dir}/upgrade.sock\"\npid_file = \"{dir}/portvakt.pid\"\n",
        );
    format!("{text}\n{extra}\n")
}

/// `config` without the table `header` (its lines up to the next table).
pub fn without_table(config: &str, header: &str) -> String {
    let mut out = String::with_capacity(config.len());
    let mut skipping = false;
    for line in config.lines() {
        if line.starts_with('[') {
            skipping = line.trim() == header;
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(out.len() < config.len(), "the config has no {header}");
    out
}

pub fn issuer_url(ports: &Ports) -> String {
    format!("http://127.0.0.1:{}", ports.issuer)
}
