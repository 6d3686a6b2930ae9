//! The tracking service on real PostgreSQL and Redis: records from shipping's events, driver
//! events walking them to DELIVERED in any arrival order, refusals naming their fields,
//! append-only events and concurrent appends ([`rules`]); carriers' signed webhooks over HTTP
//! ([`webhooks`]); subscriptions across replicas, the history first, slow subscribers
//! dropped ([`live`]); and the same path over gRPC through kit's runtime, two replicas on the
//! same datastores ([`grpc`]); a person's export and erasure ([`privacy`]).

mod grpc;
mod live;
mod privacy;
mod rules;
mod webhooks;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use prometheus::Registry;
use titan_kit::{
    ServiceError,
    auth::{Authenticator, Caller},
    config::{AuthConfig, RealtimeConfig},
    events::{Envelope, Handler, HandlerError},
    realtime::Realtime,
    testing::{TestClock, TestPostgres, TestRedis, caller},
};
use titan_tracking::{
    app::{Lookup, Page, Tracking, TrackingError},
    config::Settings,
    store::{consumer::EventHandler, live::Live, pg::PgTracking},
};

pub type App = Tracking<PgTracking>;

pub const OWNER: &str = "merchant-7";

pub fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_900_000_000, 0).expect("time")
}

pub fn at(seconds: i64) -> DateTime<Utc> {
    epoch() + chrono::Duration::seconds(seconds)
}

/// The shipment's owner: its buyer, who gets the recipient's view only.
pub fn owner() -> Caller {
    caller(OWNER, &[])
}

/// A service identity (support tools, the web backend): the full view.
pub fn support() -> Caller {
    caller("support", &["service"])
}

pub fn stranger() -> Caller {
    caller("someone-else", &[])
}

pub fn lookup(number: &str) -> Lookup<'_> {
    Lookup {
        tracking_number: number,
        ..Lookup::default()
    }
}

/// The refusal's reason, as clients read it in `google.rpc.ErrorInfo`.
pub fn reason<T: std::fmt::Debug>(r: Result<T, TrackingError>) -> &'static str {
    match r {
        Ok(v) => panic!("expected a refusal, got {v:?}"),
        Err(e) => e.reason().unwrap_or_else(|| panic!("no reason on {e}")),
    }
}

/// The request field an InvalidArgument names.
pub fn field<T: std::fmt::Debug>(r: Result<T, TrackingError>) -> String {
    match r {
        Err(TrackingError::Invalid(e)) => e.field,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

/// The statuses of a page's events with whether each moved the status.
pub fn kinds(p: &Page) -> Vec<(&'static str, bool)> {
    p.events
        .iter()
        .map(|(e, a)| (e.kind.as_str(), *a))
        .collect()
}

/// An app (a replica) with its own realtime hub on `redis`, and its side of the hub.
fn app(
    db: &TestPostgres,
    redis: &TestRedis,
    clock: &TestClock,
    settings: Settings,
) -> (Arc<App>, Live) {
    let auth = Authenticator::new(&AuthConfig {
        issuer: None,
        audience: None,
        hs256_secret: Some("tracking-tests-secret-tracking-tests".to_owned().into()),
        rs256_public_keys: vec![],
        leeway: std::time::Duration::ZERO,
        max_token_lifetime: std::time::Duration::from_secs(3600),
        jwks: None,
    })
    .expect("authenticator");
    let realtime = Realtime::new(
        RealtimeConfig::default(),
        auth,
        &Registry::new(),
        Some(redis.handle.clone()),
    )
    .expect("realtime");
    let live = Live::new(realtime);
    let app = Tracking::new(
        PgTracking::new(db.pool.clone(), clock.clock()),
        live.clone(),
        settings,
        clock.clock(),
    );
    (Arc::new(app), live)
}

#[derive(Debug)]
pub struct World {
    pub app: Arc<App>,
    /// The app's realtime side: a listener here shares the app's hub.
    pub live: Live,
    pub handler: EventHandler,
    pub db: TestPostgres,
    pub redis: TestRedis,
    pub clock: TestClock,
    pub settings: Settings,
}

impl World {
    pub async fn new() -> Self {
        Self::with(Settings::default()).await
    }

    pub async fn with(settings: Settings) -> Self {
        let db = TestPostgres::new().await;
        titan_kit::datastores::postgres::migrate(&db.pool, "tracking", titan_tracking::migrator())
            .await
            .expect("migrate");
        let redis = TestRedis::new().await;
        let clock = TestClock::at(epoch() + chrono::Duration::hours(1));
        let (app, live) = app(&db, &redis, &clock, settings.clone());
        Self {
            handler: EventHandler::new(app.clone()),
            app,
            live,
            db,
            redis,
            clock,
            settings,
        }
    }

    /// Another replica on the same datastores, with its own realtime hub.
    pub fn replica(&self) -> Arc<App> {
        app(&self.db, &self.redis, &self.clock, self.settings.clone()).0
    }

    /// Runs the bus handler on `event` as kit's consumer does: in a transaction, then the
    /// after-commit hook.
    pub async fn deliver(&self, event: &Envelope) -> Result<(), HandlerError> {
        let mut tx = self.db.pool.begin().await.expect("begin");
        self.handler.handle(&mut tx, event).await?;
        tx.commit().await.expect("commit");
        self.handler.committed(event).await;
        Ok(())
    }

    /// `shipping.shipment_created` for `shipment` with `number` of carrier flat-rate.
    pub async fn shipment(&self, shipment: &str, number: &str) {
        self.deliver(&shipment_created(shipment, number, "flat-rate"))
            .await
            .expect("shipment created");
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.db.pool)
            .await
            .expect("count")
    }
}

pub fn shipment_created(shipment: &str, number: &str, carrier: &str) -> Envelope {
    Envelope::new(
        "test",
        "shipping.shipment_created",
        1,
        &serde_json::json!({
            "shipment_id": shipment,
            "order_id": "order-1",
            "tracking_number": number,
            "carrier": carrier,
            "service_level": "standard",
            "owner_id": OWNER,
            "created_at": epoch(),
        }),
    )
    .expect("envelope")
}

/// A `driver.delivery_<what>` event for `shipment` at `seconds` after the epoch.
pub fn delivery(what: &str, shipment: &str, seconds: i64) -> Envelope {
    Envelope::new(
        "test",
        &format!("driver.delivery_{what}"),
        1,
        &serde_json::json!({
            "delivery_id": uuid::Uuid::new_v4(),
            "shipment_id": shipment,
            "driver_id": uuid::Uuid::new_v4(),
            "route_id": null,
            "status": "IN_TRANSIT",
            "at": at(seconds),
            "location": [1.30, 103.80],
        }),
    )
    .expect("envelope")
}
