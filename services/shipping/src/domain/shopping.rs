//! Rate shopping: every enabled carrier's quotes ranked by the strategy. CHEAPEST orders by
//! amount, then fewer days, then carrier name, then service level; FASTEST by days, then
//! amount, then carrier name, then service level. So ties always end the same way whatever
//! order the carriers answered in. Amounts in another currency than the cell's shipping
//! currency are left out: there is no exchange rate to compare them with.

use serde::{Deserialize, Serialize};
use titan_crds::config::RateShopping;

use super::ServiceLevel;

/// One carrier's price for one service level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    pub carrier: String,
    pub level: ServiceLevel,
    pub amount_minor: u64,
    pub currency: String,
    pub days: u32,
}

/// Which quote wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Cheapest,
    Fastest,
}

titan_kit::names!(Strategy {
    Cheapest => "CHEAPEST",
    Fastest => "FASTEST",
});

impl From<RateShopping> for Strategy {
    fn from(r: RateShopping) -> Self {
        match r {
            RateShopping::Cheapest => Self::Cheapest,
            RateShopping::Fastest => Self::Fastest,
        }
    }
}

/// `quotes` in `currency`, best first.
pub fn shop(mut quotes: Vec<Quote>, strategy: Strategy, currency: &str) -> Vec<Quote> {
    quotes.retain(|q| q.currency == currency);
    quotes.sort_by(|a, b| {
        let first = match strategy {
            Strategy::Cheapest => (a.amount_minor, a.days).cmp(&(b.amount_minor, b.days)),
            Strategy::Fastest => (a.days, a.amount_minor).cmp(&(b.days, b.amount_minor)),
        };
        first
            .then_with(|| a.carrier.cmp(&b.carrier))
            .then_with(|| a.level.cmp(&b.level))
    });
    quotes
}

#[cfg(test)]
mod tests {
    use proptest::{prelude::*, strategy::Strategy as _};

    use super::{Quote, ServiceLevel, Strategy, shop};

    fn q(carrier: &str, level: ServiceLevel, amount_minor: u64, days: u32) -> Quote {
        Quote {
            carrier: carrier.into(),
            level,
            amount_minor,
            currency: "SGD".into(),
            days,
        }
    }

    #[test]
    fn cheapest_and_fastest_with_their_ties() {
        use ServiceLevel::*;
        let quotes = vec![
            q("zeta", Standard, 500, 3),
            q("alpha", Express, 900, 1),
            q("beta", Standard, 500, 2),
            q("alpha", Standard, 500, 2),
            q("beta", Overnight, 1_500, 1),
            Quote {
                currency: "USD".into(),
                ..q("cheap", Economy, 1, 9)
            },
        ];
        let cheapest = shop(quotes.clone(), Strategy::Cheapest, "SGD");
        assert_eq!(
            cheapest,
            vec![
                q("alpha", Standard, 500, 2),
                q("beta", Standard, 500, 2),
                q("zeta", Standard, 500, 3),
                q("alpha", Express, 900, 1),
                q("beta", Overnight, 1_500, 1),
            ]
        );
        let fastest = shop(quotes, Strategy::Fastest, "SGD");
        assert_eq!(
            fastest,
            vec![
                q("alpha", Express, 900, 1),
                q("beta", Overnight, 1_500, 1),
                q("alpha", Standard, 500, 2),
                q("beta", Standard, 500, 2),
                q("zeta", Standard, 500, 3),
            ]
        );
        // One carrier, two levels at the same price and days: the slower level name first.
        assert_eq!(
            shop(
                vec![q("a", Express, 5, 1), q("a", Standard, 5, 1)],
                Strategy::Cheapest,
                "SGD"
            )[0],
            q("a", Standard, 5, 1)
        );
    }

    fn quotes() -> impl proptest::strategy::Strategy<Value = Vec<Quote>> {
        let level = proptest::sample::select(ServiceLevel::ALL.to_vec());
        let carrier = proptest::sample::select(vec!["a", "b", "c"]);
        proptest::collection::vec(
            (carrier, level, 0u64..20, 1u32..5).prop_map(|(c, l, a, d)| q(c, l, a, d)),
            0..12,
        )
    }

    proptest! {
        #[test]
        fn the_winner_does_not_depend_on_answer_order(qs in quotes(), seed in any::<u64>()) {
            let mut shuffled = qs.clone();
            // A deterministic shuffle from the seed.
            let n = shuffled.len();
            for i in 0..n {
                let j = (seed.wrapping_mul(i as u64 + 7) % n as u64) as usize;
                shuffled.swap(i, j);
            }
            for s in [Strategy::Cheapest, Strategy::Fastest] {
                let ranked = shop(qs.clone(), s, "SGD");
                prop_assert_eq!(&ranked, &shop(shuffled.clone(), s, "SGD"));
                prop_assert_eq!(ranked.len(), qs.len());
                if let Some(best) = ranked.first() {
                    for other in &qs {
                        match s {
                            Strategy::Cheapest => prop_assert!(best.amount_minor <= other.amount_minor),
                            Strategy::Fastest => prop_assert!(best.days <= other.days),
                        }
                    }
                }
            }
        }
    }
}
