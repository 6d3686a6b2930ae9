//! The object storage server of tests and local cells: `s3s-fs` (crates.io), an S3 server over
//! a directory, where a bucket is a sub-directory. Installed once with `cargo install` into the
//! user's cache (pinned, like cargo-nextest), and run as our child with a pid file, like
//! ClickHouse.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{Spec, abandon, ours, pid_file, read_pid_file, wait_ready};
use crate::http;
use crate::process;
use crate::state::{Kind, Server};

/// The pinned release: later ones need a newer Rust than the workspace's.
const VERSION: &str = "0.14.1";
/// The bucket created at start, for tests and for the local cell.
pub const BUCKET: &str = "titan";
/// Keys of the server xtask starts. It listens on loopback only and holds throw-away or
/// developer data, like the PostgreSQL it starts without a password; signing still runs, so
/// tests of wrong credentials mean something.
pub const ACCESS_KEY_ID: &str = "titan-local";
pub const SECRET_ACCESS_KEY: &str = "titan-local-secret";

/// The user's cache of pinned tools: `$XDG_CACHE_HOME/titan` or `~/.cache/titan`.
pub fn tool_cache() -> Result<PathBuf> {
    let cache = match std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    Ok(cache.join("titan"))
}

/// Where `cargo install` puts the pinned s3s-fs.
fn install_root() -> Result<PathBuf> {
    Ok(tool_cache()?.join(format!("s3s-fs-{VERSION}")))
}

/// Where the pinned s3s-fs binary is, installed or not.
pub fn binary_path() -> Result<PathBuf> {
    Ok(install_root()?.join("bin").join("s3s-fs"))
}

/// The s3s-fs binary, installed first when the cache lacks it (a few minutes, once per
/// machine).
fn binary() -> Result<PathBuf> {
    let root = install_root()?;
    let bin = binary_path()?;
    if bin.is_file() {
        return Ok(bin);
    }
    eprintln!(
        "==> installing s3s-fs {VERSION} into {} (once per machine)",
        root.display()
    );
    let mut install = crate::cargo();
    install
        .args(["install", "--locked", "--features", "binary", "--root"])
        .arg(&root)
        .arg(format!("s3s-fs@{VERSION}"));
    let status = process::run("cargo install s3s-fs", &mut install)?;
    if !status.success() {
        bail!("cargo install s3s-fs@{VERSION} failed ({status})");
    }
    if !bin.is_file() {
        bail!("cargo installed s3s-fs but {} is missing", bin.display());
    }
    Ok(bin)
}

/// Whether something answers HTTP on the port (without credentials s3s-fs refuses the request,
/// which is still an answer).
fn answers(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    http::request("GET", addr, "/", "", Duration::from_secs(2)).is_ok()
}

/// The directory holding the buckets.
fn root(server_dir: &Path) -> PathBuf {
    server_dir.join("data")
}

pub(super) fn start(spec: &Spec) -> Result<Server> {
    let bin = binary()?;
    let bucket = root(&spec.dir).join(BUCKET);
    fs::create_dir_all(&bucket).with_context(|| format!("creating {}", bucket.display()))?;
    let pid_file = pid_file(&spec.dir, Kind::S3);
    if let Some(pid) = read_pid_file(&pid_file)
        && ours(Kind::S3, pid, &spec.dir)
    {
        bail!(
            "an s3s-fs (pid {pid}) already runs from {}; stop it first",
            spec.dir.display()
        );
    }
    let log = spec.dir.join("s3s-fs.log");
    let log_file = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let log_err = log_file.try_clone().context("duplicating the log handle")?;
    // Our child in its own process group, as ClickHouse: its PID is known at once, a terminal's
    // Ctrl-C stays away from it, and it may outlive xtask after `datastores start`.
    let child = Command::new(&bin)
        .args(["--host", "127.0.0.1", "--port", &spec.port.to_string()])
        .args([
            "--access-key",
            ACCESS_KEY_ID,
            "--secret-key",
            SECRET_ACCESS_KEY,
        ])
        .arg(root(&spec.dir))
        .current_dir(&spec.dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let pid = child.id();
    fs::write(&pid_file, format!("{pid}\n"))
        .with_context(|| format!("writing {}", pid_file.display()))?;
    thread::spawn(move || {
        let mut child = child;
        let _ = child.wait();
    });
    let port = spec.port;
    wait_ready(Kind::S3, &log, || Some(pid), || answers(port))
        .inspect_err(|_| abandon(Kind::S3, &spec.dir))?;
    Ok(Server {
        kind: Kind::S3,
        pid,
        port,
        extra_ports: Default::default(),
        log,
    })
}
