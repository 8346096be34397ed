//! The client registry and client authentication at `/token`, `/par`, `/revoke` and
//! `/tokeninfo` (RFC 6749 §2.3, RFC 7523 §2.2).

use std::collections::HashMap;

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::Issuer;
use super::assertion::{self, Purpose};
use super::errors::OAuthError;
use super::requests::ClientAuthentication;
use crate::config::{AccessTokenKind, AuthMethod, ClientSettings, IntegrationType, KeyReference, Secret};
use crate::oauth::JWT_CLIENT_ASSERTION;
use crate::telemetry::excerpt;
use crate::token::{Alg, KeySet, VerifyingKey};

/// Client JWTs (grants and assertions) are RSA, as Maskinporten takes them.
pub const CLIENT_JWT_ALGS: [Alg; 3] = [Alg::RS256, Alg::RS384, Alg::RS512];

pub struct Client {
    pub id: String,
    pub integration_type: IntegrationType,
    pub auth_methods: Vec<AuthMethod>,
    secret: Option<Secret>,
    pub keys: KeySet,
    pub key_reference: KeyReference,
    pub orgno: Option<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub frontchannel_logout_uri: Option<url::Url>,
    pub frontchannel_logout_session_required: bool,
    pub scopes: Vec<String>,
    pub access_token: AccessTokenKind,
    pub require_pkce: bool,
    pub access_token_seconds: Option<u64>,
    pub refresh_token_seconds: Option<u64>,
    pub authorization_seconds: Option<u64>,
}

impl Client {
    pub fn from_settings(settings: &ClientSettings, key: &str) -> crate::error::Result<Client> {
        use crate::error::Context;
        let mut keys = Vec::new();
        for (i, registered) in settings.keys.iter().enumerate() {
            let context = || format!("{key}.keys[{i}]: cannot use {}", registered.public_key.display());
            let pem = std::fs::read(&registered.public_key).with_context(context)?;
            let spki = crate::pki::public_key_from_pem(&pem).with_context(context)?;
            let verifying =
                VerifyingKey::from_spki(Some(registered.kid.clone()), &spki, &CLIENT_JWT_ALGS).with_context(context)?;
            keys.push(verifying);
        }
        let key_reference =
            settings.key_reference.unwrap_or(if keys.is_empty() { KeyReference::X5c } else { KeyReference::Kid });
        Ok(Client {
            id: settings.client_id.clone(),
            integration_type: settings.integration_type,
            auth_methods: settings.auth_methods.clone(),
            secret: settings.client_secret.clone(),
            keys: KeySet::new(keys),
            key_reference,
            orgno: settings.orgno.clone(),
            redirect_uris: settings.redirect_uris.iter().map(|u| u.as_str().to_owned()).collect(),
            post_logout_redirect_uris: settings
                .post_logout_redirect_uris
                .iter()
                .map(|u| u.as_str().to_owned())
                .collect(),
            frontchannel_logout_uri: settings.frontchannel_logout_uri.clone(),
            frontchannel_logout_session_required: settings.frontchannel_logout_session_required,
            scopes: settings.scopes.clone(),
            access_token: settings.access_token,
            require_pkce: settings.require_pkce,
            access_token_seconds: settings.access_token_seconds,
            refresh_token_seconds: settings.refresh_token_seconds,
            authorization_seconds: settings.authorization_seconds,
        })
    }

    /// A public client (`none`) cannot keep a secret: no refresh tokens, PKCE and `state` required.
    pub fn is_public(&self) -> bool {
        self.auth_methods.contains(&AuthMethod::None)
    }

    pub fn allows(&self, method: AuthMethod) -> bool {
        self.auth_methods.contains(&method)
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    pub fn may_use_x5c(&self) -> bool {
        matches!(self.key_reference, KeyReference::X5c | KeyReference::Either)
    }

    pub fn may_use_kid(&self) -> bool {
        matches!(self.key_reference, KeyReference::Kid | KeyReference::Either) && !self.keys.is_empty()
    }
}

pub struct Clients {
    by_id: HashMap<String, Client>,
}

impl Clients {
    pub fn new(clients: Vec<Client>) -> Clients {
        Clients { by_id: clients.into_iter().map(|c| (c.id.clone(), c)).collect() }
    }

