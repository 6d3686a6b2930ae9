//! PostgreSQL: products, rules, current prices, price history, competitor observations and the
//! lease of the scheduled round. A batch of price changes is one transaction: the current
//! prices are locked, the no-flap decision is taken against them, and prices, history rows and
//! `pricing.changed` events are written with one statement each.

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
    app::{
        Candidate, Change, MAX_RULES, Price, PriceChanged, PricingError, PricingStore, Product,
        Result,
    },
    domain::{
        CompetitorPrice, Ending, PRICE_CHANGED, ProductId, Rule, SERVICE, Segment, Strategy,
        Target, price::decide,
    },
};

#[derive(Debug, Clone)]
pub struct PgPricing {
    pool: PgPool,
    cell: String,
}

impl PgPricing {
    pub fn new(pool: PgPool, cell: String) -> Self {
        Self { pool, cell }
    }
}

fn corrupt(what: impl Into<String>) -> PricingError {
    PricingError::Kit(KitError::Other(what.into()))
}

fn money(minor: i64, currency: &str) -> Result<Money> {
    Money::parse(minor, currency).map_err(|e| corrupt(format!("stored price: {e}")))
}

fn product_id(s: String) -> Result<ProductId> {
    ProductId::parse("product_id", &s).map_err(|e| corrupt(format!("stored product: {e}")))
}

fn segment(s: &str) -> Result<Segment> {
    Segment::parse("segment", s).map_err(|e| corrupt(format!("stored segment: {e}")))
}

/// The current prices of a batch's products (every segment), in key order: `= ANY` is an index
/// scan of the primary key, where a join with the keys' UNNEST was planned as a scan of every
/// price per batch.
macro_rules! current_prices_sql {
    () => {
        "SELECT product_id, segment, currency, amount FROM pricing_prices
          WHERE product_id = ANY($1) ORDER BY product_id, segment"
    };
}

/// The columns of a rule, in the order of the INSERT below.
macro_rules! rule_columns {
    () => {
        "id, product_id, category, strategy, currency, base_price, min_price, max_price, \
         priority, price_ending, min_step, created_at"
    };
}

fn rule_of(row: &PgRow) -> Result<Rule> {
    let currency: String = row.try_get("currency")?;
    let target = match (
        row.try_get::<Option<String>, _>("product_id")?,
        row.try_get::<Option<String>, _>("category")?,
    ) {
        (Some(p), None) => Target::Product(product_id(p)?),
        (None, Some(c)) => Target::Category(c),
        _ => {
            return Err(corrupt(
                "a rule has both or neither of product and category",
            ));
        }
    };
    let strategy: Strategy = serde_json::from_value(row.try_get("strategy")?)
        .map_err(|e| corrupt(format!("stored strategy: {e}")))?;
    let ending: String = row.try_get("price_ending")?;
    Ok(Rule {
        id: row.try_get("id")?,
        target,
        strategy,
        base: money(row.try_get("base_price")?, &currency)?,
        min: money(row.try_get("min_price")?, &currency)?,
        max: money(row.try_get("max_price")?, &currency)?,
        priority: row.try_get("priority")?,
        ending: Ending::parse("price_ending", &ending)
            .map_err(|e| corrupt(format!("stored ending: {e}")))?,
        min_step: row.try_get("min_step")?,
        created_at: row.try_get("created_at")?,
    })
}

fn product_of(row: &PgRow) -> Result<Product> {
    Ok(Product {
        id: product_id(row.try_get("product_id")?)?,
        category: row.try_get("category")?,
        inventory_bps: u32::try_from(row.try_get::<i32, _>("inventory_bps")?)
            .map_err(|e| corrupt(e.to_string()))?,
    })
}

fn change_of(row: &PgRow) -> Result<Change> {
    let currency: String = row.try_get("currency")?;
    Ok(Change {
        id: row.try_get("id")?,
        product_id: product_id(row.try_get("product_id")?)?,
        segment: segment(row.try_get("segment")?)?,
        old: row
            .try_get::<Option<i64>, _>("old_amount")?
            .map(|m| money(m, &currency))
            .transpose()?,
        new: money(row.try_get("new_amount")?, &currency)?,
        rule_id: row.try_get("rule_id")?,
        strategy: row.try_get("strategy")?,
        inputs: row.try_get("inputs")?,
        reason: row.try_get("reason")?,
        changed_at: row.try_get("changed_at")?,
    })
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| corrupt(e.to_string()))
}

type Current = std::collections::HashMap<(String, String), Money>;

fn lookup(current: &Current, c: &Candidate) -> Option<Money> {
    current
        .get(&(
            c.product_id.as_str().to_owned(),
            c.computed.segment.as_str().to_owned(),
        ))
        .copied()
}

