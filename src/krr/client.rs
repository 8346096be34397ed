//! The SOAP client to Oppslagstjenesten: pooled, with connect and total timeouts, bounded
//! answers, and every failure told apart (fault, unreachable, timeout, bad answer).

use std::sync::Arc;
use std::time::{Duration, Instant};

use url::Url;

use crate::admin::metrics::{Metrics, SoapOutcome};
use crate::config::KrrSettings;
use crate::error::Context;
use crate::soap::model::{Header, Informasjonsbehov, Person, Request, Response};
use crate::soap::{self, read, write};
use crate::web::client::{BodyError, error_chain, read_limited};
use crate::wssec::{Certificate, ClientSecurity, Credentials, Window};
use chrono::Utc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendError {
    /// The service answered with a SOAP fault: 502 with its reason.
    Fault(String),
    /// No connection: 503.
    Unreachable(String),
    /// No (complete) answer in time: 504.
    Timeout,
    /// An answer that is not a valid, complete Oppslagstjenesten answer: 502.
    BadAnswer(String),
    /// An answer that fails WS-Security (decryption, signature, pinned certificate, Timestamp,
    /// SignatureConfirmation): 502, and nothing of it is read.
    Insecure(String),
}

pub struct SoapClient {
    http: reqwest::Client,
    endpoint: Url,
    timeout: Duration,
    max_response_bytes: usize,
    header: Header,
    /// Sign requests, and open only signed and encrypted answers (`[gateway.krr.ws_security]`).
    security: Option<Arc<ClientSecurity>>,
    metrics: Arc<Metrics>,
}

/// An answer's Timestamp may not claim to live longer than this, and clocks may differ by the
/// skew (Difi's client: created at most 5 minutes ahead).
const ANSWER_WINDOW: Window = Window { max_ttl: Duration::from_secs(2000), skew: Duration::from_secs(5 * 60) };

impl SoapClient {
    pub fn new(settings: &KrrSettings, metrics: Arc<Metrics>) -> crate::error::Result<SoapClient> {
        let http = crate::web::client::build(settings.connect_timeout, "portvakt-krr")
            .map_err(|e| crate::error::Error::because("cannot build the SOAP client", e))?;
        let security = match &settings.ws_security {
            Some(ws) => Some(Arc::new(ClientSecurity::new(
                Credentials::load(&ws.certificate, &ws.key).context("gateway.krr.ws_security")?,
                Certificate::load(&ws.service_certificate).context("gateway.krr.ws_security.service_certificate")?,
                ANSWER_WINDOW,
            ))),
            None => None,
        };
        Ok(SoapClient {
            http,
            endpoint: settings.soap_endpoint.clone(),
            timeout: settings.timeout,
            max_response_bytes: settings.max_response_bytes,
            header: Header { paa_vegne_av: settings.paa_vegne_av.clone(), ..Header::default() },
            security,
            metrics,
        })
    }

    /// HentPersoner for `ids` (distinct, validated). The answer must hold exactly one Person per
    /// id, in order: anything else is refused rather than passed on in part.
    /// `request_id` goes along (`X-Request-Id`), so the service's audit record of the lookup
    /// can be matched with the facade's.
    pub async fn hent_personer(
        &self,
        ids: &[String],
        informasjonsbehov: Vec<Informasjonsbehov>,
        request_id: &str,
    ) -> Result<Vec<Person>, BackendError> {
        let request = Request::HentPersoner { informasjonsbehov, personidentifikatorer: ids.to_vec() };
        let started = Instant::now();
        let result = match self.call(&request, request_id).await {
            Ok(Response::HentPersoner(persons)) => check_complete(ids, persons),
            Ok(_) => Err(BackendError::BadAnswer("the service answered another operation".into())),
            Err(e) => Err(e),
        };
        let outcome = match &result {
            Ok(_) => SoapOutcome::Ok,
            Err(BackendError::Fault(_)) => SoapOutcome::Fault,
            Err(BackendError::Unreachable(_)) => SoapOutcome::Unreachable,
            Err(BackendError::Timeout) => SoapOutcome::Timeout,
            Err(BackendError::BadAnswer(_)) => SoapOutcome::BadAnswer,
            Err(BackendError::Insecure(_)) => SoapOutcome::Insecure,
        };
        self.metrics.krr.soap_call(outcome, started.elapsed().as_secs_f64());
        result
    }

