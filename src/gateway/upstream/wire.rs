//! HTTP/1.1 on an upstream connection, written and read here rather than through Pingora's
//! client session. Profiling showed a third of the gateway's own CPU time on that side: Pingora
//! builds every answer head into two header maps (one keeping the case of each name), and the
//! gateway then built the client's answer head from that once more. Here the request head is
//! written straight into one buffer, and the answer head is parsed (`httparse`, as Pingora
//! does) straight into the client's answer. Framing follows RFC 9112 §6.3, strictly: a kept
//! connection is only reused after an answer whose end was certain.

use std::ops::Range;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue, Method, StatusCode, header};
use pingora::protocols::Stream;
use pingora::time::timeout;
use pingora::{Error, ErrorType, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::chunked::{ChunkedDecoder, Decoded};
use crate::web::headers::list_items;

/// An answer head larger than this, or with more header lines, is refused (502).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
pub const MAX_HEADERS: usize = 128;
/// Interim (1xx) answers before the final one; an upstream that sends more is refused.
const MAX_INTERIM: usize = 16;
/// The most read from an upstream at once for a body.
const BODY_READ_BYTES: usize = 64 * 1024;
const HEAD_READ_BYTES: usize = 4096;

/// How a request's body is framed upstream. The gateway decides it from what it parsed of the
/// client's message and writes the one framing header itself: nothing the client sent (a
/// `Content-Length`, a `Transfer-Encoding`, a `Connection` naming either) reaches the upstream,
/// so the upstream can never read the body's end elsewhere than the gateway did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestBody {
    /// No body: no framing header, and no body byte is ever written.
    None,
    /// Exactly this many bytes, no more and no fewer.
    Length(u64),
    /// Of unknown length: re-chunked by the gateway as it arrives.
    Chunked,
}

/// A request head, written as it is built: the request line, then one line per header.
pub struct RequestHead {
    bytes: Vec<u8>,
    body: RequestBody,
}

impl RequestHead {
    /// `target` is the client's request target, already checked by the gateway's path rules;
    /// it is checked here again for what would break the request line.
    pub fn new(method: &Method, target: &[u8]) -> Result<RequestHead> {
        if target.is_empty() || target.iter().any(|&b| b <= b' ' || b == 0x7f) {
            return Error::e_explain(ErrorType::InvalidHTTPHeader, "the request target cannot go on a request line");
        }
        let mut bytes = Vec::with_capacity(512);
        bytes.extend_from_slice(method.as_str().as_bytes());
        bytes.push(b' ');
        bytes.extend_from_slice(target);
        bytes.extend_from_slice(b" HTTP/1.1\r\n");
        Ok(RequestHead { bytes, body: RequestBody::None })
    }

    /// Names and values are `http` types: a token, and a value without CR, LF or NUL.
    pub fn header(&mut self, name: &HeaderName, value: &HeaderValue) {
        self.bytes.extend_from_slice(name.as_str().as_bytes());
        self.bytes.extend_from_slice(b": ");
        self.bytes.extend_from_slice(value.as_bytes());
        self.bytes.extend_from_slice(b"\r\n");
    }

    /// The body's framing, written by the gateway: its one `Content-Length` or
    /// `Transfer-Encoding`.
    pub fn body(&mut self, body: RequestBody) {
        match body {
            RequestBody::None => {}
            RequestBody::Length(length) => self.header(&header::CONTENT_LENGTH, &HeaderValue::from(length)),
            RequestBody::Chunked => self.header(&header::TRANSFER_ENCODING, &HeaderValue::from_static("chunked")),
        }
        self.body = body;
    }

    pub fn end(mut self) -> RequestHead {
        self.bytes.extend_from_slice(b"\r\n");
        self
    }
}

/// The timeouts of one backend, for each read and each write.
#[derive(Clone, Copy)]
pub struct Timeouts {
    pub read: Option<Duration>,
    pub write: Option<Duration>,
}

/// One upstream connection's half of an exchange.
pub struct Connection<'a> {
    pub stream: &'a mut Stream,
    pub timeouts: Timeouts,
    /// Body bytes written so far: never more than the head declared, and at the end exactly that.
    body_sent: u64,
}

