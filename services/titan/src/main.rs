//! `titan`: the one binary of every Titan service. `titan serve <service>... | all` runs
//! services (a pod serves one, a laptop all), `titan migrate` applies their migrations,
//! `titan token` mints a development token, `titan events dead-letters list|replay` inspects
//! and re-drives dead-lettered events, `titan recorder` uploads a cell's livestream recordings,
//! `titan route solve` solves a VRPTW instance file,
//! `titan version` prints the release. `titan serve router` runs the fleet's cell router
//! (outside the cells, so not part of `all`).
#![forbid(unsafe_code)]

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use titan_kit::{
    Datastore, KitError, ServiceDef,
    auth::Authenticator,
    config::{Config, ObjectStorageConfig},
    datastores::redis::RedisHandle,
    events::dead_letters::{self, DeadLetter},
    objects::ObjectStorage,
    runtime,
};
use titan_livestream::recorder::{Options as RecorderOptions, Recorder};
use tokio_util::sync::CancellationToken;

/// Every service this binary can serve: adding a service is one line here plus its crate.
const SERVICES: &[fn() -> ServiceDef] = &[
    titan_ping::service,
    titan_flashsale::service,
    titan_abtesting::service,
    titan_coupon::service,
    titan_gamification::service,
    titan_analytics::service,
    titan_chat::service,
    titan_livestream::service,
    titan_fraud::service,
    titan_pricing::service,
    titan_campaign::service,
    titan_videocall::service,
    titan_driver::service,
    titan_warehouse::service,
    titan_tracking::service,
    titan_shipping::service,
    titan_privacy::service,
];

/// Services that run outside the cells, one Deployment per fleet: served by name only, never
/// by `all` (a cell's services, which is what `all` runs on a laptop).
const FLEET_SERVICES: &[fn() -> ServiceDef] = &[titan_router::service];

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
    /// Inspect the event bus.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
        #[arg(long, env = "TITAN_CONFIG", global = true)]
        config: Option<PathBuf>,
    },
    /// Offline jobs of the fraud service.
    Fraud {
        #[command(subcommand)]
        command: FraudCommand,
        #[arg(long, env = "TITAN_CONFIG", global = true)]
        config: Option<PathBuf>,
    },
    /// Upload the cell's finished livestream recordings: the sidecar of its RTMP server. The
    /// bucket comes from the `TITAN_S3_*` variables; no config file or token key is needed.
    Recorder {
        /// The directory nginx records into.
        #[arg(long)]
        dir: PathBuf,
        /// livestream's recording report URL (in a cell, the `livestream` Service of the
        /// same namespace).
        #[arg(
            long,
            env = "TITAN_RECORDER_CALLBACK",
            default_value = "http://livestream:8080/rtmp/recorded"
        )]
        callback: String,
        /// Seconds a recording must stay unchanged to count as finished.
        #[arg(long, default_value_t = 10)]
        settle_seconds: u64,
        /// Seconds between scans of the directory.
        #[arg(long, default_value_t = 2)]
        scan_seconds: u64,
    },
    /// Route optimisation offline: solve a VRPTW instance file.
    Route {
        #[command(subcommand)]
        command: RouteCommand,
    },
    /// Print the release and the services this binary serves.
    Version,
}

