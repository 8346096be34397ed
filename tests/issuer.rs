//! The issuer end to end on the default config: an independent OpenID Connect client
//! (`openidconnect`) and a cookie-keeping browser drive login, consent, tokens, refresh,
//! revocation, logout and PAR; Maskinporten grants are signed with the demo client's real key.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic where a request path may not

mod common;

use std::time::Duration;

use common::*;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, RedirectUrl, RefreshToken, Scope, TokenResponse,
};
use portvakt::client::MaskinportenClient;
use serde_json::{Value, json};

const SPA_REDIRECT: &str = "http://127.0.0.1:8765/spa-callback";

struct Stack {
    portvakt: Portvakt,
    ports: Ports,
    upstream: EchoUpstream,
    issuer: String,
    http: openidconnect::reqwest::Client,
}

async fn stack() -> Stack {
    stack_with(|config| config).await
}

/// The test stack, its config changed by `edit` first.
async fn stack_with(edit: impl FnOnce(String) -> String) -> Stack {
    let upstream = EchoUpstream::start().await;
    let ports = Ports::new();
    // A scope demo-maskinporten may have (its type allows it) but was not given: MP-250.
    let extra = format!(
        "[[gateway.routes]]\nname = \"echo-citizen\"\npath = \"/echo\"\nupstreams = [\"{}\"]\ntoken = \"citizen\"\nscopes_any = [\"krr:user/kontaktinformasjon.read\", \"user/kontaktinformasjon.read\"]\n\n\
         [[issuer.scopes]]\nname = \"demo:not-granted.read\"\nallowed_integration_types = [\"maskinporten\"]\n",
        upstream.url
    );
    let portvakt = Portvakt::start(&edit(default_config(&ports, &extra)), &ports).await;
    let http = openidconnect::reqwest::ClientBuilder::new()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Stack { issuer: issuer_url(&ports), portvakt, ports, upstream, http }
}

/// Log in at the test IdP's form as served, answering `pid` and `acr`.
async fn log_in(browser: &Browser, stack: &Stack, authorize_url: &str, pid: &str, acr: &str) -> Page {
    let page = browser.get(authorize_url).await;
    assert_eq!(page.status, 200, "the login form: {}", page.body);
    let form = forms(&page.body).into_iter().find(|f| f.action == "/authorize/login").expect("a login form");
    browser.submit(&stack.issuer, &form.set("pid", pid).set("acr", acr)).await
}

fn machine_client(stack: &Stack, by_kid: bool) -> MaskinportenClient {
    let dev = project_path("config/dev");
    MaskinportenClient::from_files(
        &stack.issuer,
        "demo-maskinporten",
        &dev.join("demo-maskinporten.key.pem"),
        Some(&dev.join("demo-maskinporten.cert.pem")),
        by_kid.then_some("demo-maskinporten"),
    )
    .unwrap()
}

