//! `[gateway]`: the edge's listener, trusted issuers, routes and their policies.

use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use http::HeaderName;

use super::{Checker, HttpMethod, Secret};
use crate::token::{Acr, Alg};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySettings {
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
    /// Allowed clock difference for `exp`, `nbf` and `iat`.
    #[serde(default = "default_leeway")]
    pub clock_leeway_seconds: u64,
    /// Longer bearer tokens are refused before any parsing.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// Request bodies the gateway reads itself (the KRR API) are bounded by this.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    #[serde(default)]
    pub validation_cache: ValidationCacheSettings,
    #[serde(default)]
    pub jwks: JwksSettings,
    #[serde(default)]
    pub forward: ForwardSettings,
    #[serde(default)]
    pub upstream: UpstreamSettings,
    pub krr: Option<KrrSettings>,
    #[serde(default)]
    pub issuers: Vec<TrustedIssuerSettings>,
    #[serde(default)]
    pub routes: Vec<RouteSettings>,
    /// This gateway's own resource identifiers. A route without an `audience` of its own takes
    /// a token whose `aud` is absent, `unspecified` or one of these, and refuses a token meant
    /// for any other resource.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Peers whose `X-Forwarded-For`, `Forwarded`, `X-Forwarded-Host`, `X-Forwarded-Proto` and
    /// `X-Real-IP` are believed (CIDR ranges). From any other peer these headers are dropped and
    /// `X-Forwarded-For` names the peer alone: a client cannot choose the address an upstream
    /// sees. Empty by default: no one is trusted.
    #[serde(default)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

fn default_leeway() -> u64 {
    30
}
fn default_max_token_bytes() -> usize {
    8192
}
fn default_max_body_bytes() -> usize {
    256 * 1024
}

/// TLS on a listener (1.2 and 1.3 only): its certificate chain and key, and whether clients
/// present certificates, checked against `client_cas`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    #[serde(default)]
    pub client_certificates: ClientCertificates,
    /// CA certificates (PEM) a client certificate must chain to.
    #[serde(default)]
    pub client_cas: Vec<PathBuf>,
}

impl TlsFiles {
    pub(super) fn validate(&mut self, check: &mut Checker<'_>, key: &str) {
        self.cert = check.file(&format!("{key}.cert"), &self.cert);
        self.key = check.file(&format!("{key}.key"), &self.key);
        if self.client_certificates != ClientCertificates::Off && self.client_cas.is_empty() {
            check.error(format!("{key}.client_cas"), "client certificates need the CAs they must chain to");
        }
        for ca in &mut self.client_cas {
            *ca = check.file(&format!("{key}.client_cas"), ca);
        }
    }
}

/// Client certificates on a TLS listener.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientCertificates {
    /// None is asked for.
    #[default]
    Off,
    /// Asked for, and verified when one is sent: certificate-bound tokens need it.
    Optional,
    /// A connection without a valid client certificate is refused in the handshake.
    Required,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationCacheSettings {
    pub enabled: bool,
    pub max_entries: u64,
    /// No entry lives longer than this, nor past its token's `exp`.
    #[serde(rename = "max_ttl_seconds", deserialize_with = "super::duration::seconds")]
    pub max_ttl: Duration,
}

