//! The KRR REST API end to end: the gateway translates to SOAP for the simulator; every SOAP
//! message is captured and validated against the published XSD, and the JSON is compared with
//! the SOAP answer for every person of the register under several scope sets.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic where a request path may not

mod common;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Offset};
use chrono_tz::Europe::Oslo;
use common::*;
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Forward,
    Hang,
    Fault,
    Garbage,
    Bomb,
    Partial,
}

/// Stands between the gateway and the simulator: records every exchange, or misbehaves.
#[derive(Clone)]
struct Backend {
    simulator: String,
    mode: Arc<Mutex<Mode>>,
    exchanges: Arc<Mutex<Vec<(String, String)>>>,
    http: reqwest::Client,
}

async fn backend(State(backend): State<Backend>, headers: HeaderMap, body: String) -> Response {
    let mode = *backend.mode.lock().unwrap();
    let soap = [("content-type", "application/soap+xml; charset=utf-8")];
    match mode {
        Mode::Hang => std::future::pending::<Response>().await,
        Mode::Fault => (
            StatusCode::INTERNAL_SERVER_ERROR,
            soap,
            r#"<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Header/><env:Body><env:Fault><env:Code><env:Value>env:Sender</env:Value></env:Code><env:Reason><env:Text xml:lang="en">Invalid service usage: Service owner 988015814 does not have access to OPPSLAGSTJENESTEN</env:Text></env:Reason></env:Fault></env:Body></env:Envelope>"#,
        )
            .into_response(),
        Mode::Garbage => (StatusCode::OK, soap, "<env:Envelope xmlns:env=\"http://www.w3.org/2003/05/soap-envelope\"><env:Body>").into_response(),
        Mode::Bomb => (
            StatusCode::OK,
            soap,
            r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">]><env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body>&lol2;</env:Body></env:Envelope>"#,
        )
            .into_response(),
        Mode::Forward | Mode::Partial => {
            let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            let answer = backend.http.post(&backend.simulator).header("content-type", content_type).body(body.clone()).send().await.unwrap();
            let status = answer.status().as_u16();
            let mut text = answer.text().await.unwrap();
            backend.exchanges.lock().unwrap().push((body, text.clone()));
            if mode == Mode::Partial
                && let Some(last) = text.rfind("<ns2:Person>")
            {
                let end = text[last..].find("</ns2:Person>").unwrap() + last + "</ns2:Person>".len();
                text.replace_range(last..end, "");
            }
            (StatusCode::from_u16(status).unwrap(), soap, text).into_response()
        }
    }
}

struct Krr {
    portvakt: Portvakt,
    ports: Ports,
    backend: Backend,
    stop_backend: tokio::task::JoinHandle<()>,
    http: reqwest::Client,
}

impl Krr {
    async fn start() -> Krr {
        let ports = Ports::new();
        let backend = Backend {
            simulator: format!("http://127.0.0.1:{}/kontaktinfo-external/ws-v5", ports.oppslag),
            mode: Arc::new(Mutex::new(Mode::Forward)),
            exchanges: Arc::new(Mutex::new(Vec::new())),
            http: reqwest::Client::new(),
        };
        let (addr, stop_backend) = serve(Router::new().fallback(backend_route).with_state(backend.clone())).await;
        // The mapping is checked on plain SOAP, which the recorder can read; WS-Security on
        // the same link is tests/wssec.rs's.
        let config = without_table(&default_config(&ports, ""), "[gateway.krr.ws_security]")
            .replace(
                &format!("http://127.0.0.1:{}/kontaktinfo-external/ws-v5", ports.oppslag),
                &format!("http://{addr}/kontaktinfo-external/ws-v5"),
            )
            .replace("timeout_ms = 10000", "timeout_ms = 1500");
        let portvakt = Portvakt::start(&config, &ports).await;
        Krr { portvakt, ports, backend, stop_backend, http: reqwest::Client::new() }
    }

    fn set_mode(&self, mode: Mode) {
        *self.backend.mode.lock().unwrap() = mode;
    }

