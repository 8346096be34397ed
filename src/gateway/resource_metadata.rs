//! RFC 9728 protected-resource metadata: what a client needs to call this gateway's APIs, at
//! `/.well-known/oauth-protected-resource` (the gateway's own resource, which every route
//! without an `audience` of its own serves) and at that path followed by the path of a route's
//! own audience on this gateway. Each document's `resource` is the URL it is found under, as
//! RFC 9728 §3.3 has clients check. Built once per configuration; a challenge names the
//! document of its route in `resource_metadata`.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::Method;
use serde::Serialize;

use super::error::GatewayError;
use super::respond::Answer;
use crate::config::GatewaySettings;

pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// RFC 9728 §2 (the members this gateway can state truthfully).
#[derive(Serialize)]
struct Document<'a> {
    resource: String,
    authorization_servers: Vec<&'a str>,
    scopes_supported: Vec<&'a str>,
    /// RFC 6750 §2.1 only: a token in a query or a form is never read.
    bearer_methods_supported: [&'static str; 1],
    /// Certificate-bound tokens are checked when the listener asks for client certificates.
    tls_client_certificate_bound_access_tokens: bool,
    /// DPoP-bound tokens are taken with a proof by any of these (RFC 9449 §7).
    dpop_signing_alg_values_supported: Vec<&'static str>,
}

#[derive(Default)]
pub struct ProtectedResources {
    /// The gateway's own document, when it has a resource identifier (`gateway.audiences`).
    root: Option<Bytes>,
    /// Documents of routes with an `audience` of their own on this gateway, by the path that
    /// follows `WELL_KNOWN` (the audience's path, RFC 9728 §3.1).
    by_suffix: BTreeMap<String, Bytes>,
    /// Per route prefix: the URL of the document a challenge names.
    url_by_prefix: BTreeMap<String, String>,
}

/// What the routes that share one resource say about it.
#[derive(Default)]
struct Api<'a> {
    issuers: Vec<&'a str>,
    scopes: Vec<&'a str>,
}

impl<'a> Api<'a> {
    fn add(&mut self, issuers: impl IntoIterator<Item = &'a str>, scopes: impl IntoIterator<Item = &'a str>) {
        for issuer in issuers {
            if !self.issuers.contains(&issuer) {
                self.issuers.push(issuer);
            }
        }
        for scope in scopes {
            if !self.scopes.contains(&scope) {
                self.scopes.push(scope);
            }
        }
    }

    fn document(&self, resource: String, certificate_bound: bool) -> Bytes {
        let document = Document {
            resource,
            authorization_servers: self.issuers.clone(),
            scopes_supported: self.scopes.clone(),
            bearer_methods_supported: ["header"],
            tls_client_certificate_bound_access_tokens: certificate_bound,
            dpop_signing_alg_values_supported: crate::token::dpop::alg_names(),
        };
        Bytes::from(serde_json::to_vec(&document).unwrap_or_default())
    }
}

impl ProtectedResources {
    /// A route without an `audience` takes tokens for the gateway's own resource: the gateway's
    /// document describes it. A route with its own audience on this gateway gets its own
    /// document; one elsewhere (another origin) is described by its own server, not here.
    pub fn build(settings: &GatewaySettings) -> ProtectedResources {
        let certificate_bound =
            settings.tls.as_ref().is_some_and(|tls| tls.client_certificates != crate::config::ClientCertificates::Off);
        let Some(base) = settings.audiences.first().map(|a| a.trim_end_matches('/').to_owned()) else {
            return ProtectedResources::default();
        };
        let all_issuers: Vec<&str> = settings.issuers.iter().map(|i| i.issuer.as_str()).collect();
        let root_url = format!("{base}{WELL_KNOWN}");
        let mut gateway = Api::default();
        gateway.add(all_issuers.iter().copied(), []);
        let mut own: BTreeMap<String, (String, Api)> = BTreeMap::new();
        let mut url_by_prefix = BTreeMap::new();
        for route in &settings.routes {
            let issuers: Vec<&str> = if route.issuers.is_empty() {
                all_issuers.clone()
            } else {
                route.issuers.iter().map(String::as_str).collect()
            };
            let scopes = route.scopes_any.iter().chain(&route.scopes_all).map(String::as_str);
            let suffix =
                route.audience.as_deref().and_then(|a| a.strip_prefix(base.as_str())).filter(|s| s.starts_with('/'));
            match (&route.audience, suffix) {
                (None, _) => {
                    gateway.add(issuers, scopes);
                    url_by_prefix.insert(route.path.clone(), root_url.clone());
                }
                (Some(audience), Some(suffix)) => {
                    let entry = own.entry(suffix.to_owned()).or_insert_with(|| (audience.clone(), Api::default()));
                    entry.1.add(issuers, scopes);
                    url_by_prefix.insert(route.path.clone(), format!("{base}{WELL_KNOWN}{suffix}"));
                }
                (Some(_), None) => {}
            }
        }
        let by_suffix = own
            .iter()
            .map(|(suffix, (resource, api))| (suffix.clone(), api.document(resource.clone(), certificate_bound)))
            .collect();
        ProtectedResources { root: Some(gateway.document(base, certificate_bound)), by_suffix, url_by_prefix }
    }

    /// Answer a request for `WELL_KNOWN` followed by `rest` (empty, or an API's path).
    pub fn answer(&self, method: &Method, rest: &str) -> Result<Answer, GatewayError> {
        if method != Method::GET && method != Method::HEAD {
            return Err(GatewayError::MethodNotAllowed("GET, HEAD".into()));
        }
        let document = if rest.is_empty() { self.root.as_ref() } else { self.by_suffix.get(rest) };
        let document = document.ok_or(GatewayError::NoRoute)?;
        Ok(Answer::json_bytes(200, document.clone()).with_header("cache-control", "max-age=300"))
    }

    /// The document's URL for a challenge on the route with this prefix.
    pub fn url_for(&self, prefix: Option<&str>) -> Option<&str> {
        prefix.and_then(|p| self.url_by_prefix.get(p)).map(String::as_str)
    }
}
