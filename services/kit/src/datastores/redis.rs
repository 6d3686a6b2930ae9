//! Redis: one connection type for a single server (a multiplexed connection manager that
//! reconnects by itself) or a Redis Cluster (redis-rs' cluster connection, which follows the
//! slot map through resharding and failover), chosen by the URL, paired with the key prefix of
//! this cell (or test), so every key a service builds is namespaced the same way.
//!
//! Cluster URLs list seed nodes: `redis+cluster://[user:password@]host:port,host:port,...`
//! (`rediss+cluster://` for TLS to every node). Any one reachable seed is enough; the rest of
//! the cluster is discovered from it.
//!
//! TLS (`rediss://`, `rediss+cluster://`) verifies the servers against `redis.caFile` or,
//! without one, the system's roots.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo, Slot};
use redis::io::tcp::TcpSettings;
use redis::{Cmd, ErrorKind, IntoConnectionInfo, Pipeline, RedisFuture, ServerErrorKind, Value};
use secrecy::ExposeSecret;

use crate::{KitError, config::RedisConfig};

/// The scheme of a Redis Cluster URL.
pub const CLUSTER_SCHEME: &str = "redis+cluster";
/// The scheme of a Redis Cluster URL over TLS (every node's TLS port).
pub const CLUSTER_TLS_SCHEME: &str = "rediss+cluster";
/// How long the shared connection waits for a reply before failing the command.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long connecting to one cluster node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How many keys one SCAN call looks at (its COUNT): a page short enough never to hold the
/// server up, long enough that a large keyspace takes few round trips.
const SCAN_COUNT: u32 = 1000;

/// A connection to a single server or to a cluster; cheap to clone (clones share the
/// underlying multiplexed connections). Commands, pipelines and scripts go through
/// [`redis::aio::ConnectionLike`], so service code is the same for both.
#[derive(Clone)]
pub enum RedisConn {
    Single(Shared),
    Cluster(ClusterConnection),
}

/// A single server's multiplexed connections (`redis.connections` of them). Each clone is
/// bound to the next in turn, so the requests of one clone stay in order on one connection
/// while concurrent requests (each service clones the handle's connection per request)
/// spread over all of them. One multiplexed connection has one task that writes every
/// request and parses every reply of the process; more connections spread that work and
/// send fewer commands per system call (the trade-off, measured: `docs/runtime.md`, Redis
/// connections).
pub struct Shared {
    all: std::sync::Arc<[ConnectionManager]>,
    next: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    this: ConnectionManager,
}

impl Shared {
    fn new(all: Vec<ConnectionManager>) -> Option<Self> {
        let this = all.first()?.clone();
        Some(Self {
            all: all.into(),
            next: std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(1)),
            this,
        })
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("connections", &self.all.len())
            .finish_non_exhaustive()
    }
}

impl Clone for Shared {
    fn clone(&self) -> Self {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.all.len();
        Self {
            all: self.all.clone(),
            next: self.next.clone(),
            this: self.all[i].clone(),
        }
    }
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "RedisConn::Single",
            Self::Cluster(_) => "RedisConn::Cluster",
        })
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.this.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.this.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => Box::pin(cluster_pipeline(c, pipeline, offset, count)),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.this.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// A pipeline on a cluster. redis-rs sends a pipeline to the node of its first keyed command
/// and refuses one whose commands name keys of different slots, before sending anything (the
/// only `CrossSlot` error it returns as a whole; a server's CROSSSLOT for one command comes
/// back as that command's value). A non-atomic pipeline only batches round trips, so one that
/// spans slots is sent command by command instead, in order, stopping at the first error.
/// A transaction (`.atomic()`) must name keys of one slot, as on the server: it is refused.
async fn cluster_pipeline(
    conn: &mut ClusterConnection,
    pipeline: &Pipeline,
    offset: usize,
    count: usize,
) -> redis::RedisResult<Vec<Value>> {
    match conn.req_packed_commands(pipeline, offset, count).await {
        Err(e)
            if e.kind() == ErrorKind::Server(ServerErrorKind::CrossSlot)
                && !pipeline.is_transaction() =>
        {
            let mut values = Vec::with_capacity(pipeline.len());
            for cmd in pipeline.cmd_iter() {
                values.push(conn.req_packed_command(cmd).await?);
            }
            Ok(values)
        }
        other => other,
    }
}

