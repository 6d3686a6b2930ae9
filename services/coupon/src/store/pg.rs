//! PostgreSQL: coupons, redemptions and per-shopper uses, the record. A redemption is written
//! with its idempotency key and its `coupon.redeemed` event in one transaction, and its
//! increments are guarded (`uses < total_limit`, per-shopper `uses < per_user_limit`, and a
//! CHECK on the table), so the limits hold here even if Redis drifted.
//!
//! Redemptions are group-committed: concurrent orders are written by a few writer tasks, each
//! taking what has queued (kit's `Batcher`) and writing it in one transaction of two
//! statements — the idempotency keys with their answers, then one statement for redemptions,
//! uses and events. When any order of a batch is not a fresh one within its limits, that
//! transaction is rolled back and each order is written alone, step by step, which answers
//! replays, held coupons and limits exactly as before.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row, postgres::PgRow};
use titan_kit::{
    KitError,
    batch::{BatchOptions, Batcher},
    events::{Envelope, outbox},
    idempotency::{self, Begin},
    money::Money,
};

use crate::{
    app::{
        CouponError, CouponStore, LedgerEntry, Recorded, Redemption, Result, StoredCoupon, Usage,
    },
    domain::{Coupon, CouponCode, CouponSpec, Refusal, SERVICE},
};

/// One order's redemptions waiting for the group commit.
#[derive(Debug)]
struct Pending {
    key: idempotency::Key,
    rows: Vec<RedemptionRow>,
}

/// A redemption with its coupon's total and per-shopper limits and its event.
type RedemptionRow = (Redemption, u32, u32, Envelope);

#[derive(Debug, Clone)]
pub struct PgCoupons {
    pool: PgPool,
    redemptions: Batcher<Pending, Result<Recorded>>,
}

impl PgCoupons {
    /// Starts the redemption writers on the current Tokio runtime.
    pub fn new(pool: PgPool) -> Self {
        let writers = pool.clone();
        Self {
            redemptions: Batcher::spawn(
                "coupon_redemptions",
                BatchOptions::default(),
                move |batch| redeem_batch(writers.clone(), batch),
            ),
            pool,
        }
    }
}

fn corrupt(what: impl std::fmt::Display) -> CouponError {
    KitError::Other(format!("coupon record is invalid: {what}")).into()
}

