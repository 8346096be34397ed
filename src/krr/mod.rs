//! The KRR REST API at the gateway (`kontaktinfo-oauth2-server`), answered by translating to
//! SOAP 1.2 for Oppslagstjenesten and back.

pub mod access;
pub mod client;
pub mod rest;

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;

use crate::admin::metrics::Metrics;
use crate::audit::{AuditLog, Lookup};
use crate::config::KrrSettings;
use crate::token::VerifiedToken;
use access::{Access, Audience};
use client::{BackendError, SoapClient};
use rest::{Personer, PersonerRequest};

pub struct Krr {
    client: SoapClient,
    /// Every lookup is recorded before its answer goes out.
    audit: Option<Arc<AuditLog>>,
    paa_vegne_av: Option<String>,
}

fn media_type(headers: &HeaderMap, name: http::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
}

/// Why a KRR lookup was not answered; the gateway puts each on the wire.
#[derive(Debug)]
pub enum KrrError {
    NotJson,
    BadBody(String),
    InvalidIds {
        description: String,
        invalid: Vec<rest::InvalidId>,
    },
    /// `GET /rest/v1/person` with a token that has no `pid`.
    NotACitizen,
    /// Only `application/json` is offered.
    NotAcceptable,
    Backend(BackendError),
    /// Oppslagstjenesten's answer left out the person asked for.
    PersonMissing,
    Encode(String),
    /// The lookup could not be put on the audit trail, so it is not answered.
    Audit,
}

impl Krr {
    pub fn new(
        settings: &KrrSettings,
        metrics: Arc<Metrics>,
        audit: Option<Arc<AuditLog>>,
    ) -> crate::error::Result<Krr> {
        Ok(Krr { client: SoapClient::new(settings, metrics)?, audit, paa_vegne_av: settings.paa_vegne_av.clone() })
    }

    /// Put a lookup on the audit trail: its outcome, whatever it was. A lookup that found
    /// data and cannot be recorded is refused.
    fn record<T>(
        &self,
        request_id: &str,
        route: &str,
        token: &VerifiedToken,
        ids: &[String],
        result: Result<T, KrrError>,
    ) -> Result<T, KrrError> {
        let Some(audit) = &self.audit else { return result };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(KrrError::Backend(BackendError::Fault(_))) => "fault",
            Err(KrrError::Backend(BackendError::Timeout)) => "timeout",
            Err(KrrError::Backend(_)) => "backend_error",
            Err(KrrError::PersonMissing) => "person_missing",
            Err(_) => "error",
        };
        let lookup = Lookup {
            request_id,
            client_id: token.client_id.as_deref(),
            consumer_orgno: token.consumer_orgno.as_deref(),
            on_behalf_of: self.paa_vegne_av.as_deref(),
            route,
            scopes: &token.scopes,
            pids: ids,
            outcome,
        };
        match audit.record(&lookup) {
            Ok(()) => result,
            Err(_) => Err(KrrError::Audit),
        }
    }

    /// `POST /rest/v1/personer`: look up 1–1,000 persons for an organisation (machine token).
    /// The answer is the JSON body.
    pub async fn personer(
        &self,
        headers: &HeaderMap,
        body: &Bytes,
        token: &VerifiedToken,
        request_id: &str,
    ) -> Result<Bytes, KrrError> {
        if media_type(headers, http::header::CONTENT_TYPE).as_deref() != Some("application/json") {
            return Err(KrrError::NotJson);
        }
        let request: PersonerRequest = serde_json::from_slice(body).map_err(|e| KrrError::BadBody(e.to_string()))?;
        let ids = rest::check_ids(request.personidentifikatorer)
            .map_err(|(description, invalid)| KrrError::InvalidIds { description, invalid })?;
        let access = Access::from_scopes(token.scopes.iter().map(String::as_str), Audience::Global);
        let persons =
            self.client.hent_personer(&ids, access.informasjonsbehov(), request_id).await.map_err(KrrError::Backend);
        let persons = self.record(request_id, "krr-personer", token, &ids, persons)?;
        json(&Personer { personer: persons.iter().map(|p| rest::person_resource(p, &access)).collect() })
    }

    /// `GET /rest/v1/person`: the citizen the token belongs to (its `pid`).
    pub async fn person(
        &self,
        headers: &HeaderMap,
        token: &VerifiedToken,
        request_id: &str,
    ) -> Result<Bytes, KrrError> {
        let pid = token.pid.as_deref().ok_or(KrrError::NotACitizen)?;
        if let Some(accept) = headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok())
            && !accept_json(accept)
        {
            return Err(KrrError::NotAcceptable);
        }
        let access = Access::from_scopes(token.scopes.iter().map(String::as_str), Audience::User);
        let ids = [pid.to_owned()];
        let persons = self
            .client
            .hent_personer(&ids, access.informasjonsbehov(), request_id)
            .await
            .map_err(KrrError::Backend)
            .and_then(|persons| persons.into_iter().next().ok_or(KrrError::PersonMissing));
        let person = &self.record(request_id, "krr-person", token, &ids, persons)?;
        json(&rest::person_resource(person, &access))
    }
}

fn accept_json(accept: &str) -> bool {
    accept
        .split(',')
        .map(|m| m.split(';').next().unwrap_or_default().trim())
        .any(|m| matches!(m, "application/json" | "application/*" | "*/*" | ""))
}

fn json<T: serde::Serialize>(value: &T) -> Result<Bytes, KrrError> {
    serde_json::to_vec(value).map(Bytes::from).map_err(|e| KrrError::Encode(e.to_string()))
}
