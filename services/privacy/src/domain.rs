//! The privacy service's rules, free of I/O: what a job is, how its state follows from its
//! tasks, the pseudonym an erasure leaves behind, and the export document.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use titan_kit::privacy::Erasure;
use uuid::Uuid;

pub const SERVICE: &str = "privacy";

/// The key of the pseudonyms: 32 random bytes, made once per cell.
pub const KEY_BYTES: usize = 32;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    Export,
    Erasure,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Export => "export",
            Self::Erasure => "erasure",
        }
    }

    /// The stored name back; `None` for a value the schema's CHECK would never let in.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "export" => Some(Self::Export),
            "erasure" => Some(Self::Erasure),
            _ => None,
        }
    }

    /// The idempotency method name of the RPC that starts it.
    pub fn method(self) -> &'static str {
        match self {
            Self::Export => "RequestExport",
            Self::Erasure => "RequestErasure",
        }
    }
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// A service has not answered yet (or, every one has, and the service has not yet gathered
    /// the export or scrubbed the job).
    Running,
    Completed,
    /// An export whose object is gone: its time ran out, or its user was erased.
    Expired,
}

impl JobState {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "running" => Some(Self::Running),
            "completed" => Some(Self::Completed),
            "expired" => Some(Self::Expired),
            _ => None,
        }
    }
}

/// One service's part of a job, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub service: String,
    pub done: bool,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
    pub report: Option<Erasure>,
}

/// A job with its tasks, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: Uuid,
    pub kind: JobKind,
    pub state: JobState,
    pub subject: String,
    pub requested_by: String,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub export_key: Option<String>,
    pub export_expires_at: Option<DateTime<Utc>>,
    pub tasks: Vec<Task>,
}

/// A job to record: its tasks are the participants of the moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub id: Uuid,
    pub kind: JobKind,
    pub subject: String,
    pub pseudonym: String,
    pub requested_by: String,
}

/// The pseudonym of `user_id` under `key`: `p_` and the first 32 hex digits of
/// HMAC-SHA256(key, user id). Keyed, so nobody without the cell's key can test a guess of who
/// is behind it (a plain hash of an e-mail address is reversed by hashing candidates); 128 bits,
/// so two people never share one in practice.
pub fn pseudonym(key: &[u8], user_id: &str) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("hmac accepts keys of any length");
    mac.update(user_id.as_bytes());
    let digest = mac.finalize().into_bytes();
    format!("p_{}", hex::encode(&digest[..16]))
}

/// The object an export's parts are joined into.
pub fn export_key(job_id: Uuid) -> String {
    format!("privacy/exports/{job_id}.json")
}

/// The export a person receives: each service's part under its name.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportDocument<'a> {
    pub user_id: &'a str,
    pub job_id: Uuid,
    pub generated_at: DateTime<Utc>,
    pub services: BTreeMap<String, serde_json::Value>,
}

/// How long a download URL handed out at `now` stays valid: until the object's expiry, and
/// never beyond what SigV4 signs (7 days) or under a second. `None` once the object is due.
pub fn url_lifetime(now: DateTime<Utc>, expires_at: DateTime<Utc>) -> Option<std::time::Duration> {
    let left = (expires_at - now).to_std().ok()?;
    let capped = left.min(std::time::Duration::from_secs(7 * 24 * 3600));
    (capped >= std::time::Duration::from_secs(1)).then_some(capped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_pseudonym_is_the_keyed_hash_of_rfc_4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            pseudonym(b"Jefe", "what do ya want for nothing?"),
            "p_5bdcc146bf60754e6a042426089575c7"
        );
    }

    proptest! {
        #[test]
        fn pseudonyms_are_stable_and_do_not_meet(a in "[ -~]{1,64}", b in "[ -~]{1,64}", key in proptest::collection::vec(any::<u8>(), 32)) {
            prop_assert_eq!(pseudonym(&key, &a), pseudonym(&key, &a));
            prop_assert_eq!(pseudonym(&key, &a).len(), 34);
            prop_assert!(!pseudonym(&key, &a).contains(&a) || a.len() < 3);
            if a != b {
                prop_assert_ne!(pseudonym(&key, &a), pseudonym(&key, &b));
            }
        }

        #[test]
        fn another_key_gives_another_pseudonym(user in "[ -~]{1,64}", k1 in proptest::collection::vec(any::<u8>(), 32), k2 in proptest::collection::vec(any::<u8>(), 32)) {
            prop_assume!(k1 != k2);
            prop_assert_ne!(pseudonym(&k1, &user), pseudonym(&k2, &user));
        }
    }

    #[test]
    fn a_url_lives_until_the_object_expires_at_most_a_week() {
        let now = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).expect("time");
        let hour = chrono::Duration::hours(1);
        assert_eq!(
            url_lifetime(now, now + hour),
            Some(std::time::Duration::from_secs(3600))
        );
        assert_eq!(
            url_lifetime(now, now + chrono::Duration::days(30)),
            Some(std::time::Duration::from_secs(7 * 24 * 3600))
        );
        assert_eq!(
            url_lifetime(now, now + chrono::Duration::milliseconds(999)),
            None
        );
        assert_eq!(url_lifetime(now, now - hour), None);
    }

    #[test]
    fn kinds_and_states_read_back_what_is_stored() {
        for kind in [JobKind::Export, JobKind::Erasure] {
            assert_eq!(JobKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(JobKind::parse("delete"), None);
        assert_eq!(JobState::parse("expired"), Some(JobState::Expired));
        assert_eq!(JobState::parse("done"), None);
        assert_eq!(
            export_key(Uuid::nil()),
            "privacy/exports/00000000-0000-0000-0000-000000000000.json"
        );
    }
}
