//! DPoP (RFC 9449) through the real binary: the token endpoint binds machine tokens to the key of
//! a proof; the gateway takes a bound token only as `Authorization: DPoP` with a fresh proof from
//! that key for that very request, and refuses every way around it. (The proof checks against
//! the RFC's own examples are unit tests in `src/token/dpop.rs`; an independent client, joserfc,
//! is `tests/e2e/test_dpop.py`.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic where a request path may not

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

const KONTAKT: &str = "krr:global/kontaktinformasjon.read";

/// A DPoP key and the proofs it signs.
struct Holder {
    key: TestKey,
}

impl Holder {
    fn new() -> Holder {
        Holder { key: TestKey::new("dpop", Algorithm::ES256) }
    }

    fn proof(&self, method: &str, uri: &str, token: Option<&str>, extra: Value) -> String {
        let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
        header.typ = Some("dpop+jwt".into());
        let mut jwk = self.key.jwk.clone();
        for member in ["kid", "use", "alg"] {
            jwk.as_object_mut().unwrap().remove(member);
        }
        header.jwk = Some(serde_json::from_value(jwk).unwrap());
        let mut claims = json!({"jti": uuid(), "htm": method, "htu": uri, "iat": now()});
        if let Some(token) = token {
            let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
            claims["ath"] = json!(URL_SAFE_NO_PAD.encode(hash));
        }
        for (name, value) in extra.as_object().unwrap() {
            claims[name] = value.clone();
        }
        jsonwebtoken::encode(&header, &claims, &self.key.encoding).unwrap()
    }
}

fn uuid() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `form` to `issuer`'s token endpoint with a proof from `holder` (carrying `extra` claims).
async fn token_request(issuer: &str, form: &[(&str, &str)], holder: &Holder, extra: Value) -> reqwest::Response {
    let uri = format!("{issuer}/token");
    reqwest::Client::new()
        .post(&uri)
        .header("dpop", holder.proof("POST", &uri, None, extra))
        .form(form)
        .send()
        .await
        .unwrap()
}

/// The demo client's JWT-bearer grant assertion.
fn grant_assertion(issuer: &str) -> String {
    demo_maskinporten(issuer).assertion(&[KONTAKT], &json!({})).unwrap()
}

/// A JWT-bearer grant with a DPoP proof: the token answer.
async fn bound_token(issuer: &str, holder: &Holder) -> Value {
    let assertion = grant_assertion(issuer);
    let form = [("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", assertion.as_str())];
    let answer = token_request(issuer, &form, holder, json!({})).await;
    assert_eq!(answer.status(), 200);
    answer.json().await.unwrap()
}

struct Call {
    status: u16,
    body: Value,
    challenge: String,
    nonce: Option<String>,
}

