//! The gateway role: a Pingora edge that validates access tokens and their scopes, then
//! proxies to the route's upstreams or answers from a built-in handler (KRR).

mod access_log;
mod admission;
mod binding;
mod engine;
pub mod error;
mod forwarding;
pub mod introspection;
pub mod keys;
pub mod maintenance;

pub mod resource_metadata;
pub mod respond;
pub mod routes;
pub mod upstream;
pub mod validator;

use std::collections::HashMap;
use std::sync::Arc;

use crate::admin::metrics::Metrics;
use crate::config::{ForwardSettings, GatewaySettings, KeySource, RouteTarget, TrustedIssuerSettings};
use crate::error::{Context, Result};
use keys::{FetchSettings, IssuerKeys};
use routes::{Policy, RateLimit, Route, RouteMetrics, RouteTable, Target};
use upstream::Upstream;
use validator::{TokenValidator, ValidatorSettings};

pub use admission::Gateway;
pub use engine::GatewayService;

/// Everything a request needs, swapped as one piece when the configuration is reloaded.
pub struct GatewayState {
    pub routes: RouteTable,
    pub validator: TokenValidator,
    /// Header names for the verified claims sent upstream, and the incoming ones always removed.
    pub forward: ForwardSettings,
    pub retry_after_seconds: u64,
    pub max_body_bytes: usize,
    /// How many upstream connections client connections may keep between requests.
    pub kept_connections: usize,
    /// The KRR REST facade behind the `krr-*` handlers.
    pub krr: Option<Arc<crate::krr::Krr>>,
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// RFC 9728 documents of the gateway and its APIs.
    pub resources: resource_metadata::ProtectedResources,
}

impl GatewayState {
    /// Is this peer a proxy whose forwarding headers are believed (`trusted_proxies`)?
    pub fn trusts_proxy(&self, peer: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|range| range.contains(&peer))
    }

    /// Build from config. Issuer key stores and upstreams whose settings did not change are
    /// taken over from `previous`, so a reload neither refetches keys nor forgets health.
    pub fn build(
        settings: &GatewaySettings,
        production: bool,
        metrics: &Arc<Metrics>,
        previous: Option<&GatewayState>,
        audit: Option<Arc<crate::audit::AuditLog>>,
    ) -> Result<GatewayState> {
        let http = crate::web::client::build(settings.jwks.fetch_timeout, "portvakt-gateway")
            .context("cannot build the HTTP client")?;
        let fetch = FetchSettings::new(&settings.jwks, production);
        let old_issuers: HashMap<&str, &Arc<IssuerKeys>> =
            previous.map(|p| p.validator.issuers().map(|k| (&*k.issuer, k)).collect()).unwrap_or_default();
        let mut issuers = Vec::new();
        let mut introspector = None;
        for (i, issuer) in settings.issuers.iter().enumerate() {
            let keys = match old_issuers.get(issuer.issuer.as_str()) {
                Some(old) if same_source(old, issuer) => Arc::clone(old),
                _ => Arc::new(
                    IssuerKeys::new(issuer, fetch, http.clone(), metrics.clone())
                        .with_context(|| format!("gateway.issuers[{i}]"))?,
                ),
            };
            issuers.push(keys);
            if let Some(intro) = &issuer.introspection {
                introspector =
                    Some(introspection::Introspector::new(&issuer.issuer, intro, http.clone(), metrics.clone()));
            }
        }
        let validator = TokenValidator::new(
            issuers,
            introspector,
            ValidatorSettings {
                leeway_seconds: settings.clock_leeway_seconds as i64,
                max_token_bytes: settings.max_token_bytes,
                cache_entries: settings.validation_cache.enabled.then_some(settings.validation_cache.max_entries),
                cache_max_ttl: settings.validation_cache.max_ttl,
            },
            metrics.clone(),
        );
        let old_upstreams: Vec<&Arc<Upstream>> = previous
            .map(|p| {
                p.routes
                    .iter()
                    .filter_map(|r| match &r.target {
                        Target::Upstream(u) => Some(u),
                        Target::Handler(_) => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut routes = Vec::new();
        let own_audiences: Arc<[String]> = Arc::from(settings.audiences.clone());
        for (i, route) in settings.routes.iter().enumerate() {
            let target = match &route.target {
                RouteTarget::Handler(handler) => Target::Handler(*handler),
                RouteTarget::Upstreams(urls) => match old_upstreams.iter().find(|u| u.urls == *urls) {
                    Some(old) => Target::Upstream(Arc::clone(old)),
                    None => Target::Upstream(Arc::new(
                        Upstream::new(urls, &settings.upstream)
                            .with_context(|| format!("gateway.routes[{i}].upstreams"))?,
                    )),
                },
            };
            routes.push(Route {
                name: route.name.as_str().into(),
                prefix: route.path.clone(),
                methods: route.methods.iter().map(|m| m.0.clone()).collect(),
                target,
                policy: Policy::from_settings(route, &own_audiences),
                forward_token: route.forward_token,
                idempotent: route.idempotent,
                sender_constrained: route.sender_constrained,
                dpop_nonce: route.dpop_nonce,
                rate_limit: route.rate_limit.as_ref().map(|l| RateLimit::new(l.requests_per_second)),
                metrics: RouteMetrics::new(&route.name, metrics),
            });
        }
        let krr = match &settings.krr {
            Some(krr) => Some(Arc::new(crate::krr::Krr::new(krr, metrics.clone(), audit).context("gateway.krr")?)),
            None => None,
        };
        Ok(GatewayState {
            krr,
            routes: RouteTable::new(routes),
            validator,
            forward: settings.forward.clone(),
            retry_after_seconds: settings.jwks.retry_after_seconds,
            max_body_bytes: settings.max_body_bytes,
            kept_connections: settings.upstream.kept_connections,
            trusted_proxies: settings.trusted_proxies.clone(),
            resources: resource_metadata::ProtectedResources::build(settings),
        })
    }

    /// Ready when every trusted issuer's keys are held.
    pub fn is_ready(&self) -> bool {
        self.validator.issuers().all(|i| i.is_ready())
    }

    pub fn upstreams(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.routes.iter().filter_map(|r| match &r.target {
            Target::Upstream(u) => Some(u),
            Target::Handler(_) => None,
        })
    }
}

fn same_source(old: &IssuerKeys, new: &TrustedIssuerSettings) -> bool {
    // A file may have changed on disk: a reload rereads it.
    !matches!(new.keys, KeySource::File(_))
        && old.source.as_ref() == Some(&new.keys)
        && old.algorithms == new.algorithms
}