fn i32_of(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn u32_of(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

fn coupon_from_row(row: &PgRow) -> Result<StoredCoupon> {
    let spec: CouponSpec = serde_json::from_value(row.try_get("spec")?).map_err(corrupt)?;
    Ok(StoredCoupon {
        coupon: Coupon {
            spec,
            paused: row.try_get("paused")?,
        },
        uses: u32_of(i64::from(row.try_get::<i32, _>("uses")?)),
    })
}

fn redemption_from_row(row: &PgRow) -> Result<Redemption> {
    let code: String = row.try_get("code")?;
    let currency: String = row.try_get("currency")?;
    Ok(Redemption {
        id: row.try_get("id")?,
        code: CouponCode::parse(&code, u32::MAX).map_err(corrupt)?,
        campaign: row.try_get("campaign")?,
        order_id: row.try_get("order_id")?,
        user_id: row.try_get("user_id")?,
        discount: Money::parse(row.try_get("discount_minor")?, &currency).map_err(corrupt)?,
        reversed: row.try_get::<String, _>("status")? == "reversed",
        redeemed_at: row.try_get("created_at")?,
    })
}

const COUPON_COLUMNS: &str = "spec, paused, uses";

/// Usage of the redemptions matching `filter` (`code = ANY($1)` or `campaign = $1`), by `group`.
async fn usage_by(
    conn: &mut PgConnection,
    group: &str,
    filter: &str,
    bind: impl Fn(
        sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
) -> Result<BTreeMap<String, Usage>> {
    let counts = format!(
        "SELECT {group} AS k, count(*) FILTER (WHERE status = 'applied') AS applied,
                count(*) FILTER (WHERE status = 'reversed') AS reversed,
                count(DISTINCT user_id) FILTER (WHERE status = 'applied') AS users
         FROM coupon_redemptions WHERE {filter} GROUP BY {group}"
    );
    let mut out: BTreeMap<String, Usage> = BTreeMap::new();
    for row in bind(sqlx::query(sqlx::AssertSqlSafe(counts)))
        .fetch_all(&mut *conn)
        .await?
    {
        let u = out.entry(row.try_get("k")?).or_default();
        u.redemptions = u64::try_from(row.try_get::<i64, _>("applied")?).unwrap_or(0);
        u.reversals = u64::try_from(row.try_get::<i64, _>("reversed")?).unwrap_or(0);
        u.unique_users = u64::try_from(row.try_get::<i64, _>("users")?).unwrap_or(0);
    }
    let money = format!(
        "SELECT {group} AS k, currency, sum(discount_minor)::BIGINT AS given
         FROM coupon_redemptions WHERE {filter} AND status = 'applied' GROUP BY {group}, currency"
    );
    for row in bind(sqlx::query(sqlx::AssertSqlSafe(money)))
        .fetch_all(&mut *conn)
        .await?
    {
        out.entry(row.try_get("k")?)
            .or_default()
            .discount_given
            .insert(row.try_get("currency")?, row.try_get("given")?);
    }
    Ok(out)
}

/// Rows per query of a person's export and erasure: every page is read, so nothing is left
/// out, and no single query is unbounded.
const PAGE: u32 = 500;

/// What pseudonymising a shopper changed in the record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pseudonymised {
    pub redemptions: u64,
    /// Per-coupon use counts moved to the pseudonym (added to its count where it had one).
    pub uses: u64,
}

/// A person's records (`titan_kit::privacy`): read whole for an export, pseudonymised for an
/// erasure.
impl PgCoupons {
    /// Every redemption of any of `users`, by id (all of them, a page at a time).
    pub async fn redemptions_of_users(&self, users: &[&str]) -> Result<Vec<Redemption>> {
        let mut out: Vec<Redemption> = Vec::new();
        loop {
            let rows = sqlx::query(
                "SELECT * FROM coupon_redemptions
                 WHERE user_id = ANY($1) AND ($2::UUID IS NULL OR id > $2)
                 ORDER BY id LIMIT $3",
            )
            .bind(users)
            .bind(out.last().map(|r| r.id))
            .bind(i64::from(PAGE))
            .fetch_all(&self.pool)
            .await?;
            let full = rows.len() == PAGE as usize;
            for row in &rows {
                out.push(redemption_from_row(row)?);
            }
            if !full {
                return Ok(out);
            }
        }
    }

    /// `user`'s use count of each coupon they used, by code (all of them, a page at a time).
    pub async fn uses_of_user(&self, user: &str) -> Result<Vec<(String, u32)>> {
        let mut out: Vec<(String, u32)> = Vec::new();
        loop {
            let rows: Vec<(String, i32)> = sqlx::query_as(
                "SELECT code, uses FROM coupon_user_uses
                 WHERE user_id = $1 AND ($2::TEXT IS NULL OR code > $2)
                 ORDER BY code LIMIT $3",
            )
            .bind(user)
            .bind(out.last().map(|(code, _)| code.clone()))
            .bind(i64::from(PAGE))
            .fetch_all(&self.pool)
            .await?;
            let full = rows.len() == PAGE as usize;
            out.extend(
                rows.into_iter()
                    .map(|(code, uses)| (code, u32_of(i64::from(uses)))),
            );
            if !full {
                return Ok(out);
            }
        }
    }

    /// Puts `pseudonym` in place of `user` on their redemptions and use counts, in one
    /// transaction. A use count moves onto the pseudonym's count of the same coupon when there
    /// is one (the key is the coupon and the shopper), so each coupon's counts keep their sum.
    pub async fn pseudonymise(&self, user: &str, pseudonym: &str) -> Result<Pseudonymised> {
        let mut tx = self.pool.begin().await?;
        let redemptions =
            sqlx::query("UPDATE coupon_redemptions SET user_id = $2 WHERE user_id = $1")
                .bind(user)
                .bind(pseudonym)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        let uses = sqlx::query(
            "WITH moved AS (
                 DELETE FROM coupon_user_uses WHERE user_id = $1 RETURNING code, uses
             )
             INSERT INTO coupon_user_uses (code, user_id, uses)
             SELECT code, $2, uses FROM moved
             ON CONFLICT (code, user_id) DO UPDATE SET uses = coupon_user_uses.uses + EXCLUDED.uses",
        )
        .bind(user)
        .bind(pseudonym)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(Pseudonymised { redemptions, uses })
    }
}

impl CouponStore for PgCoupons {
    async fn create(&self, key: &idempotency::Key, coupons: &[Coupon]) -> Result<Vec<CouponCode>> {
        let mut tx = self.pool.begin().await?;
        if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            return serde_json::from_slice(&answer).map_err(corrupt);
        }
        let mut codes = Vec::with_capacity(coupons.len());
        let (mut kinds, mut campaigns, mut specs, mut totals, mut per_users, mut untils) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for c in coupons {
            let s = &c.spec;
            codes.push(s.code.to_string());
            kinds.push(s.kind.as_str());
            campaigns.push(s.campaign.clone());
            specs.push(serde_json::to_value(s).map_err(corrupt)?);
            totals.push(i32_of(s.total_limit));
            per_users.push(i32_of(s.per_user_limit));
            untils.push(s.valid_until);
        }
        let inserted: Vec<String> = sqlx::query_scalar(
            "INSERT INTO coupon_coupons (code, kind, campaign, spec, total_limit, per_user_limit, valid_until)
             SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::JSONB[], $5::INT[], $6::INT[], $7::TIMESTAMPTZ[])
             ON CONFLICT (code) DO NOTHING RETURNING code",
        )
        .bind(&codes)
        .bind(&kinds)
        .bind(&campaigns)
        .bind(&specs)
        .bind(&totals)
        .bind(&per_users)
        .bind(&untils)
        .fetch_all(&mut *tx)
        .await?;
        if inserted.len() < coupons.len() {
            let taken = coupons
                .iter()
                .find(|c| !inserted.iter().any(|i| i == c.spec.code.as_str()))
                .map(|c| c.spec.code.clone());
            return Err(taken.map_or_else(|| corrupt("insert count"), CouponError::AlreadyExists));
        }
        let created: Vec<CouponCode> = coupons.iter().map(|c| c.spec.code.clone()).collect();
        let answer = serde_json::to_vec(&created).map_err(corrupt)?;
        idempotency::finish(&mut tx, key, &answer).await?;
        tx.commit().await?;
        Ok(created)
    }

    async fn update(&self, key: &idempotency::Key, coupon: &Coupon) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if let Begin::Replay(_) = idempotency::begin(&mut tx, key).await? {
            return Ok(());
        }
        let s = &coupon.spec;
        let updated = sqlx::query(
            "UPDATE coupon_coupons SET kind = $2, campaign = $3, spec = $4, total_limit = $5,
                per_user_limit = $6, valid_until = $7, paused = $8, updated_at = now()
             WHERE code = $1 AND ($5 = 0 OR uses <= $5)",
        )
        .bind(s.code.as_str())
        .bind(s.kind.as_str())
        .bind(&s.campaign)
        .bind(serde_json::to_value(s).map_err(corrupt)?)
        .bind(i32_of(s.total_limit))
        .bind(i32_of(s.per_user_limit))
        .bind(s.valid_until)
        .bind(coupon.paused)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            let uses: Option<i32> =
                sqlx::query_scalar("SELECT uses FROM coupon_coupons WHERE code = $1")
                    .bind(s.code.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            return Err(match uses {
                None => Refusal::NotFound(s.code.clone()).into(),
                Some(uses) => CouponError::LimitBelowUses {
                    code: s.code.clone(),
                    limit: s.total_limit,
                    uses: u32_of(i64::from(uses)),
                },
            });
        }
        idempotency::finish(&mut tx, key, b"").await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get(&self, code: &CouponCode) -> Result<Option<StoredCoupon>> {
        let sql = format!("SELECT {COUPON_COLUMNS} FROM coupon_coupons WHERE code = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(code.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(coupon_from_row).transpose()
    }

    async fn list(
        &self,
        campaign: Option<&str>,
        after: Option<&CouponCode>,
        limit: u32,
    ) -> Result<Vec<StoredCoupon>> {
        let sql = format!(
            "SELECT {COUPON_COLUMNS} FROM coupon_coupons
             WHERE ($1::TEXT IS NULL OR campaign = $1) AND ($2::TEXT IS NULL OR code > $2)
             ORDER BY code LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(campaign)
            .bind(after.map(CouponCode::as_str))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(coupon_from_row).collect()
    }

    async fn usage(&self, codes: &[CouponCode]) -> Result<Vec<Usage>> {
        let names: Vec<&str> = codes.iter().map(CouponCode::as_str).collect();
        let mut conn = self.pool.acquire().await?;
        let mut by = usage_by(&mut conn, "code", "code = ANY($1)", |q| {
            q.bind(names.clone())
        })
        .await?;
        Ok(names
            .iter()
            .map(|c| by.remove(*c).unwrap_or_default())
            .collect())
    }

    async fn campaign_usage(&self, campaign: &str) -> Result<(Usage, u32)> {
        let mut conn = self.pool.acquire().await?;
        let usage = usage_by(&mut conn, "campaign", "campaign = $1", |q| {
            q.bind(campaign.to_owned())
        })
        .await?
        .remove(campaign)
        .unwrap_or_default();
        let coupons: i64 =
            sqlx::query_scalar("SELECT count(*) FROM coupon_coupons WHERE campaign = $1")
                .bind(campaign)
                .fetch_one(&mut *conn)
                .await?;
        Ok((usage, u32_of(coupons)))
    }

    async fn redeem(&self, key: idempotency::Key, rows: Vec<RedemptionRow>) -> Result<Recorded> {
        self.redemptions.submit(Pending { key, rows }).await?
    }

    async fn reverse(
        &self,
        key: &idempotency::Key,
        order_id: &str,
        events: &(dyn Fn(&Redemption, &str) -> Result<Envelope> + Sync),
    ) -> Result<Vec<Redemption>> {
        let mut tx = self.pool.begin().await?;
        if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            return serde_json::from_slice(&answer).map_err(corrupt);
        }
        let rows = sqlx::query(
            "SELECT r.*, c.kind FROM coupon_redemptions r JOIN coupon_coupons c USING (code)
             WHERE r.order_id = $1 ORDER BY r.code FOR UPDATE OF r",
        )
        .bind(order_id)
        .fetch_all(&mut *tx)
        .await?;
        let all = rows
            .iter()
            .map(|row| Ok((redemption_from_row(row)?, row.try_get::<String, _>("kind")?)))
            .collect::<Result<Vec<_>>>()?;
        if all.is_empty() {
            return Err(CouponError::OrderNotFound(order_id.to_owned()));
        }
        let mut reversed = Vec::new();
        for (mut r, kind) in all.into_iter().filter(|(r, _)| !r.reversed) {
            sqlx::query("UPDATE coupon_redemptions SET status = 'reversed', reversed_at = now() WHERE id = $1")
                .bind(r.id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE coupon_coupons SET uses = uses - 1, updated_at = now() WHERE code = $1",
            )
            .bind(r.code.as_str())
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE coupon_user_uses SET uses = uses - 1 WHERE code = $1 AND user_id = $2",
            )
            .bind(r.code.as_str())
            .bind(&r.user_id)
            .execute(&mut *tx)
            .await?;
            r.reversed = true;
            outbox::write(&mut tx, SERVICE, &events(&r, &kind)?).await?;
            reversed.push(r);
        }
        let answer = serde_json::to_vec(&reversed).map_err(corrupt)?;
        idempotency::finish(&mut tx, key, &answer).await?;
        tx.commit().await?;
        Ok(reversed)
    }

    async fn ledger(&self, code: &CouponCode) -> Result<Vec<LedgerEntry>> {
        let rows: Vec<(String, String, bool)> = sqlx::query_as(
            "SELECT order_id, user_id, status = 'applied' FROM coupon_redemptions WHERE code = $1",
        )
        .bind(code.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(order_id, user_id, applied)| LedgerEntry {
                order_id,
                user_id,
                applied,
            })
            .collect())
    }

    async fn live_uses(&self, now: DateTime<Utc>) -> Result<Vec<(CouponCode, u32)>> {
        let rows: Vec<(String, i32)> = sqlx::query_as(
            "SELECT code, uses FROM coupon_coupons WHERE valid_until > $1 - interval '1 day' ORDER BY code",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(code, uses)| {
                Ok((
                    CouponCode::parse(&code, u32::MAX).map_err(corrupt)?,
                    u32_of(i64::from(uses)),
                ))
            })
            .collect()
    }
}

