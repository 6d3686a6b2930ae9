//! Use cases over two seams: a [`Sink`] per table behind the ingestion buffer, and a
//! [`Warehouse`] that answers queries. The gRPC edge converts and authorizes; this layer checks
//! every input with the domain rules, decides whose events a caller may track, and shapes the
//! warehouse's counts into reports.

pub mod bus;
pub mod ingest;

use std::{collections::BTreeMap, future::Future};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use clickhouse::Row;
use serde::Deserialize;
use titan_kit::{ErrorCode, KitError, ServiceError, auth::Caller};

pub use ingest::{IngestError, IngestOptions, Ingestor, Sink};

use crate::{
    config::Settings,
    domain::{
        BehaviorQuery, DAY_SECONDS, EventError, FunnelQuery, FunnelStep, Granularity, MetricError,
        MetricQuery, Period, ProductQuery, QueryError, RawEvent, RawMetricPoint, RetentionQuery,
        average_minor, event::MAX_BATCH, ratio,
    },
    metrics::{self, Metrics},
    store::{EventRow, MetricRow},
};

/// Roles that may track events for any user (server-side trackers, backfills).
pub const TRACK_ANYONE: [&str; 2] = ["service", "admin"];

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error("events[{index}]: {error}")]
    Event { index: usize, error: EventError },
    #[error("a batch carries 1 to {MAX_BATCH} events, got {0}")]
    BatchSize(usize),
    #[error(transparent)]
    Metric(#[from] MetricError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(
        "events[{index}] is for user {user:?}; a user may only track their own events (tracking for others needs the service role)"
    )]
    NotYours { index: usize, user: String },
    #[error("recording metrics needs the service or admin role; the token of user {0} has neither")]
    MetricsForbidden(String),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Kit(#[from] KitError),
}

impl ServiceError for AnalyticsError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Event { .. } | Self::BatchSize(_) | Self::Metric(_) | Self::Query(_) => {
                ErrorCode::InvalidArgument
            }
            Self::NotYours { .. } | Self::MetricsForbidden(_) => ErrorCode::PermissionDenied,
            Self::Ingest(_) => ErrorCode::Unavailable,
            Self::Kit(e) => e.code(),
        }
    }

    fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Ingest(IngestError::BufferFull(_)) => Some("BUFFER_FULL"),
            Self::Ingest(_) => Some("NOT_STORED"),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, AnalyticsError>;

/// Activity of one bucket and cell.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct ActivityRow {
    pub bucket: u32,
    pub cell: String,
    pub events: u64,
    pub users: u64,
    pub purchasers: u64,
}

/// Activity of one UTC day (days since 1970) and cell: a whole day from the daily rollup, or
/// the part of a day a period covers.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct DayRow {
    pub date: u16,
    pub cell: String,
    pub events: u64,
    pub users: u64,
    pub purchasers: u64,
}

/// Distinct users and purchasers of a week (bucket: its Monday, Unix seconds) or of the whole
/// period (bucket 0), and cell.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct UsersRow {
    pub bucket: u32,
    pub cell: String,
    pub users: u64,
    pub purchasers: u64,
}

/// Orders and revenue of one bucket, cell and currency.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct RevenueRow {
    pub bucket: u32,
    pub cell: String,
    pub currency: String,
    pub revenue: i64,
    pub orders: u64,
}

#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct ProductRow {
    pub product_id: String,
    pub views: u64,
    pub carts: u64,
    pub purchases: u64,
    pub revenue: i64,
}

#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct ProductCount {
    pub product_id: String,
    pub views: u64,
    pub purchases: u64,
}

#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct RealtimeRow {
    pub users: u64,
    pub events: u64,
    pub last_minute: u64,
}

/// One cohort: its Monday (days since 1970), its size, and how many were active each week.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct CohortRow {
    pub week: u16,
    pub users: u64,
    pub retained: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct SessionStats {
    pub sessions: u64,
    pub users: u64,
    pub average_seconds: f64,
    pub median_seconds: f64,
    pub average_events: f64,
}

