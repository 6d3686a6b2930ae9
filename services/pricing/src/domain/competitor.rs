//! Competitor prices: observations recorded with their source and time, and the reference
//! COMPETITIVE follows — the lowest, average and highest of each competitor's latest
//! observation in the rule's currency that is not older than the rule's `max_age_seconds`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use titan_kit::money::{Currency, Money};

/// One recorded observation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompetitorPrice {
    pub competitor: String,
    pub source: String,
    pub price: Money,
    pub observed_at: DateTime<Utc>,
}

/// The fresh competitor prices of one product, in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Reference {
    pub lowest: i64,
    /// Half-up rounded mean.
    pub average: i64,
    pub highest: i64,
    pub count: usize,
}

/// The reference from `observations` (any order): per competitor its newest observation; those
/// in another currency or older than `max_age_seconds` at `now` are ignored. `None` when
/// nothing fresh remains.
pub fn reference(
    observations: &[CompetitorPrice],
    currency: Currency,
    now: DateTime<Utc>,
    max_age_seconds: u32,
) -> Option<Reference> {
    let oldest = now - chrono::Duration::seconds(i64::from(max_age_seconds));
    let mut latest: Vec<&CompetitorPrice> = Vec::new();
    for o in observations {
        match latest.iter_mut().find(|l| l.competitor == o.competitor) {
            Some(l) if l.observed_at < o.observed_at => *l = o,
            Some(_) => {}
            None => latest.push(o),
        }
    }
    let fresh: Vec<i64> = latest
        .into_iter()
        .filter(|o| o.price.currency == currency && o.observed_at >= oldest && o.observed_at <= now)
        .map(|o| o.price.minor_units)
        .collect();
    let (lowest, highest) = (*fresh.iter().min()?, *fresh.iter().max()?);
    let sum: i128 = fresh.iter().map(|p| i128::from(*p)).sum();
    let n = i128::try_from(fresh.len()).ok()?;
    let average = i64::try_from((2 * sum + n).div_euclid(2 * n)).ok()?;
    Some(Reference {
        lowest,
        average,
        highest,
        count: fresh.len(),
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn stale_and_foreign_observations_are_ignored_and_the_newest_counts() {
        let now = Utc
            .with_ymd_and_hms(2026, 12, 6, 12, 0, 0)
            .single()
            .expect("t");
        let usd = Currency::parse("USD").expect("usd");
        let obs = |c: &str, minor, cur: &str, minutes_ago| CompetitorPrice {
            competitor: c.into(),
            source: "crawler".into(),
            price: Money::parse(minor, cur).expect("money"),
            observed_at: now - chrono::Duration::minutes(minutes_ago),
        };
        let all = [
            obs("a", 9_000, "USD", 30),
            obs("a", 9_400, "USD", 5), // a's newest
            obs("b", 10_001, "USD", 10),
            obs("c", 100, "USD", 120), // stale at 60 minutes
            obs("d", 5_000, "EUR", 1), // another currency
        ];
        assert_eq!(
            reference(&all, usd, now, 3_600),
            Some(Reference {
                lowest: 9_400,
                average: 9_701, // 9700.5 → 9701
                highest: 10_001,
                count: 2
            })
        );
        assert_eq!(reference(&all[3..], usd, now, 3_600), None);
        assert_eq!(reference(&all, usd, now, 60).map(|r| r.count), None);
    }
}
