//! Servers a test stands up on loopback: a JWKS endpoint it controls and an echoing upstream.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

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
