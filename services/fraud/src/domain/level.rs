//! Risk levels with the seed's boundaries (LOW [0, 0.3), MEDIUM [0.3, 0.6), HIGH [0.6, 0.8),
//! CRITICAL [0.8, 1.0] by default; each lower bound belongs to its level) and the decision
//! taken at each.

use serde::{Deserialize, Serialize};
pub use titan_crds::config::FraudDecision as Decision;
use titan_crds::config::{FraudDecisions, FraudThresholds};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Level {
    Low,
    Medium,
    High,
    Critical,
}

impl Level {
    /// The level of `score` (already in 0..1).
    pub fn of(score: f64, t: &FraudThresholds) -> Self {
        if score >= t.critical {
            Self::Critical
        } else if score >= t.high {
            Self::High
        } else if score >= t.medium {
            Self::Medium
        } else {
            Self::Low
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "LOW",
            Self::Medium => "MEDIUM",
            Self::High => "HIGH",
            Self::Critical => "CRITICAL",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Low, Self::Medium, Self::High, Self::Critical]
            .into_iter()
            .find(|l| l.as_str() == s)
    }

    /// HIGH and above open a review case.
    pub fn opens_case(self) -> bool {
        self >= Self::High
    }

    /// The configured decision at this level.
    pub fn decision(self, d: &FraudDecisions) -> Decision {
        match self {
            Self::Low => d.low,
            Self::Medium => d.medium,
            Self::High => d.high,
            Self::Critical => d.critical,
        }
    }
}

/// How strict a decision is: APPROVE < REVIEW < REJECT.
pub fn strictness(d: Decision) -> u8 {
    match d {
        Decision::Approve => 0,
        Decision::Review => 1,
        Decision::Reject => 2,
    }
}

pub fn decision_str(d: Decision) -> &'static str {
    match d {
        Decision::Approve => "APPROVE",
        Decision::Review => "REVIEW",
        Decision::Reject => "REJECT",
    }
}

pub fn parse_decision(s: &str) -> Option<Decision> {
    [Decision::Approve, Decision::Review, Decision::Reject]
        .into_iter()
        .find(|d| decision_str(*d) == s)
}

/// The decision of a check: a rule's verdict when an enforced rule gave one, else the level's;
/// a degraded check (velocity unknown) is at least `degraded_floor`.
pub fn decide(
    level: Level,
    rule: Option<Decision>,
    degraded: bool,
    decisions: &FraudDecisions,
    degraded_floor: Decision,
) -> Decision {
    let d = rule.unwrap_or_else(|| level.decision(decisions));
    if degraded && strictness(degraded_floor) > strictness(d) {
        degraded_floor
    } else {
        d
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn boundaries_belong_to_the_upper_level() {
        let t = FraudThresholds::default();
        for (score, level) in [
            (0.0, Level::Low),
            (0.2999, Level::Low),
            (0.3, Level::Medium),
            (0.5999, Level::Medium),
            (0.6, Level::High),
            (0.7999, Level::High),
            (0.8, Level::Critical),
            (1.0, Level::Critical),
        ] {
            assert_eq!(Level::of(score, &t), level, "score {score}");
        }
    }

    #[test]
    fn default_decisions_follow_the_seed() {
        let d = FraudDecisions::default();
        let r = Decision::Review;
        assert_eq!(decide(Level::Low, None, false, &d, r), Decision::Approve);
        assert_eq!(decide(Level::Medium, None, false, &d, r), Decision::Review);
        assert_eq!(decide(Level::High, None, false, &d, r), Decision::Review);
        assert_eq!(
            decide(Level::Critical, None, false, &d, r),
            Decision::Reject
        );
        assert!(!Level::Medium.opens_case());
        assert!(Level::High.opens_case() && Level::Critical.opens_case());
    }

    #[test]
    fn a_rule_overrides_the_level_and_degraded_raises_to_the_floor() {
        let d = FraudDecisions::default();
        let r = Decision::Review;
        assert_eq!(
            decide(Level::Critical, Some(Decision::Approve), false, &d, r),
            Decision::Approve
        );
        assert_eq!(decide(Level::Low, None, true, &d, r), Decision::Review);
        assert_eq!(decide(Level::Critical, None, true, &d, r), Decision::Reject);
    }

    #[test]
    fn names_round_trip() {
        for l in [Level::Low, Level::Medium, Level::High, Level::Critical] {
            assert_eq!(Level::parse(l.as_str()), Some(l));
        }
        for d in [Decision::Approve, Decision::Review, Decision::Reject] {
            assert_eq!(parse_decision(decision_str(d)), Some(d));
        }
    }

    proptest! {
        #[test]
        fn levels_are_monotonic(a in 0.0f64..=1.0, b in 0.0f64..=1.0) {
            let t = FraudThresholds::default();
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(Level::of(lo, &t) <= Level::of(hi, &t));
        }
    }
}
