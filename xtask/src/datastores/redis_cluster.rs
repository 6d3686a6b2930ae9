//! A Redis Cluster for the tests: six `redis-server --cluster-enabled yes` processes on
//! loopback (three masters, a replica each), joined by `redis-cli --cluster create`, each
//! daemonised with a pid file and a log in `redis-cluster/node-<n>`; no persistence. Ready
//! once every node reports `cluster_state:ok` and sees three masters and three replicas.
//!
//! Every node also serves TLS on a second port, with one certificate from a CA of the
//! cluster's own (`tls`), for the tests of `rediss+cluster://`. The cluster bus and replication
//! then run over TLS too (`tls-cluster`, `tls-replication`): Redis 7 announces a node's TLS
//! port to TLS clients and its plaintext port to plaintext ones only when its bus is TLS.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};

use super::{READY_DEADLINE, Spec, abandon, ours, pid_file, read_pid_file, tls, wait_ready};
use crate::process;
use crate::signals;
use crate::state::{Kind, Server};

/// Three masters with one replica each.
pub const NODES: usize = 6;

/// The directory of node `n` (1-based) inside the cluster's directory.
pub fn node_dir(cluster_dir: &Path, n: usize) -> PathBuf {
    cluster_dir.join(format!("node-{n}"))
}

/// The `extra_ports` names: node 1 serves on the spec's port; every node has a bus port and a
/// TLS port.
pub fn port_names() -> Vec<String> {
    (2..=NODES)
        .map(|n| format!("node{n}"))
        .chain((1..=NODES).map(|n| format!("bus{n}")))
        .chain((1..=NODES).map(|n| format!("tls{n}")))
        .collect()
}

/// The client ports of every node, node 1 first.
pub fn client_ports(server: &Server) -> Result<Vec<u16>> {
    std::iter::once(Ok(server.port))
        .chain((2..=NODES).map(|n| port(&server.extra_ports, &format!("node{n}"))))
        .collect()
}

fn port(ports: &BTreeMap<String, u16>, name: &str) -> Result<u16> {
    ports
        .get(name)
        .copied()
        .ok_or_else(|| anyhow!("redis-cluster has no {name} port"))
}

/// `redis+cluster://` with every node as a seed.
pub fn url(server: &Server) -> Result<String> {
    Ok(seeds_url("redis+cluster", &client_ports(server)?))
}

/// `rediss+cluster://` with every node's TLS port as a seed.
pub fn tls_url(server: &Server) -> Result<String> {
    let ports = (1..=NODES)
        .map(|n| port(&server.extra_ports, &format!("tls{n}")))
        .collect::<Result<Vec<_>>>()?;
    Ok(seeds_url("rediss+cluster", &ports))
}

fn seeds_url(scheme: &str, ports: &[u16]) -> String {
    let seeds: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    format!("{scheme}://{}", seeds.join(","))
}

pub(super) fn start(spec: &Spec) -> Result<Server> {
    let server = Server {
        kind: Kind::RedisCluster,
        pid: 0,
        port: spec.port,
        extra_ports: spec.extra_ports.clone(),
        log: node_dir(&spec.dir, 1).join("redis.log"),
    };
    let mut launched = 0;
    let result = start_nodes(spec, &server, &mut launched);
    if result.is_err() {
        for n in 1..=launched {
            abandon(Kind::RedisCluster, &node_dir(&spec.dir, n));
        }
    }
    Ok(Server {
        pid: result?,
        ..server
    })
}

