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
