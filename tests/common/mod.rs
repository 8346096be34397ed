//! Test harness: real keys, a real JWKS server, a real upstream, and the real `portvakt`
//! binary started on ephemeral ports with a generated config. Readiness is polled with a
//! deadline; nothing sleeps for a fixed time.

#![allow(dead_code)]

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

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

/// A signing key made for the test, with its public JWK.
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub pem: String,
    pub jwk: Value,
}

impl TestKey {
    pub fn new(kid: &str, alg: Algorithm) -> TestKey {
        let rcgen_alg = match alg {
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => &rcgen::PKCS_RSA_SHA256,
            Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512 => &rcgen::PKCS_RSA_SHA256,
            Algorithm::ES256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Algorithm::ES384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            Algorithm::EdDSA => &rcgen::PKCS_ED25519,
            other => panic!("no test keys for {other:?}"),
        };
        let pair = rcgen::KeyPair::generate_for(rcgen_alg).expect("key generation");
        let pem = pair.serialize_pem();
        if alg == Algorithm::EdDSA {
            // jsonwebtoken cannot derive an Ed25519 JWK from a PKCS#8 v2 key: build it here.
            use base64::Engine;
            let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key_raw());
            let encoding = EncodingKey::from_ed_pem(pem.as_bytes()).expect("an Ed25519 key");
            let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA"});
            return TestKey { kid: kid.into(), alg, encoding, pem, jwk };
        }
        TestKey::from_pem(kid, alg, &pem)
    }

    pub fn from_pem(kid: &str, alg: Algorithm, pem: &str) -> TestKey {
        let encoding = match alg {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem.as_bytes()),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()),
            _ => EncodingKey::from_rsa_pem(pem.as_bytes()),
        }
        .expect("a PEM private key");
        let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, alg).expect("a public JWK");
        let mut jwk = serde_json::to_value(jwk).unwrap();
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        TestKey { kid: kid.into(), alg, encoding, pem: pem.into(), jwk }
    }

    /// An RFC 9068 access-token header: `typ: at+jwt` and the key's `kid`.
    pub fn header(&self) -> Header {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header.typ = Some("at+jwt".into());
        header
    }

    pub fn sign(&self, claims: &Value) -> String {
        jsonwebtoken::encode(&self.header(), claims, &self.encoding).expect("signing")
    }

    pub fn sign_with(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &self.encoding).expect("signing")
    }
}

pub fn jwks(keys: &[&TestKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
}

/// Spawn an axum app on an ephemeral port in the test's runtime.
pub async fn serve(router: Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let handle = tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await.expect("test server");
    });
    (addr, handle)
}

/// A JWKS endpoint whose keys the test changes, which counts its hits and can fail on demand.
#[derive(Clone)]
pub struct JwksServer {
    pub url: String,
    keys: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    handle: Arc<tokio::task::JoinHandle<()>>,
}

#[derive(Clone)]
struct JwksState {
    keys: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    /// The issuer the discovery document names.
    issuer: Arc<Mutex<String>>,
    base: Arc<Mutex<String>>,
}

async fn discovery_handler(State(state): State<JwksState>) -> Response {
    let issuer = state.issuer.lock().unwrap().clone();
    let base = state.base.lock().unwrap().clone();
    axum::Json(json!({"issuer": issuer, "jwks_uri": format!("{base}/jwks")})).into_response()
}

async fn jwks_handler(State(state): State<JwksState>) -> Response {
    state.hits.fetch_add(1, Ordering::SeqCst);
    if state.failing.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response();
    }
    let keys = state.keys.lock().unwrap().clone();
    axum::Json(keys).into_response()
}

impl JwksServer {
    pub async fn start(keys: Value) -> JwksServer {
        JwksServer::start_discoverable(keys, "").await
    }

