//! Entry points of the fuzz targets in `fuzz/` (libFuzzer, `cargo fuzz`), one per parser, kept
//! in the library so that `tests/fuzz_corpora.rs` replays every corpus and artifact through the
//! same code in a plain `cargo test`. Each function takes the raw fuzz input and panics when a
//! property fails: not only "does not crash", but what the parser promises about what it accepts.
//!
//! Not part of the API: no stability, no use outside the fuzz targets and their replay test.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a fuzz harness: a panic is a finding

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header};
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream, TimingDigest,
    UniqueID, UniqueIDType,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::gateway::upstream::chunked::{ChunkedDecoder, Decoded};
use crate::gateway::upstream::wire::{self, Connection, Timeouts};
use crate::web::client::error_chain;

// ---------------------------------------------------------------------------------------------
// The upstream side of the gateway: answer heads, framing and bodies (wire.rs, chunked.rs).
// ---------------------------------------------------------------------------------------------

/// An upstream connection in memory: the answer's bytes, handed out at most `piece` at a time,
/// so that a target can check that how the bytes arrive does not change what is read.
#[derive(Debug)]
struct Trickle {
    data: Vec<u8>,
    at: usize,
    piece: usize,
}

impl AsyncRead for Trickle {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let n = self.piece.min(self.data.len() - self.at).min(buf.remaining());
        let at = self.at;
        buf.put_slice(&self.data[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Trickle {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[async_trait::async_trait]
impl Shutdown for Trickle {
    async fn shutdown(&mut self) {}
}
impl UniqueID for Trickle {
    fn id(&self) -> UniqueIDType {
        0
    }
}
impl Ssl for Trickle {}
impl GetTimingDigest for Trickle {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        Vec::new()
    }
}
impl GetProxyDigest for Trickle {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        None
    }
}
impl GetSocketDigest for Trickle {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        None
    }
}
impl Peek for Trickle {}

/// Run a future whose I/O is all in memory: it must finish without waiting.
fn at_once<F: Future>(future: F) -> F::Output {
    let mut context = Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut context) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("an in-memory read did not finish at once"),
    }
}

/// What the gateway read of one answer, head and whole body.
#[derive(Debug, PartialEq, Eq)]
struct WireAnswer {
    status: u16,
    framing: Option<(http::HeaderName, HeaderValue)>,
    body: Vec<u8>,
    reusable: bool,
    /// How many bytes were taken from the connection.
    consumed: usize,
}

/// Read `answer` as the gateway reads an upstream's answer (wire.rs's `read_response` and
/// `read_body`, the code the proxy runs), its bytes arriving at most `piece` at a time.
fn wire_read(answer: &[u8], head_request: bool, piece: usize) -> Result<WireAnswer, String> {
    let mut stream: Stream = Box::new(Trickle { data: answer.to_vec(), at: 0, piece: piece.max(1) });
    type Read = (u16, Option<(http::HeaderName, HeaderValue)>, Vec<u8>, bool);
    let result: pingora::Result<Read> = {
        let mut connection = Connection::new(&mut stream, Timeouts { read: None, write: None });
        at_once(async {
            let mut response = connection.read_response(head_request).await?;
            // Before the body is read: a length framing counts down as the body arrives.
            let framing = response.framing_header();
            let mut body = Vec::new();
            while let Some(data) = connection.read_body(&mut response).await? {
                body.extend_from_slice(&data);
            }
            Ok((response.status.as_u16(), framing, body, response.reusable()))
        })
    };
    let consumed = stream.as_any().downcast_ref::<Trickle>().map(|t| t.at).expect("the stream is a Trickle");
    let (status, framing, body, reusable) = result.map_err(|e| e.to_string())?;
    Ok(WireAnswer { status, framing, body, reusable, consumed })
}

struct FinalHead<'a> {
    end: usize,
    status: u16,
    http_10: bool,
    lines: Vec<(&'a [u8], &'a [u8])>,
}

impl FinalHead<'_> {
    fn named(&self, name: &'static str) -> impl Iterator<Item = &[u8]> {
        self.lines.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| *v)
    }
}

/// The final answer head, found independently of httparse: skipping interim (1xx) heads, where
/// it ends, its status and its header lines.
fn final_head(answer: &[u8]) -> Option<FinalHead<'_>> {
    let mut start = 0;
    loop {
        // httparse skips empty lines before a status line.
        while answer[start..].starts_with(b"\r\n") || answer[start..].starts_with(b"\n") {
            start += if answer[start] == b'\r' { 2 } else { 1 };
        }
        let head = &answer[start..];
        let end = (0..head.len()).find_map(|i| {
            (head[i] == b'\n').then_some(())?;
            match (head.get(i + 1), head.get(i + 2)) {
                (Some(b'\n'), _) => Some(i + 2),
                (Some(b'\r'), Some(b'\n')) => Some(i + 3),
                _ => None,
            }
        })?;
        let status = std::str::from_utf8(head.get(9..12)?).ok()?.parse::<u16>().ok()?;
        let lines: Vec<(&[u8], &[u8])> = head[..end]
            .split(|&b| b == b'\n')
            .skip(1)
            .filter_map(|line| {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let colon = line.iter().position(|&b| b == b':')?;
                Some((&line[..colon], line[colon + 1..].trim_ascii()))
            })
            .collect();
        if (100..200).contains(&status) {
            start += end;
            continue;
        }
        return Some(FinalHead { end: start + end, status, http_10: head.starts_with(b"HTTP/1.0"), lines });
    }
}

