//! What each action earns (the seed rules, configurable): a purchase 1 point per whole unit of
//! its currency (floor, by the currency's minor-unit exponent), a review 50, a referral 500, a
//! daily login 10, a social share 25; check-ins grow with the streak up to a cap.

use titan_crds::config::PointsRules;
use titan_kit::money::Money;

/// Points of the first day of a check-in streak; each further day adds as much, up to
/// [`CHECK_IN_CAP_DAYS`].
pub const CHECK_IN_BASE: i64 = 5;
/// The streak length from which a check-in earns no more.
pub const CHECK_IN_CAP_DAYS: u32 = 7;

/// Why a ledger row exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    Purchase,
    Review,
    Referral,
    DailyLogin,
    SocialShare,
    CheckIn,
    Mission,
    Reward,
}

impl Reason {
    pub const ALL: [Self; 8] = [
        Self::Purchase,
        Self::Review,
        Self::Referral,
        Self::DailyLogin,
        Self::SocialShare,
        Self::CheckIn,
        Self::Mission,
        Self::Reward,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Purchase => "purchase",
            Self::Review => "review",
            Self::Referral => "referral",
            Self::DailyLogin => "daily_login",
            Self::SocialShare => "social_share",
            Self::CheckIn => "check_in",
            Self::Mission => "mission",
            Self::Reward => "reward",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// An action that earns points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Purchase(Money),
    Review,
    Referral,
    DailyLogin,
    SocialShare,
    /// A check-in on day `streak` of a streak (1 = the first day).
    CheckIn {
        streak: u32,
    },
}

impl Action {
    pub fn reason(self) -> Reason {
        match self {
            Self::Purchase(_) => Reason::Purchase,
            Self::Review => Reason::Review,
            Self::Referral => Reason::Referral,
            Self::DailyLogin => Reason::DailyLogin,
            Self::SocialShare => Reason::SocialShare,
            Self::CheckIn { .. } => Reason::CheckIn,
        }
    }

    /// The points it earns under `rules`.
    pub fn points(self, rules: &PointsRules) -> i64 {
        match self {
            Self::Purchase(total) => {
                total.currency.whole_units(total.minor_units) * i64::from(rules.per_currency_unit)
            }
            Self::Review => i64::from(rules.review),
            Self::Referral => i64::from(rules.referral),
            Self::DailyLogin => i64::from(rules.daily_login),
            Self::SocialShare => i64::from(rules.social_share),
            Self::CheckIn { streak } => {
                CHECK_IN_BASE * i64::from(streak.clamp(1, CHECK_IN_CAP_DAYS))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_rules() {
        let r = PointsRules::default();
        let m = |minor, c| Money::parse(minor, c).expect("money");
        // 19.99 USD → 19 points (floor); 1999 JPY → 1999; 1.999 KWD → 1; 0.99 USD → 0.
        assert_eq!(Action::Purchase(m(1999, "USD")).points(&r), 19);
        assert_eq!(Action::Purchase(m(1999, "JPY")).points(&r), 1999);
        assert_eq!(Action::Purchase(m(1999, "KWD")).points(&r), 1);
        assert_eq!(Action::Purchase(m(99, "USD")).points(&r), 0);
        assert_eq!(Action::Review.points(&r), 50);
        assert_eq!(Action::Referral.points(&r), 500);
        assert_eq!(Action::DailyLogin.points(&r), 10);
        assert_eq!(Action::SocialShare.points(&r), 25);
    }

    #[test]
    fn check_ins_grow_with_the_streak_up_to_the_cap() {
        let r = PointsRules::default();
        let p = |streak| Action::CheckIn { streak }.points(&r);
        assert_eq!((p(1), p(2), p(7), p(8), p(100)), (5, 10, 35, 35, 35));
    }

    #[test]
    fn reasons_round_trip() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
    }
}
