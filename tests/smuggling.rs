//! Request smuggling through the gateway, attacked from a raw socket. Behind the gateway stands
//! a recording upstream that parses every request it receives strictly (its own reading of
//! RFC 9112, independent of the gateway's) and answers each with what it saw. For every attack
//! the test asserts that the upstream saw exactly the requests the gateway admitted, bodies byte
//! for byte, and that every answer a client got was the answer to its own request.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic where a request path may not

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ISS: &str = "https://issuer.test";

/// One message the upstream received, or what it could not parse.
#[derive(Clone, Debug, PartialEq)]
enum Seen {
    Request {
        connection: usize,
        method: String,
        path: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// The connection ended mid-message (a body cut short): not a request.
    Incomplete {
        connection: usize,
    },
    /// Bytes the upstream could not read as a request: the gateway must never send such.
    Garbage {
        connection: usize,
        reason: String,
    },
}

impl Seen {
    fn path(&self) -> Option<&str> {
        match self {
            Seen::Request { path, .. } => Some(path),
            _ => None,
        }
    }

    fn body(&self) -> &[u8] {
        match self {
            Seen::Request { body, .. } => body,
            _ => b"",
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        match self {
            Seen::Request { headers, .. } => headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()),
            _ => None,
        }
    }
}

/// The recording upstream: every connection's messages, in order.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Bytes received on every connection: shows a head arrived before it is a whole request.
    received: Arc<AtomicUsize>,
}

