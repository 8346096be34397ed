//! The gateway's background work: fetching and refreshing issuer keys, checking upstreams.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::ServiceReadyNotifier;
use pingora::services::background::BackgroundService;

use super::GatewayState;

/// Fetches every issuer's keys at start (retrying quickly until it has them), then refreshes
/// them every `refresh`; a failed refresh is retried sooner but keeps the old keys.
///
/// It reports ready once every issuer's keys are held (or `startup_wait` has passed), and the
/// gateway's listener waits for that: a new process taking over listeners never answers 503
/// for keys it is still fetching.
pub struct KeyRefresher {
    pub state: Arc<ArcSwap<GatewayState>>,
    pub refresh: Duration,
    pub startup_wait: Duration,
}

const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(30);
const TICK: Duration = Duration::from_millis(100);

#[async_trait]
impl BackgroundService for KeyRefresher {
    async fn start_with_ready_notifier(&self, mut shutdown: ShutdownWatch, ready: ServiceReadyNotifier) {
        let started = Instant::now();
        let mut ready = Some(ready);
        // issuer → (when next due, current retry backoff)
        let mut schedule: HashMap<Arc<str>, (Instant, Duration)> = HashMap::new();
        loop {
            let state = self.state.load_full();
            let now = Instant::now();
            for issuer in state.validator.issuers().filter(|i| i.is_fetched()) {
                let (due, backoff) = *schedule.entry(issuer.issuer.clone()).or_insert((now, FIRST_RETRY));
                if due > now {
                    continue;
                }
                let next = match issuer.refresh().await {
                    Ok(count) => {
                        tracing::info!(issuer = %issuer.issuer, keys = count, kids = ?issuer.kids(), "issuer keys fetched");
                        (Instant::now() + self.refresh, FIRST_RETRY)
                    }
                    Err(e) if issuer.has_keys() => {
                        tracing::warn!(issuer = %issuer.issuer, error = %e.chain(), "key refresh failed; keeping the keys held");
                        (
                            Instant::now() + backoff.max(Duration::from_secs(5)).min(self.refresh),
                            (backoff * 2).min(MAX_RETRY),
                        )
                    }
                    Err(e) => {
                        // The first misses are expected when the issuer starts in this process.
                        if backoff >= Duration::from_secs(1) {
                            tracing::warn!(issuer = %issuer.issuer, error = %e.chain(), retry_in = ?backoff, "no signing keys yet for this issuer");
                        } else {
                            tracing::debug!(issuer = %issuer.issuer, error = %e.chain(), retry_in = ?backoff, "no signing keys yet for this issuer");
                        }
                        (Instant::now() + backoff, (backoff * 2).min(MAX_RETRY))
                    }
                };
                schedule.insert(issuer.issuer.clone(), next);
            }
            if ready.is_some() && (state.is_ready() || started.elapsed() >= self.startup_wait) {
                if !state.is_ready() {
                    tracing::warn!(waited = ?self.startup_wait, "the gateway starts without the keys of every issuer");
                }
                if let Some(ready) = ready.take() {
                    ready.notify_ready();
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// TCP health checks of every upstream address, every `interval`.
pub struct HealthChecker {
    pub state: Arc<ArcSwap<GatewayState>>,
    pub interval: Duration,
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // Backends start healthy; the first probe waits one interval so services starting in
        // the same process (the issuer behind the authlevel route) have bound their listeners.
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.changed() => return,
            }
            let state = self.state.load_full();
            for upstream in state.upstreams() {
                upstream.health_check().await;
            }
        }
    }
}