    pub fn get(&self, id: &str) -> Option<&Client> {
        self.by_id.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Client> {
        self.by_id.values()
    }
}

/// An authenticated client and how it proved itself (`client_amr`).
pub struct Authenticated<'a> {
    pub client: &'a Client,
    pub method: AuthMethod,
    /// `virksomhetssertifikat` when a certificate signed the assertion.
    pub amr: &'static str,
}

/// RFC 6749 §2.3.1: the id and secret in Basic are form-urlencoded before base64.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else { return Ok(None) };
    let value = value.to_str().map_err(|_| OAuthError::invalid_client("the Authorization header is not ASCII"))?;
    let Some(encoded) = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic ")) else {
        return Err(OAuthError::invalid_client("only the Basic scheme authenticates clients here"));
    };
    let decoded =
        STANDARD.decode(encoded.trim()).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(|| {
            OAuthError::invalid_client("the Basic credentials are not base64").with_basic_challenge(true)
        })?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or_else(|| OAuthError::invalid_client("the Basic credentials have no ':'").with_basic_challenge(true))?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
    };
    Ok(Some((unescape(id), unescape(secret))))
}

/// Authenticate the calling client by exactly one method (RFC 6749 §2.3).
pub async fn authenticate<'a>(
    issuer: &'a Issuer,
    headers: &HeaderMap,
    form: &ClientAuthentication,
) -> Result<Authenticated<'a>, OAuthError> {
    let basic = basic_credentials(headers)?;
    let form_secret = form.client_secret.as_deref();
    let assertion = form.client_assertion.as_deref();
    let used = [basic.is_some(), form_secret.is_some(), assertion.is_some()].iter().filter(|u| **u).count();
    if used > 1 {
        return Err(OAuthError::invalid_request("use one client authentication method, not several"));
    }
    let form_id = form.client_id.as_deref();
    let unknown = |id: &str| OAuthError::invalid_client(format!("unknown client {:?}", excerpt(id, 64)));
    if let Some((id, secret)) = basic {
        if form_id.is_some_and(|f| f != id) {
            return Err(OAuthError::invalid_request("client_id differs from the Basic credentials"));
        }
        let client = issuer.clients.get(&id).ok_or_else(|| unknown(&id).with_basic_challenge(true))?;
        return check_secret(client, AuthMethod::ClientSecretBasic, &secret).map_err(|e| e.with_basic_challenge(true));
    }
    if let Some(secret) = form_secret {
        let id = form_id.ok_or_else(|| OAuthError::invalid_request("client_secret without client_id"))?;
        let client = issuer.clients.get(id).ok_or_else(|| unknown(id))?;
        return check_secret(client, AuthMethod::ClientSecretPost, secret);
    }
    if let Some(assertion) = assertion {
        if form.client_assertion_type.as_deref() != Some(JWT_CLIENT_ASSERTION) {
            return Err(OAuthError::invalid_request(format!("client_assertion_type must be {JWT_CLIENT_ASSERTION}")));
        }
        let verified =
            assertion::verify(issuer, assertion, Purpose::ClientAuthentication).await.map_err(|e| match e.store {
                Some(store) => OAuthError::from(store),
                None => OAuthError::invalid_client(e.description),
            })?;
        if form_id.is_some_and(|f| f != verified.client.id) {
            return Err(OAuthError::invalid_client("client_id differs from the assertion's iss"));
        }
        if !verified.client.allows(AuthMethod::PrivateKeyJwt) {
            return Err(OAuthError::invalid_client("this client may not use private_key_jwt"));
        }
        return Ok(Authenticated { client: verified.client, method: AuthMethod::PrivateKeyJwt, amr: verified.amr });
    }
    let id = form_id.ok_or_else(|| OAuthError::invalid_client("no client authentication and no client_id"))?;
    let client = issuer.clients.get(id).ok_or_else(|| unknown(id))?;
    if !client.is_public() {
        return Err(OAuthError::invalid_client(format!("client {id} must authenticate")));
    }
    Ok(Authenticated { client, method: AuthMethod::None, amr: "none" })
}

fn check_secret<'a>(client: &'a Client, method: AuthMethod, secret: &str) -> Result<Authenticated<'a>, OAuthError> {
    if !client.allows(method) {
        return Err(OAuthError::invalid_client(format!("client {} may not use {}", client.id, method.name())));
    }
    match &client.secret {
        Some(expected) if expected.matches(secret) => Ok(Authenticated { client, method, amr: method.name() }),
        _ => Err(OAuthError::invalid_client("the client secret is wrong")),
    }
}