#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct PathRow {
    pub path: Vec<String>,
    pub sessions: u64,
}

#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct SeriesRow {
    pub group: String,
    pub bucket: u32,
    pub value: f64,
    pub samples: u64,
}

/// The queries, each answered by ClickHouse in one or a few statements.
pub trait Warehouse: Send + Sync + 'static {
    /// Per bucket (or the whole period when `granularity` is `None`, bucket 0) and cell, read
    /// from the events themselves (hourly series; the reference the rollups are tested against).
    fn activity(
        &self,
        period: &Period,
        granularity: Option<Granularity>,
        cell: &str,
    ) -> impl Future<Output = std::result::Result<Vec<ActivityRow>, KitError>> + Send;
    /// Per day and cell: whole days from the daily rollup (recomputed first where events
    /// arrived since it was computed), partial days at the period's ends from the events.
    fn days(
        &self,
        period: &Period,
        cell: &str,
    ) -> impl Future<Output = std::result::Result<Vec<DayRow>, KitError>> + Send;
    /// Distinct users and purchasers per week (`by_week`) or over the whole period (bucket 0),
    /// per cell, from the per-user active-days rollup and the partial days' events.
    fn active_users(
        &self,
        period: &Period,
        by_week: bool,
        cell: &str,
    ) -> impl Future<Output = std::result::Result<Vec<UsersRow>, KitError>> + Send;
    fn revenue(
        &self,
        period: &Period,
        granularity: Option<Granularity>,
        cell: &str,
    ) -> impl Future<Output = std::result::Result<Vec<RevenueRow>, KitError>> + Send;
    fn realtime(
        &self,
        since: DateTime<Utc>,
        minute_ago: DateTime<Utc>,
        top: u32,
    ) -> impl Future<Output = std::result::Result<(RealtimeRow, Vec<ProductCount>), KitError>> + Send;
    fn products(
        &self,
        query: &ProductQuery,
    ) -> impl Future<Output = std::result::Result<Vec<ProductRow>, KitError>> + Send;
    /// `(level reached, users)` of `windowFunnel`, levels 1 and up.
    fn funnel_levels(
        &self,
        query: &FunnelQuery,
    ) -> impl Future<Output = std::result::Result<Vec<(u8, u64)>, KitError>> + Send;
    fn retention(
        &self,
        query: &RetentionQuery,
    ) -> impl Future<Output = std::result::Result<Vec<CohortRow>, KitError>> + Send;
    fn behavior(
        &self,
        query: &BehaviorQuery,
    ) -> impl Future<Output = std::result::Result<(SessionStats, Vec<PathRow>), KitError>> + Send;
    fn metric_series(
        &self,
        query: &MetricQuery,
    ) -> impl Future<Output = std::result::Result<Vec<SeriesRow>, KitError>> + Send;
}