impl<'a> Connection<'a> {
    pub fn new(stream: &'a mut Stream, timeouts: Timeouts) -> Connection<'a> {
        Connection { stream, timeouts, body_sent: 0 }
    }

    pub async fn write_head(&mut self, head: &RequestHead) -> Result<()> {
        self.write(&head.bytes, "while writing the request head").await
    }

    /// A piece of the request body, framed as the head said. Bytes the head did not declare are
    /// refused rather than written: they would be read upstream as the start of a request.
    pub async fn write_body(&mut self, head: &RequestHead, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let sent = self.body_sent + data.len() as u64;
        match head.body {
            RequestBody::None => return Error::e_explain(ErrorType::InternalError, "a body for a request without one"),
            RequestBody::Length(length) if sent > length => {
                return Error::e_explain(ErrorType::InternalError, "more body than the request declared");
            }
            RequestBody::Length(_) => self.write(data, "while writing the request body").await?,
            RequestBody::Chunked => {
                let mut chunk = Vec::with_capacity(data.len() + 20);
                chunk.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                chunk.extend_from_slice(data);
                chunk.extend_from_slice(b"\r\n");
                self.write(&chunk, "while writing the request body").await?;
            }
        }
        self.body_sent = sent;
        Ok(())
    }

    /// End the body: the last chunk, or a check that every declared byte went out. A body that
    /// ended short leaves the connection mid-message: the caller must close it.
    pub async fn end_body(&mut self, head: &RequestHead) -> Result<()> {
        match head.body {
            RequestBody::Chunked => self.write(b"0\r\n\r\n", "while ending the request body").await?,
            RequestBody::Length(length) if self.body_sent != length => {
                return Error::e_explain(ErrorType::InternalError, "the request body ended before its declared length");
            }
            RequestBody::Length(_) | RequestBody::None => {}
        }
        within(self.timeouts.write, self.stream.flush())
            .await
            .map_err(|e| io_error(e, ErrorType::WriteError, ErrorType::WriteTimedout, "while sending the request"))
    }

    async fn write(&mut self, bytes: &[u8], doing: &'static str) -> Result<()> {
        within(self.timeouts.write, self.stream.write_all(bytes))
            .await
            .map_err(|e| io_error(e, ErrorType::WriteError, ErrorType::WriteTimedout, doing))
    }

    /// Read more of the answer into `buf`'s spare room: `Ok(false)` when the upstream closed.
    async fn read_into(&mut self, buf: &mut BytesMut, doing: &'static str) -> Result<bool> {
        let n = within(self.timeouts.read, self.stream.read_buf(buf))
            .await
            .map_err(|e| io_error(e, ErrorType::ReadError, ErrorType::ReadTimedout, doing))?;
        Ok(n > 0)
    }

    /// Up to `capacity` more bytes of the body.
    async fn read_body_bytes(&mut self, capacity: usize) -> Result<Bytes> {
        let mut buf = BytesMut::with_capacity(capacity);
        match self.read_into(&mut buf, "while reading the answer body").await? {
            true => Ok(buf.freeze()),
            false => Error::e_explain(ErrorType::ReadError, "the upstream closed mid-body"),
        }
    }

    /// The answer's head, after any interim (1xx) answers, which are for this hop only.
    /// `head_request`: the answer to HEAD has no body, whatever its head says.
    pub async fn read_response(&mut self, head_request: bool) -> Result<Response> {
        let mut read = BytesMut::with_capacity(HEAD_READ_BYTES);
        let mut interim = 0;
        loop {
            if let Some(response) = parse_response(&mut read, head_request, &mut interim)? {
                return Ok(response);
            }
            if read.len() >= MAX_HEAD_BYTES {
                return Error::e_explain(ErrorType::InvalidHTTPHeader, "the upstream's answer head is too large");
            }
            read.reserve(HEAD_READ_BYTES);
            if !self.read_into(&mut read, "while reading the answer head").await? {
                return match read.is_empty() {
                    true => {
                        Error::e_explain(ErrorType::ConnectionClosed, "the upstream closed the connection unanswered")
                    }
                    false => Error::e_explain(ErrorType::InvalidHTTPHeader, "the upstream's answer head broke off"),
                };
            }
        }
    }

    /// The next piece of the answer's body; `Ok(None)` at its end.
    pub async fn read_body(&mut self, response: &mut Response) -> Result<Option<Bytes>> {
        loop {
            match &mut response.body {
                Body::Empty => return Ok(None),
                Body::Length(0) => return Ok(None),
                Body::Length(left) => {
                    if response.pending.is_empty() {
                        let want = usize::try_from(*left).unwrap_or(usize::MAX).min(BODY_READ_BYTES);
                        response.pending = self.read_body_bytes(want).await?;
                    }
                    let take = usize::try_from(*left).unwrap_or(usize::MAX).min(response.pending.len());
                    *left -= take as u64;
                    return Ok(Some(response.pending.split_to(take)));
                }
                Body::Chunked(decoder) => match decoder.decode(&mut response.pending) {
                    Ok(Decoded::Data(data)) => return Ok(Some(data)),
                    Ok(Decoded::Done) => return Ok(None),
                    Ok(Decoded::NeedMore) => response.pending = self.read_body_bytes(BODY_READ_BYTES).await?,
                    Err(reason) => return Error::e_explain(ErrorType::InvalidHTTPHeader, reason),
                },
                Body::UntilClose => {
                    if !response.pending.is_empty() {
                        return Ok(Some(std::mem::take(&mut response.pending)));
                    }
                    let mut buf = BytesMut::with_capacity(BODY_READ_BYTES);
                    let more = self.read_into(&mut buf, "while reading the answer body").await?;
                    return Ok(more.then(|| buf.freeze()));
                }
            }
        }
    }
}

/// One read or write, failing with `TimedOut` when it takes longer than `limit`.
async fn within<T>(limit: Option<Duration>, io: impl Future<Output = std::io::Result<T>>) -> std::io::Result<T> {
    match limit {
        Some(limit) => timeout(limit, io).await.unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())),
        None => io.await,
    }
}

