//! The route table and each route's policy: which tokens it takes and where it sends them.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use pingora_limits::rate::Rate;
use prometheus::{Histogram, IntCounter};

use super::upstream::Upstream;
use crate::admin::metrics::Metrics;
use crate::config::{Handler, RouteSettings, TokenKind};
use crate::token::{Acr, VerifiedToken};
use crate::web::path::prefix_matches;

/// A route's metric series, looked up once: a label lookup on every request showed in profiles.
pub struct RouteMetrics {
    /// Requests answered 200, the common case; other statuses are looked up by label.
    pub ok: IntCounter,
    pub duration: Histogram,
}

impl RouteMetrics {
    pub fn new(route: &str, metrics: &Metrics) -> RouteMetrics {
        RouteMetrics {
            ok: metrics.gateway.requests.with_label_values(&[route, "200"]),
            duration: metrics.gateway.request_duration.with_label_values(&[route]),
        }
    }
}

/// Where a matched request goes.
pub enum Target {
    Upstream(Arc<Upstream>),
    Handler(Handler),
}

/// Why a valid token may not use a route.
#[derive(Debug, PartialEq, Eq)]
pub enum Denial {
    /// 401 `invalid_token`: the token is not meant for this resource (issuer, audience).
    NotForThisRoute(String),
    /// 403 `insufficient_scope`, with the scopes that would do.
    Scope { scope: String, description: String },
    /// 401 `insufficient_user_authentication`: the citizen must log in at a higher level.
    StepUp(Acr),
}

pub struct Policy {
    pub token: TokenKind,
    pub scopes_any: Vec<String>,
    pub scopes_all: Vec<String>,
    pub min_acr: Option<Acr>,
    pub issuers: Vec<String>,
    pub audience: Audience,
}

/// Which resources a route's tokens may be meant for (their `aud`).
#[derive(Debug, Clone)]
pub enum Audience {
    /// The route's own resource: `aud` must name it.
    Required(String),
    /// A token for no particular resource (no `aud`, or ID-porten's `unspecified`), or for one of
    /// the gateway's own resource identifiers. A token meant for another API is refused: one
    /// API must not be able to replay the tokens sent to it at another.
    Unrestricted(Arc<[String]>),
}

/// ID-porten's `aud` for a token asked for without a resource.
const UNSPECIFIED: &str = "unspecified";

impl Audience {
    fn admits(&self, audiences: &[String]) -> Result<(), Denial> {
        match self {
            Audience::Required(audience) if audiences.iter().any(|a| a == audience) => Ok(()),
            Audience::Required(audience) => {
                Err(Denial::NotForThisRoute(format!("the token's audience does not include {audience}")))
            }
            Audience::Unrestricted(own) => match audiences.iter().find(|a| *a != UNSPECIFIED && !own.contains(a)) {
                Some(other) => {
                    Err(Denial::NotForThisRoute(format!("the token is meant for another resource ({other})")))
                }
                None => Ok(()),
            },
        }
    }
}

impl Policy {
    pub fn from_settings(route: &RouteSettings, own_audiences: &Arc<[String]>) -> Policy {
        Policy {
            token: route.token,
            scopes_any: route.scopes_any.clone(),
            scopes_all: route.scopes_all.clone(),
            min_acr: route.min_acr,
            issuers: route.issuers.clone(),
            audience: match &route.audience {
                Some(audience) => Audience::Required(audience.clone()),
                None => Audience::Unrestricted(own_audiences.clone()),
            },
        }
    }

    /// The scopes to name in a 403: the missing required ones, or the alternatives.
    fn needed_scopes(&self, token: &VerifiedToken) -> String {
        let mut needed: Vec<&str> =
            self.scopes_all.iter().filter(|s| !token.has_scope(s)).map(String::as_str).collect();
        if !self.scopes_any.iter().any(|s| token.has_scope(s)) {
            needed.extend(self.scopes_any.iter().map(String::as_str));
        }
        if needed.is_empty() {
            needed.extend(self.scopes_all.iter().chain(&self.scopes_any).map(String::as_str));
        }
        needed.join(" ")
    }