    async fn call(&self, request: &Request, request_id: &str) -> Result<Response, BackendError> {
        let signed = match &self.security {
            Some(security) => Some(
                security
                    .sign(&self.header, request, Utc::now())
                    .map_err(|e| BackendError::Insecure(format!("the request cannot be signed: {e}")))?,
            ),
            None => None,
        };
        let body = bytes::Bytes::from(match &signed {
            Some(signed) => signed.xml.clone(),
            None => write::request(&self.header, request, None).map_err(|e| BackendError::BadAnswer(e.to_string()))?,
        });
        let exchange = async {
            let send = || {
                self.http
                    .post(self.endpoint.clone())
                    .header(http::header::CONTENT_TYPE, soap::CONTENT_TYPE)
                    .header("SOAPAction", "\"\"")
                    .header("x-request-id", request_id)
                    .body(body.clone())
                    .send()
            };
            // A pooled connection the service closed or reset before answering fails the send;
            // a lookup is safe to send once more, on a new connection.
            let sent = match send().await {
                Err(e) if e.is_request() && !e.is_timeout() && !e.is_connect() => send().await,
                sent => sent,
            };
            let response = sent.map_err(|e| {
                if e.is_timeout() {
                    BackendError::Timeout
                } else if e.is_connect() {
                    BackendError::Unreachable(error_chain(&e))
                } else {
                    BackendError::BadAnswer(error_chain(&e))
                }
            })?;
            let status = response.status();
            let bytes = read_limited(response, self.max_response_bytes).await.map_err(|e| match e {
                BodyError::TooLarge(max) => BackendError::BadAnswer(format!("the answer is larger than {max} bytes")),
                BodyError::Read(e) => BackendError::BadAnswer(error_chain(&e)),
            })?;
            if !(status.is_success() || status.as_u16() == 500) {
                return Err(BackendError::BadAnswer(format!("the service answered HTTP {status}")));
            }
            let text =
                std::str::from_utf8(&bytes).map_err(|_| BackendError::BadAnswer("the answer is not UTF-8".into()))?;
            // Faults come neither signed nor encrypted (§5.4); any other answer to a signed
            // request is read only from what decrypts and verifies.
            let opened;
            let text = match (&self.security, &signed) {
                (Some(security), Some(signed)) if status.is_success() => {
                    // Decrypting and verifying a large answer is CPU work: off the async workers.
                    let (security, signed, answer) = (Arc::clone(security), signed.clone(), text.to_owned());
                    opened = tokio::task::spawn_blocking(move || security.open(&answer, &signed, Utc::now()))
                        .await
                        .map_err(|e| BackendError::Insecure(format!("the answer could not be checked: {e}")))?
                        .map_err(|e| BackendError::Insecure(e.message))?;
                    opened.as_str()
                }
                _ => text,
            };
            match read::response(text) {
                Ok(Ok(answer)) if status.is_success() => Ok(answer),
                Ok(Ok(_)) => {
                    Err(BackendError::BadAnswer(format!("the service answered HTTP {status} without a fault")))
                }
                Ok(Err(fault)) => Err(BackendError::Fault(format!("{}: {}", fault.code.name(), fault.reason))),
                Err(e) => Err(BackendError::BadAnswer(format!("the answer is not valid: {e}"))),
            }
        };
        tokio::time::timeout(self.timeout, exchange).await.map_err(|_| BackendError::Timeout)?
    }
}

fn check_complete(ids: &[String], persons: Vec<Person>) -> Result<Vec<Person>, BackendError> {
    if persons.len() != ids.len() {
        return Err(BackendError::BadAnswer(format!(
            "asked for {} persons, the answer holds {}",
            ids.len(),
            persons.len()
        )));
    }
    if let Some((asked, got)) = ids.iter().zip(&persons).find(|(id, p)| **id != p.personidentifikator) {
        return Err(BackendError::BadAnswer(format!(
            "the answer names {} where {} was asked for",
            crate::personid::mask(&got.personidentifikator),
            crate::personid::mask(asked)
        )));
    }
    Ok(persons)
}
