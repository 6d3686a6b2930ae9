//! The [`WarehouseStore`] on PostgreSQL. Every stock change is one guarded statement on its
//! stock row (`available + Δ >= 0 AND reserved + Δ >= 0`, the CHECK constraints behind it)
//! and its movement row, in one transaction with the idempotency key and the `warehouse.*`
//! outbox events. Stock rows are always locked in one order — warehouse, product (bytewise),
//! bin — so concurrent reservations, releases and transfers never deadlock; a bin's lock
//! (taken before any stock row) serialises what fills it. Database errors become
//! [`WarehouseError`] here.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{PgConnection, PgPool, Row, postgres::PgRow};
use titan_kit::{
    KitError,
    events::{Envelope, outbox},
    idempotency::{self, Begin},
};
use uuid::Uuid;

use crate::{
    app::{
        Bin, Change, Level, Moved, Movement, Order, PickLine, Place, Reservation, ReservedLine,
        Short, Transfer, Warehouse, WarehouseError, WarehouseStore,
    },
    domain::{
        BinCode, Candidate, Delta, Location, NewWarehouse, Quantity, ReservationAction,
        ReservationStatus, SERVICE, Slot, Stocked, WarehouseCode, WarehouseStatus, ZoneCode,
        allocate,
    },
};

const WAREHOUSE_COLUMNS: &str = "id, code, name, address, lat, lng, status, capacity, priority";
const CODE_TAKEN: &str = "warehouse_warehouses_code_key";
const BIN_TAKEN: &str = "warehouse_bins_code_key";
const OPEN_ORDER: &str = "warehouse_reservations_open_order";
/// Who the expiry job's movements are by.
const EXPIRY: &str = "warehouse-expiry";

#[derive(Debug, Clone)]
pub struct PgWarehouses {
    pool: PgPool,
    cell: String,
}

fn corrupt(what: impl Into<String>) -> WarehouseError {
    WarehouseError::Kit(KitError::Other(what.into()))
}

fn encode<T: serde::Serialize>(answer: &T) -> Result<Vec<u8>, WarehouseError> {
    serde_json::to_vec(answer).map_err(|e| corrupt(format!("cannot encode an answer: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(answer: &[u8]) -> Result<T, WarehouseError> {
    serde_json::from_slice(answer)
        .map_err(|e| corrupt(format!("stored answer does not parse: {e}")))
}

/// Whether `e` is the unique violation of `constraint`.
fn violates(e: &sqlx::Error, constraint: &str) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.constraint() == Some(constraint))
}

fn warehouse_of(row: &PgRow) -> Result<Warehouse, WarehouseError> {
    Ok(Warehouse {
        id: row.try_get("id")?,
        code: row.try_get("code")?,
        name: row.try_get("name")?,
        address: row.try_get("address")?,
        lat: row.try_get("lat")?,
        lng: row.try_get("lng")?,
        status: row.try_get("status")?,
        capacity: row.try_get("capacity")?,
        priority: row.try_get("priority")?,
    })
}

fn stored_bin(code: &str) -> Result<BinCode, WarehouseError> {
    BinCode::parse("bin", code).map_err(|e| corrupt(format!("stored bin: {e}")))
}

/// One stock row, resolved: ids for the statements, codes for answers and refusals.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct StockRow {
    warehouse_id: Uuid,
    product_id: String,
    bin_id: Uuid,
    warehouse: String,
    bin: String,
}

/// A reservation line with its stock row: reservation, warehouse id, product, bin id,
/// warehouse code, bin code, quantity, order id.
type HeldLine = (Uuid, Uuid, String, Uuid, String, String, i64, String);

/// What a movement row records besides its stock row and delta.
#[derive(Debug, Clone, Copy)]
struct Why<'a> {
    reference: &'a str,
    reservation: Option<Uuid>,
    transfer: Option<Uuid>,
    by: &'a str,
    at: DateTime<Utc>,
}

impl PgWarehouses {
    pub fn new(pool: PgPool, cell: String) -> Self {
        Self { pool, cell }
    }

    async fn publish(
        &self,
        conn: &mut PgConnection,
        kind: &str,
        payload: &serde_json::Value,
    ) -> Result<(), WarehouseError> {
        let envelope = Envelope::new(&self.cell, kind, 1, payload)?;
        outbox::write(conn, SERVICE, &envelope).await?;
        Ok(())
    }

