//! The privacy service's PostgreSQL store over kit's privacy tables: a job, its tasks and its
//! announcement are written in one transaction with the request's idempotency key.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row, postgres::PgRow};
use titan_kit::{
    KitError,
    events::{Envelope, outbox},
    idempotency::{self, Begin},
    privacy::{Erasure, PARTICIPANT_WINDOW},
};
use uuid::Uuid;

use crate::{
    app::{PrivacyError, PrivacyStore, Started},
    domain::{Job, JobKind, JobState, KEY_BYTES, NewJob, SERVICE, Task},
};

#[derive(Debug, Clone)]
pub struct PgPrivacy {
    pool: PgPool,
}

impl PgPrivacy {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

fn corrupt(what: &str, value: &str) -> PrivacyError {
    PrivacyError::Kit(KitError::Other(format!(
        "stored privacy {what} {value:?} is not one this version knows"
    )))
}

fn job_of(row: &PgRow, tasks: Vec<Task>) -> Result<Job, PrivacyError> {
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    Ok(Job {
        id: row.try_get("id")?,
        kind: JobKind::parse(&kind).ok_or_else(|| corrupt("job kind", &kind))?,
        state: JobState::parse(&state).ok_or_else(|| corrupt("job state", &state))?,
        subject: row.try_get("subject")?,
        requested_by: row.try_get("requested_by")?,
        created_at: row.try_get("created_at")?,
        completed_at: row.try_get("completed_at")?,
        export_key: row.try_get("export_key")?,
        export_expires_at: row.try_get("export_expires_at")?,
        tasks,
    })
}

impl PrivacyStore for PgPrivacy {
    async fn participants(&self) -> Result<Vec<String>, PrivacyError> {
        let window = i64::try_from(PARTICIPANT_WINDOW.as_secs()).unwrap_or(i64::MAX);
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT service FROM titan_privacy_participants
             WHERE last_seen > now() - make_interval(secs => $1::double precision)
             ORDER BY service",
        )
        .bind(window)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(s,)| s).collect())
    }

    async fn pseudonym_key(&self) -> Result<Vec<u8>, PrivacyError> {
        let candidate: [u8; KEY_BYTES] = rand::random();
        // The first replica to ask makes the key; everyone else reads that one.
        sqlx::query("INSERT INTO titan_privacy_key (key) VALUES ($1) ON CONFLICT (id) DO NOTHING")
            .bind(&candidate[..])
            .execute(&self.pool)
            .await?;
        let (key,): (Vec<u8>,) = sqlx::query_as("SELECT key FROM titan_privacy_key")
            .fetch_one(&self.pool)
            .await?;
        Ok(key)
    }

    async fn start(
        &self,
        key: &idempotency::Key,
        job: &NewJob,
        services: &[String],
        event: &Envelope,
    ) -> Result<Started, PrivacyError> {
        let mut tx = self.pool.begin().await?;
        if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            let id = Uuid::from_slice(&answer).map_err(|e| {
                KitError::Other(format!("stored privacy job id does not parse: {e}"))
            })?;
            return Ok(Started { id, fresh: false });
        }
        // Two requests for the same person and kind at once must not both start a job.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!(
                "titan-privacy:{}:{}",
                job.kind.as_str(),
                job.subject
            ))
            .execute(&mut *tx)
            .await?;
        let running: Option<(Uuid,)> = sqlx::query_as(
            "SELECT id FROM titan_privacy_jobs
             WHERE kind = $1 AND subject = $2 AND state = 'running'
             ORDER BY created_at LIMIT 1",
        )
        .bind(job.kind.as_str())
        .bind(&job.subject)
        .fetch_optional(&mut *tx)
        .await?;
        let started = match running {
            Some((id,)) => Started { id, fresh: false },
            None => {
                sqlx::query(
                    "INSERT INTO titan_privacy_jobs (id, kind, subject, pseudonym, requested_by)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(job.id)
                .bind(job.kind.as_str())
                .bind(&job.subject)
                .bind(&job.pseudonym)
                .bind(&job.requested_by)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO titan_privacy_tasks (job_id, service)
                     SELECT $1, unnest($2::text[])",
                )
                .bind(job.id)
                .bind(services)
                .execute(&mut *tx)
                .await?;
                outbox::write(&mut tx, SERVICE, event).await?;
                Started {
                    id: job.id,
                    fresh: true,
                }
            }
        };
        idempotency::finish(&mut tx, key, started.id.as_bytes()).await?;
        tx.commit().await?;
        Ok(started)
    }

    async fn job(&self, id: Uuid) -> Result<Option<Job>, PrivacyError> {
        let Some(row) = sqlx::query(
            "SELECT id, kind, state, subject, requested_by, created_at, completed_at,
                    export_key, export_expires_at
             FROM titan_privacy_jobs WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let tasks = sqlx::query(
            "SELECT service, state, attempts, last_error, finished_at, report
             FROM titan_privacy_tasks WHERE job_id = $1 ORDER BY service",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(task_of)
        .collect::<Result<Vec<_>, _>>()?;
        job_of(&row, tasks).map(Some)
    }

    async fn answered(&self, limit: i64) -> Result<Vec<(Uuid, JobKind, String)>, PrivacyError> {
        let rows: Vec<(Uuid, String, String)> = sqlx::query_as(
            "SELECT j.id, j.kind, j.subject FROM titan_privacy_jobs j
             WHERE j.state = 'running'
               AND NOT EXISTS (SELECT 1 FROM titan_privacy_tasks t
                               WHERE t.job_id = j.id AND t.state <> 'done')
             ORDER BY j.created_at LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, kind, subject)| {
                let kind = JobKind::parse(&kind).ok_or_else(|| corrupt("job kind", &kind))?;
                Ok((id, kind, subject))
            })
            .collect()
    }

    async fn export_parts(
        &self,
        job: Uuid,
    ) -> Result<BTreeMap<String, serde_json::Value>, PrivacyError> {
        let rows: Vec<(String, serde_json::Value)> =
            sqlx::query_as("SELECT service, document FROM titan_privacy_exports WHERE job_id = $1")
                .bind(job)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().collect())
    }

    async fn complete_export(
        &self,
        job: Uuid,
        key: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, PrivacyError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE titan_privacy_jobs
             SET state = 'completed', completed_at = now(), export_key = $2,
                 export_expires_at = $3
             WHERE id = $1 AND state = 'running'",
        )
        .bind(job)
        .bind(key)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM titan_privacy_exports WHERE job_id = $1")
            .bind(job)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done == 1)
    }

    async fn exports_of(&self, subject: &str) -> Result<Vec<String>, PrivacyError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT export_key FROM titan_privacy_jobs
             WHERE subject = $1 AND export_key IS NOT NULL",
        )
        .bind(subject)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(k,)| k).collect())
    }

    async fn complete_erasure(&self, job: Uuid, subject: &str) -> Result<bool, PrivacyError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE titan_privacy_jobs SET state = 'completed', completed_at = now()
             WHERE id = $1 AND state = 'running'",
        )
        .bind(job)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // Every job about the person, this one included, keeps only the pseudonym; their
        // exports (deleted from the bucket before this) end as expired. An export still running
        // loses its gathered parts: what it would hand out is what the erasure removes.
        sqlx::query(
            "DELETE FROM titan_privacy_exports e USING titan_privacy_jobs j
             WHERE e.job_id = j.id AND j.subject = $1",
        )
        .bind(subject)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE titan_privacy_jobs
             SET subject = pseudonym, export_key = NULL, export_expires_at = NULL,
                 state = CASE WHEN kind = 'export' AND state = 'completed' THEN 'expired'
                              ELSE state END
             WHERE subject = $1",
        )
        .bind(subject)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done == 1)
    }

    async fn oldest_running(&self) -> Result<f64, PrivacyError> {
        let (age,): (f64,) = sqlx::query_as(
            "SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8
             FROM titan_privacy_jobs WHERE state = 'running'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(age)
    }

    async fn due_exports(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<(Uuid, String)>, PrivacyError> {
        let rows: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT id, export_key FROM titan_privacy_jobs
             WHERE state = 'completed' AND export_key IS NOT NULL AND export_expires_at <= $1
             ORDER BY export_expires_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    async fn expire(&self, job: Uuid) -> Result<(), PrivacyError> {
        sqlx::query(
            "UPDATE titan_privacy_jobs SET state = 'expired', export_key = NULL
             WHERE id = $1 AND state = 'completed'",
        )
        .bind(job)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

fn task_of(row: &PgRow) -> Result<Task, PrivacyError> {
    let state: String = row.try_get("state")?;
    let attempts: i32 = row.try_get("attempts")?;
    let report: Option<serde_json::Value> = row.try_get("report")?;
    let report = report
        .map(serde_json::from_value::<Erasure>)
        .transpose()
        .map_err(|e| KitError::Other(format!("stored erasure report does not parse: {e}")))?;
    Ok(Task {
        service: row.try_get("service")?,
        done: match state.as_str() {
            "done" => true,
            "pending" => false,
            other => return Err(corrupt("task state", other)),
        },
        attempts: u32::try_from(attempts).unwrap_or(0),
        last_error: row.try_get("last_error")?,
        finished_at: row.try_get("finished_at")?,
        report,
    })
}