/// A chunked body decoded from `input` fed in the given pieces: (body, what followed its end).
fn decode_chunked(pieces: &[&[u8]]) -> Result<(Vec<u8>, Vec<u8>), &'static str> {
    let mut decoder = ChunkedDecoder::default();
    let mut body = Vec::new();
    let mut pending = Bytes::new();
    let mut rest = pieces.iter();
    loop {
        match decoder.decode(&mut pending)? {
            Decoded::Data(data) => {
                assert!(!data.is_empty(), "the decoder handed out an empty piece of data");
                body.extend_from_slice(&data);
            }
            Decoded::Done => {
                assert!(decoder.is_done());
                let mut after = pending.to_vec();
                for piece in rest {
                    after.extend_from_slice(piece);
                }
                return Ok((body, after));
            }
            Decoded::NeedMore => match rest.next() {
                Some(next) => pending = Bytes::copy_from_slice(next),
                None => return Err("(the input ended inside the body)"),
            },
        }
    }
}

/// The answer-head parser and framing (wire.rs `parse_response`, `Framing`), driven through
/// the gateway's own read loop. The first byte chooses HEAD or GET and how the bytes arrive.
///
/// Properties: the outcome does not depend on how the bytes are split; the status is the one
/// on the final status line; an answer framed by `Content-Length` (and no `Transfer-Encoding`)
/// is passed on with exactly that length and exactly those bytes; a connection is only called
/// reusable when the answer ended exactly where the bytes did; bodiless answers have no body.
pub fn upstream_answer(data: &[u8]) {
    let Some((&flags, answer)) = data.split_first() else { return };
    let head_request = flags & 1 == 1;
    let piece = usize::from(flags >> 1).max(1);
    let whole = wire_read(answer, head_request, usize::MAX);
    // The head-size limit is checked between reads, so it depends on how the bytes arrive.
    if answer.len() < wire::MAX_HEAD_BYTES {
        let split = wire_read(answer, head_request, piece);
        match (&whole, &split) {
            (Ok(whole), Ok(split)) => {
                assert_eq!(
                    (whole.status, &whole.framing, &whole.body),
                    (split.status, &split.framing, &split.body),
                    "the answer reads differently in pieces of {piece}"
                );
                // Bytes after the answer's end are only seen if they came with it: read in
                // pieces, the read can stop exactly at the end, and the connection looks clean
                // (Pingora's pool closes an idle connection that receives anything).
                let unseen_rest = split.consumed < answer.len();
                assert!(
                    whole.reusable == split.reusable || (split.reusable && unseen_rest),
                    "reusable whole: {}, in pieces of {piece}: {}",
                    whole.reusable,
                    split.reusable
                );
            }
            (Err(_), Err(_)) => {}
            _ => panic!("accepted whole or in pieces of {piece}, not both: {whole:?} / {split:?}"),
        }
    }
    let Ok(read) = whole else { return };
    let head = final_head(answer).expect("an accepted answer has a head");
    let (end, status) = (head.end, head.status);
    assert_eq!(read.status, status, "the status is not the final status line's");
    let bodiless = head_request || status == 204 || status == 304;
    if bodiless {
        assert!(read.body.is_empty() && read.framing.is_none(), "a bodiless answer with a body");
        assert_eq!(read.reusable, read.reusable && end == answer.len());
        return;
    }
    let transfer_encoding = head.named("transfer-encoding").next().is_some();
    if transfer_encoding {
        // RFC 9112 §6.1 and §6.3: with Content-Length too, or in HTTP/1.0, the framing is
        // faulty: the answer may be read, the connection must be closed after it.
        assert!(!(read.reusable && head.named("content-length").next().is_some()), "TE and CL, yet reusable");
        assert!(!(read.reusable && head.http_10), "an HTTP/1.0 answer with Transfer-Encoding, yet reusable");
    }
    if !transfer_encoding && let Some(value) = head.named("content-length").next() {
        let first = value.split(|&b| b == b',').next().unwrap_or_default().trim_ascii();
        let length: u64 = std::str::from_utf8(first).ok().and_then(|v| v.parse().ok()).expect("an accepted length");
        assert_eq!(read.framing, Some((header::CONTENT_LENGTH, HeaderValue::from(length))));
        assert_eq!(read.body.len() as u64, length, "the body is not as long as Content-Length says");
        assert_eq!(read.body, answer[end..end + read.body.len()], "the body is not the bytes after the head");
    }
    if read.reusable {
        match &read.framing {
            Some((name, _)) if name == header::TRANSFER_ENCODING => {
                let (body, after) = decode_chunked(&[&answer[end..]]).expect("a reusable chunked answer decodes");
                assert_eq!(body, read.body);
                assert!(after.is_empty(), "reusable, yet bytes follow the chunked body");
            }
            Some(_) => assert_eq!(end + read.body.len(), answer.len(), "reusable, yet bytes follow the body"),
            None => panic!("an answer without framing is reusable"),
        }
        assert_eq!(read.consumed, answer.len());
    }
}

