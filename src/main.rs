//! The `portvakt` command.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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

fn register(command: RegisterCommand) -> ExitCode {
    match command {
        RegisterCommand::Generate { persons, seed, out } => {
            let file = match portvakt::oppslag::generate::generate(persons, seed) {
                Ok(file) => file,
                Err(e) => {
                    eprintln!("portvakt register generate: {e}");
                    return ExitCode::from(2);
                }
            };
            let json = match serde_json::to_string_pretty(&file) {
                Ok(json) => json + "\n",
                Err(e) => {
                    eprintln!("portvakt register generate: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let written = if out.as_os_str() == "-" {
                use std::io::Write;
                std::io::stdout().write_all(json.as_bytes())
            } else {
                std::fs::write(&out, json)
            };
            match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("portvakt register generate: cannot write {}: {e}", out.display());
                    ExitCode::FAILURE
                }
            }
        }
        RegisterCommand::Cases { register } => match portvakt::oppslag::register::Register::load(&register, true) {
            Ok(register) => {
                for (case, id) in portvakt::oppslag::register::cases(&register) {
                    println!("{id}  {case}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("portvakt register cases: {e}");
                ExitCode::from(2)
            }
        },
    }
}

#[derive(clap::Args)]
struct TokenArgs {
    #[arg(long, default_value = "http://127.0.0.1:9000")]
    issuer: String,
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
fn print_assertions(client: &MaskinportenClient, scopes: &[&str], extra: &serde_json::Value, count: usize) -> ExitCode {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_worker = count.div_ceil(workers);
    let batches: Vec<Result<Vec<String>, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let n = per_worker.min(count.saturating_sub(w * per_worker));
                scope.spawn(move || (0..n).map(|_| client.assertion(scopes, extra)).collect::<Result<Vec<_>, _>>())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("a signing thread failed".into()))).collect()
    });
    let mut out = String::with_capacity(count * 1800);
    for batch in batches {
        match batch {
            Ok(assertions) => assertions.iter().for_each(|a| {
                out.push_str(a);
                out.push('\n');
            }),
            Err(e) => {
                eprintln!("portvakt token: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    use std::io::Write;
    match std::io::stdout().write_all(out.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

fn token(args: TokenArgs) -> ExitCode {
    let client = match MaskinportenClient::from_files(
        &args.issuer,
        &args.client,
        &args.key,
        Some(&args.cert),
        args.kid.as_deref(),
    ) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("portvakt token: {e}");
            return ExitCode::from(2);
        }
    };
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
        return print_assertions(&client, &scopes, &extra, count);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("portvakt token: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(client.token(&reqwest::Client::new(), &scopes, &extra)) {
        Ok(answer) if args.json => {
            println!("{answer:#}");
            ExitCode::SUCCESS
        }
        Ok(answer) => {
            println!("{}", answer["access_token"].as_str().unwrap_or_default());
            eprintln!(
                "portvakt token: scope \"{}\", expires in {} s",
                answer["scope"].as_str().unwrap_or_default(),
                answer["expires_in"]
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("portvakt token: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|errors| report(&errors))
}

fn report(errors: &[ConfigError]) -> ExitCode {
    for error in errors {
        eprintln!("portvakt: config error: {error}");
    }
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, upgrade } => {
            let config = match load(&config) {
                Ok(config) => config,
                Err(code) => return code,
            };
            telemetry::init(&config.log);
            match server::serve(config, ServeOptions { upgrade }) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => report(&[error]),
            }
        }
        Command::Token(args) => token(args),
        Command::Register(command) => register(command),
        Command::CheckConfig { config } => {
            let config = match load(&config) {
                Ok(config) => config,
                Err(code) => return code,
            };
            match Roles::build(&config) {
                Ok(_) => {
                    println!("{}: ok", config.source.display());
                    ExitCode::SUCCESS
                }
                Err(error) => report(&[error]),
            }
        }
    }
}
