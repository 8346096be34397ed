//! Reading requests off a client connection, for every listener (the gateway's own loop and the
//! axum apps alike): how long a connection may sit idle, one overall deadline for a request head
//! and one for its body (a client sending a byte at a time cannot hold a connection, or the
//! upstream connection behind it), pipelined requests taken in order, and a head that cannot be
//! read refused without echoing it.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::protocols::Stream;
use pingora::protocols::http::ServerSession;
use pingora::time::timeout;
use pingora::{Error, ErrorType};
use tokio::io::AsyncReadExt;

/// How long an idle client connection is kept between requests, as Pingora's own HTTP
/// services do.
pub const KEEPALIVE_SECONDS: u64 = 60;
/// The first read of a request head takes at most this much (Pingora's own first buffer).
const FIRST_READ_BYTES: usize = 4096;

/// How long reading a request may take.
#[derive(Clone, Copy, Debug)]
pub struct ClientLimits {
    /// From the first byte of a head (or from accepting the connection, for its first
    /// request) to the head's end.
    pub deadline: Duration,
    /// From the head's end to the body's end.
    pub body: Duration,
}

/// The next piece of a request body, within the request's overall body deadline: past it, a
/// `ReadTimedout` error (a 408 where an answer can still be given).
pub async fn read_body(session: &mut ServerSession, until: Instant) -> pingora::Result<Option<Bytes>> {
    match tokio::time::timeout_at(until.into(), session.read_request_body()).await {
        Ok(read) => read,
        Err(_) => Error::e_explain(ErrorType::ReadTimedout, "the request body did not arrive in time"),
    }
}

/// What is left of a connection after a request: the stream and any bytes the client already
/// sent of its next request (pipelining).
pub struct Connection {
    pub stream: Stream,
    pub pipelined: Option<BytesMut>,
    /// Whether a request was served on it before: the wait for the first byte is then the
    /// keep-alive timeout, not the head deadline.
    pub reused: bool,
}

impl Connection {
    pub fn new(stream: Stream) -> Connection {
        Connection { stream, pipelined: None, reused: false }
    }

    /// After a finished session: the connection for the next request, if it stays open.
    pub fn after(
        finished: pingora::Result<Option<pingora::protocols::http::ReusableHttpStream>>,
    ) -> Option<Connection> {
        let (stream, pipelined) = finished.ok()??.into_parts();
        Some(Connection { stream, pipelined, reused: true })
    }

    /// Read the next request head. `None` when the connection ends here: the client closed it or
    /// stayed idle too long (nothing to answer), or its head was unreadable or too slow (then it
    /// got a 400 or 408 first).
    pub async fn next_request(self, limits: ClientLimits) -> Option<ServerSession> {
        let Connection { mut stream, pipelined, reused } = self;
        let first = match pipelined.filter(|bytes| !bytes.is_empty()) {
            Some(bytes) => bytes,
            None => {
                let idle = if reused { Duration::from_secs(KEEPALIVE_SECONDS) } else { limits.deadline };
                let mut bytes = BytesMut::with_capacity(FIRST_READ_BYTES);
                match timeout(idle, stream.read_buf(&mut bytes)).await {
                    Ok(Ok(n)) if n > 0 => bytes,
                    _ => return None,
                }
            }
        };
        let mut session = ServerSession::new_http1(stream);
        session.set_pipelining_enabled(true);
        // Whether an answer before the body's end closes the connection is decided where the
        // answer is given (it does, after a refusal); a `100 Continue` must not.
        session.set_close_on_response_before_downstream_finish(false);
        session.set_pipelined_prefix(first);
        session.set_keepalive(Some(KEEPALIVE_SECONDS));
        match timeout(limits.deadline, session.read_request()).await {
            Ok(Ok(true)) => Some(session),
            Ok(Ok(false)) => None,
            Ok(Err(e)) => {
                refuse_unreadable(&mut session, &e).await;
                None
            }
            Err(_) => {
                let description = format!("the request head did not arrive within {:?}", limits.deadline);
                refuse(&mut session, 408, "request_timeout", &description).await;
                None
            }
        }
    }
}

