//! PostgreSQL from Debian's packages, run with `initdb`/`pg_ctl` as the `postgres` user (both
//! refuse root) on a data directory inside the state directory, with a private socket dir. It
//! serves TLS as well as plaintext, with a certificate for `localhost` and `127.0.0.1` from a CA
//! of its own (made once, in `tls/`), so tests can connect with `sslmode=verify-full`.

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use nix::unistd::{User, geteuid};

use super::{Spec, abandon, ours, pid_file, read_pid_file, tls, wait_ready};
use crate::process;
use crate::state::{Kind, Profile, Server};

/// Settings written to `xtask.conf` on every start, which `postgresql.conf` includes; a file
/// rather than `pg_ctl -o` so that paths need no shell quoting.
const CONF_FILE: &str = "xtask.conf";

/// `/usr/lib/postgresql/<major>/bin` of the newest installed major version.
fn bin_dir() -> Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir(root)
        .with_context(|| {
            format!(
                "reading {} (is the postgresql package installed?)",
                root.display()
            )
        })?
        .filter_map(|e| {
            let e = e.ok()?;
            let major = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| anyhow!("no PostgreSQL server binaries under {}", root.display()))
}

/// A command that runs `program` as the `postgres` user when we are root, as ourselves
/// otherwise (a developer's unprivileged account can run initdb itself).
fn as_postgres(program: &Path, cwd: &Path) -> Command {
    let mut cmd = if geteuid().is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    };
    // Not our cwd: postgres may not be allowed into it, and says so on every call.
    cmd.current_dir(cwd);
    cmd
}

fn postgres_user() -> Result<User> {
    User::from_name("postgres")
        .context("looking up the postgres user")?
        .ok_or_else(|| anyhow!("there is no postgres user (is the postgresql package installed?)"))
}

/// Gives the server's directory to the `postgres` user and checks it can get there, which
/// fails when a parent directory is closed to other users.
fn hand_over(dir: &Path, run: &Path) -> Result<()> {
    if !geteuid().is_root() {
        return Ok(());
    }
    let user = postgres_user()?;
    for path in [dir, run] {
        chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
            .with_context(|| format!("giving {} to postgres", path.display()))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    let reachable = Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-w"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    if !reachable {
        bail!(
            "the postgres user cannot write {}: a parent directory is not searchable by other \
             users (chmod o+x on it)",
            dir.display()
        );
    }
    Ok(())
}

fn settings(spec: &Spec, run: &Path, (cert, key): (&Path, &Path)) -> String {
    let quoted = |p: &Path| p.display().to_string().replace('\'', "''");
    let mut conf = format!(
        "# Written by cargo xtask on every start: edits here are lost.\n\
         listen_addresses = '127.0.0.1'\n\
         port = {}\n\
         unix_socket_directories = '{}'\n\
         # Test suites run many pools in parallel.\n\
         max_connections = 500\n\
         # TLS beside plaintext, for the tests of sslmode=verify-full.\n\
         ssl = on\n\
         ssl_cert_file = '{}'\n\
         ssl_key_file = '{}'\n",
        spec.port,
        quoted(run),
        quoted(cert),
        quoted(key),
    );
    if spec.profile == Profile::Test {
        conf.push_str(
            "# Throw-away data: durability only costs time.\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n",
        );
    }
    conf
}

fn write_settings(spec: &Spec, data: &Path, run: &Path) -> Result<()> {
    let conf = data.join(CONF_FILE);
    let owner = if geteuid().is_root() {
        Some(postgres_user()?)
    } else {
        None
    };
    let tls = tls::certificate(&spec.dir, owner.as_ref())?;
    fs::write(&conf, settings(spec, run, (&tls.cert, &tls.key)))
        .with_context(|| format!("writing {}", conf.display()))?;
    let main = data.join("postgresql.conf");
    let text = fs::read_to_string(&main).with_context(|| format!("reading {}", main.display()))?;
    let include = format!("include_if_exists = '{CONF_FILE}'");
    if !text.lines().any(|l| l.trim() == include) {
        fs::write(&main, format!("{text}\n{include}\n"))
            .with_context(|| format!("writing {}", main.display()))?;
    }
    Ok(())
}

pub(super) fn start(spec: &Spec) -> Result<Server> {
    let bin = bin_dir()?;
    let data = spec.dir.join("data");
    let run = spec.dir.join("run");
    let log = spec.dir.join("postgres.log");
    fs::create_dir_all(&run).with_context(|| format!("creating {}", run.display()))?;
    hand_over(&spec.dir, &run)?;

    if !data.join("PG_VERSION").is_file() {
        let mut initdb = as_postgres(&bin.join("initdb"), &spec.dir);
        initdb.arg("-D").arg(&data).args([
            "--auth=trust",
            "--username=postgres",
            "--encoding=UTF8",
            "--locale=C",
        ]);
        if spec.profile == Profile::Test {
            initdb.arg("--no-sync");
        }
        process::output(&mut initdb).context("initialising the postgres data directory")?;
    }
    write_settings(spec, &data, &run)?;

    let pid_file = pid_file(&spec.dir, Kind::Postgres);
    if let Some(pid) = read_pid_file(&pid_file) {
        if ours(Kind::Postgres, pid, &spec.dir) {
            bail!(
                "a postgres (pid {pid}) already runs on {}; stop it first",
                data.display()
            );
        }
        // Left by a killed server; removing it keeps us from reading its PID as the new one.
        fs::remove_file(&pid_file)
            .with_context(|| format!("removing stale {}", pid_file.display()))?;
    }

    let mut pg_ctl = as_postgres(&bin.join("pg_ctl"), &spec.dir);
    // -W: pg_ctl returns at once; readiness is ours to poll, with the log tail on failure.
    pg_ctl
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(&log)
        .args(["-W", "start"]);
    process::output(&mut pg_ctl).map_err(|e| anyhow!("{e:#}\n{}", process::tail(&log, 30)))?;

    let isready = bin.join("pg_isready");
    let port = spec.port.to_string();
    let ready = || {
        Command::new(&isready)
            .args([
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-t",
                "2",
            ])
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut last_pid = None;
    let pid = wait_ready(
        Kind::Postgres,
        &log,
        || {
            last_pid = read_pid_file(&pid_file).or(last_pid);
            last_pid
        },
        ready,
    )
    .inspect_err(|_| abandon(Kind::Postgres, &spec.dir))?;
    Ok(Server {
        kind: Kind::Postgres,
        pid,
        port: spec.port,
        extra_ports: Default::default(),
        log,
    })
}

/// Runs one SQL statement with psql as the superuser and returns its unaligned output.
pub fn psql(port: u16, database: &str, sql: &str) -> Result<String> {
    let bin = bin_dir()?;
    let mut cmd = Command::new(bin.join("psql"));
    cmd.args([
        "-X",
        "-q",
        "-t",
        "-A",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
    ])
    .arg("-p")
    .arg(port.to_string())
    .args(["-d", database, "-c", sql]);
    process::output(&mut cmd)
}
