//! Review cases: opened at HIGH and above, assigned to analysts, decided with an audit reason;
//! a decided case is closed and its verdict labels the transaction for training.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CaseStatus {
    Open,
    Assigned,
    Decided,
}

impl CaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "OPEN",
            Self::Assigned => "ASSIGNED",
            Self::Decided => "DECIDED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Open, Self::Assigned, Self::Decided]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Fraud,
    Legitimate,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fraud => "FRAUD",
            Self::Legitimate => "LEGITIMATE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Fraud, Self::Legitimate]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// Why a case cannot change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaseRefusal {
    #[error("case {0} is already decided")]
    Closed(String),
    #[error("case {case} was decided {previous}; a decided case does not change")]
    Decided {
        case: String,
        previous: &'static str,
    },
}

/// Whether a case in `status` (with an earlier `verdict` and `reason`) may take `verdict` with
/// `reason`: `Ok(false)` is a repeat of the same decision, which changes nothing.
pub fn may_decide(
    case: &str,
    status: CaseStatus,
    previous: Option<(Verdict, &str)>,
    verdict: Verdict,
    reason: &str,
) -> Result<bool, CaseRefusal> {
    match (status, previous) {
        (CaseStatus::Decided, Some((v, r))) if v == verdict && r == reason => Ok(false),
        (CaseStatus::Decided, Some((v, _))) => Err(CaseRefusal::Decided {
            case: case.to_owned(),
            previous: v.as_str(),
        }),
        (CaseStatus::Decided, None) => Err(CaseRefusal::Closed(case.to_owned())),
        _ => Ok(true),
    }
}

/// Whether a case in `status` may be assigned.
pub fn may_assign(case: &str, status: CaseStatus) -> Result<(), CaseRefusal> {
    if status == CaseStatus::Decided {
        Err(CaseRefusal::Closed(case.to_owned()))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decided_case_only_repeats() {
        let open = may_decide("c", CaseStatus::Assigned, None, Verdict::Fraud, "card test");
        assert_eq!(open, Ok(true));
        let again = may_decide(
            "c",
            CaseStatus::Decided,
            Some((Verdict::Fraud, "card test")),
            Verdict::Fraud,
            "card test",
        );
        assert_eq!(again, Ok(false));
        let other = may_decide(
            "c",
            CaseStatus::Decided,
            Some((Verdict::Fraud, "card test")),
            Verdict::Legitimate,
            "ok",
        );
        assert_eq!(
            other.map_err(|e| e.to_string()),
            Err("case c was decided FRAUD; a decided case does not change".into())
        );
        assert!(may_assign("c", CaseStatus::Decided).is_err());
        assert!(may_assign("c", CaseStatus::Open).is_ok());
    }

    #[test]
    fn names_round_trip() {
        for s in [CaseStatus::Open, CaseStatus::Assigned, CaseStatus::Decided] {
            assert_eq!(CaseStatus::parse(s.as_str()), Some(s));
        }
        for v in [Verdict::Fraud, Verdict::Legitimate] {
            assert_eq!(Verdict::parse(v.as_str()), Some(v));
        }
    }
}