    fn exchanges(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.backend.exchanges.lock().unwrap())
    }

    async fn personer(&self, token: &str, ids: &[String]) -> (u16, Value) {
        krr_personer(&self.portvakt.gateway, token, ids, None).await
    }

    fn register(&self) -> portvakt::oppslag::register::Register {
        portvakt::oppslag::register::Register::load(&project_path("config/register.json"), true).unwrap()
    }
}

async fn backend_route(state: State<Backend>, headers: HeaderMap, body: String) -> Response {
    backend(state, headers, body).await
}

const ALL_GLOBAL: [&str; 6] = [
    "global/kontaktinformasjon.read",
    "global/varslingsstatus.read",
    "global/sikkerdigitalpost.read",
    "global/sertifikat.read",
    "krr:global/kontaktinformasjon.read",
    "krr:global/digitalpost.read",
];

/// What a scope set allows: (contact, varslingsstatus, mailbox, certificate).
fn allowed(scopes: &[&str]) -> (bool, bool, bool, bool) {
    let has = |s: &str| scopes.contains(&s);
    (
        has("global/kontaktinformasjon.read") || has("krr:global/kontaktinformasjon.read"),
        has("global/varslingsstatus.read") || has("krr:global/kontaktinformasjon.read"),
        has("global/sikkerdigitalpost.read") || has("krr:global/digitalpost.read"),
        has("global/sertifikat.read") || has("krr:global/digitalpost.read"),
    )
}

/// The REST timestamp form, computed here independently: Oslo time, hour-only offset.
fn rest_time(xs_date_time: &str) -> String {
    let local = DateTime::parse_from_rfc3339(xs_date_time).unwrap().with_timezone(&Oslo);
    let offset = local.offset().fix().local_minus_utc() / 3600;
    format!("{}{}{:02}", local.format("%Y-%m-%dT%H:%M:%S"), if offset < 0 { '-' } else { '+' }, offset.abs())
}