/// The chunk decoder (chunked.rs) on its own.
///
/// Properties: the same bytes give the same body, the same rest and the same error whether fed
/// in one piece, split in two at any position, or byte by byte; data pieces are never empty;
/// the body is never longer than its encoding.
pub fn chunked_body(data: &[u8]) {
    let whole = decode_chunked(&[data]);
    if let Ok((body, after)) = &whole {
        assert!(body.len() + after.len() < data.len().max(1), "decoded more than was encoded");
        assert!(data.ends_with(after));
    }
    let splits: Vec<usize> = match data.len() {
        0..=512 => (1..data.len()).collect(),
        n => (1..64).map(|i| i * n / 64).collect(),
    };
    for at in splits {
        let (a, b) = data.split_at(at);
        assert_eq!(decode_chunked(&[a, b]), whole, "split at {at}");
    }
    if data.len() <= 4096 {
        let bytes: Vec<&[u8]> = data.chunks(1).collect();
        assert_eq!(decode_chunked(&bytes), whole, "byte by byte");
    }
}

/// The same bytes as an upstream's answer to a GET, read by wire.rs and by hyper's HTTP/1
/// client (an independent implementation of framing and chunked decoding; hyper also parses
/// heads with httparse, but decides framing and bodies itself).
///
/// Fails when both accept the answer and disagree on the status or the body bytes, or when
/// wire.rs would reuse the connection (it believes it found the body's exact end) while hyper
/// accepted the head but could not read the body to the same end.
///
/// Known differences, all on purpose, where wire.rs refuses or closes and hyper reads on, or
/// where the two read a list differently:
/// - `Transfer-Encoding: chunked, ` (or a later empty `Transfer-Encoding` line): wire.rs reads
///   the list as RFC 9110 §5.6.1 says, ignoring empty items, so chunked; hyper takes the last
///   item of the last line, empty, and reads to the end of the stream. Such answers are skipped
///   (`hyper_reads_chunked_otherwise`), as are values with bytes outside visible ASCII, which
///   hyper never reads as chunked; the gateway re-frames every answer for its client, so
///   the difference cannot reach a client's connection;
/// - wire.rs refuses what it cannot frame for certain (`Content-Length` lists that disagree,
///   a status line with a code outside 100..=999) and never reuses a connection after an
///   answer with both `Transfer-Encoding` and `Content-Length`, or without framing;
/// - wire.rs refuses `101 Switching Protocols` (it does not tunnel); hyper hands it over;
/// - wire.rs takes up to 128 header lines, hyper 100: hyper's refusal is a parse error and does
///   not count against wire.rs;
/// - chunked trailers: wire.rs checks only their CRLF line endings and drops them; hyper parses
///   them as header fields and fails the body on a malformed one (`trailer_syntax`). Both find
///   the same end of the trailer section.
pub fn upstream_differential(data: &[u8]) {
    let wire = wire_read(data, false, usize::MAX);
    if let Some(head) = final_head(data)
        && hyper_reads_chunked_otherwise(&head)
    {
        return;
    }
    let hyper = hyper_read(data);
    match (&wire, &hyper) {
        (Ok(wire), HyperAnswer::Read { status, body: Ok(body) }) => {
            assert_eq!(wire.status, *status, "wire.rs and hyper read different statuses");
            assert!(wire.body == *body, "wire.rs and hyper read different bodies: {wire:?} / hyper {:?}", body);
        }
        (Ok(wire), HyperAnswer::Read { status, body: Err(error) }) if wire.reusable && !trailer_syntax(error) => {
            panic!("wire.rs read a whole body ({wire:?}) where hyper read status {status} and failed: {error}")
        }
        (Ok(wire), HyperAnswer::Refused { error, incomplete: true }) if wire.reusable => {
            panic!("wire.rs read a whole answer ({wire:?}) where hyper found the head incomplete: {error}")
        }
        _ => {}
    }
}

