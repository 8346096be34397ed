//! `[issuer]`: the OpenID Connect provider and Maskinporten-style token endpoint.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::{Checker, Secret};
use crate::token::Alg;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSettings {
    pub listen: SocketAddr,
    /// TLS on the issuer's listener (as `[gateway] tls`); its client-certificate settings are
    /// not used by the issuer yet.
    pub tls: Option<super::TlsFiles>,
    /// The issuer identifier, exactly as it appears in `iss` (no trailing slash is added).
    pub issuer: String,
    /// The secret behind pairwise `sub` values: stable per client, different across clients.
    pub pairwise_secret: Secret,
    /// Base of the `error_uri` of Maskinporten errors (`{base}/MP-nnn`); default `{issuer}/errors`.
    pub error_uri_base: Option<Url>,
    /// CA certificates that `x5c` chains (virksomhetssertifikater) must lead to.
    #[serde(default)]
    pub trust_anchors: Vec<PathBuf>,
    #[serde(default)]
    pub lifetimes: Lifetimes,
    pub signing_keys: Vec<SigningKeySettings>,
    #[serde(default)]
    pub scopes: Vec<ScopeSettings>,
    pub clients: Vec<ClientSettings>,
    /// Consumer organisations that let supplier clients ask for tokens on their behalf.
    #[serde(default)]
    pub delegations: Vec<DelegationSettings>,
    /// Who logs citizens in. Only the built-in test IdP is built, and a production config
    /// refuses it.
    #[serde(default)]
    pub idp: IdpKind,
    /// Where the issuer keeps its state (in memory by default, or Redis), and its bounds.
    #[serde(default)]
    pub store: StoreSettings,
    /// DPoP proofs at the token endpoint must carry a server nonce (`DPoP-Nonce`, RFC 9449 §8).
    #[serde(default)]
    pub dpop_nonce: bool,
}

/// `[issuer.store]`: every kind of state the issuer keeps (login pages in progress, codes, PAR
/// requests, used assertion ids, sessions, consents, grants, refresh tokens, access tokens) has
/// its own bound in entries and in bytes. A full kind refuses new entries (503 with
/// `Retry-After`); nothing is evicted early, so a used assertion id or code is never forgotten
/// before it expires.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// Entries per kind of state.
    pub max_entries: u64,
    /// Bytes per kind of state: keys, values and a fixed per-entry overhead.
    pub max_bytes: u64,
    /// What a refused request is told to wait (`Retry-After`, seconds).
    pub retry_after_seconds: u64,
    /// How long the login history keeps a login: what authlevel's default window (18 months)
    /// needs.
    pub login_history_days: u64,
    /// Logins kept per person, the newest (and the newest Level4) kept.
    pub max_logins_per_person: usize,
    /// People in the login history.
    pub login_history_max_persons: u64,
    /// Bytes of the login history.
    pub login_history_max_bytes: u64,
    /// `[issuer.store.redis]`: keep the state in Redis, shared by every issuer instance that
    /// points at it, instead of in this process's memory (where the bounds above apply).
    pub redis: Option<RedisSettings>,
}

/// `[issuer.store.redis]`: one server (`url`), a cluster (`cluster`) or a master found through
/// Sentinel (`sentinels` and `master`).
#[derive(Debug, Deserialize, Clone)]
#[serde(try_from = "RedisToml")]
pub struct RedisSettings {
    pub topology: RedisTopology,
    /// Put before every key, so several deployments can share one Redis.
    pub prefix: String,
    /// One command's longest wait; past it the request fails closed (503).
    pub timeout: Duration,
    pub connect_timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum RedisTopology {
    Single(Url),
    Cluster(Vec<Url>),
    /// `master_password`: the master's own password (the sentinels' go in their URLs).
    Sentinel {
        sentinels: Vec<Url>,
        master: String,
        master_password: Option<Secret>,
    },
}

impl RedisTopology {
    /// Every URL, for validation and for messages (passwords are not in them: see `Secret`).
    pub fn urls(&self) -> &[Url] {
        match self {
            RedisTopology::Single(url) => std::slice::from_ref(url),
            RedisTopology::Cluster(urls) | RedisTopology::Sentinel { sentinels: urls, .. } => urls,
        }
    }
}

/// `[issuer.store.redis]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RedisToml {
    url: Option<Url>,
    cluster: Option<Vec<Url>>,
    sentinels: Option<Vec<Url>>,
    master: Option<String>,
    master_password: Option<Secret>,
    #[serde(default = "default_redis_prefix")]
    prefix: String,
    #[serde(default = "default_redis_timeout_ms")]
    timeout_ms: u64,
    #[serde(default = "default_redis_connect_timeout_ms")]
    connect_timeout_ms: u64,
}

