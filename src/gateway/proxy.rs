//! What the gateway does with one request, apart from moving its bytes (`engine`): admit it
//! (path, route, token, policy, rate), write the upstream request with the verified claims as
//! headers, mark the answer, then count and log it.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue, header};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::{OrErr, Result};

use super::GatewayState;
use super::error::GatewayError;
use super::path::check_request_path;
use super::respond::Answer;
use super::routes::{Lookup, Route, Target};
use super::upstream::wire::{RequestBody, RequestHead, Response, content_length, list_items};
use super::validator::LastToken;
use crate::admin::metrics::Metrics;
use crate::config::Handler;
use crate::personid;
use crate::token::{TokenError, VerifiedToken};
use crate::web::bearer::{self, BearerError};

pub struct Gateway {
    state: Arc<ArcSwap<GatewayState>>,
    metrics: Arc<Metrics>,
    access_log: bool,
}

pub struct RequestCtx {
    started: Instant,
    /// The request's body must have arrived by then.
    pub body_until: Instant,
    /// A header value from the start: it goes into the upstream request and the answer.
    request_id: HeaderValue,
    /// The state this request started with: a reload mid-request does not change its route.
    state: Arc<GatewayState>,
    route: Option<Arc<str>>,
    route_index: Option<usize>,
    token: Option<Arc<VerifiedToken>>,
}

impl Gateway {
    pub fn new(state: Arc<ArcSwap<GatewayState>>, metrics: Arc<Metrics>, access_log: bool) -> Gateway {
        Gateway { state, metrics, access_log }
    }

    pub fn new_ctx(&self, body_timeout: std::time::Duration) -> RequestCtx {
        let started = Instant::now();
        RequestCtx {
            started,
            body_until: started + body_timeout,
            request_id: HeaderValue::from_static("-"),
            state: self.state.load_full(),
            route: None,
            route_index: None,
            token: None,
        }
    }

    /// The route the request was admitted on.
    pub fn route<'a>(&self, ctx: &'a RequestCtx) -> Option<&'a Route> {
        ctx.route_index.and_then(|i| ctx.state.routes.get(i))
    }

    /// Name the request, then decide whether it goes upstream or gets an answer.
    pub async fn admit_request(
        &self,
        session: &mut ServerSession,
        ctx: &mut RequestCtx,
        last_token: &mut Option<LastToken>,
    ) -> Result<Admission, GatewayError> {
        ctx.request_id = match session.req_header().headers.get(&X_REQUEST_ID) {
            Some(id) if valid_request_id(id) => id.clone(),
            _ => new_request_id(),
        };
        self.admit(session, ctx, last_token).await
    }

    async fn admit(
        &self,
        session: &mut ServerSession,
        ctx: &mut RequestCtx,
        last_token: &mut Option<LastToken>,
    ) -> Result<Admission, GatewayError> {
        let state = ctx.state.clone();
        let header = session.req_header();
        check_message(header)?;
        let path = check_request_path(header.raw_path()).map_err(|reason| GatewayError::BadRequest(reason.into()))?;
        let (index, route) = match state.routes.lookup(&header.method, path) {
            Lookup::Found(index, route) => (index, route),
            Lookup::MethodNotAllowed(allowed) => {
                let allow = allowed.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ");
                return Err(GatewayError::MethodNotAllowed(allow));
            }
            Lookup::NotFound => return Err(GatewayError::NoRoute),
        };
        ctx.route = Some(route.name.clone());
        ctx.route_index = Some(index);
        let token = bearer::extract(&header.headers).map_err(|e| match e {
            BearerError::Repeated => GatewayError::BadAuthorization(BearerError::Repeated.describe()),
            e => {
                self.metrics.token_refused(crate::token::Reason::Missing);
                GatewayError::token(TokenError::new(crate::token::Reason::Missing, e.describe()), 0)
            }
        })?;
        let client = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        let verified = state
            .validator
            .validate_on_connection(token, client, last_token)
            .await
            .map_err(|e| GatewayError::token(e, state.retry_after_seconds))?;
        ctx.token = Some(verified.clone());
        route.policy.check(&verified)?;
        if let Some(limit) = &route.rate_limit
            && !limit.admit(verified.rate_key())
        {
            self.metrics.rate_limited.with_label_values(&[&route.name]).inc();
            return Err(GatewayError::RateLimited(limit.per_second));
        }
        match &route.target {
            Target::Upstream(_) => Ok(Admission::Forward),
            Target::Handler(handler) => self.handle(session, ctx, *handler, &verified).await.map(Admission::Answer),
        }
    }

    /// A built-in handler: the gateway answers itself.
    async fn handle(
        &self,
        session: &mut ServerSession,
        ctx: &RequestCtx,
        handler: Handler,
        token: &VerifiedToken,
    ) -> Result<Answer, GatewayError> {
        let state = &ctx.state;
        let krr = state.krr.as_ref().ok_or_else(|| GatewayError::Unavailable {
            description: "the KRR facade is not configured".into(),
            retry_after: state.retry_after_seconds,
        })?;
        let headers = session.req_header().headers.clone();
        let body = match handler {
            Handler::KrrPersoner => {
                let body = read_body(session, state.max_body_bytes, ctx.body_until).await?;
                krr.personer(&headers, &body, token).await?
            }
            Handler::KrrPerson => krr.person(&headers, token).await?,
        };
        Ok(Answer::json_bytes(200, body))
    }
}