impl Default for ValidationCacheSettings {
    fn default() -> Self {
        ValidationCacheSettings { enabled: true, max_entries: 100_000, max_ttl: Duration::from_secs(3600) }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwksSettings {
    /// Keys are refetched this often; a failed refresh keeps the keys already held.
    #[serde(rename = "refresh_seconds", deserialize_with = "super::duration::seconds")]
    pub refresh: Duration,
    /// An unknown `kid` triggers at most one refetch per issuer in this window.
    #[serde(rename = "unknown_kid_cooldown_seconds", deserialize_with = "super::duration::seconds")]
    pub unknown_kid_cooldown: Duration,
    #[serde(rename = "fetch_timeout_ms", deserialize_with = "super::duration::millis")]
    pub fetch_timeout: Duration,
    /// A larger JWKS (or discovery) document is refused.
    pub max_document_bytes: usize,
    /// `Retry-After` on the 503 sent while an issuer's keys cannot be had.
    pub retry_after_seconds: u64,
    /// The gateway's listener opens once every issuer's keys are held, or after this long.
    #[serde(rename = "startup_wait_seconds", deserialize_with = "super::duration::seconds")]
    pub startup_wait: Duration,
}

impl Default for JwksSettings {
    fn default() -> Self {
        JwksSettings {
            refresh: Duration::from_secs(300),
            unknown_kid_cooldown: Duration::from_secs(30),
            fetch_timeout: Duration::from_millis(5000),
            max_document_bytes: 256 * 1024,
            retry_after_seconds: 10,
            startup_wait: Duration::from_secs(10),
        }
    }
}

/// The names of the headers that carry verified claims to the upstream. Incoming headers with
/// these names (and those in `strip`) are always removed first, so a client cannot forge them.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardSettings {
    #[serde(deserialize_with = "super::http::header_name")]
    pub pid: HeaderName,
    #[serde(deserialize_with = "super::http::header_name")]
    pub client_id: HeaderName,
    #[serde(deserialize_with = "super::http::header_name")]
    pub consumer: HeaderName,
    #[serde(deserialize_with = "super::http::header_name")]
    pub scope: HeaderName,
    #[serde(deserialize_with = "super::http::header_name")]
    pub acr: HeaderName,
    #[serde(deserialize_with = "super::http::header_name")]
    pub issuer: HeaderName,
    #[serde(deserialize_with = "super::http::header_names")]
    pub strip: Vec<HeaderName>,
}

impl Default for ForwardSettings {
    fn default() -> Self {
        ForwardSettings {
            pid: HeaderName::from_static("x-portvakt-pid"),
            client_id: HeaderName::from_static("x-portvakt-client-id"),
            consumer: HeaderName::from_static("x-portvakt-consumer"),
            scope: HeaderName::from_static("x-portvakt-scope"),
            acr: HeaderName::from_static("x-portvakt-acr"),
            issuer: HeaderName::from_static("x-portvakt-issuer"),
            strip: Vec::new(),
        }
    }
}

impl ForwardSettings {
    pub fn claim_headers(&self) -> [(&'static str, &HeaderName); 6] {
        [
            ("pid", &self.pid),
            ("client_id", &self.client_id),
            ("consumer", &self.consumer),
            ("scope", &self.scope),
            ("acr", &self.acr),
            ("issuer", &self.issuer),
        ]
    }

    /// Every header a client might use to pass itself off as verified.
    pub fn all(&self) -> impl Iterator<Item = &HeaderName> {
        [&self.pid, &self.client_id, &self.consumer, &self.scope, &self.acr, &self.issuer]
            .into_iter()
            .chain(self.strip.iter())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamSettings {
    #[serde(rename = "connect_timeout_ms", deserialize_with = "super::duration::millis")]
    pub connect_timeout: Duration,
    /// Longest wait for each read from the upstream (the response header, each body chunk).
    #[serde(rename = "read_timeout_ms", deserialize_with = "super::duration::millis")]
    pub read_timeout: Duration,
    #[serde(rename = "write_timeout_ms", deserialize_with = "super::duration::millis")]
    pub write_timeout: Duration,
    /// Pooled upstream connections are closed after this long unused.
    #[serde(rename = "idle_timeout_seconds", deserialize_with = "super::duration::seconds")]
    pub idle_timeout: Duration,
    /// TCP health checks of every upstream address; 0 turns them off.
    #[serde(rename = "health_check_seconds", deserialize_with = "super::duration::seconds")]
    pub health_check_interval: Duration,
    /// How many upstream connections client connections may keep between their requests (the
    /// fast path); beyond it, requests take a connection from the shared pool each time. 0
    /// turns keeping off.
    pub kept_connections: usize,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        UpstreamSettings {
            connect_timeout: Duration::from_millis(2000),
            read_timeout: Duration::from_millis(30_000),
            write_timeout: Duration::from_millis(30_000),
            idle_timeout: Duration::from_secs(60),
            health_check_interval: Duration::from_secs(5),
            kept_connections: 1024,
        }
    }
}

/// The SOAP backend behind the KRR REST API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KrrSettings {
    /// Oppslagstjenesten's SOAP 1.2 endpoint, e.g. `…/kontaktinfo-external/ws-v5`.
    pub soap_endpoint: Url,
    #[serde(default = "default_krr_connect_ms")]
    #[serde(rename = "connect_timeout_ms", deserialize_with = "super::duration::millis")]
    pub connect_timeout: Duration,
    /// The whole SOAP exchange must end within this.
    #[serde(default = "default_krr_timeout_ms")]
    #[serde(rename = "timeout_ms", deserialize_with = "super::duration::millis")]
    pub timeout: Duration,
    /// A larger SOAP answer is refused (1,000 persons with certificates fit easily).
    #[serde(default = "default_krr_max_response")]
    pub max_response_bytes: usize,
    /// Sent as `Oppslagstjenesten/PaaVegneAv` when set: the organisation acted for.
    pub paa_vegne_av: Option<String>,
    /// Sign requests and accept only signed and encrypted answers (what the real service
    /// demands). Without it, SOAP goes unsigned: a production config refuses that.
    pub ws_security: Option<super::ClientWsSecurity>,
}

fn default_krr_connect_ms() -> Duration {
    Duration::from_millis(1000)
}
fn default_krr_timeout_ms() -> Duration {
    Duration::from_millis(10_000)
}
fn default_krr_max_response() -> usize {
    32 * 1024 * 1024
}

#[derive(Debug, Deserialize)]
#[serde(try_from = "TrustedIssuerToml")]
pub struct TrustedIssuerSettings {
    /// The exact `iss` value, compared byte for byte.
    pub issuer: String,
    pub keys: KeySource,
    /// The algorithms accepted from this issuer.
    pub algorithms: Vec<Alg>,
    /// Accept only JWTs typed `at+jwt` (RFC 9068 §4), so an id_token or another JWT the
    /// issuer signs cannot pass as an access token. Turn off for issuers that predate RFC 9068.
    pub require_typ_at_jwt: bool,
    /// RFC 7662 introspection for the issuer's opaque tokens.
    pub introspection: Option<IntrospectionSettings>,
}

/// Where a trusted issuer's signing keys come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// `jwks_url`: a JWKS document, fetched and refreshed.
    Jwks(Url),
    /// `discovery_url`: OpenID Connect Discovery names the JWKS.
    Discovery(Url),
    /// `jwks_file`: read at start-up and at reload, never fetched.
    File(PathBuf),
    /// None: the issuer's tokens are opaque and only introspected.
    Introspection,
}

impl KeySource {
    pub fn is_fetched(&self) -> bool {
        matches!(self, KeySource::Jwks(_) | KeySource::Discovery(_))
    }
}

/// `[[gateway.issuers]]` as written: the three key sources exclude each other.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustedIssuerToml {
    issuer: String,
    jwks_url: Option<Url>,
    discovery_url: Option<Url>,
    jwks_file: Option<PathBuf>,
    #[serde(default = "default_algorithms")]
    algorithms: Vec<Alg>,
    #[serde(default = "yes")]
    require_typ_at_jwt: bool,
    introspection: Option<IntrospectionSettings>,
}

