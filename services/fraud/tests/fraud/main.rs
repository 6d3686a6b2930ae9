//! The fraud service on real PostgreSQL and Redis: every signal through the stores, velocity
//! windows that age out, the degraded path when velocity does not answer, rules saved and
//! applied (shadow ones changing nothing), idempotent checks, chargebacks, cases and the
//! analyst role, the history cached in Redis, a user's export and erasure, and the trainer (synthetic coefficients and a statsmodels reference fit).

mod cases;
mod checks;
mod history;
mod privacy;
mod training;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use prometheus::Registry;
use titan_fraud::{
    app::{Decided, Fraud, FraudError, FraudStore, Hot, HotStore, Logged, NewDecision},
    config::Settings,
    domain::{Dimension, Transaction, profile::Snapshot},
    metrics::Metrics,
    store::{log::DecisionSink, pg::PgFraud, redis::RedisHot},
};
use titan_kit::{
    auth::Caller,
    config::EventsConfig,
    datastores::postgres,
    datastores::redis::RedisHandle,
    events::ConsumerOptions,
    testing::{TestClock, TestPostgres, TestRedis, caller},
};

pub fn service() -> Caller {
    caller("checkout", &["service"])
}

pub fn analyst() -> Caller {
    caller("ana", &["analyst"])
}

pub fn admin() -> Caller {
    caller("root", &["admin"])
}

pub fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_900_000_000, 0).expect("time")
}

/// A transaction of `user` on a known-looking device, IP and card, countries all FR.
pub fn txn(id: &str, user: &str, amount: i64) -> Transaction {
    Transaction {
        transaction_id: id.into(),
        user_id: user.into(),
        amount,
        currency: "EUR".into(),
        ip: Some("192.0.2.10".into()),
        device: Some("dev-1".into()),
        card: Some("card-1".into()),
        email_domain: Some("example.com".into()),
        user_agent: "test".into(),
        country: Some("FR".into()),
        billing_country: Some("FR".into()),
        shipping_country: Some("FR".into()),
        account_created_at: Some(epoch() - chrono::Duration::days(400)),
    }
}

pub async fn migrated() -> TestPostgres {
    let db = TestPostgres::new().await;
    postgres::migrate(&db.pool, "fraud", sqlx::migrate!("./migrations"))
        .await
        .expect("migrate");
    db
}

pub struct World<V = RedisHot> {
    pub app: Arc<Fraud<PgFraud, V>>,
    pub db: TestPostgres,
    pub clock: TestClock,
    /// The decision log's sink, run by [`World::stored`] (none without Redis).
    sink: Option<tokio::sync::Mutex<DecisionSink<PgFraud, V>>>,
}

impl<V> std::fmt::Debug for World<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World").finish_non_exhaustive()
    }
}

/// The defaults, but Redis gets a second before a check counts as degraded: the 50 ms budget
/// is for a Redis that does not answer, and a loaded test machine must not pass for one (the
/// degraded path has its own test with a Redis that never answers).
pub fn settings() -> Settings {
    Settings {
        redis_budget_millis: 1000,
        ..Settings::default()
    }
}

impl World {
    pub async fn new() -> Self {
        Self::with(settings()).await
    }

    pub async fn with(settings: Settings) -> Self {
        Self::with_redis(TestRedis::new().await.handle, settings).await
    }

    /// Over `redis`, with the decision log's sink.
    pub async fn with_redis(redis: RedisHandle, settings: Settings) -> Self {
        Self::with_hot(RedisHot::new(redis.clone(), "test".into()), redis, settings).await
    }

    /// Over `hot` (on `redis`), with the decision log's sink.
    pub async fn with_hot(hot: RedisHot, redis: RedisHandle, settings: Settings) -> Self {
        let mut w = Self::over(hot, settings).await;
        // A short block: the last, empty read of each drain waits that long.
        let options = ConsumerOptions {
            block: Duration::from_millis(20),
            ..ConsumerOptions::new("", "", "test-sink", &EventsConfig::default())
        };
        let sink = DecisionSink::new(w.app.clone(), redis, options)
            .await
            .expect("sink");
        w.sink = Some(tokio::sync::Mutex::new(sink));
        w
    }

    /// Stores every decision the log holds in PostgreSQL, as the service's sink task does.
    pub async fn stored(&self) -> usize {
        match &self.sink {
            Some(sink) => sink.lock().await.drain().await.expect("sink"),
            None => 0,
        }
    }
}

impl<V: HotStore> World<V> {
    pub async fn over(velocity: V, settings: Settings) -> Self {
        let db = migrated().await;
        let clock = TestClock::at(epoch());
        let app = Arc::new(Fraud::new(
            PgFraud::new(db.pool.clone(), "test".into()),
            velocity,
            settings,
            clock.clock(),
            Metrics::new(&Registry::new()).expect("metrics"),
        ));
        app.reload().await.expect("reload");
        Self {
            app,
            db,
            clock,
            sink: None,
        }
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.db.pool)
            .await
            .expect("count")
    }
}

/// A velocity store that stands for Redis being down: it fails, or answers after `delay`.
#[derive(Debug, Clone, Copy)]
pub struct Unreachable {
    pub delay: Option<Duration>,
}

impl Unreachable {
    async fn fail<T: Default>(&self) -> Result<T, FraudError> {
        match self.delay {
            Some(d) => {
                tokio::time::sleep(d).await;
                Ok(T::default())
            }
            None => Err(FraudError::Kit(titan_kit::KitError::Other(
                "redis: connection refused".into(),
            ))),
        }
    }
}

impl HotStore for Unreachable {
    async fn record(
        &self,
        _: &[(Dimension, &str)],
        _: &Transaction,
        _: DateTime<Utc>,
    ) -> Result<Hot, FraudError> {
        self.fail().await
    }

    async fn fill(&self, _: &str, _: &Snapshot, _: u64) -> Result<bool, FraudError> {
        self.fail().await
    }

    async fn invalidate(&self, _: &str) -> Result<(), FraudError> {
        self.fail().await
    }

    async fn log(&self, _: &NewDecision) -> Result<Logged, FraudError> {
        self.fail::<()>().await?;
        Err(FraudError::Kit(titan_kit::KitError::Other(
            "redis: connection refused".into(),
        )))
    }

    async fn remember(&self, _: &Decided) -> Result<(), FraudError> {
        self.fail().await
    }
}

/// Stores of the type the app runs on, for tests that call them directly.
pub fn store(w: &World<impl HotStore>) -> PgFraud {
    PgFraud::new(w.db.pool.clone(), "test".into())
}

/// Keeps `FraudStore` in scope for the tests that call the store directly.
pub async fn rules_of(s: &PgFraud) -> usize {
    s.rules().await.expect("rules").len()
}