/// Starts the nodes, joins them, waits for agreement; returns node 1's PID.
/// `launched` counts the nodes told to start, for the cleanup after a failure.
fn start_nodes(spec: &Spec, server: &Server, launched: &mut usize) -> Result<u32> {
    let ports = client_ports(server)?;
    let tls = tls::certificate(&spec.dir, None)?;
    let mut pids = Vec::new();
    for (i, client) in ports.iter().enumerate() {
        let n = i + 1;
        let dir = node_dir(&spec.dir, n);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let pid_file = pid_file(&dir, Kind::RedisCluster);
        if let Some(pid) = read_pid_file(&pid_file) {
            if ours(Kind::RedisCluster, pid, &dir) {
                bail!(
                    "a redis-server (pid {pid}) already runs from {}; stop it first",
                    dir.display()
                );
            }
            fs::remove_file(&pid_file)
                .with_context(|| format!("removing stale {}", pid_file.display()))?;
        }
        // A node remembers its cluster in nodes.conf; a fresh one joins a fresh cluster.
        let nodes_conf = dir.join("nodes.conf");
        if nodes_conf.exists() {
            fs::remove_file(&nodes_conf)
                .with_context(|| format!("removing {}", nodes_conf.display()))?;
        }
        let log = dir.join("redis.log");
        let bus = port(&spec.extra_ports, &format!("bus{n}"))?;
        let tls_port = port(&spec.extra_ports, &format!("tls{n}"))?;
        let mut cmd = Command::new("redis-server");
        cmd.current_dir(&dir)
            .args(["--bind", "127.0.0.1", "--port", &client.to_string()])
            .args([
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                &bus.to_string(),
            ])
            .args(tls.redis_args(tls_port))
            .args(["--tls-cluster", "yes", "--tls-replication", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--daemonize", "yes", "--pidfile"])
            .arg(&pid_file)
            .arg("--logfile")
            .arg(&log)
            .arg("--dir")
            .arg(&dir);
        *launched = n;
        process::output(&mut cmd).map_err(|e| anyhow!("{e:#}\n{}", process::tail(&log, 20)))?;
        let client = *client;
        pids.push(wait_ready(
            Kind::RedisCluster,
            &log,
            || read_pid_file(&pid_file),
            || super::redis::pong(client),
        )?);
    }
    let mut create = Command::new("redis-cli");
    create
        .arg("--cluster")
        .arg("create")
        .args(ports.iter().map(|p| format!("127.0.0.1:{p}")))
        .args(["--cluster-replicas", "1", "--cluster-yes"]);
    process::output(&mut create).context("joining the nodes into a cluster")?;
    await_agreement(&ports)?;
    pids.first()
        .copied()
        .ok_or_else(|| anyhow!("no redis-cluster node started"))
}

/// Polls every node until each says `cluster_state:ok` and lists three masters serving
/// slots and three replicas: right after `--cluster create` a node may still see a replica
/// as a master without slots.
fn await_agreement(ports: &[u16]) -> Result<()> {
    let started = Instant::now();
    loop {
        let agreed = ports.iter().all(|p| {
            let info = cli(*p, &["cluster", "info"]).unwrap_or_default();
            let nodes = cli(*p, &["cluster", "nodes"]).unwrap_or_default();
            let (masters, replicas) = roles(&nodes);
            info.contains("cluster_state:ok") && masters == NODES / 2 && replicas == NODES / 2
        });
        if agreed {
            return Ok(());
        }
        if started.elapsed() > READY_DEADLINE {
            bail!(
                "the redis cluster did not agree on its topology within {}:\n{}",
                process::secs(READY_DEADLINE),
                cli(ports[0], &["cluster", "nodes"]).unwrap_or_default()
            );
        }
        signals::pause(std::time::Duration::from_millis(50))?;
    }
}

fn cli(port: u16, args: &[&str]) -> Result<String> {
    process::output(
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args),
    )
}

/// (masters serving slots, replicas) in `CLUSTER NODES` output.
fn roles(nodes: &str) -> (usize, usize) {
    nodes.lines().fold((0, 0), |(m, r), line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let flags = fields.get(2).copied().unwrap_or_default();
        if flags.split(',').any(|f| f == "slave") {
            (m, r + 1)
        } else if flags.split(',').any(|f| f == "master") && fields.len() > 8 {
            (m + 1, r)
        } else {
            (m, r)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_count_masters_with_slots_and_replicas() {
        let nodes = "\
a 127.0.0.1:1@11 myself,master - 0 0 1 connected 0-5460
b 127.0.0.1:2@12 master - 0 0 2 connected 5461-10922
c 127.0.0.1:3@13 master - 0 0 3 connected 10923-16383
d 127.0.0.1:4@14 slave a 0 0 1 connected
e 127.0.0.1:5@15 master - 0 0 0 connected
f 127.0.0.1:6@16 slave c 0 0 3 connected
";
        assert_eq!(roles(nodes), (3, 2));
    }

    #[test]
    fn the_url_lists_every_node() -> Result<()> {
        let mut extra_ports: BTreeMap<String, u16> = port_names().into_iter().zip(100..).collect();
        extra_ports.insert("node2".into(), 2);
        let server = Server {
            kind: Kind::RedisCluster,
            pid: 1,
            port: 1,
            extra_ports,
            log: PathBuf::new(),
        };
        assert_eq!(
            url(&server)?,
            "redis+cluster://127.0.0.1:1,127.0.0.1:2,127.0.0.1:101,127.0.0.1:102,127.0.0.1:103,127.0.0.1:104"
        );
        assert_eq!(
            tls_url(&server)?,
            "rediss+cluster://127.0.0.1:111,127.0.0.1:112,127.0.0.1:113,127.0.0.1:114,127.0.0.1:115,127.0.0.1:116"
        );
        Ok(())
    }
}