impl TryFrom<TrustedIssuerToml> for TrustedIssuerSettings {
    type Error = &'static str;

    fn try_from(toml: TrustedIssuerToml) -> Result<TrustedIssuerSettings, &'static str> {
        let keys = match (toml.jwks_url, toml.discovery_url, toml.jwks_file) {
            (Some(url), None, None) => KeySource::Jwks(url),
            (None, Some(url), None) => KeySource::Discovery(url),
            (None, None, Some(path)) => KeySource::File(path),
            (None, None, None) if toml.introspection.is_some() => KeySource::Introspection,
            (None, None, None) => {
                return Err("give a key source (jwks_url, discovery_url or jwks_file) or introspection");
            }
            _ => return Err("give only one of jwks_url, discovery_url and jwks_file"),
        };
        Ok(TrustedIssuerSettings {
            issuer: toml.issuer,
            keys,
            algorithms: toml.algorithms,
            require_typ_at_jwt: toml.require_typ_at_jwt,
            introspection: toml.introspection,
        })
    }
}

fn default_algorithms() -> Vec<Alg> {
    vec![Alg::RS256]
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionSettings {
    pub url: Url,
    pub client_id: String,
    pub client_secret: Secret,
    /// An answer is cached until the token's `exp`, and never longer than this: how long a
    /// revoked opaque token may still be honoured at this gateway.
    #[serde(default = "default_introspection_cache")]
    #[serde(rename = "max_cache_seconds", deserialize_with = "super::duration::seconds")]
    pub max_cache: Duration,
    /// A token the issuer called inactive is refused without asking again for this long.
    #[serde(default = "default_inactive_cache")]
    #[serde(rename = "inactive_cache_seconds", deserialize_with = "super::duration::seconds")]
    pub inactive_cache: Duration,
    /// Introspection calls one client address may cause per second; beyond, its unknown
    /// tokens get 429 without a call (known ones are answered from the cache as before).
    #[serde(default = "default_calls_per_client")]
    pub calls_per_client_per_second: u32,
    #[serde(default = "default_introspection_timeout")]
    #[serde(rename = "timeout_ms", deserialize_with = "super::duration::millis")]
    pub timeout: Duration,
}

fn default_inactive_cache() -> Duration {
    Duration::from_secs(10)
}
fn default_calls_per_client() -> u32 {
    20
}

fn default_introspection_cache() -> Duration {
    Duration::from_secs(60)
}
fn default_introspection_timeout() -> Duration {
    Duration::from_millis(3000)
}

/// Which kind of token a route takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// Either kind.
    #[default]
    Any,
    /// A citizen's token: it must carry `pid`.
    Citizen,
    /// A machine (Maskinporten) token: it must not carry `pid`.
    Machine,
}