/// Whether hyper's rule for "the last transfer coding is chunked" (the last item of the last
/// `Transfer-Encoding` line, if it is all visible ASCII) gives another answer than RFC 9110
/// §5.6.1's (the last non-empty item of the combined list), which wire.rs follows: `chunked, `,
/// an empty later line, or `\xe7zip, chunked`.
fn hyper_reads_chunked_otherwise(head: &FinalHead<'_>) -> bool {
    let chunked = |item: &[u8]| item.trim_ascii().eq_ignore_ascii_case(b"chunked");
    let lines: Vec<&[u8]> = head.named("transfer-encoding").collect();
    // hyper reads the value as text first: with a byte outside visible ASCII it is not chunked.
    let text = |line: &[u8]| line.iter().all(|&b| b == b'\t' || (b' '..0x7f).contains(&b));
    let hyper = lines.last().is_some_and(|line| text(line) && line.rsplit(|&b| b == b',').next().is_some_and(chunked));
    let rfc = lines
        .iter()
        .flat_map(|line| crate::web::headers::list_items(line))
        .rfind(|item| !item.is_empty())
        .is_some_and(chunked);
    hyper != rfc
}

#[derive(Debug)]
enum HyperAnswer {
    /// hyper refused the head before any answer; `incomplete` when it wanted more bytes.
    Refused {
        error: String,
        incomplete: bool,
    },
    Read {
        status: u16,
        body: Result<Vec<u8>, String>,
    },
}

/// hyper parses chunked trailers as header fields (`decode_trailers`) and refuses malformed
/// ones; wire.rs only checks their line endings and drops them. The end of the trailer
/// section, the only thing that frames the connection, is the same for both.
fn trailer_syntax(error: &str) -> bool {
    [
        "Invalid header name",
        "Invalid header value",
        "Partial header",
        "invalid header",
        "invalid token",
        "invalid new line",
        "too many headers",
    ]
    .iter()
    .any(|known| error.contains(known))
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a current-thread runtime")
    })
}

/// One GET over an in-memory pipe, answered with `answer` and then end of stream.
fn hyper_read(answer: &[u8]) -> HyperAnswer {
    use http_body_util::{BodyExt, Empty};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let answer = answer.to_vec();
    runtime().block_on(async move {
        let (client, mut server) = tokio::io::duplex(answer.len() + 4096);
        let upstream = tokio::spawn(async move {
            // The answer goes after the request head: hyper drops a connection that speaks first.
            let mut request = Vec::new();
            while !request.ends_with(b"\r\n\r\n") {
                let mut byte = [0];
                match server.read(&mut byte).await {
                    Ok(1) => request.push(byte[0]),
                    _ => return,
                }
            }
            let _ = server.write_all(&answer).await;
            let _ = AsyncWriteExt::shutdown(&mut server).await;
            let _ = server.read_to_end(&mut request).await;
        });
        let exchange = async {
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(hyper_util::rt::TokioIo::new(client))
                    .await
                    .ok()?;
            let driver = tokio::spawn(connection);
            let request = http::Request::get("/").header(header::HOST, "upstream").body(Empty::new()).ok()?;
            let answer = match sender.send_request(request).await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body = response.into_body().collect().await;
                    HyperAnswer::Read { status, body: body.map(|b| b.to_bytes().to_vec()).map_err(|e| error_chain(&e)) }
                }
                Err(e) => HyperAnswer::Refused { error: error_chain(&e), incomplete: e.is_incomplete_message() },
            };
            drop(sender);
            let _ = driver.await;
            Some(answer)
        };
        let answer = tokio::time::timeout(std::time::Duration::from_secs(10), exchange)
            .await
            .expect("hyper did not finish reading an in-memory answer")
            .unwrap_or(HyperAnswer::Refused { error: "no exchange".into(), incomplete: false });
        upstream.abort();
        answer
    })
}

// ---------------------------------------------------------------------------------------------
// The gateway's request checks.
// ---------------------------------------------------------------------------------------------

/// The request-path checker (gateway/path.rs `check_request_path`).
///
/// Properties of an accepted path: it is the target up to `?`; it starts with `/`; it holds only
/// printable ASCII and no `\`, `;`; every `%` starts a valid escape, and none encodes `/`, `\`,
/// `.`, `%`, `;` or a control byte; no segment is `.` or `..` before or after decoding; no `//`.
pub fn request_path(data: &[u8]) {
    let Ok(path) = crate::web::path::check_request_path(data) else { return };
    let before_query = data.split(|&b| b == b'?').next().unwrap_or_default();
    assert_eq!(path.as_bytes(), before_query);
    assert!(path.starts_with('/'));
    assert!(path.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'\\' && b != b';'), "{path:?}");
    assert!(!path.contains("//"), "{path:?}");
    let lower = path.to_ascii_lowercase();
    for encoded in ["%2f", "%5c", "%2e", "%25", "%3b", "%00", "%7f"] {
        assert!(!lower.contains(encoded), "{path:?} holds {encoded}");
    }
    for segment in path[1..].split('/') {
        let mut decoded = Vec::new();
        let mut bytes = segment.bytes();
        while let Some(b) = bytes.next() {
            if b == b'%' {
                let hex: String = bytes.by_ref().take(2).map(char::from).collect();
                let value = u8::from_str_radix(&hex, 16).unwrap_or_else(|_| panic!("{path:?}: bad escape accepted"));
                assert!(value >= 0x20 && value != 0x7f, "{path:?}: an encoded control byte");
                decoded.push(value);
            } else {
                decoded.push(b);
            }
        }
        assert!(!matches!(&decoded[..], b"." | b".."), "{path:?}: a dot-segment");
        assert!(!decoded.iter().any(|b| matches!(b, b'/' | b'\\' | 0)), "{path:?}: a decoded separator");
    }
}