fn default_redis_prefix() -> String {
    "portvakt:".into()
}
fn default_redis_timeout_ms() -> u64 {
    500
}
fn default_redis_connect_timeout_ms() -> u64 {
    1000
}

impl TryFrom<RedisToml> for RedisSettings {
    type Error = &'static str;

    fn try_from(toml: RedisToml) -> Result<RedisSettings, &'static str> {
        if toml.master_password.is_some() && toml.sentinels.is_none() {
            return Err("master_password is for Sentinel: put a server's password in its URL");
        }
        let topology = match (toml.url, toml.cluster, toml.sentinels, toml.master) {
            (Some(url), None, None, None) => RedisTopology::Single(url),
            (None, Some(nodes), None, None) if !nodes.is_empty() => RedisTopology::Cluster(nodes),
            (None, None, Some(sentinels), Some(master)) if !sentinels.is_empty() && !master.is_empty() => {
                RedisTopology::Sentinel { sentinels, master, master_password: toml.master_password }
            }
            (None, None, Some(_), _) | (None, None, None, Some(_)) => {
                return Err("Sentinel needs both sentinels (a non-empty list) and master");
            }
            _ => return Err("give exactly one of url, cluster (a non-empty list) or sentinels with master"),
        };
        if !(1..=60_000).contains(&toml.timeout_ms) || !(1..=60_000).contains(&toml.connect_timeout_ms) {
            return Err("timeout_ms and connect_timeout_ms must be between 1 and 60000");
        }
        Ok(RedisSettings {
            topology,
            prefix: toml.prefix,
            timeout: Duration::from_millis(toml.timeout_ms),
            connect_timeout: Duration::from_millis(toml.connect_timeout_ms),
        })
    }
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            max_entries: 500_000,
            max_bytes: 128 * 1024 * 1024,
            retry_after_seconds: 30,
            login_history_days: 552,
            max_logins_per_person: 100,
            login_history_max_persons: 1_000_000,
            login_history_max_bytes: 256 * 1024 * 1024,
            redis: None,
        }
    }
}

/// The identity provider behind `/authorize`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdpKind {
    /// The built-in test IdP (TestID): a form that takes any valid fødselsnummer or d-nummer at
    /// any level, so it logs anyone in as anyone. Development and tests only.
    #[default]
    Test,
}

