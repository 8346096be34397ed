//! The identity provider behind the issuer. Today the built-in test IdP (a form taking a
//! fødselsnummer and a level); the trait is the seam where a SAML2 bridge to ID-porten's IdP goes.

use std::collections::HashMap;

use axum::response::Response;

use super::model::{AuthRequest, Authentication};
use super::pages;
use crate::personid::{self, PidError};
use crate::token::Acr;

/// What the login step knows when it starts.
pub struct LoginContext<'a> {
    /// Where the IdP's answer goes (the login form's action).
    pub action: &'a str,
    pub interaction: &'a str,
    pub csrf: &'a str,
    pub request: &'a AuthRequest,
    pub error: Option<&'a str>,
}

pub trait IdentityProvider: Send + Sync {
    /// Start a login: a page, or a redirect to an external IdP (a SAML AuthnRequest).
    fn begin(&self, context: &LoginContext<'_>) -> Response;
    /// Read the IdP's answer. `Err` is shown to the citizen, who may try again.
    fn complete(
        &self,
        fields: &HashMap<String, String>,
        request: &AuthRequest,
        now: i64,
    ) -> Result<Authentication, String>;
}

/// The built-in test IdP: any valid fødselsnummer or d-nummer at the level the citizen picks.
pub struct TestIdp;

impl IdentityProvider for TestIdp {
    fn begin(&self, context: &LoginContext<'_>) -> Response {
        let required = context.request.acr.unwrap_or(Acr::Level3);
        pages::login(
            &context.request.client_id,
            context.action,
            context.interaction,
            context.csrf,
            context.error,
            required,
        )
    }

    fn complete(
        &self,
        fields: &HashMap<String, String>,
        request: &AuthRequest,
        now: i64,
    ) -> Result<Authentication, String> {
        let pid = fields.get("pid").map(|p| p.trim()).unwrap_or_default();
        match personid::validate(pid) {
            Ok(()) => {}
            Err(PidError::NotElevenDigits) => return Err("A fødselsnummer or d-nummer has 11 digits.".into()),
            Err(PidError::CheckDigits) => {
                return Err("That is not a valid fødselsnummer or d-nummer (the check digits are wrong).".into());
            }
        }
        let acr = fields.get("acr").and_then(|a| Acr::parse(a)).ok_or("Choose the security level Level3 or Level4.")?;
        if let Some(required) = request.acr
            && acr < required
        {
            return Err(format!("This service requires {required}; log in at that level."));
        }
        Ok(Authentication {
            pid: pid.to_owned(),
            acr,
            amr: "TestID".into(),
            auth_time: now,
            locale: request.locale.clone(),
        })
    }
}
