//! The warehouse service's use cases on real PostgreSQL: warehouses and bins, the stock ledger
//! (receipts, adjustments, transfers; bad input changes nothing) ([`ledger`]), reservations
//! with allocation worked examples, pick and ship, release and expiry, pick lists and putaway,
//! and 200 concurrent operations that leave the ledger balanced ([`orders`]); the same path
//! over gRPC through kit's runtime ([`grpc`]); a person's export and erasure ([`privacy`]).

mod grpc;
mod ledger;
mod orders;
mod privacy;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use titan_kit::{
    ServiceError,
    auth::Caller,
    datastores::postgres,
    testing::{TestClock, TestPostgres, caller},
};
use titan_warehouse::{
    app::{
        ADMIN_ROLE, Moved, PlaceRef, SERVICE_ROLE, STAFF_ROLE, Settings, WarehouseError,
        WarehouseForm, Warehouses,
    },
    domain::Preference,
    store::pg::PgWarehouses,
};

pub type App = Warehouses<PgWarehouses>;

#[derive(Debug)]
pub struct World {
    pub app: Arc<App>,
    pub db: TestPostgres,
    pub clock: TestClock,
}

pub fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_900_000_000, 0).expect("time")
}

pub fn rid() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn admin() -> Caller {
    caller("root", &[ADMIN_ROLE])
}

pub fn staff() -> Caller {
    caller("picker", &[STAFF_ROLE])
}

pub fn checkout() -> Caller {
    caller("checkout", &[SERVICE_ROLE])
}

/// The refusal's reason, as clients read it in `google.rpc.ErrorInfo`.
pub fn reason<T: std::fmt::Debug>(r: Result<T, WarehouseError>) -> &'static str {
    match r {
        Ok(v) => panic!("expected a refusal, got {v:?}"),
        Err(e) => e.reason().unwrap_or_else(|| panic!("no reason on {e}")),
    }
}

/// The request field an InvalidArgument names.
pub fn field<T: std::fmt::Debug>(r: Result<T, WarehouseError>) -> String {
    match r {
        Err(WarehouseError::Invalid(e)) => e.field,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

pub fn at<'a>(warehouse: &'a str, bin: &'a str, product_id: &'a str) -> PlaceRef<'a> {
    PlaceRef {
        warehouse,
        bin,
        product_id,
    }
}

/// Everything a refused call must leave as it was: stock rows, movements, reservations and
/// the outbox.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    stock: Vec<(String, String, String, i64, i64)>,
    movements: i64,
    reservations: Vec<(uuid::Uuid, String)>,
    outbox: i64,
    bins: i64,
    warehouses: Vec<(String, String)>,
}

impl World {
    pub async fn new() -> Self {
        Self::with(Preference::NearestFirst).await
    }

    pub async fn with(preference: Preference) -> Self {
        let db = TestPostgres::new().await;
        postgres::migrate(&db.pool, "warehouse", titan_warehouse::migrator())
            .await
            .expect("migrate");
        let clock = TestClock::at(epoch());
        let app = Arc::new(Warehouses::new(
            PgWarehouses::new(db.pool.clone(), "test".into()),
            Settings {
                preference,
                picking_list_max_lines: 4,
            },
            clock.clock(),
        ));
        Self { app, db, clock }
    }

    /// An ACTIVE warehouse `code` at (lat, lng) with `priority`, holding 10,000 units, and a
    /// bin of 1,000 in zone A for each of `bins`.
    pub async fn warehouse(&self, code: &str, lat: f64, lng: f64, priority: i32, bins: &[&str]) {
        self.app
            .create_warehouse(
                &admin(),
                &rid(),
                &WarehouseForm {
                    code,
                    name: code,
                    address: "1 Dock Rd",
                    lat,
                    lng,
                    capacity: 10_000,
                    priority,
                },
            )
            .await
            .expect("warehouse");
        for bin in bins {
            self.app
                .create_bin(&admin(), &rid(), code, "A", bin, 1000)
                .await
                .expect("bin");
        }
    }

