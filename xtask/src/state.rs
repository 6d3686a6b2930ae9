//! The `state.json` file in a state directory: which servers xtask started there, their PIDs
//! and ports, so a later command (`down`, `datastores stop`, a stale-run sweep) can stop them
//! by PID without guessing.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// Bumped when the file's shape changes in a way older xtasks cannot read.
pub const FORMAT: u32 = 1;

const FILE_NAME: &str = "state.json";

/// How the servers in a state directory are tuned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Throw-away data, durability off: tests.
    Test,
    /// Data kept between runs, durability on: the local cell.
    Persistent,
}

/// One of the datastores: three databases, the object storage server, and (for the tests
/// only) a Redis Cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Postgres,
    Redis,
    Clickhouse,
    /// s3s-fs, an S3 server over a directory.
    S3,
    /// Six redis-servers in cluster mode (three masters, a replica each), recorded as one
    /// server: node 1's PID and port, the other ports in `extra_ports`.
    #[serde(rename = "redis-cluster")]
    RedisCluster,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Postgres,
        Kind::Redis,
        Kind::Clickhouse,
        Kind::S3,
        Kind::RedisCluster,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Postgres => "postgres",
            Kind::Redis => "redis",
            Kind::Clickhouse => "clickhouse",
            Kind::S3 => "s3",
            Kind::RedisCluster => "redis-cluster",
        }
    }

    /// Prefix of `/proc/PID/comm` of the server's main process; checked before signalling a
    /// recorded PID, which may have been reused by an unrelated process since.
    pub fn comm_prefix(self) -> &'static str {
        match self {
            Kind::Postgres => "postgres",
            Kind::Redis | Kind::RedisCluster => "redis-server",
            // comm is cut at 15 bytes: "clickhouse-serv".
            Kind::Clickhouse => "clickhouse",
            Kind::S3 => "s3s-fs",
        }
    }

    /// The client URL for a server listening on `port`; `database` only matters to PostgreSQL.
    pub fn url(self, port: u16, database: &str) -> String {
        match self {
            Kind::Postgres => format!("postgres://postgres@127.0.0.1:{port}/{database}"),
            Kind::Redis => format!("redis://127.0.0.1:{port}"),
            Kind::RedisCluster => format!("redis+cluster://127.0.0.1:{port}"),
            Kind::Clickhouse | Kind::S3 => format!("http://127.0.0.1:{port}"),
        }
    }
}

/// A server started by xtask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Server {
    pub kind: Kind,
    pub pid: u32,
    /// The port clients use (ClickHouse: HTTP).
    pub port: u16,
    /// Other ports the server holds (ClickHouse: native TCP, interserver).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_ports: BTreeMap<String, u16>,
    /// Where its log goes, for a look after a failure.
    pub log: PathBuf,
}

/// The contents of `state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub format: u32,
    pub profile: Profile,
    /// The xtask process that will stop these servers when it ends; `None` when they were
    /// started to outlive xtask (`datastores start`). A dead owner means a killed run.
    pub owner_pid: Option<u32>,
    #[serde(default)]
    pub servers: Vec<Server>,
    /// The `titan serve` process of a local cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub titan_pid: Option<u32>,
    /// Every port a server of this directory last had (`postgres`, `clickhouse.tcp`, ...),
    /// kept after the servers stop so the next start can offer the same URLs again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub last_ports: BTreeMap<String, u16>,
}

impl State {
    pub fn new(profile: Profile, owner_pid: Option<u32>) -> Self {
        State {
            format: FORMAT,
            profile,
            owner_pid,
            servers: Vec::new(),
            titan_pid: None,
            last_ports: BTreeMap::new(),
        }
    }

    pub fn server(&self, kind: Kind) -> Option<&Server> {
        self.servers.iter().find(|s| s.kind == kind)
    }

    /// Records `server`, replacing an older record of the same kind.
    pub fn put_server(&mut self, server: Server) {
        self.last_ports
            .insert(server.kind.name().to_owned(), server.port);
        for (name, port) in &server.extra_ports {
            self.last_ports
                .insert(format!("{}.{name}", server.kind.name()), *port);
        }
        self.servers.retain(|s| s.kind != server.kind);
        self.servers.push(server);
        self.servers.sort_by_key(|s| s.kind);
    }