    pub fn check(&self, token: &VerifiedToken) -> Result<(), Denial> {
        if !self.issuers.is_empty() && !self.issuers.iter().any(|i| **i == *token.issuer) {
            return Err(Denial::NotForThisRoute(format!("tokens from {} are not accepted here", token.issuer)));
        }
        self.audience.admits(&token.audiences)?;
        match self.token {
            TokenKind::Citizen if !token.is_citizen() => {
                return Err(Denial::Scope {
                    scope: self.needed_scopes(token),
                    description: "this resource needs a citizen's token (with pid, from a login)".into(),
                });
            }
            TokenKind::Machine if !token.is_machine() => {
                return Err(Denial::Scope {
                    scope: self.needed_scopes(token),
                    description: "this resource needs a machine token (no citizen, no login)".into(),
                });
            }
            _ => {}
        }
        if let Some(required) = self.min_acr
            && token.level.is_none_or(|level| level < required)
        {
            return Err(Denial::StepUp(required));
        }
        let all = self.scopes_all.iter().all(|s| token.has_scope(s));
        let any = self.scopes_any.is_empty() || self.scopes_any.iter().any(|s| token.has_scope(s));
        if !(all && any) {
            return Err(Denial::Scope {
                scope: self.needed_scopes(token),
                description: "the token lacks a scope this resource needs".into(),
            });
        }
        Ok(())
    }
}

/// Requests per second per client on one route.
pub struct RateLimit {
    pub per_second: isize,
    rate: Rate,
}

impl RateLimit {
    pub fn new(per_second: u32) -> RateLimit {
        RateLimit { per_second: per_second as isize, rate: Rate::new(Duration::from_secs(1)) }
    }

    /// Count one request for `client`; `false` when it is over the limit.
    pub fn admit<K: std::hash::Hash + ?Sized>(&self, client: &K) -> bool {
        self.rate.observe(&client, 1) <= self.per_second
    }
}

pub struct Route {
    pub name: Arc<str>,
    pub prefix: String,
    pub methods: Vec<Method>,
    pub target: Target,
    pub policy: Policy,
    pub forward_token: bool,
    /// Requests may be retried on a stale pooled connection whatever their method.
    pub idempotent: bool,
    pub rate_limit: Option<RateLimit>,
    /// Bearer tokens are refused: DPoP-bound ones only.
    pub sender_constrained: bool,
    /// DPoP proofs must carry a server nonce.
    pub dpop_nonce: bool,
    pub metrics: RouteMetrics,
}

