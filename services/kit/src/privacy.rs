//! A person's data across the cell: what a service that holds personal data registers
//! ([`PersonalData`], with `Mounted::personal_data`) and the participant the runtime runs for it.
//!
//! The privacy service (`titan.privacy.v1`) records an export or erasure job in PostgreSQL with a
//! task per participant and announces it on its stream. Each participant's replicas wake on the
//! announcement (or every `claimIdleSeconds / 2`, so a lost announcement delays nothing for
//! long), claim a pending task of their service with a lease, run the service's handler and mark
//! the task done; a replica that dies mid-task leaves the lease to run out and another takes the
//! task. PostgreSQL is the truth: the bus only says when to look. The announcement carries the
//! job id, never the user id, so the streams do not keep it after an erasure.

use std::{collections::BTreeMap, future::Future, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    KitError,
    config::EventsConfig,
    datastores::redis::RedisHandle,
    events::consumer::{ConsumerOptions, StreamReader},
};

/// The service whose stream announces jobs (`<prefix>events:privacy`).
pub const SOURCE: &str = "privacy";
/// The type of the announcement.
pub const REQUESTED: &str = "privacy.requested";

/// The announcement's payload: which job to look at.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Requested {
    pub job_id: Uuid,
}

/// Whose data a task is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The user id, as tokens carry it (`sub`).
    pub user_id: String,
    /// What an erasure leaves in its place where a record must stay (a ledger, an aggregate): a
    /// keyed hash of the user id, the same in every service, so what is kept still adds up per
    /// person without naming anyone. `p_` and 32 hex digits.
    pub pseudonym: String,
}

/// What an erasure did, by kind of record, for the job's status and the audit.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Erasure {
    /// Records deleted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub removed: BTreeMap<String, u64>,
    /// Records kept with the user replaced by the pseudonym.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pseudonymised: BTreeMap<String, u64>,
}

impl Erasure {
    /// Counts `count` deleted records of `what` (added to any counted before).
    pub fn removed(mut self, what: &str, count: u64) -> Self {
        *self.removed.entry(what.to_owned()).or_default() += count;
        self
    }

    /// Counts `count` records of `what` kept under the pseudonym.
    pub fn pseudonymised(mut self, what: &str, count: u64) -> Self {
        *self.pseudonymised.entry(what.to_owned()).or_default() += count;
        self
    }
}

/// Any failure of a handler: shown in the job's status (`last_error`) and retried.
pub type Failure = Box<dyn std::error::Error + Send + Sync>;

/// What a service that holds personal data answers for a person. Both run again after a crash
/// or a failure, so both must be idempotent: an erasure that finds nothing left reports zeros.
/// Implement it with `async fn`s on the service's store (or a type of its own).
pub trait PersonalData: Send + Sync + 'static {
    /// Everything the service holds about the user, as one JSON document (the service's part of
    /// the export, under its name).
    fn export(
        &self,
        subject: &Subject,
    ) -> impl Future<Output = Result<serde_json::Value, Failure>> + Send;

    /// Deletes what identifies the user, or replaces the user by `subject.pseudonym` where a
    /// record must stay; what each service does is documented on its page.
    fn erase(&self, subject: &Subject) -> impl Future<Output = Result<Erasure, Failure>> + Send;
}

/// [`PersonalData`] as the runtime holds it, whatever the service's type.
trait DynPersonalData: Send + Sync {
    fn export<'a>(
        &'a self,
        subject: &'a Subject,
    ) -> BoxFuture<'a, Result<serde_json::Value, Failure>>;
    fn erase<'a>(&'a self, subject: &'a Subject) -> BoxFuture<'a, Result<Erasure, Failure>>;
}

impl<T: PersonalData> DynPersonalData for T {
    fn export<'a>(
        &'a self,
        subject: &'a Subject,
    ) -> BoxFuture<'a, Result<serde_json::Value, Failure>> {
        Box::pin(PersonalData::export(self, subject))
    }

    fn erase<'a>(&'a self, subject: &'a Subject) -> BoxFuture<'a, Result<Erasure, Failure>> {
        Box::pin(PersonalData::erase(self, subject))
    }
}

/// A service's [`PersonalData`], ready for the runtime (`Mounted::personal_data` makes one).
#[derive(Clone)]
pub struct Handler(Arc<dyn DynPersonalData>);

impl Handler {
    pub fn new(handler: impl PersonalData) -> Self {
        Self(Arc::new(handler))
    }
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handler")
    }
}

/// How often a participant says it is still there: a job waits for the services seen within
/// [`PARTICIPANT_WINDOW`].
const HEARTBEAT: Duration = Duration::from_secs(600);