async fn personer(gateway: &str, scheme: &str, token: &str, proof: Option<&str>) -> Call {
    let mut request = reqwest::Client::new()
        .post(format!("{gateway}/rest/v1/personer"))
        .header("authorization", format!("{scheme} {token}"))
        .json(&json!({"personidentifikatorer": ["23079421936"]}));
    if let Some(proof) = proof {
        request = request.header("dpop", proof);
    }
    let answer = request.send().await.unwrap();
    let header = |name: &str| answer.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    let (challenge, nonce) = (header("www-authenticate").unwrap_or_default(), header("dpop-nonce"));
    let status = answer.status().as_u16();
    Call { status, body: answer.json().await.unwrap_or(Value::Null), challenge, nonce }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bound_token_is_taken_only_with_a_fresh_proof_from_its_key() {
    let ports = Ports::new();
    let portvakt = Portvakt::start(&default_config(&ports, ""), &ports).await;
    let issuer = issuer_url(&ports);
    let holder = Holder::new();
    let answer = bound_token(&issuer, &holder).await;
    assert_eq!(answer["token_type"], "DPoP");
    let token = answer["access_token"].as_str().unwrap();
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    let jkt = portvakt::token::dpop::thumbprint(&holder.key.jwk).unwrap();
    assert_eq!(claims["cnf"]["jkt"], jkt.as_str());

    let uri = format!("{}/rest/v1/personer", portvakt.gateway);
    let good = holder.proof("POST", &uri, Some(token), json!({}));
    let call = personer(&portvakt.gateway, "DPoP", token, Some(&good)).await;
    assert_eq!(call.status, 200, "{}", call.body);

    let refused = |call: Call, code: &str, words: &str| {
        assert_eq!(call.status, 401, "{words}: {}", call.body);
        assert_eq!(call.body["error"], code, "{words}: {}", call.body);
        let description = call.body["error_description"].as_str().unwrap();
        assert!(description.contains(words), "{description:?} does not say {words:?}");
        assert!(call.challenge.starts_with("DPoP ") && call.challenge.contains("algs="), "{}", call.challenge);
    };
    // The same proof again.
    refused(personer(&portvakt.gateway, "DPoP", token, Some(&good)).await, "invalid_dpop_proof", "used before");
    // As Bearer, or with no proof at all.
    refused(personer(&portvakt.gateway, "Bearer", token, None).await, "invalid_token", "DPoP-bound");
    refused(personer(&portvakt.gateway, "DPoP", token, None).await, "invalid_dpop_proof", "exactly one DPoP header");
    // A wrong method, URI, age, token hash, or key.
    let cases = [
        (holder.proof("GET", &uri, Some(token), json!({})), "is for GET"),
        (holder.proof("POST", &format!("{uri}/other"), Some(token), json!({})), "htu"),
        (holder.proof("POST", &uri, Some(token), json!({"iat": now() - 600})), "iat"),
        (holder.proof("POST", &uri, Some("another-token"), json!({})), "ath"),
        (Holder::new().proof("POST", &uri, Some(token), json!({})), "another key"),
    ];
    for (proof, words) in cases {
        refused(personer(&portvakt.gateway, "DPoP", token, Some(&proof)).await, "invalid_dpop_proof", words);
    }
    // An unbound token sent as DPoP.
    let bearer = machine_token(&issuer, &[KONTAKT]).await;
    let proof = holder.proof("POST", &uri, Some(&bearer), json!({}));
    refused(personer(&portvakt.gateway, "DPoP", &bearer, Some(&proof)).await, "invalid_token", "not DPoP-bound");
    assert_eq!(personer(&portvakt.gateway, "Bearer", &bearer, None).await.status, 200);
    // Refusals are counted by reason.
    let metrics = portvakt.metrics().await;
    assert!(metric(&metrics, "portvakt_token_outcomes_total{outcome=\"dpop_proof\"}") >= 7.0, "{metrics}");
    assert!(metric(&metrics, "portvakt_token_outcomes_total{outcome=\"sender_constraint\"}") >= 2.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn nonces_at_a_route_and_the_token_endpoint_and_routes_that_take_bound_tokens_only() {
    let ports = Ports::new();
    let config = default_config(&ports, "")
        .replace(
            "handler = \"krr-personer\"",
            "handler = \"krr-personer\"\nsender_constrained = true\ndpop_nonce = true",
        )
        .replace("[issuer]\n", "[issuer]\ndpop_nonce = true\n");
    let portvakt = Portvakt::start(&config, &ports).await;
    let issuer = issuer_url(&ports);
    let holder = Holder::new();
    // The token endpoint asks for its nonce, and takes the proof that carries it.
    let assertion = grant_assertion(&issuer);
    let form = [("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", assertion.as_str())];
    let first = token_request(&issuer, &form, &holder, json!({})).await;
    assert_eq!(first.status(), 400);
    let nonce = first.headers().get("dpop-nonce").unwrap().to_str().unwrap().to_owned();
    assert_eq!(first.json::<Value>().await.unwrap()["error"], "use_dpop_nonce");
    let second = token_request(&issuer, &form, &holder, json!({"nonce": nonce})).await;
    assert_eq!(second.status(), 200);
    let token = second.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();

    // The route asks for its own nonce.
    let uri = format!("{}/rest/v1/personer", portvakt.gateway);
    let call =
        personer(&portvakt.gateway, "DPoP", &token, Some(&holder.proof("POST", &uri, Some(&token), json!({})))).await;
    assert_eq!((call.status, call.body["error"].as_str()), (401, Some("use_dpop_nonce")), "{}", call.body);
    let nonce = call.nonce.expect("a DPoP-Nonce");
    let made_up = holder.proof("POST", &uri, Some(&token), json!({"nonce": "made-up"}));
    assert_eq!(personer(&portvakt.gateway, "DPoP", &token, Some(&made_up)).await.body["error"], "use_dpop_nonce");
    let with_nonce = holder.proof("POST", &uri, Some(&token), json!({"nonce": nonce}));
    assert_eq!(personer(&portvakt.gateway, "DPoP", &token, Some(&with_nonce)).await.status, 200);

    // A bearer token on a route that takes bound tokens only.
    let bearer = machine_token(&issuer, &[KONTAKT]).await;
    let call = personer(&portvakt.gateway, "Bearer", &bearer, None).await;
    assert_eq!((call.status, call.body["error"].as_str()), (401, Some("invalid_token")));
    assert!(call.body["error_description"].as_str().unwrap().contains("sender-constrained tokens only"));

    // Discovery and the protected-resource document name the proof algorithms.
    let discovery: Value =
        reqwest::get(format!("{issuer}/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
    assert!(discovery["dpop_signing_alg_values_supported"].as_array().unwrap().contains(&json!("ES256")));
}

/// A code redeemed with a DPoP proof (and the client's secret when it has one): the answer.
async fn redeem_with_proof(issuer: &str, client: &str, redirect: &str, code: &str, holder: &Holder) -> Value {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect),
        ("code_verifier", VERIFIER),
        ("client_id", client),
    ];
    if client == RP {
        form.push(("client_secret", RP_SECRET));
    }
    let answer = token_request(issuer, &form, holder, json!({})).await;
    assert_eq!(answer.status(), 200);
    answer.json().await.unwrap()
}

async fn refresh(issuer: &str, refresh_token: &str, holder: Option<&Holder>) -> (u16, Value) {
    let uri = format!("{issuer}/token");
    let mut request = reqwest::Client::new()
        .post(&uri)
        .basic_auth(RP, Some(RP_SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]);
    if let Some(holder) = holder {
        request = request.header("dpop", holder.proof("POST", &uri, None, json!({})));
    }
    let answer = request.send().await.unwrap();
    (answer.status().as_u16(), answer.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn logins_give_bound_tokens_opaque_ones_pass_the_gateway_and_a_refresh_keeps_the_binding() {
    let ports = Ports::new();
    let portvakt = Portvakt::start(&default_config(&ports, ""), &ports).await;
    let issuer = issuer_url(&ports);
    let holder = Holder::new();

    // A public client with opaque tokens: bound at the code's redemption, checked at the gateway
    // through introspection.
    let spa_redirect = "http://127.0.0.1:8765/spa-callback";
    let code =
        citizen_code(&issuer, "demo-spa", spa_redirect, "openid krr:user/kontaktinformasjon.read", CITIZEN).await;
    let answer = redeem_with_proof(&issuer, "demo-spa", spa_redirect, &code, &holder).await;
    assert_eq!(answer["token_type"], "DPoP");
    let opaque = answer["access_token"].as_str().unwrap();
    assert_eq!(opaque.split('.').count(), 1, "an opaque token");
    let uri = format!("{}/rest/v1/person", portvakt.gateway);
    let person = |scheme: &'static str, proof: Option<String>| {
        let mut request = reqwest::Client::new().get(&uri).header("authorization", format!("{scheme} {opaque}"));
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(person("DPoP", Some(holder.proof("GET", &uri, Some(opaque), json!({})))).await, 200);
    assert_eq!(person("Bearer", None).await, 401);

    // A confidential client: the refresh of a bound grant needs a proof, and binds to its key.
    let code = citizen_code(&issuer, RP, RP_REDIRECT, "openid krr:user/kontaktinformasjon.read", CITIZEN).await;
    let answer = redeem_with_proof(&issuer, RP, RP_REDIRECT, &code, &holder).await;
    let refresh_token = answer["refresh_token"].as_str().unwrap();
    let (status, refused) = refresh(&issuer, refresh_token, None).await;
    assert_eq!((status, refused["error"].as_str()), (400, Some("invalid_dpop_proof")), "{refused}");
    let new_key = Holder::new();
    let (status, renewed) = refresh(&issuer, refresh_token, Some(&new_key)).await;
    assert_eq!(status, 200, "the refused refresh did not use the token up: {renewed}");
    assert_eq!(renewed["token_type"], "DPoP");
    let token = renewed["access_token"].as_str().unwrap();
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(claims["cnf"]["jkt"], portvakt::token::dpop::thumbprint(&new_key.key.jwk).unwrap().as_str());
    // The issuer's userinfo takes bearer tokens only.
    let userinfo = reqwest::Client::new().get(format!("{issuer}/userinfo")).bearer_auth(token).send().await.unwrap();
    assert_eq!(userinfo.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_proof_must_name_the_host_and_path_the_client_addressed() {
    let ports = Ports::new();
    let portvakt = Portvakt::start(&default_config(&ports, ""), &ports).await;
    let issuer = issuer_url(&ports);
    let holder = Holder::new();
    let token = bound_token(&issuer, &holder).await["access_token"].as_str().unwrap().to_owned();
    let path = "/rest/v1/personer";
    // A Host that would cut the path off the URI compared, or name another server.
    for (host, htu) in [
        ("elsewhere.example?", format!("http://elsewhere.example?{path}")),
        ("a/b", format!("http://a/b{path}")),
        ("", format!("http://{path}")),
    ] {
        let proof = holder.proof("POST", &htu, Some(&token), json!({}));
        let answer = reqwest::Client::new()
            .post(format!("{}{path}", portvakt.gateway))
            .header("host", host)
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", proof)
            .json(&json!({"personidentifikatorer": ["23079421936"]}))
            .send()
            .await
            .unwrap();
        assert!(matches!(answer.status().as_u16(), 400 | 401), "Host {host:?}: {}", answer.status());
    }
    // Another server's name in Host and htu: the proof is for that server, not this one's path.
    let other = holder.proof("POST", &format!("http://other-rs.example{path}"), Some(&token), json!({}));
    let answer = reqwest::Client::new()
        .post(format!("{}{path}", portvakt.gateway))
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", other)
        .json(&json!({"personidentifikatorer": ["23079421936"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
}
