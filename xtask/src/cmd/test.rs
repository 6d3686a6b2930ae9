//! `cargo xtask test`: the project's test command, which `.ci/run` runs. Installs what is
//! missing (Debian packages, cargo-nextest, Node's `ws` for the WebSocket tests), starts the
//! datastores and a local Kubernetes control plane (for the cluster suite) in a fresh directory
//! under `target/xtask-ci/`, runs
//! fmt, clippy, the Helm chart check, the doc tests and the tests against them, stops every
//! server by PID whatever happens, and prints a timing per step.

use std::fs;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cmd::chart;
use crate::datastores::{self, Datastores};
use crate::kube::{self, ControlPlane};
use crate::state::{Profile, State};
use crate::{packages, process, signals};

/// The test runner xtask installs when it is missing: the suite relies on a process per test
/// (global state of the servers each test starts, signals). Pinned so every machine runs the
/// same one.
const NEXTEST: &str = "cargo-nextest@0.9.151";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Skip `cargo fmt --check` and `cargo clippy`.
    #[arg(long)]
    no_lint: bool,
    /// Skip the doc tests.
    #[arg(long)]
    no_doc: bool,
    /// Skip the Helm chart check (`cargo xtask chart`); it is also skipped when `-p` picks
    /// packages, since it checks no crate.
    #[arg(long)]
    no_chart: bool,
    /// Do not start the local Kubernetes control plane (the cluster suite then skips); it is
    /// also left out when `-p` picks packages other than titan-e2e.
    #[arg(long)]
    no_kube: bool,
    /// Arguments for the test runner (`cargo nextest run`, else `cargo test`), after `--`;
    /// `-p NAME` narrows the lints and doc tests too. Example: `cargo xtask test -- -p titan-kit`.
    #[arg(last = true, value_name = "RUNNER_ARGS")]
    runner_args: Vec<String>,
}