/// What becomes of an admitted request.
pub enum Admission {
    /// It goes to the route's upstream.
    Forward,
    /// The gateway answered it itself (a built-in handler).
    Answer(Answer),
}

/// What Pingora's reader lets through and the gateway does not: HTTP/1.1 without `Host` (RFC
/// 9112 §3.2), and a transfer coding other than one `chunked` (RFC 9112 §6.1: 501), which the
/// gateway would otherwise drop without a word when it re-chunks the body.
fn check_message(header: &pingora::http::RequestHeader) -> std::result::Result<(), GatewayError> {
    if header.version == http::Version::HTTP_11 && !header.headers.contains_key(header::HOST) {
        return Err(GatewayError::BadRequest("an HTTP/1.1 request needs a Host header".into()));
    }
    let mut codings = header.headers.get_all(header::TRANSFER_ENCODING).iter().flat_map(|v| list_items(v.as_bytes()));
    match (codings.next(), codings.next()) {
        (None, _) => Ok(()),
        (Some(coding), None) if coding.eq_ignore_ascii_case(b"chunked") => Ok(()),
        _ => Err(GatewayError::UnsupportedTransferCoding),
    }
}

/// Read a request body the gateway answers itself, refusing more than `max` bytes or one that
/// has not arrived by `until`.
async fn read_body(
    session: &mut ServerSession,
    max: usize,
    until: Instant,
) -> std::result::Result<Bytes, GatewayError> {
    let header = session.req_header();
    let declared = header
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > max) {
        return Err(GatewayError::BodyTooLarge(max));
    }
    if send_continue_if_expected(session).await.is_err() {
        return Err(GatewayError::BadRequest("the client went away".into()));
    }
    let mut body = BytesMut::new();
    loop {
        match crate::web::connection::read_body(session, until).await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > max {
                    return Err(GatewayError::BodyTooLarge(max));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(e) => return Err(GatewayError::unreadable_body(&e)),
        }
    }
}

