//! Records and events in PostgreSQL. An append locks the record's row, inserts the event
//! (`ON CONFLICT (source, source_event_id) DO NOTHING`: a redelivery appends nothing),
//! recomputes the record from all its events with [`status_of`] and updates the record, all
//! in one transaction, so concurrent appends to one record are serialised and the stored
//! status is always the fold of every committed event. No statement here updates or deletes
//! an event; the table's trigger refuses it anyway.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row, postgres::PgRow};
use titan_kit::{Clock, KitError};
use uuid::Uuid;

use crate::{
    app::{Appended, Fresh, MAX_EVENTS, Record, TrackingError, TrackingStore},
    domain::{Coordinates, Event, NewEvent, Status, status_of},
    store::live::{LiveEvent, Update},
};

macro_rules! record_columns {
    () => {
        "id, tracking_number, carrier, shipment_id, order_id, service_level, owner_id, status, \
         location, lat, lng, estimated_delivery, event_count, created_at, updated_at"
    };
}

macro_rules! event_columns {
    () => {
        "id, kind, location, lat, lng, at, note, source, source_event_id, estimated_delivery, \
         recorded_at"
    };
}

fn status(column: &str, name: &str) -> Result<Status, TrackingError> {
    Status::from_name(name).ok_or_else(|| {
        TrackingError::Kit(KitError::Other(format!(
            "tracking {column} holds an unknown status {name:?}"
        )))
    })
}

fn coordinates(row: &PgRow) -> Result<Option<Coordinates>, sqlx::Error> {
    let lat: Option<f64> = row.try_get("lat")?;
    let lng: Option<f64> = row.try_get("lng")?;
    Ok(lat.zip(lng).map(|(lat, lng)| Coordinates { lat, lng }))
}

fn record_of(row: &PgRow) -> Result<Record, TrackingError> {
    Ok(Record {
        id: row.try_get("id")?,
        tracking_number: row.try_get("tracking_number")?,
        carrier: row.try_get("carrier")?,
        shipment_id: row.try_get("shipment_id")?,
        order_id: row.try_get("order_id")?,
        service_level: row.try_get("service_level")?,
        owner_id: row.try_get("owner_id")?,
        status: status("records.status", row.try_get("status")?)?,
        location: row.try_get("location")?,
        coordinates: coordinates(row)?,
        estimated_delivery: row.try_get("estimated_delivery")?,
        event_count: row.try_get("event_count")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn event_of(row: &PgRow) -> Result<Event, TrackingError> {
    Ok(Event {
        id: row.try_get("id")?,
        kind: status("events.kind", row.try_get("kind")?)?,
        location: row.try_get("location")?,
        coordinates: coordinates(row)?,
        at: row.try_get("at")?,
        note: row.try_get("note")?,
        source: row.try_get("source")?,
        source_event_id: row.try_get("source_event_id")?,
        estimated_delivery: row.try_get("estimated_delivery")?,
        recorded_at: row.try_get("recorded_at")?,
    })
}

/// A record as shipping's `shipment_created` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRecord {
    pub tracking_number: String,
    pub carrier: String,
    pub shipment_id: String,
    pub order_id: String,
    pub service_level: String,
    pub owner_id: String,
}

/// Why a record could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("tracking number {number} of {carrier} already tracks shipment {shipment}")]
    NumberTaken {
        number: String,
        carrier: String,
        shipment: String,
    },
    #[error(transparent)]
    Store(#[from] TrackingError),
}

impl From<sqlx::Error> for CreateError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

/// Creates the record with its CREATED event from `source`, inside the caller's transaction.
/// A record for the shipment already there appends nothing (`Ok(None)`); the number already
/// tracking another shipment of the carrier is refused.
pub async fn create_in(
    conn: &mut PgConnection,
    new: &NewRecord,
    created: &NewEvent,
    source: &str,
    now: DateTime<Utc>,
) -> Result<Option<Appended>, CreateError> {
    let inserted = sqlx::query(
        "INSERT INTO tracking_records (id, tracking_number, carrier, shipment_id, order_id, \
         service_level, owner_id, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'CREATED', $8, $8) ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(Uuid::now_v7())
    .bind(&new.tracking_number)
    .bind(&new.carrier)
    .bind(&new.shipment_id)
    .bind(&new.order_id)
    .bind(&new.service_level)
    .bind(&new.owner_id)
    .bind(created.at)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = inserted else {
        let tracked: Option<String> = sqlx::query_scalar(
            "SELECT shipment_id FROM tracking_records WHERE tracking_number = $1 AND carrier = $2",
        )
        .bind(&new.tracking_number)
        .bind(&new.carrier)
        .fetch_optional(&mut *conn)
        .await?;
        return match tracked {
            Some(shipment) if shipment != new.shipment_id => Err(CreateError::NumberTaken {
                number: new.tracking_number.clone(),
                carrier: new.carrier.clone(),
                shipment,
            }),
            _ => Ok(None),
        };
    };
    let id: Uuid = row.try_get("id")?;
    Ok(Some(append_in(conn, id, source, created, now).await?))
}

/// The record of a shipment (an append then locks it).
pub async fn record_by_shipment_in(
    conn: &mut PgConnection,
    shipment_id: &str,
) -> Result<Option<Record>, TrackingError> {
    sqlx::query(concat!(
        "SELECT ",
        record_columns!(),
        " FROM tracking_records WHERE shipment_id = $1"
    ))
    .bind(shipment_id)
    .fetch_optional(&mut *conn)
    .await?
    .as_ref()
    .map(record_of)
    .transpose()
}

async fn events_in(conn: &mut PgConnection, record: Uuid) -> Result<Vec<Event>, TrackingError> {
    sqlx::query(concat!(
        "SELECT ",
        event_columns!(),
        " FROM tracking_events WHERE record_id = $1"
    ))
    .bind(record)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(event_of)
    .collect()
}

/// Appends `event` from `source` to the record inside the caller's transaction: the record's
/// row locked, the event inserted unless the source already reported its id, the record
/// recomputed from every event.
pub async fn append_in(
    conn: &mut PgConnection,
    record: Uuid,
    source: &str,
    event: &NewEvent,
    now: DateTime<Utc>,
) -> Result<Appended, TrackingError> {
    let locked = sqlx::query(concat!(
        "SELECT ",
        record_columns!(),
        " FROM tracking_records WHERE id = $1 FOR UPDATE"
    ))
    .bind(record)
    .fetch_optional(&mut *conn)
    .await?
    .as_ref()
    .map(record_of)
    .transpose()?
    .ok_or_else(|| TrackingError::NotFound(record.to_string()))?;
    let id = Uuid::now_v7();
    let inserted = sqlx::query(
        "INSERT INTO tracking_events (id, record_id, kind, location, lat, lng, at, note, source, \
         source_event_id, estimated_delivery, recorded_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (source, source_event_id) DO NOTHING",
    )
    .bind(id)
    .bind(record)
    .bind(event.kind.as_str())
    .bind(&event.location)
    .bind(event.coordinates.map(|c| c.lat))
    .bind(event.coordinates.map(|c| c.lng))
    .bind(event.at)
    .bind(&event.note)
    .bind(source)
    .bind(&event.source_event_id)
    .bind(event.estimated_delivery)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(Appended::Duplicate);
    }
    if locked.event_count >= MAX_EVENTS {
        // The caller's transaction rolls back with this error: the insert is undone.
        return Err(TrackingError::TooManyEvents(locked.tracking_number));
    }
    let events = events_in(conn, record).await?;
    let folded = status_of(&events);
    let applied = folded
        .history
        .iter()
        .find(|e| e.event.id == id)
        .is_some_and(|e| e.applied);
    let row = sqlx::query(concat!(
        "UPDATE tracking_records SET status = $2, location = $3, lat = $4, lng = $5, \
         estimated_delivery = $6, event_count = event_count + 1, updated_at = $7 \
         WHERE id = $1 RETURNING ",
        record_columns!()
    ))
    .bind(record)
    .bind(folded.status.as_str())
    .bind(&folded.location)
    .bind(folded.coordinates.map(|c| c.lat))
    .bind(folded.coordinates.map(|c| c.lng))
    .bind(folded.estimated_delivery)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    let event = events
        .into_iter()
        .find(|e| e.id == id)
        .ok_or_else(|| KitError::Other(format!("tracking event {id} vanished after its insert")))?;
    Ok(Appended::Fresh(Box::new(Fresh {
        record: record_of(&row)?,
        event,
        applied,
    })))
}

#[derive(Clone)]
pub struct PgTracking {
    pool: PgPool,
    clock: Clock,
}

impl std::fmt::Debug for PgTracking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTracking").finish_non_exhaustive()
    }
}

