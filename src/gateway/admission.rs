//! The first phase of a request: name it (its request id), check its message and path, find its
//! route, validate its token against the route's policy and rate, and decide: forward it, or
//! answer it here (a refusal, or a built-in handler's answer).

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue, header};
use pingora::Result;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;

use super::GatewayState;
use super::binding::DpopGuard;
use super::error::GatewayError;
use super::resource_metadata::WELL_KNOWN;
use super::respond::Answer;
use super::routes::{Lookup, Route, Target};
use super::validator::LastToken;
use crate::admin::metrics::Metrics;
use crate::config::Handler;
use crate::token::{Reason, TokenError, VerifiedToken};
use crate::web::bearer::{self, BearerError, Scheme};
use crate::web::headers::list_items;
use crate::web::path::check_request_path;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub struct Gateway {
    pub(super) state: Arc<ArcSwap<GatewayState>>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) access_log: bool,
    /// DPoP nonces and the proofs seen, kept across reloads.
    dpop: DpopGuard,
}

pub struct RequestCtx {
    pub(super) started: Instant,
    /// The request's body must have arrived by then.
    pub body_until: Instant,
    /// A header value from the start: it goes into the upstream request and the answer.
    pub(super) request_id: HeaderValue,
    /// The state this request started with: a reload mid-request does not change its route.
    pub(super) state: Arc<GatewayState>,
    pub(super) route: Option<Arc<str>>,
    pub(super) route_index: Option<usize>,
    pub(super) token: Option<Arc<VerifiedToken>>,
}
impl Gateway {
    pub fn new(
        state: Arc<ArcSwap<GatewayState>>,
        metrics: Arc<Metrics>,
        access_log: bool,
    ) -> crate::error::Result<Gateway> {
        Ok(Gateway { state, metrics, access_log, dpop: DpopGuard::new()? })
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

    /// The RFC 9728 document of the request's route, for its challenges.
    pub fn resource_metadata<'a>(&self, ctx: &'a RequestCtx) -> Option<&'a str> {
        ctx.state.resources.url_for(self.route(ctx).map(|r| r.prefix.as_str()))
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
        if let Some(rest) = path.strip_prefix(WELL_KNOWN)
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return state.resources.answer(&header.method, rest).map(Admission::Answer);
        }
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
        let (scheme, token) = bearer::credential(&header.headers).map_err(|e| match e {
            BearerError::Repeated => GatewayError::BadAuthorization(BearerError::Repeated.describe()),
            e => {
                self.metrics.gateway.token_refused(crate::token::Reason::Missing);
                GatewayError::token(TokenError::new(crate::token::Reason::Missing, e.describe()), 0)
            }
        })?;
        let client = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        let verified =
            state.validator.validate_on_connection(token, client, last_token).await.map_err(|e| match scheme {
                Scheme::Dpop => GatewayError::dpop_token(e, state.retry_after_seconds),
                Scheme::Bearer => GatewayError::token(e, state.retry_after_seconds),
            })?;
        self.dpop.check(session, &state, route, path, (scheme, token), &verified).inspect_err(|e| {
            let reason = if matches!(e, GatewayError::Dpop(_)) { Reason::DpopProof } else { Reason::SenderConstraint };
            self.metrics.gateway.token_refused(reason);
        })?;
        ctx.token = Some(verified.clone());
        route.policy.check(&verified)?;
        if let Some(limit) = &route.rate_limit
            && !limit.admit(verified.rate_key())
        {
            self.metrics.gateway.rate_limited(&route.name);
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
                krr.personer(&headers, &body, token, request_id(ctx)).await?
            }
            Handler::KrrPerson => krr.person(&headers, token, request_id(ctx)).await?,
        };
        Ok(Answer::json_bytes(200, body))
    }
}

fn request_id(ctx: &RequestCtx) -> &str {
    ctx.request_id.to_str().unwrap_or("-")
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

impl RequestCtx {
    pub fn state(&self) -> &GatewayState {
        &self.state
    }

    /// Made of visible ASCII only: either generated here or checked by `valid_request_id`.
    pub fn request_id(&self) -> &str {
        self.request_id.to_str().unwrap_or("-")
    }
}
