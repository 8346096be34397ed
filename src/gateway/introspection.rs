//! Opaque access tokens: RFC 7662 introspection at the issuer's `/tokeninfo`, authenticating as
//! the gateway's own client. `active: false` is an invalid token; an issuer that cannot answer
//! is a 503, never a 401 (the token may well be good). Made-up tokens cost the issuer a call
//! each: an inactive answer is remembered briefly, and each client address may cause only so
//! many calls a second.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use serde::Deserialize;
use url::Url;

use super::routes::RateLimit;

use crate::admin::metrics::{Introspection, Metrics};
use crate::config::{IntrospectionSettings, Secret};
use crate::token::{AccessClaims, Reason, TokenError, VerifiedToken};
use crate::web::client::{error_chain, read_limited};

const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Inactive tokens remembered at once.
const MAX_INACTIVE_REMEMBERED: u64 = 100_000;

pub struct Introspector {
    pub issuer: Arc<str>,
    url: Url,
    client_id: String,
    client_secret: Secret,
    timeout: Duration,
    pub max_cache: Duration,
    /// Tokens found inactive, by their hash (the validation cache's key).
    inactive: Cache<[u8; 32], ()>,
    calls_per_client: RateLimit,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
}

#[derive(Deserialize)]
struct Answer {
    active: bool,
    #[serde(flatten)]
    claims: AccessClaims,
}

impl Introspector {
    pub fn new(
        issuer: &str,
        settings: &IntrospectionSettings,
        http: reqwest::Client,
        metrics: Arc<Metrics>,
    ) -> Introspector {
        Introspector {
            issuer: issuer.into(),
            url: settings.url.clone(),
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret.clone(),
            timeout: settings.timeout,
            max_cache: settings.max_cache,
            inactive: Cache::builder()
                .max_capacity(MAX_INACTIVE_REMEMBERED)
                .time_to_live(settings.inactive_cache)
                .build(),
            calls_per_client: RateLimit::new(settings.calls_per_client_per_second),
            http,
            metrics,
        }
    }

    /// `key` is the token's hash; `client` the address the request came from.
    pub async fn introspect(
        &self,
        token: &str,
        key: &[u8; 32],
        client: Option<IpAddr>,
        now: i64,
        leeway: i64,
    ) -> Result<VerifiedToken, TokenError> {
        if self.inactive.contains_key(key) {
            self.metrics.gateway.introspected(Introspection::InactiveRemembered);
            return Err(inactive());
        }
        if let Some(client) = client
            && !self.calls_per_client.admit(&client)
        {
            self.metrics.gateway.introspected(Introspection::RefusedRate);
            return Err(TokenError::new(
                Reason::TooManyIntrospections,
                format!("more than {} unknown tokens a second from this client", self.calls_per_client.per_second),
            ));
        }
        let result = self.call(token).await;
        self.metrics.gateway.introspected(match &result {
            Ok(answer) if answer.active => Introspection::Active,
            Ok(_) => Introspection::Inactive,
            Err(_) => Introspection::Error,
        });
        let answer = result?;
        if !answer.active {
            self.inactive.insert(*key, ());
            return Err(inactive());
        }
        // A refresh token is active too, but it is not for resource servers. An access token is
        // `Bearer`, or `DPoP` with the key it is bound to.
        let bound = answer.claims.cnf.as_ref().is_some_and(|c| c.jkt.is_some());
        match answer.claims.token_type.as_deref() {
            None => {}
            Some(t) if t.eq_ignore_ascii_case("bearer") => {}
            Some(t) if t.eq_ignore_ascii_case("dpop") && bound => {}
            Some(_) => return Err(TokenError::new(Reason::NotAnAccessToken, "the token is not an access token")),
        }
        let issuer = match answer.claims.iss.as_deref() {
            Some(iss) if iss != &*self.issuer => {
                return Err(TokenError::new(Reason::UntrustedIssuer, "the introspection answer names another issuer"));
            }
            _ => self.issuer.clone(),
        };
        VerifiedToken::from_claims(issuer, answer.claims, now, leeway)
    }

    async fn call(&self, token: &str) -> Result<Answer, TokenError> {
        let unavailable = |detail: String| {
            tracing::warn!(url = %self.url, error = %detail, "token introspection failed");
            TokenError::new(Reason::IssuerUnavailable, "the token issuer's introspection endpoint cannot be reached")
        };
        let exchange = async {
            let response = self
                .http
                .post(self.url.clone())
                .basic_auth(&self.client_id, Some(self.client_secret.expose()))
                .form(&[("token", token), ("token_type_hint", "access_token")])
                .send()
                .await
                .map_err(|e| error_chain(&e))?;
            if !response.status().is_success() {
                return Err(format!("answered {}", response.status()));
            }
            let body = read_limited(response, MAX_ANSWER_BYTES).await.map_err(|e| error_chain(&e))?;
            serde_json::from_slice::<Answer>(&body).map_err(|e| format!("not an RFC 7662 answer: {e}"))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(detail)) => Err(unavailable(detail)),
            Err(_) => Err(unavailable(format!("no answer within {:?}", self.timeout))),
        }
    }
}

fn inactive() -> TokenError {
    TokenError::new(Reason::Inactive, "the token is not active (unknown, expired or revoked)")
}