/// Lifetimes in seconds; the defaults are ID-porten's (see the domain notes).
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct Lifetimes {
    pub code_seconds: u64,
    pub par_seconds: u64,
    pub id_token_seconds: u64,
    pub access_token_seconds: u64,
    pub refresh_token_seconds: u64,
    pub authorization_seconds: u64,
    pub sso_idle_seconds: u64,
    pub sso_max_seconds: u64,
    /// A login page left open longer than this must be started again.
    pub interaction_seconds: u64,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Lifetimes {
            code_seconds: 60,
            par_seconds: 120,
            id_token_seconds: 120,
            access_token_seconds: 120,
            refresh_token_seconds: 600,
            authorization_seconds: 7200,
            sso_idle_seconds: 1800,
            sso_max_seconds: 7200,
            interaction_seconds: 900,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeySettings {
    /// Defaults to the key's RFC 7638 thumbprint.
    pub kid: Option<String>,
    #[serde(default = "default_alg")]
    pub alg: Alg,
    pub private_key: PathBuf,
    /// Exactly one key signs; the others are only published (before or after a rotation).
    #[serde(default)]
    pub signing: bool,
}

fn default_alg() -> Alg {
    Alg::RS256
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IntegrationType {
    Idporten,
    ApiKlient,
    Maskinporten,
    Krr,
}

impl IntegrationType {
    pub fn name(self) -> &'static str {
        match self {
            IntegrationType::Idporten => "idporten",
            IntegrationType::ApiKlient => "api_klient",
            IntegrationType::Maskinporten => "maskinporten",
            IntegrationType::Krr => "krr",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    None,
}

impl AuthMethod {
    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::None => "none",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessTokenKind {
    /// A signed JWT the resource server checks itself.
    #[default]
    Jwt,
    /// A random handle checked at `/tokeninfo`; can be revoked.
    Opaque,
}

/// Which key reference a client's JWTs (grants and client assertions) may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyReference {
    /// `kid`: a key registered on the client.
    Kid,
    /// `x5c`: a virksomhetssertifikat chain leading to a trust anchor.
    X5c,
    Either,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientKeySettings {
    pub kid: String,
    /// A PEM certificate or public key.
    pub public_key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSettings {
    pub client_id: String,
    pub integration_type: IntegrationType,
    pub auth_methods: Vec<AuthMethod>,
    pub client_secret: Option<Secret>,
    /// Keys for `kid`-referenced JWTs.
    #[serde(default)]
    pub keys: Vec<ClientKeySettings>,
    /// Defaults to `kid` when keys are registered, else `x5c`.
    pub key_reference: Option<KeyReference>,
    pub orgno: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<Url>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<Url>,
    pub frontchannel_logout_uri: Option<Url>,
    #[serde(default = "yes")]
    pub frontchannel_logout_session_required: bool,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub access_token: AccessTokenKind,
    /// PKCE for every authorization; public clients cannot turn it off.
    #[serde(default = "yes")]
    pub require_pkce: bool,
    pub access_token_seconds: Option<u64>,
    pub refresh_token_seconds: Option<u64>,
    pub authorization_seconds: Option<u64>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeSettings {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The citizen is asked, and may decline; declined scopes are left out of the token.
    #[serde(default)]
    pub requires_user_consent: bool,
    /// Empty means any integration type.
    #[serde(default)]
    pub allowed_integration_types: Vec<IntegrationType>,
    /// Caps the access token's lifetime for tokens carrying this scope.
    pub at_max_age_seconds: Option<u64>,
    /// Caps the whole authorization (refresh tokens) for grants carrying this scope.
    pub authorization_max_age_seconds: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelegationSettings {
    pub consumer_orgno: String,
    pub supplier_clients: Vec<String>,
    pub scopes: Vec<String>,
}

/// Scopes every issuer knows without registration.
pub const RESERVED_SCOPES: [&str; 4] = ["openid", "profile", "no_pid", "tokeninfo"];

impl IssuerSettings {
    pub(super) fn validate(&mut self, check: &mut Checker<'_>) {
        if let Some(tls) = &mut self.tls {
            tls.validate(check, "issuer.tls");
            if tls.client_certificates != super::ClientCertificates::Off {
                check.error("issuer.tls.client_certificates", "the issuer does not take client certificates yet");
            }
        }
        match Url::parse(&self.issuer) {
            Ok(url)
                if matches!(url.scheme(), "http" | "https") && url.query().is_none() && url.fragment().is_none() =>
            {
                if check.production && url.scheme() != "https" {
                    check.error("issuer.issuer", "a production issuer must use https");
                }
            }
            _ => check
                .error("issuer.issuer", format!("{:?} is not an http(s) URL without query or fragment", self.issuer)),
        }
        if check.production && self.idp == IdpKind::Test {
            check.error(
                "issuer.idp",
                "the built-in test IdP (idp = \"test\", the default) logs anyone in as anyone, so a production \
                 config may not run it; no other IdP is built yet: run the issuer outside production, or leave the \
                 [issuer] role out of this config",
            );
        }
        self.pairwise_secret.resolve(check, "issuer.pairwise_secret");
        if self.pairwise_secret.expose().len() < 16 && check.errors_for("issuer.pairwise_secret") == 0 {
            check.error("issuer.pairwise_secret", "must be at least 16 characters");
        }
        for (i, anchor) in self.trust_anchors.iter_mut().enumerate() {
            *anchor = check.file(&format!("issuer.trust_anchors[{i}]"), anchor);
        }
        self.validate_lifetimes(check);
        self.validate_store(check);
        let signing = self.signing_keys.iter().filter(|k| k.signing).count();
        if signing != 1 {
            check.error("issuer.signing_keys", format!("exactly one key must have signing = true ({signing} do)"));
        }
        for (i, key) in self.signing_keys.iter_mut().enumerate() {
            key.private_key = check.file(&format!("issuer.signing_keys[{i}].private_key"), &key.private_key);
        }
        let mut names = HashSet::new();
        for (i, scope) in self.scopes.iter().enumerate() {
            if scope.name.is_empty() || scope.name.contains(char::is_whitespace) {
                check.error(format!("issuer.scopes[{i}].name"), "a scope name has no whitespace");
            } else if !names.insert(scope.name.clone()) {
                check.error(format!("issuer.scopes[{i}].name"), format!("{:?} is defined twice", scope.name));
            }
        }
        let known: HashSet<&str> = self.scopes.iter().map(|s| s.name.as_str()).chain(RESERVED_SCOPES).collect();
        let mut ids = HashSet::new();
        for (i, client) in self.clients.iter_mut().enumerate() {
            let key = format!("issuer.clients[{i}]");
            if client.client_id.is_empty() || !client.client_id.bytes().all(|b| b.is_ascii_graphic()) {
                check.error(format!("{key}.client_id"), "printable ASCII without spaces");
            } else if !ids.insert(client.client_id.clone()) {
                check.error(format!("{key}.client_id"), format!("{:?} is registered twice", client.client_id));
            }
            validate_client(client, &key, &known, check);
        }
        for (i, client) in self.clients.iter().enumerate() {
            for scope in &client.scopes {
                let Some(registered) = self.scopes.iter().find(|s| s.name == *scope) else { continue };
                if !registered.allowed_integration_types.is_empty()
                    && !registered.allowed_integration_types.contains(&client.integration_type)
                {
                    check.error(
                        format!("issuer.clients[{i}].scopes"),
                        format!("{scope:?} is not allowed for integration type {}", client.integration_type.name()),
                    );
                }
            }
        }
        for (i, delegation) in self.delegations.iter().enumerate() {
            if !crate::personid::is_orgno(&delegation.consumer_orgno) {
                check.error(format!("issuer.delegations[{i}].consumer_orgno"), "not a valid organisation number");
            }
            for supplier in &delegation.supplier_clients {
                if !ids.contains(supplier) {
                    check.error(
                        format!("issuer.delegations[{i}].supplier_clients"),
                        format!("{supplier:?} is not a client"),
                    );
                }
            }
        }
    }

    fn validate_store(&mut self, check: &mut Checker<'_>) {
        let s = &self.store;
        for (name, value) in [
            ("max_entries", s.max_entries),
            ("max_bytes", s.max_bytes),
            ("retry_after_seconds", s.retry_after_seconds),
            ("max_logins_per_person", s.max_logins_per_person as u64),
            ("login_history_max_persons", s.login_history_max_persons),
            ("login_history_max_bytes", s.login_history_max_bytes),
        ] {
            if value == 0 {
                check.error(format!("issuer.store.{name}"), "must be positive");
            }
        }
        if let Some(RedisSettings {
            topology: RedisTopology::Sentinel { master_password: Some(password), .. }, ..
        }) = &mut self.store.redis
        {
            password.resolve(check, "issuer.store.redis.master_password");
        }
        let s = &self.store;
        if let Some(redis) = &s.redis {
            for (i, url) in redis.topology.urls().iter().enumerate() {
                if !matches!(url.scheme(), "redis" | "rediss") || url.host_str().is_none() {
                    check.error(format!("issuer.store.redis[{i}]"), "not a redis:// or rediss:// URL with a host");
                }
            }
        }
        // authlevel looks back 18 months by default: a shorter history would answer wrongly.
        if s.login_history_days < 551 {
            check.error(
                "issuer.store.login_history_days",
                "at least 551 (18 months, the longest being 550 days, is authlevel's default window)",
            );
        }
    }

    fn validate_lifetimes(&self, check: &mut Checker<'_>) {
        let l = &self.lifetimes;
        for (name, value) in [
            ("code_seconds", l.code_seconds),
            ("par_seconds", l.par_seconds),
            ("id_token_seconds", l.id_token_seconds),
            ("access_token_seconds", l.access_token_seconds),
            ("refresh_token_seconds", l.refresh_token_seconds),
            ("authorization_seconds", l.authorization_seconds),
            ("sso_idle_seconds", l.sso_idle_seconds),
            ("sso_max_seconds", l.sso_max_seconds),
            ("interaction_seconds", l.interaction_seconds),
        ] {
            if value == 0 {
                check.error(format!("issuer.lifetimes.{name}"), "must be positive");
            }
        }
        if l.code_seconds > 600 {
            check.error("issuer.lifetimes.code_seconds", "at most 600 (RFC 6749 §4.1.2)");
        }
        if !(l.access_token_seconds < l.refresh_token_seconds && l.refresh_token_seconds <= l.authorization_seconds) {
            check.error("issuer.lifetimes", "access token < refresh token ≤ authorization must hold");
        }
        if l.sso_idle_seconds > l.sso_max_seconds {
            check.error("issuer.lifetimes.sso_idle_seconds", "must not exceed sso_max_seconds");
        }
    }
}

fn validate_client(client: &mut ClientSettings, key: &str, known: &HashSet<&str>, check: &mut Checker<'_>) {
    if client.auth_methods.is_empty() {
        check.error(format!("{key}.auth_methods"), "list at least one method");
    }
    let public = client.auth_methods.contains(&AuthMethod::None);
    if public && client.auth_methods.len() > 1 {
        check.error(format!("{key}.auth_methods"), "a public client (none) has no other method");
    }
    if public && !client.require_pkce {
        check.error(format!("{key}.require_pkce"), "PKCE is mandatory for public clients");
    }
    let wants_secret =
        client.auth_methods.iter().any(|m| matches!(m, AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost));
    match &mut client.client_secret {
        Some(secret) if wants_secret => secret.resolve(check, &format!("{key}.client_secret")),
        Some(_) => check.error(format!("{key}.client_secret"), "no listed auth method uses a secret"),
        None if wants_secret => {
            check.error(format!("{key}.client_secret"), "client_secret_basic/post need a client_secret")
        }
        None => {}
    }
    for (k, registered) in client.keys.iter_mut().enumerate() {
        registered.public_key = check.file(&format!("{key}.keys[{k}].public_key"), &registered.public_key);
    }
    let needs_keys = client.key_reference == Some(KeyReference::Kid);
    if needs_keys && client.keys.is_empty() {
        check.error(format!("{key}.keys"), "key_reference = \"kid\" needs registered keys");
    }
    if let Some(orgno) = &client.orgno
        && !crate::personid::is_orgno(orgno)
    {
        check.error(format!("{key}.orgno"), format!("{orgno:?} is not a valid organisation number"));
    }
    if client.integration_type == IntegrationType::Maskinporten && client.orgno.is_none() {
        check.error(format!("{key}.orgno"), "a maskinporten client needs its organisation number");
    }
    for (u, uri) in client.redirect_uris.iter().chain(&client.post_logout_redirect_uris).enumerate() {
        if uri.fragment().is_some() {
            check.error(format!("{key}.redirect_uris"), format!("URI #{u} {uri} must not have a fragment"));
        }
        if check.production
            && uri.scheme() == "http"
            && !matches!(uri.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
        {
            check.error(format!("{key}.redirect_uris"), format!("{uri}: production redirects use https"));
        }
    }
    for scope in &client.scopes {
        if !known.contains(scope.as_str()) {
            check.error(format!("{key}.scopes"), format!("{scope:?} is not among issuer.scopes"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_takes_exactly_one_topology() {
        let read = |text: &str| toml::from_str::<RedisSettings>(text).map_err(|e| e.to_string());
        let single = read("url = \"redis://127.0.0.1:6379\"").unwrap();
        assert!(matches!(single.topology, RedisTopology::Single(_)));
        assert_eq!((single.prefix.as_str(), single.timeout), ("portvakt:", Duration::from_millis(500)));
        let cluster = read("cluster = [\"redis://a:7000\", \"redis://b:7000\"]").unwrap();
        assert_eq!(cluster.topology.urls().len(), 2);
        let sentinel = read("sentinels = [\"redis://s:26379\"]\nmaster = \"m\"").unwrap();
        assert!(matches!(sentinel.topology, RedisTopology::Sentinel { ref master, .. } if master == "m"));
        for (text, says) in [
            ("url = \"redis://a\"\ncluster = [\"redis://b\"]", "exactly one"),
            ("cluster = []", "exactly one"),
            ("", "exactly one"),
            ("sentinels = [\"redis://s\"]", "both sentinels"),
            ("master = \"m\"", "both sentinels"),
            ("url = \"redis://a\"\ntimeout_ms = 0", "between 1 and 60000"),
            ("url = \"redis://a\"\npassword = \"x\"", "unknown field"),
        ] {
            let error = read(text).unwrap_err();
            assert!(error.contains(says), "{text:?}: {error}");
        }
    }
}
