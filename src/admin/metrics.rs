//! Prometheus metrics of every role, in one registry served at the admin listener's `/metrics`.

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::token::Reason;

/// Latency buckets from 100 µs to 10 s: the edge's own cost sits at the low end.
const LATENCY_BUCKETS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0];

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub token_outcomes: IntCounterVec,
    pub validation_cache: IntCounterVec,
    pub jwks_fetches: IntCounterVec,
    pub jwks_keys: IntGaugeVec,
    pub introspections: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub soap_calls: IntCounterVec,
    pub soap_duration: HistogramVec,
    pub issued_tokens: IntCounterVec,
    pub logins: IntCounterVec,
    pub reloads: IntCounterVec,
}

impl Metrics {
    #[allow(clippy::expect_used)] // static definitions, checked at start-up, never on a request
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
            registry.register(Box::new(metric.clone())).expect("unique metric name");
            metric
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
            let metric = HistogramVec::new(opts, labels).expect("static metric definition");
            registry.register(Box::new(metric.clone())).expect("unique metric name");
            metric
        };
        let jwks_keys =
            IntGaugeVec::new(Opts::new("portvakt_jwks_keys", "Signing keys held per trusted issuer"), &["issuer"])
                .expect("static metric definition");
        registry.register(Box::new(jwks_keys.clone())).expect("unique metric name");
        let metrics = Metrics {
            requests: counter(
                "portvakt_gateway_requests_total",
                "Gateway requests by route and status",
                &["route", "status"],
            ),
            request_duration: histogram(
                "portvakt_gateway_request_duration_seconds",
                "Gateway request latency by route",
                &["route"],
            ),
            token_outcomes: counter(
                "portvakt_token_outcomes_total",
                "Token checks by outcome (valid, or the reason for refusal)",
                &["outcome"],
            ),
            validation_cache: counter("portvakt_validation_cache_total", "Validated-token cache lookups", &["result"]),
            jwks_fetches: counter(
                "portvakt_jwks_fetches_total",
                "JWKS fetches by issuer and result",
                &["issuer", "result"],
            ),
            jwks_keys,
            introspections: counter(
                "portvakt_introspections_total",
                "RFC 7662 introspection calls by result",
                &["result"],
            ),
            rate_limited: counter(
                "portvakt_rate_limited_total",
                "Requests refused by a rate limit, by route",
                &["route"],
            ),
            soap_calls: counter(
                "portvakt_krr_soap_calls_total",
                "SOAP calls to Oppslagstjenesten by result",
                &["result"],
            ),
            soap_duration: histogram("portvakt_krr_soap_duration_seconds", "SOAP call latency", &["operation"]),
            issued_tokens: counter("portvakt_issuer_tokens_total", "Tokens issued by grant type", &["grant"]),
            logins: counter("portvakt_issuer_logins_total", "Test-IdP logins by level", &["acr"]),
            reloads: counter("portvakt_config_reloads_total", "Configuration reloads by result", &["result"]),
            registry,
        };
        // Pre-create the outcome series so dashboards see zeros, not gaps.
        metrics.token_outcomes.with_label_values(&["valid"]);
        for reason in Reason::ALL {
            metrics.token_outcomes.with_label_values(&[reason.label()]);
        }
        for result in ["hit", "miss"] {
            metrics.validation_cache.with_label_values(&[result]);
        }
        metrics
    }

    pub fn token_refused(&self, reason: Reason) {
        self.token_outcomes.with_label_values(&[reason.label()]).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
