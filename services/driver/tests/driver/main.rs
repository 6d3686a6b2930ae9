//! The driver service's use cases on real PostgreSQL and object storage: registration and
//! availability, GPS positions, route assignment (only to an AVAILABLE driver with room, all
//! or nothing), deliveries along their state machine with a proof of delivery at the door, the
//! route completing with its last stop, performance and ratings ([`rules`]); the same path
//! over gRPC through kit's runtime ([`grpc`]); a person's export and erasure ([`privacy`]).

mod grpc;
mod live;
mod plan;
mod privacy;
mod rules;

use chrono::{DateTime, Duration, Utc};
use prometheus::Registry;
use titan_driver::{
    app::{DriverError, Drivers, NewDelivery, NewDriver, Parts},
    config::Settings,
    domain::{Attachment, AttachmentKind, Delivery, Driver, Proof},
    store::{live::Live, pg::PgDrivers},
};
use titan_kit::{
    ServiceError,
    auth::{Authenticator, Caller},
    config::{AuthConfig, RealtimeConfig},
    datastores::{postgres, redis::RedisHandle},
    realtime::Realtime,
    testing::{TestClock, TestObjectStorage, TestPostgres, TestRedis, caller},
};

pub type App = Drivers<PgDrivers>;

/// The leading bytes of a JPEG: enough for the content check.
pub const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F'];

pub fn photo_proof(name: &str) -> Proof {
    let photo =
        Attachment::check(AttachmentKind::Photo, "image/jpeg", JPEG.to_vec()).expect("photo");
    Proof::new(name, Some(photo), None).expect("proof")
}

/// A driver on a route of two deliveries, as [`World::trip`] sets it up.
#[derive(Debug)]
pub struct Trip {
    pub driver: Driver,
    pub caller: Caller,
    pub a: Delivery,
    pub b: Delivery,
}

fn app(
    db: &TestPostgres,
    redis: &RedisHandle,
    clock: &TestClock,
    objects: &TestObjectStorage,
    settings: &Settings,
) -> (App, Live) {
    let auth = Authenticator::new(&AuthConfig {
        issuer: None,
        audience: None,
        hs256_secret: Some("driver-tests-secret-driver-tests-secret".to_owned().into()),
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
        Some(redis.clone()),
    )
    .expect("realtime");
    let live = Live::new(redis.clone(), realtime);
    let app = Drivers::new(
        PgDrivers::new(db.pool.clone(), "test".into()),
        Parts {
            objects: Some(objects.storage.clone()),
            live: live.clone(),
            settings: settings.clone(),
            clock: clock.clock(),
        },
    );
    (app, live)
}

#[derive(Debug)]
pub struct World {
    pub app: App,
    pub db: TestPostgres,
    pub redis: RedisHandle,
    /// The app's own Redis side (the same hub), for tests that listen beside it.
    pub live: Live,
    pub clock: TestClock,
    pub objects: TestObjectStorage,
    pub settings: Settings,
}

pub fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_900_000_000, 0).expect("time")
}

pub fn rid() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn dispatcher() -> Caller {
    caller("disp", &[titan_driver::app::DISPATCHER_ROLE])
}

pub fn user(name: &str) -> Caller {
    caller(name, &[])
}

/// The refusal's reason, as clients read it in `google.rpc.ErrorInfo`.
pub fn reason<T: std::fmt::Debug>(r: Result<T, DriverError>) -> &'static str {
    match r {
        Ok(v) => panic!("expected a refusal, got {v:?}"),
        Err(e) => e.reason().unwrap_or_else(|| panic!("no reason on {e}")),
    }
}

/// The test settings: a short solver budget so optimisation tests stay quick.
pub fn settings() -> Settings {
    Settings {
        solver_time_budget_millis: 200,
        watch_buffer: 4,
        ..Settings::default()
    }
}

impl World {
    pub async fn new() -> Self {
        Self::with(settings()).await
    }

    pub async fn with(settings: Settings) -> Self {
        let db = TestPostgres::new().await;
        postgres::migrate(&db.pool, "driver", titan_driver::migrator())
            .await
            .expect("migrate");
        let redis = TestRedis::new().await.handle;
        let clock = TestClock::at(epoch());
        let objects = TestObjectStorage::new();
        let (app, live) = app(&db, &redis, &clock, &objects, &settings);
        Self {
            app,
            db,
            redis,
            live,
            clock,
            objects,
            settings,
        }
    }

    /// Another replica on the same stores, with a hub of its own.
    pub fn replica(&self) -> App {
        app(
            &self.db,
            &self.redis,
            &self.clock,
            &self.objects,
            &self.settings,
        )
        .0
    }

    /// Registers `name` as a driver with a van of `capacity` and makes them AVAILABLE.
    pub async fn available(&self, name: &str, capacity: i64) -> Driver {
        let me = user(name);
        self.app
            .register(
                &me,
                &rid(),
                &NewDriver {
                    name,
                    phone: "+6561234567",
                    email: "d@example.com",
                    vehicle_type: "VAN",
                    capacity,
                },
            )
            .await
            .expect("register");
        self.app
            .set_status(&me, &rid(), "AVAILABLE")
            .await
            .expect("available")
    }

    /// A PENDING delivery of `size` for customer `cust`, due in the next two hours.
    pub async fn delivery(&self, cust: &str, size: i64) -> Delivery {
        let now = self.clock.now();
        self.app
            .create_delivery(
                &dispatcher(),
                &rid(),
                &NewDelivery {
                    shipment_id: "sh-1",
                    customer_id: cust,
                    address: "1 Main St",
                    lat: 1.3,
                    lng: 103.8,
                    window_start: now,
                    window_end: now + Duration::hours(2),
                    size,
                    service_seconds: 120,
                },
            )
            .await
            .expect("delivery")
    }

    /// A driver AVAILABLE with a van of 10 and a route over two fresh deliveries of
    /// customer `cus` (sizes 2 and 3, ETAs now and in 20 minutes): every route test's start.
    pub async fn trip(&self, name: &str) -> Trip {
        let driver = self.available(name, 10).await;
        let a = self.delivery("cus", 2).await;
        let b = self.delivery("cus", 3).await;
        let now = self.clock.now();
        let stops = vec![
            (a.id.to_string(), now),
            (b.id.to_string(), now + Duration::minutes(20)),
        ];
        self.app
            .assign_route(&dispatcher(), &rid(), &driver.id.to_string(), &stops)
            .await
            .expect("assign");
        Trip {
            caller: user(name),
            driver,
            a,
            b,
        }
    }

    /// The driver departs for `delivery`, arrives and completes it with a photo.
    pub async fn deliver(&self, who: &Caller, delivery: &str) -> Delivery {
        for step in ["DEPART", "ARRIVE"] {
            self.app
                .advance(who, &rid(), delivery, step)
                .await
                .expect(step);
        }
        self.app
            .complete(who, &rid(), delivery, photo_proof("Cy"))
            .await
            .expect("complete")
    }

    /// The event types in the outbox, in the order they were written.
    pub async fn events(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT event_type FROM titan_outbox ORDER BY seq")
            .fetch_all(&self.db.pool)
            .await
            .expect("outbox")
    }
}