/// Redemptions in the order their coupons are taken: by code, so two orders never wait on
/// each other crosswise.
fn in_code_order(rows: &[RedemptionRow]) -> Vec<&RedemptionRow> {
    let mut ordered: Vec<&RedemptionRow> = rows.iter().collect();
    ordered.sort_by(|a, b| a.0.code.cmp(&b.0.code));
    ordered
}

/// The group commit's handler: a batch (of one order too) is written together when every
/// order in it is fresh and within its limits, which is the common case under load; otherwise (a replay, a reused
/// request id, an order that already holds a coupon, a limit reached, or a conflict between
/// two writers) nothing of it is kept and each order is written alone, which answers each
/// precisely. One answer per order, in order.
async fn redeem_batch(pool: PgPool, batch: Vec<Pending>) -> Vec<Result<Recorded>> {
    // A single order too: two statements in its transaction instead of seven or more.
    match redeem_together(&pool, &batch).await {
        Ok(Some(answers)) => {
            return answers.into_iter().map(|a| Ok(Recorded::Done(a))).collect();
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, orders = batch.len(), "redemption batch failed; writing its orders one by one");
        }
    }
    let mut answers = Vec::with_capacity(batch.len());
    for p in &batch {
        answers.push(redeem_one(&pool, &p.key, &p.rows).await);
    }
    answers
}

