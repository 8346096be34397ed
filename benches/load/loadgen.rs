//! The load benchmark's client for the issuer (`cargo build --release --example loadgen`):
//!
//! - `loadgen logins --issuer URL [--issuer URL …]`: authorization-code logins. Each opens
//!   `/authorize`, submits the test IdP's form as served, and redeems the code (with PKCE) for
//!   tokens. With several instances, a login starts at one and redeems its code at the next.
//! - `loadgen grants --issuer-id ID --endpoint URL [--endpoint URL …]`: Maskinporten JWT-bearer
//!   grants, each assertion used once. Assertions are valid for only ±10 s around their `iat`,
//!   so they are signed in rounds just before they are used, and only the time spent sending
//!   them is measured (the issuer is idle while a round is signed).
//!
//! - `loadgen sign-soap --ids FILE --count N --out FILE`: writes N HentPersoner requests for the
//!   persons in FILE (a JSON list), one a line, each signed with WS-Security by the facade's
//!   development certificate: the bodies of the case that sends signed SOAP to the simulator
//!   directly. The simulator takes a signed request once, so each is used once; their
//!   Timestamps live 120 s, so they are written just before the case.
//!
//! The load commands print one line, `LOADGEN_JSON {...}`, with the rate, latencies and errors. A
//! run with errors is a failed run: the benchmark reports it and draws no ratio from it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use portvakt::client::MaskinportenClient;
use serde_json::json;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 8, global = true)]
    seconds: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8, global = true)]
    concurrency: usize,
}

#[derive(Subcommand)]
enum Command {
    Logins {
        /// An issuer instance's base URL; repeat for several instances of one issuer.
        #[arg(long = "issuer", required = true)]
        issuers: Vec<String>,
    },
    Grants {
        /// The issuer identifier (the assertions' `aud`).
        #[arg(long)]
        issuer_id: String,
        /// A token endpoint; repeat for several instances (used in turn).
        #[arg(long = "endpoint", required = true)]
        endpoints: Vec<String>,
        #[arg(long, default_value = "config/dev/demo-maskinporten.key.pem")]
        key: PathBuf,
        #[arg(long, default_value = "config/dev/demo-maskinporten.cert.pem")]
        cert: PathBuf,
        #[arg(long, default_value = "global/kontaktinformasjon.read")]
        scope: String,
    },
    SignSoap {
        #[arg(long)]
        ids: PathBuf,
        #[arg(long, default_value_t = 1)]
        count: usize,
        #[arg(long)]
        out: PathBuf,
    },
}

