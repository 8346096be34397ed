//! The gateway end to end: the real binary in front of a real upstream, trusting a real JWKS
//! server, with tokens signed by keys made for each test.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic where a request path may not

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

const ISS: &str = "https://issuer.test";
const STATIC_ISS: &str = "https://static.test";

struct Edge {
    portvakt: Portvakt,
    jwks: JwksServer,
    upstream: EchoUpstream,
    rsa: TestKey,
    client: reqwest::Client,
}

fn config(ports: &Ports, jwks_url: &str, upstream: &str, extra: &str) -> String {
    format!(
        r#"{server}
[log]
level = "info"

[admin]
listen = "127.0.0.1:{admin}"

[gateway]
listen = "127.0.0.1:{gateway}"

[gateway.jwks]
refresh_seconds = 3600
unknown_kid_cooldown_seconds = 30
retry_after_seconds = 7
startup_wait_seconds = 1

[gateway.upstream]
health_check_seconds = 1
# Loopback upstreams answer at once; a silent one is shown by a test.
read_timeout_ms = 2000

[[gateway.issuers]]
issuer = "{ISS}"
jwks_url = "{jwks_url}"
algorithms = ["RS256", "PS256", "ES256", "EdDSA"]

[[gateway.issuers]]
issuer = "{STATIC_ISS}"
jwks_file = "{{dir}}/static-jwks.json"
algorithms = ["ES256"]

[[gateway.routes]]
name = "api"
path = "/api"
upstreams = ["{upstream}"]
scopes_any = ["demo:read", "demo:admin"]

[[gateway.routes]]
name = "citizen"
path = "/citizen"
methods = ["GET"]
upstreams = ["{upstream}"]
token = "citizen"
min_acr = "Level4"
scopes_any = ["user/kontaktinformasjon.read"]

[[gateway.routes]]
name = "machine"
path = "/machine"
upstreams = ["{upstream}"]
token = "machine"
scopes_all = ["global/kontaktinformasjon.read"]

[[gateway.routes]]
name = "audience"
path = "/aud"
upstreams = ["{upstream}"]
audience = "https://api.example/"

[[gateway.routes]]
name = "static-only"
path = "/static"
upstreams = ["{upstream}"]
issuers = ["{STATIC_ISS}"]
{extra}
"#,
        server = server_section(),
        admin = ports.admin,
        gateway = ports.gateway,
    )
}

fn static_key() -> TestKey {
    // Deterministic kid, key made fresh: the file is written before the process starts.
    TestKey::new("static-1", Algorithm::ES256)
}

impl Edge {
    async fn start() -> Edge {
        Edge::start_with("", &static_key()).await
    }

    async fn start_with(extra: &str, static_key: &TestKey) -> Edge {
        Edge::start_configured(|config| format!("{config}{extra}"), static_key).await
    }

    /// An edge with more `[gateway]` settings.
    async fn start_with_gateway_settings(settings: &str) -> Edge {
        let settings = format!("[gateway]\n{settings}\n");
        Edge::start_configured(|config| config.replacen("[gateway]\n", &settings, 1), &static_key()).await
    }

    async fn start_configured(edit: impl FnOnce(String) -> String, static_key: &TestKey) -> Edge {
        let rsa = TestKey::new("rsa-1", Algorithm::RS256);
        let jwks = JwksServer::start(jwks(&[&rsa])).await;
        let upstream = EchoUpstream::start().await;
        let ports = Ports::new();
        let config = edit(config(&ports, &jwks.url, &upstream.url, ""));
        let mut portvakt =
            Portvakt::spawn_with_files(&config, &ports, &[("static-jwks.json", jwks_json(&[static_key]))]);
        portvakt.wait_for("/readyz").await;
        Edge { portvakt, jwks, upstream, rsa, client: reqwest::Client::new() }
    }

    /// An edge with one more route, `/{name}` to `upstream`, open to any trusted token.
    async fn start_with_route(name: &str, upstream: &str) -> Edge {
        let extra =
            format!("\n[[gateway.routes]]\nname = \"{name}\"\npath = \"/{name}\"\nupstreams = [\"{upstream}\"]\n");
        Edge::start_with(&extra, &static_key()).await
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut request = self.client.get(format!("{}{path}", self.portvakt.gateway));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the gateway answers");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, headers, body)
    }
}

fn jwks_json(keys: &[&TestKey]) -> String {
    jwks(keys).to_string()
}

fn machine(scope: &str) -> Value {
    json!({
        "iss": ISS, "client_id": "demo-maskinporten", "scope": scope, "token_type": "Bearer",
        "client_amr": "virksomhetssertifikat", "iat": now(), "exp": now() + 120, "jti": "j1",
        "consumer": {"authority": "iso6523-actorid-upis", "ID": "0192:991825827"}
    })
}

fn citizen(scope: &str, acr: &str) -> Value {
    json!({
        "iss": ISS, "client_id": "demo-rp", "sub": "pairwise-sub", "pid": "23079421936",
        "acr": acr, "scope": scope, "iat": now(), "exp": now() + 120
    })
}

