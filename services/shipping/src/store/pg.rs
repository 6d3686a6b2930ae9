//! The [`ShippingStore`] on PostgreSQL: a shipment row is written with its
//! `shipping.shipment_created` outbox event and the idempotency answer in one transaction,
//! and a cancellation is one guarded UPDATE (`status = 'LABEL_CREATED'`) with its
//! `shipping.shipment_cancelled` event and answer. Database errors become [`ShippingError`]
//! here.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{PgConnection, PgPool, Row, postgres::PgRow, types::Json};
use titan_kit::{
    KitError,
    events::{Envelope, outbox},
    idempotency::{self, Begin},
};
use uuid::Uuid;

use crate::{
    app::{NewShipment, Shipment, ShippingError, ShippingStore},
    carrier::CarrierError,
    domain::{
        Address, IllegalTransition, Parcel, SERVICE, ServiceLevel, ShipmentAction, ShipmentStatus,
    },
};

const COLUMNS: &str = "id, order_id, owner_id, carrier, service_level, tracking_number, status, \
     from_address, to_address, parcels, amount_minor, currency, days, label_key, created_at, \
     updated_at";
const TRACKING_TAKEN: &str = "shipping_shipments_tracking_key";

#[derive(Debug, Clone)]
pub struct PgShipments {
    pool: PgPool,
    cell: String,
}

fn corrupt(what: impl Into<String>) -> ShippingError {
    ShippingError::Kit(KitError::Other(what.into()))
}

fn encode(answer: &Shipment) -> Result<Vec<u8>, ShippingError> {
    serde_json::to_vec(answer).map_err(|e| corrupt(format!("cannot encode an answer: {e}")))
}

fn decode(answer: &[u8]) -> Result<Shipment, ShippingError> {
    serde_json::from_slice(answer)
        .map_err(|e| corrupt(format!("stored answer does not parse: {e}")))
}