/// Routes answered by the gateway itself instead of an upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Handler {
    /// `POST /rest/v1/personer`: KRR lookup for an organisation.
    KrrPersoner,
    /// `GET /rest/v1/person`: KRR lookup of the citizen in the token.
    KrrPerson,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Requests per second per client (`client_id`, or `pid` for a token without one).
    pub requests_per_second: u32,
}

#[derive(Debug, Deserialize)]
#[serde(try_from = "RouteToml")]
pub struct RouteSettings {
    pub name: String,
    /// A path prefix matched on whole segments: `/api` matches `/api` and `/api/x`, not `/apix`.
    pub path: String,
    /// Allowed methods; empty means any.
    pub methods: Vec<HttpMethod>,
    pub target: RouteTarget,
    pub token: TokenKind,
    /// The token needs at least one of these scopes…
    pub scopes_any: Vec<String>,
    /// …and all of these.
    pub scopes_all: Vec<String>,
    pub min_acr: Option<Acr>,
    /// Issuers accepted on this route (their `issuer` values); empty means every trusted one.
    pub issuers: Vec<String>,
    /// When set, the token's `aud` must contain it.
    pub audience: Option<String>,
    /// Pass the `Authorization` header on to the upstream (for upstreams that check it too).
    pub forward_token: bool,
    /// The upstream treats every request here as a read, so even a POST may be sent again when
    /// a pooled connection turns out to be closed (an upstream restarting, say). Off by default:
    /// RFC 9110 forbids retrying non-idempotent requests without such knowledge.
    pub idempotent: bool,
    pub rate_limit: Option<RateLimitSettings>,
    /// Only sender-constrained (DPoP-bound) tokens: a bearer token is refused here.
    pub sender_constrained: bool,
    /// DPoP proofs here must carry a server nonce (`DPoP-Nonce`, RFC 9449 §9).
    pub dpop_nonce: bool,
}