fn challenge(headers: &reqwest::header::HeaderMap) -> String {
    headers.get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_token_is_proxied_with_its_claims_as_headers() {
    let edge = Edge::start().await;
    let token = edge.rsa.sign(&machine("demo:read global/kontaktinformasjon.read"));
    let (status, headers, body) = edge.get("/api/things?x=1", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(headers.contains_key("x-request-id"));
    let seen = &body["headers"];
    assert_eq!(body["uri"], "/api/things?x=1");
    assert_eq!(seen["x-portvakt-client-id"][0], "demo-maskinporten");
    assert_eq!(seen["x-portvakt-consumer"][0], "991825827");
    assert_eq!(seen["x-portvakt-scope"][0], "demo:read global/kontaktinformasjon.read");
    assert_eq!(seen["x-portvakt-issuer"][0], ISS);
    assert!(seen.get("x-portvakt-pid").is_none(), "a machine token has no pid");
    assert!(seen.get("authorization").is_none(), "the token is not passed on by default");
    assert_eq!(seen["x-request-id"][0], headers["x-request-id"].to_str().unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_wrong_scheme_and_repeated_authorization_are_refused() {
    let edge = Edge::start().await;
    let (status, headers, body) = edge.get("/api", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge(&headers).starts_with("Bearer realm=\"portvakt\", error=\"invalid_token\""), "{headers:?}");
    assert_eq!(body["error"], "invalid_token");
    assert!(body["error_description"].as_str().unwrap().contains("no bearer token"));

    let response = edge
        .client
        .get(format!("{}/api", edge.portvakt.gateway))
        .basic_auth("user", Some("pass"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert!(body["error_description"].as_str().unwrap().contains("not Bearer"), "{body}");

    let token = edge.rsa.sign(&machine("demo:read"));
    let mut headers = reqwest::header::HeaderMap::new();
    headers.append("authorization", format!("Bearer {token}").parse().unwrap());
    headers.append("authorization", format!("Bearer {token}").parse().unwrap());
    let response = edge.client.get(format!("{}/api", edge.portvakt.gateway)).headers(headers).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(challenge(response.headers()).contains("error=\"invalid_request\""));
    assert_eq!(edge.upstream.hits(), 0, "nothing refused reached the upstream");
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_truncated_and_oversized_tokens_are_invalid() {
    let edge = Edge::start().await;
    let token = edge.rsa.sign(&machine("demo:read"));
    let cases = [
        ("garbage".to_string(), "not a JWT"),
        ("a.b.c".to_string(), "not base64url"),
        (token[..token.len() - 20].to_string(), "signature"),
        (token[..token.rfind('.').unwrap()].to_string(), "not a JWT"),
        (format!("{token}.extra"), "not a JWT"),
        ("x".repeat(16 * 1024), "bytes, more than"),
    ];
    for (bad, expected) in cases {
        let (status, headers, body) = edge.get("/api", Some(&bad)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad:.40}: {body}");
        assert!(challenge(&headers).contains("invalid_token"));
        let description = body["error_description"].as_str().unwrap();
        assert!(description.contains(expected), "{bad:.40}: {description}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn alg_none_and_hmac_with_the_public_key_are_refused() {
    let edge = Edge::start().await;
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let unsigned = format!("{}.{}.", b64(&json!({"alg": "none", "kid": "rsa-1"})), b64(&machine("demo:read")));
    let (status, _, body) = edge.get("/api", Some(&unsigned)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error_description"].as_str().unwrap().contains("\"none\" is refused"), "{body}");

    // The classic confusion: HS256 keyed with the issuer's public key (PEM), which anyone has.
    let public_pem = rcgen::KeyPair::from_pem(&edge.rsa.pem).unwrap().public_key_pem();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let forged =
        jsonwebtoken::encode(&header, &machine("demo:read"), &EncodingKey::from_secret(public_pem.as_bytes())).unwrap();
    let (status, _, body) = edge.get("/api", Some(&forged)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error_description"].as_str().unwrap().contains("HMAC"), "{body}");
    assert_eq!(edge.upstream.hits(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_expired_early_and_foreign_tokens_are_invalid() {
    let edge = Edge::start().await;
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let token = edge.rsa.sign(&machine("demo:read"));
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims = machine("demo:read demo:admin");
    claims["exp"] = json!(now() + 120);
    let tampered = format!("{}.{}.{}", parts[0], engine.encode(claims.to_string()), parts[2]);

    let mut expired = machine("demo:read");
    expired["exp"] = json!(now() - 120);
    let mut early = machine("demo:read");
    early["nbf"] = json!(now() + 600);
    let mut future_iat = machine("demo:read");
    future_iat["iat"] = json!(now() + 600);
    let mut foreign = machine("demo:read");
    foreign["iss"] = json!("https://evil.test");
    let mut no_exp = machine("demo:read");
    no_exp.as_object_mut().unwrap().remove("exp");
    let stranger = TestKey::new("rsa-1", Algorithm::RS256);
    // Signed by the trusted key, but not typed as an access token (an id_token, say).
    let mut untyped = edge.rsa.header();
    untyped.typ = None;
    let mut id_token_typed = edge.rsa.header();
    id_token_typed.typ = Some("JWT".into());

    let cases = [
        (edge.rsa.sign_with(&untyped, &machine("demo:read")), "not an access token"),
        (edge.rsa.sign_with(&id_token_typed, &machine("demo:read")), "typ must be at+jwt"),
        (tampered, "signature is not valid"),
        (edge.rsa.sign(&expired), "expired"),
        (edge.rsa.sign(&early), "not valid before"),
        (edge.rsa.sign(&future_iat), "issued in the future"),
        (edge.rsa.sign(&foreign), "not trusted"),
        (edge.rsa.sign(&no_exp), "no exp"),
        (stranger.sign(&machine("demo:read")), "signature is not valid"),
    ];
    for (token, expected) in cases {
        let (status, _, body) = edge.get("/api", Some(&token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{expected}: {body}");
        assert!(body["error_description"].as_str().unwrap().contains(expected), "{expected}: {body}");
    }
    assert_eq!(edge.upstream.hits(), 0);
    let metrics = edge.portvakt.metrics().await;
    assert!(metric(&metrics, "portvakt_token_outcomes_total{outcome=\"expired\"}") >= 1.0, "{metrics}");
    assert!(metric(&metrics, "portvakt_token_outcomes_total{outcome=\"bad_signature\"}") >= 2.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn audience_scope_level_and_token_kind_are_enforced_per_route() {
    let edge = Edge::start().await;
    // Audience.
    let mut aud = machine("x");
    aud["aud"] = json!(["https://other/", "https://api.example/"]);
    assert_eq!(edge.get("/aud", Some(&edge.rsa.sign(&aud))).await.0, StatusCode::OK);
    aud["aud"] = json!("https://other/");
    let (status, _, body) = edge.get("/aud", Some(&edge.rsa.sign(&aud))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error_description"].as_str().unwrap().contains("audience"), "{body}");
    // A route without an audience of its own takes tokens for no particular resource, and
    // refuses one meant for another API.
    for (aud, expected) in [(json!("unspecified"), StatusCode::OK), (json!("https://other/"), StatusCode::UNAUTHORIZED)]
    {
        let mut token = machine("demo:read");
        token["aud"] = aud.clone();
        let (status, _, body) = edge.get("/api", Some(&edge.rsa.sign(&token))).await;
        assert_eq!(status, expected, "{aud}: {body}");
    }
    let mut other = machine("demo:read");
    other["aud"] = json!("https://other/");
    let (_, headers, body) = edge.get("/api", Some(&edge.rsa.sign(&other))).await;
    assert_eq!(body["error_description"], "the token is meant for another resource (https://other/)");
    assert!(challenge(&headers).contains("invalid_token"));

    // A missing scope is a 403 naming the scopes that would do.
    let (status, headers, body) = edge.get("/api", Some(&edge.rsa.sign(&machine("other:scope")))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "insufficient_scope");
    assert_eq!(body["scope"], "demo:read demo:admin");
    assert!(challenge(&headers).contains("error=\"insufficient_scope\""));
    assert!(challenge(&headers).contains("scope=\"demo:read demo:admin\""));

    // `scp` arrays count as scopes too.
    let mut scp = machine("");
    scp["scp"] = json!(["demo:admin"]);
    assert_eq!(edge.get("/api", Some(&edge.rsa.sign(&scp))).await.0, StatusCode::OK);

    // Level3 on a Level4 route: log in again at Level4 (RFC 9470 step-up).
    let level3 = edge.rsa.sign(&citizen("user/kontaktinformasjon.read", "Level3"));
    let (status, headers, body) = edge.get("/citizen", Some(&level3)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "insufficient_user_authentication");
    assert!(challenge(&headers).contains("acr_values=\"Level4\""));
    // The new platform's name for Level4 is accepted as equal.
    let high = edge.rsa.sign(&citizen("user/kontaktinformasjon.read", "idporten-loa-high"));
    let (status, _, body) = edge.get("/citizen", Some(&high)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["headers"]["x-portvakt-pid"][0], "23079421936");
    assert_eq!(body["headers"]["x-portvakt-acr"][0], "idporten-loa-high");

    // A citizen's token on a machine route, and a machine token on a citizen route.
    let citizen_on_machine = edge.rsa.sign(&citizen("global/kontaktinformasjon.read", "Level4"));
    let (status, _, body) = edge.get("/machine", Some(&citizen_on_machine)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["error_description"].as_str().unwrap().contains("machine token"), "{body}");
    let machine_on_citizen = edge.rsa.sign(&machine("user/kontaktinformasjon.read"));
    let (status, _, body) = edge.get("/citizen", Some(&machine_on_citizen)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["error_description"].as_str().unwrap().contains("citizen"), "{body}");
    assert_eq!(
        edge.get("/machine", Some(&edge.rsa.sign(&machine("global/kontaktinformasjon.read")))).await.0,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn spoofed_identity_headers_never_reach_the_upstream() {
    let edge = Edge::start().await;
    let token = edge.rsa.sign(&machine("demo:read"));
    let response = edge
        .client
        .get(format!("{}/api", edge.portvakt.gateway))
        .bearer_auth(&token)
        .header("x-portvakt-pid", "08023549930")
        .header("X-Portvakt-Client-Id", "someone-else")
        .header("x-portvakt-scope", "demo:admin")
        .header("x-portvakt-acr", "Level4")
        .header("x_portvakt_pid", "08023549930")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let seen = &body["headers"];
    assert!(seen.get("x-portvakt-pid").is_none(), "{seen}");
    assert!(seen.get("x_portvakt_pid").is_none(), "underscore spellings are removed too: {seen}");
    assert!(seen.get("x-portvakt-acr").is_none(), "{seen}");
    assert_eq!(seen["x-portvakt-client-id"], json!(["demo-maskinporten"]));
    assert_eq!(seen["x-portvakt-scope"], json!(["demo:read"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_supported_algorithm_and_a_static_jwks_file_verify() {
    let static_key = static_key();
    let edge = Edge::start_with("", &static_key).await;
    let ps = TestKey::new("ps-1", Algorithm::PS256);
    let es = TestKey::new("es-1", Algorithm::ES256);
    let ed = TestKey::new("ed-1", Algorithm::EdDSA);
    edge.jwks.set_keys(jwks(&[&edge.rsa, &ps, &es, &ed]));
    for key in [&ps, &es, &ed, &edge.rsa] {
        let (status, _, body) = edge.get("/api", Some(&key.sign(&machine("demo:read")))).await;
        assert_eq!(status, StatusCode::OK, "{:?}: {body}", key.alg);
    }
    // The static issuer's key is only good for its own issuer, and only on its routes.
    let mut claims = machine("demo:read");
    claims["iss"] = json!(STATIC_ISS);
    let token = static_key.sign(&claims);
    assert_eq!(edge.get("/static", Some(&token)).await.0, StatusCode::OK);
    let own = edge.rsa.sign(&machine("demo:read"));
    let (status, _, body) = edge.get("/static", Some(&own)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error_description"].as_str().unwrap().contains("not accepted here"), "{body}");
    // An algorithm the issuer does not allow is refused even with a good signature.
    let mut es_from_rsa_issuer = machine("demo:read");
    es_from_rsa_issuer["iss"] = json!(STATIC_ISS);
    let ed_for_static = ed.sign(&es_from_rsa_issuer);
    let (status, _, body) = edge.get("/static", Some(&ed_for_static)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error_description"].as_str().unwrap().contains("not accepted from issuer"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_key_is_accepted_after_one_refetch_without_failing_a_request() {
    let edge = Edge::start().await;
    let old_token = edge.rsa.sign(&machine("demo:read"));
    assert_eq!(edge.get("/api", Some(&old_token)).await.0, StatusCode::OK);
    let fetches_before = edge.jwks.hits();

    let new_key = TestKey::new("rsa-2", Algorithm::RS256);
    edge.jwks.set_keys(jwks(&[&edge.rsa, &new_key]));
    let new_token = new_key.sign(&machine("demo:read"));
    // Old and new tokens interleaved, concurrently: every one succeeds.
    let mut requests = Vec::new();
    for i in 0..40 {
        let token = if i % 2 == 0 { new_token.clone() } else { old_token.clone() };
        let client = edge.client.clone();
        let url = format!("{}/api", edge.portvakt.gateway);
        requests.push(tokio::spawn(async move { client.get(url).bearer_auth(token).send().await.unwrap().status() }));
    }
    for request in requests {
        assert_eq!(request.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(edge.jwks.hits(), fetches_before + 1, "exactly one refetch for the new kid");
}

#[tokio::test(flavor = "multi_thread")]
async fn random_kids_cause_at_most_one_fetch_per_cool_down() {
    let edge = Edge::start().await;
    let fetches_before = edge.jwks.hits();
    let stranger = TestKey::new("unused", Algorithm::RS256);
    let mut requests = Vec::new();
    for i in 0..100 {
        let mut header = stranger.header();
        header.kid = Some(format!("random-{i}"));
        let token = stranger.sign_with(&header, &machine("demo:read"));
        let client = edge.client.clone();
        let url = format!("{}/api", edge.portvakt.gateway);
        requests.push(tokio::spawn(async move { client.get(url).bearer_auth(token).send().await.unwrap().status() }));
    }
    for request in requests {
        assert_eq!(request.await.unwrap(), StatusCode::UNAUTHORIZED);
    }
    assert!(edge.jwks.hits() <= fetches_before + 1, "{} fetches", edge.jwks.hits() - fetches_before);
    // Still within the cool-down: no fetch at all.
    let after_burst = edge.jwks.hits();
    let mut header = stranger.header();
    header.kid = Some("random-again".into());
    let (status, _, body) = edge.get("/api", Some(&stranger.sign_with(&header, &machine("demo:read")))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error_description"].as_str().unwrap().contains("no RS256 key with kid"), "{body}");
    assert_eq!(edge.jwks.hits(), after_burst);
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_held_are_served_while_the_jwks_server_is_down() {
    let edge = Edge::start().await;
    edge.jwks.stop();
    // A token never seen (so not cached) still verifies with the key held.
    let mut claims = machine("demo:read");
    claims["jti"] = json!("fresh");
    let (status, _, body) = edge.get("/api", Some(&edge.rsa.sign(&claims))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_issuer_without_keys_gets_503_with_retry_after_and_blocks_readiness() {
    let rsa = TestKey::new("rsa-1", Algorithm::RS256);
    let jwks_server = JwksServer::start(jwks(&[&rsa])).await;
    let upstream = EchoUpstream::start().await;
    let dead = format!("http://127.0.0.1:{}/jwks", free_port());
    let ports = Ports::new();
    let extra = format!(
        "[[gateway.issuers]]\nissuer = \"https://down.test\"\njwks_url = \"{dead}\"\n\n[[gateway.routes]]\nname = \"down\"\npath = \"/down\"\nupstreams = [\"{}\"]\n",
        upstream.url
    );
    let config = config(&ports, &jwks_server.url, &upstream.url, &extra);
    let mut portvakt =
        Portvakt::spawn_with_files(&config, &ports, &[("static-jwks.json", jwks_json(&[&static_key()]))]);
    portvakt.wait_for("/healthz").await;
    let ready = reqwest::get(format!("{}/readyz", portvakt.admin)).await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = ready.json().await.unwrap();
    assert!(body["waiting_for"].to_string().contains("https://down.test"), "{body}");

    let down = TestKey::new("d1", Algorithm::RS256);
    let mut claims = machine("demo:read");
    claims["iss"] = json!("https://down.test");
    let token = down.sign(&claims);
    // The listener opens after the startup wait even though one issuer never answered.
    let response = eventually("the gateway's listener", || {
        let request =
            reqwest::Client::new().get(format!("{}/down", portvakt.gateway)).bearer_auth(token.clone()).send();
        async move { request.await.ok() }
    })
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "7");
    let body: Value = response.json().await.unwrap();
    assert!(body["error_description"].as_str().unwrap().contains("no signing keys"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_token_is_served_from_the_validation_cache() {
    let edge = Edge::start().await;
    let token = edge.rsa.sign(&machine("demo:read"));
    for _ in 0..5 {
        assert_eq!(edge.get("/api", Some(&token)).await.0, StatusCode::OK);
    }
    let metrics = edge.portvakt.metrics().await;
    assert_eq!(metric(&metrics, "portvakt_validation_cache_total{result=\"miss\"}"), 1.0, "{metrics}");
    assert_eq!(metric(&metrics, "portvakt_validation_cache_total{result=\"hit\"}"), 4.0);
    assert_eq!(metric(&metrics, "portvakt_gateway_requests_total{route=\"api\",status=\"200\"}"), 5.0);
    assert!(metrics.contains("portvakt_gateway_request_duration_seconds_bucket{route=\"api\""));
    assert!(metrics.contains("portvakt_jwks_fetches_total{issuer=\"https://issuer.test\",result=\"ok\"}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn confusing_paths_unknown_paths_and_wrong_methods_are_refused() {
    let edge = Edge::start().await;
    let token = edge.rsa.sign(&machine("demo:read user/kontaktinformasjon.read"));
    for path in ["/api%2Fx", "/citizen/../api", "/api/./x", "/api;x=1", "/api/%2e%2e/x", "//api", "/api/%00", "/api\\x"]
    {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
        let (status, body) = raw_request(&edge.portvakt.gateway, &request).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains("invalid_request"), "{path}: {body}");
    }
    let (status, _, body) = edge.get("/nowhere", Some(&token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _, _) = edge.get("/apix", Some(&token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "prefixes match whole segments");
    let response =
        edge.client.post(format!("{}/citizen", edge.portvakt.gateway)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "GET");
    assert_eq!(edge.upstream.hits(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_are_balanced_and_a_dead_upstream_is_routed_around() {
    let rsa = TestKey::new("rsa-1", Algorithm::RS256);
    let jwks_server = JwksServer::start(jwks(&[&rsa])).await;
    let first = EchoUpstream::start().await;
    let second = EchoUpstream::start().await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let ports = Ports::new();
    let extra = format!(
        "[[gateway.routes]]\nname = \"pool\"\npath = \"/pool\"\nupstreams = [\"{}\", \"{}\", \"{dead}\"]\n",
        first.url, second.url
    );
    let config = config(&ports, &jwks_server.url, &first.url, &extra);
    let portvakt = Portvakt::spawn_with_files(&config, &ports, &[("static-jwks.json", jwks_json(&[&static_key()]))]);
    let mut portvakt = portvakt;
    portvakt.wait_for("/readyz").await;
    let token = rsa.sign(&machine("x"));
    let client = reqwest::Client::new();
    for _ in 0..30 {
        let response = client.get(format!("{}/pool", portvakt.gateway)).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "a dead backend is skipped, never answered");
    }
    assert!(first.hits() >= 5 && second.hits() >= 5, "round robin: {} and {}", first.hits(), second.hits());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_upstream_is_a_json_502_or_503() {
    let rsa = TestKey::new("rsa-1", Algorithm::RS256);
    let jwks_server = JwksServer::start(jwks(&[&rsa])).await;
    let upstream = EchoUpstream::start().await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let ports = Ports::new();
    let extra = format!("[[gateway.routes]]\nname = \"dead\"\npath = \"/dead\"\nupstreams = [\"{dead}\"]\n");
    let config = config(&ports, &jwks_server.url, &upstream.url, &extra);
    let mut portvakt =
        Portvakt::spawn_with_files(&config, &ports, &[("static-jwks.json", jwks_json(&[&static_key()]))]);
    portvakt.wait_for("/readyz").await;
    let response = reqwest::Client::new()
        .get(format!("{}/dead", portvakt.gateway))
        .bearer_auth(rsa.sign(&machine("x")))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert!(matches!(response.status().as_u16(), 502 | 503), "{}", response.status());
    let body: Value = response.json().await.unwrap();
    assert!(body["error"].is_string(), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_over_its_rate_limit_gets_429_with_retry_after() {
    let rsa = TestKey::new("rsa-1", Algorithm::RS256);
    let jwks_server = JwksServer::start(jwks(&[&rsa])).await;
    let upstream = EchoUpstream::start().await;
    let ports = Ports::new();
    let extra = format!(
        "[[gateway.routes]]\nname = \"limited\"\npath = \"/limited\"\nupstreams = [\"{}\"]\nrate_limit = {{ requests_per_second = 5 }}\n",
        upstream.url
    );
    let config = config(&ports, &jwks_server.url, &upstream.url, &extra);
    let mut portvakt =
        Portvakt::spawn_with_files(&config, &ports, &[("static-jwks.json", jwks_json(&[&static_key()]))]);
    portvakt.wait_for("/readyz").await;
    let client = reqwest::Client::new();
    let greedy = rsa.sign(&machine("x"));
    let mut other = machine("x");
    other["client_id"] = json!("another-client");
    let polite = rsa.sign(&other);
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let response = client.get(format!("{}/limited", portvakt.gateway)).bearer_auth(&greedy).send().await.unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(response.headers()["retry-after"], "1");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"], "rate_limited");
            statuses.push(429);
        } else {
            statuses.push(response.status().as_u16());
        }
    }
    assert!(statuses.iter().filter(|s| **s == 200).count() >= 5, "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    // The limit is per client: another client is not affected.
    let response = client.get(format!("{}/limited", portvakt.gateway)).bearer_auth(&polite).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let metrics = portvakt.metrics().await;
    assert!(metric(&metrics, "portvakt_rate_limited_total{route=\"limited\"}") >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_found_by_oidc_discovery_verify_and_a_mismatched_issuer_is_refused() {
    let rsa = TestKey::new("disc-1", Algorithm::RS256);
    let discovered = JwksServer::start_discoverable(jwks(&[&rsa]), "https://discovered.test").await;
    let lying = JwksServer::start_discoverable(jwks(&[&rsa]), "https://someone-else.test").await;
    let upstream = EchoUpstream::start().await;
    let base = |server: &JwksServer| server.url.trim_end_matches("/jwks").to_owned();
    let ports = Ports::new();
    let extra = format!(
        "[[gateway.issuers]]\nissuer = \"https://discovered.test\"\ndiscovery_url = \"{}/.well-known/openid-configuration\"\n\n\
         [[gateway.issuers]]\nissuer = \"https://lying.test\"\ndiscovery_url = \"{}/.well-known/openid-configuration\"\n",
        base(&discovered),
        base(&lying)
    );
    let main = TestKey::new("rsa-1", Algorithm::RS256);
    let jwks_server = JwksServer::start(jwks(&[&main])).await;
    let config = config(&ports, &jwks_server.url, &upstream.url, &extra);
    let mut portvakt =
        Portvakt::spawn_with_files(&config, &ports, &[("static-jwks.json", jwks_json(&[&static_key()]))]);
    portvakt.wait_for("/healthz").await;
    let client = reqwest::Client::new();
    let mut claims = machine("demo:read");
    claims["iss"] = json!("https://discovered.test");
    let token = rsa.sign(&claims);
    let response = eventually("the discovered issuer's keys", || {
        let request = client.get(format!("{}/api", portvakt.gateway)).bearer_auth(token.clone()).send();
        async move { request.await.ok().filter(|r| r.status() == StatusCode::OK) }
    })
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    // A discovery document naming another issuer is not believed: no keys, 503.
    claims["iss"] = json!("https://lying.test");
    let response = client.get(format!("{}/api", portvakt.gateway)).bearer_auth(rsa.sign(&claims)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let ready: Value = reqwest::get(format!("{}/readyz", portvakt.admin)).await.unwrap().json().await.unwrap();
    assert!(ready["waiting_for"].to_string().contains("lying.test"), "{ready}");
    assert!(portvakt.logs().contains("names issuer \"https://someone-else.test\""), "the log says why");
}

/// Read one HTTP/1.1 answer with a Content-Length body from a raw connection, and return its
/// head (lower-cased) and body.
async fn read_answer(stream: &mut tokio::net::TcpStream) -> (String, String) {
    use tokio::io::AsyncReadExt;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buffer).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let head = head.to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
            if body.len() >= length {
                return (head, body[..length].to_owned());
            }
        }
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut chunk)).await.expect("an answer in time").unwrap();
        assert!(n > 0, "the connection closed before the answer was whole: {text}");
        buffer.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_on_one_client_connection_share_one_upstream_connection_and_bodies_pass() {
    let edge = Edge::start().await;
    let token = edge.rsa.sign(&machine("demo:read"));
    let url = format!("{}/api/items", edge.portvakt.gateway);
    let addr = edge.portvakt.gateway.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut peers = std::collections::HashSet::new();
    for i in 0..10 {
        let body = format!("item {i}");
        let request = format!(
            "POST /api/items HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes()).await.unwrap();
        let (head, answer) = read_answer(&mut stream).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        let echoed: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(echoed["body"], body);
        assert_eq!(echoed["headers"]["content-length"][0], body.len().to_string());
        peers.insert(echoed["peer"].as_str().unwrap().to_owned());
    }
    assert_eq!(peers.len(), 1, "one upstream connection carried every request: {peers:?}");

    // A body of unknown length arrives chunked and goes on chunked.
    let request = format!(
        "PUT /api/items HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Transfer-Encoding: chunked\r\n\r\nc\r\nfirst part, \r\nb\r\nsecond part\r\n0\r\n\r\n"
    );
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes()).await.unwrap();
    let (head, body) = read_answer(&mut stream).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let echoed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echoed["body"], "first part, second part");
    assert_eq!(echoed["headers"]["transfer-encoding"][0], "chunked");

    // HEAD gets the head only.
    let response = edge.client.head(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.bytes().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn hop_by_hop_headers_stop_at_the_gateway_and_the_client_address_is_appended() {
    use tokio::io::AsyncWriteExt;
    let edge = Edge::start().await;
    let token = edge.rsa.sign(&machine("demo:read"));
    let addr = edge.portvakt.gateway.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "GET /api/hops HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Connection: keep-alive, X-Private-Hop\r\nX-Private-Hop: secret\r\nKeep-Alive: timeout=5\r\n\
         Upgrade: websocket\r\nTE: trailers\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\n\
         X-Forwarded-For: 203.0.113.9\r\nForwarded: for=203.0.113.9\r\nX-Real-IP: 203.0.113.9\r\n\
         X-Kept: yes\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let (head, body) = read_answer(&mut stream).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let seen = &serde_json::from_str::<Value>(&body).unwrap()["headers"];
    for hop in ["x-private-hop", "keep-alive", "upgrade", "te", "proxy-authorization", "forwarded", "x-real-ip"] {
        assert!(seen.get(hop).is_none(), "{hop} reached the upstream: {seen}");
    }
    assert_eq!(seen["x-kept"][0], "yes");
    assert_eq!(seen["x-forwarded-for"], json!(["127.0.0.1"]), "an untrusted client's chain is replaced");

    // The connection is still good for another request, which expects 100-continue.
    let body = r#"{"n": 1}"#;
    let request = format!(
        "POST /api/hops HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut interim = [0u8; 25];
    tokio::time::timeout(DEADLINE, tokio::io::AsyncReadExt::read_exact(&mut stream, &mut interim))
        .await
        .expect("a go-ahead in time")
        .unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(body.as_bytes()).await.unwrap();
    let (head, answer) = read_answer(&mut stream).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let echoed: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(echoed["body"], body);
    assert!(echoed["headers"].get("expect").is_none(), "the gateway answered the expectation itself");

    // A head that cannot be parsed gets a 400 that says so.
    let (status, body) =
        raw_request(&edge.portvakt.gateway, "GET /api HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n").await;
    assert_eq!(status, 400, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"], "invalid_request");
    assert!(error["error_description"].as_str().unwrap().contains("request head"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_proxys_forwarding_headers_are_kept_and_extended() {
    let edge = Edge::start_with_gateway_settings(r#"trusted_proxies = ["127.0.0.0/8", "::1/128"]"#).await;
    let token = edge.rsa.sign(&machine("demo:read"));
    let response = edge
        .client
        .get(format!("{}/api/proxied", edge.portvakt.gateway))
        .bearer_auth(&token)
        .header("x-forwarded-for", "203.0.113.9")
        .header("forwarded", "for=203.0.113.9;proto=https")
        .send()
        .await
        .unwrap();
    let seen = &response.json::<Value>().await.unwrap()["headers"];
    assert_eq!(seen["x-forwarded-for"], json!(["203.0.113.9, 127.0.0.1"]));
    assert_eq!(seen["forwarded"], json!(["for=203.0.113.9;proto=https"]));
}

/// A raw upstream on loopback: `serve` gets each connection and its number (from 1). Its URL,
/// and how many connections it has had.
async fn raw_upstream<F, Served>(serve: F) -> (String, Arc<AtomicUsize>)
where
    F: Fn(tokio::net::TcpStream, usize) -> Served + Send + 'static,
    Served: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::spawn(serve(stream, n));
        }
    });
    (url, connections)
}

/// An upstream that answers each connection once, chunked, and then closes it, as an upstream
/// does when its keep-alive timeout ends. Counts its connections.
async fn one_answer_per_connection_upstream() -> (String, Arc<AtomicUsize>) {
    raw_upstream(|mut stream, n| async move {
        if next_head(&mut stream).await.is_none() {
            return;
        }
        let body = format!("connection {n}");
        let answer = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nKeep-Alive: timeout=1\r\n\
             Connection: keep-alive, X-Upstream-Hop\r\nX-Upstream-Hop: 1\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        );
        let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, answer.as_bytes()).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_closing_kept_connections_fails_no_request_and_its_hops_stay_behind() {
    let (upstream, connections) = one_answer_per_connection_upstream().await;
    let edge = Edge::start_with_route("closing", &upstream).await;
    let token = edge.rsa.sign(&machine("demo:read"));
    for i in 1..=5 {
        let response =
            edge.client.get(format!("{}/closing", edge.portvakt.gateway)).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "request {i}");
        assert!(response.headers().get("keep-alive").is_none());
        assert!(response.headers().get("x-upstream-hop").is_none());
        assert!(response.headers().get("x-request-id").is_some());
        assert!(response.text().await.unwrap().starts_with("connection "));
    }
    assert!(connections.load(Ordering::SeqCst) >= 5, "each request needed a new upstream connection");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_framed_both_ways_is_passed_on_chunked_only() {
    // Content-Length and Transfer-Encoding together are the stuff of request smuggling: the
    // chunked framing wins (RFC 9112 §6.3), and the upstream must see that framing only.
    let edge = Edge::start().await;
    let token = edge.rsa.sign(&machine("demo:read"));
    let addr = edge.portvakt.gateway.trim_start_matches("http://").to_owned();
    let request = format!(
        "POST /api/framing HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Length: 4\r\n\
         Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    );
    let (status, body) = raw_request(&edge.portvakt.gateway, &request).await;
    assert_eq!(status, 200, "{body}");
    let echoed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echoed["body"], "hello");
    assert_eq!(echoed["headers"]["transfer-encoding"][0], "chunked");
    assert!(echoed["headers"].get("content-length").is_none(), "{echoed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_that_changes_token_forwards_the_new_tokens_claims() {
    // A connection keeps the last token's claim headers; a new token must bring its own.
    let edge = Edge::start().await;
    let addr = edge.portvakt.gateway.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    for scope in ["demo:read", "demo:admin", "demo:read"] {
        let token = edge.rsa.sign(&machine(scope));
        let request = format!("GET /api/claims HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n");
        tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes()).await.unwrap();
        let (head, body) = read_answer(&mut stream).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        let seen = &serde_json::from_str::<Value>(&body).unwrap()["headers"];
        assert_eq!(seen["x-portvakt-scope"], json!([scope]), "{seen}");
    }
}

/// An upstream that answers by path with framing an upstream may really send: chunked with
/// extensions and trailers, interim answers first, a body ended by closing, a contradictory
/// Content-Length, and silence. It keeps a connection after a framed answer and counts
/// connections.
async fn scripted_framing_upstream() -> (String, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    raw_upstream(|mut stream, _| async move {
        while let Some(head) = next_head(&mut stream).await {
            let path = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
            let (answer, close): (&[u8], bool) = match path.as_str() {
                "/framing/chunked" => (
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n\
                      6;ext=\"a b\"\r\nchunks\r\n1\r\n \r\n3\r\nand\r\n9\r\n trailers\r\n0\r\nX-Checksum: 1\r\n\r\n",
                    false,
                ),
                "/framing/interim" => (
                    b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n\
                      HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal",
                    false,
                ),
                "/framing/close" => (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", true),
                // Nothing, or half a body, then silence with the connection open.
                "/framing/silent" | "/framing/stalled" => {
                    if path.ends_with("stalled") {
                        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhalf").await;
                    }
                    let mut rest = [0u8; 1];
                    let _ = stream.read(&mut rest).await;
                    return;
                }
                _ => (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", true),
            };
            if stream.write_all(answer).await.is_err() || close {
                return;
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_framing_is_decoded_strictly_and_only_a_certain_end_keeps_the_connection() {
    let (upstream, connections) = scripted_framing_upstream().await;
    let edge = Edge::start_with_route("framing", &upstream).await;
    let token = edge.rsa.sign(&machine("demo:read"));
    let addr = edge.portvakt.gateway.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n");

    // Chunked with an extension and trailers: decoded, and sent on with the client's own framing.
    for _ in 0..2 {
        tokio::io::AsyncWriteExt::write_all(&mut stream, get("/framing/chunked").as_bytes()).await.unwrap();
        let head = read_head(&mut stream).await;
        assert!(head.starts_with("http/1.1 200") && head.contains("transfer-encoding: chunked"), "{head}");
        assert_eq!(read_chunked_body(&mut stream).await, "chunks and trailers");
    }
    // An interim answer is for the gateway's hop; the client sees the final one.
    tokio::io::AsyncWriteExt::write_all(&mut stream, get("/framing/interim").as_bytes()).await.unwrap();
    let (head, body) = read_answer(&mut stream).await;
    assert!(head.starts_with("http/1.1 200") && !head.contains("link"), "{head}");
    assert_eq!(body, "final");
    assert_eq!(connections.load(Ordering::SeqCst), 1, "framed answers kept the upstream connection");

    // A body that ends when the upstream closes passes whole; that connection is not reused.
    let (status, body) = raw_request(&edge.portvakt.gateway, &get("/framing/close")).await;
    assert_eq!((status, body.as_str()), (200, "until the end"));
    // Two Content-Length values that disagree: nothing of that answer reaches the client.
    let (status, body) = raw_request(&edge.portvakt.gateway, &get("/framing/conflict")).await;
    assert_eq!(status, 502, "{body}");
    assert!(!body.contains("hello"), "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"], "bad_gateway");
    assert!(edge.portvakt.logs().contains("Content-Length is invalid or contradicts itself"), "the log says why");

    // An upstream that goes silent: 504 before the answer began; after, the client's
    // connection closes with the answer cut short, never completed with made-up bytes.
    let (status, body) = raw_request(&edge.portvakt.gateway, &get("/framing/silent")).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"], "upstream_timeout");
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, get("/framing/stalled").as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer))
        .await
        .expect("the gateway closes the connection once the upstream has timed out")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 200") && answer.contains("content-length: 9"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nhalf"), "what came of the body, then the close: {answer}");
}

/// Read an answer head (lower-cased) from a raw connection, one byte at a time.
async fn read_head(stream: &mut tokio::net::TcpStream) -> String {
    let head = tokio::time::timeout(DEADLINE, next_head(stream)).await.expect("a head in time");
    head.expect("the connection stays open").to_ascii_lowercase()
}

/// The next message head on a raw connection, one byte at a time (nothing of what follows is
/// taken); `None` when the connection ends first.
async fn next_head(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tokio::io::AsyncReadExt::read_u8(stream).await.ok()?);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// Read a chunked body from a raw connection, decoding it.
async fn read_chunked_body(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut body = Vec::new();
    loop {
        let mut line = Vec::new();
        while !line.ends_with(b"\r\n") {
            line.push(tokio::time::timeout(DEADLINE, stream.read_u8()).await.expect("in time").unwrap());
        }
        let size = usize::from_str_radix(String::from_utf8_lossy(&line).trim(), 16).expect("a chunk size");
        let mut data = vec![0u8; size + 2];
        tokio::time::timeout(DEADLINE, stream.read_exact(&mut data)).await.expect("in time").unwrap();
        if size == 0 {
            return String::from_utf8(body).unwrap();
        }
        body.extend_from_slice(&data[..size]);
    }
}

/// RFC 9728: the gateway and each API with its own audience describe themselves, each under
/// the URL its `resource` names, and a 401 says where.
#[tokio::test(flavor = "multi_thread")]
async fn protected_resource_metadata_describes_each_api_and_401s_point_at_it() {
    let ports = Ports::new();
    let gateway = format!("http://127.0.0.1:{}", ports.gateway);
    // An API of its own: tokens must name it in `aud`.
    let own_api = format!(
        "[[gateway.routes]]\nname = \"reports\"\npath = \"/reports\"\nupstreams = [\"http://127.0.0.1:{}\"]\n\
         audience = \"{gateway}/reports\"\nscopes_any = [\"demo:reports.read\"]\n",
        ports.oppslag
    );
    let portvakt = Portvakt::start(&default_config(&ports, &own_api), &ports).await;
    assert_eq!(portvakt.gateway, gateway);
    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        async move {
            let response = http.get(path).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let root_url = format!("{gateway}/.well-known/oauth-protected-resource");
    let (status, root) = get(root_url.clone()).await;
    assert_eq!(status, 200, "{root}");
    assert_eq!(root["resource"], gateway.as_str());
    assert_eq!(root["authorization_servers"], json!([issuer_url(&ports)]));
    assert_eq!(root["bearer_methods_supported"], json!(["header"]));
    assert_eq!(root["tls_client_certificate_bound_access_tokens"], false);
    let scopes = root["scopes_supported"].as_array().unwrap();
    assert!(
        scopes.contains(&json!("global/kontaktinformasjon.read"))
            && scopes.contains(&json!("global/idporten.authlevel.read"))
    );
    assert!(!scopes.contains(&json!("demo:reports.read")), "an API of its own is described apart");

    // A route on the gateway's own resource: its 401 names the gateway's document.
    let refused = http.post(format!("{gateway}/rest/v1/personer")).json(&json!({})).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let challenge = refused.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains(&format!("resource_metadata=\"{root_url}\"")), "{challenge}");

    // An API with its own audience: its own document, its resource the URL it is found under.
    let refused = http.get(format!("{gateway}/reports/2026")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let challenge = refused.headers()["www-authenticate"].to_str().unwrap().to_owned();
    let url = format!("{root_url}/reports");
    assert!(challenge.contains(&format!("resource_metadata=\"{url}\"")), "{challenge}");
    let (status, api) = get(url).await;
    assert_eq!(status, 200);
    assert_eq!(api["resource"], format!("{gateway}/reports"));
    assert_eq!(api["scopes_supported"], json!(["demo:reports.read"]));

    assert_eq!(get(format!("{root_url}/rest/v1/personer")).await.0, 404, "no API of its own there");
    let post = http.post(root_url).send().await.unwrap();
    assert_eq!(post.status(), 405);
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_bound_tokens_pass_only_over_tls_with_their_certificate() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let (server_cert, server_key) = issued_by_test_ca("gateway", true);
    let (cert_path, key_path) = (dir.path().join("gateway.crt"), dir.path().join("gateway.key"));
    std::fs::write(&cert_path, &server_cert).unwrap();
    std::fs::write(&key_path, &server_key).unwrap();
    let ca = project_path("config/dev/test-ca.cert.pem");
    // An edge on TLS, asking for client certificates as `mode` says.
    let tls_edge = |mode: &str| {
        let settings = format!(
            "tls = {{ cert = \"{}\", key = \"{}\", client_certificates = \"{mode}\", client_cas = [\"{}\"] }}",
            cert_path.display(),
            key_path.display(),
            ca.display()
        );
        async move { Edge::start_with_gateway_settings(&settings).await }
    };
    let edge = tls_edge("optional").await;
    let https = edge.portvakt.gateway.replace("http://", "https://");
    let client = |identity: Option<(&str, &str)>| {
        let mut builder = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap()]);
        if let Some((cert, key)) = identity {
            builder = builder.identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap());
        }
        builder.build().unwrap()
    };
    let (holder_cert, holder_key) = issued_by_test_ca("holder", false);
    let (other_cert, other_key) = issued_by_test_ca("someone else", false);
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(holder_cert.as_bytes())
        .map(|der: rustls_pki_types::CertificateDer<'_>| der.to_vec())
        .unwrap();
    let x5t = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der));
    let mut claims = machine("demo:read");
    claims["cnf"] = json!({"x5t#S256": x5t});
    let bound = edge.rsa.sign(&claims);
    let call = |client: reqwest::Client, token: String| {
        let url = format!("{https}/api/x");
        async move {
            let answer = client.get(url).bearer_auth(token).send().await.unwrap();
            let status = answer.status().as_u16();
            (status, answer.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, body) = call(client(Some((&holder_cert, &holder_key))), bound.clone()).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(client(None), bound.clone()).await;
    assert_eq!(status, 401);
    assert!(body["error_description"].as_str().unwrap().contains("over TLS with that certificate"), "{body}");
    let (status, body) = call(client(Some((&other_cert, &other_key))), bound.clone()).await;
    assert_eq!(status, 401);
    assert!(body["error_description"].as_str().unwrap().contains("another client certificate"), "{body}");
    // Without a certificate, an unbound token is still taken (client certificates are optional);
    // a certificate that is sent must verify, or there is no connection.
    assert_eq!(call(client(None), edge.rsa.sign(&machine("demo:read"))).await.0, 200);
    let stranger = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let self_signed = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap().self_signed(&stranger).unwrap();
    let unverified = client(Some((&self_signed.pem(), &stranger.serialize_pem())));
    assert!(unverified.get(format!("{https}/api/x")).bearer_auth(&bound).send().await.is_err());
    // Over plain HTTP the listener is not there at all: TLS only.
    assert!(reqwest::get(format!("{}/api/x", edge.portvakt.gateway)).await.map(|r| r.status() != 200).unwrap_or(true));
    drop(edge);

    // With client certificates required, a client without one is refused in the handshake.
    let edge = tls_edge("required").await;
    let https = edge.portvakt.gateway.replace("http://", "https://");
    let url = format!("{https}/api/x");
    let bound = edge.rsa.sign(&claims);
    assert!(client(None).get(&url).bearer_auth(&bound).send().await.is_err(), "no certificate, no connection");
    let answer = client(Some((&holder_cert, &holder_key))).get(&url).bearer_auth(&bound).send().await.unwrap();
    assert_eq!(answer.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_key_that_does_not_fit_its_certificate_stops_start_up_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = issued_by_test_ca("gateway", true);
    let (_, other_key) = issued_by_test_ca("someone else", true);
    let (cert_path, key_path) = (dir.path().join("gateway.crt"), dir.path().join("gateway.key"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, other_key).unwrap();
    let ports = Ports::new();
    let settings =
        format!("[gateway]\ntls = {{ cert = \"{}\", key = \"{}\" }}\n", cert_path.display(), key_path.display());
    let config =
        config(&ports, "http://127.0.0.1:9/jwks", "http://127.0.0.1:9", "").replacen("[gateway]\n", &settings, 1);
    let mut portvakt =
        Portvakt::spawn_with_files(&config, &ports, &[("static-jwks.json", jwks_json(&[&static_key()]))]);
    assert_eq!(portvakt.wait_exit().await, Some(2), "{}", portvakt.logs());
    assert!(portvakt.logs().contains("gateway.tls"), "{}", portvakt.logs());
}
