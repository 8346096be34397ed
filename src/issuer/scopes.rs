//! Registered scopes and the rules a request's scopes must meet.

use std::collections::HashMap;

use crate::config::{IntegrationType, RESERVED_SCOPES, ScopeSettings};
use crate::telemetry::excerpt;

pub struct Scope {
    pub name: String,
    pub description: String,
    pub requires_user_consent: bool,
    pub allowed_integration_types: Vec<IntegrationType>,
    pub at_max_age: Option<u64>,
    pub authorization_max_age: Option<u64>,
}

pub struct Scopes {
    by_name: HashMap<String, Scope>,
}

/// Why a requested scope cannot be had.
#[derive(Debug, PartialEq, Eq)]
pub enum ScopeRefusal {
    /// No such scope at this issuer (MP-200).
    Unknown(String),
    /// The scope is not for this integration type (MP-201).
    WrongIntegrationType(String),
    /// The scope exists but was not granted to the client (MP-250).
    NotGranted(String),
}

impl ScopeRefusal {
    pub fn describe(&self) -> String {
        match self {
            ScopeRefusal::Unknown(s) => format!("scope {s:?} does not exist"),
            ScopeRefusal::WrongIntegrationType(s) => format!("scope {s:?} is not allowed for this integration type"),
            ScopeRefusal::NotGranted(s) => format!("scope {s:?} has not been granted to this client"),
        }
    }
}

impl Scopes {
    pub fn new(settings: &[ScopeSettings]) -> Scopes {
        Scopes {
            by_name: settings
                .iter()
                .map(|s| {
                    (
                        s.name.clone(),
                        Scope {
                            name: s.name.clone(),
                            description: s.description.clone(),
                            requires_user_consent: s.requires_user_consent,
                            allowed_integration_types: s.allowed_integration_types.clone(),
                            at_max_age: s.at_max_age_seconds,
                            authorization_max_age: s.authorization_max_age_seconds,
                        },
                    )
                })
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Scope> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// Check every requested scope for a client of `integration_type` holding `granted`.
    pub fn check(
        &self,
        requested: &[String],
        integration_type: IntegrationType,
        granted: &[String],
    ) -> Result<(), ScopeRefusal> {
        for scope in requested {
            let reserved = RESERVED_SCOPES.contains(&scope.as_str());
            let Some(registered) = self.get(scope) else {
                if !reserved {
                    return Err(ScopeRefusal::Unknown(scope.clone()));
                }
                if !granted.contains(scope) {
                    return Err(ScopeRefusal::NotGranted(scope.clone()));
                }
                continue;
            };
            if !registered.allowed_integration_types.is_empty()
                && !registered.allowed_integration_types.contains(&integration_type)
            {
                return Err(ScopeRefusal::WrongIntegrationType(scope.clone()));
            }
            if !granted.contains(scope) {
                return Err(ScopeRefusal::NotGranted(scope.clone()));
            }
        }
        Ok(())
    }

    /// The shortest cap the scopes put on an access token's lifetime.
    pub fn access_token_cap(&self, scopes: &[String]) -> Option<u64> {
        scopes.iter().filter_map(|s| self.get(s)?.at_max_age).min()
    }

    pub fn authorization_cap(&self, scopes: &[String]) -> Option<u64> {
        scopes.iter().filter_map(|s| self.get(s)?.authorization_max_age).min()
    }
}

/// Split a space-delimited scope parameter, dropping duplicates and refusing odd characters.
pub fn parse_scope(value: &str) -> Result<Vec<String>, String> {
    let mut scopes: Vec<String> = Vec::new();
    for scope in value.split(' ').filter(|s| !s.is_empty()) {
        // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
        if !scope.bytes().all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b)) {
            return Err(format!("scope {:?} holds characters a scope may not", excerpt(scope, 64)));
        }
        if scope.len() > 256 {
            return Err("a scope is longer than 256 characters".into());
        }
        if !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_owned());
        }
    }
    if scopes.len() > 64 {
        return Err("more than 64 scopes".into());
    }
    Ok(scopes)
}
