//! `cargo xtask bench [--quick] [--only a,b]`: every load generator in one command. Builds
//! `titan` and `titan-bench` (release; `--quick` the debug build, which CI's test run has
//! built already — a release build of the workspace takes many minutes on two cores, and the
//! quick run judges correctness only), finds test datastores or starts its own, then runs
//! `titan-bench all`: progress while it runs, one table at the end, `results.json` and PNGs in
//! `target/bench/`. Datastores it started are stopped by PID at the end.
//!
//! Datastores are reused when `TITAN_TEST_POSTGRES_URL` is already set (inside `cargo xtask
//! test`, or a shell after `eval "$(cargo xtask datastores env)"`) or when `cargo xtask
//! datastores start` left them running.

use std::fs;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::datastores::{self, Datastores};
use crate::state::Profile;
use crate::{packages, process, signals};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// CI's run: each scenario's short mode on the debug build, correctness only.
    #[arg(long)]
    quick: bool,
    /// Only these scenarios (comma-separated, e.g. `flashsale,coupon`), in the suite's order.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

/// Where the table's data and the PNGs go, under the target directory.
const OUT: &str = "bench";

pub fn run(args: &Args) -> Result<ExitCode> {
    let profile = if args.quick { "debug" } else { "release" };
    // One package per build, as the load generator's cell builds `titan` itself: built
    // together, the two would unify dependency features differently and that second build
    // would compile most of the workspace again (measured: 7 minutes at release).
    for package in ["titan", "titan-bench"] {
        eprintln!("==> building {package} ({profile})");
        let mut build = crate::cargo();
        build.args(["build", "-p", package, "--bin", package]);
        if !args.quick {
            build.arg("--release");
        }
        let status = process::run("cargo build", &mut build)?;
        signals::check()?;
        if !status.success() {
            bail!("cargo build -p {package} failed ({status})");
        }
    }

    let mut env: Vec<(String, String)> = Vec::new();
    let mut started = None;
    if std::env::var_os("TITAN_TEST_POSTGRES_URL").is_some() {
        eprintln!("==> using the datastores of TITAN_TEST_* in the environment");
    } else if let Some(state) = super::datastores::running()? {
        eprintln!("==> using the datastores of `cargo xtask datastores start`");
        env = datastores::test_env(&state)?;
    } else {
        packages::ensure(packages::DATASTORES)?;
        let dir = crate::target_dir()
            .join("xtask-ci")
            .join(format!("bench-{}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        let stores = Datastores::start(&dir, Profile::Test, Some(std::process::id()), None)?;
        env = datastores::test_env(stores.state())?;
        started = Some((stores, dir));
    }
    if std::env::var_os("TITAN_TEST_AIOSMTPD").is_none() {
        // The campaign scenario's SMTP server.
        packages::ensure(packages::PYTHON)?;
        env.push((
            "TITAN_TEST_AIOSMTPD".to_owned(),
            super::test::aiosmtpd()?.display().to_string(),
        ));
    }

    let out = crate::target_dir().join(OUT);
    let mut suite =
        std::process::Command::new(crate::target_dir().join(profile).join("titan-bench"));
    suite
        .current_dir(crate::repo_root())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .arg("all")
        .arg("--out")
        .arg(&out);
    if args.quick {
        suite.arg("--quick");
    }
    if !args.only.is_empty() {
        suite.arg("--only").arg(args.only.join(","));
    }
    eprintln!("==> {}", process::describe(&suite));
    let ran = process::run("titan-bench all", &mut suite);

    if let Some((stores, dir)) = started {
        eprintln!("==> stopping the datastores");
        stores.stop()?;
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let status = ran?;
    eprintln!("results and PNGs in {}", out.display());
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
