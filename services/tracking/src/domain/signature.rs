//! Carriers' webhook signatures: `X-Titan-Signature: sha256=<hex>`, the HMAC-SHA256 under the
//! carrier's secret of `<X-Titan-Timestamp>.<raw body>`. The timestamp is signed with the
//! body, so a captured request cannot be sent again later with a fresh timestamp, and one
//! older (or further ahead) than [`MAX_AGE`] is refused; a replay within it appends nothing
//! new, because events are de-duplicated by the carrier's event id.

use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The most a signed request's timestamp may differ from our clock.
pub const MAX_AGE: Duration = Duration::minutes(5);
/// The shortest secret accepted: shorter ones are treated as not configured.
pub const MIN_SECRET: usize = 32;

/// Why a webhook request was not accepted as the carrier's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Titan-Timestamp header is missing or not unix seconds")]
    BadTimestamp,
    #[error("the timestamp {0} is more than 5 minutes away from now; sign the request again")]
    Stale(i64),
    #[error("the X-Titan-Signature header is missing or not sha256=<64 hex digits>")]
    BadHeader,
    #[error("the signature does not match the body")]
    Mismatch,
}

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("hmac takes any key");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Titan-Signature` value for `body` sent at `timestamp` (what a carrier computes).
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Checks the headers against `body` at `now`; the comparison is constant-time.
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), SignatureError> {
    let timestamp = timestamp.ok_or(SignatureError::BadTimestamp)?;
    let seconds: i64 = timestamp
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    if (now.timestamp() - seconds).abs() > MAX_AGE.num_seconds() {
        return Err(SignatureError::Stale(seconds));
    }
    let digest = signature
        .and_then(|s| s.strip_prefix("sha256="))
        .and_then(|h| hex::decode(h).ok())
        .filter(|d| d.len() == 32)
        .ok_or(SignatureError::BadHeader)?;
    mac(secret, timestamp, body)
        .verify_slice(&digest)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"acme-webhook-secret-of-32-bytes!!";

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000, 0).expect("time")
    }

    #[test]
    fn a_signed_body_verifies_and_anything_else_does_not() {
        let body = br#"{"events":[]}"#;
        let ts = "1900000000";
        let sig = sign(SECRET, ts, body);
        assert_eq!(sig.len(), 7 + 64);
        assert_eq!(verify(SECRET, Some(ts), Some(&sig), body, now()), Ok(()));
        // The body, the timestamp or the secret changed: no match.
        assert_eq!(
            verify(SECRET, Some(ts), Some(&sig), br#"{"events":[1]}"#, now()),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, Some("1900000001"), Some(&sig), body, now()),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                b"another-secret-another-secret-xx",
                Some(ts),
                Some(&sig),
                body,
                now()
            ),
            Err(SignatureError::Mismatch)
        );
        for bad in [
            None,
            Some("sha1=00"),
            Some("sha256=zz"),
            Some("sha256=00ff"),
        ] {
            assert_eq!(
                verify(SECRET, Some(ts), bad, body, now()),
                Err(SignatureError::BadHeader)
            );
        }
        assert_eq!(
            verify(SECRET, None, Some(&sig), body, now()),
            Err(SignatureError::BadTimestamp)
        );
        assert_eq!(
            verify(SECRET, Some("soon"), Some(&sig), body, now()),
            Err(SignatureError::BadTimestamp)
        );
    }

    #[test]
    fn timestamps_older_or_further_ahead_than_five_minutes_are_stale() {
        let body = b"{}";
        for (ts, ok) in [
            (1_900_000_000 - 300, true),
            (1_900_000_000 - 301, false),
            (1_900_000_000 + 300, true),
            (1_900_000_000 + 301, false),
        ] {
            let ts = ts.to_string();
            let sig = sign(SECRET, &ts, body);
            let got = verify(SECRET, Some(&ts), Some(&sig), body, now());
            if ok {
                assert_eq!(got, Ok(()), "{ts}");
            } else {
                assert!(matches!(got, Err(SignatureError::Stale(_))), "{ts}");
            }
        }
    }
}
