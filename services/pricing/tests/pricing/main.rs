//! Pricing tests on the real stores (each test has its own PostgreSQL database and ClickHouse
//! database, with the analytics service's `analytics_events`) and against the reference
//! elasticity fixture.

mod elasticity;
mod rounds;

use titan_kit::{
    datastores::{clickhouse, postgres},
    idempotency,
    testing::{TestClickHouse, TestClock, TestPostgres},
};
use titan_pricing::{
    app::Pricing,
    config::Settings,
    domain::SERVICE,
    metrics::Metrics,
    store::{demand::ChDemand, pg::PgPricing},
};

pub type App = Pricing<PgPricing, ChDemand>;

/// Migrated PostgreSQL and ClickHouse databases.
#[derive(Debug)]
pub struct Stores {
    pub db: TestPostgres,
    pub ch: TestClickHouse,
}

impl Stores {
    pub async fn new() -> Self {
        let db = TestPostgres::new().await;
        postgres::migrate(&db.pool, SERVICE, sqlx::migrate!("./migrations"))
            .await
            .expect("migrate postgres");
        let ch = TestClickHouse::new().await;
        clickhouse::migrate(&ch.client, "analytics", titan_analytics::store::MIGRATIONS)
            .await
            .expect("analytics tables");
        Self { db, ch }
    }

    /// One replica on these stores, named `instance`, on `clock`.
    pub fn replica(&self, instance: &str, clock: &TestClock) -> App {
        Pricing::new(
            PgPricing::new(self.db.pool.clone(), "test".into()),
            ChDemand::new(self.ch.client.clone()),
            Settings::default(),
            clock.clock(),
            Metrics::new(&prometheus::Registry::new()).expect("metrics"),
            instance.into(),
        )
    }
}

/// A fresh idempotency key.
pub fn key() -> idempotency::Key {
    idempotency::Key::new(
        SERVICE,
        "Test",
        "admin",
        &uuid::Uuid::new_v4().to_string(),
        b"",
    )
    .expect("key")
}
