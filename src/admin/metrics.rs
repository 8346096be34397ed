//! Prometheus metrics, one registry served at the admin listener's `/metrics`, and one struct
//! per role in it. Labels with a fixed set of values are enums, not strings, so a series cannot
//! be misspelled into existence.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::token::{Acr, Reason};

/// Latency buckets from 100 µs to 10 s: the edge's own cost sits at the low end.
const LATENCY_BUCKETS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0];

pub struct Metrics {
    registry: Registry,
    pub gateway: GatewayMetrics,
    pub krr: KrrMetrics,
    pub issuer: IssuerMetrics,
    pub oppslag: OppslagMetrics,
    pub server: ServerMetrics,
}

pub struct GatewayMetrics {
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    token_outcomes: IntCounterVec,
    validation_cache: IntCounterVec,
    jwks_fetches: IntCounterVec,
    jwks_keys: IntGaugeVec,
    introspections: IntCounterVec,
    rate_limited: IntCounterVec,
}

pub struct KrrMetrics {
    soap_calls: IntCounterVec,
    soap_duration: Histogram,
}

pub struct IssuerMetrics {
    issued_tokens: IntCounterVec,
    logins: IntCounterVec,
    /// Per operation, resolved once: a store command is on every stateful request's path.
    store: Vec<StoreSeries>,
}

struct StoreSeries {
    ok: IntCounter,
    error: IntCounter,
    duration: Histogram,
}

/// A command to a shared state store (Redis).
#[derive(Clone, Copy)]
pub enum StoreOp {
    Put,
    InsertNew,
    Get,
    Take,
    Delete,
    RecordLogin,
    Logins,
    Ping,
}

impl StoreOp {
    const ALL: [StoreOp; 8] = [
        StoreOp::Put,
        StoreOp::InsertNew,
        StoreOp::Get,
        StoreOp::Take,
        StoreOp::Delete,
        StoreOp::RecordLogin,
        StoreOp::Logins,
        StoreOp::Ping,
    ];

    fn label(self) -> &'static str {
        match self {
            StoreOp::Put => "put",
            StoreOp::InsertNew => "insert_new",
            StoreOp::Get => "get",
            StoreOp::Take => "take",
            StoreOp::Delete => "delete",
            StoreOp::RecordLogin => "record_login",
            StoreOp::Logins => "logins",
            StoreOp::Ping => "ping",
        }
    }
}

pub struct OppslagMetrics {
    answers: IntCounterVec,
    duration: Histogram,
}

pub struct ServerMetrics {
    reloads: IntCounterVec,
    audit_records: IntCounterVec,
}

/// A validated-token cache lookup.
#[derive(Clone, Copy)]
pub enum CacheLookup {
    Hit,
    Miss,
}

/// What an introspection at the issuer came to, or why none was made.
#[derive(Clone, Copy)]
pub enum Introspection {
    Active,
    Inactive,
    Error,
    /// Inactive, known from a recent answer: no call.
    InactiveRemembered,
    /// The client caused too many calls: none made.
    RefusedRate,
}

/// How a SOAP call to Oppslagstjenesten ended.
#[derive(Clone, Copy)]
pub enum SoapOutcome {
    Ok,
    Fault,
    Unreachable,
    Timeout,
    BadAnswer,
    /// The answer failed WS-Security.
    Insecure,
}