/// `count` HentPersoner requests for every informasjonsbehov, signed as the facade signs them.
fn sign_soap(ids: &PathBuf, count: usize, out: &PathBuf) -> Result<(), String> {
    use portvakt::soap::model::{Header, Informasjonsbehov, Request};
    use portvakt::wssec::{Certificate, ClientSecurity, Credentials, Window};
    let dev = PathBuf::from("config/dev");
    let credentials =
        Credentials::load(&dev.join("krr-facade.cert.pem"), &dev.join("krr-facade.key.pem")).map_err(|e| e.chain())?;
    let service = Certificate::load(&dev.join("oppslag-server.cert.pem")).map_err(|e| e.chain())?;
    let window = Window { max_ttl: Duration::from_secs(2000), skew: Duration::from_secs(300) };
    let ids: Vec<String> =
        serde_json::from_slice(&std::fs::read(ids).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let request =
        Request::HentPersoner { informasjonsbehov: Informasjonsbehov::ALL.to_vec(), personidentifikatorer: ids };
    let client = ClientSecurity::new(credentials, service, window);
    let mut lines = String::new();
    for _ in 0..count {
        let signed = client.sign(&Header::default(), &request, chrono::Utc::now()).map_err(|e| e.message)?;
        // One a line for the wrk script: the signed XML has no line breaks of its own.
        if signed.xml.contains('\n') {
            return Err("a signed request has a line break".into());
        }
        lines.push_str(&signed.xml);
        lines.push('\n');
    }
    std::fs::write(out, lines).map_err(|e| e.to_string())
}

/// What a run measured.
#[derive(Default)]
struct Figures {
    latencies: Vec<Duration>,
    errors: Vec<String>,
    measured: Duration,
}

impl Figures {
    fn json(mut self) -> serde_json::Value {
        self.latencies.sort();
        let seconds = self.measured.as_secs_f64();
        let percentile = |p: f64| {
            self.latencies
                .get(((self.latencies.len() as f64 * p) as usize).min(self.latencies.len().saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        json!({
            "completed": self.latencies.len(),
            "seconds": seconds,
            "per_second": if seconds > 0.0 { self.latencies.len() as f64 / seconds } else { 0.0 },
            "p50_ms": percentile(0.5),
            "p99_ms": percentile(0.99),
            "errors": self.errors.len(),
            "first_error": self.errors.first(),
        })
    }
}

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

/// One login at `issuer`, its code redeemed at `redeem_at`: form, code, tokens.
async fn login(http: &reqwest::Client, issuer: &str, redeem_at: &str, pid: &str) -> Result<(), String> {
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
        .post(format!("{redeem_at}/token"))
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

async fn logins(http: reqwest::Client, issuers: Vec<String>, seconds: u64, concurrency: usize) -> Figures {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let http = http.clone();
            let issuer = issuers[worker % issuers.len()].clone();
            let redeem_at = issuers[(worker + 1) % issuers.len()].clone();
            tokio::spawn(async move {
                let mut figures = Figures::default();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match login(&http, &issuer, &redeem_at, "26074502015").await {
                        Ok(()) => figures.latencies.push(t.elapsed()),
                        Err(e) => figures.errors.push(e),
                    }
                }
                figures
            })
        })
        .collect();
    let mut all = Figures::default();
    for worker in workers {
        match worker.await {
            Ok(figures) => {
                all.latencies.extend(figures.latencies);
                all.errors.extend(figures.errors);
            }
            Err(e) => all.errors.push(format!("a worker failed: {e}")),
        }
    }
    all.measured = started.elapsed();
    all
}

/// Sign `count` assertions on every core, dated now.
fn sign_round(client: &MaskinportenClient, scopes: &[&str], count: usize) -> Result<Vec<String>, String> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_worker = count.div_ceil(workers);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(move || {
                    (0..per_worker).map(|_| client.assertion(scopes, &json!({})).map_err(|e| e.chain())).collect()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(count);
        for handle in handles {
            let batch: Result<Vec<String>, String> = handle.join().map_err(|_| "a signing thread failed".to_owned())?;
            all.extend(batch?);
        }
        Ok(all)
    })
}

/// Longest a round may take to sign, so its first assertion is still fresh when its last is sent.
const SIGNING_BUDGET: Duration = Duration::from_secs(3);
/// Longest a round is sent for.
const ROUND: Duration = Duration::from_secs(4);

async fn grants(
    http: reqwest::Client,
    client: MaskinportenClient,
    endpoints: Vec<String>,
    scope: String,
    seconds: u64,
    concurrency: usize,
) -> Result<Figures, String> {
    let scopes = [scope.as_str()];
    let mut figures = Figures::default();
    let mut batch = 256usize;
    let target = Duration::from_secs(seconds);
    while figures.measured < target {
        let signing = Instant::now();
        let assertions = Arc::new(sign_round(&client, &scopes, batch)?);
        // Size the next round by what this machine signs within the budget.
        let per_assertion = signing.elapsed().as_secs_f64() / assertions.len() as f64;
        batch = ((SIGNING_BUDGET.as_secs_f64() / per_assertion) as usize).clamp(64, 50_000);
        let next = Arc::new(AtomicUsize::new(0));
        let round_end = Instant::now() + ROUND.min(target - figures.measured);
        let sending = Instant::now();
        let workers: Vec<_> = (0..concurrency)
            .map(|worker| {
                let (http, assertions, next) = (http.clone(), assertions.clone(), next.clone());
                let endpoint = endpoints[worker % endpoints.len()].clone();
                tokio::spawn(async move {
                    let mut figures = Figures::default();
                    while Instant::now() < round_end {
                        let Some(assertion) = assertions.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                        let t = Instant::now();
                        let answer = http
                            .post(&endpoint)
                            .form(&[("grant_type", portvakt::oauth::JWT_BEARER_GRANT), ("assertion", assertion)])
                            .send()
                            .await;
                        match answer {
                            Ok(response) if response.status() == 200 => {
                                let _ = response.bytes().await;
                                figures.latencies.push(t.elapsed());
                            }
                            Ok(response) => {
                                let status = response.status();
                                let body = response.text().await.unwrap_or_default();
                                figures
                                    .errors
                                    .push(format!("{status}: {}", body.chars().take(300).collect::<String>()));
                            }
                            Err(e) => figures.errors.push(e.to_string()),
                        }
                    }
                    figures
                })
            })
            .collect();
        for worker in workers {
            match worker.await {
                Ok(round) => {
                    figures.latencies.extend(round.latencies);
                    figures.errors.extend(round.errors);
                }
                Err(e) => figures.errors.push(format!("a worker failed: {e}")),
            }
        }
        figures.measured += sending.elapsed();
    }
    Ok(figures)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Command::SignSoap { ids, count, out } = &cli.command {
        return match sign_soap(ids, *count, out) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("loadgen: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let http = match reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build() {
        Ok(http) => http,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let figures = match cli.command {
        Command::Logins { issuers } => Ok(runtime.block_on(logins(http, issuers, cli.seconds, cli.concurrency))),
        Command::Grants { issuer_id, endpoints, key, cert, scope } => {
            match MaskinportenClient::from_files(&issuer_id, "demo-maskinporten", &key, Some(&cert), None) {
                Ok(client) => runtime.block_on(grants(http, client, endpoints, scope, cli.seconds, cli.concurrency)),
                Err(e) => Err(e.chain()),
            }
        }
        Command::SignSoap { .. } => Err("sign-soap writes a file; it is handled above".into()),
    };
    match figures {
        Ok(figures) => {
            println!("LOADGEN_JSON {}", figures.json());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
