//! The analytics rules, free of I/O: what a valid event, metric point and query look like, and
//! how the numbers ClickHouse returns become answers (funnel steps, retention shares, averages).

pub mod event;
pub mod metric;
pub mod query;

pub use event::{Event, EventError, RawEvent, Source};
pub use metric::{MetricError, MetricPoint, RawMetricPoint};
pub use query::{
    Aggregation, BehaviorQuery, DAY_SECONDS, DaySplit, FunnelQuery, FunnelStep, Granularity,
    MetricQuery, Period, ProductQuery, QueryError, RetentionQuery,
};

/// The service's name: its migrations, its consumer group and its ClickHouse tables' prefix.
pub const SERVICE: &str = "analytics";

/// `part / whole`, 0 when there is no whole (a funnel with no entrants converts nobody).
pub fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        {
            part as f64 / whole as f64
        }
    }
}

/// `total / count` in minor units, rounded half-up (an average order value of 10.005 is 10.01).
pub fn average_minor(total: i64, count: u64) -> i64 {
    let Ok(count) = i64::try_from(count) else {
        return 0;
    };
    if count == 0 {
        return 0;
    }
    let total = i128::from(total);
    let count = i128::from(count);
    let rounded = (2 * total + count).div_euclid(2 * count);
    i64::try_from(rounded).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_round_half_up() {
        assert_eq!(average_minor(1000, 3), 333);
        assert_eq!(average_minor(2001, 2), 1001); // 1000.5 → 1001
        assert_eq!(average_minor(1999, 2), 1000); // 999.5 → 1000
        assert_eq!(average_minor(5, 0), 0);
        assert_eq!(average_minor(0, 7), 0);
    }

    #[test]
    fn ratios_of_nothing_are_zero() {
        assert_eq!(ratio(3, 0), 0.0);
        assert_eq!(ratio(1, 4), 0.25);
    }
}