/// Bearer extraction (web/bearer.rs) from `Authorization` values (the input split at `\n`),
/// and the `WWW-Authenticate` challenge.
///
/// Properties: `extract` agrees exactly with a direct reading of RFC 6750's grammar
/// (`Bearer` in any case, one or more spaces, a b64token, nothing else, one header only);
/// a challenge is always a valid header value with every quoted value closed.
pub fn bearer(data: &[u8]) {
    use crate::web::bearer::{BearerError, challenge, extract};

    let mut headers = HeaderMap::new();
    for value in data.split(|&b| b == b'\n').take(4) {
        let Ok(value) = HeaderValue::from_bytes(value) else { return };
        headers.append(header::AUTHORIZATION, value);
    }
    let values: Vec<&HeaderValue> = headers.get_all(header::AUTHORIZATION).iter().collect();
    let expected = match &values[..] {
        [] => Err(Some(BearerError::Missing)),
        [value] => reference_bearer(value.as_bytes()).ok_or(None),
        _ => Err(Some(BearerError::Repeated)),
    };
    match (extract(&headers), expected) {
        (Ok(token), Ok(expected)) => assert_eq!(token.as_bytes(), expected),
        (Err(error), Err(Some(expected))) => assert_eq!(error, expected),
        (Err(_), Err(None)) => {}
        (got, expected) => panic!("extract gave {got:?}, the grammar {expected:?}"),
    }
    let text = String::from_utf8_lossy(data);
    let value = challenge("invalid_token", &text, &[("scope", &text)]);
    assert!(HeaderValue::from_str(&value).is_ok(), "{value:?}");
    assert!(value.bytes().all(|b| (b' '..=b'~').contains(&b)), "{value:?}");
    assert_eq!(value.matches('"').count(), 8, "{value:?}");
}

/// `credentials = "Bearer" 1*SP b64token`, read by hand: the token, or `None`.
fn reference_bearer(value: &[u8]) -> Option<&[u8]> {
    let rest = value.get(..6).filter(|s| s.eq_ignore_ascii_case(b"bearer")).map(|_| &value[6..])?;
    let token = rest.trim_ascii_start();
    (token.len() < rest.len() && rest[..rest.len() - token.len()].iter().all(|&b| b == b' ')).then_some(())?;
    let body_end = token.iter().rposition(|&b| b != b'=').map(|i| i + 1)?;
    let b64 = |b: &u8| b.is_ascii_alphanumeric() || b"-._~+/".contains(b);
    token[..body_end].iter().all(b64).then_some(token)
}

// ---------------------------------------------------------------------------------------------
// Tokens and the issuer.
// ---------------------------------------------------------------------------------------------

/// An Ed25519 key made from a fixed seed, so that `verify` runs on every EdDSA token.
fn fixed_key() -> &'static crate::token::VerifyingKey {
    static KEY: OnceLock<crate::token::VerifyingKey> = OnceLock::new();
    KEY.get_or_init(|| {
        use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
        let pair = Ed25519KeyPair::from_seed_unchecked(&[7; 32]).expect("an Ed25519 seed");
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "kid": "fuzz", "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref())
        }))
        .expect("a JWK");
        crate::token::VerifyingKey::from_jwk(&jwk, &[crate::token::Alg::EdDSA]).expect("a key").expect("a usable key")
    })
}

/// What every accepted compact JWS satisfies.
fn check_accepted_jws(token: &str, jws: &crate::token::CompactJws<'_>) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not three parts");
    for part in &parts {
        let decoded = URL_SAFE_NO_PAD.decode(part).expect("every part is base64url");
        assert_eq!(URL_SAFE_NO_PAD.encode(&decoded), *part, "a part is not canonical base64url");
    }
    assert!(!parts[2].is_empty(), "an empty signature was accepted");
    assert_eq!(jws.alg.name(), jws.header.alg, "the alg named is not the alg used");
    assert!(jws.header.crit.is_none(), "a crit header was accepted");
}

