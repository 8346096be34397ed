//! RFC 9728 protected-resource metadata: what a client needs to call this gateway's APIs, at
//! `/.well-known/oauth-protected-resource` (the gateway as a whole) and at that path followed
//! by a route's prefix (one API). Built once per configuration; a 401 names the document of its
//! route in `resource_metadata`.

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
    /// No certificate-bound tokens are checked (yet).
    tls_client_certificate_bound_access_tokens: bool,
}

#[derive(Default)]
pub struct ProtectedResources {
    /// The gateway's own document, when it has a resource identifier (`gateway.audiences`).
    root: Option<Bytes>,
    /// Per route prefix: the document and its URL.
    by_prefix: BTreeMap<String, (Bytes, String)>,
}

impl ProtectedResources {
    pub fn build(settings: &GatewaySettings) -> ProtectedResources {
        let Some(base) = settings.audiences.first().map(|a| a.trim_end_matches('/').to_owned()) else {
            return ProtectedResources::default();
        };
        let all_issuers: Vec<&str> = settings.issuers.iter().map(|i| i.issuer.as_str()).collect();
        let document = |resource: String, issuers: Vec<&str>, scopes: Vec<&str>| {
            let document = Document {
                resource,
                authorization_servers: issuers,
                scopes_supported: scopes,
                bearer_methods_supported: ["header"],
                tls_client_certificate_bound_access_tokens: false,
            };
            Bytes::from(serde_json::to_vec(&document).unwrap_or_default())
        };
        // Routes on one prefix (told apart by method) are one API.
        let mut apis: BTreeMap<&str, (String, Vec<&str>, Vec<&str>)> = BTreeMap::new();
        for route in &settings.routes {
            let resource = route.audience.clone().unwrap_or_else(|| format!("{base}{}", route.path));
            let entry = apis.entry(route.path.as_str()).or_insert_with(|| (resource, Vec::new(), Vec::new()));
            let issuers: Vec<&str> = if route.issuers.is_empty() {
                all_issuers.clone()
            } else {
                route.issuers.iter().map(String::as_str).collect()
            };
            for issuer in issuers {
                if !entry.1.contains(&issuer) {
                    entry.1.push(issuer);
                }
            }
            for scope in route.scopes_any.iter().chain(&route.scopes_all) {
                if !entry.2.contains(&scope.as_str()) {
                    entry.2.push(scope);
                }
            }
        }
        let mut every_scope: Vec<&str> = apis.values().flat_map(|(_, _, scopes)| scopes.iter().copied()).collect();
        every_scope.sort_unstable();
        every_scope.dedup();
        let by_prefix: BTreeMap<String, (Bytes, String)> = apis
            .iter()
            .map(|(prefix, (resource, issuers, scopes))| {
                let url = format!("{base}{WELL_KNOWN}{prefix}");
                (prefix.to_string(), (document(resource.clone(), issuers.clone(), scopes.clone()), url))
            })
            .collect();
        ProtectedResources { root: Some(document(base, all_issuers, every_scope)), by_prefix }
    }

    /// Answer a request for `WELL_KNOWN` followed by `rest` (empty, or a route's prefix).
    pub fn answer(&self, method: &Method, rest: &str) -> Result<Answer, GatewayError> {
        if method != Method::GET && method != Method::HEAD {
            return Err(GatewayError::MethodNotAllowed("GET, HEAD".into()));
        }
        let document = if rest.is_empty() { self.root.as_ref() } else { self.by_prefix.get(rest).map(|(d, _)| d) };
        let document = document.ok_or(GatewayError::NoRoute)?;
        Ok(Answer::json_bytes(200, document.clone()).with_header("cache-control", "max-age=300"))
    }

    /// The document's URL for a 401 on the route with this prefix.
    pub fn url_for(&self, prefix: Option<&str>) -> Option<&str> {
        prefix.and_then(|p| self.by_prefix.get(p)).map(|(_, url)| url.as_str())
    }
}