#[derive(Debug, Subcommand)]
enum RouteCommand {
    /// Solve an instance and print vehicles, distance, time and the routes (with `--json`, one
    /// object `{"vehicles", "distance", "routes"}` in the file's customer numbers).
    Solve {
        file: PathBuf,
        /// The file's format (Solomon's classic layout is the one supported).
        #[arg(long, value_enum, default_value_t = RouteFormat::Solomon)]
        format: RouteFormat,
        /// Search time in milliseconds.
        #[arg(long, default_value_t = 1000)]
        budget_ms: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Stop after this many iterations instead of (or before) the budget: repeatable runs.
        #[arg(long)]
        iterations: Option<u64>,
        /// `distance` (the benchmark's gap) or `vehicles` (fewest vehicles, then distance).
        #[arg(long, value_enum, default_value_t = RouteObjective::Distance)]
        objective: RouteObjective,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RouteFormat {
    Solomon,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RouteObjective {
    Distance,
    Vehicles,
}

#[derive(Debug, Subcommand)]
enum FraudCommand {
    /// Fit a new model version from the labelled decisions, print its held-out AUC and
    /// calibration, and store it inactive (promote it with PromoteModel).
    Train {
        /// Approved decisions older than this many days without a chargeback count as
        /// legitimate.
        #[arg(long, default_value_t = 60)]
        settle_days: u32,
    },
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Events a consumer group gave up on (`events:<source>:dead:<group>`).
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
}

#[derive(Debug, Subcommand)]
enum DeadLetterAction {
    /// Print the oldest dead letters, one JSON object per line.
    List {
        /// The service whose stream was read (`flashsale`).
        #[arg(long)]
        source: String,
        /// The consumer group that gave up (`gamification`).
        #[arg(long)]
        group: String,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Publish dead letters onto the source stream again (once the cause is fixed).
    Replay {
        #[arg(long)]
        source: String,
        #[arg(long)]
        group: String,
        /// Dead-letter ids (`dead_id` of `list`); repeat for several.
        #[arg(long = "id", required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<String>,
        /// Every dead letter of the group.
        #[arg(long)]
        all: bool,
    },
}

/// Most dead letters `replay --all` re-drives in one run.
const REPLAY_ALL_LIMIT: usize = 10_000;

async fn dead_letter_command(config: &Config, action: DeadLetterAction) -> Result<(), KitError> {
    let redis = config.redis.as_ref().ok_or(KitError::MissingDatastore {
        service: "events".to_owned(),
        datastore: Datastore::Redis.name(),
        hint: Datastore::Redis.hint(),
    })?;
    let redis = RedisHandle::connect(redis).await?;
    let letters = match action {
        DeadLetterAction::List {
            source,
            group,
            limit,
        } => dead_letters::list(&redis, &source, &group, limit).await?,
        DeadLetterAction::Replay {
            source,
            group,
            ids,
            all,
        } => {
            let ids = if all {
                dead_letters::list(&redis, &source, &group, REPLAY_ALL_LIMIT)
                    .await?
                    .into_iter()
                    .map(|d| d.dead_id)
                    .collect()
            } else {
                ids
            };
            dead_letters::replay(&redis, &source, &group, &ids).await?
        }
    };
    for letter in &letters {
        println!("{}", line(letter));
    }
    Ok(())
}

/// One dead letter as a JSON line.
fn line(letter: &DeadLetter) -> String {
    // A struct of strings always serializes.
    serde_json::to_string(letter).unwrap_or_default()
}

fn select(names: &[String]) -> Result<Vec<ServiceDef>, KitError> {
    let all: Vec<ServiceDef> = SERVICES.iter().map(|f| f()).collect();
    if names.iter().any(|n| n == "all") {
        return Ok(all);
    }
    let known: Vec<ServiceDef> = SERVICES.iter().chain(FLEET_SERVICES).map(|f| f()).collect();
    let mut chosen = Vec::new();
    for name in names {
        let def = known.iter().find(|d| d.name == name).ok_or_else(|| {
            KitError::UnknownService(format!(
                "{name} (known: {}, or all)",
                known.iter().map(|d| d.name).collect::<Vec<_>>().join(", ")
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
            // One process, one OpenTelemetry service: the Titan service it serves (a cell runs
            // one per pod), or `titan` for several.
            let name = match services.as_slice() {
                [one] => one.name,
                _ => "titan",
            };
            let telemetry =
                titan_kit::telemetry::init_serving(&config.tracing, name, &config.cell)?;
            let shutdown = CancellationToken::new();
            tokio::spawn(stop_on_signal(shutdown.clone()));
            let served = runtime::serve(config, services, shutdown, |_| {}).await;
            // After the drain: the spans of the last requests are sent before the exit.
            telemetry.shutdown().await;
            served
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
        Command::Events { command, config } => {
            let config = Config::load(config.as_deref())?;
            let EventsCommand::DeadLetters { action } = command;
            dead_letter_command(&config, action).await
        }
        Command::Recorder {
            dir,
            callback,
            settle_seconds,
            scan_seconds,
        } => {
            let storage = ObjectStorageConfig::from_env()?.ok_or_else(|| {
                KitError::config(
                    "objectStorage.bucket",
                    "set TITAN_S3_BUCKET and the other TITAN_S3_* variables to the bucket recordings go to",
                )
            })?;
            let recorder = Recorder::new(
                RecorderOptions {
                    dir,
                    callback,
                    settle: Duration::from_secs(settle_seconds),
                },
                ObjectStorage::new(&storage)?,
            )?;
            let shutdown = CancellationToken::new();
            tokio::spawn(stop_on_signal(shutdown.clone()));
            recorder
                .run(Duration::from_secs(scan_seconds), shutdown)
                .await;
            Ok(())
        }
        Command::Fraud { command, config } => {
            let config = Config::load(config.as_deref())?;
            let FraudCommand::Train { settle_days } = command;
            let report = titan_fraud::train::run(&config, settle_days)
                .await
                .map_err(|e| KitError::Other(format!("fraud train: {e}")))?;
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
            Ok(())
        }
        Command::Route { command } => route_command(command),
        Command::Version => {
            let names: Vec<&str> = SERVICES
                .iter()
                .chain(FLEET_SERVICES)
                .map(|f| f().name)
                .collect();
            println!("titan {} ({})", env!("CARGO_PKG_VERSION"), names.join(", "));
            Ok(())
        }
    }
}

fn route_command(command: RouteCommand) -> Result<(), KitError> {
    let RouteCommand::Solve {
        file,
        format: RouteFormat::Solomon,
        budget_ms,
        seed,
        iterations,
        objective,
        json,
    } = command;
    let fail = |e: String| KitError::Other(format!("route solve {}: {e}", file.display()));
    let text = std::fs::read_to_string(&file).map_err(|e| fail(e.to_string()))?;
    let instance = titan_route::solomon::parse(&text).map_err(|e| fail(e.to_string()))?;
    let settings = titan_route::Settings {
        objective: match objective {
            RouteObjective::Distance => titan_route::Objective::Distance,
            RouteObjective::Vehicles => titan_route::Objective::VehiclesThenDistance,
        },
        seed,
        time_limit: Some(Duration::from_millis(budget_ms)),
        max_iterations: iterations,
    };
    let started = std::time::Instant::now();
    let solution =
        titan_route::solve(&instance.problem, &settings).map_err(|e| fail(e.to_string()))?;
    if json {
        let answer =
            serde_json::to_string(&instance.answer(&solution)).map_err(|e| fail(e.to_string()))?;
        println!("{answer}");
    } else {
        print!(
            "{}",
            instance.report(&solution, started.elapsed().as_secs_f64())
        );
    }
    Ok(())
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

/// mimalloc instead of glibc's malloc: under load the services allocate many small, short-lived
/// buffers on one worker thread and free them on another (requests, Redis and PostgreSQL
/// replies), where glibc's arenas spent a fifth of fraud's CPU in malloc, free and
/// consolidation (perf). `titan-bench fraud --users 5000 --rate 2000`, same build otherwise:
/// 403 → 365 µs of service CPU per check, client p99 79 → 28 ms, maximum 2,388 → 2,819/s.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` installs logging with its trace exporter, once its configuration is read.
    if !matches!(cli.command, Command::Serve { .. }) {
        titan_kit::telemetry::init();
    }
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
    fn a_replay_names_its_dead_letters_or_says_all() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(
                [
                    "titan",
                    "events",
                    "dead-letters",
                    "replay",
                    "--source",
                    "flashsale",
                ]
                .iter()
                .chain(["--group", "gamification"].iter())
                .chain(args.iter()),
            )
        };
        assert!(parse(&[]).is_err(), "neither --id nor --all");
        assert!(parse(&["--all", "--id", "1-0"]).is_err(), "both");
        let Command::Events {
            command: EventsCommand::DeadLetters { action },
            ..
        } = parse(&["--id", "1-0", "--id", "2-0"]).expect("ids").command
        else {
            panic!("not an events command");
        };
        assert!(
            matches!(action, DeadLetterAction::Replay { ids, all: false, .. } if ids == ["1-0", "2-0"])
        );
    }

    #[test]
    fn services_are_selected_by_name() {
        assert_eq!(select(&["all".into()]).expect("all").len(), SERVICES.len());
        assert!(
            select(&["all".into()])
                .expect("all")
                .iter()
                .all(|d| d.name != "router"),
            "the fleet's router is not part of a cell's all"
        );
        let router = select(&["router".into()]).expect("router");
        assert_eq!(
            router.iter().map(|d| d.name).collect::<Vec<_>>(),
            ["router"]
        );
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
