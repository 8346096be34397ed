//! The KRR REST API at the gateway (`kontaktinfo-oauth2-server`), answered by translating to
//! SOAP 1.2 for Oppslagstjenesten and back.

pub mod access;
pub mod client;
pub mod rest;

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use serde_json::json;

use crate::admin::metrics::Metrics;
use crate::config::KrrSettings;
use crate::gateway::respond::Answer;
use crate::token::VerifiedToken;
use access::{Access, Audience};
use client::{BackendError, SoapClient};
use rest::{Personer, PersonerRequest};

pub struct Krr {
    client: SoapClient,
}

fn media_type(headers: &HeaderMap, name: http::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
}

fn backend_answer(error: BackendError) -> Answer {
    match error {
        BackendError::Fault(reason) => {
            Answer::error(502, "bad_gateway", &format!("Oppslagstjenesten answered with a fault: {reason}"))
        }
        BackendError::BadAnswer(reason) => {
            Answer::error(502, "bad_gateway", &format!("Oppslagstjenesten's answer was refused: {reason}"))
        }
        BackendError::Unreachable(_) => {
            Answer::error(503, "temporarily_unavailable", "Oppslagstjenesten cannot be reached")
                .with_header("retry-after", "5")
        }
        BackendError::Timeout => Answer::error(504, "gateway_timeout", "Oppslagstjenesten did not answer in time"),
    }
}

impl Krr {
    pub fn new(settings: &KrrSettings, metrics: Arc<Metrics>) -> Result<Krr, String> {
        Ok(Krr { client: SoapClient::new(settings, metrics)? })
    }

    /// `POST /rest/v1/personer`: look up 1–1,000 persons for an organisation (machine token).
    pub async fn personer(&self, headers: &HeaderMap, body: &Bytes, token: &VerifiedToken) -> Answer {
        if media_type(headers, http::header::CONTENT_TYPE).as_deref() != Some("application/json") {
            return Answer::error(400, "invalid_request", "Content-Type must be application/json");
        }
        let request: PersonerRequest = match serde_json::from_slice(body) {
            Ok(request) => request,
            Err(e) => {
                return Answer::error(
                    400,
                    "invalid_request",
                    &format!("the body must be {{\"personidentifikatorer\": [...]}}: {e}"),
                );
            }
        };
        let ids = match rest::check_ids(request.personidentifikatorer) {
            Ok(ids) => ids,
            Err((message, invalid)) => {
                let mut body = json!({"error": "invalid_request", "error_description": message});
                if !invalid.is_empty() {
                    body["invalid_personidentifikatorer"] = json!(invalid);
                }
                return Answer::json(400, &body);
            }
        };
        let access = Access::from_scopes(token.scopes.iter().map(String::as_str), Audience::Global);
        match self.client.hent_personer(&ids, access.informasjonsbehov()).await {
            Ok(persons) => {
                let personer =
                    Personer { personer: persons.iter().map(|p| rest::person_resource(p, &access)).collect() };
                json_answer(&personer)
            }
            Err(e) => backend_answer(e),
        }
    }

    /// `GET /rest/v1/person`: the citizen the token belongs to (its `pid`).
    pub async fn person(&self, headers: &HeaderMap, token: &VerifiedToken) -> Answer {
        let Some(pid) = token.pid.as_deref() else {
            return Answer::insufficient_scope(
                "user/kontaktinformasjon.read",
                "this resource needs a citizen's token (with pid)",
            );
        };
        if let Some(accept) = headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok())
            && !accept_json(accept)
        {
            return Answer::error(
                406,
                "not_acceptable",
                "the answer is application/json (application/jose is not offered)",
            );
        }
        let access = Access::from_scopes(token.scopes.iter().map(String::as_str), Audience::User);
        let ids = [pid.to_owned()];
        match self.client.hent_personer(&ids, access.informasjonsbehov()).await {
            Ok(persons) => match persons.first() {
                Some(person) => json_answer(&rest::person_resource(person, &access)),
                None => Answer::error(502, "bad_gateway", "Oppslagstjenesten answered without the person"),
            },
            Err(e) => backend_answer(e),
        }
    }
}

fn accept_json(accept: &str) -> bool {
    accept
        .split(',')
        .map(|m| m.split(';').next().unwrap_or_default().trim())
        .any(|m| matches!(m, "application/json" | "application/*" | "*/*" | ""))
}

fn json_answer<T: serde::Serialize>(value: &T) -> Answer {
    match serde_json::to_vec(value) {
        Ok(body) => {
            Answer { status: 200, headers: Vec::new(), content_type: "application/json", body: Bytes::from(body) }
        }
        Err(e) => Answer::error(500, "server_error", &format!("the answer could not be written: {e}")),
    }
}
