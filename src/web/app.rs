//! Axum routers served on Pingora listeners. The issuer, the simulator and the admin endpoints
//! are axum apps; running them on Pingora's listeners (rather than axum's own) gives every role
//! the same graceful shutdown and the same zero-downtime listener hand-over as the gateway, and
//! the same reading of request heads (`connection`): Pingora's own HTTP app loop has no overall
//! head deadline and logs an unreadable head, bytes and all, at ERROR.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use axum::Router;
use axum::extract::ConnectInfo;
use pingora::apps::ServerApp;
use pingora::http::ResponseHeader;
use pingora::protocols::Stream;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use tower::ServiceExt;

use super::connection::{ClientLimits, Connection, read_body};

/// Answers larger than this are a bug, not a response: refuse rather than buffer them.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// The router is swappable: a configuration reload replaces it between two requests.
pub type SharedRouter = Arc<ArcSwap<Router>>;

pub struct AxumApp {
    router: SharedRouter,
    max_request_bytes: usize,
    limits: ClientLimits,
}

impl AxumApp {
    pub fn new(router: SharedRouter, max_request_bytes: usize, limits: ClientLimits) -> AxumApp {
        AxumApp { router, max_request_bytes, limits }
    }

    pub fn fixed(router: Router, max_request_bytes: usize, limits: ClientLimits) -> AxumApp {
        AxumApp::new(Arc::new(ArcSwap::from_pointee(router)), max_request_bytes, limits)
    }
}

fn plain(status: u16, message: &str) -> http::Response<Vec<u8>> {
    let mut response = http::Response::new(message.as_bytes().to_vec());
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    response.headers_mut().insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(message.len()));
    response
}

#[async_trait]
impl ServerApp for AxumApp {
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let mut next = Some(Connection::new(stream));
        while let Some(client) = next.take() {
            let Some(mut session) = client.next_request(self.limits).await else { break };
            if *shutdown.borrow() {
                session.set_keepalive(None);
            }
            let (parts, body) = self.response(&mut session).await.into_parts();
            let header: ResponseHeader = parts.into();
            let written = match session.write_response_header(Box::new(header)).await {
                Ok(()) => session.write_response_body(body.into(), true).await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                tracing::debug!(error = e.etype().as_str(), "cannot write an answer: the client went away");
                break;
            }
            next = Connection::after(session.finish().await);
        }
        None
    }
}

impl AxumApp {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let parts = session.req_header().as_owned_parts();
        let until = Instant::now() + self.limits.body;
        let mut body = Vec::new();
        loop {
            match read_body(session, until).await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > self.max_request_bytes {
                        session.set_keepalive(None);
                        return plain(413, "the request body is too large\n");
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.etype() == &pingora::ErrorType::ReadTimedout => {
                    session.set_keepalive(None);
                    return plain(408, "the request body did not arrive in time\n");
                }
                Err(e) => {
                    session.set_keepalive(None);
                    return plain(400, &format!("the request body could not be read: {}\n", e.etype().as_str()));
                }
            }
        }
        let mut request = http::Request::from_parts(parts, axum::body::Body::from(body));
        if let Some(addr) = session.client_addr().and_then(|a| a.as_inet()) {
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(*addr));
        }
        let router: Router = Router::clone(&self.router.load());
        let response = match router.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (mut parts, body) = response.into_parts();
        let bytes = match axum::body::to_bytes(body, MAX_RESPONSE_BYTES).await {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(error = %e, "a handler's answer could not be read");
                return plain(500, "internal error\n");
            }
        };
        parts.headers.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(bytes.len()));
        // Takes the buffer over when it is not shared: a 1,000-person answer is a megabyte.
        http::Response::from_parts(parts, Vec::from(bytes))
    }
}
