//! The [`CallStore`] on PostgreSQL: each transition is one UPDATE guarded by the statuses it
//! leaves from, in a transaction with its idempotency key, the busy marks of the parties and
//! the outbox event of a final status. Database errors become [`VideocallError`] here.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use sqlx::{PgConnection, PgPool, Row, postgres::PgRow};
use titan_kit::{
    KitError,
    events::{Envelope, outbox},
    idempotency::{self, Begin},
};
use uuid::Uuid;

use crate::{
    app::{
        AddedRecording, AgentDay, CallStore, Fut, MAX_RECORDINGS_LISTED, MAX_RECORDINGS_PER_CALL,
        NEEDS_ACTIVE, NEEDS_LIVE, Transition, VideocallError,
    },
    domain::{
        CALL_FINISHED, Call, CallFinished, CallKind, IllegalTransition, Media, Party, SERVICE,
        Sample, Status,
        quality::MAX_SAMPLES_PER_CALL,
        recording::{Recording, RecordingType},
    },
};

const RECORDING_COLUMNS: &str =
    "id, call_id, uploader_id, object_key, content_type, bytes, sha256, created_at";

const COLUMNS: &str = "id, caller_id, callee_id, kind, media, status, created_at, ringing_at, \
                       answered_at, ended_at, end_reason, caller_consent_at, callee_consent_at";

/// The busy mark's primary key: a party already in another call.
const BUSY_KEY: &str = "videocall_busy_pkey";

#[derive(Debug, Clone)]
pub struct PgCalls {
    pool: PgPool,
    cell: String,
}

fn corrupt(what: impl Into<String>) -> VideocallError {
    VideocallError::Kit(KitError::Other(what.into()))
}

fn call_of(row: &PgRow) -> Result<Call, VideocallError> {
    let named = |col: &str| -> Result<String, VideocallError> { Ok(row.try_get(col)?) };
    let kind = named("kind")?;
    let media = named("media")?;
    let status = named("status")?;
    Ok(Call {
        id: row.try_get("id")?,
        caller_id: row.try_get("caller_id")?,
        callee_id: row.try_get("callee_id")?,
        kind: CallKind::from_name(&kind).ok_or_else(|| corrupt(format!("unknown kind {kind}")))?,
        media: Media::from_name(&media).ok_or_else(|| corrupt(format!("unknown media {media}")))?,
        status: Status::from_name(&status)
            .ok_or_else(|| corrupt(format!("unknown status {status}")))?,
        created_at: row.try_get("created_at")?,
        ringing_at: row.try_get("ringing_at")?,
        answered_at: row.try_get("answered_at")?,
        ended_at: row.try_get("ended_at")?,
        end_reason: row.try_get("end_reason")?,
        caller_consent_at: row.try_get("caller_consent_at")?,
        callee_consent_at: row.try_get("callee_consent_at")?,
    })
}

fn recording_of(row: &PgRow) -> Result<Recording, VideocallError> {
    let content_type: String = row.try_get("content_type")?;
    let bytes: i64 = row.try_get("bytes")?;
    let sha256: Vec<u8> = row.try_get("sha256")?;
    Ok(Recording {
        id: row.try_get("id")?,
        call_id: row.try_get("call_id")?,
        uploader_id: row.try_get("uploader_id")?,
        key: row.try_get("object_key")?,
        content_type: RecordingType::from_name(&content_type)
            .ok_or_else(|| corrupt(format!("unknown recording type {content_type}")))?,
        bytes: u64::try_from(bytes).map_err(|_| corrupt(format!("negative size {bytes}")))?,
        sha256: sha256
            .try_into()
            .map_err(|_| corrupt("a recording's sha256 is not 32 bytes"))?,
        created_at: row.try_get("created_at")?,
    })
}

