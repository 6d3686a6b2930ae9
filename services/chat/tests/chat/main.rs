//! The chat service on real PostgreSQL and Redis: conversations and their participants,
//! messages and their validation (nothing stored when refused), idempotent sends, edits and
//! deletions, history pages and their query plans, receipts and unread counts, typing and
//! presence, feeds across two replicas that resume with no gap and no duplicate, and a
//! person's export and erasure.

mod bench;
mod feed;
mod plan;
mod privacy;
mod rules;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use prometheus::Registry;
use titan_chat::{
    app::{Chat, Parts},
    config::Settings,
    domain::{Conversation, Message, MessageKind, Metadata},
    metrics::Metrics,
    store::{pg::PgChat, redis::Live},
};
use titan_kit::{
    auth::{Authenticator, Caller},
    config::{AuthConfig, RealtimeConfig},
    datastores::{postgres, redis::RedisHandle},
    realtime::Realtime,
    testing::{TestClock, TestPostgres, TestRedis, caller},
};

pub type App = Chat<PgChat>;

#[derive(Debug)]
pub struct World {
    pub app: Arc<App>,
    pub db: TestPostgres,
    pub redis: RedisHandle,
    pub clock: TestClock,
    pub settings: Settings,
}

pub fn user(name: &str) -> Caller {
    caller(name, &[])
}

pub fn rid() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_900_000_000, 0).expect("time")
}

fn auth() -> Authenticator {
    Authenticator::new(&AuthConfig {
        issuer: None,
        audience: None,
        hs256_secret: Some("chat-tests-secret-chat-tests-secret".to_owned().into()),
        rs256_public_keys: vec![],
        leeway: Duration::ZERO,
        max_token_lifetime: Duration::from_secs(3600),
        jwks: None,
    })
    .expect("authenticator")
}

/// Sends fast enough for every test but the rate limit's own.
pub fn settings() -> Settings {
    Settings {
        send_burst: 10_000,
        send_interval_ms: 1,
        max_group_members: 3,
        edit_window_seconds: 60,
        max_message_bytes: 64,
        ..Settings::default()
    }
}

fn app(db: &TestPostgres, redis: &RedisHandle, clock: &TestClock, settings: &Settings) -> Arc<App> {
    let registry = Registry::new();
    let realtime = Realtime::new(
        RealtimeConfig::default(),
        auth(),
        &registry,
        Some(redis.clone()),
    )
    .expect("realtime");
    Arc::new(
        Chat::new(
            PgChat::new(db.pool.clone(), "test".into()),
            Parts {
                live: Live::new(redis.clone()),
                realtime,
                settings: settings.clone(),
                bucket: Some("titan".into()),
                instance: "test".into(),
                clock: clock.clock(),
                metrics: Metrics::new(&registry).expect("metrics"),
            },
        )
        .expect("app"),
    )
}

impl World {
    pub async fn new() -> Self {
        Self::with(settings()).await
    }

    pub async fn with(settings: Settings) -> Self {
        let redis = TestRedis::new().await.handle;
        let db = TestPostgres::new().await;
        postgres::migrate(&db.pool, "chat", sqlx::migrate!("./migrations"))
            .await
            .expect("migrate");
        let clock = TestClock::at(Utc::now());
        let app = app(&db, &redis, &clock, &settings);
        Self {
            app,
            db,
            redis,
            clock,
            settings,
        }
    }

    /// Another replica on the same stores, with a hub of its own.
    pub fn replica(&self) -> Arc<App> {
        app(&self.db, &self.redis, &self.clock, &self.settings)
    }

    pub async fn direct(&self, a: &str, b: &str) -> Conversation {
        self.app.create_direct(&user(a), b).await.expect("direct").0
    }

    pub async fn text(&self, from: &str, c: &Conversation, text: &str) -> Message {
        self.app
            .send(
                &user(from),
                &rid(),
                &c.id.to_string(),
                MessageKind::Text,
                text,
                Metadata::default(),
            )
            .await
            .expect("send")
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&self.db.pool)
            .await
            .expect("count")
    }
}
