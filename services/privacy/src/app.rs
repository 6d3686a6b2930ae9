//! The privacy service's use cases over a [`PrivacyStore`] and the cell's bucket: starting a job
//! for the services holding personal data at that moment, reading it back with a fresh download
//! URL, and the finisher that joins an export's parts into one object, scrubs an erasure's job
//! records and deletes exports whose time ran out.

use std::{collections::BTreeMap, future::Future, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use prometheus::{Gauge, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use titan_kit::{
    Clock, ErrorCode, KitError, ServiceError,
    auth::Caller,
    events::Envelope,
    idempotency::{self, IdempotencyError},
    input::{self, InputError},
    objects::{ObjectKey, ObjectStorage},
    privacy::{REQUESTED, Requested},
};
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::domain::{
    ExportDocument, Job, JobKind, JobState, NewJob, SERVICE, export_key, pseudonym, url_lifetime,
};

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    #[error(
        "no service of this cell has registered personal data yet; start the cell's services (they register when they start) and ask again"
    )]
    NoParticipants,
    #[error("privacy job {0} not found")]
    NotFound(Uuid),
    #[error(transparent)]
    Kit(#[from] KitError),
}

titan_kit::datastore_errors!(PrivacyError);

impl ServiceError for PrivacyError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Input(_) => ErrorCode::InvalidArgument,
            Self::Idempotency(e) => e.code(),
            Self::NoParticipants => ErrorCode::FailedPrecondition,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Kit(e) => e.code(),
        }
    }

    fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Input(_) => Some("INVALID_ARGUMENT"),
            Self::Idempotency(e) => e.reason(),
            Self::NoParticipants => Some("NO_PARTICIPANTS"),
            Self::NotFound(_) => Some("JOB_NOT_FOUND"),
            Self::Kit(_) => None,
        }
    }
}

/// A request's job: the one it started, or the one already running for that person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    pub id: Uuid,
    /// Whether this request made it (not a replay, not a running job's).
    pub fresh: bool,
}