fn encode(call: &Call) -> Result<Vec<u8>, VideocallError> {
    serde_json::to_vec(call).map_err(|e| corrupt(format!("cannot encode a call: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(answer: &[u8]) -> Result<T, VideocallError> {
    serde_json::from_slice(answer)
        .map_err(|e| corrupt(format!("stored answer does not parse: {e}")))
}

fn names(statuses: &[Status]) -> Vec<&'static str> {
    statuses.iter().map(|s| s.as_str()).collect()
}

impl PgCalls {
    pub fn new(pool: PgPool, cell: String) -> Self {
        Self { pool, cell }
    }

    async fn load(conn: &mut PgConnection, id: Uuid) -> Result<Option<Call>, VideocallError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM videocall_calls WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        row.as_ref().map(call_of).transpose()
    }

    /// Marks `user` busy with `call`; [`VideocallError::Busy`] naming the other call if not free.
    async fn mark_busy(
        conn: &mut PgConnection,
        user: &str,
        call: Uuid,
    ) -> Result<(), VideocallError> {
        let inserted = sqlx::query("INSERT INTO videocall_busy (user_id, call_id) VALUES ($1, $2)")
            .bind(user)
            .bind(call)
            .execute(&mut *conn)
            .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.constraint() == Some(BUSY_KEY) => {
                // The transaction is aborted: the other call is read outside it.
                Err(VideocallError::Busy {
                    user: user.to_owned(),
                    call: Uuid::nil(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The call `user` is busy with, to name it in a refusal.
    async fn busy_with(&self, err: VideocallError) -> VideocallError {
        let VideocallError::Busy { user, .. } = err else {
            return err;
        };
        let call =
            sqlx::query_scalar::<_, Uuid>("SELECT call_id FROM videocall_busy WHERE user_id = $1")
                .bind(&user)
                .fetch_optional(&self.pool)
                .await;
        match call {
            Ok(Some(call)) => VideocallError::Busy { user, call },
            // Freed meanwhile: still refused, this attempt raced with the other call's end.
            Ok(None) => VideocallError::Busy {
                user,
                call: Uuid::nil(),
            },
            Err(e) => e.into(),
        }
    }

    async fn finish(&self, conn: &mut PgConnection, call: &Call) -> Result<(), VideocallError> {
        sqlx::query("DELETE FROM videocall_busy WHERE call_id = $1")
            .bind(call.id)
            .execute(&mut *conn)
            .await?;
        let envelope = Envelope::new(&self.cell, CALL_FINISHED, 1, &CallFinished::of(call))?;
        outbox::write(conn, SERVICE, &envelope).await?;
        Ok(())
    }

    async fn create_in(
        &self,
        key: &idempotency::Key,
        call: &Call,
        ring_deadline: DateTime<Utc>,
    ) -> Result<Call, VideocallError> {
        let mut tx = self.pool.begin().await?;
        let id = match idempotency::begin(&mut tx, key).await? {
            Begin::Replay(answer) => decode::<Uuid>(&answer)?,
            Begin::Fresh => {
                sqlx::query(
                    "INSERT INTO videocall_calls (id, caller_id, callee_id, kind, media, status, \
                     created_at, ring_deadline, ringing_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(call.id)
                .bind(&call.caller_id)
                .bind(&call.callee_id)
                .bind(call.kind.as_str())
                .bind(call.media.as_str())
                .bind(call.status.as_str())
                .bind(call.created_at)
                .bind(ring_deadline)
                .bind(call.ringing_at)
                .execute(&mut *tx)
                .await?;
                for user in call.participants() {
                    Self::mark_busy(&mut tx, user, call.id).await?;
                }
                let answer = serde_json::to_vec(&call.id)
                    .map_err(|e| corrupt(format!("cannot encode an id: {e}")))?;
                idempotency::finish(&mut tx, key, &answer).await?;
                call.id
            }
        };
        let stored = Self::load(&mut tx, id)
            .await?
            .ok_or_else(|| corrupt("a created call vanished while read"))?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn take_in(
        &self,
        key: &idempotency::Key,
        agent: &str,
        at: DateTime<Utc>,
        ring_deadline: DateTime<Utc>,
    ) -> Result<Option<Call>, VideocallError> {
        let mut tx = self.pool.begin().await?;
        if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            let id: Option<Uuid> = decode(&answer)?;
            let call = match id {
                Some(id) => Self::load(&mut tx, id).await?,
                None => None,
            };
            tx.commit().await?;
            return Ok(call);
        }
        // The oldest queued call nobody else is taking now (first come, first served); its
        // row lock holds until the commit, so two agents never take the same call.
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE videocall_calls SET status = 'RINGING', callee_id = $1, ringing_at = $2, \
             ring_deadline = $3 \
             WHERE id = (SELECT id FROM videocall_calls WHERE status = 'INITIATED' \
                         ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) \
               AND status = 'INITIATED' \
             RETURNING {COLUMNS}"
        )))
        .bind(agent)
        .bind(at)
        .bind(ring_deadline)
        .fetch_optional(&mut *tx)
        .await?;
        let call = row.as_ref().map(call_of).transpose()?;
        if let Some(call) = &call {
            Self::mark_busy(&mut tx, agent, call.id).await?;
        }
        let answer = serde_json::to_vec(&call.as_ref().map(|c| c.id))
            .map_err(|e| corrupt(format!("cannot encode an id: {e}")))?;
        idempotency::finish(&mut tx, key, &answer).await?;
        tx.commit().await?;
        Ok(call)
    }

    async fn transition_in(
        &self,
        key: Option<&idempotency::Key>,
        t: &Transition,
    ) -> Result<Call, VideocallError> {
        let mut tx = self.pool.begin().await?;
        if let Some(key) = key
            && let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await?
        {
            tx.commit().await?;
            return decode(&answer);
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE videocall_calls SET status = $2, \
               answered_at = CASE WHEN $2 = 'ACTIVE' THEN $3 ELSE answered_at END, \
               ended_at = CASE WHEN $4 THEN $3 ELSE ended_at END, \
               end_reason = COALESCE($5, end_reason) \
             WHERE id = $1 AND status = ANY($6) AND (NOT $7 OR ring_deadline > $3) \
             RETURNING {COLUMNS}"
        )))
        .bind(t.call)
        .bind(t.to.as_str())
        .bind(t.at)
        .bind(t.to.is_final())
        .bind(&t.end_reason)
        .bind(names(&t.from))
        .bind(t.before_deadline)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            let current = Self::load(&mut tx, t.call)
                .await?
                .ok_or(VideocallError::NotFound(t.call))?;
            return Err(IllegalTransition {
                action: t.action,
                current: current.status,
            }
            .into());
        };
        let call = call_of(&row)?;
        if call.status.is_final() {
            self.finish(&mut tx, &call).await?;
        }
        if let Some(key) = key {
            idempotency::finish(&mut tx, key, &encode(&call)?).await?;
        }
        tx.commit().await?;
        Ok(call)
    }

    async fn add_sample_in(
        &self,
        key: &idempotency::Key,
        call: Uuid,
        reporter: &str,
        sample: &Sample,
        at: DateTime<Utc>,
    ) -> Result<u32, VideocallError> {
        let mut tx = self.pool.begin().await?;
        if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            tx.commit().await?;
            return decode(&answer);
        }
        // Counted under the call's row lock, and only while it is ACTIVE.
        let seq: Option<i32> = sqlx::query_scalar(
            "UPDATE videocall_calls SET quality_samples = quality_samples + 1 \
             WHERE id = $1 AND status = 'ACTIVE' AND quality_samples < $2 \
             RETURNING quality_samples",
        )
        .bind(call)
        .bind(i32::try_from(MAX_SAMPLES_PER_CALL).unwrap_or(i32::MAX))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(seq) = seq else {
            let current = Self::load(&mut tx, call)
                .await?
                .ok_or(VideocallError::NotFound(call))?;
            return Err(if current.status == Status::Active {
                VideocallError::TooManyReports(call)
            } else {
                VideocallError::NotLive {
                    call,
                    status: current.status,
                    needs: NEEDS_ACTIVE,
                }
            });
        };
        let int = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        sqlx::query(
            "INSERT INTO videocall_quality (call_id, seq, reporter_id, rtt_ms, packet_loss_bp, \
             jitter_ms, bitrate_kbps, width, height, reported_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(call)
        .bind(seq)
        .bind(reporter)
        .bind(int(sample.rtt_ms))
        .bind(int(sample.packet_loss_bp))
        .bind(int(sample.jitter_ms))
        .bind(int(sample.bitrate_kbps))
        .bind(int(sample.width))
        .bind(int(sample.height))
        .bind(at)
        .execute(&mut *tx)
        .await?;
        let count = u32::try_from(seq).unwrap_or_default();
        let answer = serde_json::to_vec(&count).map_err(|e| corrupt(e.to_string()))?;
        idempotency::finish(&mut tx, key, &answer).await?;
        tx.commit().await?;
        Ok(count)
    }

    async fn consent_in(
        &self,
        key: &idempotency::Key,
        call: Uuid,
        party: Party,
        at: Option<DateTime<Utc>>,
    ) -> Result<Call, VideocallError> {
        let mut tx = self.pool.begin().await?;
        if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            tx.commit().await?;
            return decode(&answer);
        }
        let column = match party {
            Party::Caller => "caller_consent_at",
            Party::Callee => "callee_consent_at",
        };
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE videocall_calls SET {column} = $2 \
             WHERE id = $1 AND status IN ('RINGING', 'ACTIVE') RETURNING {COLUMNS}"
        )))
        .bind(call)
        .bind(at)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            let current = Self::load(&mut tx, call)
                .await?
                .ok_or(VideocallError::NotFound(call))?;
            return Err(VideocallError::NotLive {
                call,
                status: current.status,
                needs: NEEDS_LIVE,
            });
        };
        let stored = call_of(&row)?;
        idempotency::finish(&mut tx, key, &encode(&stored)?).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn recording(
        conn: &mut PgConnection,
        id: Uuid,
    ) -> Result<Option<Recording>, VideocallError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RECORDING_COLUMNS} FROM videocall_recordings WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        row.as_ref().map(recording_of).transpose()
    }

    async fn replayed(conn: &mut PgConnection, answer: &[u8]) -> Result<Recording, VideocallError> {
        let id: Uuid = decode(answer)?;
        Self::recording(conn, id)
            .await?
            .ok_or_else(|| corrupt(format!("recording {id} of a replayed upload is gone")))
    }

    async fn recording_replay_in(
        &self,
        key: &idempotency::Key,
    ) -> Result<Option<Recording>, VideocallError> {
        let mut conn = self.pool.acquire().await?;
        match idempotency::peek(&mut conn, key).await? {
            Some(answer) => Ok(Some(Self::replayed(&mut conn, &answer).await?)),
            None => Ok(None),
        }
    }

    async fn add_recording_in(
        &self,
        key: &idempotency::Key,
        r: &Recording,
    ) -> Result<AddedRecording, VideocallError> {
        let mut tx = self.pool.begin().await?;
        if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            let first = Self::replayed(&mut tx, &answer).await?;
            tx.commit().await?;
            return Ok(AddedRecording::Replay(first));
        }
        // Guarded by the call as it is now: the consent may have been withdrawn, or the call
        // failed, while the bytes streamed in. The call's row is locked first, so both
        // consents hold until the commit and the INSERT (a statement of its own, so a fresh
        // snapshot) counts the recordings of any upload of this call that committed before.
        sqlx::query("SELECT 1 FROM videocall_calls WHERE id = $1 FOR UPDATE")
            .bind(r.call_id)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO videocall_recordings ({RECORDING_COLUMNS}) \
             SELECT $1, c.id, $3, $4, $5, $6, $7, $8 FROM videocall_calls c \
             WHERE c.id = $2 AND c.status IN ('ACTIVE', 'ENDED') \
               AND c.caller_consent_at IS NOT NULL AND c.callee_consent_at IS NOT NULL \
               AND (c.caller_id = $3 OR c.callee_id = $3) \
               AND (SELECT count(*) FROM videocall_recordings r WHERE r.call_id = c.id) < $9 \
             RETURNING {RECORDING_COLUMNS}"
        )))
        .bind(r.id)
        .bind(r.call_id)
        .bind(&r.uploader_id)
        .bind(&r.key)
        .bind(r.content_type.as_str())
        .bind(i64::try_from(r.bytes).map_err(|_| corrupt("a recording over 2^63 bytes"))?)
        .bind(r.sha256.as_slice())
        .bind(r.created_at)
        .bind(i64::from(MAX_RECORDINGS_PER_CALL))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            let current = Self::load(&mut tx, r.call_id)
                .await?
                .ok_or(VideocallError::NotFound(r.call_id))?;
            // Nothing claimed: the key is rolled back with the transaction.
            return Ok(AddedRecording::Refused(current));
        };
        let stored = recording_of(&row)?;
        let answer = serde_json::to_vec(&stored.id)
            .map_err(|e| corrupt(format!("cannot encode an id: {e}")))?;
        idempotency::finish(&mut tx, key, &answer).await?;
        tx.commit().await?;
        Ok(AddedRecording::New(stored))
    }
}

