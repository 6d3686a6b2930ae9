//! ClickHouse: the tables of docs/analytics.md (migrations), the row shapes inserted with the
//! `clickhouse` crate (RowBinary), the queries ([`queries`]) and a person's events for the
//! privacy jobs ([`privacy`]).

pub mod privacy;
pub mod queries;
mod rollup;

use chrono::{DateTime, NaiveDate, Utc};
use clickhouse::{Client, Row, RowOwned, RowWrite};
use serde::Serialize;
use titan_kit::{KitError, datastores::clickhouse::Migration};

use crate::{
    app::Sink,
    domain::{Event, MetricPoint},
};

pub const EVENTS: &str = "analytics_events";
pub const METRICS: &str = "analytics_metrics";

/// The schema; keep docs/analytics.md in step (a test compares them).
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "events",
        sql: "CREATE TABLE IF NOT EXISTS analytics_events (
    event_id    String,
    name        String,
    user_id     String,
    session_id  String,
    time        DateTime,
    time_ms     UInt16,
    date        Date,
    properties  String,
    device      String,
    platform    String,
    country     String,
    city        String,
    cell        String,
    product_id  String,
    order_id    String,
    page        String,
    revenue     Int64,
    currency    String,
    source      String,
    ingested_at DateTime
) ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(date)
ORDER BY (name, date, user_id, event_id)",
    },
    Migration {
        version: 2,
        description: "metrics",
        sql: "CREATE TABLE IF NOT EXISTS analytics_metrics (
    metric_id    String,
    name         String,
    time         DateTime,
    date         Date,
    value        Float64,
    label_keys   Array(String),
    label_values Array(String),
    cell         String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (name, date, metric_id)",
    },
    Migration {
        version: 3,
        description: "rows inserted per day",
        sql: "CREATE TABLE IF NOT EXISTS analytics_day_inserts (
    date  Date,
    cell  String,
    rows  UInt64
) ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (date, cell)",
    },
    Migration {
        version: 4,
        description: "rows inserted per day: counted on every insert",
        sql: "CREATE MATERIALIZED VIEW IF NOT EXISTS analytics_day_inserts_mv
TO analytics_day_inserts
AS SELECT date, cell, count() AS rows
FROM analytics_events
GROUP BY date, cell",
    },
    Migration {
        version: 5,
        description: "rows inserted per day: back-fill",
        sql: "INSERT INTO analytics_day_inserts (date, cell, rows)
SELECT date, cell, count() AS rows
FROM analytics_events
GROUP BY date, cell",
    },
    Migration {
        version: 6,
        description: "daily activity",
        sql: "CREATE TABLE IF NOT EXISTS analytics_days (
    date       Date,
    cell       String,
    inserted   UInt64,
    events     UInt64,
    users      UInt64,
    purchasers UInt64
) ENGINE = ReplacingMergeTree(inserted)
PARTITION BY toYYYYMM(date)
ORDER BY (date, cell)",
    },
    Migration {
        version: 7,
        description: "active days per user",
        sql: "CREATE TABLE IF NOT EXISTS analytics_user_days (
    block         UInt16,
    cell          String,
    user_id       String,
    days          AggregateFunction(groupBitOr, UInt64),
    purchase_days AggregateFunction(groupBitOr, UInt64)
) ENGINE = AggregatingMergeTree
PARTITION BY block
ORDER BY (cell, user_id)",
    },
    Migration {
        version: 8,
        description: "active days per user: set on every insert",
        sql: "CREATE MATERIALIZED VIEW IF NOT EXISTS analytics_user_days_mv
TO analytics_user_days
AS SELECT toUInt16(intDiv(toUInt32(date) - 4, 56)) AS block, cell, user_id,
    groupBitOrState(bitShiftLeft(toUInt64(1), toUInt8((toUInt32(date) - 4) % 56))) AS days,
    groupBitOrStateIf(bitShiftLeft(toUInt64(1), toUInt8((toUInt32(date) - 4) % 56)),
                      order_id != '' AND revenue > 0) AS purchase_days
FROM analytics_events
WHERE user_id != ''
GROUP BY block, cell, user_id",
    },
    Migration {
        version: 9,
        description: "active days per user: back-fill",
        sql: "INSERT INTO analytics_user_days (block, cell, user_id, days, purchase_days)
SELECT toUInt16(intDiv(toUInt32(date) - 4, 56)) AS block, cell, user_id,
    groupBitOrState(bitShiftLeft(toUInt64(1), toUInt8((toUInt32(date) - 4) % 56))) AS days,
    groupBitOrStateIf(bitShiftLeft(toUInt64(1), toUInt8((toUInt32(date) - 4) % 56)),
                      order_id != '' AND revenue > 0) AS purchase_days
FROM analytics_events
WHERE user_id != ''
GROUP BY block, cell, user_id",
    },
];

