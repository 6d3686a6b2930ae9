//! A driver's performance: deliveries completed and failed, the share completed within
//! their time window, and the rating — the mean of customer ratings 1 to 5, at most one per
//! completed delivery. Kept as integer counts and a sum, so the store can add to them in one
//! UPDATE and the mean is exact, not a running average that drifts.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{DeliveryStatus, InputError, TimeWindow};

/// A customer's rating of one delivery: 1 to 5 stars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Rating(u8);

impl Rating {
    pub fn parse(field: &'static str, n: i64) -> Result<Self, InputError> {
        match u8::try_from(n) {
            Ok(r @ 1..=5) => Ok(Self(r)),
            _ => Err(InputError::new(
                field,
                format!("is {n}; a rating is 1 to 5"),
            )),
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }

    /// Whether a delivery in `status` may be rated: only a completed one is.
    pub fn check_rateable(delivery: Uuid, status: DeliveryStatus) -> Result<(), NotRateable> {
        if status == DeliveryStatus::Completed {
            Ok(())
        } else {
            Err(NotRateable { delivery, status })
        }
    }
}

/// A rating for a delivery that was not completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("delivery {delivery} is {status}; only COMPLETED deliveries are rated")]
pub struct NotRateable {
    pub delivery: Uuid,
    pub status: DeliveryStatus,
}

/// How one delivery ended, as performance counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Completed at `at`; on time when `at` falls in `window`.
    Completed {
        at: DateTime<Utc>,
        window: TimeWindow,
    },
    Failed,
}

/// A driver's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Performance {
    pub completed: u64,
    pub failed: u64,
    /// Completed within their window.
    pub on_time: u64,
    /// Sum and number of the ratings received.
    pub rating_sum: u64,
    pub ratings: u64,
}

impl Performance {
    pub fn record(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Completed { at, window } => {
                self.completed += 1;
                self.on_time += u64::from(window.contains(at));
            }
            Outcome::Failed => self.failed += 1,
        }
    }

    pub fn rate(&mut self, rating: Rating) {
        self.rating_sum += u64::from(rating.get());
        self.ratings += 1;
    }

    /// On-time completions over completions; `None` before the first completion.
    pub fn on_time_rate(&self) -> Option<f64> {
        (self.completed > 0).then(|| self.on_time as f64 / self.completed as f64)
    }

    /// Completions over finished deliveries; `None` before the first.
    pub fn success_rate(&self) -> Option<f64> {
        let finished = self.completed + self.failed;
        (finished > 0).then(|| self.completed as f64 / finished as f64)
    }

    /// Mean of the ratings; `None` before the first.
    pub fn rating(&self) -> Option<f64> {
        (self.ratings > 0).then(|| self.rating_sum as f64 / self.ratings as f64)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0)
            .single()
            .expect("time")
    }

    fn window() -> TimeWindow {
        TimeWindow::new("window", t(0), t(3600)).expect("window")
    }

    #[test]
    fn on_time_means_within_the_window_and_ratings_average_exactly() {
        let mut p = Performance::default();
        assert_eq!(
            (p.on_time_rate(), p.success_rate(), p.rating()),
            (None, None, None)
        );
        p.record(Outcome::Completed {
            at: t(3600),
            window: window(),
        });
        p.record(Outcome::Completed {
            at: t(3601),
            window: window(),
        });
        p.record(Outcome::Completed {
            at: t(-1),
            window: window(),
        });
        p.record(Outcome::Completed {
            at: t(0),
            window: window(),
        });
        p.record(Outcome::Failed);
        assert_eq!((p.completed, p.failed, p.on_time), (4, 1, 2));
        assert_eq!(p.on_time_rate(), Some(0.5));
        assert_eq!(p.success_rate(), Some(0.8));
        for r in [5, 4, 4] {
            p.rate(Rating::parse("rating", r).expect("rating"));
        }
        assert_eq!(p.rating(), Some(13.0 / 3.0));
    }

    #[test]
    fn ratings_are_1_to_5_for_completed_deliveries_only() {
        assert_eq!(
            Rating::parse("rating", 0).map_err(|e| e.to_string()),
            Err("rating: is 0; a rating is 1 to 5".into())
        );
        assert!(Rating::parse("rating", 6).is_err());
        assert!(Rating::parse("rating", 256 + 3).is_err());
        let d = Uuid::from_u128(1);
        assert_eq!(Rating::check_rateable(d, DeliveryStatus::Completed), Ok(()));
        assert_eq!(
            Rating::check_rateable(d, DeliveryStatus::Failed).map_err(|e| e.to_string()),
            Err(format!(
                "delivery {d} is FAILED; only COMPLETED deliveries are rated"
            ))
        );
    }

    proptest! {
        /// The mean is the arithmetic mean of what was given, and so within 1 to 5.
        #[test]
        fn the_rating_is_the_mean_of_the_ratings(rs in prop::collection::vec(1i64..=5, 1..200)) {
            let mut p = Performance::default();
            for &r in &rs {
                p.rate(Rating::parse("rating", r).expect("rating"));
            }
            let mean = rs.iter().sum::<i64>() as f64 / rs.len() as f64;
            prop_assert_eq!(p.rating(), Some(mean));
            prop_assert!((1.0..=5.0).contains(&mean));
        }

        #[test]
        fn rates_count_what_was_recorded(outcomes in prop::collection::vec(prop::option::of(-600i64..4200), 1..100)) {
            let mut p = Performance::default();
            for o in &outcomes {
                p.record(o.map_or(Outcome::Failed, |s| Outcome::Completed { at: t(s), window: window() }));
            }
            let completed = outcomes.iter().flatten().count() as u64;
            let on_time = outcomes.iter().flatten().filter(|&&s| (0..=3600).contains(&s)).count() as u64;
            prop_assert_eq!((p.completed, p.failed, p.on_time), (completed, outcomes.len() as u64 - completed, on_time));
            if let Some(r) = p.on_time_rate() {
                prop_assert!((0.0..=1.0).contains(&r));
            }
        }
    }
}
