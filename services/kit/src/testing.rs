//! Test helpers: each test gets its own PostgreSQL database, Redis key
//! prefix, ClickHouse database and object key prefix on the servers that `cargo xtask test`
//! starts, so tests run in parallel without seeing each other. Without those servers a helper fails and says how to run
//! the tests; it never skips silently.

use secrecy::SecretString;
use sqlx::{Connection, PgConnection, PgPool};

use crate::{
    config::{ClickHouseConfig, ObjectStorageConfig, PostgresConfig, RedisConfig},
    datastores::{clickhouse, postgres, redis::RedisHandle},
    objects::{ObjectKey, ObjectStorage},
};

/// The URL in `var`, or a panic that tells how to run the tests.
pub fn server_url(var: &str) -> String {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{var} is not set: run the tests with `cargo xtask test` (see README.md), which starts \
             PostgreSQL, Redis, ClickHouse and s3s-fs and exports their URLs; or `eval \"$(cargo xtask datastores env)\"` \
             after `cargo xtask datastores start`"
        ),
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// A fresh database with kit's tables migrated.
#[derive(Debug)]
pub struct TestPostgres {
    pub pool: PgPool,
    pub url: String,
    pub config: PostgresConfig,
    pub database: String,
}

impl TestPostgres {
    pub async fn new() -> Self {
        let admin = server_url("TITAN_TEST_POSTGRES_URL");
        let database = unique("t");
        let mut conn = PgConnection::connect(&admin)
            .await
            .expect("connect to the test PostgreSQL server");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        conn.close().await.expect("close admin connection");
        let url = match admin.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{database}"),
            None => panic!("TITAN_TEST_POSTGRES_URL must end with /<database>"),
        };
        let config = PostgresConfig::new(SecretString::from(url.clone()), 10);
        let pool = postgres::connect(&config, "titan-test")
            .await
            .expect("connect to test database");
        postgres::migrate(&pool, "kit", postgres::kit_migrator())
            .await
            .expect("kit migrations");
        Self {
            pool,
            url,
            config,
            database,
        }
    }
}

/// A private key prefix on the test Redis server.
#[derive(Debug, Clone)]
pub struct TestRedis {
    pub handle: RedisHandle,
    pub url: String,
    pub config: RedisConfig,
}

impl TestRedis {
    pub async fn new() -> Self {
        Self::on(server_url("TITAN_TEST_REDIS_URL")).await
    }

    /// A private key prefix on the test Redis Cluster (`TITAN_TEST_REDIS_CLUSTER_URL`, a
    /// `redis+cluster://` URL: three masters with a replica each).
    pub async fn cluster() -> Self {
        Self::on(server_url("TITAN_TEST_REDIS_CLUSTER_URL")).await
    }

    async fn on(url: String) -> Self {
        let config = RedisConfig::new(url.clone(), format!("{}:", unique("t")));
        let handle = RedisHandle::connect(&config)
            .await
            .expect("connect to the test Redis server");
        Self {
            handle,
            url,
            config,
        }
    }
}

pub mod mentions;
pub mod otlp;
pub mod privacy;

/// Administration of the test Redis Cluster: which node serves a key, a failover of that node
/// to its replica that loses no acknowledged write, and a wait until the cluster is healthy
/// again, each polled until every node agrees.
pub mod cluster {
    use std::time::{Duration, Instant};

    use redis::{FromRedisValue, aio::MultiplexedConnection};

    use super::{eventually, server_url};
    use crate::datastores::redis::cluster_seeds;

    /// How long the old master holds write commands back during [`fail_over`]; the switch
    /// must complete within it. Redis' own coordinated failover pauses for as long (its
    /// manual-failover timeout); normally the switch takes milliseconds.
    const WRITE_PAUSE: Duration = Duration::from_secs(5);

