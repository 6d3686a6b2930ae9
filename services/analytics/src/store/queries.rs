//! The queries, computed by ClickHouse. Every value a caller chose is bound with `?` (the
//! client escapes it); the only text spliced into SQL is fixed by this file (bucket and
//! aggregate expressions chosen by enum). All of it runs on ClickHouse 18.16 and current
//! releases. Counting and summing read through de-duplication (`uniqExact(cityHash64(event_id))`, orders
//! grouped by `order_id`); existence questions (funnels, retention, users) need none. KPIs read
//! the rollups of docs/analytics.md for whole days ([`super::rollup`]).

use chrono::{DateTime, NaiveDate, Utc};
use clickhouse::{Client, Row, query::Query};
use serde::Deserialize;
use titan_kit::KitError;

use super::rollup;

use crate::{
    app::{
        ActivityRow, CohortRow, DayRow, PathRow, ProductCount, ProductRow, RealtimeRow, RevenueRow,
        SeriesRow, SessionStats, UsersRow, Warehouse,
    },
    domain::{
        Aggregation, BehaviorQuery, FunnelQuery, Granularity, MetricQuery, Period, ProductQuery,
        RetentionQuery,
    },
};

/// Queries over the analytics tables of one database.
#[derive(Debug, Clone)]
pub struct ClickHouseWarehouse {
    client: Client,
}

impl ClickHouseWarehouse {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

/// The bucket of `column` (a `DateTime`) as Unix seconds; `None` = one bucket, 0.
/// The sum of the per-order `amount`s, saturated at `i64::MAX`: ClickHouse's `sum(Int64)`
/// wraps around silently, so the float sum (which cannot wrap) decides whether the exact one
/// is trusted.
const SATURATING_SUM: &str = "if(sum(toFloat64(amount)) >= 9.2e18, \
     toInt64(9223372036854775807), toInt64(sum(amount)))";

/// A day's (or any bucket's) events, users and purchasers: distinct event ids and user ids, so
/// a duplicated event counts once.
pub(super) const ACTIVITY: &str = "uniqExact(cityHash64(event_id)) AS events,
     uniqExactIf(user_id, user_id != '') AS users,
     uniqExactIf(user_id, user_id != '' AND order_id != '' AND revenue > 0) AS purchasers";

fn bucket(granularity: Option<Granularity>, column: &str) -> String {
    match granularity {
        None => "toUInt32(0)".to_owned(),
        Some(Granularity::Hour) => format!("toUInt32(toStartOfHour({column}, 'UTC'))"),
        Some(Granularity::Day) => format!("toUInt32(toStartOfDay({column}, 'UTC'))"),
        Some(Granularity::Week) => {
            format!("toUInt32(toDateTime(toMonday({column}, 'UTC'), 'UTC'))")
        }
    }
}

pub(super) fn date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// `WHERE` terms of a period; binds from-date, to-date, from, to.
const IN_PERIOD: &str =
    "date >= toDate(?) AND date <= toDate(?) AND time >= toDateTime(?) AND time < toDateTime(?)";

fn in_period(query: Query, period: &Period) -> Query {
    let (from, to) = period.dates();
    query
        .bind(date(from))
        .bind(date(to))
        .bind(period.from_seconds())
        .bind(period.to_seconds())
}

fn seconds(at: DateTime<Utc>) -> u32 {
    u32::try_from(at.timestamp().max(0)).unwrap_or(u32::MAX)
}

#[derive(Debug, Row, Deserialize)]
struct Level {
    level: u8,
    users: u64,
}

impl Warehouse for ClickHouseWarehouse {
    async fn activity(
        &self,
        period: &Period,
        granularity: Option<Granularity>,
        cell: &str,
    ) -> Result<Vec<ActivityRow>, KitError> {
        let sql = format!(
            "SELECT {b} AS bucket, cell, {ACTIVITY}
             FROM analytics_events
             WHERE {IN_PERIOD} AND (? = '' OR cell = ?)
             GROUP BY bucket, cell ORDER BY bucket, cell",
            b = bucket(granularity, "time"),
        );
        let query = in_period(self.client.query(&sql), period)
            .bind(cell)
            .bind(cell);
        Ok(query.fetch_all().await?)
    }

