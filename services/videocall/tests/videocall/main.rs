//! The videocall service on real PostgreSQL and Redis: the state machine and who may move it
//! (every illegal transition refused with the current status), input refused before any I/O,
//! the one-call-per-user rule, the support queue, quality and consent, history and analytics
//! ([`rules`]); the durable ringing timeout and replicas racing on one call ([`timeout`]);
//! signaling between sockets on two served replicas ([`signaling`]); recordings uploaded to
//! the test S3 server, refused, capped and retried ([`recordings`]); a person's export and
//! erasure, their calls' recordings deleted from the bucket ([`privacy`]).

mod privacy;
mod recordings;
mod rules;
mod signaling;
mod timeout;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use prometheus::Registry;
use secrecy::SecretString;
use titan_kit::{
    ServiceError,
    auth::Caller,
    datastores::{postgres, redis::RedisHandle},
    objects::{ObjectKey, ObjectStorage},
    realtime::Realtime,
    testing::{TestClock, TestObjectStorage, TestPostgres, TestRedis, caller},
};
use titan_videocall::{
    app::{Parts, Videocall, VideocallError},
    config::Settings,
    domain::{Call, CallKind, Media, Status},
    metrics::Metrics,
    store::pg::PgCalls,
};

pub type App = Videocall<PgCalls>;

/// The secret the tests' TURN credentials are minted with.
pub const TURN_SECRET: &str = "videocall-tests-turn-secret";

#[derive(Debug)]
pub struct World {
    pub app: Arc<App>,
    pub db: TestPostgres,
    pub redis: RedisHandle,
    pub clock: TestClock,
    pub settings: Settings,
    pub objects: ObjectStorage,
}

/// The keys stored under a call's recordings prefix.
pub async fn objects_of(objects: &ObjectStorage, call: &Call) -> Vec<String> {
    let prefix = ObjectKey::new(["videocall", "recordings", &call.id.to_string()]).expect("key");
    objects
        .list(&prefix, 100, None)
        .await
        .expect("list")
        .objects
        .into_iter()
        .map(|o| o.key)
        .collect()
}

pub fn user(name: &str) -> Caller {
    caller(name, &[])
}

pub fn agent(name: &str) -> Caller {
    caller(name, &["agent"])
}

pub fn rid() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_900_000_000, 0).expect("time")
}

pub fn settings() -> Settings {
    let mut s = Settings {
        ring_timeout_seconds: 30,
        max_call_seconds: 600,
        ..Settings::default()
    };
    s.turn.uris = vec![
        "stun:turn.test:3478".into(),
        "turn:turn.test:3478?transport=udp".into(),
    ];
    s
}

/// The refusal's reason, as clients read it in `google.rpc.ErrorInfo`.
pub fn reason(e: &VideocallError) -> &'static str {
    e.reason().expect("a refusal with a reason")
}

fn app(
    db: &TestPostgres,
    redis: &RedisHandle,
    clock: &TestClock,
    settings: &Settings,
    objects: &ObjectStorage,
) -> Arc<App> {
    let registry = Registry::new();
    let realtime = Realtime::new(
        titan_kit::config::RealtimeConfig::default(),
        titan_kit::auth::Authenticator::new(&titan_kit::config::AuthConfig {
            issuer: None,
            audience: None,
            hs256_secret: Some("videocall-tests-secret-videocall-tests".to_owned().into()),
            rs256_public_keys: vec![],
            leeway: std::time::Duration::ZERO,
            max_token_lifetime: std::time::Duration::from_secs(3600),
            jwks: None,
        })
        .expect("authenticator"),
        &registry,
        Some(redis.clone()),
    )
    .expect("realtime");
    Arc::new(Videocall::new(
        PgCalls::new(db.pool.clone(), "test".into()),
        Parts {
            hub: realtime.hub(),
            settings: settings.clone(),
            turn_secret: Some(SecretString::from(TURN_SECRET)),
            objects: objects.clone(),
            clock: clock.clock(),
            metrics: Metrics::new(&registry).expect("metrics"),
        },
    ))
}

impl World {
    pub async fn new() -> Self {
        Self::with(settings()).await
    }

    pub async fn with(settings: Settings) -> Self {
        Self::with_objects(settings, TestObjectStorage::new().storage).await
    }

    /// A world whose recordings go to `objects` (a client with another multipart threshold).
    pub async fn with_objects(settings: Settings, objects: ObjectStorage) -> Self {
        let redis = TestRedis::new().await.handle;
        let db = TestPostgres::new().await;
        postgres::migrate(&db.pool, "videocall", sqlx::migrate!("./migrations"))
            .await
            .expect("migrate");
        let clock = TestClock::at(epoch());
        let app = app(&db, &redis, &clock, &settings, &objects);
        Self {
            app,
            db,
            redis,
            clock,
            settings,
            objects,
        }
    }

    /// Another replica on the same stores and clock, with a hub of its own.
    pub fn replica(&self) -> Arc<App> {
        app(
            &self.db,
            &self.redis,
            &self.clock,
            &self.settings,
            &self.objects,
        )
    }

    /// Another replica whose clock reads `clock` (replicas' clocks differ a little).
    pub fn replica_with(&self, clock: &TestClock) -> Arc<App> {
        app(&self.db, &self.redis, clock, &self.settings, &self.objects)
    }

    /// A VIDEO SALES call from `from` to `to`, ringing.
    pub async fn ring(&self, from: &str, to: &str) -> Call {
        let (call, position) = self
            .app
            .initiate(&user(from), &rid(), to, CallKind::Sales, Media::Video)
            .await
            .expect("initiate");
        assert_eq!((call.status, position), (Status::Ringing, 0));
        call
    }

    /// A call from `from` to `to`, answered.
    pub async fn active(&self, from: &str, to: &str) -> Call {
        let call = self.ring(from, to).await;
        self.app
            .answer(&user(to), &rid(), &call.id.to_string())
            .await
            .expect("answer")
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.db.pool)
            .await
            .expect("count")
    }

    /// The status stored for `call`.
    pub async fn status(&self, call: &Call) -> Status {
        let s: String = sqlx::query_scalar("SELECT status FROM videocall_calls WHERE id = $1")
            .bind(call.id)
            .fetch_one(&self.db.pool)
            .await
            .expect("status");
        Status::from_name(&s).expect("a status")
    }
}