    /// A node as `CLUSTER NODES` lists it.
    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
    pub struct Node {
        pub id: String,
        /// `host:port`.
        pub addr: String,
        pub master: bool,
        /// The master it replicates, for a replica.
        pub replicates: Option<String>,
        /// Inclusive slot ranges served, for a master.
        pub slots: Vec<(u16, u16)>,
    }

    /// Parses `CLUSTER NODES` (one node per line).
    pub fn parse_nodes(text: &str) -> Vec<Node> {
        text.lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let addr = f.get(1)?.split('@').next()?.to_owned();
                let flags = f.get(2)?;
                let slots = f
                    .iter()
                    .skip(8)
                    .filter_map(|r| match r.split_once('-') {
                        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                        None => r.parse().ok().map(|s| (s, s)),
                    })
                    .collect();
                Some(Node {
                    id: (*f.first()?).to_owned(),
                    addr,
                    master: flags.split(',').any(|f| f == "master"),
                    replicates: f.get(3).filter(|m| **m != "-").map(|m| (*m).to_owned()),
                    slots,
                })
            })
            .collect()
    }

    /// Every node of the test cluster, from its seeds (`TITAN_TEST_REDIS_CLUSTER_URL`).
    pub fn seeds() -> Vec<String> {
        let url = server_url("TITAN_TEST_REDIS_CLUSTER_URL");
        cluster_seeds(&url)
            .expect("a redis+cluster:// URL")
            .expect("a redis+cluster:// URL")
    }

    /// A connection to one node, `addr` being `host:port` or a `redis://` URL.
    pub async fn node(addr: &str) -> MultiplexedConnection {
        let url = if addr.contains("://") {
            addr.to_owned()
        } else {
            format!("redis://{addr}")
        };
        redis::Client::open(url)
            .expect("a node URL")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to a cluster node")
    }

    /// `cmd` on node `addr`; `None` when the node does not answer it, for the polls.
    async fn ask<T: FromRedisValue>(addr: &str, cmd: &redis::Cmd) -> Option<T> {
        cmd.query_async(&mut node(addr).await).await.ok()
    }

    /// The cluster as `addr` sees it.
    pub async fn view(addr: &str) -> Vec<Node> {
        let text: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut node(addr).await)
            .await
            .expect("CLUSTER NODES");
        parse_nodes(&text)
    }

    /// The slot `key` hashes to, as the server computes it.
    pub async fn slot(key: &str) -> u16 {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut node(&seeds()[0]).await)
            .await
            .expect("CLUSTER KEYSLOT")
    }

    fn master_of(nodes: &[Node], slot: u16) -> Option<&Node> {
        nodes
            .iter()
            .find(|n| n.master && n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
    }

    /// A numeric field of an `INFO` reply (`name:value` lines).
    fn info_number(info: &str, name: &str) -> Option<u64> {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
    }

    /// The topology every node agrees on, once the cluster is healthy: every node says
    /// `cluster_state:ok` and lists the same nodes in the same roles, every master serving
    /// slots has a replica, and every replica's link to its master is up. A test that changes
    /// the topology waits for this before it returns, so the tests sharing the cluster
    /// never meet it half switched.
    pub async fn await_healthy() -> Vec<Node> {
        eventually(
            "a healthy cluster: one view on every node, each master with a replica in sync",
            || async {
                let mut agreed: Option<Vec<Node>> = None;
                for seed in seeds() {
                    let info: String = ask(&seed, redis::cmd("CLUSTER").arg("INFO")).await?;
                    if !info.contains("cluster_state:ok") {
                        return None;
                    }
                    let text: String = ask(&seed, redis::cmd("CLUSTER").arg("NODES")).await?;
                    let mut nodes = parse_nodes(&text);
                    nodes.sort();
                    match &agreed {
                        Some(first) if *first != nodes => return None,
                        Some(_) => {}
                        None => agreed = Some(nodes),
                    }
                }
                let nodes = agreed?;
                for master in nodes.iter().filter(|n| n.master && !n.slots.is_empty()) {
                    nodes
                        .iter()
                        .find(|n| n.replicates.as_deref() == Some(master.id.as_str()))?;
                }
                for replica in nodes.iter().filter(|n| n.replicates.is_some()) {
                    let info: String =
                        ask(&replica.addr, redis::cmd("INFO").arg("replication")).await?;
                    if !info.contains("master_link_status:up") {
                        return None;
                    }
                }
                Some(nodes)
            },
        )
        .await
    }

    /// Promotes the replica of the master serving `slot` without losing a write the master
    /// acknowledged, and waits until the cluster is healthy again; returns (old master, new
    /// master). These are the steps of Redis' coordinated `CLUSTER FAILOVER`, with the
    /// promotion done by `CLUSTER FAILOVER TAKEOVER`: the master holds writes back
    /// (`CLIENT PAUSE WRITE`), the replica catches up to the master's replication offset,
    /// the replica takes the slots, and the old master, once it sees that and has become a
    /// replica, lets the held writes go on to be redirected (MOVED) to the new master.
    ///
    /// A plain `CLUSTER FAILOVER` is not used because on Redis 7.0 it times out when
    /// repeated soon: a replica asked again within four `cluster-node-timeout`s of its last
    /// election reuses that election's votes or waits it out (fixed in Valkey 8.1, PR 1274),
    /// and a master refuses its vote for a replica of a master it voted about within two
    /// (Valkey PR 1305); with xtask's default 15 s timeout, failing back, or a second run
    /// of the test, failed so. A takeover needs no votes; the pause and the offset make it
    /// as safe.
    pub async fn fail_over(slot: u16) -> (String, String) {
        let nodes = await_healthy().await;
        let master = master_of(&nodes, slot)
            .expect("a healthy cluster serves every slot")
            .clone();
        let replica = nodes
            .iter()
            .find(|n| n.replicates.as_deref() == Some(master.id.as_str()))
            .expect("a healthy cluster has a replica of every master")
            .clone();
        let mut old = node(&master.addr).await;
        let () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(WRITE_PAUSE.as_millis().to_string())
            .arg("WRITE")
            .query_async(&mut old)
            .await
            .expect("CLIENT PAUSE");
        let paused = Instant::now();
        // Every write the master acknowledged is in its replication stream by now.
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut old)
            .await
            .expect("INFO replication");
        let written = info_number(&info, "master_repl_offset").expect("master_repl_offset");
        eventually(
            "the replica has every write of its paused master",
            || async {
                let info: String =
                    ask(&replica.addr, redis::cmd("INFO").arg("replication")).await?;
                (info_number(&info, "slave_repl_offset")? >= written).then_some(())
            },
        )
        .await;
        let () = redis::cmd("CLUSTER")
            .arg("FAILOVER")
            .arg("TAKEOVER")
            .query_async(&mut node(&replica.addr).await)
            .await
            .expect("CLUSTER FAILOVER TAKEOVER");
        // The old master must learn that it lost the slot before its pause ends; otherwise it
        // could still take writes that the new master never receives.
        eventually("the old master sees its replica serve the slot", || async {
            let text: String = ask(&master.addr, redis::cmd("CLUSTER").arg("NODES")).await?;
            (master_of(&parse_nodes(&text), slot)?.addr == replica.addr).then_some(())
        })
        .await;
        assert!(
            paused.elapsed() < WRITE_PAUSE,
            "the switch outlasted the old master's write pause ({WRITE_PAUSE:?}): a write may \
             have reached it after its replica took over"
        );
        let () = redis::cmd("CLIENT")
            .arg("UNPAUSE")
            .query_async(&mut old)
            .await
            .expect("CLIENT UNPAUSE");
        let nodes = await_healthy().await;
        assert_eq!(
            master_of(&nodes, slot).map(|n| n.addr.as_str()),
            Some(replica.addr.as_str()),
            "every node sees the replica serve the slot"
        );
        (master.addr, replica.addr)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn nodes_slots_and_offsets_parse() {
            let nodes = parse_nodes(
                "a 127.0.0.1:1@11 myself,master - 0 0 1 connected 0-5460 5462\n\
                 b 127.0.0.1:2@12 slave a 0 0 1 connected\n",
            );
            let a = Node {
                id: "a".into(),
                addr: "127.0.0.1:1".into(),
                master: true,
                replicates: None,
                slots: vec![(0, 5460), (5462, 5462)],
            };
            let b = Node {
                id: "b".into(),
                addr: "127.0.0.1:2".into(),
                master: false,
                replicates: Some("a".into()),
                slots: vec![],
            };
            assert_eq!(nodes, vec![a.clone(), b]);
            assert_eq!(master_of(&nodes, 5462), Some(&a));
            assert_eq!(master_of(&nodes, 5461), None);

            let info = "# Replication\r\nrole:slave\r\nslave_read_repl_offset:43\r\n\
                        slave_repl_offset:41\r\nmaster_repl_offset:42\r\n";
            assert_eq!(info_number(info, "slave_repl_offset"), Some(41));
            assert_eq!(info_number(info, "master_repl_offset"), Some(42));
            assert_eq!(info_number(info, "repl_offset"), None);
        }
    }
}