/// Check one REST person against the SOAP Person the simulator sent for it.
fn compare(json: &Value, soap: roxmltree::Node<'_, '_>, scopes: &[&str]) {
    let (contact, varsling, mailbox, certificate) = allowed(scopes);
    let child = |name: &str| soap.children().find(|c| c.tag_name().name() == name);
    let text = |name: &str| child(name).and_then(|c| c.text()).map(str::to_owned);
    let id = text("personidentifikator").unwrap();
    let context = format!("{id} with {scopes:?}: {json}");
    assert_eq!(json["personidentifikator"], id, "{context}");
    let status = text("status").unwrap();
    assert_eq!(json["status"], status, "{context}");
    if status == "AKTIV" {
        assert_eq!(json["reservasjon"].as_str(), text("reservasjon").as_deref(), "{context}");
    } else {
        assert!(json.get("reservasjon").is_none(), "{context}");
        assert!(json.get("kontaktinformasjon").is_none() && json.get("digital_post").is_none(), "{context}");
    }
    assert_eq!(
        json.get("varslingsstatus").and_then(Value::as_str),
        if varsling { text("varslingsstatus") } else { None }.as_deref(),
        "{context}"
    );
    match child("Kontaktinformasjon").filter(|_| contact) {
        None => assert!(json.get("kontaktinformasjon").is_none(), "{context}"),
        Some(k) => {
            let rest = &json["kontaktinformasjon"];
            for (element, key) in [("Epostadresse", "epostadresse"), ("Mobiltelefonnummer", "mobiltelefonnummer")] {
                match k.children().find(|c| c.tag_name().name() == element) {
                    None => assert!(rest.get(key).is_none(), "{context}"),
                    Some(c) => {
                        assert_eq!(rest[key], c.text().unwrap(), "{context}");
                        let time = |attr: &str| c.attribute(attr).map(rest_time);
                        assert_eq!(
                            rest.get(format!("{key}_oppdatert")).and_then(Value::as_str),
                            time("sistOppdatert").as_deref(),
                            "{context}"
                        );
                        assert_eq!(
                            rest.get(format!("{key}_sist_verifisert")).and_then(Value::as_str),
                            time("sistVerifisert").as_deref(),
                            "{context}"
                        );
                    }
                }
            }
        }
    }
    match child("SikkerDigitalPostAdresse").filter(|_| mailbox) {
        None => assert!(json.get("digital_post").is_none(), "{context}"),
        Some(d) => {
            let field = |name: &str| d.children().find(|c| c.tag_name().name() == name).and_then(|c| c.text()).unwrap();
            assert_eq!(json["digital_post"]["postkasseadresse"], field("postkasseadresse"), "{context}");
            assert_eq!(
                json["digital_post"]["postkasseleverandoeradresse"],
                field("postkasseleverandoerAdresse"),
                "{context}"
            );
        }
    }
    assert_eq!(
        json.get("sertifikat").and_then(Value::as_str),
        if certificate { text("X509Sertifikat") } else { None }.as_deref(),
        "{context}"
    );
    assert!(json.get("spraak").is_none(), "spraak has no SOAP source: {context}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_person_and_scope_set_matches_the_soap_answer_and_every_message_validates() {
    let krr = Krr::start().await;
    let issuer = issuer_url(&krr.ports);
    let register = krr.register();
    let mut ids: Vec<String> = register.entries().iter().map(|e| e.personidentifikator.clone()).collect();
    ids.extend(["23079421936".to_owned(), "08077000292".to_owned()]); // not in the register
    let scope_sets: Vec<Vec<&str>> = vec![
        vec!["global/kontaktinformasjon.read"],
        vec!["global/varslingsstatus.read"],
        vec!["global/sikkerdigitalpost.read"],
        vec!["global/sertifikat.read"],
        vec!["krr:global/kontaktinformasjon.read"],
        vec!["krr:global/digitalpost.read"],
        vec!["global/kontaktinformasjon.read", "global/sikkerdigitalpost.read"],
        ALL_GLOBAL.to_vec(),
    ];
    let mut messages = Vec::new();
    for scopes in &scope_sets {
        let token = machine_token(&issuer, scopes).await;
        for chunk in ids.chunks(1000) {
            let (status, body) = krr.personer(&token, chunk).await;
            assert_eq!(status, 200, "{scopes:?}: {body}");
            let exchanges = krr.exchanges();
            assert_eq!(exchanges.len(), 1, "one SOAP call per REST call");
            let (request, response) = &exchanges[0];
            // The informasjonsbehov follow the scopes.
            let (contact, varsling, mailbox, certificate) = allowed(scopes);
            let sent = roxmltree::Document::parse(request).unwrap();
            let behov: Vec<&str> = sent
                .descendants()
                .filter(|n| n.tag_name().name() == "informasjonsbehov")
                .filter_map(|n| n.text())
                .collect();
            let mut expected = vec!["Person"];
            expected.extend(
                [
                    ("Kontaktinfo", contact),
                    ("Sertifikat", certificate),
                    ("SikkerDigitalPost", mailbox),
                    ("VarslingsStatus", varsling),
                ]
                .iter()
                .filter(|(_, on)| *on)
                .map(|(n, _)| *n),
            );
            assert_eq!(behov, expected, "{scopes:?}");
            let answer = roxmltree::Document::parse(response).unwrap();
            let persons: Vec<_> = answer.descendants().filter(|n| n.tag_name().name() == "Person").collect();
            let rest = body["personer"].as_array().unwrap();
            assert_eq!(rest.len(), chunk.len());
            assert_eq!(persons.len(), chunk.len());
            for (json, soap) in rest.iter().zip(persons) {
                compare(json, soap, scopes);
            }
            messages.push(request.clone());
            messages.push(response.clone());
        }
    }
    validate_soap(&messages);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_kind_of_register_entry_follows_the_rules() {
    let krr = Krr::start().await;
    let issuer = issuer_url(&krr.ports);
    let register = krr.register();
    let cases = portvakt::oppslag::register::cases(&register);
    let id = |what: &str| {
        cases
            .iter()
            .find(|(c, _)| c.starts_with(what))
            .map(|(_, id)| id.clone())
            .unwrap_or_else(|| panic!("no {what} case"))
    };
    let all = machine_token(&issuer, &ALL_GLOBAL).await;
    let ids = vec![
        id("active, e-mail and mobile"),
        id("active, e-mail only"),
        id("active, mobile only"),
        id("active, mailbox without certificate"),
        id("active, contact information older"),
        id("active, no contact"),
        id("reserved"),
        id("deleted"),
        id("d-nummer"),
        "23079421936".to_owned(),
    ];
    let (status, body) = krr.personer(&all, &ids).await;
    assert_eq!(status, 200, "{body}");
    let p = |i: usize| &body["personer"][i];
    assert_eq!(p(0)["varslingsstatus"], "KAN_VARSLES");
    assert!(
        p(0)["kontaktinformasjon"]["epostadresse"].is_string()
            && p(0)["kontaktinformasjon"]["mobiltelefonnummer"].is_string()
    );
    assert!(p(0)["digital_post"].is_object() && p(0)["sertifikat"].is_string());
    assert!(p(1)["kontaktinformasjon"].get("mobiltelefonnummer").is_none());
    assert!(p(2)["kontaktinformasjon"].get("epostadresse").is_none());
    assert!(p(3)["digital_post"].is_object() && p(3).get("sertifikat").is_none());
    // Older than 18 months, no contact data at all, reserved: cannot be notified, nothing delivered.
    for i in [4, 5, 6] {
        assert_eq!(p(i)["varslingsstatus"], "KAN_IKKE_VARSLES", "{}", p(i));
        assert!(
            p(i).get("kontaktinformasjon").is_none()
                && p(i).get("digital_post").is_none()
                && p(i).get("sertifikat").is_none(),
            "{}",
            p(i)
        );
    }
    assert_eq!(p(6)["reservasjon"], "JA");
    assert_eq!(
        p(7),
        &json!({"personidentifikator": ids[7], "status": "SLETTET", "varslingsstatus": "KAN_IKKE_VARSLES"})
    );
    assert_eq!(p(8)["status"], "AKTIV", "a d-nummer is looked up like any number");
    assert_eq!(
        p(9),
        &json!({"personidentifikator": "23079421936", "status": "IKKE_REGISTRERT", "varslingsstatus": "KAN_IKKE_VARSLES"})
    );
    // Without VarslingsStatus the 18-month rule does not strip anything.
    let contact_only = machine_token(&issuer, &["global/kontaktinformasjon.read"]).await;
    let (_, body) = krr.personer(&contact_only, &[id("active, contact information older")]).await;
    assert!(body["personer"][0]["kontaktinformasjon"].is_object(), "{body}");
    assert!(body["personer"][0].get("varslingsstatus").is_none());
    // Duplicates collapse, in request order.
    let (_, body) = krr.personer(&all, &[ids[1].clone(), ids[0].clone(), ids[1].clone()]).await;
    let order: Vec<&str> =
        body["personer"].as_array().unwrap().iter().map(|p| p["personidentifikator"].as_str().unwrap()).collect();
    assert_eq!(order, vec![ids[1].as_str(), ids[0].as_str()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn sizes_identifiers_bodies_tokens_and_scopes_are_checked() {
    let krr = Krr::start().await;
    let issuer = issuer_url(&krr.ports);
    let token = machine_token(&issuer, &["global/kontaktinformasjon.read"]).await;
    let register = krr.register();
    let thousand: Vec<String> = register.entries().iter().take(1000).map(|e| e.personidentifikator.clone()).collect();
    let (status, body) = krr.personer(&token, &thousand).await;
    assert_eq!(status, 200);
    assert_eq!(body["personer"].as_array().unwrap().len(), 1000);
    let mut too_many = thousand.clone();
    too_many.push(register.entries()[1000].personidentifikator.clone());
    let (status, body) = krr.personer(&token, &too_many).await;
    assert_eq!(status, 400);
    assert!(body["error_description"].as_str().unwrap().contains("at most 1000"), "{body}");
    let (status, body) = krr.personer(&token, &[]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")));
    let bad =
        vec!["23079421936".to_owned(), "2307942193".to_owned(), "23079421937".to_owned(), "abcdefghijk".to_owned()];
    let (status, body) = krr.personer(&token, &bad).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["invalid_personidentifikatorer"],
        json!([
            {"personidentifikator": "2307942193", "reason": "not 11 digits"},
            {"personidentifikator": "23079421937", "reason": "the check digits are wrong"},
            {"personidentifikator": "abcdefghijk", "reason": "not 11 digits"},
        ])
    );
    let post = |body: &'static str, content_type: &'static str| {
        krr.http
            .post(format!("{}/rest/v1/personer", krr.portvakt.gateway))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    for (body, content_type, words) in [
        ("{\"personidentifikatorer\": [", "application/json", "must be"),
        ("{\"ids\": []}", "application/json", "unknown field"),
        ("{\"personidentifikatorer\": \"23079421936\"}", "application/json", "must be"),
        ("{\"personidentifikatorer\": [\"23079421936\"]}", "text/plain", "Content-Type"),
    ] {
        let response = post(body, content_type).await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert!(answer["error_description"].as_str().unwrap().contains(words), "{body}: {answer}");
    }
    let huge = format!("{{\"personidentifikatorer\": [\"{}\"]}}", "1".repeat(300_000));
    let response = krr
        .http
        .post(format!("{}/rest/v1/personer", krr.portvakt.gateway))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    // Tokens: none, the wrong scope, a citizen's.
    let response = krr
        .http
        .post(format!("{}/rest/v1/personer", krr.portvakt.gateway))
        .json(&json!({"personidentifikatorer": ["23079421936"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let authlevel_only = machine_token(&issuer, &["global/idporten.authlevel.read"]).await;
    let (status, body) = krr.personer(&authlevel_only, &thousand[..1]).await;
    assert_eq!(status, 403);
    assert!(body["scope"].as_str().unwrap().contains("global/kontaktinformasjon.read"));
    // A machine token on the citizen's own lookup.
    let response =
        krr.http.get(format!("{}/rest/v1/person", krr.portvakt.gateway)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(krr.exchanges().len(), 1, "only the 1,000-person call reached the SOAP backend");
}

async fn citizen_token(krr: &Krr, client: &str, redirect: &str, scope: &str, pid: &str) -> String {
    let issuer = issuer_url(&krr.ports);
    let code = citizen_code(&issuer, client, redirect, scope, pid).await;
    let mut form = vec![
        ("grant_type", "authorization_code".to_owned()),
        ("code", code),
        ("redirect_uri", redirect.to_owned()),
        ("code_verifier", VERIFIER.to_owned()),
        ("client_id", client.to_owned()),
    ];
    if client == "demo-rp" {
        form.push(("client_secret", "demo-rp-secret".to_owned()));
    }
    let tokens: Value =
        reqwest::Client::new().post(format!("{issuer}/token")).form(&form).send().await.unwrap().json().await.unwrap();
    tokens["access_token"].as_str().expect("an access token").to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_citizen_gets_their_own_entry_with_a_jwt_or_an_opaque_token() {
    let krr = Krr::start().await;
    let register = krr.register();
    let cases = portvakt::oppslag::register::cases(&register);
    let pid = cases.iter().find(|(c, _)| c.starts_with("active, e-mail and mobile")).unwrap().1.clone();
    let jwt = citizen_token(
        &krr,
        "demo-rp",
        "http://127.0.0.1:8765/callback",
        "openid user/kontaktinformasjon.read user/sertifikat.read",
        &pid,
    )
    .await;
    let response =
        krr.http.get(format!("{}/rest/v1/person", krr.portvakt.gateway)).bearer_auth(&jwt).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["personidentifikator"], pid);
    assert!(body["kontaktinformasjon"].is_object() && body["sertifikat"].is_string(), "{body}");
    assert!(
        body.get("digital_post").is_none() && body.get("varslingsstatus").is_none(),
        "only what the scopes allow: {body}"
    );
    let jose = krr
        .http
        .get(format!("{}/rest/v1/person", krr.portvakt.gateway))
        .bearer_auth(&jwt)
        .header("accept", "application/jose")
        .send()
        .await
        .unwrap();
    assert_eq!(jose.status(), 406);
    let opaque = citizen_token(
        &krr,
        "demo-spa",
        "http://127.0.0.1:8765/spa-callback",
        "openid krr:user/kontaktinformasjon.read",
        &pid,
    )
    .await;
    assert!(!opaque.contains('.'));
    let response =
        krr.http.get(format!("{}/rest/v1/person", krr.portvakt.gateway)).bearer_auth(&opaque).send().await.unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["personidentifikator"], pid);
    assert_eq!(
        body["varslingsstatus"], "KAN_VARSLES",
        "krr:user/kontaktinformasjon.read includes varslingsstatus: {body}"
    );
    // A citizen's token is refused on the organisation lookup.
    let (status, _) = krr.personer(&jwt, &[pid]).await;
    assert_eq!(status, 403);
    validate_soap(&krr.exchanges().into_iter().flat_map(|(a, b)| [a, b]).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_meant_for_another_resource_is_refused() {
    let krr = Krr::start().await;
    let issuer = issuer_url(&krr.ports);
    let scopes = ["global/kontaktinformasjon.read"];
    let other = machine_token_with(&issuer, &scopes, &json!({"resource": "https://other.example/"})).await;
    let ids = vec!["26074502015".to_owned()];
    let (status, body) = krr.personer(&other, &ids).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_token");
    assert!(body["error_description"].as_str().unwrap().contains("https://other.example/"), "{body}");
    let (status, body) = krr.personer(&machine_token(&issuer, &scopes).await, &ids).await;
    assert_eq!(status, 200, "a token for no particular resource still does: {body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_faults_bad_answers_hangs_and_outages_are_502_504_and_503() {
    let krr = Krr::start().await;
    let token = machine_token(&issuer_url(&krr.ports), &["global/kontaktinformasjon.read"]).await;
    let ids: Vec<String> = krr.register().entries().iter().take(3).map(|e| e.personidentifikator.clone()).collect();
    for (mode, status, words) in [
        (Mode::Fault, 502, "does not have access to OPPSLAGSTJENESTEN"),
        (Mode::Garbage, 502, "not valid"),
        (Mode::Bomb, 502, "DOCTYPE"),
        (Mode::Partial, 502, "asked for 3 persons, the answer holds 2"),
        (Mode::Hang, 504, "did not answer in time"),
    ] {
        krr.set_mode(mode);
        let (got, body) = krr.personer(&token, &ids).await;
        assert_eq!(got, status, "{mode:?}: {body}");
        assert!(body["error_description"].as_str().unwrap().contains(words), "{mode:?}: {body}");
        assert!(body.get("personer").is_none(), "never a partial answer");
    }
    krr.stop_backend.abort();
    let (status, body) = krr.personer(&token, &ids).await;
    assert_eq!(status, 503, "{body}");
    let metrics = krr.portvakt.metrics().await;
    for result in ["fault", "bad_answer", "timeout", "unreachable"] {
        assert!(
            metric(&metrics, &format!("portvakt_krr_soap_calls_total{{result=\"{result}\"}}")) >= 1.0,
            "{result}: {metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_combination_of_scopes_gets_exactly_its_fields() {
    let krr = Krr::start().await;
    let issuer = issuer_url(&krr.ports);
    let register = krr.register();
    let mut ids: Vec<String> = portvakt::oppslag::register::cases(&register).into_iter().map(|(_, id)| id).collect();
    ids.dedup();
    ids.push("23079421936".to_owned());
    let mut messages = Vec::new();
    for mask in 1u32..(1 << ALL_GLOBAL.len()) {
        let scopes: Vec<&str> =
            ALL_GLOBAL.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, s)| *s).collect();
        let token = machine_token(&issuer, &scopes).await;
        let (status, body) = krr.personer(&token, &ids).await;
        assert_eq!(status, 200, "{scopes:?}: {body}");
        let exchanges = krr.exchanges();
        let (request, response) = exchanges.last().unwrap();
        let answer = roxmltree::Document::parse(response).unwrap();
        let persons = answer.descendants().filter(|n| n.tag_name().name() == "Person");
        for (json, soap) in body["personer"].as_array().unwrap().iter().zip(persons) {
            compare(json, soap, &scopes);
        }
        messages.push(request.clone());
        messages.push(response.clone());
    }
    validate_soap(&messages);
}