impl Recorder {
    async fn start() -> (Recorder, String) {
        let recorder = Recorder::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (seen, received) = (recorder.seen.clone(), recorder.received.clone());
        tokio::spawn(async move {
            let mut connection = 0;
            while let Ok((stream, _)) = listener.accept().await {
                connection += 1;
                tokio::spawn(record(
                    Wire { stream, buffer: Vec::new(), received: received.clone() },
                    connection,
                    seen.clone(),
                ));
            }
        });
        (recorder, url)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The complete requests seen, after anything in flight has landed.
    async fn requests(&self, expected: usize) -> Vec<Seen> {
        eventually("the upstream to record the requests", || async {
            let requests: Vec<_> = self.seen().into_iter().filter(|s| matches!(s, Seen::Request { .. })).collect();
            (requests.len() >= expected).then_some(requests)
        })
        .await
    }

    fn clear(&self) {
        self.seen.lock().unwrap().clear();
        self.received.store(0, Ordering::SeqCst);
    }

    /// Wait until the upstream has received some bytes (a head, before its body).
    async fn bytes_arrived(&self) {
        eventually("bytes at the upstream", || async { (self.received.load(Ordering::SeqCst) > 0).then_some(()) })
            .await;
    }

    /// Nothing unparseable ever reached the upstream, and nothing under `/smuggled`.
    fn assert_clean(&self) {
        for seen in self.seen() {
            assert!(!matches!(seen, Seen::Garbage { .. }), "the upstream got bytes it could not parse: {seen:?}");
            assert!(!seen.path().is_some_and(|p| p.contains("smuggled")), "a smuggled request got through: {seen:?}");
        }
    }
}

/// Read requests off one upstream connection and answer each with what was seen.
async fn record(mut wire: Wire, connection: usize, seen: Arc<Mutex<Vec<Seen>>>) {
    loop {
        let message = match read_request(&mut wire).await {
            Ok(Some(message)) => message,
            Ok(None) => return,
            Err(Cut) => {
                seen.lock().unwrap().push(Seen::Incomplete { connection });
                return;
            }
        };
        let (method, path, headers, body) = match message {
            Ok(parts) => parts,
            Err(reason) => {
                seen.lock().unwrap().push(Seen::Garbage { connection, reason });
                return;
            }
        };
        let answer = json!({
            "path": path, "connection": connection, "body": String::from_utf8_lossy(&body),
        })
        .to_string();
        let silent = path.ends_with("/silent");
        seen.lock().unwrap().push(Seen::Request { connection, method, path: path.clone(), headers, body });
        if silent {
            // No answer: the connection stays open until the gateway gives up on it.
            while wire.fill().await {}
            return;
        }
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Seen: {path}\r\n\r\n", answer.len());
        if wire.stream.write_all(format!("{head}{answer}").as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The connection ended inside a message.
struct Cut;

type Parsed = Result<(String, String, Vec<(String, String)>, Vec<u8>), String>;

/// One request, read strictly: CRLF line ends, one framing header, exact chunked syntax.
async fn read_request(wire: &mut Wire) -> Result<Option<Parsed>, Cut> {
    let head_end = loop {
        if let Some(end) = wire.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if !wire.fill().await {
            return if wire.buffer.is_empty() { Ok(None) } else { Err(Cut) };
        }
    };
    let head: Vec<u8> = wire.buffer.drain(..head_end).collect();
    if head[..head.len() - 2].windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r') {
        return Ok(Some(Err("a bare LF in the head".into())));
    }
    let mut lines = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut lines);
    if let Err(e) = request.parse(&head) {
        return Ok(Some(Err(format!("httparse: {e}"))));
    }
    let method = request.method.unwrap_or_default().to_owned();
    let path = request.path.unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
        .collect();
    let count = |name: &str| headers.iter().filter(|(n, _)| n == name).count();
    if count("host") != 1 {
        return Ok(Some(Err(format!("{} Host headers", count("host")))));
    }
    let length = headers.iter().find(|(n, _)| n == "content-length").map(|(_, v)| v.clone());
    let coding = headers.iter().find(|(n, _)| n == "transfer-encoding").map(|(_, v)| v.clone());
    if count("content-length") > 1 || count("transfer-encoding") > 1 || (length.is_some() && coding.is_some()) {
        return Ok(Some(Err("ambiguous framing".into())));
    }
    let body = match (length, coding) {
        (Some(length), None) => {
            let Ok(length) = length.parse::<usize>() else { return Ok(Some(Err("a bad Content-Length".into()))) };
            while wire.buffer.len() < length {
                if !wire.fill().await {
                    return Err(Cut);
                }
            }
            wire.buffer.drain(..length).collect()
        }
        (None, Some(coding)) if coding == "chunked" => match read_chunked(wire).await? {
            Ok(body) => body,
            Err(reason) => return Ok(Some(Err(reason))),
        },
        (None, Some(coding)) => return Ok(Some(Err(format!("transfer coding {coding:?}")))),
        (None, None) => Vec::new(),
        (Some(_), Some(_)) => unreachable!("refused above"),
    };
    Ok(Some(Ok((method, path, headers, body))))
}

async fn read_chunked(wire: &mut Wire) -> Result<Result<Vec<u8>, String>, Cut> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(end) = wire.buffer.windows(2).position(|w| w == b"\r\n") {
                break end;
            }
            if !wire.fill().await {
                return Err(Cut);
            }
        };
        let line: Vec<u8> = wire.buffer.drain(..line_end + 2).collect();
        let size = std::str::from_utf8(&line[..line_end]).ok().and_then(|s| usize::from_str_radix(s, 16).ok());
        let Some(size) = size else { return Ok(Err(format!("a bad chunk size line {:?}", line.escape_ascii()))) };
        while wire.buffer.len() < size + 2 {
            if !wire.fill().await {
                return Err(Cut);
            }
        }
        let chunk: Vec<u8> = wire.buffer.drain(..size + 2).collect();
        if &chunk[size..] != b"\r\n" {
            return Ok(Err("a chunk without its CRLF".into()));
        }
        if size == 0 {
            return Ok(Ok(body));
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

/// One upstream connection as the recorder reads it.
struct Wire {
    stream: TcpStream,
    buffer: Vec<u8>,
    received: Arc<AtomicUsize>,
}

impl Wire {
    /// Read more into the buffer: `false` when the connection ended.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk).await {
            Ok(n) if n > 0 => {
                self.buffer.extend_from_slice(&chunk[..n]);
                self.received.fetch_add(n, Ordering::SeqCst);
                true
            }
            _ => false,
        }
    }
}

/// The gateway in front of the recorder, with one route that forwards the token.
struct Setup {
    portvakt: Portvakt,
    recorder: Recorder,
    token: String,
    addr: String,
    _jwks: JwksServer,
}

impl Setup {
    async fn start() -> Setup {
        Setup::start_with("").await
    }

