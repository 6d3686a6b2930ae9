//! `cargo xtask`: Titan's developer and CI tasks — the test command CI runs, every load
//! generator in one table (`bench`), a local cell with real datastores, the datastores on their
//! own for running tests by hand, and the Helm chart check and generator.

mod cmd;
mod datastores;
mod http;
mod kube;
mod packages;
mod process;
mod signals;
mod state;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Titan's developer and CI tasks",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start PostgreSQL, Redis, ClickHouse and s3s-fs, then run fmt, clippy and every test
    /// against them (what CI runs).
    Test(cmd::test::Args),
    /// Build release titan and titan-bench, start (or reuse) the test datastores and run every
    /// load generator: one table of figure, target, result, pass/short; results.json and PNGs
    /// in target/bench/. `--quick` is CI's correctness-only run on the debug build.
    Bench(cmd::bench::Args),
    /// Run a local cell: the datastores plus `titan serve all`, until Ctrl-C.
    Up(cmd::cell::UpArgs),
    /// Stop a local cell started by `up` in another terminal.
    Down(cmd::cell::DownArgs),
    /// Start or stop the test datastores to run tests by hand.
    Datastores(cmd::datastores::Args),
    /// Lint, render and validate the Helm chart with the real Helm engine, and check that
    /// its CRDs and manifests/install.yaml are up to date (a step of `test`).
    Chart,
    /// Regenerate every generated, committed file: manifests/crds, the chart's copy of the
    /// CRDs and manifests/install.yaml.
    Gen,
    /// A local Kubernetes control plane (etcd, apiserver, controller-manager, scheduler,
    /// kwok) for the cluster suite: `up`, `down`, `env`.
    Kube(kube::Args),
}

fn main() -> ExitCode {
    // First, so that a Ctrl-C at any later point stops what xtask started.
    if let Err(e) = signals::install() {
        eprintln!("xtask: error: {e:#}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Test(args) => cmd::test::run(&args),
        Command::Bench(args) => cmd::bench::run(&args),
        Command::Up(args) => cmd::cell::up(&args),
        Command::Down(args) => cmd::cell::down(&args),
        Command::Datastores(args) => cmd::datastores::run(&args),
        Command::Chart => cmd::chart::check(),
        Command::Gen => cmd::chart::generate(),
        Command::Kube(args) => kube::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) if signals::interrupted() => {
            eprintln!("xtask: {e:#}");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask lives one level below it).
fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_owned()
}

/// Cargo's target directory, honouring `CARGO_TARGET_DIR`.
fn target_dir() -> PathBuf {
    let root = repo_root();
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// The cargo that ran us (`cargo xtask` sets `CARGO`), so steps use the same toolchain.
fn cargo() -> std::process::Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(program);
    cmd.current_dir(repo_root());
    cmd
}
