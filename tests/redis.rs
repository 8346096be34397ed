//! Many issuers as one service: two full instances of Portvakt share a real `redis-server`
//! (one server, then a three-master cluster). A login, a code, a refresh family, a consent, a
//! used assertion, a revocation and the login history made at one instance hold at the other;
//! single-use items stay single-use across instances; a Redis that goes away fails closed and
//! is used again when it comes back; with AOF a Redis restart loses nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic where a request path may not

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// One instance: its own listeners, the shared issuer identifier, the shared store.
struct Instance {
    portvakt: Portvakt,
    /// Where this instance's issuer listens (its own port).
    base: String,
}

/// Two instances on one store. `store` is the `[issuer.store.redis]` body.
struct Pair {
    a: Instance,
    b: Instance,
    /// The issuer identifier both use (A's address, as in config/examples/cluster).
    issuer: String,
}

fn instance_config(ports: &Ports, issuer: &str, store: &str) -> String {
    let own = issuer_url(ports);
    default_config(ports, &format!("[issuer.store.redis]\n{store}\n"))
        .replace(&format!("issuer = \"{own}\""), &format!("issuer = \"{issuer}\""))
}

async fn pair(store: &str) -> Pair {
    let (ports_a, ports_b) = (Ports::new(), Ports::new());
    let issuer = issuer_url(&ports_a);
    let a = Portvakt::start(&instance_config(&ports_a, &issuer, store), &ports_a).await;
    let b = Portvakt::start(&instance_config(&ports_b, &issuer, store), &ports_b).await;
    Pair {
        a: Instance { portvakt: a, base: issuer.clone() },
        b: Instance { portvakt: b, base: issuer_url(&ports_b) },
        issuer,
    }
}

fn authorize_url(at: &Instance, scope: &str) -> String {
    let mut url = url::Url::parse(&format!("{}/authorize", at.base)).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", RP)
        .append_pair("redirect_uri", RP_REDIRECT)
        .append_pair("response_type", "code")
        .append_pair("scope", scope)
        .append_pair("state", "s")
        .append_pair("code_challenge", CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    url.to_string()
}

/// Log in at `at`'s form; the answer is a consent page or the redirect with the code.
async fn log_in(browser: &Browser, at: &Instance, scope: &str, acr: &str) -> Page {
    let page = browser.get(&authorize_url(at, scope)).await;
    assert_eq!(page.status, 200, "the login form: {}", page.body);
    let form = forms(&page.body).into_iter().find(|f| f.action == "/authorize/login").expect("a login form");
    browser.submit(&at.base, &form.set("pid", CITIZEN).set("acr", acr)).await
}

/// A token-endpoint answer: status, JSON body, `Retry-After`.
async fn answer(request: reqwest::RequestBuilder) -> (u16, Value, Option<String>) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    (status, response.json().await.unwrap_or(Value::Null), retry_after)
}

async fn token(at: &str, form: &[(&str, &str)]) -> (u16, Value, Option<String>) {
    answer(reqwest::Client::new().post(format!("{at}/token")).basic_auth(RP, Some(RP_SECRET)).form(form)).await
}