/// Where a route's requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// `upstreams`: base URLs (`http://host:port`), balanced round robin.
    Upstreams(Vec<Url>),
    /// `handler`: answered by the gateway itself.
    Handler(Handler),
}

/// `[[gateway.routes]]` as written: `upstreams` and `handler` exclude each other.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteToml {
    name: String,
    path: String,
    #[serde(default)]
    methods: Vec<HttpMethod>,
    #[serde(default)]
    upstreams: Vec<Url>,
    handler: Option<Handler>,
    #[serde(default)]
    token: TokenKind,
    #[serde(default)]
    scopes_any: Vec<String>,
    #[serde(default)]
    scopes_all: Vec<String>,
    min_acr: Option<Acr>,
    #[serde(default)]
    issuers: Vec<String>,
    audience: Option<String>,
    #[serde(default)]
    forward_token: bool,
    #[serde(default)]
    idempotent: bool,
    rate_limit: Option<RateLimitSettings>,
    #[serde(default)]
    sender_constrained: bool,
    #[serde(default)]
    dpop_nonce: bool,
}

impl TryFrom<RouteToml> for RouteSettings {
    type Error = &'static str;

    fn try_from(toml: RouteToml) -> Result<RouteSettings, &'static str> {
        let target = match (toml.handler, toml.upstreams.is_empty()) {
            (Some(_), false) => return Err("give either upstreams or handler, not both"),
            (None, true) => return Err("give upstreams (or a handler)"),
            (Some(handler), true) => RouteTarget::Handler(handler),
            (None, false) => RouteTarget::Upstreams(toml.upstreams),
        };
        Ok(RouteSettings {
            name: toml.name,
            path: toml.path,
            methods: toml.methods,
            target,
            token: toml.token,
            scopes_any: toml.scopes_any,
            scopes_all: toml.scopes_all,
            min_acr: toml.min_acr,
            issuers: toml.issuers,
            audience: toml.audience,
            forward_token: toml.forward_token,
            idempotent: toml.idempotent,
            sender_constrained: toml.sender_constrained,
            dpop_nonce: toml.dpop_nonce,
            rate_limit: toml.rate_limit,
        })
    }
}

impl GatewaySettings {
    pub(super) fn validate(&mut self, check: &mut Checker<'_>) {
        if self.clock_leeway_seconds > 300 {
            check.error("gateway.clock_leeway_seconds", "must be at most 300");
        }
        if !(256..=65_536).contains(&self.max_token_bytes) {
            check.error("gateway.max_token_bytes", "must be between 256 and 65536");
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_body_bytes) {
            check.error("gateway.max_body_bytes", "must be between 1024 and 16777216");
        }
        if let Some(tls) = &mut self.tls {
            tls.validate(check, "gateway.tls");
        }
        if self.validation_cache.max_entries == 0 && self.validation_cache.enabled {
            check.error("gateway.validation_cache.max_entries", "must be positive when the cache is enabled");
        }
        if self.jwks.refresh < Duration::from_secs(10) {
            check.error("gateway.jwks.refresh_seconds", "must be at least 10");
        }
        if self.jwks.fetch_timeout.is_zero() {
            check.error("gateway.jwks.fetch_timeout_ms", "must be positive");
        }
        self.validate_forward(check);
        if let Some(krr) = &mut self.krr {
            check_url(check, "gateway.krr.soap_endpoint", &krr.soap_endpoint);
            match &mut krr.ws_security {
                Some(ws_security) => ws_security.validate(check, "gateway.krr.ws_security"),
                None if check.production => check.error(
                    "gateway.krr.ws_security",
                    "Oppslagstjenesten accepts only signed requests: add [gateway.krr.ws_security]",
                ),
                None => {}
            }
            if krr.timeout.is_zero() || krr.connect_timeout.is_zero() {
                check.error("gateway.krr.timeout_ms", "timeouts must be positive");
            }
            if let Some(org) = &krr.paa_vegne_av
                && !crate::personid::is_orgno(org)
            {
                check.error("gateway.krr.paa_vegne_av", format!("{org:?} is not a valid organisation number"));
            }
        }
        self.validate_issuers(check);
        self.validate_routes(check);
    }

