//! The Oppslagstjenesten simulator: SOAP 1.2 at `/kontaktinfo-external/ws-v5` over a synthetic
//! register, answering as the 16-02 service does, and serving its WSDL and schemas.

pub mod generate;
pub mod register;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;

use crate::admin::metrics::Metrics;
use crate::config::OppslagSettings;
use crate::error::Context;
use crate::pki::TrustAnchors;
use crate::soap::model::{Fault, FaultCode, Request, Subcode};
use crate::soap::{self, read, write};
use crate::wssec::{Credentials, FaultKind, Mode, ServerSecurity, Window, WssError};
use register::Register;

pub const PATH: &str = "/kontaktinfo-external/ws-v5";
const XSD_WS_PATH: &str = "/kontaktinfo-external/oppslagstjeneste-ws-16-02.xsd";
const XSD_METADATA_PATH: &str = "/kontaktinfo-external/oppslagstjeneste-metadata-16-02.xsd";

pub struct Simulator {
    pub register: Register,
    /// Where clients reach the service: the WSDL's address.
    pub address: String,
    pub max_request_bytes: usize,
    metrics: Arc<Metrics>,
    /// Lookups of persons (and of the print certificate) are put on the audit trail.
    audit: Option<Arc<crate::audit::AuditLog>>,
    /// WS-Security as the real service does it (`[oppslag.ws_security]`); none without it.
    security: Option<ServerSecurity>,
}

/// The real service takes Timestamps of up to 30 minutes, with 5 minutes of clock skew (§5.5).
const REQUEST_WINDOW: Window = Window { max_ttl: Duration::from_secs(30 * 60), skew: Duration::from_secs(5 * 60) };

impl Simulator {
    pub fn build(
        settings: &OppslagSettings,
        metrics: Arc<Metrics>,
        audit: Option<Arc<crate::audit::AuditLog>>,
    ) -> crate::error::Result<Simulator> {
        let register = Register::load(&settings.register, settings.rebase_timestamps)?;
        let security = match &settings.ws_security {
            Some(ws) => Some(ServerSecurity::new(
                ws.mode,
                Credentials::load(&ws.certificate, &ws.key).context("oppslag.ws_security")?,
                TrustAnchors::load(&ws.trusted_cas).context("oppslag.ws_security.trusted_cas")?,
                REQUEST_WINDOW,
            )),
            None => None,
        };
        Ok(Simulator {
            register,
            address: format!("http://{}{PATH}", settings.listen),
            max_request_bytes: settings.max_request_bytes,
            metrics,
            audit,
            security,
        })
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(PATH, get(wsdl).post(soap_call))
            .route(XSD_WS_PATH, get(|| async { xml(soap::XSD_WS.to_owned()) }))
            .route(XSD_METADATA_PATH, get(|| async { xml(soap::XSD_METADATA.to_owned()) }))
            // The listener already bounds bodies by `oppslag.max_request_bytes`.
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(self)
    }

    /// Answer one SOAP request (the body of a POST).
    pub fn answer(&self, headers: &HeaderMap, body: &str) -> (StatusCode, String) {
        let started = std::time::Instant::now();
        match self.handle(headers, body) {
            Ok(xml) => {
                self.metrics.oppslag.answered(None, started.elapsed().as_secs_f64());
                (StatusCode::OK, xml)
            }
            Err(fault) => {
                self.metrics.oppslag.answered(Some(fault.code.name()), started.elapsed().as_secs_f64());
                tracing::info!(code = fault.code.name(), reason = %crate::personid::mask_in_text(&fault.reason), "SOAP fault");
                let xml = write::fault(&fault).unwrap_or_default();
                (StatusCode::INTERNAL_SERVER_ERROR, xml)
            }
        }
    }

