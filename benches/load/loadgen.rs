//! A load generator for authorization-code logins against a running issuer, used by the load
//! benchmark (`cargo build --release --example loadgen`): each login opens `/authorize`,
//! submits the test IdP's form as served, and redeems the code (with PKCE) for tokens. It prints
//! `LOGINS_JSON {...}` with the rate, the latencies and the errors.

use std::time::{Duration, Instant};

use serde_json::json;

fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

fn cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        v.strip_prefix(&format!("{name}=")).map(|rest| rest.split(';').next().unwrap_or_default().to_owned())
    })
}

/// One login: form, code, tokens. Returns an error message on any deviation.
async fn login(http: &reqwest::Client, issuer: &str, pid: &str) -> Result<(), String> {
    let authorize = format!(
        "{issuer}/authorize?client_id=demo-rp&response_type=code&redirect_uri=http%3A%2F%2F127.0.0.1%3A8765%2Fcallback&scope=openid%20profile&state=bench&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256"
    );
    let page = http.get(&authorize).send().await.map_err(|e| e.to_string())?;
    let interaction_cookie = cookie(&page, "portvakt_interaction").ok_or("no interaction cookie")?;
    let html = page.text().await.map_err(|e| e.to_string())?;
    let interaction = hidden(&html, "interaction").ok_or("no login form")?;
    let csrf = hidden(&html, "csrf").ok_or("no csrf field")?;
    let answer = http
        .post(format!("{issuer}/authorize/login"))
        .header("cookie", format!("portvakt_interaction={interaction_cookie}"))
        .form(&[("interaction", interaction.as_str()), ("csrf", csrf.as_str()), ("pid", pid), ("acr", "Level3")])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let location = answer.headers().get("location").and_then(|v| v.to_str().ok()).ok_or("no redirect after login")?;
    let code = url::Url::parse(location)
        .ok()
        .and_then(|u| u.query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.into_owned()))
        .ok_or("no code")?;
    let tokens = http
        .post(format!("{issuer}/token"))
        .basic_auth("demo-rp", Some("demo-rp-secret"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "http://127.0.0.1:8765/callback"),
            ("code_verifier", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
        ])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if tokens.status() != 200 {
        return Err(format!("the token endpoint answered {}", tokens.status()));
    }
    Ok(())
}

/// Drive logins for `seconds` with `concurrency` parallel browsers; returns the figures as JSON.
async fn run(issuer: &str, seconds: u64, concurrency: usize) -> Result<serde_json::Value, String> {
    let http =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let http = http.clone();
            let issuer = issuer.to_owned();
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), Vec::new());
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match login(&http, &issuer, "26074502015").await {
                        Ok(()) => latencies.push(t.elapsed()),
                        Err(e) => errors.push(e),
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for worker in workers {
        if let Ok((l, e)) = worker.await {
            latencies.extend(l);
            errors.extend(e);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Ok(json!({
            "logins": latencies.len(),
            "seconds": elapsed,
            "per_second": latencies.len() as f64 / elapsed,
            "p50_ms": percentile(0.5),
            "p99_ms": percentile(0.99),
            "errors": errors.len(),
            "first_error": errors.first(),
    }))
}

/// `loadgen [ISSUER] [SECONDS] [CONCURRENCY]` (defaults: the default config's issuer, 8, 8).
fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let issuer = args.first().cloned().unwrap_or_else(|| "http://127.0.0.1:9000".into());
    let number = |i: usize, default: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (seconds, concurrency) = (number(1, 8), number(2, 8) as usize);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&issuer, seconds, concurrency)) {
        Ok(figures) => {
            println!("LOGINS_JSON {figures}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