    fn validate_forward(&self, check: &mut Checker<'_>) {
        let mut seen = HashSet::new();
        for (name, header) in self.forward.claim_headers() {
            let key = format!("gateway.forward.{name}");
            if !seen.insert(header.as_str()) {
                check.error(&key, format!("{:?} is used for two claims", header.as_str()));
            } else if crate::web::headers::is_reserved(header.as_str()) {
                check.error(&key, format!("{:?} is a reserved header", header.as_str()));
            }
        }
        for (i, header) in self.forward.strip.iter().enumerate() {
            if crate::web::headers::is_framing(header.as_str()) {
                let key = format!("gateway.forward.strip[{i}]");
                check.error(key, format!("{:?} frames the message: the gateway writes it itself", header.as_str()));
            }
        }
    }

    fn validate_issuers(&mut self, check: &mut Checker<'_>) {
        let mut seen = HashSet::new();
        let mut introspecting = 0;
        for (i, issuer) in self.issuers.iter_mut().enumerate() {
            let key = format!("gateway.issuers[{i}]");
            if issuer.issuer.is_empty() {
                check.error(format!("{key}.issuer"), "must not be empty");
            } else if !seen.insert(issuer.issuer.clone()) {
                check.error(format!("{key}.issuer"), format!("{:?} is listed twice", issuer.issuer));
            }
            match &mut issuer.keys {
                KeySource::Jwks(url) => _ = check_url(check, &format!("{key}.jwks_url"), url),
                KeySource::Discovery(url) => _ = check_url(check, &format!("{key}.discovery_url"), url),
                KeySource::File(path) => *path = check.file(&format!("{key}.jwks_file"), path),
                KeySource::Introspection => {}
            }
            if issuer.algorithms.is_empty() {
                check.error(format!("{key}.algorithms"), "list at least one algorithm");
            }
            if let Some(intro) = &mut issuer.introspection {
                introspecting += 1;
                check_url(check, &format!("{key}.introspection.url"), &intro.url);
                intro.client_secret.resolve(check, &format!("{key}.introspection.client_secret"));
                if intro.client_id.is_empty() {
                    check.error(format!("{key}.introspection.client_id"), "must not be empty");
                }
                if intro.timeout.is_zero() {
                    check.error(format!("{key}.introspection.timeout_ms"), "must be positive");
                }
            }
        }
        if introspecting > 1 {
            check.error(
                "gateway.issuers",
                "only one issuer may use introspection: an opaque token does not say which issuer it is from",
            );
        }
    }

