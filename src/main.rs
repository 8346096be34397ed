//! The `portvakt` command.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use portvakt::audit::AuditKey;
use portvakt::client::MaskinportenClient;
use portvakt::config::{self, Config, ConfigError};
use portvakt::server::{self, Roles, ServeOptions};
use portvakt::telemetry;

#[derive(Parser)]
#[command(name = "portvakt", version, about = "ID-porten-style token issuer and Pingora edge gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the roles the config enables (gateway, issuer, Oppslagstjenesten simulator, admin).
    Serve {
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Take the listeners over from the running process, then signal it with SIGQUIT.
        #[arg(long)]
        upgrade: bool,
    },
    /// Parse and validate the config, load every key and file it names, then exit.
    CheckConfig {
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Get a machine token from a running issuer with the JWT-bearer grant (Maskinporten) and
    /// print it. The defaults are the demo client of the default config.
    Token(TokenArgs),
    /// The synthetic KRR register behind the Oppslagstjenesten simulator.
    #[command(subcommand)]
    Register(RegisterCommand),
    /// The audit trail of personal-data lookups (the key comes from the config's [audit]).
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the chain through FILEs in order (default: every file in the config's audit.dir);
    /// exit 1 naming the first broken record.
    Verify {
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        files: Vec<PathBuf>,
    },
    /// Print one person's lookups, one JSON record a line (found by the keyed hash).
    Search {
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// The fødselsnummer or d-nummer.
        #[arg(long)]
        pid: String,
        /// Only lookups on or after this date (YYYY-MM-DD) or time (RFC 3339, UTC).
        #[arg(long)]
        since: Option<String>,
        files: Vec<PathBuf>,
    },
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Serve { .. } => "serve",
            Command::CheckConfig { .. } => "check-config",
            Command::Token(_) => "token",
            Command::Register(RegisterCommand::Generate { .. }) => "register generate",
            Command::Register(RegisterCommand::Cases { .. }) => "register cases",
            Command::Audit(AuditCommand::Verify { .. }) => "audit verify",
            Command::Audit(AuditCommand::Search { .. }) => "audit search",
        }
    }
}

#[derive(Subcommand)]
enum RegisterCommand {
    /// Write a synthetic register (valid check digits, every case covered) as JSON.
    Generate {
        #[arg(long, default_value_t = 2000)]
        persons: usize,
        #[arg(long, default_value_t = 2026)]
        seed: u64,
        /// Where to write it; `-` is standard output.
        #[arg(long, default_value = "-")]
        out: PathBuf,
    },
    /// Print one personidentifikator of each kind in a register, for trying the API.
    Cases {
        #[arg(long, default_value = "config/register.json")]
        register: PathBuf,
    },
}

fn register(command: RegisterCommand) -> Result<(), Failure> {
    match command {
        RegisterCommand::Generate { persons, seed, out } => {
            let file = portvakt::oppslag::generate::generate(persons, seed).map_err(|e| Failure::Input(e.into()))?;
            let json = serde_json::to_string_pretty(&file).context("the register cannot be serialised")? + "\n";
            if out.as_os_str() == "-" {
                use std::io::Write;
                std::io::stdout().write_all(json.as_bytes()).context("cannot write to standard output")?;
            } else {
                std::fs::write(&out, json).with_context(|| format!("cannot write {}", out.display()))?;
            }
            Ok(())
        }
        RegisterCommand::Cases { register } => {
            let register =
                portvakt::oppslag::register::Register::load(&register, true).map_err(|e| Failure::Input(e.into()))?;
            for (case, id) in portvakt::oppslag::register::cases(&register) {
                println!("{id}  {case}");
            }
            Ok(())
        }
    }
}