    async fn start_with(server_extra: &str) -> Setup {
        let key = TestKey::new("rsa-1", Algorithm::RS256);
        let jwks = JwksServer::start(jwks(&[&key])).await;
        let (recorder, upstream) = Recorder::start().await;
        let ports = Ports::new();
        let config = format!(
            r#"{server}{server_extra}
[admin]
listen = "127.0.0.1:{admin}"

[gateway]
listen = "127.0.0.1:{gateway}"

[gateway.upstream]
health_check_seconds = 0
read_timeout_ms = 1500

[[gateway.issuers]]
issuer = "{ISS}"
jwks_url = "{jwks_url}"
algorithms = ["RS256"]

[[gateway.routes]]
name = "api"
path = "/api"
upstreams = ["{upstream}"]
forward_token = true
"#,
            server = server_section(),
            admin = ports.admin,
            gateway = ports.gateway,
            jwks_url = jwks.url,
        );
        let portvakt = Portvakt::start(&config, &ports).await;
        let token = key.sign(&json!({
            "iss": ISS, "client_id": "attacker", "scope": "demo:read", "iat": now(), "exp": now() + 600,
        }));
        let addr = format!("127.0.0.1:{}", ports.gateway);
        Setup { portvakt, recorder, token, addr, _jwks: jwks }
    }

    async fn connect(&self) -> Client {
        Client { stream: TcpStream::connect(&self.addr).await.unwrap(), buffer: Vec::new() }
    }

    /// A request head with the token, `extra` header lines (each ending in CRLF) and no body.
    fn head(&self, method: &str, path: &str, extra: &str) -> String {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n{extra}\r\n",
            self.addr, self.token
        )
    }
}

/// A raw client connection to the gateway.
struct Client {
    stream: TcpStream,
    buffer: Vec<u8>,
}