    /// The warehouse's id and capacity; its row locked when `lock`.
    async fn warehouse_id(
        conn: &mut PgConnection,
        code: &WarehouseCode,
        lock: bool,
    ) -> Result<(Uuid, i64), WarehouseError> {
        let lock = if lock { " FOR UPDATE" } else { "" };
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id, capacity FROM warehouse_warehouses WHERE code = $1{lock}"
        )))
        .bind(code.as_str())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| WarehouseError::UnknownWarehouse(code.as_str().to_owned()))
    }

    /// Resolves a place; when `filling` units arrive, the bin is locked and must have room.
    async fn resolve(
        conn: &mut PgConnection,
        place: &Place,
        filling: i64,
    ) -> Result<StockRow, WarehouseError> {
        let (warehouse_id, _) = Self::warehouse_id(conn, &place.warehouse, false).await?;
        let lock = if filling > 0 { " FOR UPDATE" } else { "" };
        let (bin_id, capacity): (Uuid, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id, capacity FROM warehouse_bins WHERE warehouse_id = $1 AND code = $2{lock}"
        )))
        .bind(warehouse_id)
        .bind(place.bin.as_str())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| WarehouseError::UnknownBin {
            warehouse: place.warehouse.as_str().to_owned(),
            bin: place.bin.as_str().to_owned(),
        })?;
        if filling > 0 {
            // Every increase of a bin's units holds the bin's lock, so this sum cannot grow
            // under us; decreases only make room.
            let used: i64 = sqlx::query_scalar(
                "SELECT COALESCE(SUM(available + reserved), 0)::BIGINT FROM warehouse_stock \
                 WHERE bin_id = $1",
            )
            .bind(bin_id)
            .fetch_one(&mut *conn)
            .await?;
            if used + filling > capacity {
                return Err(WarehouseError::BinFull {
                    warehouse: place.warehouse.as_str().to_owned(),
                    bin: place.bin.as_str().to_owned(),
                    free: capacity - used,
                    wanted: filling,
                });
            }
        }
        Ok(StockRow {
            warehouse_id,
            product_id: place.product_id.clone(),
            bin_id,
            warehouse: place.warehouse.as_str().to_owned(),
            bin: place.bin.as_str().to_owned(),
        })
    }

    /// Applies `delta` to the row and writes its movement; refused (nothing written) when a
    /// column would go negative. Returns the movement id and the row after it.
    async fn apply(
        conn: &mut PgConnection,
        row: &StockRow,
        delta: Delta,
        why: Why<'_>,
    ) -> Result<(i64, Level), WarehouseError> {
        let after: Option<(i64, i64)> = if delta.available >= 0 && delta.reserved >= 0 {
            // Only adds: the row may not exist yet.
            sqlx::query_as(
                "INSERT INTO warehouse_stock AS s \
                     (warehouse_id, product_id, bin_id, available, reserved) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (warehouse_id, product_id, bin_id) DO UPDATE \
                 SET available = s.available + EXCLUDED.available, \
                     reserved = s.reserved + EXCLUDED.reserved \
                 RETURNING available, reserved",
            )
            .bind(row.warehouse_id)
            .bind(&row.product_id)
            .bind(row.bin_id)
            .bind(delta.available)
            .bind(delta.reserved)
            .fetch_optional(&mut *conn)
            .await?
        } else {
            sqlx::query_as(
                "UPDATE warehouse_stock \
                 SET available = available + $4, reserved = reserved + $5 \
                 WHERE warehouse_id = $1 AND product_id = $2 AND bin_id = $3 \
                   AND available + $4 >= 0 AND reserved + $5 >= 0 \
                 RETURNING available, reserved",
            )
            .bind(row.warehouse_id)
            .bind(&row.product_id)
            .bind(row.bin_id)
            .bind(delta.available)
            .bind(delta.reserved)
            .fetch_optional(&mut *conn)
            .await?
        };
        let Some((available, reserved)) = after else {
            let now: Option<(i64, i64)> = sqlx::query_as(
                "SELECT available, reserved FROM warehouse_stock \
                 WHERE warehouse_id = $1 AND product_id = $2 AND bin_id = $3",
            )
            .bind(row.warehouse_id)
            .bind(&row.product_id)
            .bind(row.bin_id)
            .fetch_optional(&mut *conn)
            .await?;
            let (available, reserved) = now.unwrap_or((0, 0));
            // The column that fell short: reserved for a shipment or release, else available.
            let (have, wanted) = if delta.available < 0 {
                (available, -delta.available)
            } else {
                (reserved, -delta.reserved)
            };
            return Err(WarehouseError::InsufficientStock {
                warehouse: row.warehouse.clone(),
                bin: row.bin.clone(),
                product_id: row.product_id.clone(),
                available: have,
                wanted,
            });
        };
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO warehouse_movements (warehouse_id, product_id, bin_id, type, \
                 available_delta, reserved_delta, reference, reservation_id, transfer_id, \
                 by_user, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        )
        .bind(row.warehouse_id)
        .bind(&row.product_id)
        .bind(row.bin_id)
        .bind(delta.kind.as_str())
        .bind(delta.available)
        .bind(delta.reserved)
        .bind(why.reference)
        .bind(why.reservation)
        .bind(why.transfer)
        .bind(why.by)
        .bind(why.at)
        .fetch_one(&mut *conn)
        .await?;
        Ok((
            id,
            Level {
                warehouse: row.warehouse.clone(),
                bin: row.bin.clone(),
                product_id: row.product_id.clone(),
                available,
                reserved,
            },
        ))
    }

    async fn load_reservation(
        conn: &mut PgConnection,
        id: Uuid,
    ) -> Result<Option<Reservation>, WarehouseError> {
        let Some(row) = sqlx::query(
            "SELECT id, order_id, status, expires_at, short FROM warehouse_reservations \
             WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        else {
            return Ok(None);
        };
        let lines: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT w.code, b.code, l.product_id, l.quantity \
             FROM warehouse_reservation_lines l \
             JOIN warehouse_warehouses w ON w.id = l.warehouse_id \
             JOIN warehouse_bins b ON b.id = l.bin_id \
             WHERE l.reservation_id = $1 ORDER BY l.line",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        let short: sqlx::types::Json<Vec<Short>> = row.try_get("short")?;
        Ok(Some(Reservation {
            id: row.try_get("id")?,
            order_id: row.try_get("order_id")?,
            status: row.try_get("status")?,
            expires_at: row.try_get("expires_at")?,
            lines: lines
                .into_iter()
                .map(|(warehouse, bin, product_id, quantity)| ReservedLine {
                    warehouse,
                    bin,
                    product_id,
                    quantity,
                })
                .collect(),
            short: short.0,
        }))
    }

    /// Moves the reservations `ids` (already moved to their new status by the caller) by
    /// `action`: the stock movements it makes, every stock row in the one lock order, and
    /// one `warehouse.<status>` event each. Returns the reservations as they are now.
    async fn settle(
        &self,
        conn: &mut PgConnection,
        ids: &[Uuid],
        action: ReservationAction,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<Reservation>, WarehouseError> {
        let lines: Vec<HeldLine> = sqlx::query_as(
            "SELECT l.reservation_id, l.warehouse_id, l.product_id, l.bin_id, w.code, b.code, \
                    l.quantity, r.order_id \
             FROM warehouse_reservation_lines l \
             JOIN warehouse_reservations r ON r.id = l.reservation_id \
             JOIN warehouse_warehouses w ON w.id = l.warehouse_id \
             JOIN warehouse_bins b ON b.id = l.bin_id \
             WHERE l.reservation_id = ANY($1) \
             ORDER BY l.warehouse_id, l.product_id COLLATE \"C\", l.bin_id, l.reservation_id",
        )
        .bind(ids)
        .fetch_all(&mut *conn)
        .await?;
        for (reservation, warehouse_id, product_id, bin_id, warehouse, bin, quantity, order) in
            lines
        {
            let q = Quantity::parse("quantity", quantity)
                .map_err(|e| corrupt(format!("stored reservation line: {e}")))?;
            let delta = match action {
                ReservationAction::Pick => continue,
                ReservationAction::Ship => Delta::ship(q),
                ReservationAction::Release | ReservationAction::Expire => Delta::release(q),
            };
            let row = StockRow {
                warehouse_id,
                product_id,
                bin_id,
                warehouse,
                bin,
            };
            let why = Why {
                reference: &order,
                reservation: Some(reservation),
                transfer: None,
                by,
                at,
            };
            Self::apply(conn, &row, delta, why).await?;
        }
        let mut out = Vec::with_capacity(ids.len());
        let kind = format!(
            "{SERVICE}.{}",
            action.target().as_str().to_ascii_lowercase()
        );
        for &id in ids {
            let r = Self::load_reservation(conn, id)
                .await?
                .ok_or(WarehouseError::UnknownReservation(id))?;
            self.publish(conn, &kind, &reservation_event(&r)).await?;
            out.push(r);
        }
        Ok(out)
    }
}

