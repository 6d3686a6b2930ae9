//! A person's videocall records for the privacy jobs (`crate::privacy`): everything held about
//! them, and their erasure. Calls stay as support history under the pseudonym, and so do the
//! quality samples they reported; the recordings of every call they took part in (theirs and
//! the other party's, which show them too) leave the bucket and the table, and their consent
//! to record is withdrawn so that no recording of those calls can be added afterwards.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use titan_kit::objects::{MAX_LIST_LIMIT, ObjectKey, ObjectStorage};
use uuid::Uuid;

use crate::{app::VideocallError, domain::SERVICE};

/// A call the person placed or took, without the other party.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct CallRecord {
    pub id: Uuid,
    /// `caller` or `callee`.
    pub role: String,
    pub kind: String,
    pub media: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub ringing_at: Option<DateTime<Utc>>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub end_reason: Option<String>,
    /// When they consented to be recorded.
    pub consent_at: Option<DateTime<Utc>>,
}

/// A quality sample the person's client reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct SampleRecord {
    pub call_id: Uuid,
    pub seq: i32,
    pub rtt_ms: i32,
    pub packet_loss_bp: i32,
    pub jitter_ms: i32,
    pub bitrate_kbps: i32,
    pub width: i32,
    pub height: i32,
    pub reported_at: DateTime<Utc>,
}

/// A recording of a call the person took part in (whoever uploaded it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct RecordingRecord {
    pub id: Uuid,
    pub call_id: Uuid,
    pub uploaded_by_me: bool,
    pub object_key: String,
    pub content_type: String,
    pub bytes: i64,
    /// Hex.
    pub sha256: String,
    pub created_at: DateTime<Utc>,
}

/// Everything videocall holds about one person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Records {
    pub user_id: String,
    pub calls: Vec<CallRecord>,
    pub quality_samples: Vec<SampleRecord>,
    /// The recordings' details; the media stay in the bucket (kit's export is one JSON
    /// document).
    pub recordings: Vec<RecordingRecord>,
}

/// What an erasure did, by kind of record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    pub calls: u64,
    pub quality_samples: u64,
    /// Consents to record withdrawn.
    pub consents: u64,
    pub recordings: u64,
    /// Objects found and deleted under the calls' recording prefixes.
    pub recording_objects: u64,
    /// Marks of a call not over yet.
    pub busy_marks: u64,
}

#[derive(Debug, Clone)]
pub struct PersonalStore {
    pool: PgPool,
    objects: ObjectStorage,
}

const CALLS_OF: &str = "SELECT id FROM videocall_calls WHERE caller_id = $1 OR callee_id = $1";

impl PersonalStore {
    pub fn new(pool: PgPool, objects: ObjectStorage) -> Self {
        Self { pool, objects }
    }