/// The jobs in PostgreSQL (kit's `titan_privacy_*` tables).
pub trait PrivacyStore: Send + Sync + 'static {
    /// The services seen holding personal data within `kit::privacy::PARTICIPANT_WINDOW`.
    fn participants(&self) -> impl Future<Output = Result<Vec<String>, PrivacyError>> + Send;
    /// The cell's pseudonym key, made on first use.
    fn pseudonym_key(&self) -> impl Future<Output = Result<Vec<u8>, PrivacyError>> + Send;
    /// Records `job` with a task per service and its announcement, unless `key` was seen or a
    /// job of the same kind for the same person runs: then that job.
    fn start(
        &self,
        key: &idempotency::Key,
        job: &NewJob,
        services: &[String],
        event: &Envelope,
    ) -> impl Future<Output = Result<Started, PrivacyError>> + Send;
    fn job(&self, id: Uuid) -> impl Future<Output = Result<Option<Job>, PrivacyError>> + Send;
    /// Running jobs every service answered, oldest first.
    fn answered(
        &self,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<(Uuid, JobKind, String)>, PrivacyError>> + Send;
    /// An export's parts, by service.
    fn export_parts(
        &self,
        job: Uuid,
    ) -> impl Future<Output = Result<BTreeMap<String, serde_json::Value>, PrivacyError>> + Send;
    /// Marks an export completed with its object; `false` if another replica did first.
    fn complete_export(
        &self,
        job: Uuid,
        key: &str,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, PrivacyError>> + Send;
    /// The export objects of every job about `subject`.
    fn exports_of(
        &self,
        subject: &str,
    ) -> impl Future<Output = Result<Vec<String>, PrivacyError>> + Send;
    /// Marks an erasure completed and replaces `subject` by its pseudonym in every job.
    fn complete_erasure(
        &self,
        job: Uuid,
        subject: &str,
    ) -> impl Future<Output = Result<bool, PrivacyError>> + Send;
    /// Seconds since the oldest running job was requested; 0 when none runs.
    fn oldest_running(&self) -> impl Future<Output = Result<f64, PrivacyError>> + Send;
    /// Completed exports whose object is due at `now`.
    fn due_exports(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<(Uuid, String)>, PrivacyError>> + Send;
    fn expire(&self, job: Uuid) -> impl Future<Output = Result<(), PrivacyError>> + Send;
}

/// An export key read back from a job row: always one this service wrote, so a refusal means
/// a damaged row, not a caller's mistake.
fn stored_key(key: &str) -> Result<ObjectKey, PrivacyError> {
    ObjectKey::parse(key)
        .map_err(|e| KitError::Other(format!("stored export key does not parse: {e}")).into())
}

/// A job as a caller sees it: a completed export with a download URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobView {
    pub job: Job,
    pub export_url: Option<(String, DateTime<Utc>)>,
}

/// Jobs finished in one round of the finisher, at most: the rest wait a second.
const FINISH_BATCH: i64 = 16;

#[derive(Debug, Clone)]
struct Metrics {
    requested: IntCounterVec,
    completed: IntCounterVec,
    duration: HistogramVec,
    oldest_running: Gauge,
}

impl Metrics {
    fn new(registry: &Registry) -> Result<Self, KitError> {
        let metric = |e: prometheus::Error| KitError::Other(e.to_string());
        Ok(Self {
            requested: titan_kit::metrics::register(
                registry,
                IntCounterVec::new(
                    Opts::new("titan_privacy_jobs_requested_total", "privacy jobs started"),
                    &["kind"],
                )
                .map_err(metric)?,
            )?,
            completed: titan_kit::metrics::register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "titan_privacy_jobs_completed_total",
                        "privacy jobs every service answered and this service finished",
                    ),
                    &["kind"],
                )
                .map_err(metric)?,
            )?,
            duration: titan_kit::metrics::register(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "titan_privacy_job_duration_seconds",
                        "from a job's request to its completion",
                    )
                    .buckets(vec![1.0, 5.0, 30.0, 120.0, 600.0, 3600.0, 86400.0]),
                    &["kind"],
                )
                .map_err(metric)?,
            )?,
            oldest_running: titan_kit::metrics::register(
                registry,
                Gauge::new(
                    "titan_privacy_oldest_running_job_seconds",
                    "age of the oldest job not completed yet (0 when none runs): the law gives a month",
                )
                .map_err(metric)?,
            )?,
        })
    }
}

#[derive(Clone)]
pub struct Privacy<S> {
    store: Arc<S>,
    objects: ObjectStorage,
    cell: String,
    export_ttl: Duration,
    clock: Clock,
    key: Arc<OnceCell<Vec<u8>>>,
    metrics: Metrics,
}

impl<S> std::fmt::Debug for Privacy<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Privacy")
            .field("cell", &self.cell)
            .field("export_ttl", &self.export_ttl)
            .finish_non_exhaustive()
    }
}

impl<S: PrivacyStore> Privacy<S> {
    pub fn new(
        store: S,
        objects: ObjectStorage,
        cell: String,
        export_ttl: Duration,
        clock: Clock,
        registry: &Registry,
    ) -> Result<Self, KitError> {
        Ok(Self {
            store: Arc::new(store),
            objects,
            cell,
            export_ttl,
            clock,
            key: Arc::new(OnceCell::new()),
            metrics: Metrics::new(registry)?,
        })
    }

    /// Starts an export or an erasure of `user_id` for `caller` (whose role the edge checked).
    #[tracing::instrument(skip(self, caller), fields(by = %caller.user_id, kind = kind.as_str()))]
    pub async fn request(
        &self,
        caller: &Caller,
        kind: JobKind,
        request_id: &str,
        user_id: &str,
    ) -> Result<JobView, PrivacyError> {
        let user_id = input::ident("user_id", user_id)?;
        let key = idempotency::Key::new(
            SERVICE,
            kind.method(),
            &caller.user_id,
            request_id,
            user_id.as_bytes(),
        )?;
        let services = self.store.participants().await?;
        if services.is_empty() {
            return Err(PrivacyError::NoParticipants);
        }
        let secret = self
            .key
            .get_or_try_init(|| self.store.pseudonym_key())
            .await?;
        let job = NewJob {
            id: Uuid::now_v7(),
            kind,
            subject: user_id.to_owned(),
            pseudonym: pseudonym(secret, user_id),
            requested_by: caller.user_id.clone(),
        };
        let event = Envelope::new(&self.cell, REQUESTED, 1, &Requested { job_id: job.id })?;
        let started = self.store.start(&key, &job, &services, &event).await?;
        if started.fresh {
            self.metrics
                .requested
                .with_label_values(&[kind.as_str()])
                .inc();
            tracing::info!(job = %started.id, services = services.len(), "privacy job started");
        }
        self.view(started.id).await
    }

