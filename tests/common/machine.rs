//! Machine tokens from a running issuer, through the demo Maskinporten client.

use serde_json::Value;

use super::*;

/// The demo machine client of the default config (its virksomhetssertifikat sent as x5c).
pub fn demo_maskinporten(issuer: &str) -> portvakt::client::MaskinportenClient {
    let dev = project_path("config/dev");
    portvakt::client::MaskinportenClient::from_files(
        issuer,
        "demo-maskinporten",
        &dev.join("demo-maskinporten.key.pem"),
        Some(&dev.join("demo-maskinporten.cert.pem")),
        None,
    )
    .unwrap()
}

/// A machine token from the running issuer for `scopes` (the demo client, x5c).
pub async fn machine_token(issuer: &str, scopes: &[&str]) -> String {
    machine_token_with(issuer, scopes, &serde_json::json!({})).await
}

/// As `machine_token`, with `extra` claims in the grant assertion (a `resource`, say).
pub async fn machine_token_with(issuer: &str, scopes: &[&str], extra: &Value) -> String {
    let answer =
        demo_maskinporten(issuer).token(&reqwest::Client::new(), scopes, extra).await.expect("a machine token");
    answer["access_token"].as_str().unwrap().to_owned()
}

/// `POST /rest/v1/personer` at `gateway` with `token` (and a request id when given): the status
/// and the JSON body.
pub async fn krr_personer<S: serde::Serialize>(
    gateway: &str,
    token: &str,
    ids: &[S],
    request_id: Option<&str>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(format!("{gateway}/rest/v1/personer")).bearer_auth(token);
    if let Some(id) = request_id {
        request = request.header("x-request-id", id);
    }
    let response = request.json(&serde_json::json!({"personidentifikatorer": ids})).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}