fn shipment_of(row: &PgRow) -> Result<Shipment, ShippingError> {
    let id: Uuid = row.try_get("id")?;
    let named = |column: &str| -> Result<String, ShippingError> { Ok(row.try_get(column)?) };
    let level = named("service_level")?;
    let status = named("status")?;
    let Json(from): Json<Address> = row.try_get("from_address")?;
    let Json(to): Json<Address> = row.try_get("to_address")?;
    let Json(parcels): Json<Vec<Parcel>> = row.try_get("parcels")?;
    let amount: i64 = row.try_get("amount_minor")?;
    let days: i32 = row.try_get("days")?;
    Ok(Shipment {
        id,
        order_id: named("order_id")?,
        owner_id: named("owner_id")?,
        carrier: named("carrier")?,
        service_level: ServiceLevel::from_name(&level)
            .ok_or_else(|| corrupt(format!("shipment {id} has service level {level:?}")))?,
        tracking_number: named("tracking_number")?,
        status: ShipmentStatus::from_name(&status)
            .ok_or_else(|| corrupt(format!("shipment {id} has status {status:?}")))?,
        from,
        to,
        parcels,
        amount_minor: u64::try_from(amount)
            .map_err(|_| corrupt(format!("shipment {id} costs {amount}")))?,
        currency: named("currency")?,
        days: u32::try_from(days)
            .map_err(|_| corrupt(format!("shipment {id} takes {days} days")))?,
        label_key: named("label_key")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl PgShipments {
    pub fn new(pool: PgPool, cell: String) -> Self {
        Self { pool, cell }
    }

    async fn publish(
        &self,
        conn: &mut PgConnection,
        kind: &str,
        payload: &serde_json::Value,
    ) -> Result<(), ShippingError> {
        let envelope = Envelope::new(&self.cell, kind, 1, payload)?;
        outbox::write(conn, SERVICE, &envelope).await?;
        Ok(())
    }
}

impl ShippingStore for PgShipments {
    async fn replay(&self, key: &idempotency::Key) -> Result<Option<Shipment>, ShippingError> {
        let mut conn = self.pool.acquire().await?;
        idempotency::peek(&mut conn, key)
            .await?
            .map(|answer| decode(&answer))
            .transpose()
    }

    async fn create(
        &self,
        key: &idempotency::Key,
        new: &NewShipment,
    ) -> Result<Shipment, ShippingError> {
        let s = &new.shipment;
        let mut tx = self.pool.begin().await?;
        // A concurrent duplicate waits here on the first call's key and replays its answer.
        if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            return decode(&answer);
        }
        let amount = i64::try_from(s.amount_minor)
            .map_err(|_| corrupt(format!("an amount of {} does not fit", s.amount_minor)))?;
        let days = i32::try_from(s.days)
            .map_err(|_| corrupt(format!("{} delivery days do not fit", s.days)))?;
        let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO shipping_shipments (created_by, request_id, {COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
                     $18) \
             RETURNING {COLUMNS}"
        )))
        .bind(&new.created_by)
        .bind(&new.request_id)
        .bind(s.id)
        .bind(&s.order_id)
        .bind(&s.owner_id)
        .bind(&s.carrier)
        .bind(s.service_level.as_str())
        .bind(&s.tracking_number)
        .bind(s.status.as_str())
        .bind(Json(&s.from))
        .bind(Json(&s.to))
        .bind(Json(&s.parcels))
        .bind(amount)
        .bind(&s.currency)
        .bind(days)
        .bind(&s.label_key)
        .bind(s.created_at)
        .bind(s.updated_at)
        .fetch_one(&mut *tx)
        .await;
        let row = match inserted {
            Ok(row) => row,
            Err(sqlx::Error::Database(d)) if d.constraint() == Some(TRACKING_TAKEN) => {
                return Err(CarrierError::BadResponse {
                    carrier: s.carrier.clone(),
                    message: format!(
                        "tracking number {} already belongs to another shipment",
                        s.tracking_number
                    ),
                }
                .into());
            }
            Err(e) => return Err(e.into()),
        };
        let stored = shipment_of(&row)?;
        self.publish(
            &mut tx,
            "shipping.shipment_created",
            &json!({
                "shipment_id": stored.id,
                "order_id": stored.order_id,
                "tracking_number": stored.tracking_number,
                "carrier": stored.carrier,
                "service_level": stored.service_level.as_str(),
                "owner_id": stored.owner_id,
                "created_at": stored.created_at,
            }),
        )
        .await?;
        idempotency::finish(&mut tx, key, &encode(&stored)?).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn shipment(&self, id: Uuid) -> Result<Option<Shipment>, ShippingError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM shipping_shipments WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(shipment_of)
        .transpose()
    }

    async fn cancel(
        &self,
        key: &idempotency::Key,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<Shipment, ShippingError> {
        let action = ShipmentAction::Cancel;
        let from: Vec<&str> = action.leaves_from().iter().map(|s| s.as_str()).collect();
        let mut tx = self.pool.begin().await?;
        if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            return decode(&answer);
        }
        let updated = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE shipping_shipments SET status = $2, updated_at = $3 \
             WHERE id = $1 AND status = ANY($4) RETURNING {COLUMNS}"
        )))
        .bind(id)
        .bind(action.target().as_str())
        .bind(at)
        .bind(&from)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = updated else {
            // Refused: say why from the row as it is now.
            let status: Option<String> =
                sqlx::query_scalar("SELECT status FROM shipping_shipments WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let status = status.ok_or(ShippingError::NotFound(id))?;
            let current = ShipmentStatus::from_name(&status)
                .ok_or_else(|| corrupt(format!("shipment {id} has status {status:?}")))?;
            return Err(action
                .apply(current)
                .err()
                .unwrap_or(IllegalTransition { action, current })
                .into());
        };
        let stored = shipment_of(&row)?;
        self.publish(
            &mut tx,
            "shipping.shipment_cancelled",
            &json!({
                "shipment_id": stored.id,
                "order_id": stored.order_id,
                "tracking_number": stored.tracking_number,
                "carrier": stored.carrier,
                "owner_id": stored.owner_id,
                "cancelled_at": stored.updated_at,
            }),
        )
        .await?;
        idempotency::finish(&mut tx, key, &encode(&stored)?).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn by_order(
        &self,
        order_id: &str,
        owner: Option<&str>,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Shipment>, ShippingError> {
        // The cursor is a shipment of the page before; its (created_at, id) is where the next
        // page starts, so pages neither skip nor repeat while shipments are added.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM shipping_shipments \
             WHERE order_id = $1 AND ($2::TEXT IS NULL OR owner_id = $2) \
               AND ($3::UUID IS NULL OR (created_at, id) > \
                    (SELECT created_at, id FROM shipping_shipments WHERE id = $3)) \
             ORDER BY created_at, id LIMIT $4"
        )))
        .bind(order_id)
        .bind(owner)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(shipment_of).collect()
    }
}
