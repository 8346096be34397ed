//! The request as the upstream gets it, and the answer as the client gets it: hop-by-hop and
//! framing headers stay behind (the gateway writes its own framing), the verified claims and the
//! client's address go on, and nothing a client sends can pose as either.

use std::sync::Arc;

use http::{HeaderName, HeaderValue, header};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::{OrErr, Result};

use super::Gateway;
use super::admission::{RequestCtx, X_REQUEST_ID};
use super::upstream::wire::{RequestBody, RequestHead, Response, content_length};
use crate::token::VerifiedToken;
use crate::web::headers::{HOP_BY_HOP, list_items};

/// Headers a `Connection` option can never remove: the gateway relies on them.
const NEVER_NOMINATED: [HeaderName; 3] = [header::HOST, header::CONTENT_LENGTH, header::TRANSFER_ENCODING];

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
    fn new(forward: &crate::config::ForwardSettings, token: &Arc<VerifiedToken>) -> Result<ClaimHeaders> {
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
        let trusted_proxy = peer.is_some_and(|peer| ctx.state.trusts_proxy(peer.ip));
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
                || ((lower == "authorization" || lower == "dpop") && !forward_token)
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
}
