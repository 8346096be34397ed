//! The issuer role: an ID-porten-style OpenID Connect provider with Maskinporten's JWT-bearer
//! grant. Wire types and HTTP handlers are kept apart from the rules they apply.

pub(crate) mod assertion;
mod authlevel;
pub(crate) mod authorize;
pub mod clients;
mod endsession;
pub mod errors;
pub mod idp;
mod metadata;
pub mod model;
mod pages;
pub(crate) mod requests;
mod resources;
mod scopes;
mod session;
pub mod store;
pub(crate) mod token_endpoint;
mod tokens;

use std::sync::Arc;

use aws_lc_rs::{digest, hmac};
use axum::Router;
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};

use crate::admin::metrics::Metrics;
use crate::config::{IssuerSettings, Lifetimes, Secret};
use crate::pki::TrustAnchors;
use crate::token::sign::SigningKey;
use crate::token::{Alg, KeySet, VerifyingKey};
use clients::{Client, Clients};
use idp::IdentityProvider;
use scopes::Scopes;
use store::{Store, Typed};

/// Requests to the issuer are forms and small JSON bodies.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

pub struct Issuer {
    /// The issuer identifier, exactly as in `iss`.
    pub id: String,
    pub lifetimes: Lifetimes,
    signing: Arc<SigningKey>,
    published: Vec<Arc<SigningKey>>,
    /// The published keys as a verifier sees them: for `id_token_hint`s and the issuer's own
    /// self-contained access tokens (userinfo, tokeninfo, authlevel).
    own_keys: KeySet,
    pub clients: Clients,
    pub scopes: Scopes,
    pub trust: TrustAnchors,
    pub state: Typed,
    pub idp: Arc<dyn IdentityProvider>,
    pairwise_secret: Secret,
    pub error_uri_base: String,
    pub delegations: Vec<crate::config::DelegationSettings>,
    pub metrics: Arc<Metrics>,
    /// Cookies get `Secure` when the issuer is served over https.
    pub secure_cookies: bool,
    /// authlevel lookups are put on the audit trail.
    pub audit: Option<Arc<crate::audit::AuditLog>>,
    /// DPoP proofs at `/token` must carry one of these nonces (when `dpop_nonce` is on).
    pub dpop_nonces: Option<crate::token::dpop::Nonces>,
}

impl Issuer {
    /// Build from config with the in-memory store and the built-in test IdP.
    pub fn build_with(
        settings: &IssuerSettings,
        metrics: Arc<Metrics>,
        store: Arc<dyn Store>,
        idp: Arc<dyn IdentityProvider>,
        audit: Option<Arc<crate::audit::AuditLog>>,
    ) -> crate::error::Result<Issuer> {
        use crate::error::{Context, Error};
        let mut published = Vec::new();
        let mut signing = None;
        for (i, key) in settings.signing_keys.iter().enumerate() {
            let loaded = Arc::new(
                SigningKey::from_pem_file(&key.private_key, key.alg, key.kid.clone())
                    .with_context(|| format!("issuer.signing_keys[{i}]"))?,
            );
            if key.signing {
                signing = Some(loaded.clone());
            }
            published.push(loaded);
        }
        let signing = signing.ok_or_else(|| Error::new("issuer.signing_keys: no key has signing = true"))?;
        let jwks = serde_json::json!({"keys": published.iter().map(|k| k.public_jwk()).collect::<Vec<_>>()});
        let own_keys = KeySet::from_jwks(jwks.to_string().as_bytes(), &Alg::ALL).context("issuer.signing_keys")?;
        let mut clients = Vec::new();
        for (i, client) in settings.clients.iter().enumerate() {
            clients.push(Client::from_settings(client, &format!("issuer.clients[{i}]"))?);
        }
        let trust = TrustAnchors::load(&settings.trust_anchors).context("issuer.trust_anchors")?;
        let id = settings.issuer.clone();
        let error_uri_base = settings
            .error_uri_base
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/').to_owned())
            .unwrap_or_else(|| format!("{}/errors", id.trim_end_matches('/')));
        Ok(Issuer {
            secure_cookies: id.starts_with("https://"),
            id,
            lifetimes: settings.lifetimes.clone(),
            signing,
            published,
            own_keys,
            clients: Clients::new(clients),
            scopes: Scopes::new(&settings.scopes),
            trust,
            state: Typed::new(store),
            idp,
            pairwise_secret: settings.pairwise_secret.clone(),
            error_uri_base,
            delegations: settings.delegations.clone(),
            metrics,
            audit,
            dpop_nonces: match settings.dpop_nonce {
                true => Some(crate::token::dpop::Nonces::new(std::time::Duration::from_secs(300))?),
                false => None,
            },
        })
    }

    /// An endpoint URL: the issuer identifier plus a path.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.id.trim_end_matches('/'))
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({"keys": self.published.iter().map(|k| k.public_jwk()).collect::<Vec<_>>()})
    }

    pub fn own_key(&self, kid: Option<&str>, alg: Alg) -> Option<&Arc<VerifyingKey>> {
        self.own_keys.find(kid, alg)
    }

    /// HMAC-SHA256 under the deployment secret over `parts`, base64url with padding.
    fn mac(&self, parts: &[&[u8]]) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.pairwise_secret.expose().as_bytes());
        let mut context = hmac::Context::with_key(&key);
        for part in parts {
            context.update(part);
        }
        URL_SAFE.encode(context.sign().as_ref())
    }

    /// `sub`: base64url-with-padding(HMAC-SHA256(secret, client_id ‖ pid)), 44 characters.
    pub fn pairwise_sub(&self, client_id: &str, pid: &str) -> String {
        self.mac(&[client_id.as_bytes(), pid.as_bytes()])
    }

    /// The logout confirmation token of a session: only a page served to that browser has it.
    pub fn logout_confirmation(&self, session_key: &str) -> String {
        self.mac(&[b"logout\0", session_key.as_bytes()])
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/.well-known/openid-configuration", get(metadata::openid_configuration))
            .route("/.well-known/oauth-authorization-server", get(metadata::authorization_server))
            .route("/.well-known/oauth-authorization-server/{*rest}", get(metadata::authorization_server))
            .route("/jwk", get(metadata::jwk))
            .route("/authorize", get(authorize::authorize_get).post(authorize::authorize_post))
            .route("/authorize/login", post(authorize::login))
            .route("/authorize/consent", post(authorize::consent))
            .route("/authorize/cancel", post(authorize::cancel))
            .route("/par", post(authorize::par))
            .route("/token", post(token_endpoint::token))
            .route("/userinfo", get(resources::userinfo).post(resources::userinfo))
            .route("/tokeninfo", post(resources::tokeninfo))
            .route("/revoke", post(resources::revoke))
            .route("/endsession", get(endsession::endsession).post(endsession::endsession_post))
            .route("/authlevel/rest/v1/sikkerhetsnivaa", post(authlevel::sikkerhetsnivaa))
            .with_state(self)
    }
}

/// 32 random bytes, URL-safe base64 with padding: codes, handles, refresh tokens, session ids.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // The system RNG does not fail on Linux; if it did, a unique value is still better than a panic.
        let fallback = format!("{:?}{:?}", std::time::SystemTime::now(), std::thread::current().id());
        bytes.copy_from_slice(digest::digest(&digest::SHA256, fallback.as_bytes()).as_ref());
    }
    URL_SAFE.encode(bytes)
}

/// Secrets are stored under their SHA-256, never as themselves.
pub fn storage_key(secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, secret.as_bytes()))
}