/// Where the connections go.
#[derive(Clone)]
enum Target {
    /// Boxed: a client with TLS settings is several times a seed list's size.
    Single(Box<redis::Client>),
    /// Every seed as a single-server client too: pub/sub subscribes on one node. `certs`: the
    /// CA of `redis.caFile`, which the cluster client needs again for the nodes it discovers.
    Cluster {
        seeds: Vec<redis::Client>,
        certs: Option<redis::TlsCertificates>,
    },
}

/// TCP_NODELAY on every connection to Redis, which redis-rs leaves off by default. With
/// Nagle's algorithm on, a command that leaves in two segments holds its second until the
/// server acknowledges the first, and the server, waiting for the rest of the command, delays
/// that acknowledgement by up to 40 ms (what sqlx 0.9.0's PostgreSQL sockets did to coupon
/// redemptions: `docs/runtime.md`, Datastore sockets).
fn tcp() -> TcpSettings {
    TcpSettings::default().set_nodelay(true)
}

/// A single-server client of `url`, verified against `certs` when it is TLS.
fn client(url: &str, certs: Option<&redis::TlsCertificates>) -> Result<redis::Client, KitError> {
    let info = url
        .into_connection_info()
        .map_err(|e| KitError::config("redis.url", e.to_string()))?
        .set_tcp_settings(tcp());
    match certs {
        Some(certs) => redis::Client::build_with_tls(info, certs.clone())
            .map_err(|e| KitError::config("redis.caFile", e.to_string())),
        None => redis::Client::open(info).map_err(|e| KitError::config("redis.url", e.to_string())),
    }
}

/// A connection and the prefix every key must carry; cheap to clone.
#[derive(Clone)]
pub struct RedisHandle {
    pub conn: RedisConn,
    target: Target,
    prefix: String,
}

impl std::fmt::Debug for RedisHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHandle")
            .field("prefix", &self.prefix)
            .field("cluster", &self.is_cluster())
            .finish_non_exhaustive()
    }
}

