//! A person's records for the privacy jobs (`crate::privacy`), as a driver and as a customer:
//! everything held about them, and their erasure (docs/driver.md#privacy).
//!
//! - A driver's profile, GPS history and live position (Redis) go; the routes they drove and
//!   the deliveries they carried stay, with the driver's id replaced by the pseudonym.
//! - A customer's deliveries stay (carriers, invoices and disputes need them) under the
//!   pseudonym, with the address, its coordinates and the recipient's name blanked; the proof
//!   photos and signatures, taken at their door, are deleted from the bucket.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use titan_kit::{
    KitError,
    objects::{ObjectKey, ObjectStorage},
};
use uuid::Uuid;

use super::live::Live;
use crate::domain::DriverStatus;

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    /// Retried by the runtime: the route ends, or a dispatcher reschedules its stops.
    #[error(
        "driver {0} is on a route; the erasure runs once its deliveries are settled or rescheduled"
    )]
    OnRoute(Uuid),
    #[error("stored proof key {key:?} of delivery {delivery} is not an object key: {reason}")]
    ProofKey {
        delivery: Uuid,
        key: String,
        reason: String,
    },
    #[error(transparent)]
    Kit(#[from] KitError),
}

titan_kit::datastore_errors!(PrivacyError);

pub type Result<T> = std::result::Result<T, PrivacyError>;

/// The driver's profile as stored, with their performance.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct DriverRecord {
    pub id: Uuid,
    pub name: String,
    pub phone: String,
    pub email: String,
    pub vehicle_type: String,
    pub capacity: i32,
    pub status: String,
    pub lat: Option<f64>,
    pub lng: Option<f64>,
    pub located_at: Option<DateTime<Utc>>,
    pub completed: i64,
    pub failed: i64,
    pub on_time: i64,
    pub rating_sum: i64,
    pub ratings: i64,
    pub created_at: DateTime<Utc>,
}

/// One GPS report of the driver.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct PositionRecord {
    pub at: DateTime<Utc>,
    pub lat: f64,
    pub lng: f64,
    pub implausible: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct RouteRecord {
    pub id: Uuid,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A delivery the driver carried: what the driver did, not the customer's address or name,
/// which are the customer's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct DrivenRecord {
    pub id: Uuid,
    pub shipment_id: String,
    pub route_id: Option<Uuid>,
    pub stop_sequence: Option<i32>,
    pub status: String,
    pub eta: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The customer's rating of the delivery, which counts in the driver's performance.
    pub rating: Option<i16>,
}

/// A delivery to the customer, with the proof's object keys in the bucket.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct ReceivedRecord {
    pub id: Uuid,
    pub shipment_id: String,
    pub address: String,
    pub lat: f64,
    pub lng: f64,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub status: String,
    pub finished_at: Option<DateTime<Utc>>,
    pub recipient_name: Option<String>,
    pub proof_keys: Vec<String>,
    pub rating: Option<i16>,
    pub created_at: DateTime<Utc>,
}

/// Everything the service holds about one person.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Records {
    pub user_id: String,
    /// None when the person never registered as a driver.
    pub driver: Option<DriverRecord>,
    /// The driver's GPS history, oldest first.
    pub positions: Vec<PositionRecord>,
    pub routes: Vec<RouteRecord>,
    pub deliveries_driven: Vec<DrivenRecord>,
    pub deliveries_received: Vec<ReceivedRecord>,
}

/// What an erasure did, by kind of record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    pub drivers: u64,
    pub positions: u64,
    /// Entries of the nearby set and latest positions in Redis.
    pub live_positions: u64,
    pub routes: u64,
    pub deliveries_driven: u64,
    pub deliveries_received: u64,
    pub proof_objects: u64,
}

#[derive(Debug, Clone)]
pub struct PersonalStore {
    pool: PgPool,
    live: Live,
    objects: ObjectStorage,
}

impl PersonalStore {
    pub fn new(pool: PgPool, live: Live, objects: ObjectStorage) -> Self {
        Self {
            pool,
            live,
            objects,
        }
    }

