//! The privacy service on real PostgreSQL, Redis and S3, with kit's participant running two
//! services of the test's own: a job waits for every service, an export becomes one object
//! behind a URL that expires, an erasure leaves only the pseudonym, a failed or abandoned task
//! is taken again, and the gRPC edge's roles, codes and reasons.

mod grpc;
mod jobs;

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use titan_kit::{
    auth::Caller,
    config::EventsConfig,
    privacy::{self, Erasure, Failure, Handler, Participant, PersonalData, Subject},
    testing::{TestClock, TestObjectStorage, TestPostgres, TestRedis, caller},
};
use titan_privacy::{app::Privacy, store::PgPrivacy};

pub type App = Privacy<PgPrivacy>;

/// Records of a service of the test, by user: what its handler exports and erases.
#[derive(Debug, Default)]
pub struct Fake {
    pub records: Mutex<BTreeMap<String, Vec<Value>>>,
    /// While set, every call fails, as a service whose store is down.
    pub failing: AtomicBool,
    /// While set, every call waits forever, as a replica that hangs until it is killed.
    pub hanging: AtomicBool,
}

impl Fake {
    pub fn with(records: &[(&str, Value)]) -> Arc<Self> {
        let fake = Self::default();
        {
            let mut map = fake.records.lock().expect("lock");
            for (user, record) in records {
                map.entry((*user).to_owned())
                    .or_default()
                    .push(record.clone());
            }
        }
        Arc::new(fake)
    }

    async fn gate(&self) -> Result<(), Failure> {
        if self.hanging.load(Ordering::SeqCst) {
            futures::future::pending::<()>().await;
        }
        if self.failing.load(Ordering::SeqCst) {
            return Err("the test's store is down".into());
        }
        Ok(())
    }
}

/// The handler kit runs, over a shared [`Fake`].
#[derive(Debug, Clone)]
pub struct Records(pub Arc<Fake>);

impl PersonalData for Records {
    async fn export(&self, subject: &Subject) -> Result<Value, Failure> {
        self.0.gate().await?;
        let records = self.0.records.lock().expect("lock");
        Ok(json!({ "records": records.get(&subject.user_id).cloned().unwrap_or_default() }))
    }

    async fn erase(&self, subject: &Subject) -> Result<Erasure, Failure> {
        self.0.gate().await?;
        let removed = self
            .0
            .records
            .lock()
            .expect("lock")
            .remove(&subject.user_id)
            .map_or(0, |r| r.len() as u64);
        Ok(Erasure::default().removed("records", removed))
    }
}

#[derive(Debug)]
pub struct World {
    pub app: App,
    pub db: TestPostgres,
    pub redis: TestRedis,
    pub objects: TestObjectStorage,
    pub clock: TestClock,
    pub registry: prometheus::Registry,
}

/// The export's lifetime in these tests.
pub const TTL: Duration = Duration::from_secs(3600);

impl World {
    pub async fn new() -> Self {
        let db = TestPostgres::new().await;
        let redis = TestRedis::new().await;
        let objects = TestObjectStorage::new();
        let clock = TestClock::at(chrono::Utc::now());
        let registry = prometheus::Registry::new();
        let app = Privacy::new(
            PgPrivacy::new(db.pool.clone()),
            objects.storage.clone(),
            "test".into(),
            TTL,
            clock.clock(),
            &registry,
        )
        .expect("app");
        Self {
            app,
            db,
            redis,
            objects,
            clock,
            registry,
        }
    }

    /// The value of the privacy service's gauge `name`.
    pub fn gauge(&self, name: &str) -> f64 {
        self.registry
            .gather()
            .iter()
            .find(|family| family.name() == name)
            .and_then(|family| family.get_metric().first())
            .map(|m| m.get_gauge().get_value())
            .unwrap_or_else(|| panic!("no gauge {name}"))
    }

    /// A replica of the test's service `service`, registered, whose leases last `lease`.
    pub async fn participant(
        &self,
        service: &str,
        fake: &Arc<Fake>,
        lease: Duration,
    ) -> Participant {
        privacy::register(&self.db.pool, service)
            .await
            .expect("register");
        Participant::new(
            service,
            self.db.pool.clone(),
            self.redis.handle.clone(),
            Handler::new(Records(fake.clone())),
            &format!("{service}-{}", uuid::Uuid::now_v7()),
            &EventsConfig {
                claim_idle: lease,
                ..EventsConfig::default()
            },
        )
    }

    /// How many rows of kit's privacy tables mention `text` anywhere.
    pub async fn rows_mentioning(&self, text: &str) -> i64 {
        let mut total = 0;
        for table in [
            "titan_privacy_jobs",
            "titan_privacy_tasks",
            "titan_privacy_exports",
            "titan_privacy_participants",
        ] {
            let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {table} t WHERE t::text LIKE '%' || $1 || '%'"
            )))
            .bind(text)
            .fetch_one(&self.db.pool)
            .await
            .expect("count");
            total += n;
        }
        total
    }
}

/// A data-protection officer's tooling.
pub fn officer() -> Caller {
    caller("dpo-1", &["privacy"])
}

/// A user id no other test uses.
pub fn user() -> String {
    format!("user-{}", uuid::Uuid::now_v7())
}

/// A lease no test outlives.
pub const LONG: Duration = Duration::from_secs(3600);

pub fn no_shutdown() -> tokio_util::sync::CancellationToken {
    tokio_util::sync::CancellationToken::new()
}