/// Every row of a batch in one statement: the redemptions, the shoppers' uses and the
/// coupons' uses under the same guards as [`redeem_one`], and the events. `count` of each part
/// tells whether every row got through.
const REDEEM_BATCH: &str = concat!(
    "WITH input AS (
         SELECT * FROM UNNEST($6::uuid[], $7::text[], $8::text[], $9::text[], $10::text[],
                              $11::text[], $12::bigint[], $13::timestamptz[])
                AS t(id, code, campaign, order_id, user_id, currency, discount_minor, created_at)
     ), r AS (
         INSERT INTO coupon_redemptions (id, code, campaign, order_id, user_id, currency, discount_minor, status, created_at)
         SELECT id, code, campaign, order_id, user_id, currency, discount_minor, 'applied', created_at
           FROM input
         ON CONFLICT (code, order_id) DO NOTHING
         RETURNING id
     ), mine AS (
         SELECT i.code, i.user_id, count(*)::int AS n, c.per_user_limit
           FROM input i JOIN coupon_coupons c USING (code)
          GROUP BY i.code, i.user_id, c.per_user_limit
     ), u AS (
         INSERT INTO coupon_user_uses (code, user_id, uses)
         SELECT code, user_id, n FROM mine WHERE per_user_limit = 0 OR n <= per_user_limit
         ON CONFLICT (code, user_id) DO UPDATE SET uses = coupon_user_uses.uses + EXCLUDED.uses
          WHERE coupon_user_uses.uses + EXCLUDED.uses <= COALESCE(NULLIF(
                    (SELECT per_user_limit FROM coupon_coupons WHERE code = EXCLUDED.code), 0),
                    2147483647)
         RETURNING 1
     ), t AS (
         UPDATE coupon_coupons c SET uses = c.uses + k.n, updated_at = now()
           FROM (SELECT code, count(*)::int AS n FROM input GROUP BY code) k
          WHERE c.code = k.code AND (c.total_limit = 0 OR c.uses + k.n <= c.total_limit)
         RETURNING 1
     ), kept AS (
         SELECT id::text AS key FROM r
     ), ",
    titan_kit::outbox_cte!(),
    " SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM mine), (SELECT count(*) FROM u),
             (SELECT count(*) FROM t), (SELECT count(DISTINCT code) FROM input),
             (SELECT count(*) FROM outbox)"
);

