//! Installs the Debian packages the datastores and media servers come from, only those missing,
//! without letting their maintainer scripts start system-wide servers: xtask and the tests run
//! their own on free ports.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use crate::process;

/// The packages behind the three datastores and their command-line clients (psql, redis-cli,
/// clickhouse-client), which developers use against the servers xtask starts.
pub const DATASTORES: &[&str] = &[
    "postgresql",
    "postgresql-client",
    "redis-server",
    "redis-tools",
    "clickhouse-server",
    "clickhouse-client",
];

/// The media servers whose rendered configs the operator's tests run: nginx with the RTMP
/// module (`nginx -t`) and coturn (`turnserver`, `turnutils_uclient`, `turnutils_peer`); and
/// ffmpeg, which publishes a test pattern through nginx in the livestream e2e test and reads
/// HLS and the recording back (`ffprobe`); and Chromium, the browser of the videocall e2e
/// test (WebRTC through coturn); and poppler-utils (`pdftoppm`, `pdfinfo`) with zbar-tools
/// (`zbarimg`), which rasterise a shipping label and decode its Code 128 barcode.
pub const MEDIA: &[&str] = &[
    "nginx",
    "libnginx-mod-rtmp",
    "coturn",
    "ffmpeg",
    "chromium",
    "poppler-utils",
    "zbar-tools",
];

/// Prometheus, which the operator's Fleet analysis test starts on loopback (its own config and
/// TSDB) and queries as the operator does for `spec.analysis`.
pub const MONITORING: &[&str] = &["prometheus"];

/// Python with `venv` (a separate package on Debian) for the Helm chart check, which runs the
/// PyPI tools of charts/requirements.txt in a virtualenv xtask builds.
pub const PYTHON: &[&str] = &["python3", "python3-venv"];

/// Tells invoke-rc.d that no service may start (exit 101), as in Debian's chroots and images.
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";
const POLICY_DENY_ALL: &str =
    "#!/bin/sh\n# written by titan's xtask while it installs packages\nexit 101\n";

/// Server programs a package's postinst might start despite the policy (a postinst that runs
/// the daemon directly); any new one is stopped after the install.
const SERVER_COMMS: &[&str] = &[
    "postgres",
    "redis-server",
    "clickhouse-serv",
    "nginx",
    "turnserver",
    "prometheus",
];

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["--show", "--showformat=${Status}", package])
        .output()
        .is_ok_and(|out| {
            out.status.success() && String::from_utf8_lossy(&out.stdout).ends_with(" installed")
        })
}

/// Whether apt knows an installable version of `package`; false before the first
/// `apt-get update` on a fresh machine.
fn has_candidate(package: &str) -> bool {
    Command::new("apt-cache")
        .args(["policy", package])
        .output()
        .is_ok_and(|out| {
            let text = String::from_utf8_lossy(&out.stdout);
            text.lines()
                .find_map(|l| l.trim().strip_prefix("Candidate:"))
                .is_some_and(|c| c.trim() != "(none)")
        })
}

fn server_pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| process::comm(*pid).is_some_and(|c| SERVER_COMMS.contains(&c.as_str())))
        .collect()
}

/// Installs whichever of `packages` are missing. A no-op (and no root needed) when all are
/// there.
pub fn ensure(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "packages {} are missing and installing them needs root: run\n  sudo apt-get install \
             --no-install-recommends {}",
            missing.join(", "),
            missing.join(" ")
        );
    }
    let started = Instant::now();
    eprintln!("==> installing {}", missing.join(" "));
    let mut updated = false;
    if missing.iter().any(|p| !has_candidate(p)) {
        apt_update()?;
        updated = true;
    }
    let before = server_pids();
    let result = {
        let _policy = PolicyGuard::deny_service_starts()?;
        match apt_install(&missing) {
            // A failure on old lists (a 404 for a superseded version) is cured by an update.
            Err(e) if !updated => {
                eprintln!("  install failed ({e:#}); updating the package lists and retrying");
                apt_update().and_then(|()| apt_install(&missing))
            }
            other => other,
        }
    };
    for pid in server_pids().into_iter().filter(|p| !before.contains(p)) {
        let name = process::comm(pid).unwrap_or_default();
        eprintln!("  the install started {name} (pid {pid}); stopping it");
        process::stop(
            &name,
            pid,
            Signal::SIGTERM,
            std::time::Duration::from_secs(20),
        )?;
    }
    result?;
    eprintln!(
        "<== installed {} in {}",
        missing.join(" "),
        process::secs(started.elapsed())
    );
    Ok(())
}

fn apt_update() -> Result<()> {
    let status = process::run(
        "apt-get update",
        Command::new("apt-get").args(["-q", "update"]),
    )?;
    if !status.success() {
        bail!("apt-get update failed ({status})");
    }
    Ok(())
}

fn apt_install(packages: &[&str]) -> Result<()> {
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive")
        .env("NEEDRESTART_MODE", "l")
        .args(["-q", "-y", "--no-install-recommends"])
        // Keep any locally edited conffile without asking; wait for a concurrent apt instead
        // of failing on its lock.
        .args([
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
        ])
        .args([
            "-o",
            "DPkg::Lock::Timeout=300",
            "-o",
            "Dpkg::Use-Pty=0",
            "install",
        ])
        .args(packages);
    let status = process::run("apt-get install", &mut cmd)?;
    if !status.success() {
        bail!("apt-get install {} failed ({status})", packages.join(" "));
    }
    Ok(())
}

/// Holds a deny-all policy-rc.d for the length of an install and puts back what was there.
#[derive(Debug)]
struct PolicyGuard {
    previous: Option<Vec<u8>>,
}

impl PolicyGuard {
    fn deny_service_starts() -> Result<Self> {
        let path = Path::new(POLICY_RC_D);
        let previous = match fs::read(path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {POLICY_RC_D}")),
        };
        fs::write(path, POLICY_DENY_ALL).with_context(|| format!("writing {POLICY_RC_D}"))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {POLICY_RC_D} executable"))?;
        Ok(PolicyGuard { previous })
    }
}

impl Drop for PolicyGuard {
    fn drop(&mut self) {
        let result = match &self.previous {
            Some(bytes) => fs::write(POLICY_RC_D, bytes),
            None => fs::remove_file(POLICY_RC_D),
        };
        if let Err(e) = result {
            eprintln!("xtask: could not restore {POLICY_RC_D}: {e}");
        }
    }
}