/// The compact-JWS parser (token/verify.rs `CompactJws::parse`), the access-token claims and
/// signature verification with a fixed key.
///
/// Properties: a token longer than the limit is refused as too large; an accepted token is
/// exactly three canonical base64url parts with a non-empty signature, an algorithm from the
/// allowed list (never `none` or HMAC) named exactly, and no `crit`; only EdDSA tokens can pass
/// the Ed25519 key; its payload reads as the same JSON whichever claims type reads it.
pub fn compact_jws(data: &[u8]) {
    use crate::token::{AccessClaims, Alg, CompactJws, Reason};

    let Ok(token) = std::str::from_utf8(data) else { return };
    let limit = 4096;
    let parsed = CompactJws::parse(token, limit);
    if token.len() > limit {
        assert_eq!(parsed.map(|_| ()).unwrap_err().reason, Reason::TooLarge);
        return;
    }
    let Ok(jws) = parsed else { return };
    check_accepted_jws(token, &jws);
    if jws.verify(fixed_key()).is_ok() {
        assert_eq!(jws.alg, Alg::EdDSA);
    }
    let value = jws.claims::<serde_json::Value>();
    // serde skips unknown fields without checking their strings' UTF-8, so claims can read as
    // AccessClaims and not as a JSON value; the fields read are checked when both read.
    if let (Ok(claims), Ok(value)) = (jws.claims::<AccessClaims>(), value) {
        if let Some(exp) = claims.exp {
            let n = &value["exp"];
            assert!(
                n.as_i64() == Some(exp) || n.as_f64().map(|f| f.floor() as i64) == Some(exp),
                "exp {n} read as {exp}"
            );
        }
        assert!(claims.scopes().iter().all(|s| !s.is_empty()), "an empty scope");
    }
}

/// The issuer's form parsers with their duplicate-parameter rule: `parse_form` (token,
/// revocation and introspection bodies) and `parse_params` (authorization requests).
///
/// Properties: a body is refused exactly when a name repeats (or, for `parse_params`, a value
/// is too long); an accepted body holds every pair; both parsers agree; the map survives being
/// written and read again.
pub fn issuer_form(data: &[u8]) {
    use crate::issuer::authorize::{MAX_PARAM, parse_params};
    use crate::issuer::requests::parse_form;

    let Ok(body) = std::str::from_utf8(data) else { return };
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(body.as_bytes()).map(|(n, v)| (n.into_owned(), v.into_owned())).collect();
    let mut names = std::collections::HashSet::new();
    let repeated = !pairs.iter().all(|(name, _)| names.insert(name.as_str()));
    let form = parse_form(body);
    assert_eq!(form.is_err(), repeated, "parse_form and the duplicate rule disagree");
    let params = parse_params(body);
    let too_long = pairs.iter().any(|(_, v)| v.len() > MAX_PARAM);
    assert_eq!(params.is_err(), repeated || too_long, "parse_params and its rules disagree");
    let Ok(form) = form else { return };
    // The typed reads on top never panic, and a token request is one grant or a named refusal.
    use crate::issuer::requests::{self, AuthorizationRequest, ClientAuthentication, TokenQuery, TokenRequest};
    let _ = TokenRequest::read(&form);
    let _ = requests::read::<TokenQuery>(&form);
    let _ = requests::read::<ClientAuthentication>(&form);
    let _ = requests::read::<AuthorizationRequest>(&form);
    assert_eq!(form.len(), pairs.len());
    assert!(pairs.iter().all(|(n, v)| form.get(n) == Some(v)));
    if let Ok(params) = params {
        assert_eq!(params, form);
    }
    let mut sorted: Vec<_> = form.iter().collect();
    sorted.sort();
    let written = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(sorted).finish();
    let again: HashMap<String, String> = parse_form(&written).expect("a written form reads back");
    assert_eq!(again, form, "the form changed when written and read again");
}