    /// Everything held about `user`, all of it (no page limits), from one snapshot.
    pub async fn records(&self, user: &str) -> Result<Records> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        let driver: Option<DriverRecord> = sqlx::query_as(
            "SELECT id, name, phone, email, vehicle_type, capacity, status, lat, lng, located_at,
                    completed, failed, on_time, rating_sum, ratings, created_at
             FROM driver_drivers WHERE user_id = $1",
        )
        .bind(user)
        .fetch_optional(&mut *tx)
        .await?;
        let (mut positions, mut routes, mut deliveries_driven) = (vec![], vec![], vec![]);
        if let Some(d) = &driver {
            positions = sqlx::query_as(
                "SELECT at, lat, lng, implausible FROM driver_positions
                 WHERE driver_id = $1 ORDER BY at",
            )
            .bind(d.id)
            .fetch_all(&mut *tx)
            .await?;
            routes = sqlx::query_as(
                "SELECT id, status, created_at, finished_at FROM driver_routes
                 WHERE driver_id = $1 ORDER BY created_at, id",
            )
            .bind(d.id)
            .fetch_all(&mut *tx)
            .await?;
            deliveries_driven = sqlx::query_as(
                "SELECT id, shipment_id, route_id, stop_sequence, status, eta, finished_at, rating
                 FROM driver_deliveries WHERE driver_id = $1
                 ORDER BY route_id, stop_sequence, id",
            )
            .bind(d.id)
            .fetch_all(&mut *tx)
            .await?;
        }
        let deliveries_received = sqlx::query_as(
            "SELECT id, shipment_id, address, lat, lng, window_start, window_end, status,
                    finished_at, recipient_name, proof_keys, rating, created_at
             FROM driver_deliveries WHERE customer_id = $1 ORDER BY created_at, id",
        )
        .bind(user)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Records {
            user_id: user.to_owned(),
            driver,
            positions,
            routes,
            deliveries_driven,
            deliveries_received,
        })
    }

    /// Erases `user` as a customer, then as a driver. Idempotent: a second run finds nothing
    /// and reports zeros.
    pub async fn erase(&self, user: &str, pseudonym: &str) -> Result<Erased> {
        let (deliveries_received, proof_objects) = self.erase_customer(user, pseudonym).await?;
        let driver = self.erase_driver(user, pseudonym).await?;
        Ok(Erased {
            deliveries_received,
            proof_objects,
            ..driver
        })
    }

    /// The customer's deliveries, in one transaction holding their rows (a completion waits,
    /// so no proof is added between the listing and the blanking): the proof objects are
    /// deleted first, so a failure before the commit leaves their keys listed and the next run
    /// deletes them again (deleting a missing object succeeds). Rows already under the
    /// pseudonym that still hold a proof, a name or an address (a completion that was already
    /// uploading when an earlier run held the rows) are finished too.
    async fn erase_customer(&self, user: &str, pseudonym: &str) -> Result<(u64, u64)> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<(Uuid, Vec<String>)> = sqlx::query_as(
            "SELECT id, proof_keys FROM driver_deliveries
             WHERE customer_id = $1
                OR (customer_id = $2 AND (cardinality(proof_keys) > 0
                    OR recipient_name IS NOT NULL OR address <> ''))
             ORDER BY id FOR UPDATE",
        )
        .bind(user)
        .bind(pseudonym)
        .fetch_all(&mut *tx)
        .await?;
        let mut objects = 0;
        for (delivery, keys) in &rows {
            for key in keys {
                let object = ObjectKey::parse(key).map_err(|e| PrivacyError::ProofKey {
                    delivery: *delivery,
                    key: key.clone(),
                    reason: e.to_string(),
                })?;
                self.objects.delete(&object).await?;
                objects += 1;
            }
        }
        let ids: Vec<Uuid> = rows.iter().map(|(id, _)| *id).collect();
        // Zero coordinates: the columns stay NOT NULL for the routing code, and the address's
        // place is as identifying as the address.
        let deliveries = sqlx::query(
            "UPDATE driver_deliveries
             SET customer_id = $2, address = '', lat = 0, lng = 0, recipient_name = NULL,
                 proof_keys = '{}'
             WHERE id = ANY($1)",
        )
        .bind(&ids)
        .bind(pseudonym)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok((deliveries, objects))
    }

    /// The driver, in one transaction holding their row: routes and deliveries pseudonymised,
    /// GPS history and profile deleted. Redis is cleared before the commit, so a failure there
    /// leaves PostgreSQL untouched and the whole erasure runs again; a position report waiting
    /// on the row finds it gone and writes nothing to Redis.
    async fn erase_driver(&self, user: &str, pseudonym: &str) -> Result<Erased> {
        let mut tx = self.pool.begin().await?;
        // Assignments lock the driver's row first too: none can start a route meanwhile.
        let driver: Option<(Uuid, String)> =
            sqlx::query_as("SELECT id, status FROM driver_drivers WHERE user_id = $1 FOR UPDATE")
                .bind(user)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((id, status)) = driver else {
            return Ok(Erased::default());
        };
        if status == DriverStatus::OnDelivery.as_str() {
            return Err(PrivacyError::OnRoute(id));
        }
        let deliveries_driven = sqlx::query(
            "UPDATE driver_deliveries SET driver_id = NULL, driver_pseudonym = $2
             WHERE driver_id = $1",
        )
        .bind(id)
        .bind(pseudonym)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let routes = sqlx::query(
            "UPDATE driver_routes SET driver_id = NULL, driver_pseudonym = $2 WHERE driver_id = $1",
        )
        .bind(id)
        .bind(pseudonym)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let positions = sqlx::query("DELETE FROM driver_positions WHERE driver_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let drivers = sqlx::query("DELETE FROM driver_drivers WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let live_positions = self.live.forget(id).await?;
        tx.commit().await?;
        Ok(Erased {
            drivers,
            positions,
            live_positions,
            routes,
            deliveries_driven,
            ..Erased::default()
        })
    }
}
