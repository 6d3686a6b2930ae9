//! The datastores (PostgreSQL, Redis, ClickHouse, and s3s-fs for object storage) as servers
//! xtask starts on free loopback ports in a private state directory, records in its
//! `state.json`, and stops by PID. Shared by `test`, `up`/`down` and `datastores`.

mod clickhouse;
pub mod clickhouse_config;
mod postgres;
mod redis;
pub mod redis_cluster;
pub mod s3;
mod tls;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use nix::sys::signal::Signal;

use crate::process;
use crate::signals;
use crate::state::{Kind, Profile, Server, State};

pub use postgres::psql;

/// How long a server may take from spawn to answering; generous for a loaded 2-core CI box.
pub(crate) const READY_DEADLINE: Duration = Duration::from_secs(90);
/// How long a server gets to shut down cleanly before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// What a server start needs to know.
#[derive(Debug, Clone)]
struct Spec {
    /// The server's own directory inside the state directory.
    dir: PathBuf,
    profile: Profile,
    port: u16,
    extra_ports: BTreeMap<String, u16>,
}

/// Running servers; stopped when dropped unless `detach`ed, so an early `?` return or a panic
/// in a command never leaves them behind.
#[derive(Debug)]
pub struct Datastores {
    dir: PathBuf,
    state: State,
    running: bool,
}

impl Datastores {
    /// Starts every server in `dir` at once and records them in `dir/state.json`.
    /// `previous` (an older state of the same directory) offers its ports again, so URLs a
    /// developer saved keep working; any taken port is replaced by a free one.
    pub fn start(
        dir: &Path,
        profile: Profile,
        owner_pid: Option<u32>,
        previous: Option<&State>,
    ) -> Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let specs = plan(dir, profile, previous)?;
        let names: Vec<&str> = specs.iter().map(|(kind, _)| kind.name()).collect();
        let mut fresh = State::new(profile, owner_pid);
        fresh.last_ports = previous.map(|p| p.last_ports.clone()).unwrap_or_default();
        let state = Mutex::new(fresh);
        state
            .lock()
            .map_err(|_| anyhow!("state lock poisoned"))?
            .save(dir)?;
        let started = Instant::now();
        eprintln!("==> starting {} in {}", names.join(", "), dir.display());
        let results: Vec<(Kind, Result<Server>)> = thread::scope(|scope| {
            let handles: Vec<_> = specs
                .iter()
                .map(|(kind, spec)| {
                    let state = &state;
                    (
                        *kind,
                        scope.spawn(move || start_one(*kind, spec, dir, state)),
                    )
                })
                .collect();
            handles
                .into_iter()
                .map(|(kind, h)| {
                    (
                        kind,
                        h.join()
                            .unwrap_or_else(|_| Err(anyhow!("{} start panicked", kind.name()))),
                    )
                })
                .collect()
        });
        let state = state
            .into_inner()
            .map_err(|_| anyhow!("state lock poisoned"))?;
        let mut store = Datastores {
            dir: dir.to_owned(),
            state,
            running: true,
        };
        let failures: Vec<String> = results
            .into_iter()
            .filter_map(|(kind, r)| r.err().map(|e| format!("{}: {e:#}", kind.name())))
            .collect();
        if !failures.is_empty() {
            store.stop_quietly();
            return Err(anyhow!(
                "could not start the datastores:\n{}",
                failures.join("\n")
            ));
        }
        eprintln!(
            "<== datastores ready in {}",
            process::secs(started.elapsed())
        );
        Ok(store)
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn port(&self, kind: Kind) -> Result<u16> {
        self.state
            .server(kind)
            .map(|s| s.port)
            .ok_or_else(|| anyhow!("{} is not running", kind.name()))
    }

    /// Records the `titan serve` PID of a local cell next to the servers.
    pub fn set_titan_pid(&mut self, pid: Option<u32>) -> Result<()> {
        self.state.titan_pid = pid;
        self.state.save(&self.dir)
    }

    /// Stops every server, reporting the first failure.
    pub fn stop(mut self) -> Result<()> {
        self.running = false;
        let result = stop_all(&self.dir, Some(&self.state));
        self.state.servers.clear();
        self.state.titan_pid = None;
        let _ = self.state.save(&self.dir);
        result
    }

    /// Leaves the servers running after xtask exits (`datastores start`).
    pub fn detach(mut self) -> State {
        self.running = false;
        for server in &self.state.servers {
            signals::unregister(server.pid);
        }
        self.state.clone()
    }

