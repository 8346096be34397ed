//! The issuer's router driven in-process (`tower::ServiceExt::oneshot`), without a listener or
//! a process: the fast layer for the order of Maskinporten's refusal codes, client
//! authentication and request validation. The process-level tests (`tests/issuer.rs`) prove the
//! same router on the wire.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic where a request path may not

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use portvakt::client::MaskinportenClient;
use portvakt::config::Config;
use portvakt::server::Roles;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The default config's issuer, built as `portvakt serve` builds it.
fn issuer() -> (Router, String) {
    let config = Config::load(&project_path("config/portvakt.toml")).expect("the default config loads");
    let id = config.issuer.as_ref().expect("an issuer").issuer.clone();
    let roles = Roles::build(&config).expect("the roles build");
    let router = Router::clone(&roles.issuer.expect("the issuer role").router.load());
    (router, id)
}

async fn post_form(router: &Router, path: &str, form: &str, basic: Option<&str>) -> (StatusCode, Value) {
    let mut request = Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(credentials) = basic {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
        request = request.header(header::AUTHORIZATION, format!("Basic {encoded}"));
    }
    let response = router.clone().oneshot(request.body(Body::from(form.to_owned())).unwrap()).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn grant_form(assertion: &str) -> String {
    format!("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}")
}

/// The MP code at the end of `error_uri`.
fn mp(body: &Value) -> &str {
    body["error_uri"].as_str().and_then(|uri| uri.rsplit('/').next()).unwrap_or_default()
}

fn demo(issuer: &str) -> MaskinportenClient {
    demo_maskinporten(issuer)
}

#[tokio::test]
async fn maskinporten_refusals_come_in_the_order_of_the_checks() {
    let (router, id) = issuer();
    let client = demo(&id);
    let scopes = ["global/kontaktinformasjon.read"];
    let now = now();
    // Each case breaks one more rule than the next one down: the first rule checked wins.
    let unknown = ["global/unknown.scope"];
    let expired = json!({"iat": now - 600, "exp": now - 300});
    let mut everything_wrong = expired.clone();
    everything_wrong["aud"] = json!("https://elsewhere/");
    let cases = [
        ("not a JWT at all", "not.a.jwt".to_owned(), "MP-011"),
        (
            "a wrong audience, expired, an unknown scope",
            client.assertion(&unknown, &everything_wrong).unwrap(),
            "MP-110",
        ),
        ("expired, an unknown scope", client.assertion(&unknown, &expired).unwrap(), "MP-130"),
        ("an unknown scope", client.assertion(&unknown, &json!({})).unwrap(), "MP-2"),
    ];
    for (what, assertion, code) in cases {
        let (status, body) = post_form(&router, "/token", &grant_form(&assertion), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
        assert!(mp(&body).starts_with(code), "{what}: expected {code}, got {body}");
        assert!(body["error_description"].as_str().unwrap().contains("trace_id"), "{what}: {body}");
    }
    // A good assertion once, then its replay.
    let assertion = client.assertion(&scopes, &json!({})).unwrap();
    let (status, body) = post_form(&router, "/token", &grant_form(&assertion), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = post_form(&router, "/token", &grant_form(&assertion), None).await;
    assert_eq!(mp(&body), "MP-012", "{body}");
}

#[tokio::test]
async fn client_authentication_takes_one_method_and_says_which_failed() {
    let (router, _) = issuer();
    let form = "grant_type=client_credentials&scope=openid";
    // Two methods at once.
    let both = format!("{form}&client_id=demo-rp&client_secret=demo-rp-secret");
    let (status, body) = post_form(&router, "/token", &both, Some("demo-rp:demo-rp-secret")).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{body}");
    // A wrong secret over Basic: 401 invalid_client.
    let (status, body) = post_form(&router, "/token", form, Some("demo-rp:wrong")).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")), "{body}");
    // An unknown client.
    let (status, body) = post_form(&router, "/token", &format!("{form}&client_id=nobody&client_secret=x"), None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")), "{body}");
    // A confidential client without credentials.
    let (status, body) = post_form(&router, "/token", &format!("{form}&client_id=demo-rp"), None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")), "{body}");
}

#[tokio::test]
async fn a_form_with_a_repeated_or_missing_parameter_is_an_invalid_request() {
    let (router, _) = issuer();
    let cases = [
        ("grant_type=authorization_code&grant_type=refresh_token", "invalid_request"),
        ("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer", "invalid_request"),
        ("grant_type=password&username=a&password=b", "unsupported_grant_type"),
        ("", "invalid_request"),
    ];
    for (form, error) in cases {
        let (status, body) = post_form(&router, "/token", form, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form}: {body}");
        assert_eq!(body["error"], error, "{form}: {body}");
    }
}

#[tokio::test]
async fn token_requests_are_refused_with_the_rfc_6749_code_for_what_is_wrong() {
    let (router, _) = issuer();
    let cases = [
        ("no grant_type", "code=abc", "invalid_request", "grant_type"),
        ("an empty grant_type", "grant_type=&code=abc", "invalid_request", "grant_type"),
        ("an unknown grant", "grant_type=password&username=u&password=p", "unsupported_grant_type", "password"),
        ("a grant without its parameter", "grant_type=authorization_code&client_id=x", "invalid_request", "`code`"),
        (
            "an empty parameter is an absent one",
            "grant_type=refresh_token&refresh_token=",
            "invalid_request",
            "`refresh_token`",
        ),
        ("a repeated parameter", "grant_type=authorization_code&code=a&code=b", "invalid_request", "repeated"),
    ];
    for (what, form, error, named) in cases {
        let (status, body) = post_form(&router, "/token", form, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
        assert_eq!(body["error"], error, "{what}: {body}");
        assert!(body["error_description"].as_str().unwrap().contains(named), "{what}: {body}");
    }
    // A well-formed request reaches client authentication, which comes next.
    let (status, body) = post_form(&router, "/token", "grant_type=authorization_code&code=abc", None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")), "{body}");
}