    /// Receives `n` units of `product` into a bin.
    pub async fn receive(&self, warehouse: &str, bin: &str, product: &str, n: i64) -> Moved {
        self.app
            .receive(
                &staff(),
                &rid(),
                at(warehouse, bin, product),
                "INBOUND",
                n,
                "po-1",
            )
            .await
            .expect("receive")
    }

    /// (warehouse, bin, product) → (available, reserved), for every stock row.
    pub async fn levels(&self) -> Vec<(String, String, String, i64, i64)> {
        sqlx::query_as(
            "SELECT w.code, b.code, s.product_id, s.available, s.reserved \
             FROM warehouse_stock s JOIN warehouse_warehouses w ON w.id = s.warehouse_id \
             JOIN warehouse_bins b ON b.id = s.bin_id ORDER BY 1, 2, 3",
        )
        .fetch_all(&self.db.pool)
        .await
        .expect("levels")
    }

    pub async fn snapshot(&self) -> Snapshot {
        let pool = &self.db.pool;
        let count = |sql: &'static str| async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(pool)
                .await
                .expect("count")
        };
        Snapshot {
            stock: self.levels().await,
            movements: count("SELECT count(*) FROM warehouse_movements").await,
            reservations: sqlx::query_as(
                "SELECT id, status FROM warehouse_reservations ORDER BY id",
            )
            .fetch_all(pool)
            .await
            .expect("reservations"),
            outbox: count("SELECT count(*) FROM titan_outbox").await,
            bins: count("SELECT count(*) FROM warehouse_bins").await,
            warehouses: sqlx::query_as(
                "SELECT code, status FROM warehouse_warehouses ORDER BY code",
            )
            .fetch_all(pool)
            .await
            .expect("warehouses"),
        }
    }

    /// Asserts the ledger: every stock row equals the sum of its movements, nothing is
    /// negative, and the reserved units are exactly the open reservations' lines.
    pub async fn assert_balanced(&self) {
        let pool = &self.db.pool;
        let unbalanced: Vec<(String, String, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT s.product_id, s.bin_id::TEXT, s.available, s.reserved, \
                    COALESCE(m.a, 0)::BIGINT, COALESCE(m.r, 0)::BIGINT \
             FROM warehouse_stock s LEFT JOIN ( \
                 SELECT warehouse_id, product_id, bin_id, SUM(available_delta) a, \
                        SUM(reserved_delta) r \
                 FROM warehouse_movements GROUP BY 1, 2, 3) m \
             USING (warehouse_id, product_id, bin_id) \
             WHERE s.available <> COALESCE(m.a, 0) OR s.reserved <> COALESCE(m.r, 0)",
        )
        .fetch_all(pool)
        .await
        .expect("ledger");
        assert_eq!(
            unbalanced,
            [],
            "stock rows that differ from their movements"
        );
        let negative: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM warehouse_stock WHERE available < 0 OR reserved < 0",
        )
        .fetch_one(pool)
        .await
        .expect("negative");
        assert_eq!(negative, 0);
        let off: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT s.product_id, s.reserved, COALESCE(o.q, 0)::BIGINT \
             FROM warehouse_stock s LEFT JOIN ( \
                 SELECT l.warehouse_id, l.product_id, l.bin_id, SUM(l.quantity) q \
                 FROM warehouse_reservation_lines l \
                 JOIN warehouse_reservations r ON r.id = l.reservation_id \
                 WHERE r.status IN ('RESERVED', 'PICKED') GROUP BY 1, 2, 3) o \
             USING (warehouse_id, product_id, bin_id) \
             WHERE s.reserved <> COALESCE(o.q, 0)",
        )
        .fetch_all(pool)
        .await
        .expect("reserved");
        assert_eq!(off, [], "reserved units that no open reservation holds");
    }

    /// The event types in the outbox, in the order they were written.
    pub async fn events(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT event_type FROM titan_outbox ORDER BY seq")
            .fetch_all(&self.db.pool)
            .await
            .expect("outbox")
    }
}
