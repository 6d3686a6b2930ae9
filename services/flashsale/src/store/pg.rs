//! PostgreSQL: sales and orders. Admin changes and orders are written with their idempotency
//! key, and an order with its `flashsale.purchased` event, in one transaction each.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row, postgres::PgRow};
use titan_kit::{
    KitError,
    events::{Envelope, outbox},
    idempotency::{self, Begin},
    money::Money,
};
use uuid::Uuid;

use crate::{
    app::{FlashSaleError, Order, Result, SaleStore, Sold},
    domain::{AdminState, FlashSale, SERVICE, SaleId, SaleSpec},
};

#[derive(Debug, Clone)]
pub struct PgSales {
    pool: PgPool,
}

impl PgSales {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

const SALE_COLUMNS: &str = "id, product_id, currency, original_minor, sale_minor, total_quantity, max_per_user, \
                            starts_at, ends_at, pow_difficulty, state, warmed_up";

fn corrupt(what: &str) -> FlashSaleError {
    FlashSaleError::Kit(KitError::Other(format!(
        "flashsale_sales row has an invalid {what}"
    )))
}

fn sale_from_row(row: &PgRow) -> Result<FlashSale> {
    let currency: String = row.try_get("currency")?;
    let money = |col: &str| -> Result<Money> {
        Money::parse(row.try_get::<i64, _>(col)?, &currency).map_err(|_| corrupt(col))
    };
    let u32_col = |col: &str| -> Result<u32> {
        u32::try_from(row.try_get::<i32, _>(col)?).map_err(|_| corrupt(col))
    };
    let state: String = row.try_get("state")?;
    Ok(FlashSale {
        id: SaleId::from(row.try_get::<Uuid, _>("id")?),
        spec: SaleSpec {
            product_id: row.try_get("product_id")?,
            original_price: money("original_minor")?,
            sale_price: money("sale_minor")?,
            total_quantity: u32_col("total_quantity")?,
            max_per_user: u32_col("max_per_user")?,
            starts_at: row.try_get("starts_at")?,
            ends_at: row.try_get("ends_at")?,
            pow_difficulty: u32_col("pow_difficulty")?,
        },
        state: AdminState::parse(&state).ok_or_else(|| corrupt("state"))?,
        warmed_up: row.try_get("warmed_up")?,
    })
}

fn order_from_row(row: &PgRow) -> Result<Order> {
    let currency: String = row.try_get("currency")?;
    let money = |col: &str| -> Result<Money> {
        Money::parse(row.try_get::<i64, _>(col)?, &currency).map_err(|_| corrupt(col))
    };
    Ok(Order {
        id: row.try_get("id")?,
        sale_id: SaleId::from(row.try_get::<Uuid, _>("sale_id")?),
        reservation_id: row.try_get("reservation_id")?,
        user_id: row.try_get("user_id")?,
        quantity: u32::try_from(row.try_get::<i32, _>("quantity")?)
            .map_err(|_| corrupt("quantity"))?,
        unit_price: money("unit_minor")?,
        total: money("total_minor")?,
        payment_reference: row.try_get("payment_reference")?,
        created_at: row.try_get("created_at")?,
    })
}

fn sold((reservation, user, quantity): (String, String, i32)) -> Result<Sold> {
    Ok(Sold {
        reservation,
        user,
        quantity: u32::try_from(quantity).map_err(|_| corrupt("order quantity"))?,
    })
}

fn i32_of(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Rows per query of a person's export and erasure: every page is read, so nothing is left
/// out, and no single query is unbounded.
const PAGE: u32 = 500;

/// A person's records (`titan_kit::privacy`): read whole for an export, pseudonymised for an
/// erasure.
impl PgSales {
    /// Every order of any of `users`, by id (all of them, a page at a time).
    pub async fn orders_of_users(&self, users: &[&str]) -> Result<Vec<Order>> {
        let mut orders: Vec<Order> = Vec::new();
        loop {
            let rows = sqlx::query(
                "SELECT * FROM flashsale_orders
                 WHERE user_id = ANY($1) AND ($2::UUID IS NULL OR id > $2)
                 ORDER BY id LIMIT $3",
            )
            .bind(users)
            .bind(orders.last().map(|o| o.id))
            .bind(i64::from(PAGE))
            .fetch_all(&self.pool)
            .await?;
            let full = rows.len() == PAGE as usize;
            for row in &rows {
                orders.push(order_from_row(row)?);
            }
            if !full {
                return Ok(orders);
            }
        }
    }

    /// A page of the sales ever warmed, by id after `after`: the sales whose Redis keys may
    /// hold a buyer's reservations, replays, counts and budgets.
    pub async fn warmed_sales(&self, after: Option<SaleId>) -> Result<Vec<SaleId>> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM flashsale_sales WHERE warmed_up AND ($1::UUID IS NULL OR id > $1)
             ORDER BY id LIMIT $2",
        )
        .bind(after.map(|s| s.uuid()))
        .bind(i64::from(PAGE))
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(SaleId::from).collect())
    }

    /// Puts `pseudonym` in place of `user` on their orders, which stay for the accounts;
    /// returns how many.
    pub async fn pseudonymise_orders(&self, user: &str, pseudonym: &str) -> Result<u64> {
        Ok(
            sqlx::query("UPDATE flashsale_orders SET user_id = $2 WHERE user_id = $1")
                .bind(user)
                .bind(pseudonym)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}

impl SaleStore for PgSales {
    async fn save(&self, key: &idempotency::Key, sale: &FlashSale, create: bool) -> Result<SaleId> {
        let mut tx = self.pool.begin().await?;
        if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            let id = String::from_utf8_lossy(&answer).into_owned();
            return SaleId::parse(&id).map_err(|_| corrupt("idempotent answer"));
        }
        let s = &sale.spec;
        let sql = if create {
            "INSERT INTO flashsale_sales (id, product_id, currency, original_minor, sale_minor, total_quantity,
                max_per_user, starts_at, ends_at, pow_difficulty, state)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        } else {
            // Guarded: the state is not written (a concurrent cancel or end stays), and a sale
            // that is no longer scheduled is not edited at all.
            "UPDATE flashsale_sales SET product_id = $2, currency = $3, original_minor = $4, sale_minor = $5,
                total_quantity = $6, max_per_user = $7, starts_at = $8, ends_at = $9, pow_difficulty = $10,
                updated_at = now()
             WHERE id = $1 AND state = $11"
        };
        let written = sqlx::query(sql)
            .bind(sale.id.uuid())
            .bind(&s.product_id)
            .bind(s.original_price.currency.as_str())
            .bind(s.original_price.minor_units)
            .bind(s.sale_price.minor_units)
            .bind(i32_of(s.total_quantity))
            .bind(i32_of(s.max_per_user))
            .bind(s.starts_at)
            .bind(s.ends_at)
            .bind(i32_of(s.pow_difficulty))
            .bind(if create {
                sale.state.as_str()
            } else {
                AdminState::Scheduled.as_str()
            })
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if written == 0 {
            let state: String =
                sqlx::query_scalar("SELECT state FROM flashsale_sales WHERE id = $1")
                    .bind(sale.id.uuid())
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or(FlashSaleError::SaleNotFound(sale.id))?;
            let what = AdminState::parse(&state).ok_or_else(|| corrupt("state"))?;
            return Err(FlashSaleError::SaleClosed {
                id: sale.id,
                what: what.as_str(),
            });
        }
        idempotency::finish(&mut tx, key, sale.id.to_string().as_bytes()).await?;
        tx.commit().await?;
        Ok(sale.id)
    }

    async fn set_state(&self, key: &idempotency::Key, id: SaleId, state: AdminState) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if let Begin::Replay(_) = idempotency::begin(&mut tx, key).await? {
            return Ok(());
        }
        sqlx::query("UPDATE flashsale_sales SET state = $2, updated_at = now() WHERE id = $1")
            .bind(id.uuid())
            .bind(state.as_str())
            .execute(&mut *tx)
            .await?;
        idempotency::finish(&mut tx, key, b"").await?;
        tx.commit().await?;
        Ok(())
    }

    async fn mark_warmed(&self, id: SaleId) -> Result<()> {
        sqlx::query(
            "UPDATE flashsale_sales SET warmed_up = true, updated_at = now() WHERE id = $1",
        )
        .bind(id.uuid())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get(&self, id: SaleId) -> Result<Option<FlashSale>> {
        let sql = format!("SELECT {SALE_COLUMNS} FROM flashsale_sales WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.uuid())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(sale_from_row).transpose()
    }

    async fn list_open(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<FlashSale>> {
        let sql = format!(
            "SELECT {SALE_COLUMNS} FROM flashsale_sales WHERE state = 'scheduled' AND ends_at > $1
             ORDER BY starts_at, id LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(sale_from_row).collect()
    }

    async fn list_unwarmed(
        &self,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<FlashSale>> {
        let sql = format!(
            "SELECT {SALE_COLUMNS} FROM flashsale_sales
             WHERE state = 'scheduled' AND NOT warmed_up AND starts_at <= $2 AND ends_at > $1 ORDER BY starts_at, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(until)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(sale_from_row).collect()
    }

    async fn list_warmed(&self, now: DateTime<Utc>) -> Result<Vec<FlashSale>> {
        let sql = format!(
            "SELECT {SALE_COLUMNS} FROM flashsale_sales
             WHERE warmed_up AND ends_at > $1 - interval '1 day' ORDER BY starts_at, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(sale_from_row).collect()
    }

    async fn record_order(
        &self,
        key: &idempotency::Key,
        order: &Order,
        event: &Envelope,
    ) -> Result<Order> {
        let mut tx = self.pool.begin().await?;
        if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            return serde_json::from_slice(&answer).map_err(|_| corrupt("idempotent answer"));
        }
        let inserted = sqlx::query(
            "INSERT INTO flashsale_orders (id, sale_id, reservation_id, user_id, quantity, currency, unit_minor,
                total_minor, payment_reference, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (reservation_id) DO NOTHING",
        )
        .bind(order.id)
        .bind(order.sale_id.uuid())
        .bind(&order.reservation_id)
        .bind(&order.user_id)
        .bind(i32_of(order.quantity))
        .bind(order.unit_price.currency.as_str())
        .bind(order.unit_price.minor_units)
        .bind(order.total.minor_units)
        .bind(&order.payment_reference)
        .bind(order.created_at)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let recorded = if inserted {
            outbox::write(&mut tx, SERVICE, event).await?;
            order.clone()
        } else {
            // Confirmed before under another request_id: the reservation's order is the answer.
            let row = sqlx::query("SELECT * FROM flashsale_orders WHERE reservation_id = $1")
                .bind(&order.reservation_id)
                .fetch_one(&mut *tx)
                .await?;
            order_from_row(&row)?
        };
        let answer = serde_json::to_vec(&recorded).map_err(|e| KitError::Other(e.to_string()))?;
        idempotency::finish(&mut tx, key, &answer).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    async fn orders_of(&self, id: SaleId) -> Result<Vec<Sold>> {
        let rows: Vec<(String, String, i32)> = sqlx::query_as(
            "SELECT reservation_id, user_id, quantity FROM flashsale_orders WHERE sale_id = $1",
        )
        .bind(id.uuid())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(sold).collect()
    }

    async fn orders_for(&self, reservations: &[String]) -> Result<Vec<Sold>> {
        let rows: Vec<(String, String, i32)> = sqlx::query_as(
            "SELECT reservation_id, user_id, quantity FROM flashsale_orders
             WHERE reservation_id = ANY($1)",
        )
        .bind(reservations)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(sold).collect()
    }

    async fn recorded(&self, key: &idempotency::Key, reservation: &str) -> Result<Option<Order>> {
        let mut conn = self.pool.acquire().await?;
        if let Some(answer) = idempotency::peek(&mut conn, key).await? {
            return serde_json::from_slice(&answer)
                .map(Some)
                .map_err(|_| corrupt("idempotent answer"));
        }
        let row = sqlx::query("SELECT * FROM flashsale_orders WHERE reservation_id = $1")
            .bind(reservation)
            .fetch_optional(&mut *conn)
            .await?;
        row.as_ref().map(order_from_row).transpose()
    }

    async fn units_sold(&self, id: SaleId) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COALESCE(sum(quantity), 0)::BIGINT FROM flashsale_orders WHERE sale_id = $1",
        )
        .bind(id.uuid())
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
