//! The audit trail on the default stack: every personal-data lookup (KRR through the gateway,
//! authlevel, the simulator's SOAP operations) is on record before it is answered, with keyed
//! hashes in place of the numbers; the chain verifies with `portvakt audit verify`, a changed
//! byte is named; `portvakt audit search` finds one person's lookups; and a full disk refuses
//! the lookup instead of answering it off the record.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic where a request path may not

mod common;

use std::process::Command;

use common::*;
use serde_json::{Value, json};

const OTHER: &str = "08023549930";

fn audit(portvakt: &Portvakt, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(binary())
        .args(["audit", args[0], "--config"])
        .arg(&portvakt.config_path)
        .args(&args[1..])
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn personer(portvakt: &Portvakt, token: &str, ids: &[&str]) -> (u16, Value) {
    krr_personer(&portvakt.gateway, token, ids, Some("audit-test-1")).await
}

async fn authlevel(portvakt: &Portvakt, token: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/authlevel/rest/v1/sikkerhetsnivaa", portvakt.gateway))
        .bearer_auth(token)
        .json(&json!({"personidentifikator": CITIZEN}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn audit_files(portvakt: &Portvakt) -> Vec<std::path::PathBuf> {
    portvakt::audit::chain_files(&portvakt.dir.path().join("audit")).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_lookup_is_on_a_chain_that_verifies_and_a_changed_byte_is_named() {
    let ports = Ports::new();
    let portvakt = Portvakt::start(&default_config(&ports, ""), &ports).await;
    let issuer = issuer_url(&ports);
    let krr = machine_token(&issuer, &["global/kontaktinformasjon.read"]).await;
    assert_eq!(personer(&portvakt, &krr, &[CITIZEN, OTHER]).await.0, 200);
    let level = machine_token(&issuer, &["global/idporten.authlevel.read"]).await;
    assert_eq!(authlevel(&portvakt, &level).await, 404, "never logged in; still a lookup on record");
    // The simulator itself, called directly.
    let envelope = format!(
        "<?xml version=\"1.0\"?><env:Envelope xmlns:env=\"http://www.w3.org/2003/05/soap-envelope\" \
         xmlns:ns=\"http://kontaktinfo.difi.no/xsd/oppslagstjeneste/16-02\"><env:Header/><env:Body>\
         <ns:HentPersonerForespoersel><ns:informasjonsbehov>Person</ns:informasjonsbehov>\
         <ns:personidentifikator>{OTHER}</ns:personidentifikator></ns:HentPersonerForespoersel></env:Body></env:Envelope>"
    );
    let soap = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/kontaktinfo-external/ws-v5", ports.oppslag))
        .header("content-type", "application/soap+xml; charset=utf-8")
        .body(envelope)
        .send()
        .await
        .unwrap();
    assert_eq!(soap.status(), 200);

    let files = audit_files(&portvakt);
    let text: String = files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect();
    assert!(!text.contains(CITIZEN) && !text.contains(OTHER), "no personidentifikator in the trail");
    let records: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let routes: Vec<&str> = records.iter().map(|r| r["route"].as_str().unwrap()).collect();
    // The gateway's KRR lookup also reaches the simulator: both are on record.
    for route in ["krr-personer", "oppslag-HentPersoner", "authlevel"] {
        assert!(routes.contains(&route), "{route} on record: {routes:?}");
    }
    let krr_record = records.iter().find(|r| r["route"] == "krr-personer").unwrap();
    assert_eq!(krr_record["persons"], 2);
    assert_eq!(krr_record["client_id"], "demo-maskinporten");
    assert_eq!(krr_record["consumer_orgno"], "991825827");
    assert_eq!(krr_record["request_id"], "audit-test-1");
    assert_eq!(krr_record["outcome"], "ok");
    assert!(
        records.iter().any(|r| r["route"] == "oppslag-HentPersoner" && r["request_id"] == "audit-test-1"),
        "the facade's SOAP call carries the request id: the two records match up"
    );
    let authlevel_record = records.iter().find(|r| r["route"] == "authlevel").unwrap();
    assert_eq!(authlevel_record["outcome"], "not_found");

    let (code, stdout, stderr) = audit(&portvakt, &["verify"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains(&format!("{} records", records.len())), "{stdout}");

    // A data-protection officer's question: every lookup of CITIZEN, and only those.
    let (code, stdout, stderr) = audit(&portvakt, &["search", "--pid", CITIZEN]);
    assert_eq!(code, 0, "{stderr}");
    let found: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let found_routes: Vec<&str> = found.iter().map(|r| r["route"].as_str().unwrap()).collect();
    let mut sorted = found_routes.clone();
    sorted.sort();
    // The facade's lookup reached the simulator too; the direct SOAP call was for OTHER only.
    assert_eq!(sorted, ["authlevel", "krr-personer", "oppslag-HentPersoner"], "{found:?}");
    let (_, later, _) = audit(&portvakt, &["search", "--pid", CITIZEN, "--since", "2999-01-01"]);
    assert!(later.is_empty(), "--since leaves earlier lookups out");
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1)).format("%Y-%m-%d").to_string();
    let (_, since_yesterday, _) = audit(&portvakt, &["search", "--pid", CITIZEN, "--since", &yesterday]);
    assert_eq!(since_yesterday.lines().count(), 3, "--since keeps later lookups");
    let (code, _, stderr) = audit(&portvakt, &["search", "--pid", CITIZEN, "--since", "yesterday"]);
    assert_eq!(code, 2, "a --since that is not a date is refused: {stderr}");

    // One byte changed: verify fails and names the record.
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let second_line = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
    let at = second_line + bytes[second_line..].iter().position(|b| *b == b'k').unwrap();
    bytes[at] = b'K';
    std::fs::write(&files[0], &bytes).unwrap();
    let output = Command::new(binary())
        .args(["audit", "verify", "--config"])
        .arg(project_path("config/portvakt.toml"))
        .arg(&files[0])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("line 2") && stderr.contains("mac does not match"), "{stderr}");
    drop(portvakt);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lookup_that_cannot_be_recorded_is_refused() {
    // The chain's current file is a full disk: every write fails with ENOSPC.
    let full = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/dev/full", full.path().join("audit-00000001.jsonl")).unwrap();
    let ports = Ports::new();
    let config =
        default_config(&ports, "").replace("dir = \"{dir}/audit\"", &format!("dir = \"{}\"", full.path().display()));
    let portvakt = Portvakt::start(&config, &ports).await;
    let issuer = issuer_url(&ports);
    let krr = machine_token(&issuer, &["global/kontaktinformasjon.read"]).await;
    let (status, body) = personer(&portvakt, &krr, &[CITIZEN]).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("audit trail"), "{body}");
    assert!(body.get("personer").is_none(), "no data off the record");
    let level = machine_token(&issuer, &["global/idporten.authlevel.read"]).await;
    assert_eq!(authlevel(&portvakt, &level).await, 503);
    let metrics = portvakt.metrics().await;
    assert!(metric(&metrics, "portvakt_audit_records_total{result=\"failed\"}") >= 2.0, "{metrics}");
    assert!(portvakt.logs().contains("an audit record could not be written"));
}
