//! How a Portvakt process stops: which signal means what. (How the gateway's connections wind
//! down is in `gateway::engine`.)

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
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