/// The current prices of `candidates`' products; with `lock`, their rows are locked in key
/// order, so two rounds over overlapping batches cannot deadlock.
async fn current_prices(
    conn: &mut sqlx::PgConnection,
    candidates: &[Candidate],
    lock: bool,
) -> Result<Current> {
    let mut products: Vec<&str> = candidates.iter().map(|c| c.product_id.as_str()).collect();
    products.dedup();
    let query = if lock {
        sqlx::query(concat!(current_prices_sql!(), " FOR UPDATE"))
    } else {
        sqlx::query(current_prices_sql!())
    };
    let rows = query.bind(&products).fetch_all(&mut *conn).await?;
    let mut current = Current::with_capacity(rows.len());
    for row in &rows {
        let currency: String = row.try_get("currency")?;
        current.insert(
            (row.try_get("product_id")?, row.try_get("segment")?),
            money(row.try_get("amount")?, &currency)?,
        );
    }
    Ok(current)
}

impl PricingStore for PgPricing {
    async fn put_product(
        &self,
        key: &idempotency::Key,
        product: &Product,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if let Begin::Fresh = idempotency::begin(&mut tx, key).await? {
            sqlx::query(
                "INSERT INTO pricing_products (product_id, category, inventory_bps, updated_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (product_id) DO UPDATE
                   SET category = EXCLUDED.category, inventory_bps = EXCLUDED.inventory_bps,
                       updated_at = EXCLUDED.updated_at",
            )
            .bind(product.id.as_str())
            .bind(&product.category)
            .bind(i32::try_from(product.inventory_bps).unwrap_or(i32::MAX))
            .bind(at)
            .execute(&mut *tx)
            .await?;
            idempotency::finish(&mut tx, key, b"{}").await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn create_rule(&self, key: &idempotency::Key, rule: &Rule) -> Result<Rule> {
        let mut tx = self.pool.begin().await?;
        let id = match idempotency::begin(&mut tx, key).await? {
            Begin::Replay(answer) => {
                serde_json::from_slice::<Uuid>(&answer).map_err(|e| corrupt(e.to_string()))?
            }
            Begin::Fresh => {
                // Serialises rule creation so two creations cannot both pass the count.
                sqlx::query("LOCK TABLE pricing_rules IN SHARE ROW EXCLUSIVE MODE")
                    .execute(&mut *tx)
                    .await?;
                let count: i64 = sqlx::query_scalar("SELECT count(*) FROM pricing_rules")
                    .fetch_one(&mut *tx)
                    .await?;
                if count >= i64::try_from(MAX_RULES).unwrap_or(i64::MAX) {
                    return Err(PricingError::TooManyRules);
                }
                let (product, category) = match &rule.target {
                    Target::Product(p) => (Some(p.as_str()), None),
                    Target::Category(c) => (None, Some(c.as_str())),
                };
                sqlx::query(concat!(
                    "INSERT INTO pricing_rules (",
                    rule_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                ))
                .bind(rule.id)
                .bind(product)
                .bind(category)
                .bind(serde_json::to_value(&rule.strategy).map_err(|e| corrupt(e.to_string()))?)
                .bind(rule.base.currency.as_str())
                .bind(rule.base.minor_units)
                .bind(rule.min.minor_units)
                .bind(rule.max.minor_units)
                .bind(rule.priority)
                .bind(rule.ending.map(Ending::as_string).unwrap_or_default())
                .bind(rule.min_step)
                .bind(rule.created_at)
                .execute(&mut *tx)
                .await?;
                idempotency::finish(&mut tx, key, &encode(&rule.id)?).await?;
                rule.id
            }
        };
        let row = sqlx::query(concat!(
            "SELECT ",
            rule_columns!(),
            " FROM pricing_rules WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        match row {
            Some(row) => rule_of(&row),
            // The first call's rule was deleted since: a replay answers with what was created.
            None => Ok(rule.clone()),
        }
    }

    async fn delete_rule(&self, key: &idempotency::Key, id: Uuid) -> Result<Option<Rule>> {
        let mut tx = self.pool.begin().await?;
        let rule = match idempotency::begin(&mut tx, key).await? {
            Begin::Replay(answer) => serde_json::from_slice::<Option<Rule>>(&answer)
                .map_err(|e| corrupt(e.to_string()))?,
            Begin::Fresh => {
                let row = sqlx::query(concat!(
                    "DELETE FROM pricing_rules WHERE id = $1 RETURNING ",
                    rule_columns!()
                ))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                let rule = row.as_ref().map(rule_of).transpose()?;
                idempotency::finish(&mut tx, key, &encode(&rule)?).await?;
                rule
            }
        };
        tx.commit().await?;
        Ok(rule)
    }

    async fn rules(&self) -> Result<Vec<Rule>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            rule_columns!(),
            " FROM pricing_rules ORDER BY id LIMIT $1"
        ))
        .bind(i64::try_from(MAX_RULES).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rule_of).collect()
    }