/// The JWT-bearer assertion as the issuer parses it before any key is known: the compact JWS
/// with the assertion size limit, its claims (`aud` a string or a list, NumericDates), and the
/// `x5c` chain (base64 DER certificates).
///
/// Properties: what `compact_jws` checks; `exp`/`iat` read as the JSON numbers floored; `aud`
/// and `resource` read as the JSON string or list; and without trust anchors no `x5c` chain is
/// ever accepted, while with the test CA only a chain whose leaf is not a CA is.
pub fn issuer_assertion(data: &[u8]) {
    use crate::issuer::assertion::{AssertionClaims, MAX_ASSERTION_BYTES};
    use crate::pki::TrustAnchors;
    use crate::token::CompactJws;

    let Ok(token) = std::str::from_utf8(data) else { return };
    let Ok(jws) = CompactJws::parse(token, MAX_ASSERTION_BYTES) else { return };
    check_accepted_jws(token, &jws);
    // As in `compact_jws`: unknown fields' strings are not checked, so both must read.
    if let (Ok(claims), Ok(value)) = (jws.claims::<AssertionClaims>(), jws.claims::<serde_json::Value>()) {
        for (name, date) in [("exp", claims.exp), ("iat", claims.iat)] {
            match (&value[name], date) {
                (serde_json::Value::Null, None) => {}
                (n, Some(date)) => assert!(
                    n.as_i64() == Some(date) || n.as_f64().map(|f| f.floor() as i64) == Some(date),
                    "{name} {n} read as {date}"
                ),
                (n, None) => panic!("{name} {n} was read as absent"),
            }
        }
        for (name, list) in [("aud", &claims.aud), ("resource", &claims.resource)] {
            let expected: Vec<String> = match &value[name] {
                serde_json::Value::Null => Vec::new(),
                serde_json::Value::String(s) => vec![s.clone()],
                other => serde_json::from_value(other.clone()).expect("a list of strings"),
            };
            assert_eq!(*list, expected, "{name}");
        }
    }
    if let Some(x5c) = &jws.header.x5c {
        let now = 1_780_000_000; // 2026-05-28: the dev certificates are valid then.
        assert!(TrustAnchors::default().verify(x5c, now).is_err(), "a chain was trusted without any anchor");
        static TEST_CA: OnceLock<TrustAnchors> = OnceLock::new();
        let anchors = TEST_CA.get_or_init(|| {
            let ca = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/config/dev/test-ca.cert.pem"));
            TrustAnchors::load(&[ca]).expect("the test CA")
        });
        if let Ok(leaf) = anchors.verify(x5c, now) {
            assert!(!leaf.spki_der.is_empty());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// KRR: the SOAP reader and the REST JSON bodies.
// ---------------------------------------------------------------------------------------------

/// The SOAP reader (soap/read.rs), both sides: requests (the simulator) and answers (the KRR
/// facade).
///
/// Properties: a request or answer that is read is written again (soap/write.rs) and reads
/// back the same; whatever is refused is refused with a fault or an error, not a panic. Two
/// losses are compared away: times are compared as written (to the millisecond), and an empty
/// `Kontaktinformasjon` is left out.
pub fn soap(data: &[u8]) {
    use crate::soap::{read, write};

    let Ok(xml) = std::str::from_utf8(data) else { return };
    if let Ok((header, request)) = read::request(xml) {
        let written = write::request(&header, &request, None).expect("a request that was read can be written");
        let again = read::request(&written).unwrap_or_else(|f| panic!("{written}: {f:?}"));
        assert_eq!(again, (header, request), "the request changed when written and read again");
    }
    if let Ok(answer) = read::response(xml) {
        let written = match &answer {
            Ok(response) => write::response(response, None),
            Err(fault) => write::fault(fault),
        }
        .expect("an answer that was read can be written");
        let again = read::response(&written).unwrap_or_else(|e| panic!("{written}: {e}"));
        assert_eq!(again.map(as_written), answer.map(as_written), "the answer changed when written and read again");
    }
}

/// DPoP proofs (token/dpop.rs), as the gateway and the token endpoint read them.
///
/// Properties: no input panics; a proof that holds names a key thumbprint of 43 base64url
/// characters (a SHA-256); and none holds for a request it was not made for.
pub fn dpop_proof(data: &[u8]) {
    use crate::token::dpop::{self, Expected};

    let Ok(proof) = std::str::from_utf8(data) else { return };
    let expected = |method, uri| Expected {
        method,
        uri,
        access_token: None,
        now: 1_562_262_616,
        window: std::time::Duration::from_secs(60),
        nonces: None,
    };
    if let Ok(held) = dpop::check(proof, &expected("POST", "https://server.example.com/token")) {
        assert_eq!(held.jkt.len(), 43, "a thumbprint is a base64url SHA-256");
        assert!(
            dpop::check(proof, &expected("DELETE", "https://elsewhere.example/other")).is_err(),
            "a proof held for another request"
        );
    }
}

/// WS-Security on the KRR link (wssec/): the simulator's verification of a request, and the
/// facade's opening of an answer to a request it signed, with the development certificates.
///
/// Properties: no input panics or hangs; a refusal always names a reason; and an answer is only
/// ever opened if it confirms the request (no input here can, since none carries our fresh
/// request's signature, so every one must be refused).
pub fn wssec(data: &[u8]) {
    use crate::soap::model::{Header, Request};
    use crate::wssec::{Certificate, ClientSecurity, Credentials, Mode, ServerSecurity, Window};
    use std::sync::OnceLock;

    static ENDS: OnceLock<(ClientSecurity, ServerSecurity)> = OnceLock::new();
    let (client, server) = ENDS.get_or_init(|| {
        let dev = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dev");
        let window =
            Window { max_ttl: std::time::Duration::from_secs(1800), skew: std::time::Duration::from_secs(300) };
        let client = ClientSecurity::new(
            Credentials::load(&dev.join("krr-facade.cert.pem"), &dev.join("krr-facade.key.pem")).expect("credentials"),
            Certificate::load(&dev.join("oppslag-server.cert.pem")).expect("the service certificate"),
            window,
        );
        let server = ServerSecurity::new(
            Mode::Required,
            Credentials::load(&dev.join("oppslag-server.cert.pem"), &dev.join("oppslag-server.key.pem"))
                .expect("credentials"),
            crate::pki::TrustAnchors::load(&[dev.join("test-ca.cert.pem")]).expect("the test CA"),
            window,
        );
        (client, server)
    });
    let Ok(xml) = std::str::from_utf8(data) else { return };
    let now = chrono::Utc::now();
    if let Err(refusal) = server.verify(xml, now) {
        assert!(!refusal.message.is_empty(), "a refusal without a reason");
    }
    let request = Request::HentPrintSertifikat;
    let signed = client.sign(&Header::default(), &request, now).expect("our own request signs");
    match client.open(xml, &signed, now) {
        Ok(_) => panic!("an answer was opened that cannot confirm this request"),
        Err(refusal) => assert!(!refusal.message.is_empty(), "a refusal without a reason"),
    }
}

/// The KRR REST body of `POST /rest/v1/personer` and the PersonResource answer (krr/rest.rs).
///
/// Properties: the identifiers that pass `check_ids` are valid, distinct, in first-seen order,
/// 1..=1000 of them, and every one asked for; a refusal names exactly the invalid ones; the
/// answer built for them is JSON that names each identifier in order.
pub fn krr_json(data: &[u8]) {
    use crate::krr::access::{Access, Audience};
    use crate::krr::rest::{Personer, PersonerRequest, check_ids, person_resource};
    use crate::soap::model::{Person, Status};

    let Ok(request) = serde_json::from_slice::<PersonerRequest>(data) else { return };
    let ids = request.personidentifikatorer;
    let invalid_count = ids.iter().filter(|id| !crate::personid::is_valid(id)).count();
    match check_ids(ids.clone()) {
        Ok(valid) => {
            assert!(!valid.is_empty() && valid.len() <= crate::soap::MAX_PERSONS && invalid_count == 0);
            let mut first_seen = Vec::new();
            for id in &ids {
                if !first_seen.contains(id) {
                    first_seen.push(id.clone());
                }
            }
            assert_eq!(valid, first_seen);
            assert!(valid.iter().all(|id| id.len() == 11 && id.bytes().all(|b| b.is_ascii_digit())));
            let access = Access::from_scopes(["krr:global/kontaktinformasjon.read"], Audience::Global);
            let personer = Personer {
                personer: valid.iter().map(|id| person_resource(&Person::bare(id, Status::Aktiv), &access)).collect(),
            };
            let json: serde_json::Value =
                serde_json::from_slice(&serde_json::to_vec(&personer).expect("serialisable")).expect("JSON");
            let named: Vec<&str> = json["personer"]
                .as_array()
                .expect("a list")
                .iter()
                .map(|p| p["personidentifikator"].as_str().expect("an identifier"))
                .collect();
            assert_eq!(named, valid);
        }
        Err((message, invalid)) => {
            assert!(!message.is_empty());
            if !ids.is_empty() && ids.len() <= crate::soap::MAX_PERSONS {
                assert_eq!(invalid.len(), invalid_count, "{message}");
                let bad = ids.iter().filter(|id| !crate::personid::is_valid(id));
                for (named, id) in invalid.iter().zip(bad) {
                    assert!(id.starts_with(&named.personidentifikator));
                    assert!(named.personidentifikator.chars().count() <= 32);
                }
            } else {
                assert!(invalid.is_empty());
            }
        }
    }
}

/// An answer as writing it keeps it: times as written and read, no empty contact information.
fn as_written(response: crate::soap::model::Response) -> crate::soap::model::Response {
    use crate::soap::model::{Channel, Person, Response};
    use crate::soap::time::{parse_xs_date_time, xs_date_time};

    fn channel(channel: &mut Option<Channel>) {
        for time in channel.iter_mut().flat_map(|c| [&mut c.sist_oppdatert, &mut c.sist_verifisert]).flatten() {
            *time = parse_xs_date_time(&xs_date_time(time)).expect("a written time reads back");
        }
    }
    fn person(mut person: Person) -> Person {
        if let Some(kontakt) = &mut person.kontaktinformasjon {
            channel(&mut kontakt.mobiltelefonnummer);
            channel(&mut kontakt.epostadresse);
        }
        person.kontaktinformasjon = person.kontaktinformasjon.filter(|k| !k.is_empty());
        person
    }
    match response {
        Response::HentPersoner(persons) => Response::HentPersoner(persons.into_iter().map(person).collect()),
        Response::HentEndringer { fra, til, seneste, persons } => {
            Response::HentEndringer { fra, til, seneste, persons: persons.into_iter().map(person).collect() }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The differential target is only worth something if hyper does read answers.
    #[test]
    fn hyper_reads_plain_answers() {
        let length = hyper_read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        assert!(matches!(length, HyperAnswer::Read { status: 200, body: Ok(ref b) } if b == b"ok"), "{length:?}");
        let chunked = hyper_read(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n");
        assert!(matches!(chunked, HyperAnswer::Read { status: 201, body: Ok(ref b) } if b == b"ok"), "{chunked:?}");
        let short = hyper_read(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok");
        assert!(matches!(short, HyperAnswer::Read { status: 200, body: Err(_) }), "{short:?}");
        let http_10 = hyper_read(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n");
        assert!(matches!(http_10, HyperAnswer::Refused { .. }), "{http_10:?}");
    }
}
