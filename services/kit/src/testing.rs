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
        let config = RedisConfig {
            url: SecretString::from(url.clone()),
            key_prefix: format!("{}:", unique("t")),
        };
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
        let admin = clickhouse::connect(&ClickHouseConfig::new(url.clone(), "default".into()));
        admin
            .query(&format!("CREATE DATABASE {database}"))
            .execute()
            .await
            .expect("create test ClickHouse database");
        let config = ClickHouseConfig::new(url, database);
        Self {
            client: clickhouse::connect(&config),
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

/// Starts [`crate::runtime::serve`] for `services` on `config` (its addresses usually
/// `127.0.0.1:0`) and connects to its gRPC port.
pub async fn serve(
    config: crate::config::Config,
    services: Vec<crate::service::ServiceDef>,
) -> Served {
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