/// A fresh ClickHouse database.
#[derive(Debug, Clone)]
pub struct TestClickHouse {
    pub client: ::clickhouse::Client,
    pub config: ClickHouseConfig,
}

impl TestClickHouse {
    pub async fn new() -> Self {
        let url = server_url("TITAN_TEST_CLICKHOUSE_URL");
        let database = unique("t");
        let admin = clickhouse::connect(&ClickHouseConfig::new(url.clone(), "default".into()))
            .expect("a client of the test ClickHouse");
        admin
            .query(&format!("CREATE DATABASE {database}"))
            .execute()
            .await
            .expect("create test ClickHouse database");
        let config = ClickHouseConfig::new(url, database);
        Self {
            client: clickhouse::connect(&config).expect("a client of the test ClickHouse"),
            config,
        }
    }
}

/// The test S3 server's bucket (s3s-fs, `TITAN_TEST_S3_*`) and a key prefix of this test's own.
#[derive(Debug, Clone)]
pub struct TestObjectStorage {
    pub storage: ObjectStorage,
    pub config: ObjectStorageConfig,
    /// Every key of the test goes under this one.
    pub prefix: ObjectKey,
}

impl TestObjectStorage {
    pub fn new() -> Self {
        let config = ObjectStorageConfig::new(
            server_url("TITAN_TEST_S3_ENDPOINT"),
            server_url("TITAN_TEST_S3_BUCKET"),
            server_url("TITAN_TEST_S3_ACCESS_KEY_ID"),
            SecretString::from(server_url("TITAN_TEST_S3_SECRET_ACCESS_KEY")),
        );
        let storage = ObjectStorage::new(&config).expect("an S3 client for the test server");
        let prefix = ObjectKey::new([unique("t")]).expect("a valid prefix");
        Self {
            storage,
            config,
            prefix,
        }
    }