    async fn days(&self, period: &Period, cell: &str) -> Result<Vec<DayRow>, KitError> {
        let split = period.split();
        let whole = async {
            match split.whole {
                Some((first, end)) => rollup::whole_days(&self.client, first, end, cell).await,
                None => Ok(Vec::new()),
            }
        };
        let (mut days, partial) =
            futures::try_join!(whole, rollup::partial_days(&self.client, &split, cell))?;
        days.extend(partial);
        days.sort_by(|a, b| (a.date, &a.cell).cmp(&(b.date, &b.cell)));
        Ok(days)
    }

    async fn active_users(
        &self,
        period: &Period,
        by_week: bool,
        cell: &str,
    ) -> Result<Vec<UsersRow>, KitError> {
        rollup::active_users(&self.client, &period.split(), by_week, cell).await
    }

    async fn revenue(
        &self,
        period: &Period,
        granularity: Option<Granularity>,
        cell: &str,
    ) -> Result<Vec<RevenueRow>, KitError> {
        // One row per order first: the client's `purchase` and the server's
        // `flashsale.purchased` of the same order (or a duplicated event) count once.
        let sql = format!(
            "SELECT {b} AS bucket, cell, currency, {SATURATING_SUM} AS revenue, count() AS orders
             FROM (
                 SELECT order_id, cell, currency, min(time) AS placed, max(revenue) AS amount
                 FROM analytics_events
                 WHERE {IN_PERIOD} AND (? = '' OR cell = ?) AND order_id != '' AND revenue > 0
                 GROUP BY order_id, cell, currency
             )
             GROUP BY bucket, cell, currency ORDER BY bucket, cell, currency",
            b = bucket(granularity, "placed"),
        );
        let query = in_period(self.client.query(&sql), period)
            .bind(cell)
            .bind(cell);
        Ok(query.fetch_all().await?)
    }

    async fn realtime(
        &self,
        since: DateTime<Utc>,
        minute_ago: DateTime<Utc>,
        top: u32,
    ) -> Result<(RealtimeRow, Vec<ProductCount>), KitError> {
        let day = date(since.date_naive());
        let row = self
            .client
            .query(
                "SELECT uniqExactIf(user_id, user_id != '') AS users,
                        uniqExact(cityHash64(event_id)) AS events,
                        uniqExactIf(cityHash64(event_id), time >= toDateTime(?)) AS last_minute
                 FROM analytics_events
                 WHERE date >= toDate(?) AND time >= toDateTime(?)",
            )
            .bind(seconds(minute_ago))
            .bind(&day)
            .bind(seconds(since))
            .fetch_one::<RealtimeRow>()
            .await?;
        let top = self
            .client
            .query(
                "SELECT product_id,
                        uniqExactIf(cityHash64(event_id), name = 'product_view') AS views,
                        uniqExactIf(order_id, order_id != '' AND revenue > 0) AS purchases
                 FROM analytics_events
                 WHERE date >= toDate(?) AND time >= toDateTime(?) AND product_id != ''
                 GROUP BY product_id
                 ORDER BY views DESC, purchases DESC, product_id
                 LIMIT ?",
            )
            .bind(&day)
            .bind(seconds(since))
            .bind(top)
            .fetch_all::<ProductCount>()
            .await?;
        Ok((row, top))
    }