/// A client that sent `Expect: 100-continue` waits for a go-ahead before its body. The gateway
/// gives it itself, as nginx does, rather than passing the expectation upstream.
pub async fn send_continue_if_expected(session: &mut ServerSession) -> Result<()> {
    let request = session.req_header();
    // An HTTP/1.0 client does not know 100 (RFC 9110 §10.1.1): it sends its body regardless.
    let expects_continue = request.version != http::Version::HTTP_10
        && request
            .headers
            .get(header::EXPECT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if expects_continue {
        session.write_response_header(Box::new(ResponseHeader::build(100, None)?)).await?;
    }
    Ok(())
}

fn valid_request_id(value: &HeaderValue) -> bool {
    let value = value.as_bytes();
    !value.is_empty() && value.len() <= 128 && value.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
}

/// A request id: a random per-process prefix and a counter. Unique, cheap (no RNG call per
/// request, which perf showed), and not meant to be secret.
fn new_request_id() -> HeaderValue {
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
    let id = format!("{prefix:016x}{n:08x}");
    HeaderValue::from_maybe_shared(Bytes::from(id)).unwrap_or(HeaderValue::from_static("-"))
}

/// Headers that describe one hop, never the message (RFC 9110 §7.6.1), and must not be passed
/// on. `Upgrade` is among them: the gateway does not tunnel protocol switches (WebSocket). The
/// framing headers are among them too: the gateway writes its own (`RequestBody`).
const HOP_BY_HOP: [&str; 11] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "content-length",
    "upgrade",
    "http2-settings",
];

/// Headers a `Connection` option can never remove: the gateway relies on them.
const NEVER_NOMINATED: [HeaderName; 3] = [header::HOST, header::CONTENT_LENGTH, header::TRANSFER_ENCODING];

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The headers that `Connection` header values name: hop-by-hop too, except those the gateway
/// relies on. Empty (no allocation) without any.
fn connection_nominated<V: AsRef<[u8]>>(values: impl Iterator<Item = V>) -> Vec<HeaderName> {
    let mut names = Vec::new();
    for value in values {
        names.extend(
            list_items(value.as_ref())
                .filter_map(|name| HeaderName::from_bytes(name).ok())
                .filter(|name| !NEVER_NOMINATED.contains(name)),
        );
    }
    names
}

/// The body of the client's request as Pingora's session reads it (RFC 9112 §6.3): chunked
/// when a transfer coding is given (Pingora refuses one whose last coding is not chunked, and
/// drops a `Content-Length` beside it), else the one `Content-Length`, else none.
fn request_body(headers: &http::HeaderMap) -> Result<RequestBody> {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return Ok(RequestBody::Chunked);
    }
    let mut length = None;
    for line in headers.get_all(header::CONTENT_LENGTH) {
        length = content_length(length, line.as_bytes()).ok_or_else(|| {
            pingora::Error::explain(pingora::ErrorType::InvalidHTTPHeader, "the request's Content-Length is invalid")
        })?;
    }
    Ok(length.map_or(RequestBody::None, RequestBody::Length))
}

/// A client connection's peer: its address, and that address rendered for `X-Forwarded-For`
/// once per connection.
pub struct ClientPeer {
    ip: std::net::IpAddr,
    header: HeaderValue,
}

impl ClientPeer {
    pub fn of(session: &ServerSession) -> Option<ClientPeer> {
        let ip = session.client_addr()?.as_inet()?.ip();
        Some(ClientPeer { ip, header: HeaderValue::from_str(&ip.to_string()).ok()? })
    }
}

/// Headers in which a client names addresses, hosts and schemes on the way: believed only from
/// a trusted proxy (`X-Forwarded-For` is rebuilt rather than copied).
const FORWARDING: [HeaderName; 4] = [
    header::FORWARDED,
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-real-ip"),
];