impl PgTracking {
    pub fn new(pool: PgPool, clock: Clock) -> Self {
        Self { pool, clock }
    }
}

impl TrackingStore for PgTracking {
    async fn find(&self, number: &str, carrier: &str) -> Result<Vec<Record>, TrackingError> {
        sqlx::query(concat!(
            "SELECT ",
            record_columns!(),
            " FROM tracking_records WHERE tracking_number = $1 AND ($2 = '' OR carrier = $2) \
             ORDER BY carrier LIMIT 2"
        ))
        .bind(number)
        .bind(carrier)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(record_of)
        .collect()
    }

    async fn events(&self, record: Uuid) -> Result<Vec<Event>, TrackingError> {
        let mut conn = self.pool.acquire().await?;
        events_in(&mut conn, record).await
    }

    async fn append(
        &self,
        record: Uuid,
        source: &str,
        event: &NewEvent,
    ) -> Result<Appended, TrackingError> {
        let mut tx = self.pool.begin().await?;
        let appended = append_in(&mut tx, record, source, event, (self.clock)()).await?;
        tx.commit().await?;
        Ok(appended)
    }

    async fn appended(
        &self,
        source: &str,
        source_event_id: &str,
    ) -> Result<Option<LiveEvent>, TrackingError> {
        let mut conn = self.pool.acquire().await?;
        let record: Option<Uuid> = sqlx::query_scalar(
            "SELECT record_id FROM tracking_events WHERE source = $1 AND source_event_id = $2",
        )
        .bind(source)
        .bind(source_event_id)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(record) = record else {
            return Ok(None);
        };
        let row = sqlx::query(concat!(
            "SELECT ",
            record_columns!(),
            " FROM tracking_records WHERE id = $1"
        ))
        .bind(record)
        .fetch_one(&mut *conn)
        .await?;
        let record = record_of(&row)?;
        let events = events_in(&mut conn, record.id).await?;
        let folded = status_of(&events);
        Ok(folded
            .history
            .iter()
            .find(|e| e.event.source == source && e.event.source_event_id == source_event_id)
            .map(|e| LiveEvent {
                record: record.id,
                update: Update {
                    status: folded.status,
                    event: e.event.clone(),
                    applied: e.applied,
                },
            }))
    }
}
