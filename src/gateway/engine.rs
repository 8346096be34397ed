//! The gateway's client connections, on Pingora's core. Pingora's HTTP/1 server sessions read
//! and frame every client message (size limits, keep-alive, chunking, timeouts) and its
//! connector opens, pools and health-checks upstream connections; the upstream half of each
//! exchange is `upstream::wire`. This loop adds one thing: an upstream connection stays with its
//! client connection between requests (a bounded number of them, see `Slots`). pingora-proxy
//! hands every upstream connection back to the shared pool after each request (a task, a lock
//! and a check per request, plus channels between its two halves); profiling showed that to be
//! most of its cost per request (docs/benchmarks.md).
//!
//! The phases of one request, as Pingora's `ProxyHttp` names them:
//!
//! | phase | here |
//! | --- | --- |
//! | read the request head | `web::connection` (deadline, pipelining, safe 400/408) |
//! | `request_filter`: admit or answer | `admission` (message, path, route, token, policy, rate; handlers) |
//! | `upstream_peer`: choose a backend | `GatewayService::forward` (balancing, kept connection, one resend) |
//! | `upstream_request_filter` | `forwarding::upstream_request` (framing, hops, claims, addresses) |
//! | request body, answer head and body | `GatewayService::exchange` over `upstream::wire` |
//! | `response_filter` | `forwarding::downstream_response` |
//! | `logging` | `access_log` |
//! | `fail_to_proxy`: the refusal | `error::GatewayError::answer` |

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use futures_util::FutureExt;
use pingora::apps::ServerApp;
use pingora::connectors::{ConnectorOptions, TransportConnector};
use pingora::protocols::Stream;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use pingora::server::configuration::ServerConf;
use pingora::upstreams::peer::Peer;
use pingora::{Error, ErrorType};
use tokio::io::AsyncReadExt;

use super::Gateway;
use super::admission::{Admission, RequestCtx, send_continue_if_expected};
use super::error::GatewayError;
use super::forwarding::{ClaimHeaders, ClientPeer};
use super::respond::{self, Answer};
use super::routes::Target;
use super::upstream::PeerTarget;
use super::upstream::wire::{self, RequestHead};
use super::validator::LastToken;
use crate::web::connection::{self as web, ClientLimits};

/// Shutdown: once the listener has closed, every open connection still gets its next request
/// answered, with `Connection: close`, until the grace period ends. A connection accepted an
/// instant before the listener closed thus gets its answer rather than a reset (pingora-proxy
/// drops every connection waiting for a request the moment its listener closes).
pub struct GatewayService {
    gateway: Gateway,
    connector: TransportConnector,
    slots: Arc<Slots>,
    limits: ClientLimits,
}

impl GatewayService {
    pub fn new(gateway: Gateway, conf: &ServerConf, limits: ClientLimits) -> GatewayService {
        GatewayService {
            gateway,
            connector: TransportConnector::new(Some(ConnectorOptions::from_server_conf(conf))),
            slots: Arc::new(Slots { taken: AtomicUsize::new(0) }),
            limits,
        }
    }
}

/// How many upstream connections client connections keep between requests, idle or not, held
/// under `gateway.upstream.kept_connections`. Beyond that a connection goes back to the pool
/// after each request, so idle clients cannot pile up idle upstream connections. Not a
/// `tokio::sync::Semaphore`: the bound is read from the current state at each request, so a
/// reload that changes it takes effect at once, with no permits to add or forget.
struct Slots {
    taken: AtomicUsize,
}

/// One taken slot, given back when the kept connection goes (to the pool, or closed).
struct Slot(Arc<Slots>);