fn reservation_event(r: &Reservation) -> serde_json::Value {
    json!({
        "reservation_id": r.id,
        "order_id": r.order_id,
        "status": r.status,
        "lines": r.lines,
        "short": r.short,
    })
}

fn moved_event(kind: &str, moved: &Moved, reference: &str, by: &str) -> serde_json::Value {
    json!({
        "type": kind,
        "movements": moved.movements,
        "levels": moved.levels,
        "reference": reference,
        "by": by,
    })
}

impl WarehouseStore for PgWarehouses {
    async fn create_warehouse(
        &self,
        key: &idempotency::Key,
        w: &NewWarehouse,
        at: DateTime<Utc>,
    ) -> Result<Warehouse, WarehouseError> {
        let mut tx = self.pool.begin().await?;
        if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            return decode(&answer);
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO warehouse_warehouses \
                 (id, code, name, address, lat, lng, status, capacity, priority, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {WAREHOUSE_COLUMNS}"
        )))
        .bind(Uuid::now_v7())
        .bind(w.code.as_str())
        .bind(&w.name)
        .bind(&w.address)
        .bind(w.location.lat)
        .bind(w.location.lng)
        .bind(WarehouseStatus::Active.as_str())
        .bind(w.capacity)
        .bind(w.priority)
        .bind(at)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            if violates(&e, CODE_TAKEN) {
                WarehouseError::CodeTaken(w.code.as_str().to_owned())
            } else {
                e.into()
            }
        })?;
        let warehouse = warehouse_of(&row)?;
        self.publish(&mut tx, "warehouse.warehouse_created", &json!(warehouse))
            .await?;
        idempotency::finish(&mut tx, key, &encode(&warehouse)?).await?;
        tx.commit().await?;
        Ok(warehouse)
    }

    async fn set_status(
        &self,
        key: &idempotency::Key,
        code: &WarehouseCode,
        status: WarehouseStatus,
    ) -> Result<Warehouse, WarehouseError> {
        let mut tx = self.pool.begin().await?;
        if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            return decode(&answer);
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE warehouse_warehouses SET status = $2 WHERE code = $1 \
             RETURNING {WAREHOUSE_COLUMNS}"
        )))
        .bind(code.as_str())
        .bind(status.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| WarehouseError::UnknownWarehouse(code.as_str().to_owned()))?;
        let warehouse = warehouse_of(&row)?;
        self.publish(
            &mut tx,
            "warehouse.warehouse_status_changed",
            &json!(warehouse),
        )
        .await?;
        idempotency::finish(&mut tx, key, &encode(&warehouse)?).await?;
        tx.commit().await?;
        Ok(warehouse)
    }

    async fn warehouses(
        &self,
        after: Option<&WarehouseCode>,
        limit: u32,
    ) -> Result<Vec<Warehouse>, WarehouseError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {WAREHOUSE_COLUMNS} FROM warehouse_warehouses \
             WHERE $1::TEXT IS NULL OR code > $1 ORDER BY code LIMIT $2"
        )))
        .bind(after.map(WarehouseCode::as_str))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(warehouse_of).collect()
    }

    async fn create_bin(
        &self,
        key: &idempotency::Key,
        warehouse: &WarehouseCode,
        zone: &ZoneCode,
        bin: &BinCode,
        capacity: i64,
    ) -> Result<Bin, WarehouseError> {
        let mut tx = self.pool.begin().await?;
        if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            return decode(&answer);
        }
        // The warehouse row's lock serialises bins added to it, so the sum stays true.
        let (warehouse_id, total) = Self::warehouse_id(&mut tx, warehouse, true).await?;
        let allotted: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(capacity), 0)::BIGINT FROM warehouse_bins WHERE warehouse_id = $1",
        )
        .bind(warehouse_id)
        .fetch_one(&mut *tx)
        .await?;
        if allotted + capacity > total {
            return Err(WarehouseError::OverCapacity {
                warehouse: warehouse.as_str().to_owned(),
                capacity: total,
                allotted,
                wanted: capacity,
            });
        }
        sqlx::query(
            "INSERT INTO warehouse_zones (warehouse_id, code) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING",
        )
        .bind(warehouse_id)
        .bind(zone.as_str())
        .execute(&mut *tx)
        .await?;
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO warehouse_bins (id, warehouse_id, zone, code, capacity) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(warehouse_id)
        .bind(zone.as_str())
        .bind(bin.as_str())
        .bind(capacity)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if violates(&e, BIN_TAKEN) {
                WarehouseError::BinTaken {
                    warehouse: warehouse.as_str().to_owned(),
                    bin: bin.as_str().to_owned(),
                }
            } else {
                e.into()
            }
        })?;
        let answer = Bin {
            id,
            warehouse: warehouse.as_str().to_owned(),
            zone: zone.as_str().to_owned(),
            code: bin.as_str().to_owned(),
            capacity,
        };
        idempotency::finish(&mut tx, key, &encode(&answer)?).await?;
        tx.commit().await?;
        Ok(answer)
    }

    async fn change(
        &self,
        key: &idempotency::Key,
        change: &Change,
    ) -> Result<Moved, WarehouseError> {
        let mut tx = self.pool.begin().await?;
        if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            return decode(&answer);
        }
        let row = Self::resolve(&mut tx, &change.place, change.delta.available.max(0)).await?;
        let why = Why {
            reference: &change.reference,
            reservation: None,
            transfer: None,
            by: &change.by,
            at: change.at,
        };
        let (id, level) = Self::apply(&mut tx, &row, change.delta, why).await?;
        let moved = Moved {
            movements: vec![id],
            levels: vec![level],
        };
        self.publish(
            &mut tx,
            "warehouse.stock_changed",
            &moved_event(
                change.delta.kind.as_str(),
                &moved,
                &change.reference,
                &change.by,
            ),
        )
        .await?;
        idempotency::finish(&mut tx, key, &encode(&moved)?).await?;
        tx.commit().await?;
        Ok(moved)
    }

    async fn transfer(
        &self,
        key: &idempotency::Key,
        t: &Transfer,
    ) -> Result<Moved, WarehouseError> {
        let mut tx = self.pool.begin().await?;
        if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            return decode(&answer);
        }
        let from = Self::resolve(&mut tx, &t.from, 0).await?;
        let to = Self::resolve(&mut tx, &t.to, t.quantity.get()).await?;
        let transfer = Uuid::now_v7();
        let why = Why {
            reference: &t.reference,
            reservation: None,
            transfer: Some(transfer),
            by: &t.by,
            at: t.at,
        };
        // Both stock rows in the one lock order; the answer keeps from, then to.
        let mut legs = [
            (&from, Delta::transfer(t.quantity, true), 0),
            (&to, Delta::transfer(t.quantity, false), 1),
        ];
        legs.sort_by(|a, b| a.0.cmp(b.0));
        let mut done = Vec::with_capacity(2);
        for (row, delta, leg) in legs {
            let (id, level) = Self::apply(&mut tx, row, delta, why).await?;
            done.push((leg, id, level));
        }
        done.sort_by_key(|d| d.0);
        let moved = Moved {
            movements: done.iter().map(|d| d.1).collect(),
            levels: done.into_iter().map(|d| d.2).collect(),
        };
        self.publish(
            &mut tx,
            "warehouse.stock_changed",
            &moved_event("TRANSFER", &moved, &t.reference, &t.by),
        )
        .await?;
        idempotency::finish(&mut tx, key, &encode(&moved)?).await?;
        tx.commit().await?;
        Ok(moved)
    }

    async fn stock(&self, product_id: &str, limit: u32) -> Result<Vec<Level>, WarehouseError> {
        let rows: Vec<(String, String, String, i64, i64)> = sqlx::query_as(
            "SELECT w.code, b.code, s.product_id, s.available, s.reserved \
             FROM warehouse_stock s \
             JOIN warehouse_warehouses w ON w.id = s.warehouse_id \
             JOIN warehouse_bins b ON b.id = s.bin_id \
             WHERE s.product_id = $1 ORDER BY w.code, b.code LIMIT $2",
        )
        .bind(product_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(warehouse, bin, product_id, available, reserved)| Level {
                warehouse,
                bin,
                product_id,
                available,
                reserved,
            })
            .collect())
    }

    async fn movements(
        &self,
        warehouse: &WarehouseCode,
        product_id: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Movement>, WarehouseError> {
        let mut conn = self.pool.acquire().await?;
        let (warehouse_id, _) = Self::warehouse_id(&mut conn, warehouse, false).await?;
        let rows = sqlx::query(
            "SELECT m.id, b.code AS bin, m.product_id, m.type, m.available_delta, \
                    m.reserved_delta, m.reference, m.by_user, m.at \
             FROM warehouse_movements m JOIN warehouse_bins b ON b.id = m.bin_id \
             WHERE m.warehouse_id = $1 AND m.product_id = $2 \
               AND ($3::BIGINT IS NULL OR m.id < $3) \
             ORDER BY m.id DESC LIMIT $4",
        )
        .bind(warehouse_id)
        .bind(product_id)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Movement {
                    id: r.try_get("id")?,
                    warehouse: warehouse.as_str().to_owned(),
                    bin: r.try_get("bin")?,
                    product_id: r.try_get("product_id")?,
                    kind: r.try_get("type")?,
                    available_delta: r.try_get("available_delta")?,
                    reserved_delta: r.try_get("reserved_delta")?,
                    reference: r.try_get("reference")?,
                    by: r.try_get("by_user")?,
                    at: r.try_get("at")?,
                })
            })
            .collect()
    }

    async fn reserve(
        &self,
        key: &idempotency::Key,
        order: &Order,
    ) -> Result<Reservation, WarehouseError> {
        let mut tx = self.pool.begin().await?;
        if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            return decode(&answer);
        }
        sqlx::query(
            "INSERT INTO warehouse_reservations \
                 (id, order_id, status, expires_at, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(order.id)
        .bind(&order.order_id)
        .bind(ReservationStatus::Reserved.as_str())
        .bind(order.expires_at)
        .bind(&order.by)
        .bind(order.at)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if violates(&e, OPEN_ORDER) {
                WarehouseError::OrderReserved(order.order_id.clone())
            } else {
                e.into()
            }
        })?;
        let rows = sqlx::query(
            "SELECT id, code, status, lat, lng, priority FROM warehouse_warehouses \
             WHERE status = $1",
        )
        .bind(WarehouseStatus::Active.as_str())
        .fetch_all(&mut *tx)
        .await?;
        let mut warehouses = Vec::with_capacity(rows.len());
        let mut codes = BTreeMap::new();
        for r in &rows {
            let code: String = r.try_get("code")?;
            let stored = |e: crate::domain::InputError| corrupt(format!("stored warehouse: {e}"));
            let status: String = r.try_get("status")?;
            warehouses.push(Candidate {
                id: r.try_get("id")?,
                code: WarehouseCode::parse("code", &code).map_err(stored)?,
                status: WarehouseStatus::from_name(&status)
                    .ok_or_else(|| corrupt(format!("unknown warehouse status {status:?}")))?,
                location: Location::parse("location", r.try_get("lat")?, r.try_get("lng")?)
                    .map_err(stored)?,
                priority: r.try_get("priority")?,
            });
            codes.insert(warehouses[warehouses.len() - 1].id, code);
        }
        let ids: Vec<Uuid> = warehouses.iter().map(|w| w.id).collect();
        let products: Vec<&str> = order.lines.iter().map(|l| l.product_id.as_str()).collect();
        // Locked in the one order; allocation then reads a snapshot no one else can change.
        let rows: Vec<(Uuid, String, Uuid, String, i64)> = sqlx::query_as(
            "SELECT s.warehouse_id, s.product_id, s.bin_id, b.code, s.available \
             FROM warehouse_stock s JOIN warehouse_bins b ON b.id = s.bin_id \
             WHERE s.warehouse_id = ANY($1) AND s.product_id = ANY($2) AND s.available > 0 \
             ORDER BY s.warehouse_id, s.product_id COLLATE \"C\", s.bin_id \
             FOR UPDATE OF s",
        )
        .bind(&ids)
        .bind(&products)
        .fetch_all(&mut *tx)
        .await?;
        let stock = rows
            .into_iter()
            .map(|(warehouse_id, product_id, bin_id, bin, available)| {
                Ok(Stocked {
                    warehouse_id,
                    product_id,
                    bin_id,
                    bin: stored_bin(&bin)?,
                    available,
                })
            })
            .collect::<Result<Vec<_>, WarehouseError>>()?;
        let allocation = allocate(
            &order.lines,
            &order.destination,
            order.preference,
            &warehouses,
            &stock,
        );
        if allocation.picks.is_empty() {
            return Err(WarehouseError::OutOfStock(allocation.short));
        }
        let short: Vec<Short> = allocation
            .short
            .iter()
            .map(|s| Short {
                product_id: s.product_id.clone(),
                requested: s.requested,
                short: s.short,
            })
            .collect();
        let why = Why {
            reference: &order.order_id,
            reservation: Some(order.id),
            transfer: None,
            by: &order.by,
            at: order.at,
        };
        for (line, pick) in allocation.picks.iter().enumerate() {
            let row = StockRow {
                warehouse_id: pick.warehouse_id,
                product_id: pick.product_id.clone(),
                bin_id: pick.bin_id,
                warehouse: codes.get(&pick.warehouse_id).cloned().unwrap_or_default(),
                bin: pick.bin.as_str().to_owned(),
            };
            Self::apply(&mut tx, &row, Delta::reserve(pick.quantity), why).await?;
            sqlx::query(
                "INSERT INTO warehouse_reservation_lines \
                     (reservation_id, line, warehouse_id, product_id, bin_id, quantity) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(order.id)
            .bind(i32::try_from(line).map_err(|_| corrupt("too many reservation lines"))?)
            .bind(pick.warehouse_id)
            .bind(&pick.product_id)
            .bind(pick.bin_id)
            .bind(pick.quantity.get())
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE warehouse_reservations SET short = $2 WHERE id = $1")
            .bind(order.id)
            .bind(sqlx::types::Json(&short))
            .execute(&mut *tx)
            .await?;
        let reservation = Self::load_reservation(&mut tx, order.id)
            .await?
            .ok_or(WarehouseError::UnknownReservation(order.id))?;
        self.publish(
            &mut tx,
            "warehouse.reserved",
            &reservation_event(&reservation),
        )
        .await?;
        idempotency::finish(&mut tx, key, &encode(&reservation)?).await?;
        tx.commit().await?;
        Ok(reservation)
    }

    async fn advance(
        &self,
        key: &idempotency::Key,
        id: Uuid,
        action: ReservationAction,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<Reservation, WarehouseError> {
        let mut tx = self.pool.begin().await?;
        if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            return decode(&answer);
        }
        let from: Vec<&str> = action.leaves_from().iter().map(|s| s.as_str()).collect();
        let moved = sqlx::query(
            "UPDATE warehouse_reservations SET status = $2, updated_at = $4 \
             WHERE id = $1 AND status = ANY($3)",
        )
        .bind(id)
        .bind(action.target().as_str())
        .bind(&from)
        .bind(at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved == 0 {
            let current: String =
                sqlx::query_scalar("SELECT status FROM warehouse_reservations WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or(WarehouseError::UnknownReservation(id))?;
            let current = ReservationStatus::from_name(&current)
                .ok_or_else(|| corrupt(format!("unknown reservation status {current:?}")))?;
            return Err(action.apply(current).err().map_or_else(
                || corrupt("a reservation moved under its guard"),
                WarehouseError::Illegal,
            ));
        }
        let mut done = self.settle(&mut tx, &[id], action, by, at).await?;
        let reservation = done.pop().ok_or(WarehouseError::UnknownReservation(id))?;
        idempotency::finish(&mut tx, key, &encode(&reservation)?).await?;
        tx.commit().await?;
        Ok(reservation)
    }

    async fn reservation(&self, id: Uuid) -> Result<Option<Reservation>, WarehouseError> {
        let mut conn = self.pool.acquire().await?;
        Self::load_reservation(&mut conn, id).await
    }

    async fn expire(&self, now: DateTime<Utc>, limit: u32) -> Result<u32, WarehouseError> {
        let mut tx = self.pool.begin().await?;
        // One runner across replicas: the others skip this round.
        let leader: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext('warehouse_expiry'))")
                .fetch_one(&mut *tx)
                .await?;
        if !leader {
            // Ended here, not on drop: a dropped transaction's ROLLBACK waits for the
            // connection's next use, and the lock with it.
            tx.rollback().await?;
            return Ok(0);
        }
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE warehouse_reservations SET status = $1, updated_at = $2 \
             WHERE id IN (SELECT id FROM warehouse_reservations \
                          WHERE status = $3 AND expires_at <= $2 \
                          ORDER BY expires_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
             RETURNING id",
        )
        .bind(ReservationStatus::Expired.as_str())
        .bind(now)
        .bind(ReservationStatus::Reserved.as_str())
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        if ids.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        self.settle(&mut tx, &ids, ReservationAction::Expire, EXPIRY, now)
            .await?;
        tx.commit().await?;
        tracing::info!(expired = ids.len(), "released expired reservations");
        u32::try_from(ids.len()).map_err(|_| corrupt("more reservations expired than asked"))
    }

    async fn slots(
        &self,
        warehouse: &WarehouseCode,
        product_id: &str,
    ) -> Result<Vec<Slot>, WarehouseError> {
        let mut conn = self.pool.acquire().await?;
        let (warehouse_id, _) = Self::warehouse_id(&mut conn, warehouse, false).await?;
        let rows: Vec<(Uuid, String, i64, i64, bool)> = sqlx::query_as(
            "SELECT b.id, b.code, b.capacity, \
                    COALESCE(SUM(s.available + s.reserved), 0)::BIGINT, \
                    COALESCE(BOOL_OR(s.product_id = $2 AND s.available + s.reserved > 0), false) \
             FROM warehouse_bins b LEFT JOIN warehouse_stock s ON s.bin_id = b.id \
             WHERE b.warehouse_id = $1 GROUP BY b.id, b.code, b.capacity",
        )
        .bind(warehouse_id)
        .bind(product_id)
        .fetch_all(&mut *conn)
        .await?;
        rows.into_iter()
            .map(|(bin_id, code, capacity, used, holds_product)| {
                Ok(Slot {
                    bin_id,
                    code: stored_bin(&code)?,
                    capacity,
                    used,
                    holds_product,
                })
            })
            .collect()
    }

    async fn open_lines(
        &self,
        warehouse: &WarehouseCode,
        limit: u32,
    ) -> Result<Vec<(BinCode, PickLine)>, WarehouseError> {
        let mut conn = self.pool.acquire().await?;
        let (warehouse_id, _) = Self::warehouse_id(&mut conn, warehouse, false).await?;
        let rows: Vec<(String, String, i64, Uuid, String)> = sqlx::query_as(
            "SELECT b.code, l.product_id, l.quantity, r.id, r.order_id \
             FROM warehouse_reservations r \
             JOIN warehouse_reservation_lines l ON l.reservation_id = r.id \
             JOIN warehouse_bins b ON b.id = l.bin_id \
             WHERE r.status = $2 AND l.warehouse_id = $1 \
             ORDER BY r.created_at, r.id, l.line LIMIT $3",
        )
        .bind(warehouse_id)
        .bind(ReservationStatus::Reserved.as_str())
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        rows.into_iter()
            .map(|(bin, product_id, quantity, reservation_id, order_id)| {
                Ok((
                    stored_bin(&bin)?,
                    PickLine {
                        bin,
                        product_id,
                        quantity,
                        reservation_id,
                        order_id,
                    },
                ))
            })
            .collect()
    }
}
