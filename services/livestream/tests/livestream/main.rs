//! The livestream service on real PostgreSQL and Redis: the stream lifecycle with hashed,
//! rotated and revoked keys driven by nginx-rtmp's callbacks (over the HTTP routes too),
//! viewer figures from heartbeats, comments with their caps, rate and pins, featured
//! products, pushes reaching another replica, in-stream purchases with their event, a
//! stream's analytics from ClickHouse, `titan recorder` uploading finished recordings once,
//! and a person's export and erasure.

mod analytics;
mod callbacks;
mod comments;
mod lifecycle;
mod privacy;
mod purchases;
mod recorder;
mod viewers;

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use prometheus::Registry;
use titan_kit::{
    auth::{Authenticator, Caller},
    config::{AuthConfig, RealtimeConfig},
    datastores::{clickhouse, postgres, redis::RedisHandle},
    realtime::Realtime,
    testing::{TestClickHouse, TestClock, TestPostgres, TestRedis, caller},
};
use titan_livestream::{
    app::{Admission, Livestream, Parts},
    config::Settings,
    domain::{Stream, StreamKey},
    metrics::Metrics,
    store::{clickhouse::ChAnalytics, pg::PgStreams, redis::Live},
};

pub type App = Livestream<PgStreams>;

/// One replica: its app and its realtime hub.
#[derive(Debug, Clone)]
pub struct Replica {
    pub app: Arc<App>,
    pub realtime: Realtime,
}

#[derive(Debug)]
pub struct World {
    pub app: Arc<App>,
    pub realtime: Realtime,
    pub db: TestPostgres,
    pub redis: RedisHandle,
    pub ch: TestClickHouse,
    pub clock: TestClock,
    pub settings: Settings,
}

pub fn seller(name: &str) -> Caller {
    caller(name, &["seller"])
}

pub fn viewer(name: &str) -> Caller {
    caller(name, &[])
}

pub fn rid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn auth() -> Authenticator {
    Authenticator::new(&AuthConfig {
        issuer: None,
        audience: None,
        hs256_secret: Some("livestream-tests-secret-livestream".to_owned().into()),
        rs256_public_keys: vec![],
        leeway: Duration::ZERO,
        max_token_lifetime: Duration::from_secs(3600),
        jwks: None,
    })
    .expect("authenticator")
}

pub fn settings() -> Settings {
    Settings {
        viewer_ttl_seconds: 30,
        max_pinned_comments: 2,
        hls_base_url: Some("http://media.test/hls".into()),
        ..Settings::default()
    }
}

fn replica(
    (db, redis, ch): (&TestPostgres, &RedisHandle, &TestClickHouse),
    clock: &TestClock,
    settings: &Settings,
) -> Replica {
    let registry = Registry::new();
    let realtime = Realtime::new(
        RealtimeConfig::default(),
        auth(),
        &registry,
        Some(redis.clone()),
    )
    .expect("realtime");
    let app = Arc::new(Livestream::new(
        PgStreams::new(db.pool.clone(), "test".into()),
        Parts {
            live: Live::new(redis.clone()),
            analytics: Arc::new(ChAnalytics::new(ch.client.clone())),
            realtime: realtime.clone(),
            settings: settings.clone(),
            clock: clock.clock(),
            metrics: Metrics::new(&registry).expect("metrics"),
        },
    ));
    Replica { app, realtime }
}

impl World {
    pub async fn new() -> Self {
        let redis = TestRedis::new().await.handle;
        let db = TestPostgres::new().await;
        postgres::migrate(&db.pool, "livestream", sqlx::migrate!("./migrations"))
            .await
            .expect("migrate");
        let ch = TestClickHouse::new().await;
        clickhouse::migrate(&ch.client, "analytics", titan_analytics::store::MIGRATIONS)
            .await
            .expect("analytics tables");
        let clock = TestClock::at(Utc::now());
        let settings = settings();
        let Replica { app, realtime } = replica((&db, &redis, &ch), &clock, &settings);
        Self {
            app,
            realtime,
            db,
            redis,
            ch,
            clock,
            settings,
        }
    }

    /// Another replica on the same stores, with a hub of its own.
    pub fn replica(&self) -> Replica {
        replica(
            (&self.db, &self.redis, &self.ch),
            &self.clock,
            &self.settings,
        )
    }

    /// A SCHEDULED stream of `who` and its key.
    pub async fn scheduled(&self, who: &str) -> (Stream, StreamKey) {
        let (s, key) = self
            .app
            .schedule(&seller(who), &rid(), "Spring drop", Some(self.clock.now()))
            .await
            .expect("schedule");
        (s, key.expect("a fresh schedule shows its key"))
    }

    /// A LIVE stream of `who`: scheduled, then admitted by the publish callback.
    pub async fn live(&self, who: &str) -> Stream {
        let (s, key) = self.scheduled(who).await;
        assert_eq!(
            self.app
                .on_publish("live", key.reveal())
                .await
                .expect("publish"),
            Admission::Admitted(s.id)
        );
        self.app.get(&s.id.to_string()).await.expect("get")
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&self.db.pool)
            .await
            .expect("count")
    }
}