    fn validate_routes(&mut self, check: &mut Checker<'_>) {
        let issuers: HashSet<&str> = self.issuers.iter().map(|i| i.issuer.as_str()).collect();
        let mut names = HashSet::new();
        let mut claimed: Vec<(String, Vec<HttpMethod>, usize)> = Vec::new();
        for (i, route) in self.routes.iter().enumerate() {
            let key = format!("gateway.routes[{i}]");
            if route.name.is_empty() || !route.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
                check.error(format!("{key}.name"), "use letters, digits, '-', '_' or '.'");
            } else if !names.insert(route.name.clone()) {
                check.error(format!("{key}.name"), format!("route {:?} is defined twice", route.name));
            }
            if let Err(reason) = crate::web::path::check_route_prefix(&route.path) {
                check.error(format!("{key}.path"), reason);
            }
            let upstreams = match &route.target {
                RouteTarget::Handler(_) if self.krr.is_none() => {
                    check.error(format!("{key}.handler"), "the KRR handlers need a [gateway.krr] section");
                    &[][..]
                }
                RouteTarget::Handler(_) => &[][..],
                RouteTarget::Upstreams(urls) => urls.as_slice(),
            };
            for (u, url) in upstreams.iter().enumerate() {
                let ukey = format!("{key}.upstreams[{u}]");
                if check_url(check, &ukey, url) {
                    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
                        check.error(&ukey, "give only scheme, host and port: the request's own path is forwarded");
                    } else if let Err(e) = resolve(url) {
                        check.error(&ukey, e.chain());
                    }
                }
            }
            for (s, scope) in route.scopes_any.iter().chain(&route.scopes_all).enumerate() {
                if scope.is_empty() || scope.contains(char::is_whitespace) || scope.contains('"') {
                    check.error(format!("{key}.scopes"), format!("scope #{s} {scope:?} is not a valid scope"));
                }
            }
            if route.min_acr.is_some() && route.token == TokenKind::Machine {
                check.error(format!("{key}.min_acr"), "a machine route has no citizen and so no acr");
            }
            for (n, name) in route.issuers.iter().enumerate() {
                if !issuers.contains(name.as_str()) {
                    check.error(format!("{key}.issuers[{n}]"), format!("{name:?} is not among gateway.issuers"));
                }
            }
            if let Some(limit) = &route.rate_limit
                && limit.requests_per_second == 0
            {
                check.error(format!("{key}.rate_limit.requests_per_second"), "must be positive");
            }
            // Two routes on the same prefix must not both take a method: one would shadow the other.
            let methods = route.methods.clone();
            if let Some((_, _, other)) = claimed.iter().find(|(path, other_methods, _)| {
                *path == route.path
                    && (methods.is_empty()
                        || other_methods.is_empty()
                        || methods.iter().any(|m| other_methods.contains(m)))
            }) {
                check.error(&key, format!("routes[{other}] already takes these methods on {:?}", route.path));
            }
            claimed.push((route.path.clone(), methods, i));
        }
    }
}

/// `true` when the URL is usable. In production, plain http is only allowed to loopback.
fn check_url(check: &mut Checker<'_>, key: &str, url: &Url) -> bool {
    let ok = match url.scheme() {
        "http" | "https" if url.host_str().is_some() => true,
        "http" | "https" => {
            check.error(key, format!("{url} has no host"));
            false
        }
        other => {
            check.error(key, format!("scheme {other:?} is not supported: use http or https"));
            false
        }
    };
    if ok && check.production && url.scheme() == "http" && !is_loopback(url) {
        check.error(key, format!("{url}: a production config must use https to other hosts"));
        return false;
    }
    ok
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// Resolve an upstream URL to socket addresses now: Pingora panics on names it cannot resolve.
pub fn resolve(url: &Url) -> crate::error::Result<Vec<SocketAddr>> {
    use crate::error::{Context, Error};
    let host = url.host_str().ok_or_else(|| Error::new(format!("{url} has no host")))?;
    let port = url.port_or_known_default().ok_or_else(|| Error::new(format!("{url} has no port")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> =
        (host, port).to_socket_addrs().with_context(|| format!("cannot resolve {host}"))?.collect();
    if addrs.is_empty() {
        return Err(Error::new(format!("{host} resolves to no address")));
    }
    Ok(addrs)
}
