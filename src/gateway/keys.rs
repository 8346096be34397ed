//! The signing keys of one trusted issuer: fetched before the gateway reports ready, refreshed on
//! a timer, refetched (once per cool-down, single-flight) when a token names an unknown `kid`.
//! A failed fetch never throws away keys already held.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::Mutex;
use url::Url;

use crate::admin::metrics::Metrics;
use crate::config::{JwksSettings, KeySource, TrustedIssuerSettings};
use crate::error::{Context, Error, Result};
use crate::telemetry::excerpt;
use crate::token::{Alg, KeySet, Reason, TokenError, VerifyingKey};
use crate::web::client::read_limited;

pub struct IssuerKeys {
    pub issuer: Arc<str>,
    /// `None` for keys handed over in code (tests, benchmarks).
    pub source: Option<KeySource>,
    pub algorithms: Vec<Alg>,
    /// Only JWTs typed `at+jwt` are access tokens of this issuer.
    pub require_typ_at_jwt: bool,
    keys: ArcSwap<KeySet>,
    /// Serialises fetches, so the timer and an unknown `kid` never fetch at the same time.
    fetching: Mutex<()>,
    /// When an unknown `kid` last caused a fetch: the cool-down is counted from here.
    unknown_kid_fetch: Mutex<Option<Instant>>,
    last_success: ArcSwap<Option<Instant>>,
    http: reqwest::Client,
    settings: FetchSettings,
    metrics: Arc<Metrics>,
}

#[derive(Clone, Copy, Debug)]
pub struct FetchSettings {
    pub timeout: Duration,
    pub cooldown: Duration,
    pub max_bytes: usize,
    /// Production: a `jwks_uri` from discovery must be https too (loopback excepted).
    pub require_https: bool,
}

impl FetchSettings {
    pub fn new(s: &JwksSettings, require_https: bool) -> FetchSettings {
        FetchSettings {
            timeout: s.fetch_timeout,
            cooldown: s.unknown_kid_cooldown,
            max_bytes: s.max_document_bytes,
            require_https,
        }
    }
}

impl IssuerKeys {
    /// Build from config. A JWKS file is read now; URLs are fetched by [`IssuerKeys::refresh`].
    pub fn new(
        settings: &TrustedIssuerSettings,
        fetch: FetchSettings,
        http: reqwest::Client,
        metrics: Arc<Metrics>,
    ) -> Result<IssuerKeys> {
        let keys = match &settings.keys {
            KeySource::File(path) => {
                let document = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
                let set =
                    KeySet::from_jwks(&document, &settings.algorithms).with_context(|| path.display().to_string())?;
                if set.is_empty() {
                    return Err(Error::new(format!(
                        "{} holds no key usable with {:?}",
                        path.display(),
                        settings.algorithms
                    )));
                }
                set
            }
            _ => KeySet::default(),
        };
        let issuer: Arc<str> = settings.issuer.as_str().into();
        metrics.gateway.jwks_keys_held(&issuer, keys.len());
        Ok(IssuerKeys {
            issuer,
            source: Some(settings.keys.clone()),
            algorithms: settings.algorithms.clone(),
            require_typ_at_jwt: settings.require_typ_at_jwt,
            keys: ArcSwap::from_pointee(keys),
            fetching: Mutex::new(()),
            unknown_kid_fetch: Mutex::new(None),
            last_success: ArcSwap::from_pointee(None),
            http,
            settings: fetch,
            metrics,
        })
    }

    /// Keys from a set already parsed (the issuer role validating its own tokens, tests).
    pub fn with_keys(issuer: &str, algorithms: Vec<Alg>, keys: KeySet, metrics: Arc<Metrics>) -> IssuerKeys {
        IssuerKeys {
            issuer: issuer.into(),
            source: None,
            algorithms,
            require_typ_at_jwt: true,
            keys: ArcSwap::from_pointee(keys),
            fetching: Mutex::new(()),
            unknown_kid_fetch: Mutex::new(None),
            last_success: ArcSwap::from_pointee(None),
            http: reqwest::Client::new(),
            settings: FetchSettings {
                timeout: Duration::from_secs(1),
                cooldown: Duration::from_secs(30),
                max_bytes: 0,
                require_https: true,
            },
            metrics,
        }
    }

    pub fn has_keys(&self) -> bool {
        !self.keys.load().is_empty()
    }

    /// Whether the keys come over the network (and so need the refresh timer).
    pub fn is_fetched(&self) -> bool {
        self.source.as_ref().is_some_and(KeySource::is_fetched)
    }

    /// Whether the issuer's keys are held (or it has none to hold): the readiness condition.
    pub fn is_ready(&self) -> bool {
        self.source == Some(KeySource::Introspection) || self.has_keys()
    }