fn io_error(e: std::io::Error, failed: ErrorType, timed_out: ErrorType, doing: &'static str) -> Box<Error> {
    let kind = if e.kind() == std::io::ErrorKind::TimedOut { timed_out } else { failed };
    Error::because(kind, doing, e)
}

/// How an answer's body is delimited (RFC 9112 §6.3).
#[derive(Debug)]
enum Body {
    Empty,
    Length(u64),
    Chunked(ChunkedDecoder),
    /// Neither length nor chunking: the body ends when the upstream closes.
    UntilClose,
}

/// An upstream's answer: its head as read, and its body as it arrives.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    /// The head's bytes: header values are slices of them, not copies.
    head: Bytes,
    headers: Vec<(Range<usize>, Range<usize>)>,
    body: Body,
    /// Bytes read past the head that belong to the body (or, past its end, to no one).
    pending: Bytes,
    keep_alive: bool,
}

impl Response {
    /// The header lines that describe the message, as (name as sent, value). The framing
    /// (`Content-Length`, `Transfer-Encoding`) is left out: it is redone for the client's
    /// connection (`framing_header`). Hop-by-hop headers are the caller's to drop.
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], Bytes)> {
        let framed = !matches!(self.body, Body::Empty);
        self.headers.iter().filter_map(move |(name, value)| {
            let name = &self.head[name.clone()];
            let framing =
                name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"transfer-encoding");
            // A bodiless answer (HEAD, 304) keeps its Content-Length: it tells the body's size.
            (!framing || !framed).then(|| (name, self.head.slice(value.clone())))
        })
    }

    pub fn header_count(&self) -> usize {
        self.headers.len()
    }

    /// The framing header the client's copy of the answer needs.
    pub fn framing_header(&self) -> Option<(HeaderName, HeaderValue)> {
        match self.body {
            Body::Length(n) => Some((header::CONTENT_LENGTH, HeaderValue::from(n))),
            Body::Chunked(_) => Some((header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"))),
            Body::Empty | Body::UntilClose => None,
        }
    }

    /// Whether the connection may carry another request: the upstream wants it kept, the
    /// body's end was certain and reached, and nothing came after it.
    pub fn reusable(&self) -> bool {
        let ended = match &self.body {
            Body::Empty => true,
            Body::Length(left) => *left == 0,
            Body::Chunked(decoder) => decoder.is_done(),
            Body::UntilClose => false,
        };
        self.keep_alive && ended && self.pending.is_empty()
    }
}

/// Parse one answer head from the front of `read`; interim answers are taken off and skipped
/// (`interim` counts them across calls).
fn parse_response(read: &mut BytesMut, head_request: bool, interim: &mut usize) -> Result<Option<Response>> {
    loop {
        let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut lines);
        let length = match parsed.parse(read) {
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Error::e_explain(ErrorType::InvalidHTTPHeader, "the upstream's answer has too many headers");
            }
            Err(e) => {
                return Error::e_because(ErrorType::InvalidHTTPHeader, "the upstream's answer head is malformed", e);
            }
        };
        let code = parsed.code.unwrap_or_default();
        let status = StatusCode::from_u16(code)
            .or_else(|_| Error::e_explain(ErrorType::InvalidHTTPHeader, "the upstream's status code is invalid"))?;
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Error::e_explain(
                ErrorType::InvalidHTTPHeader,
                "the upstream switched protocols, which the gateway does not tunnel",
            );
        }
        if status.is_informational() {
            // 100 and 103 are hints for this hop; the client gets the final answer only.
            *interim += 1;
            if *interim > MAX_INTERIM {
                return Error::e_explain(ErrorType::InvalidHTTPHeader, "the upstream sent too many interim answers");
            }
            let _ = read.split_to(length);
            continue;
        }
        let http_11 = parsed.version == Some(1);
        let base = read.as_ptr() as usize;
        let offsets = |field: &[u8]| {
            let start = field.as_ptr() as usize - base;
            start..start + field.len()
        };
        let mut headers = Vec::with_capacity(parsed.headers.len());
        let mut framing = Framing::default();
        for line in parsed.headers.iter() {
            framing.note(line.name.as_bytes(), line.value)?;
            headers.push((offsets(line.name.as_bytes()), offsets(line.value)));
        }
        let bodiless = head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
        let (body, certain) = match (bodiless, framing.chunked, framing.length) {
            (true, _, _) => (Body::Empty, true),
            // Transfer-Encoding overrides Content-Length, but both at once is how requests
            // get smuggled: the answer is read, and the connection is not reused.
            // In HTTP/1.0 it may have passed a hop that did not know chunking: never reused either
            // (RFC 9112 §6.1).
            (false, Some(true), length) => (Body::Chunked(ChunkedDecoder::default()), length.is_none() && http_11),
            (false, Some(false), _) => (Body::UntilClose, false),
            (false, None, Some(length)) => (Body::Length(length), true),
            (false, None, None) => (Body::UntilClose, false),
        };
        let keep_alive = certain && if http_11 { !framing.close } else { framing.keep_alive };
        let all = std::mem::take(read).freeze();
        return Ok(Some(Response {
            status,
            head: all.slice(..length),
            headers,
            body,
            pending: all.slice(length..),
            keep_alive,
        }));
    }
}