    async fn products(&self, q: &ProductQuery) -> Result<Vec<ProductRow>, KitError> {
        let only = if q.product_ids.is_empty() {
            ""
        } else {
            "AND has(?, product_id)"
        };
        let sql = format!(
            "SELECT product_id, views, carts, purchases, revenue FROM (
                 SELECT product_id,
                        uniqExactIf(cityHash64(event_id), name = 'product_view') AS views,
                        uniqExactIf(cityHash64(event_id), name = 'add_to_cart') AS carts,
                        uniqExactIf(order_id, order_id != '' AND revenue > 0) AS purchases
                 FROM analytics_events
                 WHERE {IN_PERIOD} AND product_id != '' {only}
                 GROUP BY product_id
             ) ANY LEFT JOIN (
                 SELECT product_id, {SATURATING_SUM} AS revenue FROM (
                     SELECT product_id, order_id, max(revenue) AS amount
                     FROM analytics_events
                     WHERE {IN_PERIOD} AND product_id != '' {only}
                       AND order_id != '' AND revenue > 0 AND currency = ?
                     GROUP BY product_id, order_id
                 ) GROUP BY product_id
             ) USING product_id
             ORDER BY views DESC, purchases DESC, product_id
             LIMIT ?"
        );
        let mut query = in_period(self.client.query(&sql), &q.period);
        if !q.product_ids.is_empty() {
            query = query.bind(&q.product_ids);
        }
        query = in_period(query, &q.period);
        if !q.product_ids.is_empty() {
            query = query.bind(&q.product_ids);
        }
        Ok(query.bind(&q.currency).bind(q.limit).fetch_all().await?)
    }

