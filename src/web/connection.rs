//! Reading the next request on a client connection, for every listener (the gateway's own loop
//! and the axum apps alike): how long a connection may sit idle, one overall deadline for a
//! request head (a client sending its head a byte at a time cannot hold a connection), pipelined
//! requests taken in order, and a head that cannot be read refused without echoing it.

use std::time::Duration;

use bytes::BytesMut;
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

/// How long reading a request head may take.
#[derive(Clone, Copy, Debug)]
pub struct HeadLimits {
    /// From the first byte of a head (or from accepting the connection, for its first
    /// request) to the head's end.
    pub deadline: Duration,
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
    pub async fn next_request(self, limits: HeadLimits) -> Option<ServerSession> {
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

/// What was wrong with an unreadable head, in words that quote nothing of it.
fn unreadable_reason(error: &Error) -> String {
    match (&error.cause, error.context.as_ref().map(|c| c.as_str())) {
        // The parser's own verdict ("invalid header name", "invalid token"…).
        (Some(cause), _) => cause.to_string(),
        // Pingora's framing checks explain themselves without quoting the request.
        (None, Some(context)) if !context.starts_with("buf:") => context.to_owned(),
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
    }
}
