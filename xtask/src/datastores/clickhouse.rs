//! ClickHouse from Debian's `clickhouse-server` (18.16), run from a rewritten copy of the
//! packaged config with everything inside the state directory. It serves https on a second
//! port, with a certificate from a CA of its own (`tls`).

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use super::clickhouse_config::{Certificate, Edits, Ports, rewrite};
use super::{Spec, abandon, ours, pid_file, read_pid_file, tls, wait_ready};
use crate::http;
use crate::process;
use crate::state::{Kind, Server};

const PACKAGED: &str = "/etc/clickhouse-server";

fn ping(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    http::request("GET", addr, "/ping", "", Duration::from_secs(2)).is_ok_and(|r| r.status == 200)
}

fn port(ports: &BTreeMap<String, u16>, name: &str) -> Result<u16> {
    ports
        .get(name)
        .copied()
        .ok_or_else(|| anyhow!("no {name} port was planned for clickhouse"))
}

/// Writes `config.xml` and `users.xml` into the server's directory.
fn write_config(spec: &Spec) -> Result<()> {
    let packaged = Path::new(PACKAGED);
    let read = |name: &str| {
        let path = packaged.join(name);
        fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (is clickhouse-server installed?)",
                path.display()
            )
        })
    };
    let users = spec.dir.join("users.xml");
    fs::write(&users, read("users.xml")?)
        .with_context(|| format!("writing {}", users.display()))?;
    let ports = Ports {
        http: spec.port,
        https: port(&spec.extra_ports, "https")?,
        tcp: port(&spec.extra_ports, "tcp")?,
        interserver: port(&spec.extra_ports, "interserver")?,
    };
    let tls = tls::certificate(&spec.dir, None)?;
    let certificate = Certificate {
        cert: &tls.cert,
        key: &tls.key,
    };
    let config = rewrite(
        &read("config.xml")?,
        &Edits::private_server(&spec.dir, &users, ports, certificate),
    )
    .context("rewriting the packaged clickhouse config.xml")?;
    let path = spec.dir.join("config.xml");
    fs::write(&path, config).with_context(|| format!("writing {}", path.display()))
}

pub(super) fn start(spec: &Spec) -> Result<Server> {
    for sub in ["data", "tmp", "user_files", "format_schemas", "log"] {
        let dir = spec.dir.join(sub);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let pid_file = pid_file(&spec.dir, Kind::Clickhouse);
    if let Some(pid) = read_pid_file(&pid_file)
        && ours(Kind::Clickhouse, pid, &spec.dir)
    {
        bail!(
            "a clickhouse-server (pid {pid}) already runs from {}; stop it first",
            spec.dir.display()
        );
    }
    write_config(spec)?;
    let log = spec.dir.join("log").join("clickhouse-server.log");
    let err_log = spec.dir.join("log").join("clickhouse-server.err.log");
    // What it prints before its logger is set up (a config it cannot parse) lands here.
    let console = spec.dir.join("log").join("console.log");
    let console_file =
        fs::File::create(&console).with_context(|| format!("creating {}", console.display()))?;
    let console_err = console_file
        .try_clone()
        .context("duplicating the console log handle")?;
    // Started as our child rather than with --daemon so its PID is known at once and an early
    // exit is seen at once; its own process group keeps a terminal's Ctrl-C away from it, so
    // xtask stops it in order, and lets it outlive xtask after `datastores start`.
    let child = Command::new("clickhouse-server")
        .arg(format!(
            "--config-file={}",
            spec.dir.join("config.xml").display()
        ))
        .current_dir(&spec.dir)
        .stdin(Stdio::null())
        .stdout(console_file)
        .stderr(console_err)
        .process_group(0)
        .spawn()
        .context("starting clickhouse-server")?;
    let pid = child.id();
    // Written by us, not by the server: recorded before readiness so that a stop after a
    // failed or killed start finds it.
    fs::write(&pid_file, format!("{pid}\n"))
        .with_context(|| format!("writing {}", pid_file.display()))?;
    // Reaps it when it exits, so it never lingers as a zombie of ours; the thread ends with
    // xtask when the server is meant to outlive it.
    thread::spawn(move || {
        let mut child = child;
        let _ = child.wait();
    });
    let http_port = spec.port;
    wait_ready(Kind::Clickhouse, &err_log, || Some(pid), || ping(http_port))
        .map_err(|e| anyhow!("{e:#}\n{}", process::tail(&console, 20)))
        .inspect_err(|_| abandon(Kind::Clickhouse, &spec.dir))?;
    Ok(Server {
        kind: Kind::Clickhouse,
        pid,
        port: spec.port,
        extra_ports: spec.extra_ports.clone(),
        log,
    })
}