    pub fn kids(&self) -> Vec<String> {
        self.keys.load().kids().map(str::to_owned).collect()
    }

    /// The key for a token. An unknown `kid` causes at most one refetch per cool-down; no keys
    /// at all is `IssuerUnavailable` (a 503), an unknown key among known ones `UnknownKey`.
    pub async fn key(&self, kid: Option<&str>, alg: Alg) -> Result<Arc<VerifyingKey>, TokenError> {
        if let Some(key) = self.keys.load().find(kid, alg) {
            return Ok(key.clone());
        }
        if self.is_fetched() {
            self.refetch_for_unknown_kid().await;
        }
        let keys = self.keys.load();
        match keys.find(kid, alg) {
            Some(key) => Ok(key.clone()),
            None if keys.is_empty() => Err(TokenError::new(
                Reason::IssuerUnavailable,
                format!("no signing keys could be had for issuer {}", self.issuer),
            )),
            None => Err(TokenError::new(
                Reason::UnknownKey,
                match kid {
                    Some(kid) => format!("issuer {} has no {alg} key with kid {:?}", self.issuer, excerpt(kid, 64)),
                    None => format!("the token has no kid and issuer {} has no single {alg} key", self.issuer),
                },
            )),
        }
    }

    async fn refetch_for_unknown_kid(&self) {
        // Every request with an unknown kid queues here; the first fetches, the others find the
        // cool-down running and go back to look at the (possibly new) keys.
        let mut last = self.unknown_kid_fetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.settings.cooldown) {
            return;
        }
        *last = Some(Instant::now());
        if let Err(e) = self.refresh().await {
            tracing::warn!(issuer = %self.issuer, error = %e.chain(), "JWKS refetch for an unknown kid failed");
        }
    }

    /// Fetch the keys now. On failure the keys held are kept and the error returned.
    pub async fn refresh(&self) -> Result<usize> {
        let _single = self.fetching.lock().await;
        let result = self.fetch().await;
        self.metrics.gateway.jwks_fetched(&self.issuer, result.is_ok());
        match result {
            Ok(set) => {
                let count = set.len();
                if !set.skipped.is_empty() {
                    tracing::debug!(issuer = %self.issuer, skipped = ?set.skipped, "JWKS keys skipped");
                }
                self.keys.store(Arc::new(set));
                self.last_success.store(Arc::new(Some(Instant::now())));
                self.metrics.gateway.jwks_keys_held(&self.issuer, count);
                Ok(count)
            }
            Err(e) => Err(e),
        }
    }

    async fn fetch(&self) -> Result<KeySet> {
        let jwks_url = match &self.source {
            Some(KeySource::Jwks(url)) => url.clone(),
            Some(KeySource::Discovery(url)) => self.discover(url).await?,
            _ => return Err(Error::new("this issuer's keys are not fetched")),
        };
        let document = self.get(&jwks_url).await?;
        let set = KeySet::from_jwks(&document, &self.algorithms).with_context(|| jwks_url.to_string())?;
        if set.is_empty() {
            return Err(Error::new(format!(
                "{jwks_url} holds no key usable with {:?} ({:?})",
                self.algorithms, set.skipped
            )));
        }
        Ok(set)
    }

    /// OpenID Connect Discovery: the document's `issuer` must be exactly the configured one.
    async fn discover(&self, url: &Url) -> Result<Url> {
        #[derive(serde::Deserialize)]
        struct Metadata {
            issuer: String,
            jwks_uri: Url,
        }
        let document = self.get(url).await?;
        let metadata: Metadata =
            serde_json::from_slice(&document).with_context(|| format!("{url}: not a discovery document"))?;
        if metadata.issuer != *self.issuer {
            return Err(Error::new(format!("{url} names issuer {:?}, not {:?}", metadata.issuer, self.issuer)));
        }
        let loopback = matches!(metadata.jwks_uri.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
        if self.settings.require_https && metadata.jwks_uri.scheme() != "https" && !loopback {
            return Err(Error::new(format!("{url} names jwks_uri {}, which is not https", metadata.jwks_uri)));
        }
        Ok(metadata.jwks_uri)
    }

    async fn get(&self, url: &Url) -> Result<bytes::Bytes> {
        let exchange = async {
            let response = self
                .http
                .get(url.clone())
                .header(http::header::ACCEPT, "application/json")
                .send()
                .await
                .with_context(|| url.to_string())?;
            if !response.status().is_success() {
                return Err(Error::new(format!("{url} answered {}", response.status())));
            }
            read_limited(response, self.settings.max_bytes).await.with_context(|| url.to_string())
        };
        tokio::time::timeout(self.settings.timeout, exchange)
            .await
            .map_err(|_| Error::new(format!("{url}: no answer within {:?}", self.settings.timeout)))?
    }
}