/// One answer: status, lower-cased head, body.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    /// The path of the request the upstream answered with this (its `X-Seen`).
    fn seen(&self) -> Option<&str> {
        self.head.lines().find_map(|l| l.strip_prefix("x-seen: "))
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

impl Client {
    async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).await.unwrap();
    }

    /// The next answer (Content-Length framed, as both the gateway and the recorder frame theirs),
    /// or `None` when the connection closes first.
    async fn answer(&mut self) -> Option<Answer> {
        loop {
            if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buffer[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if self.buffer.len() >= end + 4 + length {
                    let body = String::from_utf8_lossy(&self.buffer[end + 4..end + 4 + length]).into_owned();
                    self.buffer.drain(..end + 4 + length);
                    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                    if status == 100 {
                        continue;
                    }
                    return Some(Answer { status, head, body });
                }
            }
            let mut chunk = [0u8; 8192];
            let read = tokio::time::timeout(DEADLINE, self.stream.read(&mut chunk)).await.expect("an answer in time");
            match read {
                Ok(n) if n > 0 => self.buffer.extend_from_slice(&chunk[..n]),
                _ => return None,
            }
        }
    }

    /// The connection is closed by the gateway, with nothing more sent.
    async fn assert_closed(&mut self) {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(DEADLINE, self.stream.read_to_end(&mut rest)).await.expect("a close in time");
        assert!(read.is_err() || rest.is_empty(), "more came: {}", String::from_utf8_lossy(&rest));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn framing_headers_named_in_connection_cannot_strip_the_body_framing() {
    let setup = Setup::start().await;
    let smuggled = "GET /api/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    for nominated in ["Content-Length", "content-length, close", "Host", "Transfer-Encoding"] {
        setup.recorder.clear();
        let mut client = setup.connect().await;
        let extra = format!("Connection: {nominated}\r\nContent-Length: {}\r\n", smuggled.len());
        client.send(setup.head("POST", "/api/first", &extra)).await;
        // The head alone first: the body follows only once the upstream has the head.
        setup.recorder.bytes_arrived().await;
        client.send(smuggled).await;
        let answer = client.answer().await.expect("an answer");
        assert_eq!((answer.status, answer.seen()), (200, Some("/api/first")), "{nominated}: {answer:?}");
        assert_eq!(answer.json()["body"], smuggled, "{nominated}: the smuggled request is the body, byte for byte");
        // The next request on the connection gets its own answer.
        client.send(setup.head("GET", "/api/second", "")).await;
        if !nominated.contains("close") {
            let answer = client.answer().await.expect("a second answer");
            assert_eq!(answer.seen(), Some("/api/second"), "{nominated}: {answer:?}");
        }
        let requests = setup.recorder.requests(1).await;
        assert_eq!(requests[0].path(), Some("/api/first"));
        assert_eq!(requests[0].body(), smuggled.as_bytes());
        assert_eq!(requests[0].header("host"), Some(setup.addr.as_str()), "Host is never nominated away");
        setup.recorder.assert_clean();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn conflicting_and_obfuscated_framing_is_refused_or_read_one_way_only() {
    let setup = Setup::start().await;
    let smuggled = "GET /api/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    // (name, framing header lines, body bytes, what the upstream may see as the body: None =
    // the request is refused with 400 and nothing reaches the upstream).
    let chunked_smuggle = format!("0\r\n\r\n{smuggled}");
    let te_cl_body = format!("{:x}\r\n{smuggled}\r\n0\r\n\r\n", smuggled.len());
    let cases: Vec<(&str, String, String, Option<&str>)> = vec![
        ("CL.TE", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n".into(), chunked_smuggle.clone(), Some("")),
        ("TE.CL", "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n".into(), te_cl_body.clone(), Some(smuggled)),
        (
            "TE.TE two lines",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n".into(),
            chunked_smuggle.clone(),
            None,
        ),
        ("TE.TE xchunked", "Transfer-Encoding: xchunked\r\n".into(), chunked_smuggle.clone(), None),
        ("TE.TE listed", "Transfer-Encoding: chunked, identity\r\n".into(), chunked_smuggle.clone(), None),
        ("TE space before colon", "Transfer-Encoding : chunked\r\n".into(), chunked_smuggle.clone(), None),
        ("TE vertical tab", "Transfer-Encoding:\x0bchunked\r\n".into(), chunked_smuggle.clone(), None),
        ("TE obs-fold", "Transfer-Encoding:\r\n chunked\r\n".into(), chunked_smuggle.clone(), None),
        ("CL twice, different", "Content-Length: 0\r\nContent-Length: 40\r\n".into(), smuggled.into(), None),
        ("CL listed, different", format!("Content-Length: 0, {}\r\n", smuggled.len()), smuggled.into(), None),
        ("CL listed, equal", format!("Content-Length: {0}, {0}\r\n", smuggled.len()), smuggled.into(), Some(smuggled)),
        ("CL signed", format!("Content-Length: +{}\r\n", smuggled.len()), smuggled.into(), None),
        ("CL with NUL", "Content-Length: 4\x00\r\n".into(), smuggled.into(), None),
        ("header with NUL", format!("X-A: a\x00b\r\nContent-Length: {}\r\n", smuggled.len()), smuggled.into(), None),
        ("header with CR", format!("X-A: a\rb\r\nContent-Length: {}\r\n", smuggled.len()), smuggled.into(), None),
        ("obs-fold", format!("X-A: a\r\n b\r\nContent-Length: {}\r\n", smuggled.len()), smuggled.into(), None),
        (
            "oversized chunk size",
            "Transfer-Encoding: chunked\r\n".into(),
            format!("fffffffffffffffff1\r\n{smuggled}"),
            None,
        ),
        (
            "chunk size with junk",
            "Transfer-Encoding: chunked\r\n".into(),
            format!("2x\r\nab\r\n0\r\n\r\n{smuggled}"),
            None,
        ),
    ];
    for (name, framing, body, upstream_body) in cases {
        setup.recorder.clear();
        let mut client = setup.connect().await;
        client.send(format!("{}{body}", setup.head("POST", "/api/framed", &framing))).await;
        let answer = client.answer().await;
        match upstream_body {
            None => {
                // Refused before the upstream, or cut off upstream before any request was whole.
                if let Some(answer) = &answer {
                    assert!(matches!(answer.status, 400 | 502), "{name}: {answer:?}");
                    assert!(answer.seen().is_none(), "{name}: answered by the upstream: {answer:?}");
                }
                client.assert_closed().await;
                let requests: Vec<_> =
                    setup.recorder.seen().into_iter().filter(|s| matches!(s, Seen::Request { .. })).collect();
                assert!(requests.is_empty(), "{name}: the upstream got {requests:?}");
            }
            Some(expected) => {
                let answer = answer.unwrap_or_else(|| panic!("{name}: no answer"));
                assert_eq!((answer.status, answer.seen()), (200, Some("/api/framed")), "{name}: {answer:?}");
                let requests = setup.recorder.requests(1).await;
                assert_eq!(requests.len(), 1, "{name}: {requests:?}");
                assert_eq!(requests[0].body(), expected.as_bytes(), "{name}");
                // Anything left on the client connection is never read as a request.
                client.send(setup.head("GET", "/api/after", "")).await;
                if let Some(answer) = client.answer().await {
                    assert_eq!(answer.seen(), Some("/api/after"), "{name}: {answer:?}");
                }
            }
        }
        setup.recorder.assert_clean();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bare_lf_and_http_1_0_requests_go_upstream_well_formed() {
    let setup = Setup::start().await;
    // Bare LF line ends (tolerated by the parser): the upstream gets CRLF, one request.
    let mut client = setup.connect().await;
    let head = setup.head("POST", "/api/lf", "Content-Length: 5\r\n").replace("\r\n", "\n");
    client.send(format!("{head}hello")).await;
    let answer = client.answer().await.expect("an answer");
    assert_eq!((answer.status, answer.seen()), (200, Some("/api/lf")), "{answer:?}");
    assert_eq!(setup.recorder.requests(1).await[0].body(), b"hello");

    // HTTP/1.0 without Host and without keep-alive: answered, then closed; Host is added.
    setup.recorder.clear();
    let mut client = setup.connect().await;
    client.send(format!("GET /api/ten HTTP/1.0\r\nAuthorization: Bearer {}\r\n\r\n", setup.token)).await;
    let answer = client.answer().await.expect("an answer");
    assert_eq!((answer.status, answer.seen()), (200, Some("/api/ten")), "{answer:?}");
    client.assert_closed().await;
    let seen = setup.recorder.requests(1).await;
    assert!(seen[0].header("host").is_some_and(|h| h.starts_with("127.0.0.1:")), "{seen:?}");

    // HTTP/1.0 with keep-alive: two requests on one connection, each with its own answer.
    setup.recorder.clear();
    let mut client = setup.connect().await;
    for path in ["/api/ten-a", "/api/ten-b"] {
        let request = format!(
            "POST {path} HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nAuthorization: Bearer {}\r\n\
             Content-Length: 3\r\n\r\nabc",
            setup.token
        );
        client.send(request).await;
        let answer = client.answer().await.expect("an answer");
        assert_eq!(answer.seen(), Some(path), "{answer:?}");
    }
    let seen = setup.recorder.requests(2).await;
    assert_eq!(seen.iter().map(|s| s.body()).collect::<Vec<_>>(), [b"abc", b"abc"]);
    setup.recorder.assert_clean();
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_with_partial_bodies_are_answered_in_order_each_with_its_own_answer() {
    let setup = Setup::start().await;
    let mut client = setup.connect().await;
    // Two whole requests and the first half of a third, in one write.
    let first = format!("{}hello", setup.head("POST", "/api/p1", "Content-Length: 5\r\n"));
    let second = setup.head("GET", "/api/p2", "");
    let third = setup.head("POST", "/api/p3", "Transfer-Encoding: chunked\r\n");
    client.send(format!("{first}{second}{third}3\r\nabc\r\n")).await;
    for path in ["/api/p1", "/api/p2"] {
        let answer = client.answer().await.expect("an answer");
        assert_eq!((answer.status, answer.seen()), (200, Some(path)), "{answer:?}");
    }
    // The rest of the third, and a fourth behind it.
    client.send(format!("2\r\nde\r\n0\r\n\r\n{}", setup.head("GET", "/api/p4", ""))).await;
    for path in ["/api/p3", "/api/p4"] {
        let answer = client.answer().await.expect("an answer");
        assert_eq!(answer.seen(), Some(path), "{answer:?}");
    }
    let seen = setup.recorder.requests(4).await;
    let bodies: Vec<_> = seen.iter().map(|s| (s.path().unwrap().to_owned(), s.body().to_vec())).collect();
    assert_eq!(
        bodies,
        [
            ("/api/p1".to_owned(), b"hello".to_vec()),
            ("/api/p2".to_owned(), vec![]),
            ("/api/p3".to_owned(), b"abcde".to_vec()),
            ("/api/p4".to_owned(), vec![]),
        ]
    );
    setup.recorder.assert_clean();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_sent_after_an_early_refusal_is_never_read_as_a_request() {
    let setup = Setup::start().await;
    let smuggled = setup.head("GET", "/api/smuggled", "");
    // A refused token: the gateway answers before reading the body, and closes.
    let mut client = setup.connect().await;
    let head = format!(
        "POST /api/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer not.a.token\r\nContent-Length: {}\r\n\r\n",
        smuggled.len()
    );
    client.send(&head).await;
    let answer = client.answer().await.expect("a refusal");
    assert_eq!(answer.status, 401, "{answer:?}");
    assert!(answer.head.contains("connection: close"), "{}", answer.head);
    let _ = client.stream.write_all(smuggled.as_bytes()).await;
    client.assert_closed().await;

    // The same with Expect: 100-continue: no go-ahead, a refusal, a close.
    let mut client = setup.connect().await;
    client.send(head.replace("\r\n\r\n", "\r\nExpect: 100-continue\r\n\r\n")).await;
    let answer = client.answer().await.expect("a refusal");
    assert_eq!(answer.status, 401, "{answer:?}");
    let _ = client.stream.write_all(smuggled.as_bytes()).await;
    client.assert_closed().await;

    // An unknown route refused with its body already sent: nothing of it reaches anyone.
    let mut client = setup.connect().await;
    client
        .send(format!("POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{smuggled}", smuggled.len()))
        .await;
    assert_eq!(client.answer().await.expect("a refusal").status, 404);
    setup.recorder.assert_clean();
    assert!(setup.recorder.seen().is_empty(), "{:?}", setup.recorder.seen());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_leaving_mid_body_poisons_no_upstream_connection() {
    let setup = Setup::start().await;
    let smuggled = setup.head("GET", "/api/smuggled", "");
    let mut attacker = setup.connect().await;
    // A body declared longer than sent, holding a request of its own; then the attacker leaves.
    attacker.send(format!("{}{smuggled}", setup.head("POST", "/api/cut", "Content-Length: 4000\r\n"))).await;
    setup.recorder.bytes_arrived().await;
    drop(attacker);
    eventually("the upstream to see the cut request end", || async {
        setup.recorder.seen().iter().any(|s| matches!(s, Seen::Incomplete { .. })).then_some(())
    })
    .await;
    // The next client of the route gets its own answer, on a fresh upstream connection.
    for i in 0..3 {
        let mut client = setup.connect().await;
        let path = format!("/api/next-{i}");
        client.send(setup.head("GET", &path, "")).await;
        let answer = client.answer().await.expect("an answer");
        assert_eq!((answer.status, answer.seen()), (200, Some(path.as_str())), "{answer:?}");
    }
    let requests = setup.recorder.requests(3).await;
    assert_eq!(requests.len(), 3, "only the three whole requests: {requests:?}");
    setup.recorder.assert_clean();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_head_sent_slowly_meets_one_overall_deadline() {
    let setup = Setup::start_with("request_head_timeout_ms = 500\n").await;
    let mut client = setup.connect().await;
    let head = setup.head("GET", "/api/slow", "");
    let started = std::time::Instant::now();
    // One byte at a time, each well within any per-read timeout, until the gateway gives up.
    let mut refused = None;
    for byte in head.as_bytes() {
        if client.stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        let mut peek = [0u8; 1];
        if let Ok(Ok(n)) =
            tokio::time::timeout(std::time::Duration::from_millis(50), client.stream.peek(&mut peek)).await
        {
            if n > 0 {
                refused = client.answer().await;
            }
            break;
        }
    }
    let answer = refused.expect("a 408 before the head was whole");
    assert_eq!(answer.status, 408, "{answer:?}");
    assert_eq!(answer.json()["error"], "request_timeout");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(setup.recorder.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_head_is_refused_without_echoing_it_in_the_answer_or_the_log() {
    let setup = Setup::start().await;
    let secret = "Cookie: session=TOPSECRET-26074502015\r\n";
    let mut client = setup.connect().await;
    client.send(format!("GET /api HTTP/1.1\r\nHost: x\r\n{secret}No colon here\r\n\r\n")).await;
    let answer = client.answer().await.expect("a 400");
    assert_eq!(answer.status, 400);
    assert!(answer.json()["error_description"].as_str().unwrap().contains("request head"), "{answer:?}");
    assert!(!answer.body.contains("TOPSECRET") && !answer.body.contains("26074502015"), "{answer:?}");
    // The admin listener (an axum app on the same connection code) refuses it the same way.
    let (status, body) =
        raw_request(&setup.portvakt.admin, &format!("GET /healthz HTTP/1.1\r\n{secret}Bad\r\n\r\n")).await;
    assert_eq!(status, 400, "{body}");
    assert!(!body.contains("TOPSECRET"), "{body}");
    // A request target the parser refuses is not quoted either.
    let mut client = setup.connect().await;
    client.send("GET /api/x?\"TOPSECRET\" HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let answer = client.answer().await.expect("a 400");
    assert_eq!(answer.status, 400);
    assert!(!answer.body.contains("TOPSECRET"), "{answer:?}");
    // The access log leaves the query out: tokens travel there too.
    let mut client = setup.connect().await;
    client.send(setup.head("GET", "/api/q?access_token=TOPSECRET", "")).await;
    assert_eq!(client.answer().await.expect("an answer").status, 200);
    eventually("the access line", || async { setup.portvakt.logs().contains("/api/q").then_some(()) }).await;
    let logs = setup.portvakt.logs();
    assert!(!logs.contains("TOPSECRET") && !logs.contains("26074502015"), "the log quotes the head:\n{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn underscored_names_and_proxy_never_reach_the_upstream() {
    let setup = Setup::start().await;
    let mut client = setup.connect().await;
    let extra = "x_forwarded_for: 6.6.6.6\r\nx_real_ip: 6.6.6.6\r\nx_request_id: forged\r\nx_portvakt_pid: 1\r\n\
                 content_length: 99\r\ntransfer_encoding: chunked\r\nProxy: http://evil:1/\r\nX-Kept: yes\r\n";
    client.send(setup.head("GET", "/api/names", extra)).await;
    assert_eq!(client.answer().await.expect("an answer").status, 200);
    let seen = &setup.recorder.requests(1).await[0];
    let Seen::Request { headers, .. } = seen else { unreachable!() };
    let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.iter().all(|n| !n.contains('_') && *n != "proxy"), "{names:?}");
    assert_eq!(seen.header("x-kept"), Some("yes"));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn transfer_codings_other_than_chunked_http_1_1_without_host_and_expect_are_handled_by_the_rules() {
    let setup = Setup::start().await;
    for coding in ["gzip, chunked", "chunked, chunked", "identity"] {
        let mut client = setup.connect().await;
        let extra = format!("Transfer-Encoding: {coding}\r\n");
        client.send(format!("{}5\r\nhello\r\n0\r\n\r\n", setup.head("POST", "/api/coded", &extra))).await;
        let answer = client.answer().await.expect("an answer");
        assert!(matches!(answer.status, 400 | 501), "{coding}: {answer:?}");
        client.assert_closed().await;
    }
    // HTTP/1.1 without Host.
    let mut client = setup.connect().await;
    client.send(format!("GET /api/hostless HTTP/1.1\r\nAuthorization: Bearer {}\r\n\r\n", setup.token)).await;
    let answer = client.answer().await.expect("an answer");
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(answer.body.contains("Host"), "{answer:?}");
    // Expect with a body that goes upstream keeps the connection for the next request.
    let mut client = setup.connect().await;
    client.send(setup.head("POST", "/api/expect", "Expect: 100-continue\r\nContent-Length: 5\r\n")).await;
    let mut interim = [0u8; 25];
    tokio::time::timeout(DEADLINE, client.stream.read_exact(&mut interim)).await.expect("a go-ahead").unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    client.send(format!("hello{}", setup.head("GET", "/api/after-expect", ""))).await;
    assert_eq!(client.answer().await.expect("an answer").seen(), Some("/api/expect"));
    assert_eq!(client.answer().await.expect("the next answer").seen(), Some("/api/after-expect"));
    // HTTP/1.0 gets no 100 Continue: it sends its body anyway.
    let mut client = setup.connect().await;
    let request = format!(
        "POST /api/ten HTTP/1.0\r\nAuthorization: Bearer {}\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
        setup.token
    );
    client.send(request).await;
    let answer = client.answer().await.expect("an answer");
    assert_eq!((answer.status, answer.seen()), (200, Some("/api/ten")), "no interim answer first: {answer:?}");
    setup.recorder.assert_clean();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_sent_slowly_meets_one_overall_deadline_and_its_upstream_connection_closes() {
    let setup = Setup::start_with("request_body_timeout_ms = 500\n").await;
    let mut client = setup.connect().await;
    client.send(format!("{}x", setup.head("POST", "/api/drip", "Content-Length: 1000\r\n"))).await;
    let started = std::time::Instant::now();
    let answer = loop {
        // A byte now and then, each within any per-read timeout, until the gateway gives up.
        if let Ok(Ok(n)) =
            tokio::time::timeout(std::time::Duration::from_millis(100), client.stream.peek(&mut [0u8; 1])).await
            && n > 0
        {
            break client.answer().await.expect("a 408");
        }
        if client.stream.write_all(b"x").await.is_err() {
            panic!("the connection closed without an answer");
        }
        assert!(started.elapsed() < DEADLINE, "no deadline");
    };
    assert_eq!(answer.status, 408, "{answer:?}");
    eventually("the upstream connection to close", || async {
        setup.recorder.seen().iter().any(|s| matches!(s, Seen::Incomplete { .. })).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_the_upstream_may_have_acted_on_is_never_sent_twice() {
    let setup = Setup::start().await;
    let mut client = setup.connect().await;
    client.send(setup.head("GET", "/api/warm", "")).await;
    assert_eq!(client.answer().await.expect("an answer").status, 200);
    // On the kept connection, an upstream that takes the request and never answers: 504, once.
    client.send(setup.head("GET", "/api/silent", "")).await;
    assert_eq!(client.answer().await.expect("an answer").status, 504);
    let silent = setup.recorder.seen().iter().filter(|s| s.path() == Some("/api/silent")).count();
    assert_eq!(silent, 1, "{:?}", setup.recorder.seen());
}

/// The attack of the issue, against the default stack: a request to authlevel (proxied to the
/// issuer) whose `Connection` names `Content-Length`, with a body that is a token request. The
/// body must reach the issuer as authlevel's body, never as a request of its own: the grant
/// assertion in it stays unused, the next request on the connection and the next client get their
/// own answers.
#[tokio::test(flavor = "multi_thread")]
async fn the_default_stack_never_executes_a_body_as_a_request() {
    let ports = Ports::new();
    let portvakt = Portvakt::start(&default_config(&ports, ""), &ports).await;
    let issuer = issuer_url(&ports);
    let token = machine_token(&issuer, &["global/idporten.authlevel.read"]).await;
    let assertion = demo_maskinporten(&issuer).assertion(&["global/kontaktinformasjon.read"], &json!({})).unwrap();
    let form = format!("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}");
    let addr = format!("127.0.0.1:{}", ports.gateway);
    let authlevel = |extra: &str| {
        format!(
            "POST /authlevel/rest/v1/sikkerhetsnivaa HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nX-Portvakt-Pid: 26074502015\r\n{extra}\r\n"
        )
    };
    // (1) and (2): the token request in the body, left unfinished (its declared body is longer).
    let smuggled = format!(
        "POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{form}",
        form.len() + 40
    );
    let mut attacker = Client { stream: TcpStream::connect(&addr).await.unwrap(), buffer: Vec::new() };
    attacker.send(authlevel(&format!("Connection: Content-Length\r\nContent-Length: {}\r\n", smuggled.len()))).await;
    attacker.send(&smuggled).await;
    let answer = attacker.answer().await.expect("authlevel's answer");
    assert_eq!(answer.status, 400, "authlevel read the whole body as its own: {answer:?}");
    assert!(answer.json().get("access_token").is_none(), "{answer:?}");
    let own = r#"{"personidentifikator": "02128926987"}"#;
    attacker.send(format!("{}{own}", authlevel(&format!("Content-Length: {}\r\n", own.len())))).await;
    if let Some(next) = attacker.answer().await {
        assert_eq!(next.status, 404, "the next request gets its own answer (never logged in): {next:?}");
        assert!(next.json().get("access_token").is_none(), "{next:?}");
    }
    drop(attacker);
    // (3): the next client of the route gets its own answer.
    for _ in 0..3 {
        let mut victim = Client { stream: TcpStream::connect(&addr).await.unwrap(), buffer: Vec::new() };
        victim.send(format!("{}{own}", authlevel(&format!("Content-Length: {}\r\n", own.len())))).await;
        let answer = victim.answer().await.expect("an answer");
        assert_eq!(answer.status, 404, "{answer:?}");
    }
    // The assertion was never used: it still buys a token, once.
    let direct = reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 200, "the smuggled grant was executed: {}", direct.text().await.unwrap());
    drop(portvakt);
}
