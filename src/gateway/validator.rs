//! Access-token validation at the edge: a cache of verified tokens in front of signature checks
//! (self-contained JWTs) and introspection (opaque tokens).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use moka::Expiry;
use moka::sync::Cache;
use prometheus::IntCounter;

use super::introspection::Introspector;
use super::keys::IssuerKeys;
use crate::admin::metrics::{CacheLookup, Metrics};
use crate::telemetry::excerpt;
use crate::token::verify::unix_now;
use crate::token::{AccessClaims, CompactJws, Reason, TokenError, VerifiedToken};

/// A cache entry knows its own lifetime: never past the token's `exp`, never past the cap.
#[derive(Clone)]
struct Cached {
    token: Arc<VerifiedToken>,
    ttl: Duration,
}

struct UntilExpiry;

impl Expiry<[u8; 32], Cached> for UntilExpiry {
    fn expire_after_create(&self, _key: &[u8; 32], value: &Cached, _created_at: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

pub struct ValidatorSettings {
    pub leeway_seconds: i64,
    pub max_token_bytes: usize,
    /// `None` turns the cache off: every request is verified.
    pub cache_entries: Option<u64>,
    pub cache_max_ttl: Duration,
}

/// The last token one client connection showed, and what it was found to be. Clients send the
/// same token request after request on a kept-alive connection; recognising it by comparison
/// skips hashing it for the shared cache. It holds for at most a second, never past the token's
/// `exp`, and only for the validator (so the config) that checked it.
pub struct LastToken {
    validator: u64,
    token: String,
    verified: Arc<VerifiedToken>,
    until: i64,
}

pub struct TokenValidator {
    /// Tells this validator from the one a reload replaces it with.
    id: u64,
    issuers: HashMap<Arc<str>, Arc<IssuerKeys>>,
    introspector: Option<Introspector>,
    cache: Option<Cache<[u8; 32], Cached>>,
    settings: ValidatorSettings,
    valid: IntCounter,
    cache_hit: IntCounter,
    cache_miss: IntCounter,
    metrics: Arc<Metrics>,
}

impl TokenValidator {
    pub fn new(
        issuers: Vec<Arc<IssuerKeys>>,
        introspector: Option<Introspector>,
        settings: ValidatorSettings,
        metrics: Arc<Metrics>,
    ) -> TokenValidator {
        let cache = settings
            .cache_entries
            .map(|entries| Cache::builder().max_capacity(entries).expire_after(UntilExpiry).build());
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        TokenValidator {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            issuers: issuers.into_iter().map(|keys| (keys.issuer.clone(), keys)).collect(),
            introspector,
            cache,
            settings,
            valid: metrics.gateway.token_valid(),
            cache_hit: metrics.gateway.cache_lookup(CacheLookup::Hit),
            cache_miss: metrics.gateway.cache_lookup(CacheLookup::Miss),
            metrics,
        }
    }

    pub fn issuers(&self) -> impl Iterator<Item = &Arc<IssuerKeys>> {
        self.issuers.values()
    }

    /// Validate the token of a request on a connection that may have shown it before. With the
    /// cache off, every request is verified all the same.
    pub async fn validate_on_connection(
        &self,
        token: &str,
        client: Option<IpAddr>,
        last: &mut Option<LastToken>,
    ) -> Result<Arc<VerifiedToken>, TokenError> {
        if self.cache.is_none() {
            return self.validate(token, client).await;
        }
        let now = unix_now();
        if let Some(seen) = last.as_ref()
            && seen.validator == self.id
            && now < seen.until
            && seen.token == token
        {
            self.valid.inc();
            self.cache_hit.inc();
            return Ok(seen.verified.clone());
        }
        let verified = self.validate(token, client).await?;
        *last = Some(LastToken {
            validator: self.id,
            token: token.to_owned(),
            verified: verified.clone(),
            until: (now + 1).min(verified.expires_at),
        });
        Ok(verified)
    }

    /// Validate a bearer token; refusals are counted by reason. `client` is the address the
    /// request came from (it bounds the introspection calls it may cause).
    pub async fn validate(&self, token: &str, client: Option<IpAddr>) -> Result<Arc<VerifiedToken>, TokenError> {
        let result = self.validate_uncounted(token, client).await;
        match &result {
            Ok(_) => self.valid.inc(),
            Err(e) => self.metrics.gateway.token_refused(e.reason),
        }
        result
    }

    async fn validate_uncounted(&self, token: &str, client: Option<IpAddr>) -> Result<Arc<VerifiedToken>, TokenError> {
        if token.len() > self.settings.max_token_bytes {
            return Err(TokenError::new(
                Reason::TooLarge,
                format!("the token is {} bytes, more than the {} accepted", token.len(), self.settings.max_token_bytes),
            ));
        }
        let key = cache_key(token);
        let Some(cache) = &self.cache else {
            return self.verify(token, &key, client).await.map(|(verified, _)| Arc::new(verified));
        };
        if let Some(hit) = cache.get(&key) {
            self.cache_hit.inc();
            return Ok(hit.token);
        }
        self.cache_miss.inc();
        let (verified, cap) = self.verify(token, &key, client).await?;
        let verified = Arc::new(verified);
        let remaining = verified.expires_at - unix_now();
        if remaining > 0 {
            let ttl = Duration::from_secs(remaining as u64).min(cap);
            cache.insert(key, Cached { token: verified.clone(), ttl });
        }
        Ok(verified)
    }

    /// Verify without the cache; also returns how long the answer may be cached at most.
    async fn verify(
        &self,
        token: &str,
        key: &[u8; 32],
        client: Option<IpAddr>,
    ) -> Result<(VerifiedToken, Duration), TokenError> {
        let now = unix_now();
        if !looks_like_jwt(token) {
            let introspector = self.introspector.as_ref().ok_or_else(|| {
                TokenError::new(Reason::Malformed, "the token is not a JWT and no issuer introspects opaque tokens")
            })?;
            let verified = introspector.introspect(token, key, client, now, self.settings.leeway_seconds).await?;
            return Ok((verified, introspector.max_cache));
        }
        let jws = CompactJws::parse(token, self.settings.max_token_bytes)?;
        let claims: AccessClaims = jws.claims()?;
        let iss = claims.iss.as_deref().ok_or_else(|| TokenError::new(Reason::MissingClaim, "the token has no iss"))?;
        let issuer = self.issuers.get(iss).ok_or_else(|| {
            TokenError::new(Reason::UntrustedIssuer, format!("issuer {:?} is not trusted", excerpt(iss, 128)))
        })?;
        if !issuer.algorithms.contains(&jws.alg) {
            return Err(TokenError::new(
                Reason::AlgRefused,
                format!("alg {} is not accepted from issuer {}", jws.alg, issuer.issuer),
            ));
        }
        if issuer.require_typ_at_jwt && !is_access_token_typ(jws.header.typ.as_deref()) {
            return Err(TokenError::new(
                Reason::NotAnAccessToken,
                "the token is not an access token: its typ must be at+jwt (RFC 9068)",
            ));
        }
        let key = issuer.key(jws.header.kid.as_deref(), jws.alg).await?;
        jws.verify(&key)?;
        let verified = VerifiedToken::from_claims(issuer.issuer.clone(), claims, now, self.settings.leeway_seconds)?;
        Ok((verified, self.settings.cache_max_ttl))
    }
}

/// `at+jwt`, or its full media type (RFC 9068 §2.1), in any case.
fn is_access_token_typ(typ: Option<&str>) -> bool {
    typ.is_some_and(|t| t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt"))
}

/// A compact JWS has exactly two dots; ID-porten's opaque tokens have none.
fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

/// Tokens are cached under their SHA-256: a collision would let one token pass as another.
fn cache_key(token: &str) -> [u8; 32] {
    let hash = digest::digest(&digest::SHA256, token.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(hash.as_ref());
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::sign::SigningKey;
    use crate::token::{Alg, KeySet};
    use serde_json::json;

    const ISSUER: &str = "https://issuer.test";

    fn signing_key() -> SigningKey {
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::Ed25519KeyPair;
        use base64::Engine;
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("an Ed25519 key");
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
        );
        SigningKey::from_pem(pem.as_bytes(), Alg::EdDSA, Some("k1".into())).expect("a signing key")
    }

    fn validator(key: &SigningKey, cache: bool) -> TokenValidator {
        let metrics = Arc::new(Metrics::new());
        let jwks = json!({"keys": [key.public_jwk()]});
        let set = KeySet::from_jwks(jwks.to_string().as_bytes(), &Alg::ALL).expect("a key set");
        let issuer = Arc::new(IssuerKeys::with_keys(ISSUER, Alg::ALL.to_vec(), set, metrics.clone()));
        let settings = ValidatorSettings {
            leeway_seconds: 0,
            max_token_bytes: 8192,
            cache_entries: cache.then_some(100),
            cache_max_ttl: Duration::from_secs(600),
        };
        TokenValidator::new(vec![issuer], None, settings, metrics)
    }

    fn token(key: &SigningKey, jti: &str) -> String {
        let now = unix_now();
        let claims = json!({"iss": ISSUER, "client_id": "c", "scope": "s", "iat": now, "exp": now + 600, "jti": jti});
        key.sign_jwt(Some("at+jwt"), &claims).expect("a token")
    }

    #[tokio::test]
    async fn a_token_shown_again_on_a_connection_is_recognised_only_by_the_validator_that_checked_it() {
        let key = signing_key();
        let checking = validator(&key, true);
        let (first, second) = (token(&key, "1"), token(&key, "2"));
        let mut last = None;

        let verified = checking.validate_on_connection(&first, None, &mut last).await.expect("valid");
        let again = checking.validate_on_connection(&first, None, &mut last).await.expect("valid");
        assert!(Arc::ptr_eq(&verified, &again));
        assert_eq!((checking.cache_miss.get(), checking.cache_hit.get()), (1, 1));

        // Another token on the same connection is checked, and remembered instead.
        checking.validate_on_connection(&second, None, &mut last).await.expect("valid");
        assert_eq!(checking.cache_miss.get(), 2);
        assert_eq!(last.as_ref().map(|l| l.token.as_str()), Some(second.as_str()));

        // A forgery (the first token's claims under the second's signature) is never taken for
        // the remembered token.
        let (head_and_claims, _) = first.rsplit_once('.').expect("a JWS");
        let (_, signature) = second.rsplit_once('.').expect("a JWS");
        let forged = format!("{head_and_claims}.{signature}");
        assert!(checking.validate_on_connection(&forged, None, &mut last).await.is_err());

        // After a reload, the new validator checks the token itself.
        let reloaded = validator(&key, true);
        reloaded.validate_on_connection(&second, None, &mut last).await.expect("valid");
        assert_eq!((reloaded.cache_miss.get(), reloaded.cache_hit.get()), (1, 0));

        // With the cache off, every request is verified and nothing is remembered.
        let uncached = validator(&key, false);
        let mut nothing = None;
        uncached.validate_on_connection(&first, None, &mut nothing).await.expect("valid");
        uncached.validate_on_connection(&first, None, &mut nothing).await.expect("valid");
        assert!(nothing.is_none());
        assert_eq!(uncached.cache_hit.get(), 0);
    }
}
