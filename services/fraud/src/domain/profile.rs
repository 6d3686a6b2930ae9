//! What the service knows about a user before a check. The same [`Known`] comes from
//! PostgreSQL (the record) or from the copy cached in Redis beside the velocity sets, so both
//! paths score identically; what a check derives from it for one transaction (payment failures
//! in the window, the user's earlier amounts without this transaction) is pure.

use chrono::{DateTime, Utc};

/// Most earlier amounts of a user read for the amount anomaly.
pub const HISTORY: usize = 50;
/// Most payment failures kept per user: far beyond any threshold, so counting stops there.
pub const MAX_FAILURES: usize = 100;
/// Most first-seen devices and IPs of one user copied into the cache; a user with more is
/// read from PostgreSQL on every check (a bound on one fill, not a limit on the history).
pub const MAX_SEEN: usize = 1_000;

/// One earlier transaction of the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recent {
    pub transaction_id: String,
    pub amount: i64,
    pub at: DateTime<Utc>,
}

/// A user's history as read before a transaction: the device and IP flags are about that
/// transaction's device and IP.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Known {
    pub first_seen_at: Option<DateTime<Utc>>,
    pub account_created_at: Option<DateTime<Utc>>,
    pub successful_orders: i64,
    pub chargebacks: i64,
    pub device_seen: bool,
    pub ip_seen: bool,
    /// Newest first, at most [`MAX_FAILURES`].
    pub failures: Vec<DateTime<Utc>>,
    /// Newest first, at most [`HISTORY`] + 1 (one more, in case one is the transaction itself).
    pub recent: Vec<Recent>,
}

impl Known {
    /// Payment failures after `since`.
    pub fn failures_since(&self, since: DateTime<Utc>) -> u64 {
        u64::try_from(self.failures.iter().filter(|at| **at > since).count()).unwrap_or(u64::MAX)
    }

    /// This history (read from PostgreSQL) with what checks wrote to the cache since, which
    /// PostgreSQL may not hold yet: a device or IP seen by either is seen, and the newest
    /// amounts of both, each transaction once, newest first, at most [`HISTORY`] + 1.
    pub fn with_written(mut self, written: Known) -> Self {
        self.device_seen |= written.device_seen;
        self.ip_seen |= written.ip_seen;
        for r in written.recent {
            if !self
                .recent
                .iter()
                .any(|k| k.transaction_id == r.transaction_id)
            {
                self.recent.push(r);
            }
        }
        // Newest first; ties by id, so both orders of arrival give one history.
        self.recent.sort_by(|a, b| {
            b.at.cmp(&a.at)
                .then_with(|| a.transaction_id.cmp(&b.transaction_id))
        });
        self.recent.truncate(HISTORY + 1);
        self
    }

    /// The newest [`HISTORY`] earlier amounts other than `transaction_id`'s own (a retried
    /// check must not compare the amount with itself), newest first.
    pub fn amounts_before(&self, transaction_id: &str) -> Vec<i64> {
        self.recent
            .iter()
            .filter(|r| r.transaction_id != transaction_id)
            .take(HISTORY)
            .map(|r| r.amount)
            .collect()
    }
}

/// A device or IP first seen for a user, as the cache's set holds it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seen {
    Device(String),
    Ip(String),
}

impl Seen {
    /// The set member: a kind prefix, so a device and an IP with the same text differ.
    pub fn member(&self) -> String {
        match self {
            Self::Device(v) => format!("d:{v}"),
            Self::Ip(v) => format!("i:{v}"),
        }
    }
}

/// What PostgreSQL holds about a user: the facts for one transaction, and everything the cache
/// needs to answer the next ones (`None` when the user has more than [`MAX_SEEN`] devices and
/// IPs, so the cache is not filled).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub known: Known,
    pub seen: Option<Vec<Seen>>,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000 + s, 0).expect("time")
    }

    fn recent(n: usize) -> Vec<Recent> {
        (0..n)
            .map(|i| Recent {
                transaction_id: format!("t{i}"),
                amount: i as i64 * 10,
                at: at(-(i as i64)),
            })
            .collect()
    }

    #[test]
    fn failures_count_only_after_the_window_start() {
        let k = Known {
            failures: vec![at(10), at(0), at(-1)],
            ..Known::default()
        };
        assert_eq!(
            k.failures_since(at(0)),
            1,
            "a failure exactly at the start is outside"
        );
        assert_eq!(k.failures_since(at(-2)), 3);
    }

    #[test]
    fn the_transaction_itself_is_not_its_own_history() {
        let k = Known {
            recent: recent(HISTORY + 1),
            ..Known::default()
        };
        let other = k.amounts_before("new");
        assert_eq!(other.len(), HISTORY);
        assert_eq!(other[0], 0);
        assert_eq!(other[HISTORY - 1], (HISTORY as i64 - 1) * 10);
        let retried = k.amounts_before("t3");
        assert_eq!(retried.len(), HISTORY);
        assert!(!retried.contains(&30));
        assert_eq!(retried[HISTORY - 1], HISTORY as i64 * 10);
    }

    #[test]
    fn seen_members_keep_devices_and_ips_apart() {
        assert_eq!(Seen::Device("a".into()).member(), "d:a");
        assert_eq!(Seen::Ip("a".into()).member(), "i:a");
    }

    #[test]
    fn what_checks_wrote_joins_what_postgresql_holds() {
        let stored = Known {
            successful_orders: 3,
            device_seen: false,
            ip_seen: true,
            recent: recent(3)[1..].to_vec(),
            ..Known::default()
        };
        let written = Known {
            device_seen: true,
            ip_seen: false,
            recent: recent(2),
            ..Known::default()
        };
        let k = stored.with_written(written);
        assert_eq!(k.successful_orders, 3);
        assert!(k.device_seen && k.ip_seen);
        assert_eq!(k.recent, recent(3));
    }

    proptest! {
        /// However the history is split between PostgreSQL and the cache (each may hold any
        /// part, both may hold the same transaction), the join is the newest of the whole.
        #[test]
        fn any_split_joins_to_the_whole_history(
            n in 0usize..120, in_pg in proptest::collection::vec(any::<bool>(), 120),
            in_cache in proptest::collection::vec(any::<bool>(), 120),
        ) {
            let all = recent(n);
            let part = |keep: &[bool]| -> Vec<Recent> {
                all.iter().zip(keep).filter(|(_, k)| **k).map(|(r, _)| r.clone()).collect()
            };
            let stored = Known { recent: part(&in_pg), ..Known::default() };
            let written = Known { recent: part(&in_cache), ..Known::default() };
            let joined = stored.with_written(written).recent;
            let expected: Vec<Recent> = all
                .iter()
                .zip(in_pg.iter().zip(&in_cache))
                .filter(|(_, (p, c))| **p || **c)
                .map(|(r, _)| r.clone())
                .take(HISTORY + 1)
                .collect();
            prop_assert_eq!(joined, expected);
        }

        #[test]
        fn history_is_at_most_history_long_and_never_holds_the_transaction(
            n in 0usize..80, pick in 0usize..80,
        ) {
            let k = Known { recent: recent(n), ..Known::default() };
            let amounts = k.amounts_before(&format!("t{pick}"));
            prop_assert!(amounts.len() <= HISTORY);
            let expected: Vec<i64> = (0..n)
                .filter(|i| *i != pick)
                .take(HISTORY)
                .map(|i| i as i64 * 10)
                .collect();
            prop_assert_eq!(amounts, expected);
        }
    }
}
