//! A route's upstreams: round-robin over healthy addresses, pooled connections, timeouts.

use std::collections::BTreeSet;
use std::time::Duration;

use pingora::lb::discovery::Static;
use pingora::lb::health_check::TcpHealthCheck;
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::upstreams::peer::HttpPeer;
use url::Url;

use crate::config::{UpstreamSettings, resolve};

/// What a backend needs beyond its address: TLS and the name to present.
#[derive(Clone, Debug)]
struct Target {
    tls: bool,
    host: String,
}

pub struct Upstream {
    lb: LoadBalancer<RoundRobin>,
    /// The configured URLs, to tell whether a reload changed anything.
    pub urls: Vec<Url>,
    connect_timeout: Duration,
    read_timeout: Duration,
    write_timeout: Duration,
    idle_timeout: Duration,
}

impl Upstream {
    pub fn new(urls: &[Url], settings: &UpstreamSettings) -> Result<Upstream, String> {
        let mut backends = BTreeSet::new();
        for url in urls {
            let target = Target { tls: url.scheme() == "https", host: url.host_str().unwrap_or_default().to_owned() };
            for addr in resolve(url)? {
                let mut backend = Backend::new(&addr.to_string()).map_err(|e| format!("{url}: {e}"))?;
                backend.ext.insert(target.clone());
                backends.insert(backend);
            }
        }
        let mut backends = Backends::new(Static::new(backends));
        let mut check = TcpHealthCheck::new();
        // One lost probe is not an outage: mark a backend down after two in a row.
        check.consecutive_failure = 2;
        backends.set_health_check(check);
        let lb = LoadBalancer::from_backends(backends);
        // Static discovery answers at once; this fills the selector before the first request.
        ready_now(lb.update())
            .ok_or("static discovery did not answer at once")?
            .map_err(|e| format!("cannot set up the upstreams: {e}"))?;
        Ok(Upstream {
            lb,
            urls: urls.to_vec(),
            connect_timeout: Duration::from_millis(settings.connect_timeout_ms),
            read_timeout: Duration::from_millis(settings.read_timeout_ms),
            write_timeout: Duration::from_millis(settings.write_timeout_ms),
            idle_timeout: Duration::from_secs(settings.idle_timeout_seconds),
        })
    }

    /// The next healthy backend as a peer. When every backend is marked down, any backend is
    /// tried anyway ("panic routing"): a wrong health verdict must not turn into a full outage.
    pub fn peer(&self) -> Option<Box<HttpPeer>> {
        let backend = self.lb.select(b"", 256).or_else(|| self.lb.select_with(b"", 256, |_, _| true))?;
        let target = backend.ext.get::<Target>()?;
        let mut peer = HttpPeer::new(backend.addr.clone(), target.tls, target.host.clone());
        peer.options.connection_timeout = Some(self.connect_timeout);
        peer.options.read_timeout = Some(self.read_timeout);
        peer.options.write_timeout = Some(self.write_timeout);
        peer.options.idle_timeout = Some(self.idle_timeout);
        Some(Box::new(peer))
    }

    pub fn backend_count(&self) -> usize {
        self.lb.backends().get_backend().len()
    }

    pub async fn health_check(&self) {
        self.lb.backends().run_health_check(true).await;
    }
}

/// Poll a future once, without a runtime's waker: its output if it is ready at once.
pub(super) fn ready_now<F: std::future::Future>(future: F) -> Option<F::Output> {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut context) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}