    async fn funnel_levels(&self, q: &FunnelQuery) -> Result<Vec<(u8, u64)>, KitError> {
        let conditions = vec!["name = ?"; q.steps.len()].join(", ");
        // windowFunnel takes a UInt32 clock (18.16), and 18.16 gets it wrong above 2^31:
        // tenths of a second since the period's start stay below that for a year and keep
        // steps sent within the same second in their order.
        let sql = format!(
            "SELECT level, count() AS users FROM (
                 SELECT user_id,
                        windowFunnel(?)(toUInt32((toUInt32(time) - ?) * 10 + intDiv(time_ms, 100)),
                                        {conditions}) AS level
                 FROM analytics_events
                 WHERE {IN_PERIOD} AND user_id != '' AND has(?, name)
                 GROUP BY user_id
             ) WHERE level > 0 GROUP BY level ORDER BY level"
        );
        let mut query = self
            .client
            .query(&sql)
            .bind(u64::from(q.window_seconds) * 10)
            .bind(q.period.from_seconds());
        for step in &q.steps {
            query = query.bind(step);
        }
        let query = in_period(query, &q.period).bind(&q.steps);
        let levels: Vec<Level> = query.fetch_all().await?;
        Ok(levels.into_iter().map(|l| (l.level, l.users)).collect())
    }

    async fn retention(&self, q: &RetentionQuery) -> Result<Vec<CohortRow>, KitError> {
        let conditions = vec!["week = cohort + ?"; q.weeks as usize + 1].join(", ");
        // One pass: each user's active weeks (from their distinct days, so toMonday runs on a
        // few values per user, not on every row), their cohort the first of those weeks, then
        // `retention` over the weeks marks cohort week 0 and each later week they were active.
        // Half the time of joining a (user, week) scan to a first-week scan over 10M events.
        let sql = format!(
            "SELECT toUInt16(cohort) AS week, count() AS users, sumForEach(r) AS retained FROM (
                 SELECT user_id, cohort, retention({conditions}) AS r
                 FROM (
                     SELECT user_id, weeks, arrayReduce('min', weeks) AS cohort FROM (
                         SELECT user_id,
                                arrayDistinct(arrayMap(d -> toMonday(d), groupUniqArray(date))) AS weeks
                         FROM analytics_events
                         WHERE date < toDate(?) AND user_id != ''
                         GROUP BY user_id
                     )
                     WHERE cohort >= toDate(?) AND cohort <= toDate(?)
                 ) ARRAY JOIN weeks AS week
                 GROUP BY user_id, cohort
             ) GROUP BY cohort ORDER BY cohort"
        );
        let (first, last, activity_end) = q.bounds();
        let mut query = self.client.query(&sql);
        for week in 0..=q.weeks {
            query = query.bind(week * 7);
        }
        let query = query
            .bind(date(activity_end))
            .bind(date(first))
            .bind(date(last));
        Ok(query.fetch_all().await?)
    }

    async fn behavior(&self, q: &BehaviorQuery) -> Result<(SessionStats, Vec<PathRow>), KitError> {
        let stats = self.client.query(&format!(
            "SELECT count() AS sessions,
                        uniqExactIf(user, user != '') AS users,
                        if(count() = 0, 0, avg(length)) AS average_seconds,
                        if(count() = 0, 0, toFloat64(quantileExact(0.5)(length))) AS median_seconds,
                        if(count() = 0, 0, avg(events)) AS average_events
                 FROM (
                     SELECT session_id, any(user_id) AS user,
                            toUInt32(max(time)) - toUInt32(min(time)) AS length,
                            uniqExact(cityHash64(event_id)) AS events
                     FROM analytics_events
                     WHERE {IN_PERIOD} AND session_id != '' AND (? = '' OR user_id = ?)
                     GROUP BY session_id
                 )"
        ));
        let stats = in_period(stats, &q.period)
            .bind(&q.user_id)
            .bind(&q.user_id)
            .fetch_one::<SessionStats>()
            .await?;
        // Each session's steps in time order (a duplicated event is one tuple of the set),
        // its first `path_length` steps, then the most common of those paths.
        let paths = self
            .client
            .query(&format!(
                "SELECT path, count() AS sessions FROM (
                     SELECT session_id,
                            arraySlice(arrayMap(s -> tupleElement(s, 4),
                                arraySort(s -> (tupleElement(s, 1), tupleElement(s, 2), tupleElement(s, 3)),
                                    groupUniqArray((time, time_ms, event_id, if(page != '', page, name))))),
                                1, ?) AS path
                     FROM analytics_events
                     WHERE {IN_PERIOD} AND session_id != '' AND (? = '' OR user_id = ?)
                     GROUP BY session_id
                 ) GROUP BY path ORDER BY sessions DESC, path LIMIT ?"
            ))
            .bind(q.path_length);
        let paths = in_period(paths, &q.period)
            .bind(&q.user_id)
            .bind(&q.user_id)
            .bind(q.top_paths)
            .fetch_all::<PathRow>()
            .await?;
        Ok((stats, paths))
    }

    async fn metric_series(&self, q: &MetricQuery) -> Result<Vec<SeriesRow>, KitError> {
        let value = match q.aggregation {
            Aggregation::Sum => "sum(value)",
            Aggregation::Avg => "avg(value)",
            Aggregation::Min => "min(value)",
            Aggregation::Max => "max(value)",
            Aggregation::Count => "toFloat64(count())",
            Aggregation::P50 => "quantileExact(0.5)(value)",
            Aggregation::P95 => "quantileExact(0.95)(value)",
            Aggregation::P99 => "quantileExact(0.99)(value)",
        };
        let group = if q.group_by.is_some() {
            "label_values[indexOf(label_keys, ?)]"
        } else {
            "''"
        };
        let filters = " AND label_values[indexOf(label_keys, ?)] = ?".repeat(q.filter.len());
        // FINAL: a retried RecordMetric is one point, also before parts merge.
        let sql = format!(
            "SELECT {group} AS group, {b} AS bucket, toFloat64({value}) AS value, count() AS samples
             FROM analytics_metrics FINAL
             WHERE name = ? AND {IN_PERIOD}{filters}
             GROUP BY group, bucket ORDER BY group, bucket",
            b = bucket(Some(q.granularity), "time"),
        );
        let mut query = self.client.query(&sql);
        if let Some(label) = &q.group_by {
            query = query.bind(label);
        }
        query = in_period(query.bind(&q.name), &q.period);
        for (key, value) in &q.filter {
            query = query.bind(key).bind(value);
        }
        Ok(query.fetch_all().await?)
    }
}