    async fn products_after(
        &self,
        after: Option<&ProductId>,
        category: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Product>> {
        let rows = sqlx::query(
            "SELECT product_id, category, inventory_bps FROM pricing_products
              WHERE product_id > $1 AND ($2::text IS NULL OR category = $2)
              ORDER BY product_id LIMIT $3",
        )
        .bind(after.map_or("", ProductId::as_str))
        .bind(category)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(product_of).collect()
    }

    async fn products(&self, ids: &[ProductId]) -> Result<Vec<Product>> {
        let ids: Vec<&str> = ids.iter().map(ProductId::as_str).collect();
        let rows = sqlx::query(
            "SELECT product_id, category, inventory_bps FROM pricing_products
              WHERE product_id = ANY($1) ORDER BY product_id",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(product_of).collect()
    }

    async fn competitor_prices(
        &self,
        products: &[ProductId],
        since: DateTime<Utc>,
    ) -> Result<Vec<(ProductId, CompetitorPrice)>> {
        let ids: Vec<&str> = products.iter().map(ProductId::as_str).collect();
        // Each competitor's newest observation per product: older ones never count.
        let rows = sqlx::query(
            "SELECT DISTINCT ON (product_id, competitor)
                    product_id, competitor, source, currency, amount, observed_at
               FROM pricing_competitor_prices
              WHERE product_id = ANY($1) AND observed_at >= $2
              ORDER BY product_id, competitor, observed_at DESC, id DESC",
        )
        .bind(ids)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let currency: String = row.try_get("currency")?;
                Ok((
                    product_id(row.try_get("product_id")?)?,
                    CompetitorPrice {
                        competitor: row.try_get("competitor")?,
                        source: row.try_get("source")?,
                        price: money(row.try_get("amount")?, &currency)?,
                        observed_at: row.try_get("observed_at")?,
                    },
                ))
            })
            .collect()
    }