/// Writes a batch of orders in one transaction of two statements, or nothing (`None`) when
/// any order of it needs to be written alone.
async fn redeem_together(pool: &PgPool, batch: &[Pending]) -> Result<Option<Vec<Vec<Redemption>>>> {
    let answers: Vec<Vec<Redemption>> = batch
        .iter()
        .map(|p| {
            in_code_order(&p.rows)
                .into_iter()
                .map(|r| r.0.clone())
                .collect()
        })
        .collect();
    let mut claims = Vec::with_capacity(batch.len());
    for (p, answer) in batch.iter().zip(&answers) {
        claims.push((&p.key, serde_json::to_vec(answer).map_err(corrupt)?));
    }
    let rows: Vec<&RedemptionRow> = batch.iter().flat_map(|p| &p.rows).collect();
    let mut events = outbox::Staged::new(SERVICE);
    let mut c = (
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
    );
    for (r, _, _, event) in &rows {
        events.push(&r.id.to_string(), event)?;
        c.0.push(r.id);
        c.1.push(r.code.as_str());
        c.2.push(r.campaign.as_str());
        c.3.push(r.order_id.as_str());
        c.4.push(r.user_id.as_str());
        c.5.push(r.discount.currency.as_str());
        c.6.push(r.discount.minor_units);
        c.7.push(r.redeemed_at);
    }
    let mut tx = pool.begin().await?;
    if idempotency::claim_all(&mut tx, &claims).await? != claims.len() as u64 {
        tx.rollback().await?;
        return Ok(None);
    }
    let counts = events
        .bind(sqlx::query(REDEEM_BATCH))
        .bind(c.0)
        .bind(c.1)
        .bind(c.2)
        .bind(c.3)
        .bind(c.4)
        .bind(c.5)
        .bind(c.6)
        .bind(c.7)
        .fetch_one(&mut *tx)
        .await?;
    let count = |i: usize| counts.try_get::<i64, _>(i);
    let n = rows.len() as i64;
    // Every redemption inserted, every shopper's use within its limit, every coupon within
    // its total, and an event for each: anything less leaves the batch to one-by-one.
    if count(0)? != n || count(2)? != count(1)? || count(3)? != count(4)? || count(5)? != n {
        tx.rollback().await?;
        return Ok(None);
    }
    tx.commit().await?;
    Ok(Some(answers))
}

