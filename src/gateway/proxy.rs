//! The Pingora phases: admit (path, route, token, policy, rate) in `request_filter`, then
//! proxy with the verified claims as headers, then count and log in `logging`.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::HeaderValue;
use pingora::ErrorType;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::{HttpPeer, ProxyHttp, Result, Session};
use pingora::proxy::FailToProxy;
use serde_json::json;

use super::GatewayState;
use super::path::check_request_path;
use super::respond::{self, Answer};
use super::routes::{Denial, Lookup, Route, Target};
use crate::admin::metrics::Metrics;
use crate::config::Handler;
use crate::personid;
use crate::token::VerifiedToken;
use crate::web::bearer::{self, BearerError};

pub struct Gateway {
    state: Arc<ArcSwap<GatewayState>>,
    metrics: Arc<Metrics>,
    access_log: bool,
}

pub struct RequestCtx {
    started: Instant,
    request_id: String,
    /// The state this request started with: a reload mid-request does not change its route.
    state: Arc<GatewayState>,
    route: Option<Arc<str>>,
    route_index: Option<usize>,
    token: Option<Arc<VerifiedToken>>,
    upstream_tries: usize,
}

impl Gateway {
    pub fn new(state: Arc<ArcSwap<GatewayState>>, metrics: Arc<Metrics>, access_log: bool) -> Gateway {
        Gateway { state, metrics, access_log }
    }

    fn route<'a>(&self, ctx: &'a RequestCtx) -> Option<&'a Route> {
        ctx.route_index.and_then(|i| ctx.state.routes.get(i))
    }

    /// Decide whether the request may go on; `Ok(None)` means proxy it.
    async fn admit(&self, session: &mut Session, ctx: &mut RequestCtx) -> Option<Answer> {
        let state = ctx.state.clone();
        let header = session.req_header();
        let path = match check_request_path(header.raw_path()) {
            Ok(path) => path,
            Err(reason) => return Some(Answer::error(400, "invalid_request", reason)),
        };
        let (index, route) = match state.routes.lookup(&header.method, path) {
            Lookup::Found(index, route) => (index, route),
            Lookup::MethodNotAllowed(allowed) => {
                let allow = allowed.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ");
                return Some(
                    Answer::error(405, "method_not_allowed", &format!("this path takes {allow}"))
                        .with_header("allow", allow),
                );
            }
            Lookup::NotFound => return Some(Answer::error(404, "not_found", "no route serves this path")),
        };
        ctx.route = Some(route.name.clone());
        ctx.route_index = Some(index);
        let token = match bearer::extract(&header.headers) {
            Ok(token) => token,
            Err(BearerError::Repeated) => return Some(Answer::invalid_request(BearerError::Repeated.describe())),
            Err(e) => {
                self.metrics.token_refused(crate::token::Reason::Missing);
                return Some(Answer::invalid_token(e.describe()));
            }
        };
        let verified = match state.validator.validate(token).await {
            Ok(verified) => verified,
            Err(e) => return Some(Answer::for_token_error(&e, state.retry_after_seconds)),
        };
        ctx.token = Some(verified.clone());
        if let Err(denial) = route.policy.check(&verified) {
            return Some(match denial {
                Denial::NotForThisRoute(description) => Answer::invalid_token(&description),
                Denial::Scope { scope, description } => Answer::insufficient_scope(&scope, &description),
                Denial::StepUp(acr) => Answer::step_up(acr, &format!("this resource needs a login at {acr} or higher")),
            });
        }
        if let Some(limit) = &route.rate_limit
            && !limit.admit(verified.rate_key())
        {
            self.metrics.rate_limited.with_label_values(&[&route.name]).inc();
            return Some(
                Answer::error(429, "rate_limited", &format!("more than {} requests per second", limit.per_second))
                    .with_header("retry-after", "1"),
            );
        }
        match &route.target {
            Target::Upstream(_) => {
                if route.idempotent {
                    // Keep the body so a retry on another connection can send it again.
                    session.as_mut().enable_retry_buffering();
                }
                None
            }
            Target::Handler(handler) => Some(self.handle(session, &state, *handler, &verified).await),
        }
    }

    /// A built-in handler: the gateway answers itself.
    async fn handle(
        &self,
        session: &mut Session,
        state: &GatewayState,
        handler: Handler,
        token: &VerifiedToken,
    ) -> Answer {
        let Some(krr) = &state.krr else {
            return Answer::error(503, "temporarily_unavailable", "the KRR facade is not configured");
        };
        let headers = session.req_header().headers.clone();
        match handler {
            Handler::KrrPersoner => match read_body(session, state.max_body_bytes).await {
                Ok(body) => krr.personer(&headers, &body, token).await,
                Err(answer) => answer,
            },
            Handler::KrrPerson => krr.person(&headers, token).await,
        }
    }
}