/// A request head that could not be parsed gets a 400 naming the problem; a connection that
/// merely broke gets nothing. The answer and the log name the rule that was broken, never the
/// bytes: Pingora's error context quotes the raw head (cookies, tokens, personal numbers).
async fn refuse_unreadable(session: &mut ServerSession, error: &Error) {
    if !matches!(error.etype(), ErrorType::InvalidHTTPHeader) {
        tracing::debug!(error = error.etype().as_str(), "client connection ended while reading a request");
        return;
    }
    let reason = unreadable_reason(error);
    tracing::debug!(reason, "refused an unreadable request head");
    refuse(session, 400, "invalid_request", &format!("the request head could not be read: {reason}")).await;
}

/// What was wrong with an unreadable head, in words that quote nothing of it: the parser's own
/// verdict, or one of Pingora's explanations known to name a rule and nothing of the input.
fn unreadable_reason(error: &Error) -> String {
    const SAFE: [&str; 10] = [
        "invalid Content-Length header",
        "multiple Host header fields",
        "HTTP/1.0 requests cannot include Transfer-Encoding header",
        "non-chunked final Transfer-Encoding",
        "Request header larger than",
        "ambiguous HTTP absolute-form request target",
        "userinfo in",
        "Host header differs from URI authority",
        "unparseable absolute-form authority",
        "Content-Length",
    ];
    match (&error.cause, error.context.as_ref().map(|c| c.as_str())) {
        // httparse's verdicts ("invalid header name", "invalid token"…) quote nothing.
        (Some(cause), _) if cause.is::<httparse::Error>() => cause.to_string(),
        (_, Some(context)) if context.starts_with("invalid uri") => "invalid request target".to_owned(),
        (_, Some(context)) if SAFE.iter().any(|safe| context.starts_with(safe)) && !context.contains(':') => {
            context.to_owned()
        }
        _ => "malformed".to_owned(),
    }
}

/// A JSON error answer on a connection that then closes.
async fn refuse(session: &mut ServerSession, status: u16, error: &str, description: &str) {
    session.set_keepalive(None);
    let body = serde_json::json!({"error": error, "error_description": description}).to_string();
    let header = ResponseHeader::build(status, Some(3)).and_then(|mut header| {
        header.insert_header("content-type", "application/json")?;
        header.insert_header("content-length", body.len().to_string())?;
        header.insert_header("cache-control", "no-store")?;
        Ok(header)
    });
    let sent = match header {
        Ok(header) => match session.write_response_header(Box::new(header)).await {
            Ok(()) => session.write_response_body(body.into(), true).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    if let Err(e) = sent {
        tracing::debug!(error = e.etype().as_str(), status, "cannot send the refusal");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_head_is_described_without_quoting_it() {
        let secret = "GET / HTTP/1.1\r\nCookie: session=s3cret\r\nBad header\r\n\r\n";
        let quoted =
            Error::because(ErrorType::InvalidHTTPHeader, format!("buf: {secret}"), httparse::Error::HeaderName);
        assert_eq!(unreadable_reason(&quoted), "invalid header name");
        let unexplained = Error::explain(ErrorType::InvalidHTTPHeader, format!("buf: {secret}"));
        assert_eq!(unreadable_reason(&unexplained), "malformed");
        let framing = Error::explain(ErrorType::InvalidHTTPHeader, "invalid Content-Length header");
        assert_eq!(unreadable_reason(&framing), "invalid Content-Length header");
        let target = Error::explain(ErrorType::InvalidHTTPHeader, "invalid uri /api/x?\"SECRET\"");
        assert_eq!(unreadable_reason(&target), "invalid request target");
        let unknown = Error::explain(ErrorType::InvalidHTTPHeader, "something new: SECRET");
        assert_eq!(unreadable_reason(&unknown), "malformed");
    }
}