    /// Also serves `/.well-known/openid-configuration` naming `issuer` and this `/jwks`.
    pub async fn start_discoverable(keys: Value, issuer: &str) -> JwksServer {
        let state = JwksState {
            keys: Arc::new(Mutex::new(keys)),
            hits: Arc::new(AtomicUsize::new(0)),
            failing: Arc::new(AtomicBool::new(false)),
            issuer: Arc::new(Mutex::new(issuer.to_owned())),
            base: Arc::new(Mutex::new(String::new())),
        };
        let router = Router::new()
            .route("/jwks", axum::routing::get(jwks_handler))
            .route("/.well-known/openid-configuration", axum::routing::get(discovery_handler))
            .with_state(state.clone());
        let (addr, handle) = serve(router).await;
        *state.base.lock().unwrap() = format!("http://{addr}");
        JwksServer {
            url: format!("http://{addr}/jwks"),
            keys: state.keys,
            hits: state.hits,
            failing: state.failing,
            handle: Arc::new(handle),
        }
    }

    pub fn set_keys(&self, keys: Value) {
        *self.keys.lock().unwrap() = keys;
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Stop listening altogether: connections are refused from now on.
    pub fn stop(&self) {
        self.handle.abort();
    }
}

/// An upstream that answers every request with what it received, as JSON, and from which
/// address (`peer`: which of the gateway's connections carried it).
pub struct EchoUpstream {
    pub addr: SocketAddr,
    pub url: String,
    pub hits: Arc<AtomicUsize>,
    handle: tokio::task::JoinHandle<()>,
}

async fn echo(
    State(hits): State<Arc<AtomicUsize>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    hits.fetch_add(1, Ordering::SeqCst);
    let mut seen = serde_json::Map::new();
    for (name, value) in &headers {
        let values = seen.entry(name.as_str().to_owned()).or_insert_with(|| json!([]));
        values.as_array_mut().unwrap().push(json!(value.to_str().unwrap_or("<binary>")));
    }
    let peer = peer.to_string();
    axum::Json(json!({"method": method.as_str(), "uri": uri.to_string(), "headers": seen, "body": body, "peer": peer}))
        .into_response()
}

impl EchoUpstream {
    pub async fn start() -> EchoUpstream {
        let hits = Arc::new(AtomicUsize::new(0));
        let router = Router::new().fallback(echo).with_state(hits.clone());
        let (addr, handle) = serve(router).await;
        EchoUpstream { addr, url: format!("http://{addr}"), hits, handle }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn stop(&self) {
        self.handle.abort();
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
        .replace(
            "[server]\n",
            "[server]\nupgrade_socket = \"{dir}/upgrade.sock\"\npid_file = \"{dir}/portvakt.pid\"\n",
        );
    format!("{text}\n{extra}\n")
}

pub fn issuer_url(ports: &Ports) -> String {
    format!("http://127.0.0.1:{}", ports.issuer)
}

/// An HTML form as served: its action and every named field with its value.
#[derive(Debug, Clone)]
pub struct Form {
    pub action: String,
    pub fields: Vec<(String, String)>,
}

impl Form {
    pub fn set(mut self, name: &str, value: &str) -> Form {
        self.fields.retain(|(n, _)| n != name);
        self.fields.push((name.to_owned(), value.to_owned()));
        self
    }
}

pub fn forms(html: &str) -> Vec<Form> {
    let document = scraper::Html::parse_document(html);
    let form_selector = scraper::Selector::parse("form").unwrap();
    let input_selector = scraper::Selector::parse("input[name]").unwrap();
    document
        .select(&form_selector)
        .map(|form| Form {
            action: form.value().attr("action").unwrap_or_default().to_owned(),
            fields: form
                .select(&input_selector)
                .map(|input| {
                    let value = input.value();
                    (
                        value.attr("name").unwrap_or_default().to_owned(),
                        value.attr("value").unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
        })
        .collect()
}

/// One answer as a browser sees it (redirects are not followed).
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

impl Page {
    /// A query (or fragment) parameter of the redirect target.
    pub fn redirect_param(&self, name: &str) -> Option<String> {
        let location = self.location.as_deref()?;
        let url = url::Url::parse(location).ok()?;
        let from_query = url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
        from_query.or_else(|| {
            url::form_urlencoded::parse(url.fragment()?.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        })
    }
}

/// A cookie-keeping HTTP client that stops at every redirect, like a browser under test.
pub struct Browser {
    http: reqwest::Client,
    cookies: Mutex<std::collections::BTreeMap<String, String>>,
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
            cookies: Mutex::new(Default::default()),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies.lock().unwrap().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.lock().unwrap().get(name).cloned()
    }

    async fn finish(&self, response: reqwest::Response) -> Page {
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attributes.contains("Max-Age=0") {
                self.cookies.lock().unwrap().remove(name.trim());
            } else {
                self.cookies.lock().unwrap().insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        let status = response.status().as_u16();
        let location = response.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
        Page { status, location, body: response.text().await.unwrap() }
    }

    pub async fn get(&self, url: &str) -> Page {
        let response = self.http.get(url).header("cookie", self.cookie_header()).send().await.expect("GET");
        self.finish(response).await
    }

    /// Submit `form` (as served, with changes) relative to `base`.
    pub async fn submit(&self, base: &str, form: &Form) -> Page {
        let url = if form.action.starts_with("http") { form.action.clone() } else { format!("{base}{}", form.action) };
        let response =
            self.http.post(url).header("cookie", self.cookie_header()).form(&form.fields).send().await.expect("POST");
        self.finish(response).await
    }
}

impl Default for Browser {
    fn default() -> Self {
        Browser::new()
    }
}

/// Validate SOAP messages against the published 16-02 schemas (inside a strict SOAP 1.2
/// envelope schema) with xmllint. Panics naming the file and xmllint's complaint.
pub fn validate_soap(messages: &[String]) {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = messages
        .iter()
        .enumerate()
        .map(|(i, xml)| {
            let path = dir.path().join(format!("message-{i}.xml"));
            std::fs::write(&path, xml).unwrap();
            path
        })
        .collect();
    for chunk in files.chunks(200) {
        let output = Command::new("xmllint")
            .arg("--noout")
            .arg("--schema")
            .arg(project_path("tests/fixtures/oppslagstjeneste-envelope.xsd"))
            .args(chunk)
            .output()
            .expect("xmllint (Debian: libxml2-utils) must be installed to validate SOAP against the XSD");
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            let first_bad = chunk.iter().find(|f| !stderr.contains(&format!("{} validates", f.display())));
            let sample = first_bad.map(|f| std::fs::read_to_string(f).unwrap().chars().take(2000).collect::<String>());
            panic!("a SOAP message does not validate:\n{stderr}\n{}", sample.unwrap_or_default());
        }
    }
}

/// The demo machine client of the default config (its virksomhetssertifikat sent as x5c).
pub fn demo_maskinporten(issuer: &str) -> portvakt::client::MaskinportenClient {
    let dev = project_path("config/dev");
    portvakt::client::MaskinportenClient::from_files(
        issuer,
        "demo-maskinporten",
        &dev.join("demo-maskinporten.key.pem"),
        Some(&dev.join("demo-maskinporten.cert.pem")),
        None,
    )
    .unwrap()
}

/// A machine token from the running issuer for `scopes` (the demo client, x5c).
pub async fn machine_token(issuer: &str, scopes: &[&str]) -> String {
    machine_token_with(issuer, scopes, &serde_json::json!({})).await
}

/// As `machine_token`, with `extra` claims in the grant assertion (a `resource`, say).
pub async fn machine_token_with(issuer: &str, scopes: &[&str], extra: &Value) -> String {
    let answer =
        demo_maskinporten(issuer).token(&reqwest::Client::new(), scopes, extra).await.expect("a machine token");
    answer["access_token"].as_str().unwrap().to_owned()
}