/// Writes one order's redemptions alone, answering a replay, an order that holds a coupon
/// already, or a limit reached exactly.
async fn redeem_one(
    pool: &PgPool,
    key: &idempotency::Key,
    rows: &[RedemptionRow],
) -> Result<Recorded> {
    let mut tx = pool.begin().await?;
    if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
        return Ok(Recorded::Done(
            serde_json::from_slice(&answer).map_err(corrupt)?,
        ));
    }
    // Coupons are always taken in code order, so two orders never wait on each other crosswise.
    let ordered = in_code_order(rows);
    let mut done = Vec::with_capacity(rows.len());
    let mut fresh = Vec::with_capacity(rows.len());
    for (r, total_limit, per_user_limit, event) in ordered {
        let inserted = sqlx::query(
                "INSERT INTO coupon_redemptions (id, code, campaign, order_id, user_id, currency, discount_minor, status, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'applied', $8) ON CONFLICT (code, order_id) DO NOTHING",
            )
            .bind(r.id)
            .bind(r.code.as_str())
            .bind(&r.campaign)
            .bind(&r.order_id)
            .bind(&r.user_id)
            .bind(r.discount.currency.as_str())
            .bind(r.discount.minor_units)
            .bind(r.redeemed_at)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
        if !inserted {
            // The order holds this coupon already (another request_id): that is the answer.
            let row =
                sqlx::query("SELECT * FROM coupon_redemptions WHERE code = $1 AND order_id = $2")
                    .bind(r.code.as_str())
                    .bind(&r.order_id)
                    .fetch_one(&mut *tx)
                    .await?;
            let existing = redemption_from_row(&row)?;
            if existing.user_id != r.user_id {
                return Err(CouponError::NotOwner(r.order_id.clone()));
            }
            if existing.reversed {
                return Err(CouponError::AlreadyReversed {
                    code: r.code.clone(),
                    order: r.order_id.clone(),
                });
            }
            done.push(existing);
            continue;
        }
        let per_user: Option<i32> =
            sqlx::query_scalar("SELECT per_user_limit FROM coupon_coupons WHERE code = $1")
                .bind(r.code.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let mine = sqlx::query(
            "INSERT INTO coupon_user_uses (code, user_id, uses) VALUES ($1, $2, 1)
                 ON CONFLICT (code, user_id) DO UPDATE SET uses = coupon_user_uses.uses + 1
                 WHERE $3 = 0 OR coupon_user_uses.uses < $3",
        )
        .bind(r.code.as_str())
        .bind(&r.user_id)
        .bind(per_user.unwrap_or(0))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if mine == 0 {
            return Ok(Recorded::Refused(Refusal::UserLimitReached {
                code: r.code.clone(),
                limit: *per_user_limit,
            }));
        }
        outbox::write(&mut tx, SERVICE, event).await?;
        fresh.push((&r.code, *total_limit));
        done.push(r.clone());
    }
    // Every order of a coupon waits on its row here, so it is taken last (in code order) and
    // held only until the commit that follows.
    for (code, total_limit) in fresh {
        let taken = sqlx::query(
            "UPDATE coupon_coupons SET uses = uses + 1, updated_at = now()
                 WHERE code = $1 AND (total_limit = 0 OR uses < total_limit)",
        )
        .bind(code.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if taken == 0 {
            return Ok(Recorded::Refused(Refusal::Depleted {
                code: code.clone(),
                limit: total_limit,
            }));
        }
    }
    let answer = serde_json::to_vec(&done).map_err(corrupt)?;
    idempotency::finish(&mut tx, key, &answer).await?;
    tx.commit().await?;
    Ok(Recorded::Done(done))
}

#[cfg(test)]
mod tests {
    use titan_kit::{datastores::postgres, money::Money, testing::TestPostgres};
    use uuid::Uuid;

    use super::*;

    /// A coupon row as `create` leaves it (its spec is not read by these tests).
    async fn coupon(pool: &PgPool, code: &str, total_limit: i32, per_user_limit: i32) {
        sqlx::query(
            "INSERT INTO coupon_coupons (code, kind, spec, total_limit, per_user_limit, valid_until)
             VALUES ($1, 'fixed', '{}', $2, $3, now() + interval '1 day')",
        )
        .bind(code)
        .bind(total_limit)
        .bind(per_user_limit)
        .execute(pool)
        .await
        .expect("coupon");
    }

    fn order(code: &str, order_id: &str, user: &str) -> Pending {
        let r = Redemption {
            id: Uuid::now_v7(),
            code: CouponCode::parse(code, 32).expect("code"),
            campaign: "c".into(),
            order_id: order_id.into(),
            user_id: user.into(),
            discount: Money::parse(500, "USD").expect("money"),
            reversed: false,
            redeemed_at: Utc::now(),
        };
        let event = Envelope::new("test", "coupon.redeemed", 1, &r.id).expect("event");
        Pending {
            key: idempotency::Key::new(
                SERVICE,
                "RedeemCoupon",
                "checkout",
                order_id,
                code.as_bytes(),
            )
            .expect("key"),
            rows: vec![(r, 1, 1, event)],
        }
    }

    async fn pool() -> TestPostgres {
        let db = TestPostgres::new().await;
        postgres::migrate(&db.pool, "coupon", sqlx::migrate!("./migrations"))
            .await
            .expect("migrate");
        db
    }

    async fn count(pool: &PgPool, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
    }

    fn done(answer: &Result<Recorded>) -> Vec<Uuid> {
        match answer {
            Ok(Recorded::Done(rs)) => rs.iter().map(|r| r.id).collect(),
            other => panic!("not recorded: {other:?}"),
        }
    }

    #[tokio::test]
    async fn fresh_orders_are_written_together_and_replay_alike() {
        let db = pool().await;
        for code in ["A1", "B1", "C1"] {
            coupon(&db.pool, code, 1, 1).await;
        }
        let batch = vec![
            order("A1", "o1", "u1"),
            order("B1", "o2", "u2"),
            order("C1", "o3", "u1"),
        ];
        let ids: Vec<Uuid> = batch.iter().map(|p| p.rows[0].0.id).collect();
        let answers = redeem_together(&db.pool, &batch)
            .await
            .expect("batch")
            .expect("written together");
        assert_eq!(answers.iter().map(|a| a[0].id).collect::<Vec<_>>(), ids);
        assert_eq!(
            count(&db.pool, "SELECT count(*) FROM coupon_redemptions").await,
            3
        );
        assert_eq!(
            count(&db.pool, "SELECT sum(uses)::bigint FROM coupon_coupons").await,
            3
        );
        assert_eq!(
            count(&db.pool, "SELECT sum(uses)::bigint FROM coupon_user_uses").await,
            3
        );
        assert_eq!(
            count(
                &db.pool,
                "SELECT count(*) FROM titan_outbox WHERE service = 'coupon'"
            )
            .await,
            3
        );
        // The answer was recorded with the key: a retry alone is answered from it.
        let retry = order("A1", "o1", "u1");
        assert_eq!(
            done(&redeem_one(&db.pool, &retry.key, &retry.rows).await),
            vec![ids[0]]
        );
        assert_eq!(
            count(&db.pool, "SELECT count(*) FROM coupon_redemptions").await,
            3
        );
    }

    #[tokio::test]
    async fn a_batch_with_a_used_up_coupon_or_a_replay_is_written_order_by_order() {
        let db = pool().await;
        for code in ["A1", "B1", "C1"] {
            coupon(&db.pool, code, 1, 1).await;
        }
        let first = order("A1", "o1", "u1");
        let first_id = done(&redeem_one(&db.pool, &first.key, &first.rows).await);

        // A1 is used up by o1; o1 itself comes again; B1 and C1 are fresh.
        let batch = vec![
            order("B1", "o2", "u2"),
            order("A1", "o9", "u9"),
            order("A1", "o1", "u1"),
            order("C1", "o3", "u3"),
        ];
        assert!(
            redeem_together(&db.pool, &batch)
                .await
                .expect("batch")
                .is_none(),
            "the batch is not written together"
        );
        assert_eq!(
            count(&db.pool, "SELECT count(*) FROM coupon_redemptions").await,
            1,
            "nothing of the refused batch was kept"
        );
        let fresh: Vec<Uuid> = batch.iter().map(|p| p.rows[0].0.id).collect();
        let answers = redeem_batch(db.pool.clone(), batch).await;
        assert_eq!(done(&answers[0]), vec![fresh[0]]);
        assert!(
            matches!(&answers[1], Ok(Recorded::Refused(Refusal::Depleted { code, limit: 1 })) if code.as_str() == "A1"),
            "{:?}",
            answers[1]
        );
        assert_eq!(
            done(&answers[2]),
            first_id,
            "the replay answers the first redemption"
        );
        assert_eq!(done(&answers[3]), vec![fresh[3]]);
        assert_eq!(
            count(&db.pool, "SELECT count(*) FROM coupon_redemptions").await,
            3
        );
        assert_eq!(
            count(
                &db.pool,
                "SELECT count(*) FROM titan_outbox WHERE service = 'coupon'"
            )
            .await,
            3
        );
    }

    #[tokio::test]
    async fn a_shopper_over_the_per_user_limit_within_one_batch_is_refused_alone() {
        let db = pool().await;
        coupon(&db.pool, "MULTI", 0, 1).await;
        let batch = vec![
            order("MULTI", "o1", "u1"),
            order("MULTI", "o2", "u1"),
            order("MULTI", "o3", "u2"),
        ];
        assert!(
            redeem_together(&db.pool, &batch)
                .await
                .expect("batch")
                .is_none()
        );
        let answers = redeem_batch(db.pool.clone(), batch).await;
        assert_eq!(done(&answers[0]).len(), 1);
        assert!(
            matches!(
                &answers[1],
                Ok(Recorded::Refused(Refusal::UserLimitReached {
                    limit: 1,
                    ..
                }))
            ),
            "{:?}",
            answers[1]
        );
        assert_eq!(done(&answers[2]).len(), 1);
        assert_eq!(
            count(&db.pool, "SELECT uses::bigint FROM coupon_coupons").await,
            2
        );
    }
}