/// Read a request body the gateway answers itself, refusing more than `max` bytes.
async fn read_body(session: &mut Session, max: usize) -> Result<Bytes, Answer> {
    let too_large = || Answer::error(413, "invalid_request", &format!("the request body is larger than {max} bytes"));
    let header = session.req_header();
    let declared = header
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > max) {
        return Err(too_large());
    }
    let expects_continue = header
        .headers
        .get(http::header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if expects_continue {
        let go_on = ResponseHeader::build(100, None).map_err(|_| too_large())?;
        if session.write_response_header(Box::new(go_on), false).await.is_err() {
            return Err(Answer::error(400, "invalid_request", "the client went away"));
        }
    }
    let mut body = BytesMut::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > max {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(e) => {
                return Err(Answer::error(400, "invalid_request", &format!("the request body could not be read: {e}")));
            }
        }
    }
}

fn valid_request_id(value: &HeaderValue) -> Option<&str> {
    let value = value.to_str().ok()?;
    (!value.is_empty()
        && value.len() <= 128
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)))
    .then_some(value)
}

/// A request id: a random per-process prefix and a counter. Unique, cheap (no RNG call per
/// request, which perf showed), and not meant to be secret.
fn new_request_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 8];
        let _ = aws_lc_rs::rand::fill(&mut bytes);
        u64::from_le_bytes(bytes)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix:016x}{n:08x}")
}

