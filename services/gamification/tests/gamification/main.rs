//! The gamification service on real PostgreSQL and Redis: points and their idempotency, levels
//! and badges at their edges, daily logins and streaks, rewards under concurrency, missions,
//! earning from `flashsale.purchased` events, leaderboards and their rebuild (also on a Redis
//! Cluster), the gRPC edge, a shopper's export and erasure.

mod bench;
mod cluster;
mod events;
mod grpc;
mod leaderboard;
mod points;
mod privacy;
mod rewards;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use titan_gamification::{
    app::Gamification,
    config::Settings,
    domain::Reason,
    metrics::Metrics,
    store::{feed::FedBoards, pg::PgLedger, redis::RedisBoards},
};
use titan_kit::{
    auth::Caller,
    datastores::{postgres, redis::RedisHandle},
    money::Money,
    testing::{TestClock, TestPostgres, TestRedis, caller},
};

pub type App = Gamification<PgLedger, FedBoards>;

#[derive(Debug)]
pub struct World {
    pub app: Arc<App>,
    pub db: TestPostgres,
    pub redis: RedisHandle,
    pub clock: TestClock,
}

pub use titan_kit::testing::admin;

pub fn shopper(n: u32) -> Caller {
    caller(&format!("shopper-{n}"), &[])
}

pub fn usd(minor: i64) -> Money {
    Money::parse(minor, "USD").expect("money")
}

pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Wednesday 25 November 2026, 10:00 UTC.
pub fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
        .expect("time")
        .with_timezone(&Utc)
}

impl World {
    pub async fn new() -> Self {
        Self::with(Settings::default()).await
    }

    pub async fn with(settings: Settings) -> Self {
        Self::with_redis(settings, TestRedis::new().await.handle).await
    }

    pub async fn with_redis(settings: Settings, redis: RedisHandle) -> Self {
        let db = TestPostgres::new().await;
        postgres::migrate(&db.pool, "gamification", sqlx::migrate!("./migrations"))
            .await
            .expect("migrate");
        let clock = TestClock::at(start());
        let app = Gamification::new(
            PgLedger::new(db.pool.clone()),
            FedBoards::new(db.pool.clone(), RedisBoards::new(redis.clone())),
            settings,
            clock.clock(),
            Metrics::new(&prometheus::Registry::new()).expect("metrics"),
        );
        Self {
            app: Arc::new(app),
            db,
            redis,
            clock,
        }
    }

    /// Another replica of the service on the same stores.
    pub fn replica(&self) -> Arc<App> {
        Arc::new(Gamification::new(
            PgLedger::new(self.db.pool.clone()),
            FedBoards::new(self.db.pool.clone(), RedisBoards::new(self.redis.clone())),
            Settings::default(),
            self.clock.clock(),
            Metrics::new(&prometheus::Registry::new()).expect("metrics"),
        ))
    }

    /// Awards a purchase of `minor` US cents to shopper `n`.
    pub async fn buy(&self, n: u32, minor: i64) -> titan_gamification::app::Awarded {
        self.app
            .award(
                &shopper(n).user_id,
                Reason::Purchase,
                &uuid(),
                Some(usd(minor)),
            )
            .await
            .expect("award")
    }

    pub async fn balance(&self, n: u32) -> i64 {
        self.app
            .account(&shopper(n), "")
            .await
            .expect("account")
            .balance
    }
}
