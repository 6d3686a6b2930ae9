//! PostgreSQL: coupons, redemptions and per-shopper uses, the record. A redemption is written
//! with its idempotency key and its `coupon.redeemed` event in one transaction, and its
//! increments are guarded (`uses < total_limit`, per-shopper `uses < per_user_limit`, and a
//! CHECK on the table), so the limits hold here even if Redis drifted.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row, postgres::PgRow};
use titan_kit::{
    KitError,
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

#[derive(Debug, Clone)]
pub struct PgCoupons {
    pool: PgPool,
}

impl PgCoupons {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
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

    async fn redeem(
        &self,
        key: &idempotency::Key,
        rows: &[(Redemption, u32, u32, Envelope)],
    ) -> Result<Recorded> {
        let mut tx = self.pool.begin().await?;
        if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            return Ok(Recorded::Done(
                serde_json::from_slice(&answer).map_err(corrupt)?,
            ));
        }
        // Coupons are always taken in code order, so two orders never wait on each other crosswise.
        let mut ordered: Vec<&(Redemption, u32, u32, Envelope)> = rows.iter().collect();
        ordered.sort_by(|a, b| a.0.code.cmp(&b.0.code));
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
                let row = sqlx::query(
                    "SELECT * FROM coupon_redemptions WHERE code = $1 AND order_id = $2",
                )
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
