//! A stream's analytics rows from ClickHouse's `analytics_events` (docs/analytics.md is the
//! contract; only the analytics service writes it). Events reach it from this service's
//! outbox through the bus: `livestream.watched` and `livestream.purchased`, both carrying the
//! `stream_id` in their payload (kept as `properties`). Every value is bound.

use ::clickhouse::{Client, Row};
use chrono::NaiveDate;
use serde::Deserialize;

use crate::{
    app::{AnalyticsSource, Fut},
    domain::{
        StreamId,
        analytics::{Order, ViewerMinutes},
    },
};

#[derive(Debug, Clone)]
pub struct ChAnalytics {
    client: Client,
}

impl ChAnalytics {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

/// A row of `watched.sql`.
#[derive(Debug, Row, Deserialize)]
struct WatchedRow {
    user_id: String,
    minutes: Vec<u32>,
}

/// Days since 1970-01-01, as `toDate` reads a number.
fn day_number(d: NaiveDate) -> u32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    u32::try_from((d - epoch).num_days()).unwrap_or(0)
}

impl AnalyticsSource for ChAnalytics {
    fn rows(
        &self,
        stream: StreamId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Fut<'_, (Vec<ViewerMinutes>, Vec<Order>)> {
        Box::pin(async move {
            let id = stream.to_string();
            let viewers = self
                .client
                .query(include_str!("sql/watched.sql"))
                .bind(day_number(from))
                .bind(day_number(to))
                .bind(&id)
                .fetch_all::<WatchedRow>()
                .await?
                .into_iter()
                .map(|r| ViewerMinutes {
                    user_id: r.user_id,
                    minutes: r.minutes,
                })
                .collect();
            let orders = self
                .client
                .query(include_str!("sql/orders.sql"))
                .bind(day_number(from))
                .bind(day_number(to))
                .bind(&id)
                .fetch_all::<(String, String, i64, String)>()
                .await?
                .into_iter()
                .map(|(order_id, user_id, revenue_minor, currency)| Order {
                    order_id,
                    user_id,
                    revenue_minor,
                    currency,
                })
                .collect();
            Ok((viewers, orders))
        })
    }
}