/// The audit key and the files to read: those named, or the config's whole chain.
fn audit_files(config: &std::path::Path, files: Vec<PathBuf>) -> Result<(AuditKey, Vec<PathBuf>), Failure> {
    let config = load(config)?;
    let settings = config
        .audit
        .ok_or_else(|| Failure::Input(anyhow::anyhow!("{}: no [audit] section, so no key", config.source.display())))?;
    let files = if files.is_empty() { portvakt::audit::chain_files(&settings.dir)? } else { files };
    Ok((AuditKey::new(settings.hmac_key.expose().as_bytes()), files))
}

fn audit(command: AuditCommand) -> Result<(), Failure> {
    match command {
        AuditCommand::Verify { config, files } => {
            let (key, files) = audit_files(&config, files)?;
            match portvakt::audit::verify(&key, &files) {
                Ok(verified) => {
                    println!(
                        "{} records in {} files: the chain is intact; its head is {} (keep it elsewhere: \
                         records removed from the end show only against a head kept before)",
                        verified.records,
                        files.len(),
                        verified.head
                    );
                    Ok(())
                }
                Err(broken) => Err(Failure::Run(anyhow::anyhow!(
                    "{} line {}: {}",
                    broken.file.display(),
                    broken.line,
                    broken.reason
                ))),
            }
        }
        AuditCommand::Search { config, pid, since, files } => {
            portvakt::personid::validate(&pid)
                .map_err(|e| Failure::Input(anyhow::anyhow!("--pid is not a fødselsnummer or d-nummer: {e}")))?;
            let since = since
                .map(|s| portvakt::audit::parse_since(&s))
                .transpose()
                .map_err(|e| Failure::Input(anyhow::anyhow!("--since: {e}")))?;
            let (key, files) = audit_files(&config, files)?;
            let found = portvakt::audit::search(&key, &files, &pid, since)?;
            for record in &found.records {
                println!("{}", serde_json::to_string(record).context("a record cannot be printed")?);
            }
            if found.unreadable > 0 {
                return Err(Failure::Run(anyhow::anyhow!(
                    "{} lines are not valid records and were not searched: run `portvakt audit verify`",
                    found.unreadable
                )));
            }
            Ok(())
        }
    }
}

#[derive(clap::Args)]
struct TokenArgs {
    #[arg(long, default_value = "http://127.0.0.1:9000")]
    issuer: String,
    /// Post to this token endpoint instead of the issuer's own `/token` (another instance of
    /// the same issuer, as in config/examples/cluster).
    #[arg(long, value_name = "URL")]
    token_endpoint: Option<String>,
    #[arg(long, default_value = "demo-maskinporten")]
    client: String,
    /// The client's RSA private key (PEM).
    #[arg(long, default_value = "config/dev/demo-maskinporten.key.pem")]
    key: PathBuf,
    /// The client's certificate chain (PEM), sent as x5c.
    #[arg(long, default_value = "config/dev/demo-maskinporten.cert.pem")]
    cert: PathBuf,
    /// Name a registered key instead of sending the certificate.
    #[arg(long)]
    kid: Option<String>,
    /// Scopes to ask for (repeat the flag); default: every scope of the demo client.
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Audience-restrict the token (`resource`).
    #[arg(long)]
    resource: Option<String>,
    /// Print the whole token response as JSON, not just the access token.
    #[arg(long)]
    json: bool,
    /// For load tests: print N signed grant assertions (one per line, each with its own jti)
    /// instead of asking for a token. They are dated 9 s ahead, so a batch made now stays
    /// within the issuer's ±10 s window for about 20 s.
    #[arg(long, value_name = "N")]
    assertions: Option<usize>,
}

const DEMO_MACHINE_SCOPES: [&str; 7] = [
    "global/kontaktinformasjon.read",
    "global/varslingsstatus.read",
    "global/sikkerdigitalpost.read",
    "global/sertifikat.read",
    "krr:global/kontaktinformasjon.read",
    "krr:global/digitalpost.read",
    "global/idporten.authlevel.read",
];