#[derive(Debug, Clone, PartialEq)]
pub struct Revenue {
    pub currency: String,
    pub revenue: i64,
    pub orders: u64,
    pub average_order_value: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Kpis {
    pub events: u64,
    pub unique_users: u64,
    pub purchasers: u64,
    pub conversion_rate: f64,
    pub revenue: Vec<Revenue>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KpiBucket {
    pub bucket: DateTime<Utc>,
    pub cell: String,
    pub kpis: Kpis,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KpiReport {
    pub buckets: Vec<KpiBucket>,
    pub totals: Vec<KpiBucket>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Realtime {
    pub window_seconds: u32,
    pub active_users: u64,
    pub events: u64,
    pub events_last_minute: u64,
    pub top_products: Vec<ProductCount>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProductPerformance {
    pub row: ProductRow,
    pub view_to_cart: f64,
    pub cart_to_purchase: f64,
    pub view_to_purchase: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cohort {
    pub week: NaiveDate,
    pub users: u64,
    pub retained_users: Vec<u64>,
    pub retained: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    pub stats: SessionStats,
    pub paths: Vec<PathRow>,
}

pub use titan_kit::Clock;

/// The analytics use cases.
pub struct Analytics<W> {
    warehouse: W,
    events: Ingestor<EventRow>,
    metric_points: Ingestor<MetricRow>,
    settings: Settings,
    cell: String,
    clock: Clock,
    metrics: Metrics,
}

impl<W> std::fmt::Debug for Analytics<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analytics")
            .field("cell", &self.cell)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// The user an event is recorded for: a user tracks their own (an empty user id means "me");
/// trusted callers track anyone's.
fn attribute(caller: &Caller, index: usize, user_id: String) -> Result<String> {
    if caller.has_any_role(&TRACK_ANYONE) {
        return Ok(user_id);
    }
    if user_id.is_empty() {
        return Ok(caller.user_id.clone());
    }
    if user_id == caller.user_id {
        Ok(user_id)
    } else {
        Err(AnalyticsError::NotYours {
            index,
            user: user_id,
        })
    }
}

fn instant(seconds: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(i64::from(seconds), 0).unwrap_or_default()
}

/// Monday of the week of `day` (days since 1970-01-01, a Thursday; events are from 2000 on, so
/// the first three days, whose Monday is in 1969, need not be exact).
fn monday(day: u16) -> u32 {
    let day = u32::from(day);
    day.saturating_sub((day + 3) % 7)
}

/// Activity per bucket from the rollups: events add up over the days of a bucket (each day
/// counts its distinct event ids), users and purchasers come distinct per bucket from `users`.
fn rollup_activity(
    days: &[DayRow],
    users: Vec<UsersRow>,
    bucket_of: impl Fn(u16) -> u32,
) -> Vec<ActivityRow> {
    let mut by_key: BTreeMap<(u32, String), ActivityRow> = BTreeMap::new();
    let row = |bucket: u32, cell: &str| ActivityRow {
        bucket,
        cell: cell.to_owned(),
        events: 0,
        users: 0,
        purchasers: 0,
    };
    for d in days {
        let bucket = bucket_of(d.date);
        by_key
            .entry((bucket, d.cell.clone()))
            .or_insert_with(|| row(bucket, &d.cell))
            .events += d.events;
    }
    for u in users {
        let a = by_key
            .entry((u.bucket, u.cell.clone()))
            .or_insert_with(|| row(u.bucket, &u.cell));
        a.users = u.users;
        a.purchasers = u.purchasers;
    }
    by_key.into_values().collect()
}

/// The period's revenue per cell and currency (bucket 0): each order falls in exactly one
/// bucket (that of its first event), so the buckets add up; sums saturate as each bucket's do.
fn revenue_totals(buckets: &[RevenueRow]) -> Vec<RevenueRow> {
    let mut totals: BTreeMap<(&str, &str), (i64, u64)> = BTreeMap::new();
    for r in buckets {
        let (revenue, orders) = totals
            .entry((r.cell.as_str(), r.currency.as_str()))
            .or_default();
        *revenue = revenue.saturating_add(r.revenue);
        *orders += r.orders;
    }
    totals
        .into_iter()
        .map(|((cell, currency), (revenue, orders))| RevenueRow {
            bucket: 0,
            cell: cell.to_owned(),
            currency: currency.to_owned(),
            revenue,
            orders,
        })
        .collect()
}

fn kpi_buckets(activity: Vec<ActivityRow>, revenue: Vec<RevenueRow>) -> Vec<KpiBucket> {
    let mut by_key: BTreeMap<(u32, String), Kpis> = BTreeMap::new();
    for a in activity {
        by_key.insert(
            (a.bucket, a.cell),
            Kpis {
                events: a.events,
                unique_users: a.users,
                purchasers: a.purchasers,
                conversion_rate: ratio(a.purchasers, a.users),
                revenue: Vec::new(),
            },
        );
    }
    for r in revenue {
        // An order always has an event, so its bucket exists; `or_insert` keeps the invariant
        // explicit rather than trusting it.
        let kpis = by_key.entry((r.bucket, r.cell)).or_insert(Kpis {
            events: 0,
            unique_users: 0,
            purchasers: 0,
            conversion_rate: 0.0,
            revenue: Vec::new(),
        });
        kpis.revenue.push(Revenue {
            average_order_value: average_minor(r.revenue, r.orders),
            currency: r.currency,
            revenue: r.revenue,
            orders: r.orders,
        });
    }
    by_key
        .into_iter()
        .map(|((bucket, cell), kpis)| KpiBucket {
            bucket: instant(bucket),
            cell,
            kpis,
        })
        .collect()
}

impl<W: Warehouse> Analytics<W> {
    pub fn new(
        warehouse: W,
        events: Ingestor<EventRow>,
        metric_points: Ingestor<MetricRow>,
        settings: Settings,
        cell: String,
        clock: Clock,
        metrics: Metrics,
    ) -> Self {
        Self {
            warehouse,
            events,
            metric_points,
            settings,
            cell,
            clock,
            metrics,
        }
    }

    /// Checks and stores a batch of a client's events, all or none.
    pub async fn track(&self, caller: &Caller, events: Vec<RawEvent>) -> Result<usize> {
        if events.is_empty() || events.len() > MAX_BATCH {
            return Err(AnalyticsError::BatchSize(events.len()));
        }
        let now = (self.clock)();
        let mut rows = Vec::with_capacity(events.len());
        for (index, mut raw) in events.into_iter().enumerate() {
            raw.user_id = attribute(caller, index, std::mem::take(&mut raw.user_id))?;
            let event = raw
                .check(&self.cell, now, self.settings.max_clock_skew_seconds)
                .map_err(|error| {
                    self.metrics.refused(metrics::INVALID, 1);
                    AnalyticsError::Event { index, error }
                })?;
            rows.push(EventRow::new(event, now));
        }
        let n = rows.len();
        self.events.submit(rows).await.map_err(|e| {
            if let IngestError::BufferFull(_) = e {
                self.metrics.refused(metrics::BUFFER_FULL, n);
            }
            AnalyticsError::from(e)
        })?;
        Ok(n)
    }

    /// Records one point. Dashboards and alerts read these, so only services and admins may
    /// write them; a buyer's token would otherwise draw any curve it likes.
    pub async fn record_metric(&self, caller: &Caller, point: RawMetricPoint) -> Result<()> {
        if !caller.has_any_role(&TRACK_ANYONE) {
            return Err(AnalyticsError::MetricsForbidden(caller.user_id.clone()));
        }
        let point = point.check(&self.cell, (self.clock)())?;
        self.metric_points
            .submit(vec![MetricRow::from(point)])
            .await?;
        Ok(())
    }

    pub async fn kpis(
        &self,
        period: Period,
        granularity: Granularity,
        cell: &str,
    ) -> Result<KpiReport> {
        let granularity = granularity.check(&period)?;
        let w = &self.warehouse;
        // Hours are finer than the daily rollup: an hourly series reads the events. Days come
        // whole from the rollup; weeks and the period add days' events up and take their
        // distinct users from the per-user rollup.
        let hourly = async {
            match granularity {
                Granularity::Hour => w.activity(&period, Some(granularity), cell).await,
                Granularity::Day | Granularity::Week => Ok(Vec::new()),
            }
        };
        let weekly_users = async {
            match granularity {
                Granularity::Week => w.active_users(&period, true, cell).await,
                Granularity::Hour | Granularity::Day => Ok(Vec::new()),
            }
        };
        let (days, hourly, weekly_users, total_users, revenue) = futures::try_join!(
            w.days(&period, cell),
            hourly,
            weekly_users,
            w.active_users(&period, false, cell),
            w.revenue(&period, Some(granularity), cell),
        )?;
        let total_revenue = revenue_totals(&revenue);
        let activity = match granularity {
            Granularity::Hour => hourly,
            Granularity::Day => days
                .iter()
                .map(|d| ActivityRow {
                    bucket: u32::from(d.date) * DAY_SECONDS,
                    cell: d.cell.clone(),
                    events: d.events,
                    users: d.users,
                    purchasers: d.purchasers,
                })
                .collect(),
            Granularity::Week => {
                rollup_activity(&days, weekly_users, |day| monday(day) * DAY_SECONDS)
            }
        };
        let total_activity = rollup_activity(&days, total_users, |_| 0);
        let mut totals = kpi_buckets(total_activity, total_revenue);
        for t in &mut totals {
            t.bucket = period.from;
        }
        Ok(KpiReport {
            buckets: kpi_buckets(activity, revenue),
            totals,
        })
    }

    pub async fn realtime(&self, top: u32) -> Result<Realtime> {
        let top = match top {
            0 => 10,
            n @ 1..=100 => n,
            n => {
                return Err(QueryError::Invalid(format!("top must be 1 to 100, got {n}")).into());
            }
        };
        let now = (self.clock)();
        let window = self.settings.realtime_window_seconds;
        let since = now - Duration::seconds(i64::from(window));
        let (row, top_products) = self
            .warehouse
            .realtime(since, now - Duration::seconds(60), top)
            .await?;
        Ok(Realtime {
            window_seconds: window,
            active_users: row.users,
            events: row.events,
            events_last_minute: row.last_minute,
            top_products,
        })
    }

    pub async fn products(&self, query: ProductQuery) -> Result<Vec<ProductPerformance>> {
        let query = query.check()?;
        let rows = self.warehouse.products(&query).await?;
        Ok(rows
            .into_iter()
            .map(|row| ProductPerformance {
                view_to_cart: ratio(row.carts, row.views),
                cart_to_purchase: ratio(row.purchases, row.carts),
                view_to_purchase: ratio(row.purchases, row.views),
                row,
            })
            .collect())
    }

    pub async fn funnel(&self, query: FunnelQuery) -> Result<Vec<FunnelStep>> {
        let query = query.check(self.settings.max_funnel_window_days)?;
        let levels = self.warehouse.funnel_levels(&query).await?;
        Ok(query.steps(&levels))
    }

    pub async fn retention(&self, query: RetentionQuery) -> Result<Vec<Cohort>> {
        let query = query.check()?;
        let weeks = query.weeks as usize + 1;
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or(NaiveDate::MIN);
        Ok(self
            .warehouse
            .retention(&query)
            .await?
            .into_iter()
            .map(|row| {
                let mut retained_users = row.retained;
                retained_users.resize(weeks, 0);
                Cohort {
                    week: epoch + Duration::days(i64::from(row.week)),
                    users: row.users,
                    retained: retained_users
                        .iter()
                        .map(|n| ratio(*n, row.users))
                        .collect(),
                    retained_users,
                }
            })
            .collect())
    }

    pub async fn behavior(&self, query: BehaviorQuery) -> Result<Behavior> {
        let query = query.check()?;
        let (stats, paths) = self.warehouse.behavior(&query).await?;
        Ok(Behavior { stats, paths })
    }

    pub async fn metric(&self, query: MetricQuery) -> Result<Vec<(String, Vec<SeriesRow>)>> {
        let query = query.check()?;
        let mut series: BTreeMap<String, Vec<SeriesRow>> = BTreeMap::new();
        for row in self.warehouse.metric_series(&query).await? {
            series.entry(row.group.clone()).or_default().push(row);
        }
        Ok(series.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(roles: &[&str]) -> Caller {
        Caller {
            user_id: "u1".into(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    #[test]
    fn users_track_only_themselves() {
        assert_eq!(
            attribute(&caller(&[]), 0, String::new()).ok(),
            Some("u1".into())
        );
        assert_eq!(
            attribute(&caller(&[]), 0, "u1".into()).ok(),
            Some("u1".into())
        );
        assert!(matches!(
            attribute(&caller(&[]), 3, "u2".into()),
            Err(AnalyticsError::NotYours { index: 3, .. })
        ));
        assert_eq!(
            attribute(&caller(&["service"]), 0, "u2".into()).ok(),
            Some("u2".into())
        );
        assert_eq!(
            attribute(&caller(&["admin"]), 0, String::new()).ok(),
            Some(String::new())
        );
    }

    #[test]
    fn days_fall_in_the_week_of_their_monday() {
        // Day 0 (1970-01-01) is a Thursday; 1970-01-05 (day 4) the first Monday.
        assert_eq!(monday(0), 0, "the days before the first Monday stay at 0");
        assert_eq!(monday(4), 4);
        assert_eq!(monday(10), 4, "Sunday 1970-01-11");
        assert_eq!(monday(11), 11);
        // 2025-10-01 (day 20362), a Wednesday: Monday 2025-09-29.
        assert_eq!(monday(20_362), 20_360);
    }

    #[test]
    fn rollups_add_days_events_and_take_users_per_bucket() {
        let day = |date: u16, cell: &str, events: u64| DayRow {
            date,
            cell: cell.into(),
            events,
            users: 100,
            purchasers: 100,
        };
        let days = [
            day(20_360, "a", 5),
            day(20_361, "a", 7),
            day(20_367, "a", 1),
            day(20_360, "b", 2),
        ];
        let users = vec![
            UsersRow {
                bucket: 20_360 * DAY_SECONDS,
                cell: "a".into(),
                users: 3,
                purchasers: 1,
            },
            UsersRow {
                bucket: 20_367 * DAY_SECONDS,
                cell: "a".into(),
                users: 1,
                purchasers: 0,
            },
        ];
        let weeks = rollup_activity(&days, users, |d| monday(d) * DAY_SECONDS);
        let got: Vec<(u32, &str, u64, u64, u64)> = weeks
            .iter()
            .map(|a| {
                (
                    a.bucket / DAY_SECONDS,
                    a.cell.as_str(),
                    a.events,
                    a.users,
                    a.purchasers,
                )
            })
            .collect();
        // Day users are not added up: a week's come from its UsersRow; cell b has none (its
        // events were anonymous), so it has no users.
        assert_eq!(
            got,
            vec![
                (20_360, "a", 12, 3, 1),
                (20_360, "b", 2, 0, 0),
                (20_367, "a", 1, 1, 0)
            ]
        );
    }

    #[test]
    fn revenue_totals_add_buckets_up_and_saturate() {
        let row = |bucket: u32, cell: &str, currency: &str, revenue: i64, orders: u64| RevenueRow {
            bucket,
            cell: cell.into(),
            currency: currency.into(),
            revenue,
            orders,
        };
        let totals = revenue_totals(&[
            row(1, "b", "USD", 10, 1),
            row(1, "a", "USD", 5, 1),
            row(2, "a", "USD", 7, 2),
            row(2, "a", "EUR", i64::MAX, 3),
            row(3, "a", "EUR", 1, 1),
        ]);
        assert_eq!(
            totals,
            vec![
                row(0, "a", "EUR", i64::MAX, 4),
                row(0, "a", "USD", 12, 3),
                row(0, "b", "USD", 10, 1)
            ]
        );
    }

    #[test]
    fn kpis_merge_activity_and_revenue_per_bucket() {
        let buckets = kpi_buckets(
            vec![ActivityRow {
                bucket: 3600,
                cell: "a".into(),
                events: 10,
                users: 4,
                purchasers: 1,
            }],
            vec![
                RevenueRow {
                    bucket: 3600,
                    cell: "a".into(),
                    currency: "USD".into(),
                    revenue: 1001,
                    orders: 2,
                },
                RevenueRow {
                    bucket: 3600,
                    cell: "a".into(),
                    currency: "EUR".into(),
                    revenue: 500,
                    orders: 1,
                },
            ],
        );
        assert_eq!(buckets.len(), 1);
        let k = &buckets[0].kpis;
        assert_eq!(
            (k.events, k.unique_users, k.purchasers, k.conversion_rate),
            (10, 4, 1, 0.25)
        );
        assert_eq!(
            k.revenue[0].average_order_value, 501,
            "1001 / 2 = 500.5 rounds up"
        );
        assert_eq!(k.revenue[1].currency, "EUR");
        assert_eq!(buckets[0].bucket.timestamp(), 3600);
    }
}
