//! The A/B testing service on real PostgreSQL and ClickHouse: lifecycle and refusals, the
//! cache across replicas, flags, exposures and results in ClickHouse, the exposure writer
//! under bursts, failures and shutdown, the whole service over gRPC in the kit runtime, and a
//! user's export and erasure.

mod exposures;
mod grpc;
mod lifecycle;
mod privacy;
mod results;

use std::sync::Arc;

use titan_abtesting::{
    App,
    app::Abtesting,
    config::Settings,
    domain::RawSpec,
    metrics::Metrics,
    store::{
        clickhouse::{ChResults, ExposureWriter, MIGRATIONS, WriterLimits, exposures_with},
        pg::PgStore,
    },
};
use titan_kit::{
    datastores::{clickhouse, postgres},
    testing::{TestClickHouse, TestPostgres},
};
use tokio_util::sync::CancellationToken;

/// Creates the analytics service's tables (abtesting reads `analytics_events`; the analytics
/// service owns it) with that service's own migrations, so the tests read the real schema.
pub async fn analytics_tables(client: &::clickhouse::Client) {
    clickhouse::migrate(client, "analytics", titan_analytics::store::MIGRATIONS)
        .await
        .expect("analytics tables");
}

pub use titan_kit::testing::admin;

/// The web backend: a service identity that may log exposures for any user.
pub fn service() -> titan_kit::auth::Caller {
    titan_kit::testing::caller("web-backend", &["service"])
}

pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn spec(key: &str, variants: &[(&str, f64)]) -> RawSpec {
    RawSpec {
        key: key.into(),
        variants: variants
            .iter()
            .map(|(k, w)| ((*k).to_owned(), *w, false))
            .collect(),
        ..RawSpec::default()
    }
}

pub fn attrs(v: serde_json::Value) -> titan_abtesting::domain::Attributes {
    v.as_object().expect("object").clone()
}

/// Settings that flush exposures quickly, so tests wait little.
pub fn settings() -> Settings {
    Settings {
        exposure_batch_size: 100,
        exposure_flush_millis: 20,
        bayesian: true,
        ..Settings::default()
    }
}

/// A migrated PostgreSQL database and ClickHouse database (with `analytics_events`).
#[derive(Debug)]
pub struct Stores {
    pub db: TestPostgres,
    pub ch: TestClickHouse,
}

impl Stores {
    pub async fn new() -> Self {
        let db = TestPostgres::new().await;
        postgres::migrate(&db.pool, "abtesting", sqlx::migrate!("./migrations"))
            .await
            .expect("migrate postgres");
        let ch = TestClickHouse::new().await;
        clickhouse::migrate(&ch.client, "abtesting", MIGRATIONS)
            .await
            .expect("migrate clickhouse");
        analytics_tables(&ch.client).await;
        Self { db, ch }
    }

    /// One replica of the service on these stores, with its exposure writer.
    pub fn replica(&self, settings: Settings) -> (App, ExposureWriter, Metrics) {
        self.replica_with(settings, WriterLimits::default())
    }

    /// One replica whose exposure writer has the given limits.
    pub fn replica_with(
        &self,
        settings: Settings,
        limits: WriterLimits,
    ) -> (App, ExposureWriter, Metrics) {
        let metrics = Metrics::new(&prometheus::Registry::new()).expect("metrics");
        let (sink, writer) = exposures_with(
            self.ch.client.clone(),
            &settings,
            "test".into(),
            metrics.clone(),
            limits,
        );
        let app = Abtesting::new(
            PgStore::new(self.db.pool.clone()),
            sink,
            ChResults::new(self.ch.client.clone()),
            settings,
            metrics.clone(),
            Arc::new(chrono::Utc::now),
        );
        (app, writer, metrics)
    }
}

/// A replica whose exposure writer runs until the world is dropped.
#[derive(Debug)]
pub struct World {
    pub app: Arc<App>,
    pub stores: Stores,
    pub metrics: Metrics,
    stop: CancellationToken,
}

impl World {
    pub async fn new(settings: Settings) -> Self {
        Self::with_limits(settings, WriterLimits::default()).await
    }

    /// A world whose exposure writer has the given limits.
    pub async fn with_limits(settings: Settings, limits: WriterLimits) -> Self {
        let stores = Stores::new().await;
        let (app, writer, metrics) = stores.replica_with(settings, limits);
        let stop = CancellationToken::new();
        tokio::spawn(writer.run(stop.clone()));
        Self {
            app: Arc::new(app),
            stores,
            metrics,
            stop,
        }
    }

    /// Rows in a ClickHouse query that returns one count.
    pub async fn count(&self, sql: &str) -> u64 {
        self.stores
            .ch
            .client
            .query(sql)
            .fetch_one::<u64>()
            .await
            .expect("count")
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