    fn stop_quietly(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        if let Err(e) = stop_all(&self.dir, Some(&self.state)) {
            eprintln!("xtask: {e:#}");
        }
        self.state.servers.clear();
        let _ = self.state.save(&self.dir);
    }
}

impl Drop for Datastores {
    fn drop(&mut self) {
        self.stop_quietly();
    }
}

/// Picks every port first, all at once, so no two servers are handed the same one.
fn plan(dir: &Path, profile: Profile, previous: Option<&State>) -> Result<Vec<(Kind, Spec)>> {
    let extra = redis_cluster::port_names();
    // One port per server, ClickHouse's three more, Redis's TLS port, the cluster's other nodes
    // and bus ports.
    let mut fresh = process::free_ports(Kind::ALL.len() + 4 + extra.len())?.into_iter();
    let mut taken = Vec::new();
    let mut pick = |wanted: Option<u16>| -> Result<u16> {
        let port = match wanted {
            Some(p) if !taken.contains(&p) && process::port_free(p) => p,
            _ => fresh
                .next()
                .ok_or_else(|| anyhow!("ran out of free ports"))?,
        };
        taken.push(port);
        Ok(port)
    };
    let old = |key: &str| previous.and_then(|s| s.last_ports.get(key).copied());
    let mut specs = Vec::new();
    for kind in Kind::ALL {
        // The cluster is for the tests; a local cell has its one Redis.
        if kind == Kind::RedisCluster && profile == Profile::Persistent {
            continue;
        }
        let port = pick(old(kind.name()))?;
        let names: Vec<String> = match kind {
            Kind::Clickhouse => vec![
                "https".to_owned(),
                "tcp".to_owned(),
                "interserver".to_owned(),
            ],
            Kind::RedisCluster => extra.clone(),
            Kind::Redis => vec!["tls".to_owned()],
            Kind::Postgres | Kind::S3 => Vec::new(),
        };
        let mut extra_ports = BTreeMap::new();
        for name in names {
            let wanted = old(&format!("{}.{name}", kind.name()));
            extra_ports.insert(name, pick(wanted)?);
        }
        specs.push((
            kind,
            Spec {
                dir: dir.join(kind.name()),
                profile,
                port,
                extra_ports,
            },
        ));
    }
    Ok(specs)
}

fn start_one(kind: Kind, spec: &Spec, state_dir: &Path, state: &Mutex<State>) -> Result<Server> {
    let started = Instant::now();
    fs::create_dir_all(&spec.dir).with_context(|| format!("creating {}", spec.dir.display()))?;
    let server = match kind {
        Kind::Postgres => postgres::start(spec)?,
        Kind::Redis => redis::start(spec)?,
        Kind::RedisCluster => redis_cluster::start(spec)?,
        Kind::Clickhouse => clickhouse::start(spec)?,
        Kind::S3 => s3::start(spec)?,
    };
    let mut state = state.lock().map_err(|_| anyhow!("state lock poisoned"))?;
    state.put_server(server.clone());
    state.save(state_dir)?;
    eprintln!(
        "  {} ready on 127.0.0.1:{} (pid {}) in {}",
        kind.name(),
        server.port,
        server.pid,
        process::secs(started.elapsed())
    );
    Ok(server)
}

/// The signal that shuts a server down quickly and cleanly. PostgreSQL's SIGTERM is "smart"
/// shutdown, which waits for every client to leave; SIGINT is "fast" and disconnects them.
/// s3s-fs handles only SIGINT (finishing requests in flight); SIGTERM would kill it mid-write.
fn stop_signal(kind: Kind) -> Signal {
    match kind {
        Kind::Postgres | Kind::S3 => Signal::SIGINT,
        Kind::Redis | Kind::RedisCluster | Kind::Clickhouse => Signal::SIGTERM,
    }
}

/// Where a server's PID is on disk, `server_dir` being its directory in the state directory;
/// this finds servers that a killed xtask started but had not yet recorded.
fn pid_file(server_dir: &Path, kind: Kind) -> PathBuf {
    match kind {
        Kind::Postgres => server_dir.join("data").join("postmaster.pid"),
        // A cluster node's directory (`redis-cluster/node-<n>`).
        Kind::Redis | Kind::RedisCluster => server_dir.join("redis.pid"),
        Kind::Clickhouse => server_dir.join("clickhouse.pid"),
        Kind::S3 => server_dir.join("s3s-fs.pid"),
    }
}