    fn handle(&self, headers: &HeaderMap, body: &str) -> Result<String, Fault> {
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let media = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        match media.as_str() {
            "application/soap+xml" => {}
            "text/xml" => {
                return Err(Fault::new(
                    FaultCode::VersionMismatch,
                    "SOAP 1.1 (text/xml) is not supported: send application/soap+xml",
                ));
            }
            _ => {
                return Err(Fault::sender(format!(
                    "Content-Type must be application/soap+xml, not {:?}",
                    content_type
                )));
            }
        }
        let (header, request) = read::request(body)?;
        let mode = self.security.as_ref().map_or(Mode::Off, |s| s.mode);
        let verified = match (&self.security, header.security) {
            (Some(security), Some(_)) if mode != Mode::Off => {
                Some(security.verify(body, Utc::now()).map_err(security_fault)?)
            }
            (_, Some(true)) => {
                return Err(Fault::new(FaultCode::MustUnderstand, "this service does not process wsse:Security"));
            }
            (_, None) if mode == Mode::Required => {
                return Err(security_fault(WssError {
                    kind: FaultKind::InvalidSecurity,
                    message: "this service accepts only requests signed with WS-Security".into(),
                }));
            }
            _ => None,
        };
        // A signed request is read again from its signed parts alone.
        let (header, request) = match &verified {
            Some(verified) => read::request(&verified.envelope)?,
            None => (header, request),
        };
        if let Some(org) = &header.paa_vegne_av
            && !crate::personid::is_orgno(org)
        {
            return Err(Fault::sender(format!(
                "PaaVegneAv {:?} is not a valid organisation number",
                org.chars().take(20).collect::<String>()
            )));
        }
        let now = Utc::now().fixed_offset();
        let response = match &request {
            Request::HentPersoner { informasjonsbehov, personidentifikatorer } => soap::model::Response::HentPersoner(
                self.register.hent_personer(personidentifikatorer, informasjonsbehov, now),
            ),
            Request::HentEndringer { fra_endrings_nummer, informasjonsbehov } => {
                self.register.hent_endringer(*fra_endrings_nummer, informasjonsbehov, now)
            }
            Request::HentPrintSertifikat => self.register.hent_print_sertifikat(),
        };
        let xml = match (&self.security, &verified) {
            (Some(security), Some(verified)) => security
                .seal(&response, verified, Utc::now())
                .map_err(|e| Fault::receiver(format!("the answer could not be signed and encrypted: {e}")))?,
            _ => write::response(&response, None)
                .map_err(|e| Fault::receiver(format!("the answer could not be written: {e}")))?,
        };
        if let Some(audit) = &self.audit {
            let (route, pids): (&str, Vec<String>) = match (&request, &response) {
                (Request::HentPersoner { personidentifikatorer, .. }, _) => {
                    ("oppslag-HentPersoner", personidentifikatorer.clone())
                }
                // The change feed returns persons too: those it returned are on record.
                (_, soap::model::Response::HentEndringer { persons, .. }) => {
                    ("oppslag-HentEndringer", persons.iter().map(|p| p.personidentifikator.clone()).collect())
                }
                _ => ("oppslag-HentPrintSertifikat", Vec::new()),
            };
            let lookup = crate::audit::Lookup {
                request_id: headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-"),
                client_id: None,
                // The caller's organisation, as its signing certificate names it.
                consumer_orgno: verified.as_ref().and_then(|v| v.orgno.as_deref()),
                on_behalf_of: header.paa_vegne_av.as_deref(),
                route,
                scopes: &[],
                pids: &pids,
                outcome: "ok",
            };
            audit
                .record(&lookup)
                .map_err(|_| Fault::receiver("the lookup cannot be put on the audit trail, so it is not answered"))?;
        }
        Ok(xml)
    }
}

/// A security header that fails: a `Sender` fault with the WS-Security 1.1 code as its subcode
/// (a `Receiver` fault when the service, not the message, is the reason).
fn security_fault(error: WssError) -> Fault {
    let reason = format!("WS-Security: {}", error.message);
    match error.kind.qname() {
        Some((prefix, namespace, local)) => {
            Fault { code: FaultCode::Sender, subcode: Some(Subcode { prefix, namespace, local }), reason }
        }
        None => Fault::receiver(reason),
    }
}

fn xml(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}

/// `GET …/ws-v5?wsdl`: the published WSDL with this simulator's address.
async fn wsdl(State(simulator): State<Arc<Simulator>>, RawQuery(query): RawQuery) -> Response {
    if !query.is_some_and(|q| q.eq_ignore_ascii_case("wsdl")) {
        let mut response = (StatusCode::METHOD_NOT_ALLOWED, "POST a SOAP 1.2 request, or GET ?wsdl\n").into_response();
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
        return response;
    }
    let published = "https://kontaktinfo-ws-ver2.difi.no/kontaktinfo-external/ws-v5";
    xml(soap::WSDL.replace(published, &simulator.address))
}

async fn soap_call(State(simulator): State<Arc<Simulator>>, headers: HeaderMap, body: String) -> Response {
    // Verifying, signing and encrypting are CPU work: off the async workers.
    let answered = tokio::task::spawn_blocking(move || simulator.answer(&headers, &body)).await;
    let (status, xml) = answered.unwrap_or_else(|e| {
        let fault = Fault::receiver(format!("the request could not be answered: {e}"));
        (StatusCode::INTERNAL_SERVER_ERROR, write::fault(&fault).unwrap_or_default())
    });
    (status, [(header::CONTENT_TYPE, soap::CONTENT_TYPE)], xml).into_response()
}