    /// `prefix/parts...`.
    pub fn key(&self, parts: &[&str]) -> ObjectKey {
        ObjectKey::new(std::iter::once(self.prefix.as_str()).chain(parts.iter().copied()))
            .expect("a valid test key")
    }
}

impl Default for TestObjectStorage {
    fn default() -> Self {
        Self::new()
    }
}

/// The value of a counter or gauge series (`name{labels}` exactly as exposed) on the admin
/// port `admin`'s `/metrics`, 0 when the series is absent.
pub async fn metric(admin: std::net::SocketAddr, series: &str) -> f64 {
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().expect("a number"))
        })
        .unwrap_or(0.0)
}

/// A service of a test named `name`, mounted by `mount`, needing no datastore, migration or
/// event relay, with gRPC health's descriptors for reflection; a test that needs more sets
/// those fields with struct update syntax (`ServiceDef { datastores: &[..], ..service(..) }`).
pub fn service(
    name: &'static str,
    mount: fn(
        crate::ServiceContext,
    ) -> futures::future::BoxFuture<'static, Result<crate::Mounted, crate::KitError>>,
) -> crate::ServiceDef {
    crate::ServiceDef {
        name,
        datastores: &[],
        ready_on: &[],
        migrator: None,
        clickhouse_migrations: &[],
        publishes_events: false,
        file_descriptor_set: tonic_health::pb::FILE_DESCRIPTOR_SET,
        mount,
    }
}