/// Sign `count` assertions on every core and print them, one per line.
fn print_assertions(
    client: &MaskinportenClient,
    scopes: &[&str],
    extra: &serde_json::Value,
    count: usize,
) -> anyhow::Result<()> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_worker = count.div_ceil(workers);
    let batches: Vec<anyhow::Result<Vec<String>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let n = per_worker.min(count.saturating_sub(w * per_worker));
                scope.spawn(move || (0..n).map(|_| client.assertion(scopes, extra)).collect::<Result<Vec<_>, _>>())
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(batch) => batch.map_err(anyhow::Error::from),
                Err(_) => Err(anyhow::anyhow!("a signing thread failed")),
            })
            .collect()
    });
    let mut out = String::with_capacity(count * 1800);
    for batch in batches {
        for assertion in batch? {
            out.push_str(&assertion);
            out.push('\n');
        }
    }
    use std::io::Write;
    std::io::stdout().write_all(out.as_bytes()).context("cannot write to standard output")
}

fn token(args: TokenArgs) -> Result<(), Failure> {
    let client =
        MaskinportenClient::from_files(&args.issuer, &args.client, &args.key, Some(&args.cert), args.kid.as_deref())
            .map_err(|e| Failure::Input(e.into()))?;
    let scopes: Vec<&str> = if args.scopes.is_empty() {
        DEMO_MACHINE_SCOPES.to_vec()
    } else {
        args.scopes.iter().map(String::as_str).collect()
    };
    let mut extra = match &args.resource {
        Some(resource) => serde_json::json!({"resource": resource}),
        None => serde_json::json!({}),
    };
    if let Some(count) = args.assertions {
        let iat = portvakt::token::verify::unix_now() + 9;
        extra["iat"] = serde_json::json!(iat);
        extra["exp"] = serde_json::json!(iat + 60);
        return Ok(print_assertions(&client, &scopes, &extra, count)?);
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("no async runtime")?;
    let http = reqwest::Client::new();
    let answer = match &args.token_endpoint {
        Some(url) => runtime.block_on(client.token_at(&http, url, &scopes, &extra))?,
        None => runtime.block_on(client.token(&http, &scopes, &extra))?,
    };
    if args.json {
        println!("{answer:#}");
    } else {
        println!("{}", answer["access_token"].as_str().unwrap_or_default());
        eprintln!(
            "portvakt token: scope \"{}\", expires in {} s",
            answer["scope"].as_str().unwrap_or_default(),
            answer["expires_in"]
        );
    }
    Ok(())
}

/// Why a command stopped. The exit code tells a wrong config or input (2) from a failure while
/// running (1); the message shows the whole cause chain.
enum Failure {
    Config(Vec<ConfigError>),
    Input(anyhow::Error),
    Run(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        Failure::Run(error)
    }
}

impl From<portvakt::error::Error> for Failure {
    fn from(error: portvakt::error::Error) -> Failure {
        Failure::Run(error.into())
    }
}

impl From<ConfigError> for Failure {
    fn from(error: ConfigError) -> Failure {
        Failure::Config(vec![error])
    }
}

fn load(path: &std::path::Path) -> Result<Config, Failure> {
    Config::load(path).map_err(Failure::Config)
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Serve { config, upgrade } => {
            let config = load(&config)?;
            telemetry::init(&config.log);
            Ok(server::serve(config, ServeOptions { upgrade })?)
        }
        Command::Token(args) => token(args),
        Command::Register(command) => register(command),
        Command::Audit(command) => audit(command),
        Command::CheckConfig { config } => {
            let config = load(&config)?;
            Roles::build(&config)?.reach_shared_state(&config)?;
            println!("{}: ok", config.source.display());
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let name = cli.command.name();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(errors)) => {
            for error in errors {
                eprintln!("portvakt: config error: {error}");
            }
            ExitCode::from(2)
        }
        Err(Failure::Input(error)) => {
            eprintln!("portvakt {name}: {error:#}");
            ExitCode::from(2)
        }
        Err(Failure::Run(error)) => {
            eprintln!("portvakt {name}: {error:#}");
            ExitCode::FAILURE
        }
    }
}