    /// Everything held about `user`, all of it (no page limits), from one snapshot.
    pub async fn records(&self, user: &str) -> Result<Records, VideocallError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        let calls = sqlx::query_as(
            "SELECT id, CASE WHEN caller_id = $1 THEN 'caller' ELSE 'callee' END AS role,
                    kind, media, status, created_at, ringing_at, answered_at, ended_at, end_reason,
                    CASE WHEN caller_id = $1 THEN caller_consent_at ELSE callee_consent_at END
                        AS consent_at
               FROM videocall_calls WHERE caller_id = $1 OR callee_id = $1
              ORDER BY created_at, id",
        )
        .bind(user)
        .fetch_all(&mut *tx)
        .await?;
        let quality_samples = sqlx::query_as(
            "SELECT call_id, seq, rtt_ms, packet_loss_bp, jitter_ms, bitrate_kbps, width, height,
                    reported_at
               FROM videocall_quality WHERE reporter_id = $1 ORDER BY reported_at, call_id, seq",
        )
        .bind(user)
        .fetch_all(&mut *tx)
        .await?;
        let recordings = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id, call_id, uploader_id = $1 AS uploaded_by_me, object_key, content_type,
                    bytes, encode(sha256, 'hex') AS sha256, created_at
               FROM videocall_recordings WHERE call_id IN ({CALLS_OF})
              ORDER BY created_at, id"
        )))
        .bind(user)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Records {
            user_id: user.to_owned(),
            calls,
            quality_samples,
            recordings,
        })
    }

    /// Erases `user`, keeping their calls and samples under `pseudonym`. Idempotent: a second
    /// run finds nothing and reports zeros.
    ///
    /// In three steps, each safe to run again after a crash in the next: (1) their consents
    /// are withdrawn, under each call's lock as an upload's INSERT takes it, so no recording
    /// of their calls is added from then on; (2) the objects under each call's recording
    /// prefix and those the rows name are deleted; (3) one transaction deletes the rows of
    /// those recordings and their busy marks and puts the pseudonym in their calls and
    /// samples. Until (3) commits the calls are still found by the user id.
    pub async fn erase(&self, user: &str, pseudonym: &str) -> Result<Erased, VideocallError> {
        let consents = sqlx::query(
            "UPDATE videocall_calls
                SET caller_consent_at = CASE WHEN caller_id = $1 THEN NULL ELSE caller_consent_at END,
                    callee_consent_at = CASE WHEN callee_id = $1 THEN NULL ELSE callee_consent_at END
              WHERE (caller_id = $1 AND caller_consent_at IS NOT NULL)
                 OR (callee_id = $1 AND callee_consent_at IS NOT NULL)",
        )
        .bind(user)
        .execute(&self.pool)
        .await?
        .rows_affected();

        let calls: Vec<Uuid> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("{CALLS_OF} ORDER BY id")))
                .bind(user)
                .fetch_all(&self.pool)
                .await?;
        let named: Vec<String> = sqlx::query_scalar(
            "SELECT object_key FROM videocall_recordings WHERE call_id = ANY($1) ORDER BY object_key",
        )
        .bind(&calls)
        .fetch_all(&self.pool)
        .await?;
        let mut recording_objects = 0;
        for call in &calls {
            recording_objects += self.delete_under(*call).await?;
        }
        // A row whose object is not under its call's prefix (none is written so today) goes
        // too; deleting a missing object succeeds.
        for key in &named {
            let key = ObjectKey::parse(key).map_err(|e| {
                titan_kit::KitError::Other(format!("stored recording key does not parse: {e}"))
            })?;
            self.objects.delete(&key).await?;
        }

        let mut tx = self.pool.begin().await?;
        let recordings = sqlx::query("DELETE FROM videocall_recordings WHERE call_id = ANY($1)")
            .bind(&calls)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let busy_marks = sqlx::query("DELETE FROM videocall_busy WHERE user_id = $1")
            .bind(user)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let quality_samples =
            sqlx::query("UPDATE videocall_quality SET reporter_id = $2 WHERE reporter_id = $1")
                .bind(user)
                .bind(pseudonym)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        let calls = sqlx::query(
            "UPDATE videocall_calls
                SET caller_id = CASE WHEN caller_id = $1 THEN $2 ELSE caller_id END,
                    callee_id = CASE WHEN callee_id = $1 THEN $2 ELSE callee_id END
              WHERE caller_id = $1 OR callee_id = $1",
        )
        .bind(user)
        .bind(pseudonym)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(Erased {
            calls,
            quality_samples,
            consents,
            recordings,
            recording_objects,
            busy_marks,
        })
    }

    /// Deletes every object under `videocall/recordings/<call>/`, page by page (S3 continues
    /// a listing after the last key it gave, so deleting what a page listed skips nothing);
    /// returns how many there were.
    async fn delete_under(&self, call: Uuid) -> Result<u64, VideocallError> {
        let prefix = ObjectKey::new([SERVICE, "recordings", &call.to_string()])
            .map_err(|e| titan_kit::KitError::Other(format!("recording prefix: {e}")))?;
        let mut deleted = 0;
        let mut next: Option<String> = None;
        loop {
            let page = self
                .objects
                .list(&prefix, MAX_LIST_LIMIT, next.as_deref())
                .await?;
            for object in page.objects {
                let key = ObjectKey::parse(&object.key).map_err(|e| {
                    titan_kit::KitError::Other(format!("listed recording key does not parse: {e}"))
                })?;
                self.objects.delete(&key).await?;
                deleted += 1;
            }
            match page.next_page {
                Some(token) => next = Some(token),
                None => return Ok(deleted),
            }
        }
    }
}
