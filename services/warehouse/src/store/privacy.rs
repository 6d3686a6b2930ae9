//! A person's records for the privacy jobs (`crate::privacy`): the warehouse keeps stock by
//! product and reservations by order, so the only person it names is whoever acted — the
//! token subject on each stock movement (`by_user`: floor staff, admins) and on each
//! reservation (`created_by`: usually the checkout service, an admin otherwise). Both are the
//! ledger, which must add up: an erasure keeps them under the pseudonym
//! (docs/warehouse.md#privacy).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::app::WarehouseError;

pub type Result<T> = std::result::Result<T, WarehouseError>;

/// A stock movement the person made, with the warehouse's and the bin's codes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct MovementRecord {
    pub id: i64,
    pub warehouse: String,
    pub bin: String,
    pub product_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub available_delta: i64,
    pub reserved_delta: i64,
    pub reference: String,
    pub reservation_id: Option<Uuid>,
    pub transfer_id: Option<Uuid>,
    pub at: DateTime<Utc>,
}

/// A reservation the person made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ReservationRecord {
    pub id: Uuid,
    pub order_id: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
}

/// Everything the service holds about one person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Records {
    pub user_id: String,
    /// Oldest first.
    pub movements: Vec<MovementRecord>,
    /// Oldest first.
    pub reservations: Vec<ReservationRecord>,
}

/// What an erasure did, by kind of record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    pub movements: u64,
    pub reservations: u64,
}

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
        let movements = sqlx::query_as(
            "SELECT m.id, w.code AS warehouse, b.code AS bin, m.product_id, m.type AS kind,
                    m.available_delta, m.reserved_delta, m.reference, m.reservation_id,
                    m.transfer_id, m.at
             FROM warehouse_movements m
             JOIN warehouse_warehouses w ON w.id = m.warehouse_id
             JOIN warehouse_bins b ON b.id = m.bin_id
             WHERE m.by_user = $1 ORDER BY m.id",
        )
        .bind(user)
        .fetch_all(&mut *tx)
        .await?;
        let reservations = sqlx::query_as(
            "SELECT id, order_id, status, created_at FROM warehouse_reservations
             WHERE created_by = $1 ORDER BY created_at, id",
        )
        .bind(user)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Records {
            user_id: user.to_owned(),
            movements,
            reservations,
        })
    }

    /// Replaces `user` by `pseudonym` on the ledger, in one transaction; no unique index
    /// holds either column. A second run finds nothing and reports zeros.
    pub async fn erase(&self, user: &str, pseudonym: &str) -> Result<Erased> {
        let mut tx = self.pool.begin().await?;
        let movements =
            sqlx::query("UPDATE warehouse_movements SET by_user = $2 WHERE by_user = $1")
                .bind(user)
                .bind(pseudonym)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        let reservations =
            sqlx::query("UPDATE warehouse_reservations SET created_by = $2 WHERE created_by = $1")
                .bind(user)
                .bind(pseudonym)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        tx.commit().await?;
        Ok(Erased {
            movements,
            reservations,
        })
    }
}
