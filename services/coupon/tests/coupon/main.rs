//! The coupon service on real PostgreSQL and Redis: every validation reason and discount type
//! with worked examples, redemption and reversal, the limits under concurrency, Redis losing or
//! miscounting, and the gRPC edge's status codes.

mod bench;
mod concurrency;
mod fault;
mod grpc;
mod privacy;
mod rules;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use titan_coupon::{
    app::Coupons,
    config::Settings,
    domain::{Cart, CartItem, CouponKind, RawSpec},
    metrics::Metrics,
    store::{pg::PgCoupons, redis::RedisCoupons},
};
use titan_kit::{
    auth::Caller,
    datastores::{postgres, redis::RedisHandle},
    ratelimit::RateLimit,
    testing::{TestClock, TestPostgres, TestRedis, caller},
};

pub type App = Coupons<PgCoupons, RedisCoupons>;

#[derive(Debug)]
pub struct World {
    pub app: Arc<App>,
    pub db: TestPostgres,
    pub redis: RedisHandle,
    pub clock: TestClock,
}

pub use titan_kit::testing::admin;

/// Checkout: the service identity that redeems and reverses for shoppers.
pub fn checkout() -> Caller {
    caller("checkout", &["service"])
}

pub fn shopper(n: u32) -> Caller {
    caller(&format!("shopper-{n}"), &[])
}

pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The start of every coupon's window in these tests.
pub fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_900_000_000, 0).expect("time")
}

pub fn item(product: &str, category: &str, price: i64, quantity: u32) -> CartItem {
    CartItem {
        product_id: product.into(),
        category_id: category.into(),
        unit_price: price,
        quantity,
    }
}

pub fn cart(items: Vec<CartItem>, shipping: i64) -> Cart {
    Cart::new(items, shipping, "USD").expect("cart")
}

/// A cart of one 100.00 item of product `a`, category `x`, with 5.00 shipping.
pub fn plain_cart() -> Cart {
    cart(vec![item("a", "x", 10_000, 1)], 500)
}

/// A spec valid for 30 days from [`epoch`].
pub fn spec(code: &str, kind: CouponKind, value: i64) -> RawSpec {
    RawSpec {
        code: code.into(),
        kind: Some(kind),
        value,
        currency: "USD".into(),
        valid_from: epoch(),
        valid_until: epoch() + Duration::days(30),
        ..RawSpec::default()
    }
}

/// So that tests validate as often as they like, unless they test the limit.
const UNLIMITED: RateLimit = RateLimit {
    burst: 1_000_000,
    interval: std::time::Duration::from_millis(1),
};

fn app(db: &TestPostgres, redis: &RedisHandle, clock: &TestClock, limit: RateLimit) -> Arc<App> {
    let settings = Settings::default();
    Arc::new(
        Coupons::new(
            PgCoupons::new(db.pool.clone()),
            RedisCoupons::new(redis.clone(), settings.cache_ttl_seconds),
            settings,
            "test".into(),
            clock.clock(),
            Metrics::new(&prometheus::Registry::new()).expect("metrics"),
        )
        .with_validation_limit(limit),
    )
}

impl World {
    pub async fn new() -> Self {
        Self::with_redis(TestRedis::new().await.handle).await
    }

    /// A world on `redis` (a prefix on the test cluster, say).
    pub async fn with_redis(redis: RedisHandle) -> Self {
        let db = TestPostgres::new().await;
        postgres::migrate(&db.pool, "coupon", sqlx::migrate!("./migrations"))
            .await
            .expect("migrate");
        let clock = TestClock::at(epoch() + Duration::days(1));
        let app = app(&db, &redis, &clock, UNLIMITED);
        Self {
            app,
            db,
            redis,
            clock,
        }
    }

    /// Another replica of the service on the same stores.
    pub fn replica(&self) -> Arc<App> {
        app(&self.db, &self.redis, &self.clock, UNLIMITED)
    }

    /// Another replica whose shoppers may validate within `limit`.
    pub fn limited(&self, limit: RateLimit) -> Arc<App> {
        app(&self.db, &self.redis, &self.clock, limit)
    }

    pub async fn create(&self, raw: RawSpec) {
        self.app
            .create(&admin(), &uuid(), raw)
            .await
            .expect("create coupon");
    }

    /// Uses recorded in PostgreSQL and counted in Redis.
    pub async fn uses(&self, code: &str) -> (i32, Option<i64>) {
        let pg: i32 = sqlx::query_scalar("SELECT uses FROM coupon_coupons WHERE code = $1")
            .bind(code)
            .fetch_one(&self.db.pool)
            .await
            .expect("uses");
        let mut conn = self.redis.conn.clone();
        let redis: Option<i64> = redis::cmd("GET")
            .arg(self.redis.key(&format!("{{coupon:{code}}}:uses")))
            .query_async(&mut conn)
            .await
            .expect("redis uses");
        (pg, redis)
    }

    pub async fn outbox(&self) -> Vec<(String, serde_json::Value)> {
        sqlx::query_as(
            "SELECT event_type, envelope->'payload' FROM titan_outbox WHERE service = 'coupon' ORDER BY seq",
        )
        .fetch_all(&self.db.pool)
        .await
        .expect("outbox")
    }
}
