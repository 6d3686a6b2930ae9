//! What a query may ask (periods, granularities, funnel steps, cohorts, paths, metric series),
//! checked before any SQL is built, and the shaping of ClickHouse's raw counts into answers.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::{
    event::is_queryable_name,
    metric::{is_label_key, is_metric_name},
    ratio,
};

/// Longest period any query may cover.
pub const MAX_PERIOD_DAYS: i64 = 366;
/// Most buckets a time series may have (an hourly series is at most ~83 days).
pub const MAX_BUCKETS: i64 = 2000;
pub const MAX_FUNNEL_STEPS: usize = 10;
pub const MAX_RETENTION_WEEKS: u32 = 12;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Invalid(String),
}

fn invalid<T>(message: impl Into<String>) -> Result<T, QueryError> {
    Err(QueryError::Invalid(message.into()))
}

/// A half-open UTC interval `[from, to)`, at most a year long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Period {
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Self, QueryError> {
        if from >= to {
            return invalid(format!(
                "period.from ({from}) must be before period.to ({to})"
            ));
        }
        if to - from > Duration::days(MAX_PERIOD_DAYS) {
            return invalid(format!(
                "period is {} days long; at most {MAX_PERIOD_DAYS} are allowed",
                (to - from).num_days()
            ));
        }
        if from.timestamp() < 0 || to.timestamp() > i64::from(u32::MAX) {
            return invalid("period must lie between 1970 and 2106");
        }
        Ok(Self { from, to })
    }

    /// Unix seconds of `from`, as ClickHouse `DateTime` takes them (checked in [`Period::new`]).
    pub fn from_seconds(&self) -> u32 {
        u32::try_from(self.from.timestamp()).unwrap_or(0)
    }

    /// Unix seconds of `to`, rounded up so an instant within the last second is included.
    pub fn to_seconds(&self) -> u32 {
        let whole = self.to.timestamp();
        let up = if self.to.timestamp_subsec_nanos() > 0 {
            1
        } else {
            0
        };
        u32::try_from(whole + up).unwrap_or(u32::MAX)
    }

    /// First and last calendar day touched: the partition and sort key prune on these.
    pub fn dates(&self) -> (NaiveDate, NaiveDate) {
        (self.from.date_naive(), self.to.date_naive())
    }
}

/// Seconds in a UTC day.
pub const DAY_SECONDS: u32 = 86_400;

/// A period cut at UTC midnights: the whole days that the daily rollups answer, and the
/// partial days at either end, which are read from the events themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaySplit {
    /// Day numbers (days since 1970-01-01) `[first, end)` of the whole days, if any.
    pub whole: Option<(u32, u32)>,
    /// Up to two half-open second ranges `[from, to)` of partial days; `(0, 0)` is empty, so
    /// the SQL that reads them always has the same shape.
    pub edges: [(u32, u32); 2],
}