pub enum Lookup<'a> {
    /// The route and its index in the table.
    Found(usize, &'a Route),
    /// The path is routed, but not for this method: 405 with `Allow`.
    MethodNotAllowed(Vec<&'a Method>),
    NotFound,
}

/// Routes ordered longest prefix first, so the most specific one wins.
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    pub fn new(mut routes: Vec<Route>) -> RouteTable {
        routes.sort_by_key(|route| std::cmp::Reverse(route.prefix.len()));
        RouteTable { routes }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }

    pub fn get(&self, index: usize) -> Option<&Route> {
        self.routes.get(index)
    }

    pub fn lookup(&self, method: &Method, path: &str) -> Lookup<'_> {
        let mut allowed = Vec::new();
        let mut matched_prefix: Option<&str> = None;
        for (index, route) in self.routes.iter().enumerate() {
            if matched_prefix.is_some_and(|p| p.len() > route.prefix.len()) {
                break;
            }
            if !prefix_matches(&route.prefix, path) {
                continue;
            }
            matched_prefix = Some(&route.prefix);
            if route.methods.is_empty() || route.methods.contains(method) {
                return Lookup::Found(index, route);
            }
            allowed.extend(route.methods.iter());
        }
        if allowed.is_empty() { Lookup::NotFound } else { Lookup::MethodNotAllowed(allowed) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(pid: Option<&str>, scopes: &[&str], acr: Option<Acr>) -> VerifiedToken {
        VerifiedToken {
            issuer: "https://issuer".into(),
            subject: None,
            client_id: Some("c".into()),
            pid: pid.map(str::to_owned),
            consumer_orgno: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            acr: acr.map(|a| a.name().to_owned()),
            level: acr,
            audiences: vec!["https://gateway.example/".into()],
            expires_at: 0,
            jkt: None,
            x5t_s256: None,
            unchecked_binding: false,
        }
    }

    fn policy() -> Policy {
        Policy {
            token: TokenKind::Citizen,
            scopes_any: vec!["a".into(), "b".into()],
            scopes_all: vec!["c".into()],
            min_acr: Some(Acr::Level4),
            issuers: vec![],
            audience: Audience::Unrestricted(Arc::from(vec!["https://gateway.example/".to_owned()])),
        }
    }

    #[test]
    fn a_token_meeting_every_rule_passes() {
        assert_eq!(policy().check(&token(Some("23079421936"), &["b", "c"], Some(Acr::Level4))), Ok(()));
    }

    #[test]
    fn each_rule_refuses_on_its_own() {
        let p = policy();
        assert!(matches!(p.check(&token(None, &["a", "c"], Some(Acr::Level4))), Err(Denial::Scope { .. })));
        assert_eq!(p.check(&token(Some("1"), &["a", "c"], Some(Acr::Level3))), Err(Denial::StepUp(Acr::Level4)));
        match p.check(&token(Some("1"), &["a"], Some(Acr::Level4))) {
            Err(Denial::Scope { scope, .. }) => assert_eq!(scope, "c"),
            other => panic!("{other:?}"),
        }
        match p.check(&token(Some("1"), &["c"], Some(Acr::Level4))) {
            Err(Denial::Scope { scope, .. }) => assert_eq!(scope, "a b"),
            other => panic!("{other:?}"),
        }
        // pid without a login (a Maskinporten token restricted to an end user) is no citizen.
        assert!(matches!(p.check(&token(Some("1"), &["a", "c"], None)), Err(Denial::Scope { .. })));
        let machine = Policy { token: TokenKind::Machine, min_acr: None, ..policy() };
        assert!(machine.check(&token(None, &["a", "c"], None)).is_ok());
        // A no_pid citizen's token has a login behind it: not a machine token.
        assert!(matches!(machine.check(&token(None, &["a", "c"], Some(Acr::Level3))), Err(Denial::Scope { .. })));
        let aud = Policy { audience: Audience::Required("other".into()), ..policy() };
        assert!(matches!(
            aud.check(&token(Some("1"), &["a", "c"], Some(Acr::Level4))),
            Err(Denial::NotForThisRoute(_))
        ));
    }

    #[test]
    fn a_route_without_an_audience_refuses_tokens_meant_for_another_resource() {
        let p = policy();
        let with = |audiences: &[&str]| {
            let mut token = token(Some("1"), &["a", "c"], Some(Acr::Level4));
            token.audiences = audiences.iter().map(|a| a.to_string()).collect();
            p.check(&token)
        };
        assert_eq!(with(&[]), Ok(()));
        assert_eq!(with(&["unspecified"]), Ok(()));
        assert_eq!(with(&["https://gateway.example/"]), Ok(()));
        assert_eq!(
            with(&["https://gateway.example/", "https://other.example/"]),
            Err(Denial::NotForThisRoute("the token is meant for another resource (https://other.example/)".into()))
        );
        assert!(matches!(with(&["api"]), Err(Denial::NotForThisRoute(_))));
    }

    #[test]
    fn a_rate_limit_admits_up_to_its_rate() {
        let limit = RateLimit::new(3);
        assert!((0..3).all(|_| limit.admit("client")));
        assert!(!limit.admit("client"));
        assert!(limit.admit("another client"));
    }
}
