//! A person's tracking records for the privacy jobs (`crate::privacy`): everything held about
//! them, and their erasure (docs/tracking.md#privacy). Records and their events stay (carriers
//! and disputes need a parcel's history) under the pseudonym; what an event holds about the
//! person is blanked: its coordinates (a driver's position, at their door on delivery) and a
//! carrier's free-text note. The migration `20261207000001_privacy.sql` lets exactly that
//! change through the events' append-only trigger.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::app::TrackingError;

pub type Result<T> = std::result::Result<T, TrackingError>;

/// An event as the person may read it: a carrier's note, not the service's own notes (which
/// name drivers and deliveries) or the coordinates (a driver's position).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct EventRecord {
    pub kind: String,
    pub location: String,
    pub at: DateTime<Utc>,
    /// A carrier's note; None for the service's own events.
    pub note: Option<String>,
}

/// A record the person owns, with its events in time order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct RecordRecord {
    #[serde(skip)]
    pub id: Uuid,
    pub tracking_number: String,
    pub carrier: String,
    pub shipment_id: String,
    pub order_id: String,
    pub service_level: String,
    pub status: String,
    pub location: String,
    pub estimated_delivery: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[sqlx(skip)]
    pub events: Vec<EventRecord>,
}

/// Everything the service holds about one person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Records {
    pub user_id: String,
    /// Oldest first.
    pub records: Vec<RecordRecord>,
}

/// What an erasure did, by kind of record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    pub records: u64,
    pub events: u64,
}

/// Where an event's source is a carrier's webhook (`carrier:<name>`).
const CARRIER_SOURCE: &str = "carrier:%";

#[derive(Debug, Clone)]
pub struct PersonalStore {
    pool: PgPool,
}

impl PersonalStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Everything held about `user`, all of it (no page limits), from one snapshot.
    pub async fn records(&self, user: &str) -> Result<Records> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        let mut records: Vec<RecordRecord> = sqlx::query_as(
            "SELECT id, tracking_number, carrier, shipment_id, order_id, service_level, status,
                    location, estimated_delivery, created_at, updated_at
             FROM tracking_records WHERE owner_id = $1 ORDER BY created_at, id",
        )
        .bind(user)
        .fetch_all(&mut *tx)
        .await?;
        for r in &mut records {
            r.events = sqlx::query_as(
                "SELECT kind, location, at,
                        CASE WHEN source LIKE $2 THEN note END AS note
                 FROM tracking_events WHERE record_id = $1 ORDER BY at, recorded_at, id",
            )
            .bind(r.id)
            .bind(CARRIER_SOURCE)
            .fetch_all(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Records {
            user_id: user.to_owned(),
            records,
        })
    }

    /// Erases `user` in one transaction: the records locked first, as appends lock them, then
    /// their events blanked and the records pseudonymised. A second run finds nothing and
    /// reports zeros.
    pub async fn erase(&self, user: &str, pseudonym: &str) -> Result<Erased> {
        let mut tx = self.pool.begin().await?;
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM tracking_records WHERE owner_id = $1 ORDER BY id FOR UPDATE",
        )
        .bind(user)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("SET LOCAL tracking.erasure = 'on'")
            .execute(&mut *tx)
            .await?;
        let events = sqlx::query(
            "UPDATE tracking_events
             SET lat = NULL, lng = NULL,
                 note = CASE WHEN source LIKE $2 THEN '' ELSE note END
             WHERE record_id = ANY($1)
               AND (lat IS NOT NULL OR (source LIKE $2 AND note <> ''))",
        )
        .bind(&ids)
        .bind(CARRIER_SOURCE)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let records = sqlx::query(
            "UPDATE tracking_records SET owner_id = $2, lat = NULL, lng = NULL
             WHERE id = ANY($1)",
        )
        .bind(&ids)
        .bind(pseudonym)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(Erased { records, events })
    }
}