    async fn record_competitor_price(
        &self,
        key: &idempotency::Key,
        product: &ProductId,
        o: &CompetitorPrice,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if let Begin::Fresh = idempotency::begin(&mut tx, key).await? {
            sqlx::query(
                "INSERT INTO pricing_competitor_prices
                    (product_id, competitor, source, currency, amount, observed_at, recorded_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(product.as_str())
            .bind(&o.competitor)
            .bind(&o.source)
            .bind(o.price.currency.as_str())
            .bind(o.price.minor_units)
            .bind(o.observed_at)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            idempotency::finish(&mut tx, key, b"{}").await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn apply(&self, candidates: &[Candidate], at: DateTime<Utc>) -> Result<Vec<Change>> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        // Most of a round's prices do not move: an unlocked read finds the candidates that
        // may change, and only those are locked and decided again in the transaction.
        let mut conn = self.pool.acquire().await?;
        let current = current_prices(&mut conn, candidates, false).await?;
        drop(conn);
        let maybe: Vec<Candidate> = candidates
            .iter()
            .filter(|c| decide(&c.rule, lookup(&current, c), &c.computed))
            .cloned()
            .collect();
        if maybe.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await?;
        let current = current_prices(&mut tx, &maybe, true).await?;
        let changed: Vec<(&Candidate, Option<Money>)> = maybe
            .iter()
            .filter_map(|c| {
                let old = lookup(&current, c);
                decide(&c.rule, old, &c.computed).then_some((c, old))
            })
            .collect();
        if changed.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let n = changed.len();
        let (mut p, mut s, mut cur, mut old, mut new, mut rule, mut strat, mut inputs, mut reason) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (c, o) in &changed {
            p.push(c.product_id.as_str());
            s.push(c.computed.segment.as_str());
            cur.push(c.computed.price.currency.as_str());
            old.push(o.map(|m| m.minor_units));
            new.push(c.computed.price.minor_units);
            rule.push(c.rule.id);
            strat.push(c.computed.strategy);
            inputs.push(c.computed.inputs.clone());
            reason.push(c.computed.reason.as_str());
        }
        sqlx::query(
            "INSERT INTO pricing_prices (product_id, segment, currency, amount, rule_id, strategy, updated_at)
             SELECT * , $7::timestamptz FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::uuid[], $6::text[])
             ON CONFLICT (product_id, segment) DO UPDATE
               SET currency = EXCLUDED.currency, amount = EXCLUDED.amount, rule_id = EXCLUDED.rule_id,
                   strategy = EXCLUDED.strategy, updated_at = EXCLUDED.updated_at,
                   tx = pg_current_xact_id()::text::bigint",
        )
        .bind(&p)
        .bind(&s)
        .bind(&cur)
        .bind(&new)
        .bind(&rule)
        .bind(&strat)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        let rows = sqlx::query(
            "INSERT INTO pricing_history
                (product_id, segment, currency, old_amount, new_amount, rule_id, strategy, inputs, reason, changed_at)
             SELECT h.product_id, h.segment, h.currency, h.old_amount, h.new_amount, h.rule_id,
                    h.strategy, h.inputs, h.reason, $10::timestamptz
               FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::uuid[],
                           $7::text[], $8::jsonb[], $9::text[]) WITH ORDINALITY
                    AS h(product_id, segment, currency, old_amount, new_amount, rule_id, strategy, inputs, reason, n)
              ORDER BY h.n
             RETURNING id, product_id, segment, currency, old_amount, new_amount, rule_id, strategy, inputs, reason, changed_at",
        )
        .bind(&p)
        .bind(&s)
        .bind(&cur)
        .bind(&old)
        .bind(&new)
        .bind(&rule)
        .bind(&strat)
        .bind(&inputs)
        .bind(&reason)
        .bind(at)
        .fetch_all(&mut *tx)
        .await;
        let rows = rows?;
        let changes: Vec<Change> = rows.iter().map(change_of).collect::<Result<_>>()?;
        let events = changes
            .iter()
            .map(|c| {
                Envelope::new(
                    &self.cell,
                    PRICE_CHANGED,
                    1,
                    &PriceChanged {
                        product_id: c.product_id.as_str(),
                        segment: c.segment.as_str(),
                        old_price: c.old,
                        new_price: c.new,
                        strategy: &c.strategy,
                        rule_id: c.rule_id,
                        reason: &c.reason,
                        changed_at: c.changed_at,
                    },
                )
            })
            .collect::<Result<Vec<_>, KitError>>()?;
        outbox::write_all(&mut tx, SERVICE, &events).await?;
        tx.commit().await?;
        Ok(changes)
    }

    async fn prices_since(&self, since: Option<i64>) -> Result<(Vec<Price>, i64)> {
        let mut conn = self.pool.acquire().await?;
        // Any transaction that commits after the read below has an id at or above this
        // horizon, so the next refresh from it misses nothing.
        let horizon: i64 =
            sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
                .fetch_one(&mut *conn)
                .await?;
        let rows = sqlx::query(
            "SELECT product_id, segment, currency, amount, rule_id, strategy, updated_at
               FROM pricing_prices WHERE tx >= $1",
        )
        .bind(since.unwrap_or(0))
        .fetch_all(&mut *conn)
        .await?;
        let prices = rows
            .iter()
            .map(|row| {
                let currency: String = row.try_get("currency")?;
                Ok(Price {
                    product_id: product_id(row.try_get("product_id")?)?,
                    segment: segment(row.try_get("segment")?)?,
                    price: money(row.try_get("amount")?, &currency)?,
                    rule_id: row.try_get("rule_id")?,
                    strategy: row.try_get("strategy")?,
                    updated_at: row.try_get("updated_at")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((prices, horizon))
    }

    async fn history(
        &self,
        product: &ProductId,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Change>> {
        let rows = sqlx::query(
            "SELECT id, product_id, segment, currency, old_amount, new_amount, rule_id, strategy,
                    inputs, reason, changed_at
               FROM pricing_history WHERE product_id = $1 AND id < $2
              ORDER BY id DESC LIMIT $3",
        )
        .bind(product.as_str())
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(change_of).collect()
    }

    async fn price_path(
        &self,
        product: &ProductId,
        since: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, i64)>> {
        let rows: Vec<(DateTime<Utc>, i64)> = sqlx::query_as(
            "(SELECT changed_at, new_amount FROM pricing_history
               WHERE product_id = $1 AND segment = '' AND changed_at < $2
               ORDER BY id DESC LIMIT 1)
             UNION ALL
             (SELECT changed_at, new_amount FROM pricing_history
               WHERE product_id = $1 AND segment = '' AND changed_at >= $2
               ORDER BY id)",
        )
        .bind(product.as_str())
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    async fn claim_round(
        &self,
        instance: &str,
        now: DateTime<Utc>,
        interval: chrono::Duration,
        lease: chrono::Duration,
    ) -> Result<bool> {
        let claimed = sqlx::query(
            "UPDATE pricing_schedule
                SET next_run_at = $2, running_until = $3, run_by = $4
              WHERE name = 'reoptimize' AND next_run_at <= $1 AND running_until <= $1",
        )
        .bind(now)
        .bind(now + interval)
        .bind(now + lease)
        .bind(instance)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(claimed == 1)
    }

    async fn release_round(&self, instance: &str) -> Result<()> {
        sqlx::query(
            "UPDATE pricing_schedule SET running_until = '-infinity'
              WHERE name = 'reoptimize' AND run_by = $1",
        )
        .bind(instance)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