/// Whether `pid` is a server of kind `kind` running from `server_dir`. Every server works in
/// its own directory (postgres in its data dir, the others where we start them), so a PID
/// reused by another program, or by another checkout's server of the same kind, fails this.
fn ours(kind: Kind, pid: u32, server_dir: &Path) -> bool {
    let dir = fs::canonicalize(server_dir).unwrap_or_else(|_| server_dir.to_owned());
    process::alive_as(pid, kind.comm_prefix())
        && process::cwd(pid).is_some_and(|cwd| cwd.starts_with(&dir))
}

/// Whether the recorded `server` of state directory `dir` still runs.
pub fn server_running(dir: &Path, server: &Server) -> bool {
    ours(server.kind, server.pid, &dir.join(server.kind.name()))
}

/// The servers of state directory `dir` still running: those its state records and those its
/// pid files name, each checked to still be the program it was (a reused PID is left alone).
pub fn running(dir: &Path, state: Option<&State>) -> Vec<(Kind, u32)> {
    let mut found: Vec<(Kind, u32)> = state
        .map(|s| s.servers.iter().map(|s| (s.kind, s.pid)).collect())
        .unwrap_or_default();
    for kind in Kind::ALL {
        let server_dir = dir.join(kind.name());
        let dirs = match kind {
            Kind::RedisCluster => (1..=redis_cluster::NODES)
                .map(|n| redis_cluster::node_dir(&server_dir, n))
                .collect(),
            Kind::Postgres | Kind::Redis | Kind::Clickhouse | Kind::S3 => vec![server_dir],
        };
        for d in dirs {
            if let Some(pid) = read_pid_file(&pid_file(&d, kind)) {
                found.push((kind, pid));
            }
        }
    }
    found.sort_unstable();
    found.dedup();
    found.retain(|(kind, pid)| ours(*kind, *pid, &dir.join(kind.name())));
    found
}

/// Stops every server of state directory `dir` that still runs, all at once.
pub fn stop_all(dir: &Path, state: Option<&State>) -> Result<()> {
    let targets = running(dir, state);
    let results: Vec<Result<()>> = thread::scope(|scope| {
        let handles: Vec<_> = targets
            .iter()
            .map(|&(kind, pid)| {
                scope.spawn(move || {
                    let result = process::stop(kind.name(), pid, stop_signal(kind), STOP_GRACE);
                    signals::unregister(pid);
                    result
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("stop thread panicked")))
            })
            .collect()
    });
    results.into_iter().collect()
}

/// Polls until `ready` says yes, the process dies, or the deadline passes; the errors carry
/// the tail of the server's log. `pid` is polled too: daemons write their pid file late.
fn wait_ready(
    kind: Kind,
    log: &Path,
    mut pid: impl FnMut() -> Option<u32>,
    mut ready: impl FnMut() -> bool,
) -> Result<u32> {
    let started = Instant::now();
    let mut registered = None;
    loop {
        let known = pid();
        if let Some(p) = known {
            if registered != Some(p) {
                signals::register(kind.name(), p, true);
                registered = Some(p);
            }
            if !process::alive(p) {
                return Err(anyhow!(
                    "{} exited while starting\n{}",
                    kind.name(),
                    process::tail(log, 30)
                ));
            }
            if ready() {
                return Ok(p);
            }
        }
        if started.elapsed() > READY_DEADLINE {
            let what = if known.is_some() {
                "did not answer"
            } else {
                "wrote no pid file"
            };
            return Err(anyhow!(
                "{} {what} within {}\n{}",
                kind.name(),
                process::secs(READY_DEADLINE),
                process::tail(log, 30)
            ));
        }
        signals::pause(Duration::from_millis(25))?;
    }
}