impl RedisHandle {
    pub async fn connect(config: &RedisConfig) -> Result<Self, KitError> {
        let url = config.url.expose_secret();
        let tls = url.starts_with("rediss://") || url.starts_with(CLUSTER_TLS_SCHEME);
        if tls {
            // redis-rs builds its TLS client from the process's default provider, which must
            // be named when more than one is compiled in.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let certs = match &config.ca_file {
            Some(ca_file) if tls => Some(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(crate::tls::ca_pem("redis.caFile", ca_file)?),
            }),
            Some(_) => {
                return Err(KitError::config(
                    "redis.caFile",
                    "is set but redis.url is not rediss:// (or rediss+cluster://): the connection \
                     would be plaintext",
                ));
            }
            None => None,
        };
        let target = match cluster_seeds(url)? {
            Some(seeds) => Target::Cluster {
                seeds: seeds
                    .iter()
                    .map(|s| client(s, certs.as_ref()))
                    .collect::<Result<_, _>>()?,
                certs,
            },
            None => Target::Single(Box::new(client(url, certs.as_ref())?)),
        };
        if matches!(target, Target::Cluster { .. }) && config.key_prefix.contains(['{', '}']) {
            // Redis hashes the first `{...}` of a key: braces in the prefix would put every
            // key of the cell in one slot and defeat the services' own hash tags.
            return Err(KitError::config(
                "redis.keyPrefix",
                "a key prefix for a Redis Cluster must not contain `{` or `}`",
            ));
        }
        let conn = connection(&target, RESPONSE_TIMEOUT, config.connections).await?;
        Ok(Self {
            conn,
            target,
            prefix: config.key_prefix.clone(),
        })
    }

    /// Whether the URL named a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster { .. })
    }

    /// A connection of its own, for blocking commands that would stall the shared one; its
    /// response timeout must outlast the block. On a cluster: a cluster connection of its own
    /// (one connection per node), so a block on one node stalls nobody else's commands.
    pub async fn dedicated(&self, response_timeout: Duration) -> Result<RedisConn, KitError> {
        connection(&self.target, response_timeout, 1).await
    }

    /// A pub/sub connection of its own (`kit::realtime`'s hub holds one per replica). On a
    /// cluster, PUBLISH is broadcast to every node, so subscribing on any one node receives
    /// every message: the first seed that answers is used.
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, KitError> {
        match &self.target {
            Target::Single(client) => Ok(client.get_async_pubsub().await?),
            Target::Cluster { seeds, .. } => {
                let mut last = None;
                for seed in seeds {
                    match seed.get_async_pubsub().await {
                        Ok(pubsub) => return Ok(pubsub),
                        Err(e) => {
                            tracing::warn!(error = %e, "redis cluster seed refused pub/sub; trying the next");
                            last = Some(e);
                        }
                    }
                }
                Err(last.map_or_else(
                    || KitError::config("redis.url", "no cluster seed"),
                    KitError::from,
                ))
            }
        }
    }

    /// `<prefix><name>`: the only way a service should name a key.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// `<anchor>:<suffix>`, a key that a script or transaction uses together with the key
    /// `anchor` (already prefixed, without braces): on a cluster `{<anchor>}:<suffix>`, whose
    /// hash tag hashes exactly as `anchor` does, so both are in one slot while `anchor` keeps
    /// its name. On a single server the plain name, as keys were named before clusters.
    pub fn beside(&self, anchor: &str, suffix: &str) -> String {
        match self.target {
            Target::Single(_) => format!("{anchor}:{suffix}"),
            Target::Cluster { .. } => format!("{{{anchor}}}:{suffix}"),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Readiness: the server (on a cluster, a node) answers PING.
    pub async fn ping(&self) -> Result<(), KitError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    /// Every key of this cell (or test) whose name after the prefix matches `pattern`, a glob
    /// as `SCAN … MATCH` reads it (`*`, `?`, `[…]`, `\` escaping one character; the prefix
    /// itself is matched literally), as full key names, prefix included, ready for commands:
    /// sorted, each once (SCAN may return a key twice when the keyspace is rehashed during the
    /// walk). It walks the keyspace with `SCAN … COUNT 1000`, a page per call, and never uses
    /// KEYS, which blocks the server for the whole keyspace. On a cluster each master holds only
    /// its own slots' keys, so every master found in `CLUSTER SLOTS` is walked in turn. A key
    /// present for the whole walk is listed; one written or deleted during it may or may not be.
    pub async fn scan_keys(&self, pattern: &str) -> Result<Vec<String>, KitError> {
        let pattern = format!("{}{pattern}", glob_literal(&self.prefix));
        let mut conn = self.conn.clone();
        let mut keys = Vec::new();
        match &mut conn {
            RedisConn::Single(_) => scan_node(&mut conn, None, &pattern, &mut keys).await?,
            RedisConn::Cluster(cluster) => {
                for (host, port) in masters(cluster).await? {
                    let node = SingleNodeRoutingInfo::ByAddress { host, port };
                    scan_node(&mut conn, Some(node), &pattern, &mut keys).await?;
                }
            }
        }
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }
}

/// `text` escaped for a `SCAN`/`HSCAN … MATCH` pattern, so that the pattern matches it
/// literally (`*`, `?`, `[`, `]` and `\\` take a `\\`): for a user id or other outside text in
/// a pattern.
pub fn glob_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Adds the keys matching `pattern` on one server to `keys`: `node`, a cluster master, or the
/// single server of `conn` when `None`.
async fn scan_node(
    conn: &mut RedisConn,
    node: Option<SingleNodeRoutingInfo>,
    pattern: &str,
    keys: &mut Vec<String>,
) -> Result<(), KitError> {
    let mut cursor: u64 = 0;
    loop {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT);
        let reply = match (&mut *conn, &node) {
            (RedisConn::Cluster(cluster), Some(node)) => {
                cluster
                    .route_command(cmd, RoutingInfo::SingleNode(node.clone()))
                    .await?
            }
            (conn, _) => cmd.query_async(conn).await?,
        };
        let (next, page): (u64, Vec<String>) = value(reply)?;
        keys.extend(page);
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// The address of every master of a cluster, from `CLUSTER SLOTS` (`[start, end, [host,
/// port, id, …], replicas…]` per slot range; a master serving several ranges is listed once).
async fn masters(cluster: &mut ClusterConnection) -> Result<Vec<(String, u16)>, KitError> {
    let reply = cluster
        .route_command(
            redis::cmd("CLUSTER").arg("SLOTS").clone(),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
        )
        .await?;
    let ranges: Vec<Vec<Value>> = value(reply)?;
    let mut out: Vec<(String, u16)> = Vec::new();
    for range in ranges {
        let Some(master) = range.into_iter().nth(2) else {
            continue;
        };
        let node: Vec<Value> = value(master)?;
        let mut node = node.into_iter();
        let (Some(host), Some(port)) = (node.next(), node.next()) else {
            continue;
        };
        let address = (value::<String>(host)?, value::<u16>(port)?);
        if !out.contains(&address) {
            out.push(address);
        }
    }
    Ok(out)
}

/// `v` as a `T`; a reply of another shape is a Redis error.
fn value<T: redis::FromRedisValue>(v: Value) -> Result<T, KitError> {
    redis::from_redis_value(v).map_err(|e| redis::RedisError::from(e).into())
}

/// `connections` (at least one) multiplexed connections to a single server; on a cluster the
/// cluster connection, which keeps one connection per node.
async fn connection(
    target: &Target,
    response_timeout: Duration,
    connections: u32,
) -> Result<RedisConn, KitError> {
    match target {
        Target::Single(client) => {
            let config =
                ConnectionManagerConfig::new().set_response_timeout(Some(response_timeout));
            let all =
                futures::future::try_join_all((0..connections.max(1)).map(|_| {
                    ConnectionManager::new_with_config((**client).clone(), config.clone())
                }))
                .await?;
            Shared::new(all)
                .map(RedisConn::Single)
                .ok_or_else(|| KitError::config("redis.connections", "must be at least 1"))
        }
        Target::Cluster { seeds, certs } => {
            let mut builder =
                ClusterClientBuilder::new(seeds.iter().map(|s| s.get_connection_info().clone()))
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(response_timeout)
                    .tcp_settings(tcp());
            if let Some(certs) = certs {
                builder = builder.certs(certs.clone());
            }
            let client: ClusterClient = builder.build()?;
            Ok(RedisConn::Cluster(client.get_async_connection().await?))
        }
    }
}

/// Whether every key hashes to one Redis Cluster slot, as the keys of one script call or
/// transaction must (services check their hash tags with it in tests).
pub fn same_slot<K: AsRef<[u8]>>(keys: impl IntoIterator<Item = K>) -> bool {
    let mut slots = keys.into_iter().map(|k| Slot::for_key(k.as_ref()));
    match slots.next() {
        Some(first) => slots.all(|s| s == first),
        None => true,
    }
}

/// The seed URLs of a `redis+cluster://` (`rediss+cluster://`) URL, each a `redis://`
/// (`rediss://`) URL carrying the credentials; `None` for a single-server URL.
pub fn cluster_seeds(url: &str) -> Result<Option<Vec<String>>, KitError> {
    let refuse = |message: &str| Err(KitError::config("redis.url", message));
    let Some((seed_scheme, rest)) = [(CLUSTER_SCHEME, "redis"), (CLUSTER_TLS_SCHEME, "rediss")]
        .into_iter()
        .find_map(|(scheme, seed)| {
            let rest = url.strip_prefix(scheme)?.strip_prefix("://")?;
            Some((seed, rest))
        })
    else {
        return Ok(None);
    };
    let (credentials, hosts) = match rest.rsplit_once('@') {
        Some((credentials, hosts)) => (Some(credentials), hosts),
        None => (None, rest),
    };
    // A trailing `/` (or `/0`) is allowed; a cluster has no database other than 0.
    let hosts = match hosts.split_once('/') {
        Some((hosts, "" | "0")) => hosts,
        Some(_) => return refuse("a Redis Cluster has only database 0"),
        None => hosts,
    };
    let mut seeds = Vec::new();
    for host in hosts.split(',') {
        let valid = host.rsplit_once(':').is_some_and(|(name, port)| {
            !name.is_empty() && !port.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !valid {
            return refuse("every seed of a redis+cluster:// URL must be host:port");
        }
        seeds.push(match credentials {
            Some(c) => format!("{seed_scheme}://{c}@{host}"),
            None => format!("{seed_scheme}://{host}"),
        });
    }
    Ok(Some(seeds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeds(url: &str) -> Option<Vec<String>> {
        cluster_seeds(url).expect("a valid URL")
    }

    #[test]
    fn single_server_urls_are_not_cluster_urls() {
        assert_eq!(seeds("redis://127.0.0.1:6379"), None);
        assert_eq!(seeds("rediss://u:p@r:6380/1"), None);
    }

    #[test]
    fn cluster_urls_list_seeds_with_their_credentials() {
        assert_eq!(
            seeds("redis+cluster://a:7000,b:7001/"),
            Some(vec![
                "redis://a:7000".to_owned(),
                "redis://b:7001".to_owned()
            ])
        );
        assert_eq!(
            seeds("redis+cluster://user:p%40ss@10.0.0.1:7000,[::1]:7001"),
            Some(vec![
                "redis://user:p%40ss@10.0.0.1:7000".to_owned(),
                "redis://user:p%40ss@[::1]:7001".to_owned()
            ])
        );
        assert_eq!(
            seeds("rediss+cluster://user:pw@a:7000,b:7001"),
            Some(vec![
                "rediss://user:pw@a:7000".to_owned(),
                "rediss://user:pw@b:7001".to_owned()
            ])
        );
    }

    #[test]
    fn glob_literals_escape_every_glob_character() {
        assert_eq!(glob_literal(r"t*?[x]\:"), r"t\*\?\[x\]\\:");
        assert_eq!(
            glob_literal("titan:cell-a:{coupon:"),
            "titan:cell-a:{coupon:"
        );
    }

    #[test]
    fn keys_share_a_slot_only_through_a_hash_tag() {
        assert!(same_slot([
            "p:{sale:1}:stock",
            "p:{sale:1}:meta",
            "q:{sale:1}"
        ]));
        assert!(!same_slot(["p:{sale:1}:stock", "p:{sale:2}:stock"]));
        // Without a tag the whole key is hashed: these two land in different slots.
        assert!(!same_slot(["p:sale:1:stock", "p:sale:1:meta"]));
        assert!(same_slot(std::iter::empty::<&str>()));
    }

    #[test]
    fn bad_cluster_urls_are_refused_naming_the_setting() {
        for url in [
            "redis+cluster://",
            "redis+cluster://a:7000,,b:7001",
            "redis+cluster://a",
            "redis+cluster://a:0",
            "redis+cluster://a:70000",
            "redis+cluster://a:7000/3",
            "rediss+cluster://a:7000,",
        ] {
            match cluster_seeds(url) {
                Err(KitError::Config { setting, .. }) => assert_eq!(setting, "redis.url", "{url}"),
                other => panic!("{url}: {other:?}"),
            }
        }
    }
}
