//! The `portvakt` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