/// The claim headers of the token a connection last forwarded, built once per token rather
/// than once per request. The token is the validator's own `Arc`: a reload brings a new
/// validator and with it new `Arc`s, so a kept set never outlives the header names (the config)
/// it was built with.
pub struct ClaimHeaders {
    token: Arc<VerifiedToken>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ClaimHeaders {
    fn new(forward: &super::ForwardHeaders, token: &Arc<VerifiedToken>) -> Result<ClaimHeaders> {
        let scopes = (!token.scopes.is_empty()).then(|| token.scopes.join(" "));
        let claims = [
            (&forward.pid, token.pid.as_deref()),
            (&forward.client_id, token.client_id.as_deref()),
            (&forward.consumer, token.consumer_orgno.as_deref()),
            (&forward.scope, scopes.as_deref()),
            (&forward.acr, token.acr.as_deref()),
            (&forward.issuer, Some(&*token.issuer)),
        ];
        let mut headers = Vec::with_capacity(claims.len());
        for (name, value) in claims {
            if let Some(value) = value {
                let value = HeaderValue::from_str(value)
                    .or_err(pingora::ErrorType::InvalidHTTPHeader, "a claim is not a header value")?;
                headers.push((name.clone(), value));
            }
        }
        Ok(ClaimHeaders { token: token.clone(), headers })
    }
}

impl Gateway {
    /// The request to send upstream: the client's, less hop-by-hop and framing headers, the
    /// forwarding headers of an untrusted peer, any claiming a verified identity, and any whose
    /// name holds an underscore (CGI-style upstreams read `x_portvakt_pid` as `x-portvakt-pid`),
    /// and less the token unless the route forwards it; plus the verified claims, the request
    /// id and `X-Forwarded-For`. It is built afresh rather than cloned and trimmed: only what
    /// passes is copied, and names go lower case (as over HTTP/2, and as Envoy sends them).
    pub fn upstream_request(
        &self,
        session: &ServerSession,
        ctx: &RequestCtx,
        host: &HeaderValue,
        peer: Option<&ClientPeer>,
        claims: &mut Option<ClaimHeaders>,
    ) -> Result<RequestHead> {
        let incoming = session.req_header();
        let mut request = RequestHead::new(&incoming.method, incoming.raw_path())?;
        let forward = &ctx.state.forward;
        let forward_token = self.route(ctx).is_some_and(|r| r.forward_token);
        let claims_identity = |name: &str| forward.all().any(|f| f.as_str() == name);
        let nominated = connection_nominated(incoming.headers.get_all(header::CONNECTION).iter());
        let trusted_proxy =
            peer.is_some_and(|peer| ctx.state.trusted_proxies.iter().any(|range| range.contains(&peer.ip)));
        if !incoming.headers.contains_key(header::HOST) {
            // HTTP/1.0 may leave Host out; HTTP/1.1 to the upstream needs one.
            request.header(&header::HOST, host);
        }
        for (name, value) in incoming.headers.iter() {
            let lower = name.as_str();
            // Hop-by-hop, answered here (Expect), set below, or claiming a verified identity. A
            // name with an underscore is dropped, as nginx does: CGI-style upstreams read
            // `x_forwarded_for` as `x-forwarded-for`. `Proxy` is the httpoxy vector.
            let stays_behind = lower.contains('_')
                || lower == "proxy"
                || HOP_BY_HOP.contains(&lower)
                || nominated.contains(name)
                || lower == "expect"
                || (lower == "authorization" && !forward_token)
                || name == X_REQUEST_ID
                || name == X_FORWARDED_FOR
                || (!trusted_proxy && FORWARDING.contains(name))
                || claims_identity(lower);
            if !stays_behind {
                request.header(name, value);
            }
        }
        request.body(request_body(&incoming.headers)?);
        if let Some(token) = &ctx.token {
            if !claims.as_ref().is_some_and(|kept| Arc::ptr_eq(&kept.token, token)) {
                *claims = Some(ClaimHeaders::new(forward, token)?);
            }
            for (name, value) in claims.iter().flat_map(|kept| &kept.headers) {
                request.header(name, value);
            }
        }
        request.header(&X_REQUEST_ID, &ctx.request_id);
        // A trusted proxy's chain is extended; anyone else's is replaced by the peer alone.
        let previous: Vec<&str> = match trusted_proxy {
            true => incoming.headers.get_all(&X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()).collect(),
            false => Vec::new(),
        };
        match (previous.is_empty(), peer) {
            (true, Some(peer)) => request.header(&X_FORWARDED_FOR, &peer.header),
            (true, None) => {}
            (false, peer) => {
                let mut chain = previous.join(", ");
                if let Some(peer) = peer.and_then(|p| p.header.to_str().ok()) {
                    chain.push_str(", ");
                    chain.push_str(peer);
                }
                let chain = HeaderValue::try_from(chain)
                    .or_err(pingora::ErrorType::InvalidHTTPHeader, "X-Forwarded-For cannot be extended")?;
                request.header(&X_FORWARDED_FOR, &chain);
            }
        }
        Ok(request.end())
    }

