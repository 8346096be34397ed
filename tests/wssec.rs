//! WS-Security on the KRR link, end to end through the real binary: the facade signs, the
//! simulator verifies and answers signed and encrypted, the facade decrypts and verifies before
//! it reads; the simulator's modes; and a facade and simulator that disagree fail closed.
//! (The refusals of each end are `src/wssec/tests.rs`; the interop with independent tools is
//! `tests/e2e/test_wssec*.py`.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic where a request path may not

mod common;

use common::*;
use serde_json::Value;

const KONTAKT: &str = "krr:global/kontaktinformasjon.read";

fn simulator_url(ports: &Ports) -> String {
    format!("http://127.0.0.1:{}/kontaktinfo-external/ws-v5", ports.oppslag)
}

/// The simulator's audit records, as the trail holds them.
fn simulator_records(portvakt: &Portvakt) -> Vec<Value> {
    let files = portvakt::audit::chain_files(&portvakt.dir.path().join("audit")).unwrap();
    let text: String = files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["route"].as_str().unwrap().starts_with("oppslag-"))
        .collect()
}

async fn soap(url: &str, body: &str) -> (u16, String) {
    let answer = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/soap+xml; charset=utf-8")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

const UNSIGNED: &str = r#"<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:ns="http://kontaktinfo.difi.no/xsd/oppslagstjeneste/16-02"><env:Body><ns:HentPersonerForespoersel><ns:informasjonsbehov>Person</ns:informasjonsbehov><ns:personidentifikator>23079421936</ns:personidentifikator></ns:HentPersonerForespoersel></env:Body></env:Envelope>"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_default_stack_looks_up_a_thousand_persons_over_signed_and_encrypted_soap() {
    let ports = Ports::new();
    let portvakt = Portvakt::start(&default_config(&ports, ""), &ports).await;
    let token = machine_token(&issuer_url(&ports), &[KONTAKT]).await;
    let register = portvakt::oppslag::register::Register::load(&project_path("config/register.json"), true).unwrap();
    let ids: Vec<String> = register.entries().iter().take(1000).map(|p| p.personidentifikator.clone()).collect();
    let (status, body) = krr_personer(&portvakt.gateway, &token, &ids, Some("wssec-1")).await;
    assert_eq!(status, 200, "{body}");
    let persons = body["personer"].as_array().unwrap();
    assert_eq!(persons.len(), 1000);
    assert!(persons.iter().zip(&ids).all(|(p, id)| p["personidentifikator"] == id.as_str()));
    // The simulator verified a signed request: its record names the facade's organisation, read
    // from the certificate the request was signed with.
    let records = simulator_records(&portvakt);
    let record = records.iter().find(|r| r["request_id"] == "wssec-1").unwrap();
    assert_eq!(record["consumer_orgno"], "910076787");
    assert_eq!(record["persons"], 1000);
    let metrics = portvakt.metrics().await;
    assert_eq!(metric(&metrics, "portvakt_krr_soap_calls_total{result=\"ok\"}"), 1.0, "{metrics}");
    // In the default `optional` mode, a plain client still gets a plain answer.
    let (status, answer) = soap(&simulator_url(&ports), UNSIGNED).await;
    assert_eq!(status, 200);
    assert!(answer.contains("23079421936") && !answer.contains("EncryptedData"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_simulator_that_requires_signatures_refuses_plain_requests_and_one_without_fails_the_facade_closed() {
    let ports = Ports::new();
    let required = default_config(&ports, "").replace("mode = \"optional\"", "mode = \"required\"");
    let portvakt = Portvakt::start(&required, &ports).await;
    let (status, answer) = soap(&simulator_url(&ports), UNSIGNED).await;
    assert_eq!(status, 500);
    assert!(answer.contains("<env:Value>env:Sender</env:Value>"), "{answer}");
    assert!(answer.contains(">wsse:InvalidSecurity</env:Value>"), "{answer}");
    assert!(answer.contains("only requests signed with WS-Security"), "{answer}");
    // The facade still gets its signed lookups answered.
    let token = machine_token(&issuer_url(&ports), &[KONTAKT]).await;
    assert_eq!(krr_personer(&portvakt.gateway, &token, &["23079421936"], None).await.0, 200);
    drop(portvakt);

    // A simulator without WS-Security does not understand the facade's signed header: the
    // facade answers 502 naming the fault, never an unverified answer.
    let ports = Ports::new();
    let off = without_table(&default_config(&ports, ""), "[oppslag.ws_security]");
    let portvakt = Portvakt::start(&off, &ports).await;
    let token = machine_token(&issuer_url(&ports), &[KONTAKT]).await;
    let (status, body) = krr_personer(&portvakt.gateway, &token, &["23079421936"], None).await;
    assert_eq!(status, 502, "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("wsse:Security"), "{body}");
    drop(portvakt);

    // And a facade without WS-Security gets plain answers from the optional simulator.
    let ports = Ports::new();
    let plain = without_table(&default_config(&ports, ""), "[gateway.krr.ws_security]");
    let portvakt = Portvakt::start(&plain, &ports).await;
    let token = machine_token(&issuer_url(&ports), &[KONTAKT]).await;
    assert_eq!(krr_personer(&portvakt.gateway, &token, &["23079421936"], None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_the_facade_cannot_verify_is_a_502_naming_the_reason() {
    // The facade pins a certificate the simulator does not sign with.
    let ports = Ports::new();
    let dev = |name: &str| project_path("config/dev").join(name).display().to_string();
    let config = default_config(&ports, "").replace(
        &format!("service_certificate = \"{}\"", dev("oppslag-server.cert.pem")),
        &format!("service_certificate = \"{}\"", dev("demo-maskinporten.cert.pem")),
    );
    let portvakt = Portvakt::start(&config, &ports).await;
    let token = machine_token(&issuer_url(&ports), &[KONTAKT]).await;
    let (status, body) = krr_personer(&portvakt.gateway, &token, &["23079421936"], None).await;
    assert_eq!(status, 502, "{body}");
    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains("failed WS-Security") && description.contains("not the pinned"), "{description}");
    assert!(!body.to_string().contains("23079421936"), "nothing of the answer is passed on");
    let metrics = portvakt.metrics().await;
    assert_eq!(metric(&metrics, "portvakt_krr_soap_calls_total{result=\"insecure\"}"), 1.0, "{metrics}");
}
