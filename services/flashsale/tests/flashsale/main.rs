//! The flash-sale service on real PostgreSQL and Redis: its rules, its refusals, and its
//! invariants under concurrency and under a Redis restart.

mod cluster;
mod concurrency;
mod fault;
mod heal;
mod privacy;
mod rules;
mod watch;

use std::sync::Arc;

use chrono::{Duration, Utc};
use titan_flashsale::{
    app::FlashSales,
    config::Settings,
    domain::{SaleId, sale::RawSaleSpec},
    metrics::Metrics,
    store::{pg::PgSales, redis::RedisStock},
};
use titan_kit::{
    auth::Caller,
    datastores::{postgres, redis::RedisHandle},
    testing::{TestClock, TestPostgres, TestRedis, caller},
};

pub type App = FlashSales<PgSales, RedisStock>;

#[derive(Debug)]
pub struct World {
    pub app: Arc<App>,
    pub db: TestPostgres,
    pub redis: RedisHandle,
    pub clock: TestClock,
}

pub use titan_kit::testing::admin;

pub fn buyer(n: u32) -> Caller {
    caller(&format!("buyer-{n}"), &[])
}

/// The payment system: the service identity that confirms purchases.
pub fn checkout() -> Caller {
    caller("checkout", &["service"])
}

/// Settings that keep tests free of rate limiting unless they test it.
pub fn settings() -> Settings {
    Settings {
        rate_limit_burst: 1_000_000,
        rate_limit_interval_ms: 1,
        ..Settings::default()
    }
}

impl World {
    pub async fn new(settings: Settings) -> Self {
        let redis = TestRedis::new().await.handle;
        Self::with_redis(settings, redis).await
    }

    pub async fn with_redis(settings: Settings, redis: RedisHandle) -> Self {
        let db = TestPostgres::new().await;
        postgres::migrate(&db.pool, "flashsale", sqlx::migrate!("./migrations"))
            .await
            .expect("migrate");
        let clock = TestClock::at(Utc::now());
        let metrics = Metrics::new(&prometheus::Registry::new()).expect("metrics");
        let app = FlashSales::new(
            PgSales::new(db.pool.clone()),
            RedisStock::new(redis.clone()),
            settings,
            "test".into(),
            clock.clock(),
            metrics,
        );
        Self {
            app: Arc::new(app),
            db,
            redis,
            clock,
        }
    }

    pub fn spec(&self, total: u32, max_per_user: u32) -> RawSaleSpec {
        let now = self.clock.now();
        RawSaleSpec {
            product_id: "sku-42".into(),
            currency: "USD".into(),
            original_minor: 10_000,
            sale_currency: "USD".into(),
            sale_minor: 2_500,
            total_quantity: total,
            max_per_user,
            starts_at: now - Duration::seconds(1),
            ends_at: now + Duration::hours(1),
            pow_difficulty: 0,
        }
    }

    /// A started, warmed sale.
    pub async fn live_sale(&self, total: u32, max_per_user: u32) -> SaleId {
        let view = self
            .app
            .create_sale(&admin(), &uuid(), self.spec(total, max_per_user))
            .await
            .expect("create");
        self.app.warm_up(view.sale.id).await.expect("warm up");
        view.sale.id
    }

    /// available + reserved + sold must always equal the total, and Redis agree with PostgreSQL.
    pub async fn assert_conserved(&self, sale: SaleId, total: u32) {
        let stats = self.app.stats(sale).await.expect("stats");
        let l = stats.level;
        assert_eq!(
            l.available + l.reserved + l.sold,
            total,
            "units conserved: {l:?}"
        );
        let drifts = self.app.reconcile().await.expect("reconcile");
        assert!(drifts.is_empty(), "redis and postgres agree: {drifts:?}");
    }
}

pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}
