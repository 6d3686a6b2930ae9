//! The `kubectl-titan` binary: kubectl finds it on PATH and runs it for `kubectl titan ...`.

use std::{io::Write as _, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use k8s_openapi::jiff::Timestamp;
use kubectl_titan::{
    Error, Format,
    cluster::Cluster,
    ops::Switch,
    serialize,
    style::{Paint, Style},
    wait::{Target, parse_timeout},
};

#[derive(Debug, Parser)]
#[command(
    name = "kubectl titan",
    bin_name = "kubectl titan",
    version,
    about = "Inspect and operate Titan cells"
)]
struct Args {
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current one).
    #[arg(long, global = true)]
    context: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One screen about a cell, or a table of every cell.
    Status {
        /// The cell; all cells when absent.
        cell: Option<String>,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "text")]
        output: Format,
    },
    /// Pause reconciliation: the operator changes nothing, status still updates.
    Pause(SwitchArgs),
    /// Resume reconciliation.
    Resume(SwitchArgs),
    /// Stop the cell: every service, media server and builtin datastore at zero, data kept.
    Stop(SwitchArgs),
    /// Start a stopped cell.
    Start(SwitchArgs),
    /// Set a service's replicas (refused where the Cell or an autoscaler owns them).
    Scale {
        /// The cell.
        cell: String,
        /// The service (`flashsale`, `coupon`, ...).
        service: String,
        /// Replicas.
        #[arg(value_parser = clap::value_parser!(i32).range(0..))]
        replicas: i32,
    },
    /// The Secrets a cell uses and their keys.
    Credentials {
        /// The cell.
        cell: String,
        /// Print the values too.
        #[arg(long)]
        reveal: bool,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "text")]
        output: Format,
    },
    /// Every object the operator would apply for the given Cells and Services, offline.
    Render {
        /// YAML files holding Cells and Services.
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
    },
    /// Wait until a cell is ready, or ready at a version.
    Wait {
        /// The cell.
        cell: String,
        /// `ready` or `version=<version>`.
        #[arg(long = "for")]
        target: Target,
        /// How long to wait (`90s`, `5m`, `1h30m`).
        #[arg(long, default_value = "5m", value_parser = parse_timeout)]
        timeout: Duration,
    },
}

#[derive(Debug, clap::Args)]
struct SwitchArgs {
    /// The cell.
    cell: String,
    /// Take the field over from another field manager that set it differently.
    #[arg(long)]
    force_conflicts: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // ring and aws-lc-rs are both enabled in the workspace; rustls refuses to guess. An error
    // means a provider is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("kubectl titan: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kubectl titan: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Error> {
    let Args {
        kubeconfig,
        context,
        command,
    } = args;
    let style = Style::for_stdout();
    // Connected per command: `render` is offline and contacts no cluster.
    let connect = || Cluster::connect(kubeconfig.clone(), context.clone());
    match command {
        Command::Render { files } => emit(&titan_operator::render::render_files(&files)?),
        Command::Status { cell: None, output } => {
            let rows = connect().await?.rows().await?;
            emit(&match serialize(&rows, output)? {
                Some(text) => text,
                None => kubectl_titan::status::cells_table(style, &rows),
            })
        }
        Command::Status {
            cell: Some(cell),
            output,
        } => {
            let report = connect().await?.report(&cell).await?;
            emit(&match serialize(&report, output)? {
                Some(text) => text,
                None => report.text(style, Timestamp::now()),
            })
        }
        Command::Pause(a) => switch(&connect().await?, a, Switch::Pause).await,
        Command::Resume(a) => switch(&connect().await?, a, Switch::Resume).await,
        Command::Stop(a) => switch(&connect().await?, a, Switch::Stop).await,
        Command::Start(a) => switch(&connect().await?, a, Switch::Start).await,
        Command::Scale {
            cell,
            service,
            replicas,
        } => emit_line(&connect().await?.scale(&cell, &service, replicas).await?),
        Command::Credentials {
            cell,
            reveal,
            output,
        } => {
            let report = connect().await?.credentials(&cell, reveal).await?;
            emit(&match serialize(&report, output)? {
                Some(text) => text,
                None => report.text(style),
            })
        }
        Command::Wait {
            cell,
            target,
            timeout,
        } => {
            let started = std::time::Instant::now();
            let done = connect()
                .await?
                .wait(&cell, &target, timeout, |line| {
                    progress(style, started.elapsed(), line)
                })
                .await;
            if style.colours() {
                // The progress line is rewritten in place: end it before what follows.
                eprintln!();
            }
            let done = done?;
            emit_line(&format!(
                "{} (after {}s)",
                style.paint(Some(Paint::Good), &done),
                started.elapsed().as_secs()
            ))
        }
    }
}

async fn switch(cluster: &Cluster, args: SwitchArgs, switch: Switch) -> Result<(), Error> {
    emit_line(
        &cluster
            .switch(&args.cell, switch, args.force_conflicts)
            .await?,
    )
}

/// One progress line on stderr: rewritten in place on a terminal, one line per change when
/// piped (a CI log keeps every step).
fn progress(style: Style, elapsed: Duration, line: &str) {
    let text = format!("[{:>4}s] waiting: {line}", elapsed.as_secs());
    if style.colours() {
        eprint!("\r\x1b[2K{}", style.paint(Some(Paint::Busy), &text));
    } else {
        eprintln!("{text}");
    }
}

fn emit_line(text: &str) -> Result<(), Error> {
    emit(&format!("{text}\n"))
}

/// Writes to stdout; a closed pipe (`| head`) is not an error for a printing command.
fn emit(text: &str) -> Result<(), Error> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Output(e.to_string())),
        _ => Ok(()),
    }
}
