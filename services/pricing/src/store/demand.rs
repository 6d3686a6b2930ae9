//! ClickHouse: demand signals from the analytics service's `analytics_events` table
//! (docs/analytics.md is the contract). One query per batch of products.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use clickhouse::Client;

use crate::{
    app::{DemandSource, Result},
    domain::{ProductId, Signals},
};

#[derive(Debug, Clone)]
pub struct ChDemand {
    client: Client,
}

impl ChDemand {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

fn seconds(at: DateTime<Utc>) -> u32 {
    u32::try_from(at.timestamp()).unwrap_or(0)
}

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()
}

fn day_number(d: NaiveDate) -> u32 {
    u32::try_from((d - epoch()).num_days()).unwrap_or(0)
}

/// The filter of `signals.sql` that limits it to a batch; a whole round reads every product.
const BATCH_FILTER: &str = "AND product_id IN (SELECT arrayJoin(?))";

/// `(product_id, views_24h, views_7d, carts_24h, purchases_24h, purchases_7d)`.
type SignalRow = (String, u64, u64, u64, u64, u64);

fn collect(rows: Vec<SignalRow>) -> HashMap<ProductId, Signals> {
    let mut out = HashMap::with_capacity(rows.len());
    for (id, views_24h, views_7d, carts_24h, purchases_24h, purchases_7d) in rows {
        // An event may name a product id pricing would refuse; no rule can price it.
        if let Ok(id) = ProductId::parse("product_id", &id) {
            out.insert(
                id,
                Signals {
                    views_24h,
                    views_7d,
                    carts_24h,
                    purchases_24h,
                    purchases_7d,
                    inventory: 0.0,
                },
            );
        }
    }
    out
}

impl DemandSource for ChDemand {
    async fn signals(
        &self,
        products: &[ProductId],
        now: DateTime<Utc>,
    ) -> Result<HashMap<ProductId, Signals>> {
        let ids: Vec<&str> = products.iter().map(ProductId::as_str).collect();
        let t = seconds(now);
        let rows = self
            .client
            .query(include_str!("sql/signals.sql"))
            .bind(t)
            .bind(t)
            .bind(t)
            .bind(t)
            .bind(t)
            .bind(t)
            .bind(ids)
            .fetch_all::<SignalRow>()
            .await?;
        Ok(collect(rows))
    }

    async fn all_signals(&self, now: DateTime<Utc>) -> Result<HashMap<ProductId, Signals>> {
        let t = seconds(now);
        let sql = include_str!("sql/signals.sql").replace(BATCH_FILTER, "AND product_id != ''");
        let rows = self
            .client
            .query(&sql)
            .bind(t)
            .bind(t)
            .bind(t)
            .bind(t)
            .bind(t)
            .bind(t)
            .fetch_all::<SignalRow>()
            .await?;
        Ok(collect(rows))
    }

    async fn daily_sales(
        &self,
        product: &ProductId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(NaiveDate, u64)>> {
        let rows = self
            .client
            .query(include_str!("sql/daily_sales.sql"))
            .bind(product.as_str())
            .bind(day_number(from))
            .bind(day_number(to))
            .fetch_all::<(u16, u64)>()
            .await?;
        Ok(rows
            .into_iter()
            .map(|(day, orders)| (epoch() + chrono::Duration::days(i64::from(day)), orders))
            .collect())
    }
}