/// A runtime serving services in the test's process, once its ports are bound.
#[derive(Debug)]
pub struct Served {
    pub bound: crate::runtime::Bound,
    /// Connected to the gRPC port.
    pub channel: tonic::transport::Channel,
    /// Cancel to stop the runtime; `task` then ends.
    pub stop: tokio_util::sync::CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), crate::KitError>>,
}

/// A runtime started by [`serving`], its servers bound.
#[derive(Debug)]
pub struct Serving {
    pub bound: crate::runtime::Bound,
    /// Cancel to stop the runtime; `task` then ends.
    pub stop: tokio_util::sync::CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), crate::KitError>>,
}

/// Starts [`crate::runtime::serve`] for `services` on `config` (its addresses usually
/// `127.0.0.1:0`) and waits until its servers are bound.
pub async fn serving(
    config: crate::config::Config,
    services: Vec<crate::service::ServiceDef>,
) -> Serving {
    let stop = tokio_util::sync::CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(crate::runtime::serve(
        config,
        services,
        stop.clone(),
        move |b| {
            let _ = tx.send(b);
        },
    ));
    let bound = rx.await.expect("the runtime bound its ports");
    Serving { bound, stop, task }
}

/// [`serving`], then connected to its gRPC port.
pub async fn serve(
    config: crate::config::Config,
    services: Vec<crate::service::ServiceDef>,
) -> Served {
    let Serving { bound, stop, task } = serving(config, services).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", bound.grpc))
        .expect("uri")
        .connect()
        .await
        .expect("connect to the runtime's gRPC port");
    Served {
        bound,
        channel,
        stop,
        task,
    }
}

/// Appends `event` to `source`'s stream as the relay does (fields `id`, `type`, `envelope`), for
/// tests of a consumer that should not need the publishing service.
pub async fn publish(redis: &RedisHandle, source: &str, event: &crate::events::Envelope) {
    let json = serde_json::to_string(event).expect("an envelope serialises");
    let mut conn = redis.conn.clone();
    let _: String = ::redis::cmd("XADD")
        .arg(crate::events::stream_key(redis, source))
        .arg("*")
        .arg("id")
        .arg(event.id.to_string())
        .arg("type")
        .arg(&event.kind)
        .arg("envelope")
        .arg(json)
        .query_async(&mut conn)
        .await
        .expect("xadd");
}

