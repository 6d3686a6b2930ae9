//! Redis from Debian's `redis-server`, daemonised with a pid file and a log in the state
//! directory; persistence only for the local cell. It serves TLS on a second port, with a
//! certificate from a CA of its own (`tls`).

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{Spec, abandon, ours, pid_file, read_pid_file, tls, wait_ready};
use crate::process;
use crate::state::{Kind, Profile, Server};

/// Whether the server answers PING on a fresh connection.
pub(super) fn pong(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut answer = [0u8; 7];
    stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && &answer == b"+PONG\r\n"
}

pub(super) fn start(spec: &Spec) -> Result<Server> {
    let pid_file = pid_file(&spec.dir, Kind::Redis);
    let log = spec.dir.join("redis.log");
    if let Some(pid) = read_pid_file(&pid_file) {
        if ours(Kind::Redis, pid, &spec.dir) {
            bail!(
                "a redis-server (pid {pid}) already runs from {}; stop it first",
                spec.dir.display()
            );
        }
        fs::remove_file(&pid_file)
            .with_context(|| format!("removing stale {}", pid_file.display()))?;
    }
    // TLS on a port of its own beside the plaintext one, for the tests of `rediss://`; the
    // CA file is required by redis-server even when clients present no certificate.
    let tls_port = spec
        .extra_ports
        .get("tls")
        .ok_or_else(|| anyhow::anyhow!("no TLS port planned for redis"))?;
    let tls = tls::certificate(&spec.dir, None)?;
    let mut cmd = Command::new("redis-server");
    cmd.current_dir(&spec.dir)
        .args(["--bind", "127.0.0.1", "--port", &spec.port.to_string()])
        .args(tls.redis_args(tls_port))
        .args(["--daemonize", "yes", "--pidfile"])
        .arg(&pid_file)
        .arg("--logfile")
        .arg(&log)
        .arg("--dir")
        .arg(&spec.dir);
    match spec.profile {
        Profile::Test => cmd.args(["--save", "", "--appendonly", "no"]),
        // Snapshots now and then, and on shutdown (SIGTERM), are enough for a laptop cell.
        Profile::Persistent => cmd.args(["--save", "300 1 60 1000", "--appendonly", "no"]),
    };
    // With --daemonize the foreground process exits once the daemon has forked, or at once
    // with the reason when the arguments are wrong.
    process::output(&mut cmd).map_err(|e| anyhow::anyhow!("{e:#}\n{}", process::tail(&log, 20)))?;
    let port = spec.port;
    let pid = wait_ready(
        Kind::Redis,
        &log,
        || read_pid_file(&pid_file),
        || pong(port),
    )
    .inspect_err(|_| abandon(Kind::Redis, &spec.dir))?;
    Ok(Server {
        kind: Kind::Redis,
        pid,
        port,
        extra_ports: spec.extra_ports.clone(),
        log,
    })
}
