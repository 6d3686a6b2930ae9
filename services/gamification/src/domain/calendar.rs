//! Calendar days and leaderboard periods. A shopper's day is the local date at a UTC offset
//! they send (minutes east of UTC, -720..=840, DST included as the client knows it);
//! leaderboard days and ISO weeks are in UTC so that every shopper is on the same board.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};

/// The calendar date at `now` for a shopper at `offset_minutes` east of UTC; `None` when the
/// offset is not one that exists (-12:00 to +14:00).
pub fn local_date(now: DateTime<Utc>, offset_minutes: i32) -> Option<NaiveDate> {
    if !(-720..=840).contains(&offset_minutes) {
        return None;
    }
    Some((now + Duration::minutes(i64::from(offset_minutes))).date_naive())
}

/// A leaderboard period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    Daily,
    Weekly,
    AllTime,
}

impl Period {
    pub const ALL: [Self; 3] = [Self::Daily, Self::Weekly, Self::AllTime];

    /// The board of this period that `at` falls in: `day:2026-11-25`, `week:2026-W48`, `all`.
    pub fn board(self, at: DateTime<Utc>) -> String {
        match self {
            Self::Daily => format!("day:{}", at.date_naive()),
            Self::Weekly => {
                let w = at.iso_week();
                format!("week:{}-W{:02}", w.year(), w.week())
            }
            Self::AllTime => "all".to_owned(),
        }
    }

    /// Seconds a board of this period is kept after it was last written; 0 = for ever.
    pub fn keep_seconds(self) -> u64 {
        match self {
            Self::Daily => 3 * 86_400,
            Self::Weekly => 15 * 86_400,
            Self::AllTime => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_days_follow_the_offset() {
        let t = DateTime::parse_from_rfc3339("2026-11-25T23:30:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        assert_eq!(local_date(t, 0), Some(d("2026-11-25")));
        assert_eq!(local_date(t, 60), Some(d("2026-11-26")), "00:30 in UTC+1");
        assert_eq!(local_date(t, -600), Some(d("2026-11-25")));
        assert_eq!(local_date(t, 841), None);
        assert_eq!(Period::Weekly.board(t), "week:2026-W48");
        assert_eq!(Period::Daily.board(t), "day:2026-11-25");
    }
}
