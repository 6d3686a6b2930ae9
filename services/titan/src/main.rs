//! `titan`: the one binary of every Titan service. `titan serve <service>... | all` runs
//! services (a pod serves one, a laptop all), `titan migrate` applies their migrations,
//! `titan token` mints a development token, `titan version` prints the release.
#![forbid(unsafe_code)]

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use titan_kit::{KitError, ServiceDef, auth::Authenticator, config::Config, runtime};
use tokio_util::sync::CancellationToken;

/// Every service this binary can serve: adding a service is one line here plus its crate.
const SERVICES: &[fn() -> ServiceDef] = &[
    titan_ping::service,
    titan_flashsale::service,
    titan_abtesting::service,
    titan_coupon::service,
    titan_gamification::service,
    titan_analytics::service,
];

#[derive(Debug, Parser)]
#[command(name = "titan", version, about = "Serves Titan services")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the named services (or `all`) until SIGTERM.
    Serve {
        #[arg(required = true)]
        services: Vec<String>,
        /// Config file (YAML); `TITAN_*` environment variables override it per field.
        #[arg(long, env = "TITAN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Apply the PostgreSQL migrations of the named services (or `all`).
    Migrate {
        #[arg(required = true)]
        services: Vec<String>,
        #[arg(long, env = "TITAN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Mint an HS256 token with the configured secret (local cells and smoke tests).
    Token {
        #[arg(long)]
        subject: String,
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        #[arg(long, env = "TITAN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print the release and the services this binary serves.
    Version,
}

fn select(names: &[String]) -> Result<Vec<ServiceDef>, KitError> {
    let all: Vec<ServiceDef> = SERVICES.iter().map(|f| f()).collect();
    if names.iter().any(|n| n == "all") {
        return Ok(all);
    }
    let mut chosen = Vec::new();
    for name in names {
        let def = all.iter().find(|d| d.name == name).ok_or_else(|| {
            KitError::UnknownService(format!(
                "{name} (known: {}, or all)",
                all.iter().map(|d| d.name).collect::<Vec<_>>().join(", ")
            ))
        })?;
        if !chosen.iter().any(|c: &ServiceDef| c.name == def.name) {
            chosen.push(*def);
        }
    }
    Ok(chosen)
}

async fn run(cli: Cli) -> Result<(), KitError> {
    let Cli { command } = cli;
    match command {
        Command::Serve { services, config } => {
            let services = select(&services)?;
            let config = Config::load(config.as_deref())?;
            let shutdown = CancellationToken::new();
            tokio::spawn(stop_on_signal(shutdown.clone()));
            runtime::serve(config, services, shutdown, |_| {}).await
        }
        Command::Migrate { services, config } => {
            let services = select(&services)?;
            let config = Config::load(config.as_deref())?;
            runtime::migrate(&config, &services).await
        }
        Command::Token {
            subject,
            roles,
            ttl,
            config,
        } => {
            let config = Config::load(config.as_deref())?;
            let token = Authenticator::new(&config.auth)?.mint(
                &subject,
                &roles,
                Duration::from_secs(ttl),
            )?;
            println!("{token}");
            Ok(())
        }
        Command::Version => {
            let names: Vec<&str> = SERVICES.iter().map(|f| f().name).collect();
            println!("titan {} ({})", env!("CARGO_PKG_VERSION"), names.join(", "));
            Ok(())
        }
    }
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            return;
        }
    }
    shutdown.cancel();
}

#[tokio::main]
async fn main() -> ExitCode {
    titan_kit::telemetry::init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "titan failed");
            eprintln!("titan: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_are_selected_by_name() {
        assert_eq!(select(&["all".into()]).expect("all").len(), SERVICES.len());
        assert_eq!(
            select(&["ping".into(), "ping".into()]).expect("ping").len(),
            1
        );
        let err = select(&["nope".into()]).expect_err("unknown");
        assert!(err.to_string().contains("known: ping, flashsale"), "{err}");
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