    /// The upstream's answer as the client gets it: less its hop-by-hop headers, with the
    /// framing redone for the client's connection, plus the request id.
    pub fn downstream_response(&self, upstream: &Response, ctx: &RequestCtx) -> Result<Box<ResponseHeader>> {
        let mut response = ResponseHeader::build_no_case(upstream.status, Some(upstream.header_count() + 2))?;
        let connection = upstream.headers().filter(|(name, _)| name.eq_ignore_ascii_case(b"connection"));
        let nominated = connection_nominated(connection.map(|(_, value)| value));
        for (name, value) in upstream.headers() {
            let hop = HOP_BY_HOP.iter().any(|h| h.as_bytes().eq_ignore_ascii_case(name))
                || nominated.iter().any(|n| n.as_str().as_bytes().eq_ignore_ascii_case(name))
                || X_REQUEST_ID.as_str().as_bytes().eq_ignore_ascii_case(name);
            if !hop {
                let name =
                    HeaderName::from_bytes(name).or_err(pingora::ErrorType::InvalidHTTPHeader, "a header name")?;
                let value = HeaderValue::from_maybe_shared(value)
                    .or_err(pingora::ErrorType::InvalidHTTPHeader, "the upstream sent an invalid header value")?;
                response.append_header(name, value)?;
            }
        }
        if let Some((name, value)) = upstream.framing_header() {
            response.append_header(name, value)?;
        }
        response.append_header(X_REQUEST_ID, ctx.request_id.clone())?;
        Ok(Box::new(response))
    }

    /// Count the request and, when the access log is on, log it (personal numbers masked).
    pub fn log(&self, session: &ServerSession, status: u16, error: Option<&str>, ctx: &RequestCtx) {
        let route = ctx.route.as_deref().unwrap_or("-");
        let elapsed = ctx.started.elapsed();
        match self.route(ctx) {
            Some(admitted) => {
                if status == 200 {
                    admitted.metrics.ok.inc();
                } else {
                    self.metrics.requests.with_label_values(&[route, status_label(status)]).inc();
                }
                admitted.metrics.duration.observe(elapsed.as_secs_f64());
            }
            None => {
                self.metrics.requests.with_label_values(&[route, status_label(status)]).inc();
                self.metrics.request_duration.with_label_values(&[route]).observe(elapsed.as_secs_f64());
            }
        }
        if self.access_log {
            let header = session.req_header();
            // The query is left out: tokens and keys travel there too.
            let target = header.raw_path();
            let path = &target[..target.iter().position(|b| *b == b'?').unwrap_or(target.len())];
            let path = personid::mask_in_text(&String::from_utf8_lossy(path)).into_owned();
            let token = ctx.token.as_deref();
            tracing::info!(
                target: "portvakt::access",
                request_id = ctx.request_id(),
                method = %header.method,
                path = %path,
                route,
                status,
                client_id = token.and_then(|t| t.client_id.as_deref()).unwrap_or("-"),
                pid = %token.and_then(|t| t.pid.as_deref()).map(personid::mask).unwrap_or_default(),
                latency_us = elapsed.as_micros() as u64,
                error = error.unwrap_or_default(),
            );
        }
    }
}

impl RequestCtx {
    pub fn state(&self) -> &GatewayState {
        &self.state
    }

    /// Made of visible ASCII only: either generated here or checked by `valid_request_id`.
    pub fn request_id(&self) -> &str {
        self.request_id.to_str().unwrap_or("-")
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