impl Period {
    /// Cuts the period (whole seconds, as the queries read it) at midnights.
    pub fn split(&self) -> DaySplit {
        let (from, to) = (self.from_seconds(), self.to_seconds());
        let first = from.div_ceil(DAY_SECONDS);
        let end = to / DAY_SECONDS;
        if first >= end {
            return DaySplit {
                whole: None,
                edges: [(from, to), (0, 0)],
            };
        }
        let (start, stop) = (first * DAY_SECONDS, end * DAY_SECONDS);
        let edge = |a: u32, b: u32| if a < b { (a, b) } else { (0, 0) };
        DaySplit {
            whole: Some((first, end)),
            edges: [edge(from, start), edge(stop, to)],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Hour,
    Day,
    Week,
}

impl Granularity {
    pub fn seconds(self) -> i64 {
        match self {
            Self::Hour => 3600,
            Self::Day => 86_400,
            Self::Week => 7 * 86_400,
        }
    }

    /// Refuses a series with more than [`MAX_BUCKETS`] points.
    pub fn check(self, period: &Period) -> Result<Self, QueryError> {
        let buckets = (period.to - period.from).num_seconds() / self.seconds();
        if buckets > MAX_BUCKETS {
            return invalid(format!(
                "{buckets} buckets asked; at most {MAX_BUCKETS}: use a coarser granularity or a shorter period"
            ));
        }
        Ok(self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    P50,
    P95,
    P99,
}

/// A metric series request.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricQuery {
    pub name: String,
    pub period: Period,
    pub granularity: Granularity,
    pub aggregation: Aggregation,
    pub filter: BTreeMap<String, String>,
    pub group_by: Option<String>,
}

impl MetricQuery {
    pub fn check(self) -> Result<Self, QueryError> {
        if !is_metric_name(&self.name) {
            return invalid(format!(
                "metric name {:?} must be lower-case dotted words such as checkout.latency_ms",
                self.name
            ));
        }
        self.granularity.check(&self.period)?;
        if self.filter.len() > 16 {
            return invalid("at most 16 label filters are accepted");
        }
        for key in self.filter.keys().chain(self.group_by.iter()) {
            if !is_label_key(key) {
                return invalid(format!(
                    "{key:?} is not a label key (lower-case letters, digits, '_')"
                ));
            }
        }
        Ok(self)
    }
}

/// Product performance: views → add-to-cart → purchase per product.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductQuery {
    pub period: Period,
    pub currency: String,
    pub product_ids: Vec<String>,
    pub limit: u32,
}

impl ProductQuery {
    pub fn check(mut self) -> Result<Self, QueryError> {
        titan_kit::money::Currency::parse(&self.currency)
            .map_err(|e| QueryError::Invalid(e.to_string()))?;
        if self.product_ids.len() > 1000 {
            return invalid("at most 1000 product_ids are accepted");
        }
        if self
            .product_ids
            .iter()
            .any(|p| p.is_empty() || p.chars().count() > 256)
        {
            return invalid("product_ids must be 1 to 256 characters each");
        }
        self.limit = match self.limit {
            0 => 50,
            n if n <= 1000 => n,
            n => return invalid(format!("limit {n} is above 1000")),
        };
        Ok(self)
    }
}

/// An ordered funnel with a conversion window.
#[derive(Debug, Clone, PartialEq)]
pub struct FunnelQuery {
    pub period: Period,
    pub steps: Vec<String>,
    pub window_seconds: u32,
}

impl FunnelQuery {
    pub fn check(self, max_window_days: u32) -> Result<Self, QueryError> {
        if !(2..=MAX_FUNNEL_STEPS).contains(&self.steps.len()) {
            return invalid(format!(
                "a funnel needs 2 to {MAX_FUNNEL_STEPS} steps, got {}",
                self.steps.len()
            ));
        }
        if let Some(bad) = self.steps.iter().find(|s| !is_queryable_name(s)) {
            return invalid(format!("funnel step {bad:?} is not an event name"));
        }
        let max = u64::from(max_window_days) * 86_400;
        if self.window_seconds == 0 || u64::from(self.window_seconds) > max {
            return invalid(format!(
                "window_seconds must be 1 to {max} ({max_window_days} days), got {}",
                self.window_seconds
            ));
        }
        Ok(self)
    }

    /// Turns ClickHouse's `(level reached, users)` pairs into per-step counts: a user at level
    /// `k` passed every step up to `k`.
    pub fn steps(&self, levels: &[(u8, u64)]) -> Vec<FunnelStep> {
        let reached = |step: usize| -> u64 {
            levels
                .iter()
                .filter(|(level, _)| usize::from(*level) > step)
                .map(|(_, users)| users)
                .sum()
        };
        let first = reached(0);
        let mut out: Vec<FunnelStep> = Vec::with_capacity(self.steps.len());
        for (i, name) in self.steps.iter().enumerate() {
            let users = reached(i);
            let previous = out.last().map_or(users, |p| p.users);
            out.push(FunnelStep {
                name: name.clone(),
                users,
                conversion_from_start: ratio(users, first),
                conversion_from_previous: if i == 0 { 1.0 } else { ratio(users, previous) },
                drop_off: previous - users,
            });
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FunnelStep {
    pub name: String,
    pub users: u64,
    pub conversion_from_start: f64,
    pub conversion_from_previous: f64,
    pub drop_off: u64,
}

/// Weekly cohort retention.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionQuery {
    pub period: Period,
    pub weeks: u32,
}

impl RetentionQuery {
    pub fn check(self) -> Result<Self, QueryError> {
        if !(1..=MAX_RETENTION_WEEKS).contains(&self.weeks) {
            return invalid(format!(
                "weeks must be 1 to {MAX_RETENTION_WEEKS}, got {}",
                self.weeks
            ));
        }
        Ok(self)
    }

    /// The Monday of the first cohort week that starts within the period, the last day a
    /// cohort week may start on, and the day after the last day whose activity counts (the last
    /// cohort's last reported week).
    pub fn bounds(&self) -> (NaiveDate, NaiveDate, NaiveDate) {
        let first = self.period.from.date_naive();
        // `to` is excluded: a period ending at midnight does not include that day's cohort.
        let last = (self.period.to - Duration::nanoseconds(1)).date_naive();
        let monday = |d: NaiveDate| {
            d - Duration::days(i64::from(
                chrono::Datelike::weekday(&d).num_days_from_monday(),
            ))
        };
        let mut start = monday(first);
        if start < first {
            start += Duration::days(7);
        }
        let end_of_activity = monday(last) + Duration::days(7 * (i64::from(self.weeks) + 1));
        (start, last, end_of_activity)
    }
}

/// Sessions and paths.
#[derive(Debug, Clone, PartialEq)]
pub struct BehaviorQuery {
    pub period: Period,
    pub user_id: String,
    pub path_length: u32,
    pub top_paths: u32,
}

impl BehaviorQuery {
    pub fn check(mut self) -> Result<Self, QueryError> {
        if self.user_id.chars().count() > 256 {
            return invalid("user_id is longer than 256 characters");
        }
        self.path_length = match self.path_length {
            0 => 3,
            n @ 2..=10 => n,
            n => return invalid(format!("path_length must be 2 to 10, got {n}")),
        };
        self.top_paths = match self.top_paths {
            0 => 10,
            n @ 1..=100 => n,
            n => return invalid(format!("top_paths must be 1 to 100, got {n}")),
        };
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).expect("valid")
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    #[test]
    fn periods_are_ordered_and_bounded() {
        assert!(Period::new(at(10), at(10)).is_err());
        assert!(Period::new(at(10), at(5)).is_err());
        assert!(Period::new(at(0), at(367 * 86_400)).is_err());
        let p = Period::new(at(0), at(86_400)).expect("valid");
        assert!(Granularity::Hour.check(&p).is_ok());
        let long = Period::new(at(0), at(200 * 86_400)).expect("valid");
        assert!(
            Granularity::Hour.check(&long).is_err(),
            "4800 hourly buckets"
        );
        assert!(Granularity::Day.check(&long).is_ok());
    }

    #[test]
    fn periods_split_at_midnights() {
        let d = i64::from(DAY_SECONDS);
        // Midnight to midnight: whole days only.
        let p = Period::new(at(10 * d), at(13 * d)).expect("valid");
        assert_eq!(
            p.split(),
            DaySplit {
                whole: Some((10, 13)),
                edges: [(0, 0), (0, 0)]
            }
        );
        // Ragged ends: the partial days on either side are edges.
        let p = Period::new(at(10 * d - 60), at(12 * d + 5)).expect("valid");
        let ten = u32::try_from(10 * d).expect("fits");
        let twelve = u32::try_from(12 * d).expect("fits");
        assert_eq!(
            p.split(),
            DaySplit {
                whole: Some((10, 12)),
                edges: [(ten - 60, ten), (twelve, twelve + 5)]
            }
        );
        // Within one day, or across one midnight without a whole day: all edges.
        let p = Period::new(at(10 * d + 5), at(11 * d + 5)).expect("valid");
        assert_eq!(
            p.split(),
            DaySplit {
                whole: None,
                edges: [(ten + 5, ten + 86_405), (0, 0)]
            }
        );
        // A sub-second end is read up to the next whole second, as the raw queries do.
        let to = at(11 * d) - Duration::milliseconds(1);
        let p = Period::new(at(10 * d), to).expect("valid");
        assert_eq!(p.split().whole, Some((10, 11)));
    }

    #[test]
    fn funnel_levels_become_cumulative_steps() {
        let q = FunnelQuery {
            period: Period::new(at(0), at(86_400)).expect("valid"),
            steps: vec!["page_view".into(), "add_to_cart".into(), "purchase".into()],
            window_seconds: 3600,
        };
        // 5 users only viewed, 3 viewed and added, 2 went all the way.
        let steps = q.steps(&[(1, 5), (2, 3), (3, 2)]);
        let users: Vec<u64> = steps.iter().map(|s| s.users).collect();
        assert_eq!(users, vec![10, 5, 2]);
        let drops: Vec<u64> = steps.iter().map(|s| s.drop_off).collect();
        assert_eq!(drops, vec![0, 5, 3]);
        assert_eq!(steps[2].conversion_from_start, 0.2);
        assert_eq!(steps[2].conversion_from_previous, 0.4);
        assert_eq!(q.steps(&[])[1].conversion_from_start, 0.0);
    }

    #[test]
    fn funnels_are_checked() {
        let period = Period::new(at(0), at(86_400)).expect("valid");
        let q = |steps: Vec<&str>, window| FunnelQuery {
            period,
            steps: steps.into_iter().map(String::from).collect(),
            window_seconds: window,
        };
        assert!(q(vec!["page_view"], 60).check(30).is_err());
        assert!(q(vec!["page_view", "x y"], 60).check(30).is_err());
        assert!(q(vec!["page_view", "purchase"], 0).check(30).is_err());
        assert!(
            q(vec!["page_view", "purchase"], 31 * 86_400)
                .check(30)
                .is_err()
        );
        assert!(
            q(vec!["page_view", "flashsale.purchased"], 60)
                .check(30)
                .is_ok()
        );
    }

    #[test]
    fn retention_cohorts_start_on_mondays_within_the_period() {
        // 2026-11-04 is a Wednesday: the first whole cohort week starts Monday 2026-11-09.
        let from = day("2026-11-04").and_hms_opt(0, 0, 0).expect("t").and_utc();
        let to = day("2026-11-30").and_hms_opt(0, 0, 0).expect("t").and_utc();
        let q = RetentionQuery {
            period: Period::new(from, to).expect("valid"),
            weeks: 2,
        }
        .check()
        .expect("valid");
        let (start, last, end) = q.bounds();
        assert_eq!(start, day("2026-11-09"));
        assert_eq!(
            last,
            day("2026-11-29"),
            "the period ends at midnight of the 30th"
        );
        // The last cohort (Monday 2026-11-23) reports weeks 0..=2, up to Sunday 2026-12-13.
        assert_eq!(end, day("2026-12-14"));
        assert!(RetentionQuery { weeks: 13, ..q }.check().is_err());
    }
}