impl Slots {
    fn take(self: &Arc<Self>, max: usize) -> Option<Slot> {
        self.taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| Slot(self.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.taken.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What one client connection carries from request to request.
#[derive(Default)]
struct ClientConnection {
    /// The upstream connection kept for it.
    held: Option<Held>,
    /// Its peer, found at its first request.
    peer: Option<Option<ClientPeer>>,
    /// The last token it showed, and the claim headers made of it.
    last_token: Option<LastToken>,
    claims: Option<ClaimHeaders>,
}

/// An upstream connection kept with its client connection between requests.
struct Held {
    target: Arc<PeerTarget>,
    stream: Stream,
    slot: Slot,
}

/// How one request ended.
enum Outcome {
    /// The whole answer went out: the connection can take another request.
    Done(u16),
    /// Nothing went to the client yet: it gets this refusal, then the connection closes.
    Refused(GatewayError, Box<Error>),
    /// The client went away, or the answer broke off after it began: close.
    Broken(u16, Box<Error>),
}

/// How one exchange with an upstream connection ended.
enum Exchange {
    /// The whole answer went out; whether the upstream connection can take another request.
    Answered(u16, bool),
    /// The upstream failed before its answer began: another connection may be tried.
    NoAnswer(Box<Error>),
    Over(Outcome),
}

#[async_trait]
impl ServerApp for GatewayService {
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let mut connection = ClientConnection::default();
        let mut next = Some(web::Connection::new(stream));
        while let Some(client) = next.take() {
            let Some(mut session) = client.next_request(self.limits).await else { break };
            if *shutdown.borrow() {
                // Answer, then close: the client goes on to the process taking over.
                session.set_keepalive(None);
            }
            if connection.peer.is_none() {
                connection.peer = Some(ClientPeer::of(&session));
            }
            if !self.serve(&mut session, &mut connection).await {
                break;
            }
            next = web::Connection::after(session.finish().await);
        }
        if let Some(kept) = connection.held {
            self.release(kept);
        }
        None
    }

    async fn cleanup(&self) {
        tracing::info!("gateway listener closed; open connections get their next answer with Connection: close");
    }
}

impl GatewayService {
    /// Hand a kept upstream connection back to Pingora's pool, which watches it while idle.
    fn release(&self, kept: Held) {
        self.connector.release_stream(kept.stream, kept.target.hash, kept.target.peer.idle_timeout());
    }

    /// One request: answer it or forward it, then count and log it. `false` closes the connection.
    async fn serve(&self, session: &mut ServerSession, connection: &mut ClientConnection) -> bool {
        let gateway = &self.gateway;
        let mut ctx = gateway.new_ctx(self.limits.body);
        let early = match gateway.admit_request(session, &mut ctx, &mut connection.last_token).await {
            Ok(Admission::Forward) => None,
            Ok(Admission::Answer(answer)) => Some(answer),
            Err(refusal) => Some(refusal.answer_with(gateway.resource_metadata(&ctx))),
        };
        let outcome = match early {
            Some(answer) => match answer_early(session, &answer, ctx.request_id()).await {
                Ok(()) => Outcome::Done(answer.status),
                Err(e) => Outcome::Broken(answer.status, e),
            },
            None => self.forward(session, &ctx, connection).await,
        };
        match outcome {
            Outcome::Done(status) => {
                gateway.log(session, status, None, &ctx);
                true
            }
            Outcome::Refused(refusal, error) => {
                let answer = refusal.answer_with(gateway.resource_metadata(&ctx));
                session.set_keepalive(None);
                if let Err(e) = respond::send(session, &answer, ctx.request_id()).await {
                    tracing::debug!(error = %e, "cannot send the error answer");
                }
                gateway.log(session, answer.status, Some(&error.to_string()), &ctx);
                false
            }
            Outcome::Broken(status, error) => {
                gateway.log(session, status, Some(&error.to_string()), &ctx);
                false
            }
        }
    }

    /// Send the request to the route's upstream and its answer to the client. A backend that
    /// cannot be reached makes way for the next; a request that failed on a kept connection
    /// (the upstream may have closed it meanwhile) is sent once more on a new connection when it
    /// is safe to repeat: an idempotent method or route, and a body still held in full.
    async fn forward(
        &self,
        session: &mut ServerSession,
        ctx: &RequestCtx,
        connection: &mut ClientConnection,
    ) -> Outcome {
        let ClientConnection { held, peer, claims, .. } = connection;
        let peer = peer.as_ref().and_then(Option::as_ref);
        let Some(route) = self.gateway.route(ctx) else {
            return internal_error("a request was forwarded without a route");
        };
        let Target::Upstream(upstream) = &route.target else {
            return internal_error("a request was forwarded on a route without upstreams");
        };
        let request = match self.gateway.upstream_request(session, ctx, &upstream.host, peer, claims) {
            Ok(request) => request,
            Err(e) => {
                return Outcome::Refused(GatewayError::Internal("cannot build the upstream request".into()), e);
            }
        };
        let repeatable = session.req_header().method.is_idempotent() || route.idempotent;
        if repeatable {
            session.enable_retry_buffering();
        }
        if let Err(e) = send_continue_if_expected(session).await {
            return Outcome::Broken(0, e);
        }
        let backends = upstream.backend_count();
        let mut connect_failures = 0;
        let mut resent = false;
        loop {
            let Some(target) = upstream.peer() else {
                let refusal = GatewayError::Unavailable {
                    description: "no healthy upstream for this route".into(),
                    retry_after: ctx.state().retry_after_seconds,
                };
                return Outcome::Refused(refusal, Error::explain(ErrorType::HTTPStatus(503), "no healthy upstream"));
            };
            let (peer, hash) = (&target.peer, target.hash);
            let mut slot = None;
            let kept = match held.take() {
                Some(kept) if kept.target.hash == hash && !resent => {
                    slot = Some(kept.slot);
                    still_open(kept.stream)
                }
                Some(other) => {
                    self.release(other);
                    None
                }
                None => None,
            };
            let connected = match kept {
                Some(stream) => Ok((stream, true)),
                // A resend goes on a new connection, never on another one that may be stale.
                None if resent => self.connector.new_stream(peer).await.map(|stream| (stream, false)),
                None => self.connector.get_stream(peer).await,
            };
            let (mut stream, reused) = match connected {
                Ok(connected) => connected,
                Err(e) => {
                    connect_failures += 1;
                    if connect_failures < backends {
                        continue;
                    }
                    return Outcome::Refused(GatewayError::upstream(&e), e.more_context(format!("Peer: {peer}")));
                }
            };
            let mut upstream = wire::Connection::new(&mut stream, target.timeouts);
            match self.exchange(session, &mut upstream, &request, ctx, resent).await {
                Exchange::Answered(status, reusable) => {
                    if reusable {
                        match slot.or_else(|| self.slots.take(ctx.state().kept_connections)) {
                            Some(slot) => *held = Some(Held { target: target.clone(), stream, slot }),
                            None => self.connector.release_stream(stream, hash, peer.idle_timeout()),
                        }
                    }
                    return Outcome::Done(status);
                }
                Exchange::NoAnswer(e) => {
                    let body_held = session.is_body_done() && !session.retry_buffer_truncated();
                    // Only a connection the upstream had closed: a timeout or a bad answer came
                    // from an upstream that may have acted on the request.
                    let stale =
                        matches!(e.etype(), ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError);
                    if reused && stale && repeatable && body_held && !resent {
                        resent = true;
                        continue;
                    }
                    return Outcome::Refused(GatewayError::upstream(&e), e.more_context(format!("Peer: {peer}")));
                }
                Exchange::Over(outcome) => return outcome,
            }
        }
    }

    /// One request and its answer over one upstream connection. A resend takes the body from
    /// the copy kept of it; otherwise the body passes through as it arrives.
    async fn exchange(
        &self,
        session: &mut ServerSession,
        upstream: &mut wire::Connection<'_>,
        request: &RequestHead,
        ctx: &RequestCtx,
        resend: bool,
    ) -> Exchange {
        if let Err(e) = upstream.write_head(request).await {
            return Exchange::NoAnswer(e);
        }
        if resend {
            if let Some(body) = session.get_retry_buffer()
                && let Err(e) = upstream.write_body(request, &body).await
            {
                return Exchange::NoAnswer(e);
            }
        } else {
            loop {
                match web::read_body(session, ctx.body_until).await {
                    Ok(Some(chunk)) => {
                        if let Err(e) = upstream.write_body(request, &chunk).await {
                            return Exchange::NoAnswer(e);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Exchange::Over(unreadable_body(e)),
                }
            }
        }
        if let Err(e) = upstream.end_body(request).await {
            return Exchange::NoAnswer(e);
        }
        let head_request = session.req_header().method == http::Method::HEAD;
        let mut answer = match upstream.read_response(head_request).await {
            Ok(answer) => answer,
            Err(e) => return Exchange::NoAnswer(e),
        };
        let response = match self.gateway.downstream_response(&answer, ctx) {
            Ok(response) => response,
            Err(e) => return Exchange::NoAnswer(e),
        };
        let status = response.status.as_u16();
        if let Err(e) = session.write_response_header(response).await {
            return Exchange::Over(Outcome::Broken(status, e));
        }
        loop {
            match upstream.read_body(&mut answer).await {
                Ok(Some(chunk)) => {
                    if let Err(e) = session.write_response_body(chunk, false).await {
                        return Exchange::Over(Outcome::Broken(status, e));
                    }
                }
                Ok(None) => return Exchange::Answered(status, answer.reusable()),
                Err(e) => return Exchange::Over(Outcome::Broken(status, e)),
            }
        }
    }
}

/// A kept upstream connection that the upstream closed, or wrote to unasked, while it was idle
/// is not used again. Nothing to read means it is still open.
fn still_open(mut stream: Stream) -> Option<Stream> {
    let mut byte = [0u8; 1];
    match tokio::task::unconstrained(stream.read(&mut byte)).now_or_never() {
        None => Some(stream),
        Some(_) => None,
    }
}

/// An answer the gateway gives itself. When the client's body was not read (a refusal before
/// it was needed), the connection closes after the answer: whatever the client sends next may
/// be that body, and is never taken for a request (nor waited for, after `Expect: 100-continue`).
async fn answer_early(session: &mut ServerSession, answer: &Answer, request_id: &str) -> pingora::Result<()> {
    if !session.is_body_done() {
        session.set_keepalive(None);
    }
    respond::send(session, answer, request_id).await
}

/// A request body that broke off is not answered; a malformed one gets a 400.
fn unreadable_body(error: Box<Error>) -> Outcome {
    match error.etype() {
        ErrorType::ReadError | ErrorType::ConnectionClosed => Outcome::Broken(0, error),
        _ => Outcome::Refused(GatewayError::unreadable_body(&error), error),
    }
}

fn internal_error(reason: &'static str) -> Outcome {
    Outcome::Refused(
        GatewayError::Internal("the gateway failed to handle the request".into()),
        Error::explain(ErrorType::InternalError, reason),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_more_connections_are_kept_than_there_are_slots_and_a_slot_frees_when_its_connection_goes() {
        let slots = Arc::new(Slots { taken: AtomicUsize::new(0) });
        let first = slots.take(2).expect("a first slot");
        let second = slots.take(2).expect("a second slot");
        assert!(slots.take(2).is_none(), "a third connection goes back to the pool");
        drop(first);
        let third = slots.take(2).expect("the freed slot");
        assert!(slots.take(0).is_none(), "0 turns keeping off");
        drop((second, third));
        assert_eq!(slots.taken.load(Ordering::Acquire), 0);
    }
}
