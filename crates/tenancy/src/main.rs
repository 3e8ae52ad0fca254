//! `tenancy`: run the suite, one service, or migrations.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tenancy::Part;
use tenancy_runtime::config::Config;
use tenancy_runtime::{SystemClock, shutdown, telemetry};

/// Tenancy: accounts, identity and access for a hosting provider's portal.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// A TOML configuration file (see README: Configuration).
    #[arg(long, global = true, env = "TENANCY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the whole suite (default) or one part of it.
    Serve {
        /// What to run.
        #[arg(value_enum, default_value = "all")]
        part: Part,
    },
    /// Run database migrations and exit.
    Migrate {
        /// Whose migrations.
        #[arg(value_enum, default_value = "all")]
        part: Part,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => return fail(&error),
    };
    telemetry::init(config.log_format, &config.log_filter);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&error),
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve { part } => serve(config, part).await,
            Command::Migrate { part } => tenancy::migrate(&config, part)
                .await
                .map_err(|e| e.to_string()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

async fn serve(config: Config, part: Part) -> Result<(), String> {
    let running = tenancy::start(config, part, Arc::new(SystemClock))
        .await
        .map_err(|e| e.to_string())?;
    if let Some(address) = running.gateway {
        println!("tenancy: gateway listening on {address} (grpcurl -plaintext {address} list)");
    }
    for (name, address) in &running.services {
        println!("tenancy: {} service listening on {address}", name.as_str());
    }
    running
        .run_until(shutdown::signal())
        .await
        .map_err(|e| e.to_string())
}

/// One line on stderr, no backtrace: what a person fixing a setting needs.
fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("tenancy: error: {error}");
    ExitCode::FAILURE
}
