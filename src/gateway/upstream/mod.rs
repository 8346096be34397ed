//! A route's upstreams: round-robin over healthy addresses, pooled connections, timeouts.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures_util::FutureExt;
use pingora::lb::discovery::Static;
use pingora::lb::health_check::TcpHealthCheck;
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::upstreams::peer::{HttpPeer, Peer};
use url::Url;

use crate::config::{UpstreamSettings, resolve};
use crate::error::{Context, Error, Result};

pub mod chunked;
pub mod wire;

use wire::Timeouts;

/// A backend as a ready peer: built once with the route's timeouts, with the key Pingora pools
/// its connections under, rather than on every request.
pub struct PeerTarget {
    pub peer: HttpPeer,
    pub hash: u64,
    pub timeouts: Timeouts,
}

pub struct Upstream {
    lb: LoadBalancer<RoundRobin>,
    /// With one backend there is nothing to choose: it is tried whatever its health.
    only: Option<Arc<PeerTarget>>,
    /// The configured URLs, to tell whether a reload changed anything.
    pub urls: Vec<Url>,
    /// `Host` for a client request without one (HTTP/1.0): the first URL's authority.
    pub host: http::HeaderValue,
}

impl Upstream {
    pub fn new(urls: &[Url], settings: &UpstreamSettings) -> Result<Upstream> {
        let mut backends = BTreeSet::new();
        for url in urls {
            let tls = url.scheme() == "https";
            let host = url.host_str().unwrap_or_default().to_owned();
            for addr in resolve(url)? {
                let mut backend = Backend::new(&addr.to_string()).with_context(|| url.to_string())?;
                let mut peer = HttpPeer::new(backend.addr.clone(), tls, host.clone());
                peer.options.connection_timeout = Some(settings.connect_timeout);
                peer.options.read_timeout = Some(settings.read_timeout);
                peer.options.write_timeout = Some(settings.write_timeout);
                peer.options.idle_timeout = Some(settings.idle_timeout);
                let hash = peer.reuse_hash();
                let timeouts = Timeouts { read: peer.options.read_timeout, write: peer.options.write_timeout };
                backend.ext.insert(Arc::new(PeerTarget { peer, hash, timeouts }));
                backends.insert(backend);
            }
        }
        let only = match backends.len() {
            1 => backends.first().and_then(|b| b.ext.get::<Arc<PeerTarget>>().cloned()),
            _ => None,
        };
        let mut backends = Backends::new(Static::new(backends));
        let mut check = TcpHealthCheck::new();
        // One lost probe is not an outage: mark a backend down after two in a row.
        check.consecutive_failure = 2;
        backends.set_health_check(check);
        let lb = LoadBalancer::from_backends(backends);
        // Static discovery answers at once; this fills the selector before the first request.
        lb.update()
            .now_or_never()
            .ok_or_else(|| Error::new("static discovery did not answer at once"))?
            .context("cannot set up the upstreams")?;
        let host = urls
            .first()
            .and_then(|url| {
                let host = url.host_str()?;
                let authority = match url.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host.to_owned(),
                };
                http::HeaderValue::try_from(authority).ok()
            })
            .ok_or_else(|| Error::new("an upstream URL without a host"))?;
        Ok(Upstream { lb, only, urls: urls.to_vec(), host })
    }

    /// The next healthy backend. When every backend is marked down, any backend is tried
    /// anyway ("panic routing"): a wrong health verdict must not turn into a full outage.
    pub fn peer(&self) -> Option<Arc<PeerTarget>> {
        if let Some(only) = &self.only {
            return Some(only.clone());
        }
        let backend = self.lb.select(b"", 256).or_else(|| self.lb.select_with(b"", 256, |_, _| true))?;
        backend.ext.get::<Arc<PeerTarget>>().cloned()
    }

    pub fn backend_count(&self) -> usize {
        self.lb.backends().get_backend().len()
    }

    pub async fn health_check(&self) {
        self.lb.backends().run_health_check(true).await;
    }
}