/// Which kind of grant a token was issued on.
#[derive(Clone, Copy)]
pub enum GrantKind {
    Citizen,
    Machine,
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
        let histograms = |name: &str, help: &str, labels: &[&str]| {
            let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
            let metric = HistogramVec::new(opts, labels).expect("static metric definition");
            registry.register(Box::new(metric.clone())).expect("unique metric name");
            metric
        };
        let histogram = |name: &str, help: &str| {
            let metric = Histogram::with_opts(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()))
                .expect("static metric definition");
            registry.register(Box::new(metric.clone())).expect("unique metric name");
            metric
        };
        let jwks_keys =
            IntGaugeVec::new(Opts::new("portvakt_jwks_keys", "Signing keys held per trusted issuer"), &["issuer"])
                .expect("static metric definition");
        registry.register(Box::new(jwks_keys.clone())).expect("unique metric name");
        let gateway = GatewayMetrics {
            requests: counter(
                "portvakt_gateway_requests_total",
                "Gateway requests by route and status",
                &["route", "status"],
            ),
            request_duration: histograms(
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
        };
        let krr = KrrMetrics {
            soap_calls: counter(
                "portvakt_krr_soap_calls_total",
                "SOAP calls to Oppslagstjenesten by result",
                &["result"],
            ),
            soap_duration: histogram("portvakt_krr_soap_duration_seconds", "SOAP call latency (HentPersoner)"),
        };
        let issuer = IssuerMetrics {
            issued_tokens: counter("portvakt_issuer_tokens_total", "Tokens issued by grant type", &["grant"]),
            logins: counter("portvakt_issuer_logins_total", "Test-IdP logins by level", &["acr"]),
            store: {
                let ops = counter(
                    "portvakt_store_operations_total",
                    "Commands to the shared state store by operation and result",
                    &["op", "result"],
                );
                let duration = histograms(
                    "portvakt_store_duration_seconds",
                    "Latency of commands to the shared state store, by operation",
                    &["op"],
                );
                StoreOp::ALL
                    .iter()
                    .map(|op| StoreSeries {
                        ok: ops.with_label_values(&[op.label(), "ok"]),
                        error: ops.with_label_values(&[op.label(), "error"]),
                        duration: duration.with_label_values(&[op.label()]),
                    })
                    .collect()
            },
        };
        let oppslag = OppslagMetrics {
            answers: counter(
                "portvakt_oppslag_answers_total",
                "Simulator answers: ok, or the SOAP fault code",
                &["result"],
            ),
            duration: histogram("portvakt_oppslag_duration_seconds", "Simulator answer latency"),
        };
        let server = ServerMetrics {
            reloads: counter("portvakt_config_reloads_total", "Configuration reloads by result", &["result"]),
            audit_records: counter(
                "portvakt_audit_records_total",
                "Audit records of personal-data lookups: written, or failed (the lookup refused)",
                &["result"],
            ),
        };
        // Pre-create the outcome series so dashboards see zeros, not gaps.
        gateway.token_outcomes.with_label_values(&["valid"]);
        for reason in Reason::ALL {
            gateway.token_outcomes.with_label_values(&[reason.label()]);
        }
        for lookup in [CacheLookup::Hit, CacheLookup::Miss] {
            gateway.cache_lookup(lookup);
        }
        Metrics { registry, gateway, krr, issuer, oppslag, server }
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

impl GatewayMetrics {
    pub fn token_refused(&self, reason: Reason) {
        self.token_outcomes.with_label_values(&[reason.label()]).inc();
    }

    /// The counter of valid tokens, to be held and bumped without a lookup.
    pub fn token_valid(&self) -> IntCounter {
        self.token_outcomes.with_label_values(&["valid"])
    }

    /// The counter of one kind of cache lookup, to be held and bumped without a lookup.
    pub fn cache_lookup(&self, lookup: CacheLookup) -> IntCounter {
        let label = match lookup {
            CacheLookup::Hit => "hit",
            CacheLookup::Miss => "miss",
        };
        self.validation_cache.with_label_values(&[label])
    }

    pub fn jwks_fetched(&self, issuer: &str, ok: bool) {
        self.jwks_fetches.with_label_values(&[issuer, if ok { "ok" } else { "error" }]).inc();
    }

    pub fn jwks_keys_held(&self, issuer: &str, count: usize) {
        self.jwks_keys.with_label_values(&[issuer]).set(count as i64);
    }

    pub fn introspected(&self, result: Introspection) {
        let label = match result {
            Introspection::Active => "active",
            Introspection::Inactive => "inactive",
            Introspection::Error => "error",
            Introspection::InactiveRemembered => "inactive_remembered",
            Introspection::RefusedRate => "refused_rate",
        };
        self.introspections.with_label_values(&[label]).inc();
    }

    pub fn rate_limited(&self, route: &str) {
        self.rate_limited.with_label_values(&[route]).inc();
    }
}

impl KrrMetrics {
    pub fn soap_call(&self, outcome: SoapOutcome, seconds: f64) {
        let label = match outcome {
            SoapOutcome::Ok => "ok",
            SoapOutcome::Fault => "fault",
            SoapOutcome::Unreachable => "unreachable",
            SoapOutcome::Timeout => "timeout",
            SoapOutcome::BadAnswer => "bad_answer",
            SoapOutcome::Insecure => "insecure",
        };
        self.soap_calls.with_label_values(&[label]).inc();
        self.soap_duration.observe(seconds);
    }
}

impl IssuerMetrics {
    pub fn issued(&self, grant: GrantKind) {
        self.issued_tokens
            .with_label_values(&[match grant {
                GrantKind::Citizen => "citizen",
                GrantKind::Machine => "machine",
            }])
            .inc();
    }

    pub fn logged_in(&self, acr: Acr) {
        self.logins.with_label_values(&[acr.name()]).inc();
    }

    pub fn store_op(&self, op: StoreOp, ok: bool, seconds: f64) {
        // ALL lists every operation in declaration order.
        if let Some(series) = self.store.get(op as usize) {
            if ok {
                series.ok.inc()
            } else {
                series.error.inc()
            }
            series.duration.observe(seconds);
        }
    }
}

impl OppslagMetrics {
    /// An answer: `None` for a good one, or the SOAP fault code's name.
    pub fn answered(&self, fault: Option<&str>, seconds: f64) {
        self.answers.with_label_values(&[fault.unwrap_or("ok")]).inc();
        self.duration.observe(seconds);
    }
}

impl ServerMetrics {
    pub fn audit_record(&self, written: bool) {
        self.audit_records.with_label_values(&[if written { "written" } else { "failed" }]).inc();
    }

    pub fn reloaded(&self, ok: bool) {
        self.reloads.with_label_values(&[if ok { "ok" } else { "refused" }]).inc();
    }
}