async fn redeem(at: &str, code: &str) -> (u16, Value) {
    let (status, body, _) = token(
        at,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", RP_REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    (status, body)
}

async fn refresh(at: &str, refresh_token: &str) -> (u16, Value) {
    let (status, body, _) = token(at, &[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await;
    (status, body)
}

async fn introspect(at: &str, token: &str) -> Value {
    reqwest::Client::new()
        .post(format!("{at}/tokeninfo"))
        .basic_auth(RP, Some(RP_SECRET))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn machine_grant(at: &str, assertion: &str) -> (u16, Value, Option<String>) {
    let form = [("grant_type", portvakt::oauth::JWT_BEARER_GRANT), ("assertion", assertion)];
    answer(reqwest::Client::new().post(format!("{at}/token")).form(&form)).await
}

fn code_of(page: &Page) -> String {
    page.redirect_param("code").unwrap_or_else(|| panic!("no code: {} {:?} {}", page.status, page.location, page.body))
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_share_logins_codes_consents_refresh_families_and_revocations() {
    let redis = RedisServer::start().await;
    let pair = pair(&format!("url = \"{}\"", redis.url())).await;
    let (a, b) = (&pair.a, &pair.b);

    // A login at A, its code redeemed at B.
    let browser = Browser::new();
    let scope = "openid user/kontaktinformasjon.read demo:consent.read";
    let consent_page = log_in(&browser, a, scope, "Level3").await;
    let consent = forms(&consent_page.body).into_iter().find(|f| f.action == "/authorize/consent").expect("consent");
    let answer = browser.submit(&a.base, &consent.set("decision", "approve")).await;
    let (status, tokens) = redeem(&b.base, &code_of(&answer)).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["scope"], scope);

    // The SSO cookie from A works at B, and the consent given at A is remembered at B: no
    // login form and no consent page, straight back with a code.
    let again = browser.get(&authorize_url(b, scope)).await;
    assert_eq!(again.status, 303, "SSO and consent from A at B: {}", again.body);
    let (status, second) = redeem(&a.base, &code_of(&again)).await;
    assert_eq!(status, 200, "{second}");

    // A refresh at B; the old refresh token reused at A revokes the family everywhere.
    let old = tokens["refresh_token"].as_str().unwrap();
    let (status, refreshed) = refresh(&b.base, old).await;
    assert_eq!(status, 200, "{refreshed}");
    let (status, reuse) = refresh(&a.base, old).await;
    assert_eq!((status, reuse["error"].as_str()), (400, Some("invalid_grant")), "{reuse}");
    let (status, after) = refresh(&b.base, refreshed["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 400, "the family is revoked at B too: {after}");
    assert_eq!(introspect(&a.base, refreshed["access_token"].as_str().unwrap()).await["active"], false);

    // A revocation at B: tokeninfo at A says inactive.
    let access = second["access_token"].as_str().unwrap();
    assert_eq!(introspect(&a.base, access).await["active"], true);
    let revoked = reqwest::Client::new()
        .post(format!("{}/revoke", b.base))
        .basic_auth(RP, Some(RP_SECRET))
        .form(&[("token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    assert_eq!(introspect(&a.base, access).await["active"], false, "revoked at B, inactive at A");

    // The keys are Portvakt's, under its prefix, and hold no personal number.
    let keys = redis.cli(&["--scan", "--pattern", "*"]).unwrap();
    assert!(keys.lines().all(|k| k.starts_with("portvakt:")), "{keys}");
    assert!(!keys.contains(CITIZEN), "a personidentifikator in a key name: {keys}");
}

#[tokio::test(flavor = "multi_thread")]
async fn single_use_items_are_single_use_across_instances() {
    let redis = RedisServer::start().await;
    let pair = pair(&format!("url = \"{}\"", redis.url())).await;
    let (a, b) = (&pair.a, &pair.b);

    // An assertion used at A and replayed at B is refused (MP-012).
    let client = demo_maskinporten(&pair.issuer);
    let assertion = client.assertion(&["global/kontaktinformasjon.read"], &json!({})).unwrap();
    assert_eq!(machine_grant(&a.base, &assertion).await.0, 200);
    let (status, replay, _) = machine_grant(&b.base, &assertion).await;
    assert_eq!(status, 400, "{replay}");
    assert!(replay["error_uri"].as_str().unwrap().ends_with("MP-012"), "{replay}");

    // 50 redemptions of one code race across both instances: exactly one wins.
    let browser = Browser::new();
    let code = code_of(&log_in(&browser, a, "openid", "Level3").await);
    let racers = (0..50).map(|i| {
        let code = code.clone();
        let at = if i % 2 == 0 { a.base.clone() } else { b.base.clone() };
        async move { redeem(&at, &code).await.0 }
    });
    let outcomes = futures_util::future::join_all(racers).await;
    assert_eq!(outcomes.iter().filter(|s| **s == 200).count(), 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|s| *s == 200 || *s == 400), "{outcomes:?}");

    // A code replayed at the other instance revokes what its first redemption issued.
    let code = code_of(&browser.get(&authorize_url(a, "openid")).await);
    let (status, first) = redeem(&a.base, &code).await;
    assert_eq!(status, 200, "{first}");
    let access = first["access_token"].as_str().unwrap();
    assert_eq!(introspect(&b.base, access).await["active"], true);
    assert_eq!(redeem(&b.base, &code).await.0, 400);
    assert_eq!(introspect(&a.base, access).await["active"], false, "the replay revoked the first redemption's tokens");

    // Two instances racing with one refresh token: exactly one new token, and the loser's
    // use is reuse, which revokes the family.
    let code = code_of(&browser.get(&authorize_url(a, "openid")).await);
    let (_, tokens) = redeem(&a.base, &code).await;
    let old = tokens["refresh_token"].as_str().unwrap().to_owned();
    let (first, second) = tokio::join!(refresh(&a.base, &old), refresh(&b.base, &old));
    let winners: Vec<&Value> = [&first, &second].into_iter().filter(|(s, _)| *s == 200).map(|(_, t)| t).collect();
    assert_eq!(winners.len(), 1, "{first:?} {second:?}");
    let (status, _) = refresh(&a.base, winners[0]["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 400, "the race revoked the family");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_level4_login_at_one_instance_counts_for_authlevel_through_the_other() {
    let redis = RedisServer::start().await;
    let pair = pair(&format!("url = \"{}\"", redis.url())).await;
    let browser = Browser::new();
    let code = code_of(&log_in(&browser, &pair.a, "openid", "Level4").await);
    assert_eq!(redeem(&pair.a.base, &code).await.0, 200);
    let client = demo_maskinporten(&pair.issuer);
    let http = reqwest::Client::new();
    let machine = client.token(&http, &["global/idporten.authlevel.read"], &json!({})).await.unwrap();
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/authlevel/rest/v1/sikkerhetsnivaa", pair.b.portvakt.gateway))
        .bearer_auth(machine["access_token"].as_str().unwrap())
        .json(&json!({"personidentifikator": CITIZEN}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer, json!({"personidentifikator": CITIZEN, "harbruktnivaa4": true}));
}

#[tokio::test(flavor = "multi_thread")]
async fn without_redis_stateful_endpoints_fail_closed_and_recover_when_it_returns() {
    let mut redis = RedisServer::start().await;
    let pair = pair(&format!("url = \"{}\"\ntimeout_ms = 300", redis.url())).await;
    let a = &pair.a;
    let client = demo_maskinporten(&pair.issuer);
    // A token issued before the outage: the gateway validates it without Redis.
    let issued = client.token(&reqwest::Client::new(), &["global/kontaktinformasjon.read"], &json!({})).await.unwrap();
    let jwt = issued["access_token"].as_str().unwrap().to_owned();

    // Grants run while Redis is killed; every answer is 200 or a 503 that says when to retry.
    let granted = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (base, granted, killed) = (a.base.clone(), granted.clone(), killed.clone());
        let client = demo_maskinporten(&pair.issuer);
        async move {
            let mut outcomes = Vec::new();
            let mut after_kill = 0;
            while after_kill < 20 {
                let assertion = client.assertion(&["global/kontaktinformasjon.read"], &json!({})).unwrap();
                let was_killed = killed.load(Ordering::SeqCst);
                let asked = Instant::now();
                let (status, body, retry_after) = machine_grant(&base, &assertion).await;
                if status == 200 {
                    granted.fetch_add(1, Ordering::SeqCst);
                }
                after_kill += usize::from(was_killed);
                outcomes.push((status, body["error"].as_str().map(str::to_owned), retry_after, asked.elapsed()));
            }
            outcomes
        }
    });
    eventually("grants under load before the outage", || async { (granted.load(Ordering::SeqCst) >= 5).then_some(()) })
        .await;
    redis.kill();
    killed.store(true, Ordering::SeqCst);
    let outcomes = load.await.unwrap();
    let refused: Vec<_> = outcomes.iter().filter(|(s, ..)| *s != 200).collect();
    assert!(refused.len() >= 19, "every grant after the kill is refused: {outcomes:?}");
    for (status, error, retry_after, took) in &outcomes {
        assert!(*status == 200 || *status == 503, "only 200 or 503 during an outage: {outcomes:?}");
        if *status == 503 {
            assert_eq!(error.as_deref(), Some("temporarily_unavailable"));
            assert!(retry_after.is_some(), "503 says when to retry");
        }
        assert!(*took < Duration::from_secs(2), "no request hangs past the store's deadline: {took:?}");
    }

    // Unready, saying why; the gateway still honours the token issued before.
    let ready = reqwest::get(format!("{}/readyz", a.portvakt.admin)).await.unwrap();
    assert_eq!(ready.status(), 503);
    assert!(ready.text().await.unwrap().contains("state store"), "readyz names what is missing");
    // KRR through the gateway: the token checked there, the simulator answering; no Redis.
    let through_gateway = reqwest::Client::new()
        .post(format!("{}/rest/v1/personer", a.portvakt.gateway))
        .bearer_auth(&jwt)
        .json(&json!({"personidentifikatorer": [CITIZEN]}))
        .send()
        .await
        .unwrap();
    assert_eq!(through_gateway.status(), 200, "a self-contained token is still valid at the gateway");

    // Redis back (empty: no persistence): grants work again without a restart of Portvakt.
    redis.restart().await;
    eventually("grants to work again after Redis returns", || async {
        let assertion = client.assertion(&["global/kontaktinformasjon.read"], &json!({})).unwrap();
        (machine_grant(&a.base, &assertion).await.0 == 200).then_some(())
    })
    .await;
    let mut pair = pair;
    pair.a.portvakt.wait_for("/readyz").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_aof_a_redis_restart_loses_no_session_code_or_refresh_family() {
    let mut redis = RedisServer::start_with_aof().await;
    let pair = pair(&format!("url = \"{}\"", redis.url())).await;
    let browser = Browser::new();
    let code = code_of(&log_in(&browser, &pair.a, "openid", "Level3").await);
    let (_, tokens) = redeem(&pair.a.base, &code).await;
    let unused_code = code_of(&browser.get(&authorize_url(&pair.a, "openid")).await);

    redis.restart().await;

    // The code issued before the restart is redeemed at B after it.
    let (status, after) = eventually("the store to answer after the restart", || async {
        let (status, body) = redeem(&pair.b.base, &unused_code).await;
        (status != 503).then_some((status, body))
    })
    .await;
    assert_eq!(status, 200, "{after}");
    // The session: no login form at B.
    assert_eq!(browser.get(&authorize_url(&pair.b, "openid")).await.status, 303);
    // The refresh family: rotation still works, and reuse is still recognised.
    let old = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(refresh(&pair.b.base, old).await.0, 200);
    assert_eq!(refresh(&pair.a.base, old).await.0, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_three_master_cluster_serves_two_instances_as_one() {
    let cluster = RedisCluster::start().await;
    let nodes: Vec<String> = cluster.nodes.iter().map(|n| format!("\"{}\"", n.url())).collect();
    let pair = pair(&format!("cluster = [{}]", nodes.join(", "))).await;
    let (a, b) = (&pair.a, &pair.b);
    let browser = Browser::new();
    let code = code_of(&log_in(&browser, a, "openid", "Level4").await);
    let (status, tokens) = redeem(&b.base, &code).await;
    assert_eq!(status, 200, "{tokens}");
    let old = tokens["refresh_token"].as_str().unwrap();
    let (status, refreshed) = refresh(&a.base, old).await;
    assert_eq!(status, 200, "{refreshed}");
    assert_eq!(refresh(&b.base, old).await.0, 400, "reuse recognised across instances");
    assert_eq!(redeem(&a.base, &code).await.0, 400, "a code is single-use on a cluster too");
    let client = demo_maskinporten(&pair.issuer);
    for _ in 0..20 {
        let assertion = client.assertion(&["global/kontaktinformasjon.read"], &json!({})).unwrap();
        assert_eq!(machine_grant(&a.base, &assertion).await.0, 200);
        assert_eq!(machine_grant(&b.base, &assertion).await.0, 400, "replayed at the other instance");
    }
    assert_eq!(browser.get(&authorize_url(b, "openid")).await.status, 303, "SSO across instances");
    let spread = cluster.keys_per_node();
    assert!(spread.iter().filter(|n| **n > 0).count() >= 2, "keys spread over the masters: {spread:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sentinel_names_the_master_and_a_failover_is_followed() {
    let mut sentinel = RedisSentinel::start().await;
    let store =
        format!("sentinels = [\"{}\"]\nmaster = \"{SENTINEL_MASTER}\"\ntimeout_ms = 300", sentinel.sentinel.url());
    let pair = pair(&store).await;
    let browser = Browser::new();
    let code = code_of(&log_in(&browser, &pair.a, "openid", "Level3").await);
    assert_eq!(redeem(&pair.b.base, &code).await.0, 200, "a code from A redeemed at B through Sentinel");
    assert_eq!(sentinel.master.cli(&["DBSIZE"]).map(|n| n != "0"), Some(true), "written to the master");

    // The master dies; Sentinel promotes the replica; both instances follow without a restart.
    sentinel.master.kill();
    let replica = sentinel.replica.port;
    eventually("Sentinel to promote the replica", || async { (sentinel.master_port() == Some(replica)).then_some(()) })
        .await;
    let client = demo_maskinporten(&pair.issuer);
    for at in [&pair.a.base, &pair.b.base] {
        eventually("grants through the new master", || async {
            let assertion = client.assertion(&["global/kontaktinformasjon.read"], &json!({})).unwrap();
            (machine_grant(at, &assertion).await.0 == 200).then_some(())
        })
        .await;
    }
    let assertion = client.assertion(&["global/kontaktinformasjon.read"], &json!({})).unwrap();
    assert_eq!(machine_grant(&pair.a.base, &assertion).await.0, 200);
    assert_eq!(machine_grant(&pair.b.base, &assertion).await.0, 400, "single use holds on the new master");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_reaches_redis_and_says_when_it_cannot() {
    let redis = RedisServer::start().await;
    let check = |url: String| {
        let ports = Ports::new();
        let dir = tempfile::tempdir().unwrap();
        let config = default_config(&ports, &format!("[issuer.store.redis]\nurl = \"{url}\"\ntimeout_ms = 200\n"))
            .replace("{dir}", &dir.path().display().to_string());
        let path = dir.path().join("portvakt.toml");
        std::fs::write(&path, config).unwrap();
        let output =
            std::process::Command::new(binary()).args(["check-config", "--config"]).arg(&path).output().unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (code, stderr) = check(redis.url());
    assert_eq!(code, Some(0), "{stderr}");
    // A Redis that may evict keys could forget a used assertion id: refused.
    let evicting = RedisServer::start_with(&["--save", "", "--maxmemory-policy", "allkeys-lru"]).await;
    let (code, stderr) = check(evicting.url());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("maxmemory-policy is allkeys-lru") && stderr.contains("noeviction"), "{stderr}");
    let closed = free_port();
    let (code, stderr) = check(format!("redis://127.0.0.1:{closed}"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("issuer.store.redis") && stderr.contains("cannot be reached"), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{closed}")), "names where: {stderr}");
}