/// How one step ended.
#[derive(Debug)]
enum Outcome {
    Ok,
    Failed(String),
    Skipped(&'static str),
}

impl Outcome {
    fn describe(&self) -> String {
        match self {
            Outcome::Ok => "ok".to_owned(),
            Outcome::Failed(why) => format!("FAILED ({why})"),
            Outcome::Skipped(why) => (*why).to_owned(),
        }
    }
}

#[derive(Debug)]
struct Timing {
    name: String,
    took: Duration,
    outcome: Outcome,
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let mut timings = Vec::new();
    let result = run_steps(args, &mut timings);
    print_summary(&timings);
    result?;
    let failed = timings
        .iter()
        .filter(|t| matches!(t.outcome, Outcome::Failed(_)))
        .count();
    if signals::interrupted() {
        eprintln!("xtask test: interrupted");
        return Ok(ExitCode::from(130));
    }
    if failed > 0 {
        eprintln!("xtask test: {failed} step(s) FAILED");
        return Ok(ExitCode::FAILURE);
    }
    eprintln!("xtask test: every step succeeded");
    Ok(ExitCode::SUCCESS)
}

fn run_steps(args: &Args, timings: &mut Vec<Timing>) -> Result<()> {
    if selected_packages(&args.runner_args).is_empty() {
        disk_step(timings)?;
    }
    let started = Instant::now();
    packages::ensure(
        &[
            packages::DATASTORES,
            packages::MEDIA,
            packages::MONITORING,
            packages::PYTHON,
        ]
        .concat(),
    )?;
    timings.push(Timing {
        name: "packages".into(),
        took: started.elapsed(),
        outcome: Outcome::Ok,
    });
    let started = Instant::now();
    let outcome = ensure_nextest();
    timings.push(Timing {
        name: "nextest".into(),
        took: started.elapsed(),
        outcome,
    });

    let ci_dir = crate::target_dir().join("xtask-ci");
    sweep_stale_runs(&ci_dir);
    let dir = ci_dir.join(format!("test-{}", std::process::id()));
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let started = Instant::now();
    let stores = Datastores::start(&dir, Profile::Test, Some(std::process::id()), None)
        .inspect_err(|_| {
            // Nothing worth a look is left once every server is stopped.
            if datastores::running(&dir, None).is_empty() {
                let _ = fs::remove_dir_all(&dir);
            }
        })?;
    timings.push(Timing {
        name: "datastores".into(),
        took: started.elapsed(),
        outcome: Outcome::Ok,
    });
    let mut env = datastores::test_env(stores.state())?;
    if std::env::var_os("CARGO_INCREMENTAL").is_none() {
        // A run builds each crate once; incremental caches only pay back on the next edit,
        // and on a fresh clone they were 4.4 of the target's GiB (measured 2026-12-06).
        env.push(("CARGO_INCREMENTAL".to_owned(), "0".to_owned()));
    }
    env.extend(node_ws_step(&ci_dir, timings));
    env.extend(smtp_step(timings));
    let plane = control_plane_step(args, &dir, timings);
    if let Some(plane) = &plane {
        env.extend(plane.test_env());
    }
    eprint!("{}", datastores::exports(&env));

    let chart = chart_step(args, timings);
    for (name, cmd) in steps(args, chart)? {
        let Some(mut cmd) = cmd else {
            timings.push(Timing {
                name: name.into(),
                took: Duration::ZERO,
                outcome: Outcome::Skipped("skipped"),
            });
            continue;
        };
        if signals::interrupted() {
            break;
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        eprintln!("==> {name}: {}", process::describe(&cmd));
        let started = Instant::now();
        let status = process::run(name, &mut cmd)?;
        let took = started.elapsed();
        let outcome = if status.success() {
            Outcome::Ok
        } else if signals::interrupted() {
            Outcome::Skipped("interrupted")
        } else {
            Outcome::Failed(status.to_string())
        };
        eprintln!(
            "<== {name} {} in {}",
            outcome.describe(),
            process::secs(took)
        );
        if name == "chart" && matches!(outcome, Outcome::Failed(_)) {
            eprintln!("xtask test: {}", chart::FAILURE_HINT);
        }
        timings.push(Timing {
            name: name.into(),
            took,
            outcome,
        });
    }

    if let Some(plane) = plane {
        let started = Instant::now();
        eprintln!("==> stopping the control plane");
        let outcome = match plane.stop() {
            Ok(()) => Outcome::Ok,
            Err(e) => Outcome::Failed(format!("{e:#}")),
        };
        timings.push(Timing {
            name: "stop kube".into(),
            took: started.elapsed(),
            outcome,
        });
    }
    let started = Instant::now();
    eprintln!("==> stopping the datastores");
    let stopped = stores.stop();
    let outcome = match &stopped {
        Ok(()) => Outcome::Ok,
        Err(e) => Outcome::Failed(format!("{e:#}")),
    };
    timings.push(Timing {
        name: "stop datastores".into(),
        took: started.elapsed(),
        outcome,
    });
    if stopped.is_ok() {
        // Throw-away data; kept only when a server would not stop, for a look at its log.
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}

/// Free space a whole run needs on the target directory's file system, from a fresh clone.
/// Measured 2026-12-06: the target of a fresh run reached 13 GiB, 4.4 of them incremental
/// caches this command no longer writes; the rest is the debug build of every crate and test,
/// the datastores' files and the binaries tests build, plus a margin. The run that last ran
/// out failed 13 minutes in with "No space left on device" and 700 tests unrun.
const DISK_NEEDED_GIB: u64 = 12;

/// Refuses to start a whole run that cannot finish for want of disk, saying so at once.
fn disk_step(timings: &mut Vec<Timing>) -> Result<()> {
    let started = Instant::now();
    let target = crate::target_dir();
    let free = free_gib(&target)?;
    let enough = free >= DISK_NEEDED_GIB;
    eprintln!(
        "==> disk: {free} GiB free for {} (a whole run needs about {DISK_NEEDED_GIB} GiB)",
        target.display()
    );
    timings.push(Timing {
        name: "disk".into(),
        took: started.elapsed(),
        outcome: if enough {
            Outcome::Ok
        } else {
            Outcome::Failed(format!(
                "{free} GiB free, about {DISK_NEEDED_GIB} GiB needed"
            ))
        },
    });
    if !enough {
        anyhow::bail!(
            "only {free} GiB free for {}: a whole run needs about {DISK_NEEDED_GIB} GiB; free \
             some (e.g. `cargo clean` in other checkouts) or run a part with `-- -p PACKAGE`",
            target.display()
        );
    }
    Ok(())
}

/// Whole GiB available to us on the file system holding `path` (POSIX `df -P`, KiB blocks).
fn free_gib(path: &Path) -> Result<u64> {
    let mut df = Command::new("df");
    df.arg("-P").arg("-k").arg(path);
    let out = process::output(&mut df)?;
    parse_df_available_kib(&out)
        .map(|kib| kib / (1024 * 1024))
        .with_context(|| format!("unexpected `df -P -k` output: {out:?}"))
}

/// The "Available" column of `df -P`'s one data line.
fn parse_df_available_kib(out: &str) -> Option<u64> {
    out.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()
}

/// The npm packages of the e2e suite's Node.js scripts, pinned to a major (minor) version: the
/// WebSocket client, and playwright-core, which drives Debian's Chromium in the videocall
/// browser test (it downloads no browser).
const NODE_PACKAGES: &[&str] = &["ws@8", "playwright-core@1.65"];

/// Installs the Node packages under `target/xtask-ci/node` for the e2e suite and exports
/// where they are (`TITAN_E2E_NODE_MODULES`); the tests fail without them, so a failed install
/// is a failed step, not a skipped test.
fn node_ws_step(ci_dir: &Path, timings: &mut Vec<Timing>) -> Vec<(String, String)> {
    let started = Instant::now();
    let prefix = ci_dir.join("node");
    let mut install = Command::new("npm");
    install
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&prefix)
        .args(NODE_PACKAGES);
    let outcome = match process::run("npm install", &mut install) {
        Ok(status) if status.success() => Outcome::Ok,
        Ok(status) => Outcome::Failed(format!("npm install {}: {status}", NODE_PACKAGES.join(" "))),
        Err(e) => Outcome::Failed(format!("{e:#}")),
    };
    timings.push(Timing {
        name: "node packages".into(),
        took: started.elapsed(),
        outcome,
    });
    vec![(
        "TITAN_E2E_NODE_MODULES".to_owned(),
        prefix.join("node_modules").display().to_string(),
    )]
}

/// The pinned SMTP server of the campaign tests, which start one each (so each counts only
/// its own messages) from this Python.
const AIOSMTPD: &str = "aiosmtpd==1.4.6";

/// Installs aiosmtpd into a venv in the tool cache once, and exports its Python as
/// `TITAN_TEST_AIOSMTPD`; a failed install is a failed step (the campaign tests then fail
/// saying the variable is missing).
fn smtp_step(timings: &mut Vec<Timing>) -> Vec<(String, String)> {
    let started = Instant::now();
    let (outcome, env) = match aiosmtpd() {
        Ok(python) => (
            Outcome::Ok,
            vec![(
                "TITAN_TEST_AIOSMTPD".to_owned(),
                python.display().to_string(),
            )],
        ),
        Err(e) => (Outcome::Failed(format!("{e:#}")), Vec::new()),
    };
    timings.push(Timing {
        name: "aiosmtpd".into(),
        took: started.elapsed(),
        outcome,
    });
    env
}

/// The Python of a venv in the tool cache with aiosmtpd installed (once per machine).
pub fn aiosmtpd() -> Result<std::path::PathBuf> {
    let venv = datastores::s3::tool_cache()?.join(AIOSMTPD.replace("==", "-"));
    let python = venv.join("bin").join("python");
    if python.is_file() {
        return Ok(python);
    }
    eprintln!(
        "==> installing {AIOSMTPD} into {} (once per machine)",
        venv.display()
    );
    let mut create = Command::new("python3");
    create.args(["-m", "venv"]).arg(&venv);
    let mut pip = Command::new(&python);
    pip.args(["-m", "pip", "install", "--quiet", AIOSMTPD]);
    for (what, cmd) in [("python3 -m venv", &mut create), ("pip install", &mut pip)] {
        let status = process::run(what, cmd)?;
        if !status.success() {
            anyhow::bail!("{what} for {AIOSMTPD}: {status}");
        }
    }
    Ok(python)
}

/// Installs cargo-nextest when it is missing; a failed install is a failed step (the tests
/// then run under `cargo test`), not a reason to stop the rest of CI.
fn ensure_nextest() -> Outcome {
    if process::which("cargo-nextest").is_some() {
        return Outcome::Ok;
    }
    eprintln!("==> installing {NEXTEST} (missing; once per machine)");
    let mut install = crate::cargo();
    install.args(["install", "--locked", NEXTEST]);
    match process::run("cargo install", &mut install) {
        Ok(status) if status.success() => Outcome::Ok,
        Ok(status) => Outcome::Failed(format!("cargo install {NEXTEST}: {status}")),
        Err(e) => Outcome::Failed(format!("{e:#}")),
    }
}

/// Builds (or finds in the cache) and starts the local control plane for the cluster suite.
/// Without Go the step says why it is skipped, and so does the suite; a build or start that
/// fails is a failed step, so the suite can never pass by skipping.
fn control_plane_step(args: &Args, dir: &Path, timings: &mut Vec<Timing>) -> Option<ControlPlane> {
    if !kube_wanted(args) {
        return None;
    }
    if let Some(reason) = kube::build::unavailable() {
        eprintln!("xtask test: the cluster suite will skip: {reason}");
        timings.push(Timing {
            name: "kube".into(),
            took: Duration::ZERO,
            outcome: Outcome::Skipped("skipped: no Go"),
        });
        return None;
    }
    let started = Instant::now();
    let tools = kube::build::ensure();
    timings.push(Timing {
        name: "kube build".into(),
        took: started.elapsed(),
        outcome: match &tools {
            Ok(_) => Outcome::Ok,
            Err(e) => Outcome::Failed(format!("{e:#}")),
        },
    });
    let tools = tools
        .inspect_err(|e| eprintln!("xtask test: cannot build the control plane: {e:#}"))
        .ok()?;
    let started = Instant::now();
    let plane = ControlPlane::start(&dir.join("kube"), &tools, Some(std::process::id()));
    timings.push(Timing {
        name: "kube start".into(),
        took: started.elapsed(),
        outcome: match &plane {
            Ok(_) => Outcome::Ok,
            Err(e) => Outcome::Failed(format!("{e:#}")),
        },
    });
    plane
        .inspect_err(|e| eprintln!("xtask test: cannot start the control plane: {e:#}"))
        .ok()
}

/// CI (no package picked) runs the cluster suite; so does a developer picking titan-e2e.
fn kube_wanted(args: &Args) -> bool {
    let selected = selected_packages(&args.runner_args);
    !args.no_kube && (selected.is_empty() || selected.iter().any(|p| p == "titan-e2e"))
}

/// The chart check's command, once its virtualenv is ready; `None` (skipped) when not wanted.
/// A venv that cannot be built is a failed step of its own, with pip's or venv's error, not a
/// reason to stop the rest of CI.
fn chart_step(args: &Args, timings: &mut Vec<Timing>) -> Option<Command> {
    if !chart_wanted(args) {
        return None;
    }
    let started = Instant::now();
    let venv = chart::Venv::default_location();
    let outcome = match venv.ensure(&chart::requirements_file()) {
        Ok(()) => Outcome::Ok,
        Err(e) => {
            eprintln!("xtask test: cannot build the chart tools' virtualenv: {e:#}");
            Outcome::Failed(format!("{e:#}"))
        }
    };
    let ready = matches!(outcome, Outcome::Ok);
    timings.push(Timing {
        name: "chart venv".into(),
        took: started.elapsed(),
        outcome,
    });
    ready.then(|| chart::check_command(&venv, false))
}

/// CI (no package picked) checks the chart; a developer testing some crates does not.
fn chart_wanted(args: &Args) -> bool {
    !args.no_chart && selected_packages(&args.runner_args).is_empty()
}

/// The steps in order; `None` for a step that is skipped. Doc tests go before the test runner
/// so that the runner's summary is the last thing a log reader sees.
fn steps(args: &Args, chart: Option<Command>) -> Result<Vec<(&'static str, Option<Command>)>> {
    let mut steps = Vec::new();
    let lint = !args.no_lint;
    let selected = selected_packages(&args.runner_args);
    // A developer who picked packages gets those linted, not the whole workspace; CI picks
    // none and lints everything.
    let scope: Vec<String> = if selected.is_empty() {
        Vec::new()
    } else {
        selected
            .iter()
            .flat_map(|p| ["-p".to_owned(), p.clone()])
            .collect()
    };
    let mut fmt = crate::cargo();
    fmt.arg("fmt");
    if scope.is_empty() {
        fmt.arg("--all");
    }
    fmt.args(&scope).arg("--check");
    steps.push(("fmt", lint.then_some(fmt)));
    let mut clippy = crate::cargo();
    clippy.arg("clippy");
    if scope.is_empty() {
        clippy.arg("--workspace");
    }
    clippy
        .args(&scope)
        .args(["--all-targets", "--", "-D", "warnings"]);
    steps.push(("clippy", lint.then_some(clippy)));
    // Seconds, and independent of the crates: early, so a stale install.yaml shows at once.
    steps.push(("chart", chart));

    let doc = if args.no_doc {
        None
    } else if selected.is_empty() {
        let mut doc = crate::cargo();
        doc.args(["test", "--workspace", "--doc"]);
        Some(doc)
    } else {
        // `cargo test --doc -p X` fails when X has no library; leave such packages out.
        let libs = library_packages()?;
        let with_lib: Vec<&String> = selected.iter().filter(|p| libs.contains(p)).collect();
        if with_lib.is_empty() {
            eprintln!(
                "note: no library among {}: no doc tests to run",
                selected.join(", ")
            );
            None
        } else {
            let mut doc = crate::cargo();
            doc.args(["test", "--doc"]);
            for p in with_lib {
                doc.args(["-p", p]);
            }
            Some(doc)
        }
    };
    steps.push(("doc tests", doc));

    let mut tests = crate::cargo();
    if process::which("cargo-nextest").is_some() {
        tests.args(["nextest", "run", "--no-fail-fast"]);
    } else {
        tests.args(["test", "--no-fail-fast"]);
    }
    if selected.is_empty()
        && !args
            .runner_args
            .iter()
            .any(|a| a == "--workspace" || a == "--all")
    {
        tests.arg("--workspace");
    }
    tests.args(&args.runner_args);
    steps.push(("tests", Some(tests)));
    Ok(steps)
}

/// The packages named with `-p`/`--package` in runner arguments (before a `--`, which starts
/// the test binaries' own arguments).
fn selected_packages(args: &[String]) -> Vec<String> {
    let mut selected = Vec::new();
    let mut iter = args.iter().take_while(|a| *a != "--");
    while let Some(arg) = iter.next() {
        if arg == "-p" || arg == "--package" {
            if let Some(name) = iter.next() {
                selected.push(name.clone());
            }
        } else if let Some(name) = arg.strip_prefix("--package=") {
            selected.push(name.to_owned());
        } else if let Some(name) = arg
            .strip_prefix("-p")
            .filter(|n| !n.is_empty() && !arg.starts_with("--"))
        {
            selected.push(name.to_owned());
        }
    }
    selected
}

/// Workspace members that have a library target (and so can have doc tests).
fn library_packages() -> Result<Vec<String>> {
    let out =
        process::output(crate::cargo().args(["metadata", "--no-deps", "--format-version", "1"]))?;
    let metadata: serde_json::Value =
        serde_json::from_str(&out).context("parsing cargo metadata")?;
    Ok(library_packages_in(&metadata))
}

fn library_packages_in(metadata: &serde_json::Value) -> Vec<String> {
    let packages = metadata["packages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    packages
        .iter()
        .filter(|p| {
            p["targets"].as_array().is_some_and(|targets| {
                targets.iter().any(|t| {
                    t["kind"].as_array().is_some_and(|k| {
                        k.iter()
                            .any(|k| k == "lib" || k == "rlib" || k == "proc-macro")
                    })
                })
            })
        })
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect()
}

/// Stops the servers of runs that were killed before they could (their owner is gone) and
/// removes their directories. A run still going (owner alive) is left alone.
fn sweep_stale_runs(ci_dir: &Path) {
    let Ok(entries) = fs::read_dir(ci_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        if !entry.file_name().to_string_lossy().starts_with("test-") {
            continue;
        }
        let state = match State::load(&dir) {
            Ok(state) => state,
            Err(e) => {
                eprintln!("note: leaving {} alone: {e:#}", dir.display());
                continue;
            }
        };
        if let Some(owner) = state.as_ref().and_then(|s| s.owner_pid)
            && process::alive_as(owner, "xtask")
        {
            continue;
        }
        let kube_dir = dir.join("kube");
        if !kube::running(&kube_dir).is_empty() {
            eprintln!(
                "note: stopping a control plane left by a killed run in {}",
                kube_dir.display()
            );
            if let Err(e) = kube::stop_all(&kube_dir) {
                eprintln!("note: {e:#}");
                continue;
            }
        }
        if !datastores::running(&dir, state.as_ref()).is_empty() {
            eprintln!(
                "note: stopping servers left by a killed run in {}",
                dir.display()
            );
            if let Err(e) = datastores::stop_all(&dir, state.as_ref()) {
                eprintln!("note: {e:#}");
                continue;
            }
        }
        if let Err(e) = fs::remove_dir_all(&dir) {
            eprintln!("note: could not remove {}: {e}", dir.display());
        }
    }
}

fn print_summary(timings: &[Timing]) {
    if timings.is_empty() {
        return;
    }
    eprintln!("\nxtask test timings:");
    for t in timings {
        let outcome = t.outcome.describe();
        eprintln!("  {:<16} {:>9}  {outcome}", t.name, process::secs(t.took));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn reads_the_available_column_of_df() {
        let out = "Filesystem     1024-blocks     Used Available Capacity Mounted on\n\
                   /dev/vda         263174212 85997480  10485760      90% /\n";
        assert_eq!(parse_df_available_kib(out), Some(10_485_760));
        assert_eq!(parse_df_available_kib("Filesystem 1024-blocks\n"), None);
        assert_eq!(parse_df_available_kib(""), None);
    }

    #[test]
    fn finds_package_selections_in_every_spelling() {
        let args = strings(&[
            "-p",
            "a",
            "--package",
            "b",
            "--package=c",
            "-pd",
            "--",
            "-p",
            "not-a-package",
        ]);
        assert_eq!(selected_packages(&args), ["a", "b", "c", "d"]);
        assert!(selected_packages(&strings(&["--no-capture", "-E", "test(x)"])).is_empty());
    }

    fn args(extra: &[&str]) -> Args {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let argv = std::iter::once("test").chain(extra.iter().copied());
        Cli::try_parse_from(argv).expect("valid arguments").args
    }

    #[test]
    fn ci_checks_the_chart_and_developers_picking_crates_do_not() {
        assert!(chart_wanted(&args(&[])), "CI runs `cargo xtask test` bare");
        assert!(chart_wanted(&args(&["--", "--no-fail-fast"])));
        assert!(!chart_wanted(&args(&["--no-chart"])));
        assert!(!chart_wanted(&args(&["--", "-p", "titan-kit"])));
    }

    #[test]
    fn ci_and_e2e_runs_start_the_control_plane_and_others_do_not() {
        assert!(kube_wanted(&args(&[])));
        assert!(kube_wanted(&args(&["--", "-p", "titan-e2e"])));
        assert!(!kube_wanted(&args(&["--", "-p", "titan-kit"])));
        assert!(!kube_wanted(&args(&["--no-kube"])));
    }

    #[test]
    fn the_chart_step_comes_after_the_lints_and_is_skipped_without_a_command() {
        let names = |steps: Vec<(&'static str, Option<Command>)>| {
            steps
                .into_iter()
                .map(|(name, cmd)| (name, cmd.is_some()))
                .collect::<Vec<_>>()
        };
        let given = steps(&args(&["--no-doc"]), Some(Command::new("python"))).expect("steps");
        assert_eq!(
            names(given),
            [
                ("fmt", true),
                ("clippy", true),
                ("chart", true),
                ("doc tests", false),
                ("tests", true)
            ]
        );
        let skipped = steps(&args(&["--no-doc", "--no-lint"]), None).expect("steps");
        assert_eq!(
            names(skipped),
            [
                ("fmt", false),
                ("clippy", false),
                ("chart", false),
                ("doc tests", false),
                ("tests", true)
            ]
        );
    }

    #[test]
    fn lists_only_packages_with_a_library() {
        let metadata = serde_json::json!({"packages": [
            {"name": "titan-kit", "targets": [{"kind": ["lib"]}, {"kind": ["test"]}]},
            {"name": "xtask", "targets": [{"kind": ["bin"]}]},
            {"name": "macros", "targets": [{"kind": ["proc-macro"]}]},
        ]});
        assert_eq!(library_packages_in(&metadata), ["titan-kit", "macros"]);
        assert!(library_packages_in(&serde_json::json!({})).is_empty());
    }
}
