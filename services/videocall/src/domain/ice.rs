//! ICE servers for a participant: the cell's STUN and TURN URIs, and how long the TURN
//! credential may live. Pure; minting is kit's `turn` module.

use chrono::{DateTime, Duration, Utc};

/// When a credential minted at `now` expires: after the configured TTL, but never after the
/// latest moment the call may still run (`must_end_by`), so a credential handed out for one
/// call cannot keep relaying after it. At least one second, so a client always gets a usable
/// expiry (coturn compares whole seconds).
pub fn credential_expiry(
    now: DateTime<Utc>,
    ttl: Duration,
    must_end_by: DateTime<Utc>,
) -> DateTime<Utc> {
    (now + ttl).min(must_end_by).max(now + Duration::seconds(1))
}

/// The latest moment a call may still run: ringing (or queued) it may wait `ring_timeout`
/// from `since` and then last `max_call`; once answered, `max_call` from the answer.
pub fn must_end_by(
    since: DateTime<Utc>,
    answered_at: Option<DateTime<Utc>>,
    ring_timeout: Duration,
    max_call: Duration,
) -> DateTime<Utc> {
    match answered_at {
        Some(answered) => answered + max_call,
        None => since + ring_timeout + max_call,
    }
}

/// The URIs split into STUN (no credential) and TURN (with one), in their configured order.
pub fn split_uris(uris: &[String]) -> (Vec<String>, Vec<String>) {
    uris.iter().cloned().partition(|u| u.starts_with("stun:"))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).expect("time")
    }

    #[test]
    fn the_ttl_applies_unless_the_call_must_end_sooner() {
        let ttl = Duration::seconds(3_600);
        assert_eq!(credential_expiry(at(1_000), ttl, at(100_000)), at(4_600));
        assert_eq!(credential_expiry(at(1_000), ttl, at(2_000)), at(2_000));
        assert_eq!(credential_expiry(at(1_000), ttl, at(500)), at(1_001));
    }

    #[test]
    fn a_call_ends_at_the_latest_max_call_after_its_answer() {
        let ring = Duration::seconds(60);
        let max = Duration::seconds(7_200);
        assert_eq!(must_end_by(at(0), None, ring, max), at(7_260));
        assert_eq!(must_end_by(at(0), Some(at(30)), ring, max), at(7_230));
    }

    #[test]
    fn stun_and_turn_are_told_apart() {
        let uris = vec![
            "turn:t:3478?transport=udp".to_owned(),
            "stun:t:3478".to_owned(),
            "turns:t:5349".to_owned(),
        ];
        let (stun, turn) = split_uris(&uris);
        assert_eq!(stun, vec!["stun:t:3478".to_owned()]);
        assert_eq!(
            turn,
            vec![
                "turn:t:3478?transport=udp".to_owned(),
                "turns:t:5349".to_owned()
            ]
        );
    }

    proptest! {
        #[test]
        fn never_past_the_ttl_nor_the_end(now in 0i64..1_000_000, ttl in 60i64..86_400, end in 0i64..2_000_000) {
            let e = credential_expiry(at(now), Duration::seconds(ttl), at(end));
            prop_assert!(e <= at(now + ttl));
            prop_assert!(e <= at(end).max(at(now + 1)));
            prop_assert!(e > at(now));
        }
    }
}
