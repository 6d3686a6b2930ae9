//! Badges: rules over a shopper's counters (defaults: Loyal at 10 purchases, Shopaholic at 100,
//! Super Reviewer at 50 reviews, VIP from level 8). Each is awarded once: the store records it
//! with a unique key, this module only says which are earned.

use titan_crds::config::BadgeRules;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Badge {
    Loyal,
    Shopaholic,
    SuperReviewer,
    Vip,
}

impl Badge {
    pub const ALL: [Self; 4] = [
        Self::Loyal,
        Self::Shopaholic,
        Self::SuperReviewer,
        Self::Vip,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Loyal => "LOYAL",
            Self::Shopaholic => "SHOPAHOLIC",
            Self::SuperReviewer => "SUPER_REVIEWER",
            Self::Vip => "VIP",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.as_str() == s)
    }
}

/// What badges are judged on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub purchases: u32,
    pub reviews: u32,
    pub level: u32,
}

/// The badges `counters` earn under `rules`.
pub fn earned(counters: Counters, rules: &BadgeRules) -> Vec<Badge> {
    let mut out = Vec::new();
    if counters.purchases >= rules.loyal_purchases {
        out.push(Badge::Loyal);
    }
    if counters.purchases >= rules.shopaholic_purchases {
        out.push(Badge::Shopaholic);
    }
    if counters.reviews >= rules.super_reviewer_reviews {
        out.push(Badge::SuperReviewer);
    }
    if counters.level >= rules.vip_level {
        out.push(Badge::Vip);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn badges_are_earned_exactly_at_their_edges() {
        let r = BadgeRules::default();
        let at = |purchases, reviews, level| {
            earned(
                Counters {
                    purchases,
                    reviews,
                    level,
                },
                &r,
            )
        };
        assert_eq!(at(9, 49, 7), vec![]);
        assert_eq!(at(10, 49, 7), vec![Badge::Loyal]);
        assert_eq!(at(99, 50, 7), vec![Badge::Loyal, Badge::SuperReviewer]);
        assert_eq!(
            at(100, 0, 8),
            vec![Badge::Loyal, Badge::Shopaholic, Badge::Vip]
        );
    }
}