/// A service not seen for this long is no longer expected by new jobs (it was removed from the
/// cell); one that is only down is still expected, and its tasks wait for it.
pub const PARTICIPANT_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Records `service` as holding personal data (or refreshes it).
pub async fn register(pool: &PgPool, service: &str) -> Result<(), KitError> {
    sqlx::query(
        "INSERT INTO titan_privacy_participants (service) VALUES ($1)
         ON CONFLICT (service) DO UPDATE SET last_seen = now()",
    )
    .bind(service)
    .execute(pool)
    .await?;
    Ok(())
}

/// One claimed task.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Claimed {
    job_id: Uuid,
    kind: String,
    subject: Subject,
}

/// Runs one service's tasks: the task the runtime adds for a service that registered
/// [`PersonalData`].
pub struct Participant {
    service: String,
    pool: PgPool,
    redis: RedisHandle,
    handler: Handler,
    options: ConsumerOptions,
    /// Whether the service publishes events: an erasure then deletes the person from its
    /// stream too ([`crate::events::forget`]).
    publishes: bool,
}

impl std::fmt::Debug for Participant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Participant")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl Participant {
    /// `instance` names this replica among the service's readers of the privacy stream.
    pub fn new(
        service: &str,
        pool: PgPool,
        redis: RedisHandle,
        handler: Handler,
        instance: &str,
        events: &EventsConfig,
    ) -> Self {
        Self {
            service: service.to_owned(),
            pool,
            redis,
            handler,
            options: ConsumerOptions::new(SOURCE, service, instance, events),
            publishes: false,
        }
    }

    /// For a service that publishes events: its erasures also delete the entries of its
    /// stream (and dead letters) that name the person, once every consumer group is done
    /// with them.
    pub fn publishing(mut self, publishes: bool) -> Self {
        self.publishes = publishes;
        self
    }

    /// The lease of a claimed task: as long as the bus waits before another consumer takes over
    /// a message, for the same reason.
    fn lease(&self) -> Duration {
        self.options.claim_idle
    }

    /// Serves until `shutdown`: registers, then works through the service's pending tasks on
    /// every announcement and every half lease. A datastore that does not answer is logged and
    /// tried again; the task never ends on its own.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), KitError> {
        let mut reader = loop {
            match StreamReader::new(self.redis.clone(), self.options.clone()).await {
                Ok(reader) => break reader,
                Err(e) => {
                    tracing::warn!(service = %self.service, error = %e, "privacy: cannot join the privacy stream; trying again");
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        let sweep_every = self.lease() / 2;
        let mut last_sweep: Option<tokio::time::Instant> = None;
        let mut last_heartbeat: Option<tokio::time::Instant> = None;
        while !shutdown.is_cancelled() {
            if last_heartbeat.is_none_or(|at| at.elapsed() >= HEARTBEAT) {
                match register(&self.pool, &self.service).await {
                    Ok(()) => last_heartbeat = Some(tokio::time::Instant::now()),
                    Err(e) => {
                        tracing::warn!(service = %self.service, error = %e, "privacy: cannot register as a participant")
                    }
                }
            }
            let announced = match reader.poll(&shutdown).await {
                None => break,
                Some(Ok(messages)) => messages,
                Some(Err(e)) => {
                    // The bus is down: the sweep still finds the work in PostgreSQL.
                    tracing::warn!(service = %self.service, error = %e, "privacy: cannot read the privacy stream");
                    reader.reread_pending();
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    Vec::new()
                }
            };
            if announced.is_empty() && last_sweep.is_some_and(|at| at.elapsed() < sweep_every) {
                continue;
            }
            last_sweep = Some(tokio::time::Instant::now());
            match self.work(&shutdown).await {
                Ok(_) => {
                    if let Err(e) = reader.ack(&announced).await {
                        tracing::warn!(service = %self.service, error = %e, "privacy: cannot acknowledge announcements; they come again");
                    }
                }
                Err(e) => {
                    tracing::warn!(service = %self.service, error = %e, "privacy: cannot reach PostgreSQL; the tasks wait");
                    reader.reread_pending();
                }
            }
        }
        Ok(())
    }

    /// Claims and runs pending tasks of the service until none is left to claim; returns how
    /// many it finished. A handler's failure is recorded on its task (retried once its lease
    /// runs out, and never twice in one round, however short the lease); only PostgreSQL
    /// failing ends the round early.
    pub async fn work(&self, shutdown: &CancellationToken) -> Result<usize, KitError> {
        let mut finished = 0;
        let mut tried: Vec<Uuid> = Vec::new();
        while !shutdown.is_cancelled() {
            let Some(task) = self.claim(&tried).await? else {
                break;
            };
            tried.push(task.job_id);
            let span = tracing::info_span!("privacy task", service = %self.service, job = %task.job_id, kind = %task.kind);
            let outcome = tracing::Instrument::instrument(self.run_one(&task), span).await;
            match outcome {
                Ok(()) => finished += 1,
                Err(e) => {
                    tracing::warn!(service = %self.service, job = %task.job_id, error = %e, "privacy task failed; it is retried once its lease runs out");
                    sqlx::query(
                        "UPDATE titan_privacy_tasks SET last_error = $3
                         WHERE job_id = $1 AND service = $2",
                    )
                    .bind(task.job_id)
                    .bind(&self.service)
                    .bind(e.to_string())
                    .execute(&self.pool)
                    .await?;
                }
            }
        }
        Ok(finished)
    }

    /// Takes the oldest pending task of the service nobody holds, and not among `tried`, for
    /// one lease.
    async fn claim(&self, tried: &[Uuid]) -> Result<Option<Claimed>, KitError> {
        let lease_ms = i64::try_from(self.lease().as_millis()).unwrap_or(i64::MAX);
        let row: Option<(Uuid, String, String, String)> = sqlx::query_as(
            "UPDATE titan_privacy_tasks t
             SET lease_until = now() + make_interval(secs => $2::double precision / 1000),
                 attempts = t.attempts + 1
             FROM titan_privacy_jobs j
             WHERE (t.job_id, t.service) = (
                 SELECT job_id, service FROM titan_privacy_tasks
                 WHERE service = $1 AND state = 'pending'
                   AND (lease_until IS NULL OR lease_until < now())
                   AND NOT (job_id = ANY($3))
                 ORDER BY created_at
                 LIMIT 1
                 FOR UPDATE SKIP LOCKED)
               AND j.id = t.job_id
             RETURNING t.job_id, j.kind, j.subject, j.pseudonym",
        )
        .bind(&self.service)
        .bind(lease_ms)
        .bind(tried)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(job_id, kind, user_id, pseudonym)| Claimed {
            job_id,
            kind,
            subject: Subject { user_id, pseudonym },
        }))
    }

    /// Runs the handler for `task` and records its answer; kit's own records of the user for
    /// this service go with an erasure: idempotency keys, which name the caller, and the
    /// service's events that name the user once every consumer is done with them.
    async fn run_one(&self, task: &Claimed) -> Result<(), Failure> {
        match task.kind.as_str() {
            "export" => {
                let document = self.handler.0.export(&task.subject).await?;
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO titan_privacy_exports (job_id, service, document)
                     VALUES ($1, $2, $3)
                     ON CONFLICT (job_id, service) DO UPDATE SET document = EXCLUDED.document",
                )
                .bind(task.job_id)
                .bind(&self.service)
                .bind(&document)
                .execute(&mut *tx)
                .await?;
                finish(&mut tx, task.job_id, &self.service, None).await?;
                tx.commit().await?;
            }
            "erasure" => {
                let mut erasure = self.handler.0.erase(&task.subject).await?;
                if self.publishes {
                    let events = crate::events::forget::forget(
                        &self.redis,
                        &self.service,
                        &task.subject.user_id,
                    )
                    .await?;
                    erasure = erasure.removed("bus events", events);
                }
                let mut tx = self.pool.begin().await?;
                // The user's own keys, and the answers kept for a service that acted for them
                // (a checkout's `RedeemCoupon` for a shopper names the shopper in its answer):
                // at most a day of the service's keys to look through.
                let keys = sqlx::query(
                    "DELETE FROM titan_idempotency
                     WHERE service = $1
                       AND (user_id = $2 OR position(convert_to($2, 'UTF8') IN response) > 0)",
                )
                .bind(&self.service)
                .bind(&task.subject.user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                erasure = erasure.removed("idempotency keys", keys);
                finish(&mut tx, task.job_id, &self.service, Some(&erasure)).await?;
                tx.commit().await?;
            }
            other => return Err(format!("unknown privacy job kind {other:?}").into()),
        }
        Ok(())
    }
}

/// Marks a task done, with what an erasure did.
async fn finish(
    tx: &mut sqlx::PgConnection,
    job_id: Uuid,
    service: &str,
    erasure: Option<&Erasure>,
) -> Result<(), KitError> {
    let report = erasure
        .map(serde_json::to_value)
        .transpose()
        .map_err(|e| KitError::Other(format!("privacy report: {e}")))?;
    sqlx::query(
        "UPDATE titan_privacy_tasks
         SET state = 'done', finished_at = now(), lease_until = NULL, last_error = NULL,
             report = $3
         WHERE job_id = $1 AND service = $2",
    )
    .bind(job_id)
    .bind(service)
    .bind(report)
    .execute(tx)
    .await?;
    Ok(())
}