/// Reads the first line of a pid file as a PID.
fn read_pid_file(path: &Path) -> Option<u32> {
    fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Stops the server after a failed or interrupted start so a half-started one does not
/// linger. It was told to start, so its pid file is about to appear if it is not there yet.
fn abandon(kind: Kind, server_dir: &Path) {
    let path = pid_file(server_dir, kind);
    let started = Instant::now();
    let pid = loop {
        match read_pid_file(&path) {
            Some(pid) => break pid,
            None if started.elapsed() > Duration::from_secs(10) => return,
            None => thread::sleep(Duration::from_millis(20)),
        }
    };
    if ours(kind, pid, server_dir) {
        let _ = process::stop(kind.name(), pid, stop_signal(kind), STOP_GRACE);
    }
    signals::unregister(pid);
}

/// `export NAME='value'` lines for a shell.
pub fn exports(vars: &[(String, String)]) -> String {
    vars.iter()
        .map(|(k, v)| format!("export {k}='{}'\n", v.replace('\'', r"'\''")))
        .collect()
}

/// The variables the test suites read. Object storage gets `TITAN_TEST_S3_*` (the test
/// server's coordinates, which a test turns into its own `TITAN_S3_*` configuration) and the
/// s3s-fs binary, for the tests that start a server of their own to stop it.
pub fn test_env(state: &State) -> Result<Vec<(String, String)>> {
    let url = |kind: Kind, db: &str| {
        state
            .server(kind)
            .map(|s| kind.url(s.port, db))
            .ok_or_else(|| anyhow!("{} is not running", kind.name()))
    };
    Ok(vec![
        (
            "TITAN_TEST_POSTGRES_URL".to_owned(),
            url(Kind::Postgres, "postgres")?,
        ),
        (
            "TITAN_TEST_POSTGRES_CA".to_owned(),
            state
                .server(Kind::Postgres)
                .map(|s| tls::ca_file(s).display().to_string())
                .ok_or_else(|| anyhow!("{} is not running", Kind::Postgres.name()))?,
        ),
        ("TITAN_TEST_REDIS_URL".to_owned(), url(Kind::Redis, "")?),
        (
            "TITAN_TEST_REDIS_TLS_URL".to_owned(),
            state
                .server(Kind::Redis)
                .and_then(|s| s.extra_ports.get("tls"))
                .map(|port| format!("rediss://127.0.0.1:{port}"))
                .ok_or_else(|| anyhow!("{} is not running with TLS", Kind::Redis.name()))?,
        ),
        (
            "TITAN_TEST_REDIS_CA".to_owned(),
            state
                .server(Kind::Redis)
                .map(|s| tls::ca_file(s).display().to_string())
                .ok_or_else(|| anyhow!("{} is not running", Kind::Redis.name()))?,
        ),
        (
            "TITAN_TEST_REDIS_CLUSTER_URL".to_owned(),
            state
                .server(Kind::RedisCluster)
                .ok_or_else(|| anyhow!("{} is not running", Kind::RedisCluster.name()))
                .and_then(redis_cluster::url)?,
        ),
        (
            "TITAN_TEST_REDIS_CLUSTER_TLS_URL".to_owned(),
            state
                .server(Kind::RedisCluster)
                .ok_or_else(|| anyhow!("{} is not running", Kind::RedisCluster.name()))
                .and_then(redis_cluster::tls_url)?,
        ),
        (
            "TITAN_TEST_REDIS_CLUSTER_CA".to_owned(),
            state
                .server(Kind::RedisCluster)
                .map(|s| tls::ca_file(s).display().to_string())
                .ok_or_else(|| anyhow!("{} is not running", Kind::RedisCluster.name()))?,
        ),
        (
            "TITAN_TEST_CLICKHOUSE_URL".to_owned(),
            url(Kind::Clickhouse, "")?,
        ),
        (
            "TITAN_TEST_CLICKHOUSE_TLS_URL".to_owned(),
            state
                .server(Kind::Clickhouse)
                .and_then(|s| s.extra_ports.get("https"))
                .map(|port| format!("https://127.0.0.1:{port}"))
                .ok_or_else(|| anyhow!("{} is not running with https", Kind::Clickhouse.name()))?,
        ),
        (
            "TITAN_TEST_CLICKHOUSE_CA".to_owned(),
            state
                .server(Kind::Clickhouse)
                .map(|s| tls::ca_file(s).display().to_string())
                .ok_or_else(|| anyhow!("{} is not running", Kind::Clickhouse.name()))?,
        ),
        ("TITAN_TEST_S3_ENDPOINT".to_owned(), url(Kind::S3, "")?),
        ("TITAN_TEST_S3_BUCKET".to_owned(), s3::BUCKET.to_owned()),
        (
            "TITAN_TEST_S3_ACCESS_KEY_ID".to_owned(),
            s3::ACCESS_KEY_ID.to_owned(),
        ),
        (
            "TITAN_TEST_S3_SECRET_ACCESS_KEY".to_owned(),
            s3::SECRET_ACCESS_KEY.to_owned(),
        ),
        (
            "TITAN_TEST_S3S_FS".to_owned(),
            s3::binary_path()?.display().to_string(),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_quote_for_the_shell() {
        let vars = [
            ("A".to_owned(), "x'y".to_owned()),
            ("B".to_owned(), "redis://h:1".to_owned()),
        ];
        assert_eq!(
            exports(&vars),
            "export A='x'\\''y'\nexport B='redis://h:1'\n"
        );
    }

    #[test]
    fn test_env_names_every_datastore() -> Result<()> {
        let mut state = State::new(Profile::Test, None);
        for (kind, port) in [
            (Kind::Postgres, 1),
            (Kind::Redis, 2),
            (Kind::Clickhouse, 3),
            (Kind::S3, 4),
        ] {
            let (extra_ports, log) = match kind {
                Kind::Redis => (BTreeMap::from([("tls".to_owned(), 11)]), "redis.log"),
                Kind::Clickhouse => (
                    BTreeMap::from([("https".to_owned(), 12)]),
                    "log/clickhouse-server.log",
                ),
                _ => (BTreeMap::new(), "server.log"),
            };
            state.put_server(Server {
                kind,
                pid: 1,
                port,
                extra_ports,
                log: PathBuf::from(format!("/state/{}/{log}", kind.name())),
            });
        }
        state.put_server(Server {
            kind: Kind::RedisCluster,
            pid: 1,
            port: 5,
            extra_ports: redis_cluster::port_names().into_iter().zip(6..).collect(),
            log: PathBuf::from("/state/redis-cluster/node-1/redis.log"),
        });
        let env = test_env(&state)?;
        assert_eq!(
            env,
            [
                (
                    "TITAN_TEST_POSTGRES_URL".to_owned(),
                    "postgres://postgres@127.0.0.1:1/postgres".to_owned()
                ),
                (
                    "TITAN_TEST_POSTGRES_CA".to_owned(),
                    "/state/postgres/tls/ca.crt".to_owned()
                ),
                (
                    "TITAN_TEST_REDIS_URL".to_owned(),
                    "redis://127.0.0.1:2".to_owned()
                ),
                (
                    "TITAN_TEST_REDIS_TLS_URL".to_owned(),
                    "rediss://127.0.0.1:11".to_owned()
                ),
                (
                    "TITAN_TEST_REDIS_CA".to_owned(),
                    "/state/redis/tls/ca.crt".to_owned()
                ),
                (
                    "TITAN_TEST_REDIS_CLUSTER_URL".to_owned(),
                    "redis+cluster://127.0.0.1:5,127.0.0.1:6,127.0.0.1:7,127.0.0.1:8,127.0.0.1:9,\
                     127.0.0.1:10"
                        .to_owned()
                ),
                (
                    "TITAN_TEST_REDIS_CLUSTER_TLS_URL".to_owned(),
                    "rediss+cluster://127.0.0.1:17,127.0.0.1:18,127.0.0.1:19,127.0.0.1:20,\
                     127.0.0.1:21,127.0.0.1:22"
                        .to_owned()
                ),
                (
                    "TITAN_TEST_REDIS_CLUSTER_CA".to_owned(),
                    "/state/redis-cluster/tls/ca.crt".to_owned()
                ),
                (
                    "TITAN_TEST_CLICKHOUSE_URL".to_owned(),
                    "http://127.0.0.1:3".to_owned()
                ),
                (
                    "TITAN_TEST_CLICKHOUSE_TLS_URL".to_owned(),
                    "https://127.0.0.1:12".to_owned()
                ),
                (
                    "TITAN_TEST_CLICKHOUSE_CA".to_owned(),
                    "/state/clickhouse/tls/ca.crt".to_owned()
                ),
                (
                    "TITAN_TEST_S3_ENDPOINT".to_owned(),
                    "http://127.0.0.1:4".to_owned()
                ),
                ("TITAN_TEST_S3_BUCKET".to_owned(), "titan".to_owned()),
                (
                    "TITAN_TEST_S3_ACCESS_KEY_ID".to_owned(),
                    "titan-local".to_owned()
                ),
                (
                    "TITAN_TEST_S3_SECRET_ACCESS_KEY".to_owned(),
                    "titan-local-secret".to_owned()
                ),
                (
                    "TITAN_TEST_S3S_FS".to_owned(),
                    s3::binary_path()?.display().to_string()
                ),
            ]
        );
        state.servers.pop();
        assert!(test_env(&state).is_err());
        Ok(())
    }
}