    pub fn to_json(&self) -> Result<String> {
        let mut text = serde_json::to_string_pretty(self).context("serialising state")?;
        text.push('\n');
        Ok(text)
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let state: State = serde_json::from_str(text).context("parsing state.json")?;
        if state.format != FORMAT {
            bail!(
                "state.json has format {} but this xtask reads format {FORMAT}; stop the servers \
                 by hand and remove the state directory",
                state.format
            );
        }
        Ok(state)
    }

    pub fn path(dir: &Path) -> PathBuf {
        dir.join(FILE_NAME)
    }

    /// Reads `dir/state.json`; `Ok(None)` when there is none.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let path = Self::path(dir);
        match fs::read_to_string(&path) {
            Ok(text) => Self::from_json(&text)
                .with_context(|| format!("reading {}", path.display()))
                .map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes `dir/state.json` through a temporary file and a rename, so a reader (or a crash
    /// halfway) never sees half a file.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = Self::path(dir);
        let tmp = dir.join(format!(".{FILE_NAME}.{}", std::process::id()));
        let mut file =
            fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        file.write_all(self.to_json()?.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> State {
        let mut state = State::new(Profile::Test, Some(4242));
        state.put_server(Server {
            kind: Kind::Clickhouse,
            pid: 30,
            port: 41000,
            extra_ports: BTreeMap::from([
                ("tcp".to_owned(), 41001),
                ("interserver".to_owned(), 41002),
            ]),
            log: PathBuf::from("/s/clickhouse/log/clickhouse-server.log"),
        });
        state.put_server(Server {
            kind: Kind::Postgres,
            pid: 10,
            port: 40000,
            extra_ports: BTreeMap::new(),
            log: PathBuf::from("/s/postgres/postgres.log"),
        });
        state
    }

    #[test]
    fn round_trips_through_json() -> Result<()> {
        let state = sample();
        let back = State::from_json(&state.to_json()?)?;
        assert_eq!(back, state);
        Ok(())
    }

    #[test]
    fn servers_are_kept_in_kind_order_and_replaced_by_kind() {
        let mut state = sample();
        assert_eq!(
            state.servers.iter().map(|s| s.kind).collect::<Vec<_>>(),
            [Kind::Postgres, Kind::Clickhouse]
        );
        let mut newer = state.servers[0].clone();
        newer.pid = 11;
        state.put_server(newer);
        assert_eq!(state.servers.len(), 2);
        assert_eq!(state.last_ports.get("clickhouse.tcp"), Some(&41001));
        assert_eq!(state.last_ports.get("postgres"), Some(&40000));
        assert_eq!(state.server(Kind::Postgres).map(|s| s.pid), Some(11));
        assert!(state.server(Kind::Redis).is_none());
    }

    #[test]
    fn uses_lowercase_names_and_omits_empty_fields() -> Result<()> {
        let json = sample().to_json()?;
        assert!(json.contains(r#""profile": "test""#), "{json}");
        assert!(json.contains(r#""kind": "clickhouse""#), "{json}");
        assert!(!json.contains("titan_pid"), "{json}");
        // The postgres record has no extra ports, so the key is left out.
        assert_eq!(json.matches("extra_ports").count(), 1, "{json}");
        Ok(())
    }

    #[test]
    fn reads_a_minimal_file() -> Result<()> {
        let state = State::from_json(r#"{"format":1,"profile":"persistent","owner_pid":null}"#)?;
        assert_eq!(state, State::new(Profile::Persistent, None));
        Ok(())
    }

    #[test]
    fn rejects_another_format() {
        let err = State::from_json(r#"{"format":99,"profile":"test","owner_pid":null}"#)
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("format 99")));
    }

    #[test]
    fn urls_name_loopback_and_port() {
        assert_eq!(
            Kind::Postgres.url(5, "titan"),
            "postgres://postgres@127.0.0.1:5/titan"
        );
        assert_eq!(Kind::Redis.url(6, "titan"), "redis://127.0.0.1:6");
        assert_eq!(Kind::Clickhouse.url(7, "titan"), "http://127.0.0.1:7");
        assert_eq!(Kind::S3.url(8, "titan"), "http://127.0.0.1:8");
    }
}
