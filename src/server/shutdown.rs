//! How a Portvakt process stops: which signal means what, and a short drain window between
//! "stop accepting" and "drop connections with no request yet".

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use tokio::signal::unix::{SignalKind, signal};

/// SIGQUIT hands the listeners to a new process; SIGTERM and SIGINT (Ctrl+C) both drain.
///
/// Pingora's own reading of SIGINT is a fast stop that skips closing the listeners first; with
/// one runtime per thread an accept loop can then spin on a runtime already torn down and the
/// process never exits. Draining on Ctrl+C costs the grace period and always ends.
pub struct Signals;

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut quit), Ok(mut terminate), Ok(mut interrupt)) =
            (signal(SignalKind::quit()), signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
        else {
            tracing::error!("cannot install signal handlers; stopping");
            return ShutdownSignal::GracefulTerminate;
        };
        tokio::select! {
            _ = quit.recv() => ShutdownSignal::GracefulUpgrade,
            _ = terminate.recv() => ShutdownSignal::GracefulTerminate,
            _ = interrupt.recv() => {
                tracing::info!("SIGINT received; draining as for SIGTERM");
                ShutdownSignal::GracefulTerminate
            }
        }
    }
}

/// The longest a connection accepted just before shutdown is given to send its first request.
const FIRST_REQUEST_LINGER: Duration = Duration::from_secs(1);

/// Pingora's proxy drops, as soon as a listener closes, every connection still waiting for a
/// request head. That includes connections accepted an instant earlier whose request is still on
/// the wire, so a client would see a reset during an upgrade. Holding the proxy's clean-up back
/// for a moment lets those requests in; idle keep-alive connections close a moment later.
pub struct Lingering<A> {
    inner: Arc<A>,
    linger: Duration,
}

impl<A> Lingering<A> {
    /// The linger stays well inside the grace period, so requests it lets in can still finish.
    pub fn new(inner: A, grace_period: Duration) -> Self {
        Lingering { inner: Arc::new(inner), linger: FIRST_REQUEST_LINGER.min(grace_period / 2) }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Lingering<A> {
    async fn process_new(self: &Arc<Self>, session: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        self.inner.process_new(session, shutdown).await
    }

    async fn cleanup(&self) {
        tracing::info!(linger = ?self.linger, "listener closed; idle connections close after the linger");
        tokio::time::sleep(self.linger).await;
        self.inner.cleanup().await;
    }
}