    /// A job by id, with a download URL when it is a completed export.
    pub async fn get(&self, job_id: &str) -> Result<JobView, PrivacyError> {
        let id = input::uuid("job_id", job_id)?;
        self.view(id).await
    }

    async fn view(&self, id: Uuid) -> Result<JobView, PrivacyError> {
        let job = self
            .store
            .job(id)
            .await?
            .ok_or(PrivacyError::NotFound(id))?;
        let export_url = match (&job.state, &job.export_key, job.export_expires_at) {
            (JobState::Completed, Some(key), Some(expires_at)) => {
                let now = (self.clock)();
                match url_lifetime(now, expires_at) {
                    Some(lifetime) => {
                        let key = stored_key(key)?;
                        let url = self.objects.presigned_get(&key, lifetime).await?;
                        let until = now
                            + chrono::Duration::from_std(lifetime)
                                .map_err(|e| KitError::Other(e.to_string()))?;
                        Some((url, until))
                    }
                    None => None,
                }
            }
            _ => None,
        };
        Ok(JobView { job, export_url })
    }

    /// One round of the finisher: completes the jobs every service answered (an export joined
    /// into one object, an erasure scrubbed from the job records and earlier exports deleted)
    /// and deletes exports whose time ran out. Returns how many jobs changed. Each step is safe
    /// to repeat, so a crash between two of them is finished by the next round.
    pub async fn finish(&self) -> Result<usize, PrivacyError> {
        let mut changed = 0;
        for (id, kind, subject) in self.store.answered(FINISH_BATCH).await? {
            let done = match kind {
                JobKind::Export => self.finish_export(id, &subject).await?,
                JobKind::Erasure => self.finish_erasure(id, &subject).await?,
            };
            if done {
                changed += 1;
                self.metrics
                    .completed
                    .with_label_values(&[kind.as_str()])
                    .inc();
                if let Some(job) = self.store.job(id).await?
                    && let Some(completed) = job.completed_at
                {
                    let seconds = (completed - job.created_at).num_milliseconds() as f64 / 1000.0;
                    self.metrics
                        .duration
                        .with_label_values(&[kind.as_str()])
                        .observe(seconds);
                }
                tracing::info!(job = %id, kind = kind.as_str(), "privacy job completed");
            }
        }
        self.metrics
            .oldest_running
            .set(self.store.oldest_running().await?);
        let now = (self.clock)();
        for (id, key) in self.store.due_exports(now, FINISH_BATCH).await? {
            self.objects.delete(&stored_key(&key)?).await?;
            self.store.expire(id).await?;
            changed += 1;
        }
        Ok(changed)
    }

    async fn finish_export(&self, id: Uuid, subject: &str) -> Result<bool, PrivacyError> {
        let now = (self.clock)();
        let document = ExportDocument {
            user_id: subject,
            job_id: id,
            generated_at: now,
            services: self.store.export_parts(id).await?,
        };
        let body = serde_json::to_vec_pretty(&document)
            .map_err(|e| KitError::Other(format!("export document: {e}")))?;
        let key = export_key(id);
        self.objects
            .put(&stored_key(&key)?, "application/json", body.into())
            .await?;
        let expires_at = now
            + chrono::Duration::from_std(self.export_ttl)
                .map_err(|e| KitError::Other(e.to_string()))?;
        self.store.complete_export(id, &key, expires_at).await
    }

    async fn finish_erasure(&self, id: Uuid, subject: &str) -> Result<bool, PrivacyError> {
        // The objects first: once the rows forget their keys, nothing would find them again.
        for key in self.store.exports_of(subject).await? {
            self.objects.delete(&stored_key(&key)?).await?;
        }
        self.store.complete_erasure(id, subject).await
    }
}