impl CallStore for PgCalls {
    fn create<'a>(
        &'a self,
        key: &'a idempotency::Key,
        call: &'a Call,
        ring_deadline: DateTime<Utc>,
    ) -> Fut<'a, Call> {
        Box::pin(async move {
            match self.create_in(key, call, ring_deadline).await {
                Err(e @ VideocallError::Busy { .. }) => Err(self.busy_with(e).await),
                other => other,
            }
        })
    }

    fn take_next<'a>(
        &'a self,
        key: &'a idempotency::Key,
        agent: &'a str,
        at: DateTime<Utc>,
        ring_deadline: DateTime<Utc>,
    ) -> Fut<'a, Option<Call>> {
        Box::pin(async move {
            match self.take_in(key, agent, at, ring_deadline).await {
                Err(e @ VideocallError::Busy { .. }) => Err(self.busy_with(e).await),
                other => other,
            }
        })
    }

    fn transition<'a>(
        &'a self,
        key: Option<&'a idempotency::Key>,
        t: &'a Transition,
    ) -> Fut<'a, Call> {
        Box::pin(self.transition_in(key, t))
    }

    fn call(&self, id: Uuid) -> Fut<'_, Option<Call>> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await?;
            Self::load(&mut conn, id).await
        })
    }

    fn queue_position(&self, id: Uuid) -> Fut<'_, u32> {
        Box::pin(async move {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM videocall_calls q, videocall_calls c \
                 WHERE c.id = $1 AND c.status = 'INITIATED' AND q.status = 'INITIATED' \
                   AND (q.created_at, q.id) <= (c.created_at, c.id)",
            )
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
            Ok(u32::try_from(n).unwrap_or(u32::MAX))
        })
    }

    fn queue(&self, limit: u32) -> Fut<'_, Vec<(Uuid, String)>> {
        Box::pin(async move {
            Ok(sqlx::query_as(
                "SELECT id, caller_id FROM videocall_calls WHERE status = 'INITIATED' \
                 ORDER BY created_at, id LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?)
        })
    }

    fn due(
        &self,
        now: DateTime<Utc>,
        max_call: Duration,
        limit: u32,
    ) -> Fut<'_, Vec<(Uuid, Status)>> {
        Box::pin(async move {
            let rows: Vec<(Uuid, String)> = sqlx::query_as(
                "(SELECT id, status FROM videocall_calls \
                  WHERE status IN ('INITIATED', 'RINGING') AND ring_deadline <= $1 \
                  ORDER BY ring_deadline LIMIT $3) \
                 UNION ALL \
                 (SELECT id, status FROM videocall_calls \
                  WHERE status = 'ACTIVE' AND answered_at <= $2 \
                  ORDER BY answered_at LIMIT $3)",
            )
            .bind(now)
            .bind(now - max_call)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter()
                .map(|(id, status)| {
                    Status::from_name(&status)
                        .map(|s| (id, s))
                        .ok_or_else(|| corrupt(format!("unknown status {status}")))
                })
                .collect()
        })
    }

    fn add_sample<'a>(
        &'a self,
        key: &'a idempotency::Key,
        call: Uuid,
        reporter: &'a str,
        sample: &'a Sample,
        at: DateTime<Utc>,
    ) -> Fut<'a, u32> {
        Box::pin(self.add_sample_in(key, call, reporter, sample, at))
    }

    fn samples(&self, call: Uuid) -> Fut<'_, Vec<Sample>> {
        Box::pin(async move {
            let rows: Vec<(i32, i32, i32, i32, i32, i32)> = sqlx::query_as(
                "SELECT rtt_ms, packet_loss_bp, jitter_ms, bitrate_kbps, width, height \
                 FROM videocall_quality WHERE call_id = $1",
            )
            .bind(call)
            .fetch_all(&self.pool)
            .await?;
            let u = |v: i32| u32::try_from(v).unwrap_or_default();
            Ok(rows
                .into_iter()
                .map(|(rtt, loss, jitter, bitrate, width, height)| Sample {
                    rtt_ms: u(rtt),
                    packet_loss_bp: u(loss),
                    jitter_ms: u(jitter),
                    bitrate_kbps: u(bitrate),
                    width: u(width),
                    height: u(height),
                })
                .collect())
        })
    }

    fn consent<'a>(
        &'a self,
        key: &'a idempotency::Key,
        call: Uuid,
        party: Party,
        at: Option<DateTime<Utc>>,
    ) -> Fut<'a, Call> {
        Box::pin(self.consent_in(key, call, party, at))
    }

    fn recording_replay<'a>(&'a self, key: &'a idempotency::Key) -> Fut<'a, Option<Recording>> {
        Box::pin(self.recording_replay_in(key))
    }

    fn add_recording<'a>(
        &'a self,
        key: &'a idempotency::Key,
        recording: &'a Recording,
    ) -> Fut<'a, AddedRecording> {
        Box::pin(self.add_recording_in(key, recording))
    }

    fn recordings(&self, call: Uuid) -> Fut<'_, Vec<Recording>> {
        Box::pin(async move {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {RECORDING_COLUMNS} FROM videocall_recordings WHERE call_id = $1 \
                 ORDER BY created_at, id LIMIT $2"
            )))
            .bind(call)
            .bind(i64::from(MAX_RECORDINGS_LISTED))
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(recording_of).collect()
        })
    }

    fn history<'a>(
        &'a self,
        user: &'a str,
        agent: bool,
        before: Option<Uuid>,
        limit: u32,
    ) -> Fut<'a, Vec<Call>> {
        Box::pin(async move {
            // Each side reads its own index newest first; the union is cut to the page.
            let side = |column: &str| {
                format!(
                    "(SELECT {COLUMNS} FROM videocall_calls WHERE {column} = $1 \
                      AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3)"
                )
            };
            let sql = if agent {
                side("callee_id")
            } else {
                format!(
                    "SELECT {COLUMNS} FROM ({} UNION {}) AS calls ORDER BY id DESC LIMIT $3",
                    side("caller_id"),
                    side("callee_id")
                )
            };
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(user)
                .bind(before)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
            rows.iter().map(call_of).collect()
        })
    }

    fn agent_days<'a>(
        &'a self,
        agent: &'a str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Fut<'a, Vec<AgentDay>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT (created_at AT TIME ZONE 'UTC')::date AS day, \
                   count(*) AS calls, \
                   count(answered_at) AS answered, \
                   count(*) FILTER (WHERE status = 'MISSED') AS missed, \
                   count(*) FILTER (WHERE status = 'REJECTED') AS rejected, \
                   COALESCE(sum(EXTRACT(EPOCH FROM answered_at - created_at)), 0)::float8 AS wait, \
                   count(*) FILTER (WHERE status = 'ENDED' AND answered_at IS NOT NULL) AS ended, \
                   COALESCE(sum(EXTRACT(EPOCH FROM ended_at - answered_at)) \
                     FILTER (WHERE status = 'ENDED'), 0)::float8 AS duration \
                 FROM videocall_calls \
                 WHERE callee_id = $1 AND created_at >= $2 AND created_at < $3 \
                 GROUP BY 1 ORDER BY 1",
            )
            .bind(agent)
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await?;
            let n = |row: &PgRow, col: &str| -> Result<u32, VideocallError> {
                let v: i64 = row.try_get(col)?;
                Ok(u32::try_from(v).unwrap_or(u32::MAX))
            };
            rows.iter()
                .map(|row| {
                    Ok(AgentDay {
                        day: row.try_get::<NaiveDate, _>("day")?,
                        calls: n(row, "calls")?,
                        answered: n(row, "answered")?,
                        missed: n(row, "missed")?,
                        rejected: n(row, "rejected")?,
                        total_wait_seconds: row.try_get("wait")?,
                        ended: n(row, "ended")?,
                        total_duration_seconds: row.try_get("duration")?,
                    })
                })
                .collect()
        })
    }
}