/// Days since 1970-01-01, ClickHouse's `Date` on the wire.
fn days(date: NaiveDate) -> u16 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or(NaiveDate::MIN);
    u16::try_from((date - epoch).num_days()).unwrap_or(0)
}

/// Seconds since 1970, ClickHouse's `DateTime` on the wire (events are checked to lie after
/// 2000; the far future saturates rather than wraps).
fn seconds(at: DateTime<Utc>) -> u32 {
    u32::try_from(at.timestamp().max(0)).unwrap_or(u32::MAX)
}

#[derive(Debug, Clone, Row, Serialize)]
pub struct EventRow {
    pub event_id: String,
    pub name: String,
    pub user_id: String,
    pub session_id: String,
    pub time: u32,
    pub time_ms: u16,
    pub date: u16,
    pub properties: String,
    pub device: String,
    pub platform: String,
    pub country: String,
    pub city: String,
    pub cell: String,
    pub product_id: String,
    pub order_id: String,
    pub page: String,
    pub revenue: i64,
    pub currency: String,
    pub source: String,
    pub ingested_at: u32,
}

impl EventRow {
    pub fn new(e: Event, now: DateTime<Utc>) -> Self {
        Self {
            time: seconds(e.at),
            time_ms: u16::try_from(e.at.timestamp_subsec_millis()).unwrap_or(0),
            date: days(e.at.date_naive()),
            ingested_at: seconds(now),
            source: e.source.as_str().to_owned(),
            event_id: e.event_id,
            name: e.name,
            user_id: e.user_id,
            session_id: e.session_id,
            properties: e.properties,
            device: e.device,
            platform: e.platform,
            country: e.country,
            city: e.city,
            cell: e.cell,
            product_id: e.product_id,
            order_id: e.order_id,
            page: e.page,
            revenue: e.revenue,
            currency: e.currency,
        }
    }
}

#[derive(Debug, Clone, Row, Serialize)]
pub struct MetricRow {
    pub metric_id: String,
    pub name: String,
    pub time: u32,
    pub date: u16,
    pub value: f64,
    pub label_keys: Vec<String>,
    pub label_values: Vec<String>,
    pub cell: String,
}

impl From<MetricPoint> for MetricRow {
    fn from(p: MetricPoint) -> Self {
        let (label_keys, label_values) = p.labels.into_iter().unzip();
        Self {
            metric_id: p.id,
            name: p.name,
            time: seconds(p.at),
            date: days(p.at.date_naive()),
            value: p.value,
            label_keys,
            label_values,
            cell: p.cell,
        }
    }
}

/// Inserts rows of one table in one `INSERT` (one part in ClickHouse per batch).
#[derive(Debug, Clone)]
pub struct TableSink {
    client: Client,
    table: &'static str,
}

impl TableSink {
    pub fn new(client: Client, table: &'static str) -> Self {
        Self { client, table }
    }
}

impl<R> Sink<R> for TableSink
where
    R: RowOwned + RowWrite + Send + Sync,
{
    async fn write(&self, rows: Vec<R>) -> Result<(), KitError> {
        let mut insert = self.client.insert::<R>(self.table).await?;
        for row in &rows {
            insert.write(row).await?;
        }
        insert.end().await?;
        Ok(())
    }
}