fn set_header(request: &mut RequestHeader, name: &http::HeaderName, value: &str) -> Result<()> {
    request.insert_header(name.clone(), value)
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            request_id: String::new(),
            state: self.state.load_full(),
            route: None,
            route_index: None,
            token: None,
            upstream_tries: 0,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.request_id = session
            .req_header()
            .headers
            .get("x-request-id")
            .and_then(valid_request_id)
            .map_or_else(new_request_id, str::to_owned);
        match self.admit(session, ctx).await {
            None => Ok(false),
            Some(answer) => {
                respond::send(session, &answer, &ctx.request_id).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        ctx.upstream_tries += 1;
        let upstream = match self.route(ctx).map(|r| &r.target) {
            Some(Target::Upstream(upstream)) => upstream,
            _ => return Err(pingora::Error::explain(ErrorType::InternalError, "no upstream for this route")),
        };
        upstream.peer().ok_or_else(|| pingora::Error::explain(ErrorType::HTTPStatus(503), "no healthy upstream"))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let forward = &ctx.state.forward;
        for name in forward.all() {
            request.remove_header(name);
        }
        // CGI-style upstreams read `x_portvakt_pid` as `x-portvakt-pid`: those go too.
        let spoofed: Vec<http::HeaderName> = request
            .headers
            .keys()
            .filter(|name| name.as_str().contains('_'))
            .filter(|name| {
                let dashed = name.as_str().replace('_', "-");
                forward.all().any(|f| f.as_str() == dashed)
            })
            .cloned()
            .collect();
        for name in spoofed {
            request.remove_header(&name);
        }
        if !self.route(ctx).is_some_and(|r| r.forward_token) {
            request.remove_header(&http::header::AUTHORIZATION);
        }
        if let Some(token) = &ctx.token {
            if let Some(pid) = &token.pid {
                set_header(request, &forward.pid, pid)?;
            }
            if let Some(client_id) = &token.client_id {
                set_header(request, &forward.client_id, client_id)?;
            }
            if let Some(orgno) = &token.consumer_orgno {
                set_header(request, &forward.consumer, orgno)?;
            }
            if !token.scopes.is_empty() {
                set_header(request, &forward.scope, &token.scopes.join(" "))?;
            }
            if let Some(acr) = &token.acr {
                set_header(request, &forward.acr, acr)?;
            }
            set_header(request, &forward.issuer, &token.issuer)?;
        }
        request.insert_header("x-request-id", ctx.request_id.as_str())?;
        if let Some(addr) = session.client_addr().and_then(|a| a.as_inet()) {
            let client = addr.ip().to_string();
            let forwarded_for = match request.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
                Some(previous) => format!("{previous}, {client}"),
                None => client,
            };
            request.insert_header("x-forwarded-for", forwarded_for)?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        response.insert_header("x-request-id", ctx.request_id.as_str())
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<pingora::Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<pingora::Error> {
        // Pingora's rule (retry only idempotent methods, and only on a reused connection),
        // widened to every method on routes declared idempotent.
        let mut e = e.more_context(format!("Peer: {peer}"));
        let idempotent = session.req_header().method.is_idempotent() || self.route(ctx).is_some_and(|r| r.idempotent);
        if !idempotent || session.as_ref().retry_buffer_truncated() {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<pingora::Error>,
    ) -> Box<pingora::Error> {
        // Try the next backend once per backend, never more.
        let backends = match self.route(ctx).map(|r| &r.target) {
            Some(Target::Upstream(u)) => u.backend_count(),
            _ => 1,
        };
        if ctx.upstream_tries < backends {
            e.set_retry(true);
        }
        e
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &pingora::Error, ctx: &mut RequestCtx) -> FailToProxy {
        use pingora::ErrorSource;
        let (status, error, description) = match e.etype() {
            ErrorType::HTTPStatus(503) => (503, "upstream_unavailable", "no healthy upstream for this route"),
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                (504, "upstream_timeout", "the upstream did not answer in time")
            }
            _ => match e.esource() {
                ErrorSource::Upstream => (502, "bad_gateway", "the upstream could not be reached or answered badly"),
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => (0, "", ""),
                    _ => (400, "invalid_request", "the request could not be read"),
                },
                _ => (500, "server_error", "the gateway failed to handle the request"),
            },
        };
        if status > 0 {
            let answer = Answer::json(status, &json!({"error": error, "error_description": description}));
            if let Err(write_error) = respond::send(session, &answer, &ctx.request_id).await {
                tracing::debug!(error = %write_error, "cannot send the error answer");
            }
        }
        FailToProxy { error_code: status, can_reuse_downstream: false }
    }

    async fn logging(&self, session: &mut Session, error: Option<&pingora::Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let route = ctx.route.as_deref().unwrap_or("-");
        let elapsed = ctx.started.elapsed();
        self.metrics.requests.with_label_values(&[route, status_label(status)]).inc();
        self.metrics.request_duration.with_label_values(&[route]).observe(elapsed.as_secs_f64());
        if self.access_log {
            let header = session.req_header();
            let path = personid::mask_in_text(&String::from_utf8_lossy(header.raw_path())).into_owned();
            let token = ctx.token.as_deref();
            tracing::info!(
                target: "portvakt::access",
                request_id = %ctx.request_id,
                method = %header.method,
                path = %path,
                route,
                status,
                client_id = token.and_then(|t| t.client_id.as_deref()).unwrap_or("-"),
                pid = %token.and_then(|t| t.pid.as_deref()).map(personid::mask).unwrap_or_default(),
                latency_us = elapsed.as_micros() as u64,
                error = error.map(|e| e.to_string()).unwrap_or_default(),
            );
        }
    }
}

fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        204 => "204",
        301 => "301",
        302 => "302",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        413 => "413",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        0 => "0",
        s if s < 200 => "1xx",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}
