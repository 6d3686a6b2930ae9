//! The driver service's use cases on real PostgreSQL and object storage: registration and
//! availability, GPS positions, route assignment (only to an AVAILABLE driver with room, all
//! or nothing), deliveries along their state machine with a proof of delivery at the door, the
//! route completing with its last stop, performance and ratings ([`rules`]); the same path
//! over gRPC through kit's runtime ([`grpc`]).

mod grpc;
mod rules;

use chrono::{DateTime, Duration, Utc};
use titan_driver::{
    app::{DriverError, Drivers, NewDelivery, NewDriver},
    store::pg::PgDrivers,
};
use titan_kit::{
    ServiceError,
    auth::Caller,
    datastores::postgres,
    testing::{TestClock, TestObjectStorage, TestPostgres, caller},
};

pub type App = Drivers<PgDrivers>;

#[derive(Debug)]
pub struct World {
    pub app: App,
    pub db: TestPostgres,
    pub clock: TestClock,
    pub objects: TestObjectStorage,
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

impl World {
    pub async fn new() -> Self {
        let db = TestPostgres::new().await;
        postgres::migrate(&db.pool, "driver", titan_driver::migrator())
            .await
            .expect("migrate");
        let clock = TestClock::at(epoch());
        let objects = TestObjectStorage::new();
        let app = Drivers::new(
            PgDrivers::new(db.pool.clone(), "test".into()),
            Some(objects.storage.clone()),
            clock.clock(),
        );
        Self {
            app,
            db,
            clock,
            objects,
        }
    }

    /// Registers `name` as a driver with a van of `capacity` and makes them AVAILABLE.
    pub async fn available(&self, name: &str, capacity: i64) -> titan_driver::domain::Driver {
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
    pub async fn delivery(&self, cust: &str, size: i64) -> titan_driver::domain::Delivery {
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

    /// The event types in the outbox, in the order they were written.
    pub async fn events(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT event_type FROM titan_outbox ORDER BY seq")
            .fetch_all(&self.db.pool)
            .await
            .expect("outbox")
    }
}