/// Fold one `Content-Length` line into the length seen so far (`None` before the first line).
/// A list of equal values is one value (RFC 9110 §8.6); an invalid or different value is `None`
/// wrapped as an error by the caller: the framing is unrecoverable.
pub fn content_length(seen: Option<u64>, line: &[u8]) -> Option<Option<u64>> {
    let mut length = seen;
    for item in list_items(line) {
        let value = (!item.is_empty() && item.len() <= 19 && item.iter().all(u8::is_ascii_digit))
            .then(|| item.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))?;
        match length {
            Some(seen) if seen != value => return None,
            _ => length = Some(value),
        }
    }
    Some(length)
}

/// What an answer's header lines say about its framing and its connection.
#[derive(Default)]
struct Framing {
    length: Option<u64>,
    /// Whether the last transfer coding is chunked, when there is one.
    chunked: Option<bool>,
    close: bool,
    keep_alive: bool,
}

impl Framing {
    fn note(&mut self, name: &[u8], value: &[u8]) -> Result<()> {
        if name.eq_ignore_ascii_case(b"content-length") {
            self.length = content_length(self.length, value).ok_or_else(|| {
                Error::explain(
                    ErrorType::InvalidHTTPHeader,
                    "the upstream's Content-Length is invalid or contradicts itself",
                )
            })?;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            match list_items(value).rfind(|c| !c.is_empty()) {
                Some(last) => self.chunked = Some(last.eq_ignore_ascii_case(b"chunked")),
                // An empty field still overrides Content-Length (RFC 9112 §6.3), as hyper reads
                // it too: the body runs to the close, unless a coding was named on a line before.
                None => {
                    self.chunked.get_or_insert(false);
                }
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for option in list_items(value) {
                self.close |= option.eq_ignore_ascii_case(b"close");
                self.keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(wire: &[u8], head_request: bool) -> Result<Option<Response>> {
        parse_response(&mut BytesMut::from(wire), head_request, &mut 0)
    }

    fn response(wire: &[u8]) -> Response {
        parse(wire, false).expect("a valid head").expect("a complete head")
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let length = response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        assert!(matches!(length.body, Body::Length(5)) && length.keep_alive);
        assert_eq!(length.framing_header(), Some((header::CONTENT_LENGTH, HeaderValue::from(5u64))));
        let listed = response(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n");
        assert!(matches!(listed.body, Body::Length(5)));
        let chunked = response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert!(matches!(chunked.body, Body::Chunked(_)) && chunked.keep_alive);
        let both = response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(matches!(both.body, Body::Chunked(_)) && !both.keep_alive, "read chunked, never reused");
        let not_chunked = response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
        assert!(matches!(not_chunked.body, Body::UntilClose) && !not_chunked.keep_alive);
        let unframed = response(b"HTTP/1.1 200 OK\r\n\r\n");
        assert!(matches!(unframed.body, Body::UntilClose) && !unframed.reusable());
        for bodiless in
            [&b"HTTP/1.1 204 No Content\r\n\r\n"[..], b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n"]
        {
            let bodiless = response(bodiless);
            assert!(matches!(bodiless.body, Body::Empty) && bodiless.reusable());
        }
        let head = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true).unwrap().unwrap();
        assert!(matches!(head.body, Body::Empty));
        let kept: Vec<_> = head.headers().map(|(n, v)| (n.to_vec(), v)).collect();
        assert_eq!(kept, [(b"Content-Length".to_vec(), Bytes::from_static(b"9"))], "HEAD keeps its length");
    }

    #[test]
    fn the_connection_is_kept_only_when_the_upstream_wants_it_and_nothing_follows_the_answer() {
        assert!(!response(b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n").reusable());
        assert!(!response(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").reusable());
        assert!(response(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").reusable());
        assert!(!response(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n").reusable());
        assert!(!response(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n").reusable(), "its body is unread");
    }

    #[test]
    fn interim_answers_are_skipped_and_protocol_switches_refused() {
        let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
        let answer = response(wire);
        assert_eq!(answer.status, StatusCode::CREATED);
        assert_eq!(answer.pending, Bytes::from_static(b"ok"));
        let switch = parse(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", false);
        assert!(switch.unwrap_err().to_string().contains("does not tunnel"));
        let endless = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM + 1);
        assert!(parse(&endless, false).unwrap_err().to_string().contains("too many interim answers"));
        let mut seen = 0;
        let mut read = BytesMut::from(&b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM)[..]);
        assert!(parse_response(&mut read, false, &mut seen).unwrap().is_none(), "the limit is not yet passed");
        let mut read = BytesMut::from(&b"HTTP/1.1 103 Early Hints\r\n\r\n"[..]);
        assert!(parse_response(&mut read, false, &mut seen).is_err(), "counted across reads");
    }

    #[test]
    fn bad_heads_are_refused_with_a_reason() {
        let cases: [(&[u8], &str); 5] = [
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", "contradicts"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length is invalid"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", "Content-Length is invalid"),
            (b"HTTP/1.1 2000 OK\r\n\r\n", "malformed"),
            (b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n", "malformed"),
        ];
        for (wire, reason) in cases {
            let error = parse(wire, false).expect_err("refused").to_string();
            assert!(error.contains(reason), "{}: {error}", wire.escape_ascii());
        }
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(parse(&many, false).unwrap_err().to_string().contains("too many headers"));
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-", false).unwrap().is_none(), "partial: read more");
    }

    #[test]
    fn header_values_are_slices_of_the_head_and_framing_is_left_to_the_gateway() {
        let answer = response(b"HTTP/1.1 200 OK\r\nServer: up\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n");
        let names: Vec<_> = answer.headers().map(|(n, _)| n.to_vec()).collect();
        assert_eq!(names, [b"Server".to_vec(), b"X-A".to_vec()]);
        assert_eq!(answer.framing_header().map(|(n, _)| n), Some(header::TRANSFER_ENCODING));
    }
}