async fn grant(stack: &Stack, assertion: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/token", stack.issuer))
        .form(&[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", assertion)])
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_and_keys_describe_the_issuer() {
    let stack = stack().await;
    let metadata: Value =
        reqwest::get(format!("{}/.well-known/openid-configuration", stack.issuer)).await.unwrap().json().await.unwrap();
    assert_eq!(metadata["issuer"], stack.issuer);
    assert_eq!(metadata["token_endpoint"], format!("{}/token", stack.issuer));
    assert_eq!(metadata["response_types_supported"], json!(["code"]));
    assert!(
        metadata["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("urn:ietf:params:oauth:grant-type:jwt-bearer"))
    );
    assert_eq!(metadata["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(metadata["subject_types_supported"], json!(["pairwise"]));
    let rfc8414: Value = reqwest::get(format!("{}/.well-known/oauth-authorization-server", stack.issuer))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rfc8414["token_endpoint_auth_methods_supported"], json!(["private_key_jwt"]));
    let jwks: Value = reqwest::get(format!("{}/jwk", stack.issuer)).await.unwrap().json().await.unwrap();
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, vec!["portvakt-dev-rs256", "portvakt-dev-es256"], "one signs, both are published");
    // An independent client library accepts the document.
    CoreProviderMetadata::discover_async(IssuerUrl::new(stack.issuer.clone()).unwrap(), &stack.http)
        .await
        .expect("discovery");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_citizen_logs_in_with_pkce_and_the_tokens_work_until_revoked() {
    let stack = stack().await;
    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(stack.issuer.clone()).unwrap(), &stack.http).await.unwrap();
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(RP.into()),
        Some(ClientSecret::new(RP_SECRET.into())),
    )
    .set_redirect_uri(RedirectUrl::new(RP_REDIRECT.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("user/kontaktinformasjon.read".into()))
        .set_pkce_challenge(challenge)
        .url();
    let browser = Browser::new();
    let answer = log_in(&browser, &stack, url.as_str(), CITIZEN, "Level3").await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert!(answer.location.as_deref().unwrap().starts_with(RP_REDIRECT));
    assert_eq!(answer.redirect_param("state").as_deref(), Some(state.secret().as_str()));
    assert_eq!(answer.redirect_param("iss").as_deref(), Some(stack.issuer.as_str()));
    assert!(browser.cookie("portvakt_sso").is_some(), "an SSO session cookie");
    let code = answer.redirect_param("code").unwrap();

    let tokens = client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&stack.http)
        .await
        .expect("the code exchange");
    let id_token = tokens.id_token().expect("an id_token");
    let verifier = client.id_token_verifier();
    let claims = id_token.claims(&verifier, &nonce).expect("a valid id_token");
    assert_eq!(claims.auth_context_ref().map(|a| a.as_str()), Some("Level3"));
    assert_eq!(claims.subject().as_str().len(), 44, "a pairwise sub");
    let at_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&at_hash));
    let raw: Value = decode_jwt(&id_token.to_string());
    assert_eq!(raw["pid"], CITIZEN);
    assert_eq!(raw["amr"], json!(["TestID"]));
    assert_eq!(raw["locale"], "nb");
    assert!(raw["sid"].is_string());

    // userinfo with the access token.
    let info = userinfo(&stack, tokens.access_token().secret()).await;
    assert_eq!(info["pid"], CITIZEN);
    assert_eq!(info["sub"], claims.subject().as_str());

    // The code is single use: a second redemption fails and revokes what the first one got.
    let again = client.exchange_code(AuthorizationCode::new(code)).unwrap().request_async(&stack.http).await;
    assert!(again.is_err());

    // A refresh token was issued to this confidential client... but the replayed code revoked
    // its grant, so log in again (SSO: no form) and use the fresh one.
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, _) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge)
        .url();
    let answer = browser.get(url.as_str()).await;
    assert_eq!(answer.status, 303, "SSO answers without the form");
    let tokens = client
        .exchange_code(AuthorizationCode::new(answer.redirect_param("code").unwrap()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&stack.http)
        .await
        .unwrap();
    let first_refresh = tokens.refresh_token().expect("a refresh token").clone();
    let refreshed =
        client.exchange_refresh_token(&first_refresh).unwrap().request_async(&stack.http).await.expect("refresh");
    let second_refresh = refreshed.refresh_token().expect("a rotated refresh token").clone();
    assert_ne!(first_refresh.secret(), second_refresh.secret());
    // Reusing the first refresh token revokes the whole grant: the rotated one dies too.
    assert!(client.exchange_refresh_token(&first_refresh).unwrap().request_async(&stack.http).await.is_err());
    assert!(client.exchange_refresh_token(&second_refresh).unwrap().request_async(&stack.http).await.is_err());

    // Revocation (RFC 7009) of a live refresh token.
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, _) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge)
        .url();
    let answer = browser.get(url.as_str()).await;
    let tokens = client
        .exchange_code(AuthorizationCode::new(answer.redirect_param("code").unwrap()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&stack.http)
        .await
        .unwrap();
    let refresh = tokens.refresh_token().unwrap().secret().clone();
    let revoked = reqwest::Client::new()
        .post(format!("{}/revoke", stack.issuer))
        .basic_auth(RP, Some(RP_SECRET))
        .form(&[("token", refresh.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let after = client.exchange_refresh_token(&RefreshToken::new(refresh)).unwrap().request_async(&stack.http).await;
    assert!(after.is_err(), "a revoked grant cannot be refreshed");
    assert_eq!(browser.get(url.as_str()).await.status, 200, "revocation also ended the SSO session: the form is back");
}

fn decode_jwt(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn authorize_url(stack: &Stack, client: &str, redirect: &str, scope: &str, extra: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(&format!("{}/authorize", stack.issuer)).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", client)
        .append_pair("redirect_uri", redirect)
        .append_pair("response_type", "code")
        .append_pair("scope", scope)
        .append_pair("state", "the-state")
        .append_pair("code_challenge", CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    for (k, v) in extra {
        url.query_pairs_mut().append_pair(k, v);
    }
    url.to_string()
}

async fn redeem(stack: &Stack, client: &str, redirect: &str, code: &str) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(format!("{}/token", stack.issuer));
    let mut form = vec![
        ("grant_type", "authorization_code".to_string()),
        ("code", code.to_string()),
        ("redirect_uri", redirect.to_string()),
        ("code_verifier", VERIFIER.to_string()),
    ];
    if let Some(secret) = secret_of(client) {
        request = request.basic_auth(client, Some(secret));
    } else {
        form.push(("client_id", client.to_string()));
    }
    let response = request.form(&form).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// The secret of a confidential client these tests use; `None` for a public one.
fn secret_of(client: &str) -> Option<&'static str> {
    match client {
        RP => Some(RP_SECRET),
        OPAQUE_RP => Some(OPAQUE_RP_SECRET),
        _ => None,
    }
}

/// A confidential client like demo-rp whose access tokens are opaque.
const OPAQUE_RP: &str = "demo-rp-opaque";
const OPAQUE_RP_SECRET: &str = "demo-rp-opaque-secret";

fn with_opaque_rp(config: String) -> String {
    format!(
        "{config}\n[[issuer.clients]]\nclient_id = \"{OPAQUE_RP}\"\nintegration_type = \"api_klient\"\n\
         auth_methods = [\"client_secret_basic\"]\nclient_secret = \"{OPAQUE_RP_SECRET}\"\n\
         redirect_uris = [\"{RP_REDIRECT}\"]\nscopes = [\"openid\", \"profile\"]\naccess_token = \"opaque\"\n"
    )
}

/// A token request of a confidential client, with its secret: status and answer.
async fn token_request(stack: &Stack, client: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/token", stack.issuer))
        .basic_auth(client, secret_of(client))
        .form(form)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// RFC 7009 revocation by a confidential client: the status.
async fn revoke(stack: &Stack, client: &str, token: &str) -> u16 {
    let response = reqwest::Client::new()
        .post(format!("{}/revoke", stack.issuer))
        .basic_auth(client, secret_of(client))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

async fn userinfo(stack: &Stack, access_token: &str) -> Value {
    let response = reqwest::Client::new()
        .get(format!("{}/userinfo", stack.issuer))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap();
    response.json().await.unwrap()
}

/// `/tokeninfo` asked by the confidential demo client.
async fn tokeninfo(stack: &Stack, token: &str) -> Value {
    let request = reqwest::Client::new().post(format!("{}/tokeninfo", stack.issuer)).basic_auth(RP, Some(RP_SECRET));
    request.form(&[("token", token)]).send().await.unwrap().json().await.unwrap()
}

/// Log CITIZEN in at `acr` in `browser` for `client` and redeem the code: its tokens.
async fn tokens_for(stack: &Stack, browser: &Browser, client: &str, redirect: &str, scope: &str, acr: &str) -> Value {
    let answer = log_in(browser, stack, &authorize_url(stack, client, redirect, scope, &[]), CITIZEN, acr).await;
    let (status, tokens) = redeem(stack, client, redirect, &answer.redirect_param("code").unwrap()).await;
    assert_eq!(status, 200, "{tokens}");
    tokens
}

#[tokio::test(flavor = "multi_thread")]
async fn sso_serves_a_second_client_until_prompt_login_or_a_higher_level_asks_again() {
    let stack = stack().await;
    let browser = Browser::new();
    let answer =
        log_in(&browser, &stack, &authorize_url(&stack, RP, RP_REDIRECT, "openid", &[]), CITIZEN, "Level3").await;
    assert_eq!(answer.status, 303);
    // A second client: no form, a code at once.
    let spa = browser.get(&authorize_url(&stack, "demo-spa", SPA_REDIRECT, "openid profile", &[])).await;
    assert_eq!(spa.status, 303, "{}", spa.body);
    let (status, tokens) = redeem(&stack, "demo-spa", SPA_REDIRECT, &spa.redirect_param("code").unwrap()).await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens.get("refresh_token").is_none(), "a public client gets no refresh token");
    assert!(!tokens["access_token"].as_str().unwrap().contains('.'), "demo-spa's access tokens are opaque");
    let rp_sub = decode_jwt(
        redeem(&stack, RP, RP_REDIRECT, &answer.redirect_param("code").unwrap()).await.1["id_token"].as_str().unwrap(),
    )["sub"]
        .clone();
    let spa_sub = decode_jwt(tokens["id_token"].as_str().unwrap())["sub"].clone();
    assert_ne!(rp_sub, spa_sub, "sub is pairwise: different per client");
    // prompt=login and a higher acr force the form again.
    assert_eq!(
        browser.get(&authorize_url(&stack, RP, RP_REDIRECT, "openid", &[("prompt", "login")])).await.status,
        200
    );
    let level4 = authorize_url(&stack, RP, RP_REDIRECT, "openid", &[("acr_values", "Level4")]);
    assert_eq!(browser.get(&level4).await.status, 200);
    // Choosing Level3 when Level4 is required is refused on the form.
    let page = browser.get(&level4).await;
    let form = forms(&page.body).into_iter().find(|f| f.action == "/authorize/login").unwrap();
    let refused = browser.submit(&stack.issuer, &form.set("pid", CITIZEN).set("acr", "Level3")).await;
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("requires Level4"), "{}", refused.body);
    let answer = log_in(&browser, &stack, &level4, CITIZEN, "Level4").await;
    let (_, tokens) = redeem(&stack, RP, RP_REDIRECT, &answer.redirect_param("code").unwrap()).await;
    assert_eq!(decode_jwt(tokens["id_token"].as_str().unwrap())["acr"], "Level4");
}

#[tokio::test(flavor = "multi_thread")]
async fn consent_is_asked_remembered_and_a_declined_scope_is_left_out() {
    let stack = stack().await;
    let scope = "openid user/kontaktinformasjon.read demo:consent.read";
    let browser = Browser::new();
    let page = log_in(&browser, &stack, &authorize_url(&stack, RP, RP_REDIRECT, scope, &[]), CITIZEN, "Level3").await;
    assert_eq!(page.status, 200, "a consent page");
    assert!(page.body.contains("demo:consent.read"));
    let consent = forms(&page.body).into_iter().find(|f| f.action == "/authorize/consent").unwrap();
    let answer = browser.submit(&stack.issuer, &consent.set("decision", "deny")).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    let (_, tokens) = redeem(
        &stack,
        RP,
        RP_REDIRECT,
        &answer.redirect_param("code").unwrap_or_else(|| panic!("{:?}", answer.location)),
    )
    .await;
    assert_eq!(tokens["scope"], "openid user/kontaktinformasjon.read", "the declined scope is left out");
    // The decision is remembered: no page the second time.
    let again = browser.get(&authorize_url(&stack, RP, RP_REDIRECT, scope, &[])).await;
    assert_eq!(again.status, 303);

    // Another citizen is asked, approves, and gets the scope.
    let other = Browser::new();
    let page =
        log_in(&other, &stack, &authorize_url(&stack, RP, RP_REDIRECT, scope, &[]), "08023549930", "Level4").await;
    let consent = forms(&page.body)
        .into_iter()
        .find(|f| f.action == "/authorize/consent")
        .unwrap_or_else(|| panic!("{}", page.body));
    let answer = other.submit(&stack.issuer, &consent.set("decision", "approve")).await;
    let (_, tokens) = redeem(&stack, RP, RP_REDIRECT, &answer.redirect_param("code").unwrap()).await;
    assert_eq!(tokens["scope"], scope);
    // Login-based (implicit) consent: user/kontaktinformasjon.read never asked anyone.
}

#[tokio::test(flavor = "multi_thread")]
async fn pushed_requests_are_used_once() {
    let stack = stack().await;
    let pushed = reqwest::Client::new()
        .post(format!("{}/par", stack.issuer))
        .basic_auth(RP, Some(RP_SECRET))
        .form(&[
            ("response_type", "code"),
            ("redirect_uri", RP_REDIRECT),
            ("scope", "openid"),
            ("state", "par-state"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 201);
    let pushed: Value = pushed.json().await.unwrap();
    assert_eq!(pushed["expires_in"], 120);
    let request_uri = pushed["request_uri"].as_str().unwrap();
    assert!(request_uri.starts_with("urn:portvakt:par:"));
    let mut url = url::Url::parse(&format!("{}/authorize", stack.issuer)).unwrap();
    url.query_pairs_mut().append_pair("client_id", RP).append_pair("request_uri", request_uri);
    let browser = Browser::new();
    let answer = log_in(&browser, &stack, url.as_str(), CITIZEN, "Level3").await;
    assert_eq!(answer.redirect_param("state").as_deref(), Some("par-state"));
    let (status, _) = redeem(&stack, RP, RP_REDIRECT, &answer.redirect_param("code").unwrap()).await;
    assert_eq!(status, 200);
    let reused = Browser::new().get(url.as_str()).await;
    assert_eq!(reused.status, 400);
    assert!(reused.body.contains("already used"), "{}", reused.body);
    // A pushed request is checked when pushed.
    let bad = reqwest::Client::new()
        .post(format!("{}/par", stack.issuer))
        .basic_auth(RP, Some(RP_SECRET))
        .form(&[("response_type", "code"), ("redirect_uri", "http://evil.example/cb"), ("scope", "openid")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let unauthenticated = reqwest::Client::new()
        .post(format!("{}/par", stack.issuer))
        .form(&[("client_id", RP), ("response_type", "code"), ("redirect_uri", RP_REDIRECT), ("scope", "openid")])
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn untrusted_clients_get_an_error_page_and_other_errors_go_back_to_the_client() {
    let stack = stack().await;
    let browser = Browser::new();
    let unknown = browser.get(&authorize_url(&stack, "nobody", RP_REDIRECT, "openid", &[])).await;
    assert_eq!((unknown.status, unknown.location.is_none()), (400, true));
    assert!(unknown.body.contains("Unknown client"));
    let evil = browser.get(&authorize_url(&stack, RP, "http://127.0.0.1:8765/callback/evil", "openid", &[])).await;
    assert_eq!((evil.status, evil.location.is_none()), (400, true), "never a redirect to an unregistered URI");
    // A known client with a registered URI gets the error by redirect, with its state.
    let scope =
        browser.get(&authorize_url(&stack, RP, RP_REDIRECT, "openid global/kontaktinformasjon.read", &[])).await;
    assert_eq!(scope.redirect_param("error").as_deref(), Some("invalid_scope"));
    assert_eq!(scope.redirect_param("state").as_deref(), Some("the-state"));
    let mut no_pkce = url::Url::parse(&format!("{}/authorize", stack.issuer)).unwrap();
    no_pkce
        .query_pairs_mut()
        .append_pair("client_id", "demo-spa")
        .append_pair("redirect_uri", SPA_REDIRECT)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid")
        .append_pair("state", "s");
    let answer = browser.get(no_pkce.as_str()).await;
    assert_eq!(answer.redirect_param("error").as_deref(), Some("invalid_request"));
    assert!(answer.redirect_param("error_description").unwrap().contains("PKCE"));
    let token_flow =
        browser.get(&authorize_url(&stack, RP, RP_REDIRECT, "openid", &[("response_type", "token")])).await;
    assert_eq!(token_flow.status, 400, "a repeated parameter is refused: {}", token_flow.body);
    // response_mode=form_post answers with a self-submitting form to the client.
    let page = log_in(
        &browser,
        &stack,
        &authorize_url(&stack, RP, RP_REDIRECT, "openid", &[("response_mode", "form_post")]),
        CITIZEN,
        "Level3",
    )
    .await;
    assert_eq!(page.status, 200);
    let posted = forms(&page.body).into_iter().next().unwrap();
    assert_eq!(posted.action, RP_REDIRECT);
    assert!(posted.fields.iter().any(|(k, _)| k == "code"));
    assert!(posted.fields.iter().any(|(k, v)| k == "state" && v == "the-state"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_login_form_takes_only_valid_personal_numbers() {
    let stack = stack().await;
    let browser = Browser::new();
    let url = authorize_url(&stack, RP, RP_REDIRECT, "openid", &[]);
    for (pid, message) in [("12345678900", "check digits"), ("1234", "11 digits"), ("2307942193x", "11 digits")] {
        let page = log_in(&browser, &stack, &url, pid, "Level3").await;
        assert_eq!(page.status, 400, "{pid}");
        assert!(page.body.contains(message), "{pid}: {}", page.body);
    }
    // A d-nummer (first digit + 4) with valid check digits is a valid login.
    let d_number = "41018036736";
    assert!(portvakt::personid::is_valid(d_number) && portvakt::personid::is_d_number(d_number));
    assert_eq!(log_in(&browser, &stack, &url, d_number, "Level3").await.status, 303);
    // A form posted from another browser (no interaction cookie) is refused.
    let page = Browser::new().get(&url).await;
    let form = forms(&page.body).into_iter().find(|f| f.action == "/authorize/login").unwrap();
    let stranger = Browser::new().submit(&stack.issuer, &form.set("pid", CITIZEN).set("acr", "Level3")).await;
    assert_eq!(stranger.status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn codes_are_bound_to_client_redirect_and_verifier() {
    let stack = stack().await;
    let browser = Browser::new();
    let mut codes = Vec::new();
    for _ in 0..3 {
        let answer = log_in(
            &browser,
            &stack,
            &authorize_url(&stack, RP, RP_REDIRECT, "openid", &[("prompt", "login")]),
            CITIZEN,
            "Level3",
        )
        .await;
        codes.push(answer.redirect_param("code").unwrap());
    }
    let (status, body) = redeem(&stack, "demo-spa", SPA_REDIRECT, &codes[0]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    // Another client presenting the code neither burns it nor revokes anything.
    let (status, body) = redeem(&stack, RP, RP_REDIRECT, &codes[0]).await;
    assert_eq!(status, 200, "the rightful client still redeems it: {body}");
    let response = reqwest::Client::new()
        .post(format!("{}/token", stack.issuer))
        .basic_auth(RP, Some(RP_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &codes[1]),
            ("redirect_uri", RP_REDIRECT),
            ("code_verifier", &"x".repeat(43)),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert!(body["error_description"].as_str().unwrap().contains("code_verifier does not match"), "{body}");
    let wrong_secret = reqwest::Client::new()
        .post(format!("{}/token", stack.issuer))
        .basic_auth(RP, Some("wrong"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &codes[2]),
            ("redirect_uri", RP_REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_secret.status(), 401);
    assert!(wrong_secret.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    let wrong_redirect = reqwest::Client::new()
        .post(format!("{}/token", stack.issuer))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &codes[2]),
            ("redirect_uri", "http://127.0.0.1:8765/other"),
            ("code_verifier", VERIFIER),
            ("client_id", RP),
            ("client_secret", RP_SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_redirect.status(), 400);
    let unsupported = reqwest::Client::new()
        .post(format!("{}/token", stack.issuer))
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    let body: Value = unsupported.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_grant_type");
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_ends_the_session_and_calls_the_other_clients_front_channel() {
    let stack = stack().await;
    let browser = Browser::new();
    let rp_tokens = tokens_for(&stack, &browser, RP, RP_REDIRECT, "openid", "Level3").await;
    let spa = browser.get(&authorize_url(&stack, "demo-spa", SPA_REDIRECT, "openid", &[])).await;
    let (_, spa_tokens) = redeem(&stack, "demo-spa", SPA_REDIRECT, &spa.redirect_param("code").unwrap()).await;
    let sid = decode_jwt(rp_tokens["id_token"].as_str().unwrap())["sid"].as_str().unwrap().to_owned();

    let mut logout = url::Url::parse(&format!("{}/endsession", stack.issuer)).unwrap();
    logout
        .query_pairs_mut()
        .append_pair("id_token_hint", rp_tokens["id_token"].as_str().unwrap())
        .append_pair("post_logout_redirect_uri", "http://127.0.0.1:8765/logged-out")
        .append_pair("state", "bye");
    let page = browser.get(logout.as_str()).await;
    assert_eq!(page.status, 200, "{}", page.body);
    // demo-spa is told in a front-channel iframe, with iss and sid; demo-rp (which asked) is not.
    let expected = format!(
        "http://127.0.0.1:8765/spa-frontchannel-logout?iss={}&sid={}",
        url::form_urlencoded::byte_serialize(stack.issuer.as_bytes()).collect::<String>(),
        url::form_urlencoded::byte_serialize(sid.as_bytes()).collect::<String>()
    );
    let html = scraper::Html::parse_document(&page.body);
    let frames: Vec<String> = html
        .select(&scraper::Selector::parse("iframe").unwrap())
        .filter_map(|frame| frame.value().attr("src").map(str::to_owned))
        .collect();
    assert_eq!(frames, [expected], "{}", page.body);
    assert!(!page.body.contains("8765/frontchannel-logout"));
    assert!(page.body.contains("http://127.0.0.1:8765/logged-out?state=bye"));
    assert!(browser.cookie("portvakt_sso").is_none(), "the session cookie is cleared");
    // The session's tokens died with it: the refresh token and the opaque access token.
    let refresh = reqwest::Client::new()
        .post(format!("{}/token", stack.issuer))
        .basic_auth(RP, Some(RP_SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", rp_tokens["refresh_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status(), 400);
    assert_eq!(tokeninfo(&stack, spa_tokens["access_token"].as_str().unwrap()).await, json!({"active": false}));
    // An unregistered post-logout URI is refused.
    let mut evil = url::Url::parse(&format!("{}/endsession", stack.issuer)).unwrap();
    evil.query_pairs_mut()
        .append_pair("id_token_hint", rp_tokens["id_token"].as_str().unwrap())
        .append_pair("post_logout_redirect_uri", "http://evil.example/");
    assert_eq!(browser.get(evil.as_str()).await.status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_machine_token_revoked_by_its_own_client_is_inactive_and_no_other_client_can_revoke_it() {
    let stack = stack().await;
    let client = machine_client(&stack, false);
    let http = reqwest::Client::new();
    let machine = client.token(&http, &["global/idporten.authlevel.read"], &json!({})).await.unwrap();
    let token = machine["access_token"].as_str().unwrap();
    // Another client's revocation is a no-op (RFC 7009 §2.2: 200 all the same).
    assert_eq!(revoke(&stack, RP, token).await, 200);
    assert_eq!(tokeninfo(&stack, token).await["active"], true);
    // Its own client revokes it, authenticating with private_key_jwt.
    let assertion = client.assertion(&[], &json!({"sub": "demo-maskinporten"})).unwrap();
    let revoked = http
        .post(format!("{}/revoke", stack.issuer))
        .form(&[
            ("token", token),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", assertion.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200, "{}", revoked.text().await.unwrap());
    assert_eq!(tokeninfo(&stack, token).await, json!({"active": false}));
    // The issuer's own resource (authlevel) asks the same question: refused.
    let authlevel = http
        .post(format!("{}/authlevel/rest/v1/sikkerhetsnivaa", stack.issuer))
        .bearer_auth(token)
        .json(&json!({"personidentifikator": CITIZEN}))
        .send()
        .await
        .unwrap();
    assert_eq!(authlevel.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn tokeninfo_needs_an_authenticated_caller_and_tells_active_from_not() {
    let stack = stack().await;
    let client = machine_client(&stack, false);
    let http = reqwest::Client::new();
    let machine = client.token(&http, &["global/kontaktinformasjon.read"], &json!({})).await.unwrap();
    let token = machine["access_token"].as_str().unwrap();
    let anonymous = http.post(format!("{}/tokeninfo", stack.issuer)).form(&[("token", token)]).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let info = tokeninfo(&stack, token).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["client_id"], "demo-maskinporten");
    assert_eq!(info["consumer"]["ID"], "0192:991825827");
    assert!(info["expires_in"].as_i64().unwrap() > 0);
    for unknown in ["garbage", "a.b.c"] {
        assert_eq!(tokeninfo(&stack, unknown).await, json!({"active": false}));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_jwt_bearer_grant_works_with_x5c_and_kid_and_its_tokens_pass_the_gateway() {
    let stack = stack().await;
    let http = reqwest::Client::new();
    for by_kid in [false, true] {
        let answer =
            machine_client(&stack, by_kid).token(&http, &["global/idporten.authlevel.read"], &json!({})).await.unwrap();
        assert_eq!(answer["token_type"], "Bearer");
        assert_eq!(answer["expires_in"], 120);
        let claims = decode_jwt(answer["access_token"].as_str().unwrap());
        assert_eq!(claims["client_amr"], if by_kid { "private_key_jwt" } else { "virksomhetssertifikat" });
        assert_eq!(claims["consumer"], json!({"authority": "iso6523-actorid-upis", "ID": "0192:991825827"}));
        assert!(claims.get("sub").is_none(), "machine tokens have no sub");
        // The gateway accepts it and the issuer's authlevel resource answers (no logins yet: 404).
        let response = http
            .post(format!("{}/authlevel/rest/v1/sikkerhetsnivaa", stack.portvakt.gateway))
            .bearer_auth(answer["access_token"].as_str().unwrap())
            .json(&json!({"personidentifikator": CITIZEN}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
    }
    // resource makes the token audience-restricted.
    let answer = machine_client(&stack, true)
        .token(&http, &["global/kontaktinformasjon.read"], &json!({"resource": ["https://api.example/"]}))
        .await
        .unwrap();
    assert_eq!(decode_jwt(answer["access_token"].as_str().unwrap())["aud"], "https://api.example/");
    // A grant signed by jsonwebtoken (not by Portvakt's own client code) is accepted too.
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(
        &std::fs::read(project_path("config/dev/demo-maskinporten.key.pem")).unwrap(),
    )
    .unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("demo-maskinporten".into());
    let now = now();
    let assertion = jsonwebtoken::encode(
        &header,
        &json!({"aud": stack.issuer, "iss": "demo-maskinporten", "scope": "global/sertifikat.read", "iat": now, "exp": now + 60, "jti": "independent-1"}),
        &key,
    )
    .unwrap();
    let (status, body) = grant(&stack, &assertion).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_bad_grant_is_refused_with_its_maskinporten_code() {
    let stack = stack().await;
    let client = machine_client(&stack, false);
    let scope = ["global/kontaktinformasjon.read"];
    let now = now();
    let mut cases: Vec<(String, &str, &str)> = vec![
        (client.assertion(&scope, &json!({"aud": "https://maskinporten.no/"})).unwrap(), "MP-110", "aud"),
        (client.assertion(&scope, &json!({"iat": now - 300, "exp": now - 200})).unwrap(), "MP-130", "expired"),
        (client.assertion(&scope, &json!({"iat": now, "exp": now + 121})).unwrap(), "MP-130", "exp − iat"),
        (client.assertion(&scope, &json!({"iat": now + 60, "exp": now + 100})).unwrap(), "MP-130", "iat"),
        (
            client.assertion(&["global/kontaktinformasjon.read", "user/kontaktinformasjon.read"], &json!({})).unwrap(),
            "MP-201",
            "not allowed",
        ),
        (client.assertion(&["made-up/scope"], &json!({})).unwrap(), "MP-200", "does not exist"),
        (client.assertion(&["demo:not-granted.read"], &json!({})).unwrap(), "MP-250", "not been granted"),
        (client.assertion(&scope, &json!({"iss": "nobody"})).unwrap(), "MP-100", "Unknown client"),
    ];
    // Reused jti.
    let once = client.assertion(&scope, &json!({"jti": "only-once"})).unwrap();
    assert_eq!(grant(&stack, &once).await.0, 200);
    cases.push((once, "MP-012", "used before"));
    // Bad signature: the real certificate, a different key.
    let forged = {
        let mut parts: Vec<String> =
            client.assertion(&scope, &json!({})).unwrap().split('.').map(str::to_owned).collect();
        let other =
            machine_client(&stack, false).assertion(&scope, &json!({"scope": "global/sertifikat.read"})).unwrap();
        parts[1] = other.split('.').nth(1).unwrap().to_owned();
        parts.join(".")
    };
    cases.push((forged, "MP-124", "signature"));
    // alg none.
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": "demo-maskinporten"})),
        b64(&json!({"aud": stack.issuer, "iss": "demo-maskinporten", "scope": scope[0], "iat": now, "exp": now + 60}))
    );
    cases.push((unsigned, "MP-011", "none"));
    // x5c as a string instead of an array.
    let x5c_string = {
        let cert = std::fs::read_to_string(project_path("config/dev/demo-maskinporten.cert.pem")).unwrap();
        let der: String = cert.lines().filter(|l| !l.starts_with("-----")).collect();
        let header = json!({"alg": "RS256", "x5c": der});
        let key = portvakt::token::sign::SigningKey::from_pem_file(
            &project_path("config/dev/demo-maskinporten.key.pem"),
            portvakt::token::Alg::RS256,
            None,
        )
        .unwrap();
        portvakt::token::sign::sign_compact(
            &header,
            &json!({"aud": stack.issuer, "iss": "demo-maskinporten", "scope": scope[0], "iat": now, "exp": now + 60}),
            |m| key.sign_bytes(m),
        )
        .unwrap()
    };
    cases.push((x5c_string, "MP-123", "x5c"));
    // A certificate from an untrusted CA (self-signed, with the right organisation number).
    let untrusted = {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let cert = demo_leaf_params(None).self_signed(&pair).unwrap();
        x5c_grant(&stack, &pair, &[&cert])
    };
    cases.push((untrusted, "MP-120", "invalid certificate"));

    for (assertion, code, words) in cases {
        let (status, body) = grant(&stack, &assertion).await;
        assert_eq!(status, 400, "{code}: {body}");
        assert_eq!(body["error_uri"], format!("{}/errors/{code}", stack.issuer), "{body}");
        let description = body["error_description"].as_str().unwrap();
        assert!(description.contains(words), "{code}: {description}");
        assert!(description.contains("(trace_id: "), "{description}");
        let expected_error = match code {
            "MP-011" => "invalid_request",
            "MP-200" | "MP-201" | "MP-250" => "invalid_scope",
            _ => "invalid_grant",
        };
        assert_eq!(body["error"], expected_error, "{code}: {body}");
    }
    // client_credentials with a private_key_jwt client assertion works for the same client.
    let assertion =
        client.assertion(&[], &json!({"sub": "demo-maskinporten", "aud": format!("{}/token", stack.issuer)})).unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/token", stack.issuer))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "global/sertifikat.read"),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", &assertion),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["scope"], "global/sertifikat.read", "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_opaque_token_stops_at_the_gateway_within_the_cache_bound_and_made_up_ones_cost_little() {
    // One second of caching for a good answer; the default config's bound is stated in the README.
    let stack = stack_with(|config| {
        config.replace(
            "client_id = \"portvakt-gateway\",",
            "client_id = \"portvakt-gateway\", max_cache_seconds = 1, calls_per_client_per_second = 5,",
        )
    })
    .await;
    let scope = "openid krr:user/kontaktinformasjon.read";
    let tokens = tokens_for(&stack, &Browser::new(), "demo-spa", SPA_REDIRECT, scope, "Level4").await;
    let opaque = tokens["access_token"].as_str().unwrap();
    let http = reqwest::Client::new();
    let echo = |token: String| {
        let request = http.get(format!("{}/echo", stack.portvakt.gateway)).bearer_auth(token);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(echo(opaque.to_owned()).await, 200);
    // A public client revokes with its client_id (RFC 7009 §2.1).
    let revoked = http
        .post(format!("{}/revoke", stack.issuer))
        .form(&[("token", opaque), ("client_id", "demo-spa")])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200, "{}", revoked.text().await.unwrap());
    let refused_after = std::time::Instant::now();
    eventually("the gateway to refuse the revoked token", || async {
        (echo(opaque.to_owned()).await == 401).then_some(())
    })
    .await;
    assert!(refused_after.elapsed() < Duration::from_secs(3), "within the 1 s bound (and a little)");

    // The same made-up token again and again costs one call; many made-up tokens from one client
    // are cut off at its rate.
    let made_up = "IxC0B76vlWl3fiQhAwZUmD0hr_PPwC9hSIXRdoUslPU=";
    for _ in 0..3 {
        assert_eq!(echo(made_up.to_owned()).await, 401);
    }
    let mut statuses = Vec::new();
    for i in 0..20 {
        statuses.push(echo(format!("made-up-token-{i}")).await);
    }
    assert!(statuses.iter().all(|s| [401, 429].contains(s)), "{statuses:?}");
    assert!(statuses.contains(&429), "a flood of unknown tokens is cut off: {statuses:?}");
    let metrics = stack.portvakt.metrics().await;
    assert_eq!(metric(&metrics, "portvakt_introspections_total{result=\"inactive_remembered\"}"), 2.0, "{metrics}");
    assert!(metric(&metrics, "portvakt_introspections_total{result=\"refused_rate\"}") >= 1.0, "{metrics}");
    assert!(metric(&metrics, "portvakt_introspections_total{result=\"inactive\"}") <= 12.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_validates_opaque_tokens_by_introspection_and_caches_the_answer() {
    let stack = stack().await;
    let scope = "openid krr:user/kontaktinformasjon.read";
    let tokens = tokens_for(&stack, &Browser::new(), "demo-spa", SPA_REDIRECT, scope, "Level4").await;
    let opaque = tokens["access_token"].as_str().unwrap();
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let response = http.get(format!("{}/echo", stack.portvakt.gateway)).bearer_auth(opaque).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["headers"]["x-portvakt-pid"][0], CITIZEN);
        assert_eq!(body["headers"]["x-portvakt-client-id"][0], "demo-spa");
        assert_eq!(body["headers"]["x-portvakt-acr"][0], "Level4");
    }
    let metrics = stack.portvakt.metrics().await;
    assert_eq!(
        metric(&metrics, "portvakt_introspections_total{result=\"active\"}"),
        1.0,
        "cached after the first call: {metrics}"
    );
    // A refresh token is not an access token (inactive at /tokeninfo), nor is an id_token: 401.
    let scope = "openid user/kontaktinformasjon.read";
    let rp_tokens = tokens_for(&stack, &Browser::new(), RP, RP_REDIRECT, scope, "Level4").await;
    for (token, words) in [
        (rp_tokens["refresh_token"].as_str().unwrap(), "not active"),
        (rp_tokens["id_token"].as_str().unwrap(), "at+jwt"),
    ] {
        let response = http.get(format!("{}/echo", stack.portvakt.gateway)).bearer_auth(token).send().await.unwrap();
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert!(body["error_description"].as_str().unwrap().contains(words), "{body}");
    }
    // An unknown opaque token is inactive: 401.
    let response = http
        .get(format!("{}/echo", stack.portvakt.gateway))
        .bearer_auth("IxC0B76vlWl3fiQhAwZUmD0hr_PPwC9hSIXRdoUslPU=")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert!(body["error_description"].as_str().unwrap().contains("not active"), "{body}");
    assert_eq!(stack.upstream.hits(), 3);
    let _ = &stack.ports;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_pid_leaves_the_personal_number_out_of_every_token_and_userinfo() {
    let stack = stack().await;
    let tokens = tokens_for(&stack, &Browser::new(), RP, RP_REDIRECT, "openid profile no_pid", "Level3").await;
    let id_token = decode_jwt(tokens["id_token"].as_str().unwrap());
    let access = decode_jwt(tokens["access_token"].as_str().unwrap());
    assert!(id_token.get("pid").is_none() && access.get("pid").is_none(), "{id_token} {access}");
    assert!(id_token["sub"].is_string(), "the pairwise sub still identifies the citizen to the client");
    let info = userinfo(&stack, tokens["access_token"].as_str().unwrap()).await;
    assert!(info.get("pid").is_none(), "{info}");
    // A refresh asking for fewer scopes cannot shed no_pid and get the pid back.
    let refreshed: Value = reqwest::Client::new()
        .post(format!("{}/token", stack.issuer))
        .basic_auth(RP, Some(RP_SECRET))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ("scope", "openid profile"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(refreshed["scope"], "openid profile", "{refreshed}");
    assert!(decode_jwt(refreshed["access_token"].as_str().unwrap()).get("pid").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_citizen_facing_client_cannot_mint_machine_tokens_naming_a_citizen() {
    let stack = stack().await;
    // demo-rp shares the demo certificate's organisation, but it is an api_klient client.
    let dev = project_path("config/dev");
    let impostor = MaskinportenClient::from_files(
        &stack.issuer,
        RP,
        &dev.join("demo-maskinporten.key.pem"),
        Some(&dev.join("demo-maskinporten.cert.pem")),
        None,
    )
    .unwrap();
    let assertion = impostor.assertion(&["user/kontaktinformasjon.read"], &json!({"pid": CITIZEN})).unwrap();
    let (status, body) = grant(&stack, &assertion).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("unauthorized_client")), "{body}");
    let response = reqwest::Client::new()
        .post(format!("{}/token", stack.issuer))
        .basic_auth(RP, Some(RP_SECRET))
        .form(&[("grant_type", "client_credentials"), ("scope", "user/kontaktinformasjon.read")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.json::<Value>().await.unwrap()["error"], "unauthorized_client");
}

#[tokio::test(flavor = "multi_thread")]
async fn logging_out_without_a_hint_asks_first() {
    let stack = stack().await;
    let browser = Browser::new();
    log_in(&browser, &stack, &authorize_url(&stack, RP, RP_REDIRECT, "openid", &[]), CITIZEN, "Level3").await;
    // A bare GET (an <img> on another site could send it) does not log out…
    let page = browser.get(&format!("{}/endsession", stack.issuer)).await;
    assert_eq!(page.status, 200);
    assert!(browser.cookie("portvakt_sso").is_some());
    assert_eq!(
        browser.get(&authorize_url(&stack, RP, RP_REDIRECT, "openid", &[])).await.status,
        303,
        "still logged in"
    );
    // …a forged form without the page's token does not either…
    let forged = Form { action: "/endsession".into(), fields: vec![("confirm".into(), "guess".into())] };
    assert_eq!(browser.submit(&stack.issuer, &forged).await.status, 200);
    assert_eq!(browser.get(&authorize_url(&stack, RP, RP_REDIRECT, "openid", &[])).await.status, 303);
    // …but the citizen confirming on the page does.
    let form = forms(&page.body).into_iter().find(|f| f.action == "/endsession").expect("a confirmation form");
    let done = browser.submit(&stack.issuer, &form).await;
    assert!(done.body.contains("logged out"), "{}", done.body);
    assert!(browser.cookie("portvakt_sso").is_none());
    assert_eq!(
        browser.get(&authorize_url(&stack, RP, RP_REDIRECT, "openid", &[])).await.status,
        200,
        "the form is back"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_authlevel_resource_checks_the_token_itself() {
    let stack = stack().await;
    let url = format!("{}/authlevel/rest/v1/sikkerhetsnivaa", stack.issuer);
    let http = reqwest::Client::new();
    let body = json!({"personidentifikator": CITIZEN});
    // Straight to the issuer, past the gateway: still no answer without the right token.
    let response = http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let krr =
        machine_client(&stack, false).token(&http, &["global/kontaktinformasjon.read"], &json!({})).await.unwrap();
    let response = http.post(&url).bearer_auth(krr["access_token"].as_str().unwrap()).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 403);
    let forged = format!("{}x", krr["access_token"].as_str().unwrap());
    assert_eq!(http.post(&url).bearer_auth(forged).json(&body).send().await.unwrap().status(), 401);
    let right =
        machine_client(&stack, false).token(&http, &["global/idporten.authlevel.read"], &json!({})).await.unwrap();
    let response =
        http.post(&url).bearer_auth(right["access_token"].as_str().unwrap()).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 404, "never logged in");
    // A citizen's token (it carries pid) is refused: authlevel is for organisations.
    let browser = Browser::new();
    let answer =
        log_in(&browser, &stack, &authorize_url(&stack, RP, RP_REDIRECT, "openid", &[]), CITIZEN, "Level4").await;
    let (_, tokens) = redeem(&stack, RP, RP_REDIRECT, &answer.redirect_param("code").unwrap()).await;
    let response =
        http.post(&url).bearer_auth(tokens["access_token"].as_str().unwrap()).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 403);
    let response =
        http.post(&url).bearer_auth(right["access_token"].as_str().unwrap()).json(&body).send().await.unwrap();
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"personidentifikator": CITIZEN, "harbruktnivaa4": true})
    );
}

/// The peak resident memory (`VmHWM`) of a process, in KiB.
fn peak_memory_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).expect("VmHWM in /proc/PID/status");
    line.trim().trim_end_matches("kB").trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_unauthenticated_authorize_requests_gets_503_and_memory_stays_bounded() {
    // 1 MiB for login pages in progress: a few hundred of these fill it.
    let stack = stack_with(|config| {
        let bounded = config
            .replace("max_bytes = 134217728 ", "max_bytes = 1048576 ")
            .replace("retry_after_seconds = 30 ", "retry_after_seconds = 7 ");
        assert_ne!(bounded, config, "the default config names the store bounds");
        bounded
    })
    .await;
    // Each request leaves a login page of about 4.5 KB behind for 15 minutes (state and nonce
    // are kept to be sent back): unbounded, the flood below would keep about 55 MB.
    let big = "x".repeat(2000);
    let url = authorize_url(&stack, RP, RP_REDIRECT, "openid", &[("nonce", big.as_str())])
        .replace("state=the-state", &format!("state={big}"));
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let pid = stack.portvakt.pid();
    let warm = http.get(&url).send().await.unwrap();
    assert_eq!(warm.status(), 200, "a login page while there is room");
    let before = peak_memory_kib(pid);

    const REQUESTS: usize = 12_000;
    const CLIENTS: usize = 16;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (http, url) = (http.clone(), url.clone());
        tasks.spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..REQUESTS / CLIENTS {
                let response = http.get(&url).send().await.unwrap();
                let status = response.status().as_u16();
                let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
                let body = response.text().await.unwrap();
                seen.push((status, retry_after, body));
            }
            seen
        });
    }
    let mut answers = Vec::new();
    while let Some(seen) = tasks.join_next().await {
        answers.extend(seen.unwrap());
    }
    let refused: Vec<_> = answers.iter().filter(|(status, ..)| *status != 200).collect();
    assert!(refused.len() > REQUESTS / 2, "the bound was reached: {} refused", refused.len());
    for (status, retry_after, body) in &refused {
        assert!(matches!(status, 503 | 429), "a full store answers 503 or 429, not {status}: {body}");
        assert_eq!(retry_after.as_deref(), Some("7"), "with Retry-After: {status} {body}");
        assert!(body.contains("login page"), "says what is full: {body}");
    }
    let grown_kib = peak_memory_kib(pid).saturating_sub(before);
    assert!(grown_kib < 24 * 1024, "peak resident memory grew by {grown_kib} KiB during the flood");
    // Other kinds of state have their own room: a machine client still gets tokens.
    let token = machine_client(&stack, true).token(&http, &["global/sertifikat.read"], &json!({})).await;
    assert!(token.is_ok(), "{token:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn revoking_an_access_or_a_refresh_token_ends_every_access_token_of_its_grant() {
    let stack = stack_with(with_opaque_rp).await;
    for client in [RP, OPAQUE_RP] {
        for revoked in ["access token", "refresh token"] {
            let case = format!("{client}, {revoked} revoked");
            let first = tokens_for(&stack, &Browser::new(), client, RP_REDIRECT, "openid profile", "Level3").await;
            let refresh = first["refresh_token"].as_str().unwrap();
            let (status, second) =
                token_request(&stack, client, &[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await;
            assert_eq!(status, 200, "{case}: {second}");
            let access = [first["access_token"].as_str().unwrap(), second["access_token"].as_str().unwrap()];
            assert_eq!(access[0].split('.').count() == 3, client == RP, "{case}: JWT for demo-rp, opaque otherwise");
            for token in access {
                let info = tokeninfo(&stack, token).await;
                assert_eq!(info["active"], true, "{case}: {info}");
                assert_eq!(info["token_type"], "Bearer", "{case}: {info}");
            }
            // Neither an id_token nor a refresh token is an access token.
            for other in [&first["id_token"], &second["refresh_token"]] {
                assert_eq!(tokeninfo(&stack, other.as_str().unwrap()).await, json!({"active": false}), "{case}");
            }
            let target = if revoked == "access token" { access[0] } else { second["refresh_token"].as_str().unwrap() };
            assert_eq!(revoke(&stack, client, target).await, 200, "{case}");
            for token in access {
                assert_eq!(tokeninfo(&stack, token).await, json!({"active": false}), "{case}");
                assert_eq!(userinfo(&stack, token).await["error"], "invalid_token", "{case}");
            }
        }
    }
    // A client cannot revoke another client's token.
    let tokens = tokens_for(&stack, &Browser::new(), RP, RP_REDIRECT, "openid profile", "Level3").await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(revoke(&stack, OPAQUE_RP, access).await, 200);
    assert_eq!(tokeninfo(&stack, access).await["active"], true);
}

/// Certificate parameters naming demo-maskinporten's organisation, as a virksomhetssertifikat
/// does, with `eku` (none: no extendedKeyUsage extension).
fn demo_leaf_params(eku: Option<rcgen::ExtendedKeyUsagePurpose>) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, "DEMO VIRKSOMHET AS");
    params.distinguished_name.push(rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]), "991825827");
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = eku.into_iter().collect();
    params
}

/// A JWT-bearer grant for demo-maskinporten, signed with `key` and carrying `chain` (leaf
/// first) as its `x5c`.
fn x5c_grant(stack: &Stack, key: &rcgen::KeyPair, chain: &[&rcgen::Certificate]) -> String {
    use base64::Engine;
    let x5c: Vec<String> = chain.iter().map(|c| base64::engine::general_purpose::STANDARD.encode(c.der())).collect();
    let key =
        portvakt::token::sign::SigningKey::from_pem(key.serialize_pem().as_bytes(), portvakt::token::Alg::RS256, None)
            .unwrap();
    let now = now();
    portvakt::token::sign::sign_compact(
        &json!({"alg": "RS256", "x5c": x5c}),
        &json!({"aud": stack.issuer, "iss": "demo-maskinporten", "scope": "global/sertifikat.read", "iat": now, "exp": now + 60, "jti": portvakt::issuer::random_token()}),
        |m| key.sign_bytes(m),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn x5c_intermediates_must_be_cas_within_their_path_length_and_leaves_must_allow_client_auth() {
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose as Eku, IsCa, KeyPair, KeyUsagePurpose};
    let stack = stack().await;
    // The development test CA, its subject encoded as in config/dev/test-ca.cert.pem.
    let ca_key =
        KeyPair::from_pem(&std::fs::read_to_string(project_path("config/dev/test-ca.key.pem")).unwrap()).unwrap();
    let mut ca = CertificateParams::default();
    ca.distinguished_name = rcgen::DistinguishedName::new();
    ca.distinguished_name.push(rcgen::DnType::CountryName, rcgen::DnValue::PrintableString("NO".try_into().unwrap()));
    ca.distinguished_name.push(rcgen::DnType::OrganizationName, "Portvakt development CA");
    ca.distinguished_name.push(rcgen::DnType::CommonName, "Portvakt Test CA (development only)");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = rcgen::Issuer::new(ca, ca_key);
    // An intermediate below `issuer`.
    let intermediate = |name: &str, is_ca: IsCa, usages: Vec<KeyUsagePurpose>, issuer: &rcgen::Issuer<'_, KeyPair>| {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.is_ca = is_ca;
        params.key_usages = usages;
        let cert = params.signed_by(&key, issuer).unwrap();
        (cert, rcgen::Issuer::new(params, key))
    };
    let signing = || vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let leaf = |eku: Option<Eku>, issuer: &rcgen::Issuer<'_, KeyPair>| {
        let key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let cert = demo_leaf_params(eku).signed_by(&key, issuer).unwrap();
        (cert, key)
    };

    // Good chains pass: an intermediate that may sign, a leaf for client authentication (or
    // any use); a pathLenConstraint of 0 allows the leaf right below it.
    let (good, good_issuer) =
        intermediate("Good intermediate", IsCa::Ca(BasicConstraints::Constrained(0)), signing(), &ca);
    let (cert, key) = leaf(Some(Eku::ClientAuth), &good_issuer);
    let (status, body) = grant(&stack, &x5c_grant(&stack, &key, &[&cert, &good])).await;
    assert_eq!(status, 200, "a good chain: {body}");
    let (cert, key) = leaf(Some(Eku::Any), &ca);
    let (status, body) = grant(&stack, &x5c_grant(&stack, &key, &[&cert])).await;
    assert_eq!(status, 200, "anyExtendedKeyUsage: {body}");

    let mut cases = Vec::new();
    let (not_ca, not_ca_issuer) = intermediate("Not a CA", IsCa::ExplicitNoCa, signing(), &ca);
    let (cert, key) = leaf(Some(Eku::ClientAuth), &not_ca_issuer);
    cases.push((
        "an intermediate without CA=true",
        x5c_grant(&stack, &key, &[&cert, &not_ca]),
        "basicConstraints CA=true",
    ));
    let (short, short_issuer) =
        intermediate("Path length 0", IsCa::Ca(BasicConstraints::Constrained(0)), signing(), &ca);
    let (below, below_issuer) =
        intermediate("Below path length 0", IsCa::Ca(BasicConstraints::Unconstrained), signing(), &short_issuer);
    let (cert, key) = leaf(Some(Eku::ClientAuth), &below_issuer);
    cases.push(("a path longer than pathLen", x5c_grant(&stack, &key, &[&cert, &below, &short]), "pathLenConstraint"));
    let (no_sign, no_sign_issuer) = intermediate(
        "No keyCertSign",
        IsCa::Ca(BasicConstraints::Unconstrained),
        vec![KeyUsagePurpose::DigitalSignature],
        &ca,
    );
    let (cert, key) = leaf(Some(Eku::ClientAuth), &no_sign_issuer);
    cases.push(("an intermediate without keyCertSign", x5c_grant(&stack, &key, &[&cert, &no_sign]), "keyCertSign"));
    let (cert, key) = leaf(Some(Eku::ServerAuth), &good_issuer);
    cases.push(("a leaf for serverAuth only", x5c_grant(&stack, &key, &[&cert, &good]), "clientAuth"));

    for (case, assertion, words) in cases {
        let (status, body) = grant(&stack, &assertion).await;
        assert_eq!(status, 400, "{case}: {body}");
        assert_eq!(body["error"], "invalid_grant", "{case}: {body}");
        assert_eq!(body["error_uri"], format!("{}/errors/MP-120", stack.issuer), "{case}: {body}");
        let description = body["error_description"].as_str().unwrap();
        assert!(description.contains("invalid certificate") && description.contains(words), "{case}: {description}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_issuer_serves_over_tls_when_it_has_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca_pem = std::fs::read_to_string(project_path("config/dev/test-ca.cert.pem")).unwrap();
    let (cert, key) = issued_by_test_ca("issuer", true);
    let (cert_path, key_path) = (dir.path().join("issuer.crt"), dir.path().join("issuer.key"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let ports = Ports::new();
    let tls = format!("[issuer]\ntls = {{ cert = \"{}\", key = \"{}\" }}\n", cert_path.display(), key_path.display());
    // The issuer's own identifier becomes https; the gateway of the default stack, which fetches
    // the issuer's keys without this test CA, is not what this test looks at.
    let config = default_config(&ports, "").replacen("[issuer]\n", &tls, 1).replacen(
        &format!("issuer = \"http://127.0.0.1:{}\"", ports.issuer),
        &format!("issuer = \"https://127.0.0.1:{}\"", ports.issuer),
        1,
    );
    let portvakt = Portvakt::spawn(&config, &ports);
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{}", ports.issuer);
    let url = format!("{base}/.well-known/openid-configuration");
    let discovery: Value =
        eventually("discovery over TLS", || async { client.get(&url).send().await.ok()?.json().await.ok() }).await;
    assert_eq!(discovery["issuer"], base.as_str());
    assert_eq!(discovery["token_endpoint"], format!("{base}/token"));
    // Cleartext on the same port is not an HTTP exchange.
    assert!(
        reqwest::get(format!("http://127.0.0.1:{}/jwk", ports.issuer)).await.map(|r| r.status() != 200).unwrap_or(true)
    );
    drop(portvakt);
}
