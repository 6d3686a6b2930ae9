//! `cargo xtask datastores start|stop|env|status`: the test datastores (s3s-fs included),
//! started once and left running in `target/xtask-ci/datastores/`, so a developer can run
//! `cargo nextest` by hand after `eval "$(cargo xtask datastores env)"`.

use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::datastores::{self, Datastores};
use crate::packages;
use crate::state::{Kind, Profile, State};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Start the servers (or find them running) and print their exports.
    Start,
    /// Stop them by PID and remove their data.
    Stop,
    /// Print `export TITAN_TEST_...=...` lines for a shell: `eval "$(cargo xtask datastores env)"`.
    Env,
    /// Say which servers run, with PIDs and ports.
    Status,
}

fn dir() -> PathBuf {
    crate::target_dir().join("xtask-ci").join("datastores")
}

/// The recorded state when every server in it still runs.
pub fn running() -> Result<Option<State>> {
    let Some(state) = State::load(&dir())? else {
        return Ok(None);
    };
    let all_up = state.servers.len() == Kind::ALL.len()
        && state
            .servers
            .iter()
            .all(|s| datastores::server_running(&dir(), s));
    Ok(all_up.then_some(state))
}

pub fn run(args: &Args) -> Result<ExitCode> {
    match args.action {
        Action::Start => start(),
        Action::Stop => stop(),
        Action::Env => {
            let Some(state) = running()? else {
                bail!(
                    "the test datastores are not running: start them with `cargo xtask datastores start`"
                );
            };
            print!("{}", datastores::exports(&datastores::test_env(&state)?));
            Ok(ExitCode::SUCCESS)
        }
        Action::Status => {
            let state = State::load(&dir())?;
            let servers = state
                .as_ref()
                .map(|s| s.servers.as_slice())
                .unwrap_or_default();
            if servers.is_empty() {
                println!("no test datastores recorded in {}", dir().display());
            }
            for s in servers {
                let up = if datastores::server_running(&dir(), s) {
                    "running"
                } else {
                    "gone"
                };
                println!(
                    "{:<11} {up:<8} pid {:<8} {}",
                    s.kind.name(),
                    s.pid,
                    s.kind.url(s.port, "postgres")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn start() -> Result<ExitCode> {
    if let Some(state) = running()? {
        eprintln!(
            "the test datastores already run (data in {})",
            dir().display()
        );
        print!("{}", datastores::exports(&datastores::test_env(&state)?));
        return Ok(ExitCode::SUCCESS);
    }
    packages::ensure(packages::DATASTORES)?;
    let dir = dir();
    // A partial set (one server died) is stopped and started afresh: the data is throw-away.
    datastores::stop_all(&dir, State::load(&dir)?.as_ref())?;
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let stores = Datastores::start(&dir, Profile::Test, None, None)?;
    let state = stores.detach();
    eprintln!("the test datastores run until `cargo xtask datastores stop`; for a shell:");
    print!("{}", datastores::exports(&datastores::test_env(&state)?));
    Ok(ExitCode::SUCCESS)
}

fn stop() -> Result<ExitCode> {
    let dir = dir();
    if !dir.exists() {
        eprintln!("no test datastores in {}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    datastores::stop_all(&dir, State::load(&dir)?.as_ref())?;
    fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    eprintln!("stopped the test datastores and removed {}", dir.display());
    Ok(ExitCode::SUCCESS)
}