/// How long [`eventually`] and [`eventually_ok`] wait before failing the test.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// Polls `check` until it yields a value; fails the test after a generous deadline. Tests wait
/// for a state this way, never with a fixed sleep.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Retries `attempt` until it succeeds (a dependency coming back); fails the test after the
/// deadline with the last error.
pub async fn eventually_ok<T, E: std::fmt::Display, F, Fut>(mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match attempt().await {
            Ok(v) => return v,
            Err(e) => assert!(tokio::time::Instant::now() < deadline, "still failing: {e}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A clock a test moves by hand, so expiries, windows and calendar days need no waiting. Hand
/// [`TestClock::clock`] to the service under test where it takes its clock.
#[derive(Debug, Clone)]
pub struct TestClock(std::sync::Arc<std::sync::atomic::AtomicI64>);

impl TestClock {
    pub fn at(t: chrono::DateTime<chrono::Utc>) -> Self {
        Self(std::sync::Arc::new(std::sync::atomic::AtomicI64::new(
            t.timestamp_millis(),
        )))
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        let ms = self.0.load(std::sync::atomic::Ordering::SeqCst);
        chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
    }

    pub fn set(&self, t: chrono::DateTime<chrono::Utc>) {
        self.0
            .store(t.timestamp_millis(), std::sync::atomic::Ordering::SeqCst);
    }

    pub fn advance(&self, d: chrono::Duration) {
        self.0
            .fetch_add(d.num_milliseconds(), std::sync::atomic::Ordering::SeqCst);
    }

    /// The clock as services take it.
    pub fn clock(&self) -> crate::Clock {
        let this = self.clone();
        std::sync::Arc::new(move || this.now())
    }
}

/// A caller as the auth interceptor hands it to a service: `user_id` with `roles`.
pub fn caller(user_id: &str, roles: &[&str]) -> crate::auth::Caller {
    crate::auth::Caller {
        user_id: user_id.to_owned(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
    }
}

/// The administrator the services' tests act as.
pub fn admin() -> crate::auth::Caller {
    caller("admin-1", &["admin"])
}

/// Calls `op(0..ops)` from `concurrency` workers at once and prints the throughput: the
/// in-process benchmarks of the services. `op` answers whether the call succeeded.
pub async fn throughput<F, Fut>(what: &str, ops: u32, concurrency: u32, op: F)
where
    F: Fn(u32) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let op = op.clone();
        tasks.spawn(async move {
            let mut ok = 0u32;
            for i in (worker..ops).step_by(concurrency as usize) {
                ok += u32::from(op(i).await);
            }
            ok
        });
    }
    let ok: u32 = tasks.join_all().await.into_iter().sum();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{what}: {ops} calls, {ok} succeeded, {secs:.2} s, {:.0} calls/s ({concurrency} concurrent)",
        f64::from(ops) / secs
    );
}

/// A WebSocket client's side of a test, over tokio-tungstenite (a third-party client, not
/// kit's own code): what it reads next, and sending a frame.
pub mod ws {
    use std::time::Duration;

    use futures::{SinkExt, StreamExt};
    use serde_json::Value;
    use tokio::net::TcpStream;
    use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

    /// Generous: a test fails only when something never arrives, not when the machine is slow.
    pub const PATIENCE: Duration = Duration::from_secs(60);

    /// A client connection.
    pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

    /// What a client reads next.
    #[derive(Debug, PartialEq)]
    pub enum Event {
        /// A text frame, parsed as JSON.
        Frame(Value),
        /// The close code and reason (1005 when the server sent none).
        Closed(u16, String),
    }

    /// The next text frame or the close, skipping pings and pongs; panics after [`PATIENCE`].
    pub async fn next(ws: &mut Client) -> Event {
        loop {
            let message = tokio::time::timeout(PATIENCE, ws.next())
                .await
                .expect("nothing read in time");
            match message {
                Some(Ok(Message::Text(text))) => {
                    return Event::Frame(serde_json::from_str(text.as_str()).expect("json frame"));
                }
                Some(Ok(Message::Close(Some(frame)))) => {
                    return Event::Closed(frame.code.into(), frame.reason.to_string());
                }
                Some(Ok(Message::Close(None))) | None => {
                    return Event::Closed(1005, String::new());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("read failed: {e}"),
            }
        }
    }

    /// The close code and reason, skipping the frames before it.
    pub async fn closed_with(ws: &mut Client) -> (u16, String) {
        loop {
            if let Event::Closed(code, reason) = next(ws).await {
                return (code, reason);
            }
        }
    }

    /// Sends `frame` as a text frame.
    pub async fn send(ws: &mut Client, frame: Value) {
        ws.send(Message::Text(frame.to_string().into()))
            .await
            .expect("send");
    }
}
