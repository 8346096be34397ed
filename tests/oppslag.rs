//! The Oppslagstjenesten simulator spoken to directly, as a SOAP client would: every answer is
//! validated against the published 16-02 XSD.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic where a request path may not

mod common;

use common::*;

const ENVELOPE_START: &str = r#"<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope" xmlns:ns="http://kontaktinfo.difi.no/xsd/oppslagstjeneste/16-02">"#;

fn envelope(header: &str, body: &str) -> String {
    format!("{ENVELOPE_START}<soap:Header>{header}</soap:Header><soap:Body>{body}</soap:Body></soap:Envelope>")
}

async fn call(url: &str, content_type: &str, body: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn simulator() -> (Portvakt, String) {
    let ports = Ports::new();
    let portvakt = Portvakt::start(&default_config(&ports, ""), &ports).await;
    (portvakt, format!("http://127.0.0.1:{}/kontaktinfo-external/ws-v5", ports.oppslag))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_change_feed_pages_through_the_whole_register() {
    let (_portvakt, url) = simulator().await;
    let mut fra = 0i64;
    let mut seen = 0;
    let mut messages = Vec::new();
    loop {
        let body = format!(
            r#"<ns:HentEndringerForespoersel fraEndringsNummer="{fra}"><ns:informasjonsbehov>Kontaktinfo</ns:informasjonsbehov><ns:informasjonsbehov>VarslingsStatus</ns:informasjonsbehov></ns:HentEndringerForespoersel>"#
        );
        let request = envelope("", &body);
        let (status, answer) = call(&url, "application/soap+xml; charset=utf-8", &request).await;
        assert_eq!(status, 200, "{answer}");
        let doc = roxmltree::Document::parse(&answer).unwrap();
        let respons = doc.descendants().find(|n| n.tag_name().name() == "HentEndringerRespons").unwrap();
        let til: i64 = respons.attribute("tilEndringsNummer").unwrap().parse().unwrap();
        let seneste: i64 = respons.attribute("senesteEndringsNummer").unwrap().parse().unwrap();
        let persons: Vec<_> = doc.descendants().filter(|n| n.tag_name().name() == "Person").collect();
        assert!(persons.len() <= 1000);
        assert!(
            persons.iter().all(|p| p.descendants().all(|d| d.tag_name().name() != "varslingsstatus")),
            "no varslingsstatus in the change feed"
        );
        assert!(persons.iter().all(|p| {
            let status = p.children().find(|c| c.tag_name().name() == "status").and_then(|c| c.text()).unwrap();
            status == "AKTIV" || status == "SLETTET"
        }));
        seen += persons.len();
        messages.push(request);
        messages.push(answer.clone());
        if til == seneste {
            break;
        }
        fra = til + 1;
    }
    assert_eq!(seen, 2000, "every person once");
    validate_soap(&messages);
}

#[tokio::test(flavor = "multi_thread")]
async fn print_certificates_act_for_others_and_the_wsdl_is_served() {
    let (_portvakt, url) = simulator().await;
    let mut messages = Vec::new();
    for header in ["", "<ns:Oppslagstjenesten><ns:PaaVegneAv>991825827</ns:PaaVegneAv></ns:Oppslagstjenesten>"] {
        let request = envelope(header, "<ns:HentPrintSertifikatForespoersel/>");
        let (status, answer) = call(&url, "application/soap+xml", &request).await;
        assert_eq!(status, 200, "{answer}");
        assert!(answer.contains("postkasseleverandoerAdresse"));
        messages.push(request);
        messages.push(answer);
    }
    validate_soap(&messages);
    let wsdl = reqwest::get(format!("{url}?wsdl")).await.unwrap().text().await.unwrap();
    assert!(wsdl.contains(&format!("<soap12:address location=\"{url}\"")), "the WSDL names the simulator's address");
    let base = url.trim_end_matches("ws-v5");
    let xsd = reqwest::get(format!("{base}oppslagstjeneste-ws-16-02.xsd")).await.unwrap().text().await.unwrap();
    assert!(xsd.contains("HentPersonerForespoersel"), "the schema the WSDL imports is served beside it");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_faults_that_validate() {
    let (_portvakt, url) = simulator().await;
    let id = "<ns:personidentifikator>23079421936</ns:personidentifikator>";
    let many: String = (0..1001).map(|_| id).collect();
    let soap11 = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>"#;
    let cases: Vec<(String, &str, &str, &str)> = vec![
        ("this is not XML".into(), "application/soap+xml", "env:Sender", "not XML"),
        (soap11.into(), "application/soap+xml", "env:VersionMismatch", "SOAP 1.1"),
        (soap11.into(), "text/xml", "env:VersionMismatch", "SOAP 1.1"),
        (
            envelope("", &format!("<ns:HentPersonerForespoersel>{many}</ns:HentPersonerForespoersel>")),
            "application/soap+xml",
            "env:Sender",
            "more than 1000",
        ),
        (
            envelope(
                "",
                "<ns:HentPersonerForespoersel><ns:personidentifikator>1234</ns:personidentifikator></ns:HentPersonerForespoersel>",
            ),
            "application/soap+xml",
            "env:Sender",
            "invalid",
        ),
        (
            envelope(
                "",
                "<x:HentPersonerForespoersel xmlns:x=\"http://kontaktinfo.difi.no/xsd/oppslagstjeneste/14-05\"/>",
            ),
            "application/soap+xml",
            "env:Sender",
            "not an Oppslagstjenesten 16-02",
        ),
        (
            envelope(
                "<ns:Oppslagstjenesten><ns:PaaVegneAv>123</ns:PaaVegneAv></ns:Oppslagstjenesten>",
                &format!("<ns:HentPersonerForespoersel>{id}</ns:HentPersonerForespoersel>"),
            ),
            "application/soap+xml",
            "env:Sender",
            "PaaVegneAv",
        ),
        (
            envelope(
                "<w:Security xmlns:w=\"urn:x\" soap:mustUnderstand=\"true\"/>",
                &format!("<ns:HentPersonerForespoersel>{id}</ns:HentPersonerForespoersel>"),
            ),
            "application/soap+xml",
            "env:MustUnderstand",
            "not understood",
        ),
        ("<!DOCTYPE x [<!ENTITY a \"b\">]><x>&a;</x>".into(), "application/soap+xml", "env:Sender", "DOCTYPE"),
    ];
    let mut faults = Vec::new();
    for (body, content_type, code, words) in cases {
        let (status, answer) = call(&url, content_type, &body).await;
        assert_eq!(status, 500, "{answer}");
        assert!(answer.contains(&format!("<env:Value>{code}</env:Value>")), "{words}: {answer}");
        assert!(answer.contains(words), "{words}: {answer}");
        faults.push(answer);
    }
    validate_soap(&faults);
    // Zero informasjonsbehov is the documented default (Person); duplicates collapse.
    let request = envelope("", &format!("<ns:HentPersonerForespoersel>{id}{id}</ns:HentPersonerForespoersel>"));
    let (status, answer) = call(&url, "application/soap+xml", &request).await;
    assert_eq!(status, 200);
    assert_eq!(answer.matches("<ns2:Person>").count(), 1);
}
