//! A/B testing use cases over three ports: [`ExperimentStore`] (PostgreSQL, the record of
//! experiments and flags), [`ExposureSink`] (the asynchronous ClickHouse writer) and
//! [`ResultsSource`] (ClickHouse aggregates). Assignment and flag evaluation read an in-memory
//! snapshot only: no storage on the hot path.
//!
//! Staleness: a replica reloads the snapshot every [`REFRESH_INTERVAL`] and applies its own
//! writes to it at once, so a change made through another replica is visible here within one
//! interval plus one load (a load reads two small tables).

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use titan_kit::{
    ErrorCode, KitError, ServiceError,
    auth::Caller,
    idempotency::{self, IdempotencyError},
};

use crate::{
    config::Settings,
    domain::{
        Assignment, Attributes, Evaluation, Experiment, ExperimentSpec, FeatureFlag, RawSpec,
        SERVICE,
        experiment::{Action, Refusal, SpecError},
        flag::FlagError,
        stats::{self, Lift, NoLift, Sample, Srm},
    },
    metrics::Metrics,
};

/// How often a replica reloads experiments and flags written through other replicas.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(2);
/// Most experiments one `AssignBatch` may name.
pub const MAX_BATCH: usize = 1000;
/// The environment of flags that name none.
pub const DEFAULT_ENVIRONMENT: &str = "production";

/// Roles whose assignments log exposures for any user (the web backend, admins).
const EXPOSE_ANYONE: [&str; 2] = ["service", "admin"];

#[derive(Debug, thiserror::Error)]
pub enum AbError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Flag(#[from] FlagError),
    #[error("{0}")]
    Invalid(String),
    #[error("experiment {0} does not exist")]
    ExperimentNotFound(String),
    #[error("experiment {0} already exists; update it instead")]
    ExperimentExists(String),
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    #[error(transparent)]
    Kit(#[from] KitError),
}

titan_kit::datastore_errors!(AbError);

impl ServiceError for AbError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Spec(_) | Self::Flag(_) | Self::Invalid(_) => ErrorCode::InvalidArgument,
            Self::ExperimentNotFound(_) => ErrorCode::NotFound,
            Self::ExperimentExists(_) => ErrorCode::AlreadyExists,
            Self::Refused(_) => ErrorCode::FailedPrecondition,
            Self::Idempotency(e) => e.code(),
            Self::Kit(e) => e.code(),
        }
    }

    fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Refused(r) => Some(r.reason()),
            Self::ExperimentNotFound(_) => Some("EXPERIMENT_NOT_FOUND"),
            Self::ExperimentExists(_) => Some("EXPERIMENT_EXISTS"),
            Self::Idempotency(e) => e.reason(),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, AbError>;

/// PostgreSQL: experiments and flags. Every write is idempotent under its key.
pub trait ExperimentStore: Send + Sync + 'static {
    /// Inserts a new experiment; [`AbError::ExperimentExists`] when the key is taken.
    fn create(
        &self,
        key: &idempotency::Key,
        experiment: &Experiment,
    ) -> impl Future<Output = Result<Experiment>> + Send;
    /// Reads the experiment under a row lock, applies `change` and writes the result.
    fn change<F>(
        &self,
        key: &idempotency::Key,
        experiment_key: &str,
        change: F,
    ) -> impl Future<Output = Result<Experiment>> + Send
    where
        F: FnOnce(Experiment) -> Result<Experiment> + Send;
    fn upsert_flag(
        &self,
        key: &idempotency::Key,
        flag: &FeatureFlag,
    ) -> impl Future<Output = Result<FeatureFlag>> + Send;
    /// Every experiment and flag.
    fn load(&self) -> impl Future<Output = Result<(Vec<Experiment>, Vec<FeatureFlag>)>> + Send;
}

/// One user seen in an experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Exposure {
    pub experiment_key: String,
    pub variation_index: u32,
    pub variation_key: String,
    pub hash_attribute: String,
    pub user: String,
    pub bucket: f64,
    pub at: DateTime<Utc>,
}

/// Takes exposures without waiting: when it cannot keep up it drops and counts them.
pub trait ExposureSink: Send + Sync + 'static {
    fn record(&self, exposure: Exposure);
}

/// Which per-user value a metric sums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricKind {
    /// 1 when the user had an event of this name after first exposure, else 0.
    Conversion(String),
    /// Revenue (minor units) of the user's orders after first exposure.
    Revenue,
}

/// ClickHouse: per-variant aggregates of an experiment's exposed users.
pub trait ResultsSource: Send + Sync + 'static {
    /// Users per variant (a user counts in the variant of their first exposure).
    fn users(&self, experiment_key: &str) -> impl Future<Output = Result<Vec<(u32, u64)>>> + Send;
    /// Per variant: users and the sum and sum of squares of the metric per user.
    fn metric(
        &self,
        experiment_key: &str,
        metric: &MetricKind,
    ) -> impl Future<Output = Result<Vec<(u32, Sample)>>> + Send;
}

pub use titan_kit::Clock;

/// What assignment and evaluation read.
#[derive(Debug, Default)]
struct Snapshot {
    experiments: HashMap<String, Experiment>,
    /// Sorted by key.
    flags: Vec<FeatureFlag>,
    /// Running experiments' keys, sorted: what an `AssignBatch` naming none assigns.
    running: Vec<String>,
}

impl Snapshot {
    fn new(experiments: Vec<Experiment>, mut flags: Vec<FeatureFlag>) -> Self {
        flags.sort_by(|a, b| a.key.cmp(&b.key));
        let experiments: HashMap<String, Experiment> = experiments
            .into_iter()
            .map(|e| (e.spec.key.clone(), e))
            .collect();
        let mut running: Vec<String> = experiments
            .values()
            .filter(|e| e.status == crate::domain::Status::Running)
            .map(|e| e.spec.key.clone())
            .collect();
        running.sort();
        Self {
            experiments,
            flags,
            running,
        }
    }
}

/// Per-variant users in a result.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantUsers {
    pub index: u32,
    pub key: String,
    pub users: u64,
    pub expected_share: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VariantMetric {
    pub index: u32,
    pub key: String,
    pub sample: Sample,
    /// `None` for the control.
    pub lift: Option<std::result::Result<Lift, NoLift>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricResult {
    /// The event name, or `revenue`.
    pub metric: String,
    pub kind: MetricKind,
    pub variants: Vec<VariantMetric>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Results {
    pub experiment_key: String,
    pub users: Vec<VariantUsers>,
    pub srm: Option<Srm>,
    pub srm_mismatch: bool,
    pub metrics: Vec<MetricResult>,
    pub confidence_level: f64,
}

pub struct Abtesting<S, E, R> {
    store: S,
    exposures: E,
    results: R,
    settings: Settings,
    metrics: Metrics,
    clock: Clock,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Bumped by every local write, so a reload that began before it does not undo it.
    writes: AtomicU64,
}

impl<S, E, R> std::fmt::Debug for Abtesting<S, E, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Abtesting")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn body<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

impl<S: ExperimentStore, E: ExposureSink, R: ResultsSource> Abtesting<S, E, R> {
    pub fn new(
        store: S,
        exposures: E,
        results: R,
        settings: Settings,
        metrics: Metrics,
        clock: Clock,
    ) -> Self {
        Self {
            store,
            exposures,
            results,
            settings,
            metrics,
            clock,
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            writes: AtomicU64::new(0),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        // A poisoned lock only means a writer panicked mid-swap of an Arc: the value is whole.
        self.snapshot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reloads experiments and flags from PostgreSQL.
    pub async fn refresh(&self) -> Result<()> {
        let before = self.writes.load(Ordering::SeqCst);
        let (experiments, flags) = match self.store.load().await {
            Ok(loaded) => loaded,
            Err(e) => {
                self.metrics.refresh_failed();
                return Err(e);
            }
        };
        let fresh = Arc::new(Snapshot::new(experiments, flags));
        let mut slot = self
            .snapshot
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A local write landed while loading: keep it; the next reload brings the rest.
        if self.writes.load(Ordering::SeqCst) == before {
            *slot = fresh;
        }
        Ok(())
    }

    /// Applies a local write to the snapshot at once (copy on write: readers keep theirs).
    fn apply_local(&self, update: impl FnOnce(&mut Vec<Experiment>, &mut Vec<FeatureFlag>)) {
        let mut slot = self
            .snapshot
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.writes.fetch_add(1, Ordering::SeqCst);
        let mut experiments: Vec<Experiment> = slot.experiments.values().cloned().collect();
        let mut flags = slot.flags.clone();
        update(&mut experiments, &mut flags);
        *slot = Arc::new(Snapshot::new(experiments, flags));
    }

    fn cache_experiment(&self, experiment: &Experiment) {
        self.apply_local(|experiments, _| {
            experiments.retain(|e| e.spec.key != experiment.spec.key);
            experiments.push(experiment.clone());
        });
    }

    fn parse(&self, raw: RawSpec) -> Result<ExperimentSpec> {
        Ok(ExperimentSpec::parse(
            raw,
            self.settings.default_hash_version,
        )?)
    }

    #[tracing::instrument(skip(self, caller, raw), fields(key = %raw.key))]
    pub async fn create_experiment(
        &self,
        caller: &Caller,
        request_id: &str,
        raw: RawSpec,
    ) -> Result<Experiment> {
        let key = idempotency::Key::new(
            SERVICE,
            "CreateExperiment",
            &caller.user_id,
            request_id,
            &body(&raw),
        )?;
        let experiment = Experiment::new(self.parse(raw)?);
        let saved = self.store.create(&key, &experiment).await?;
        self.cache_experiment(&saved);
        Ok(saved)
    }

    #[tracing::instrument(skip(self, caller, raw), fields(key = %raw.key))]
    pub async fn update_experiment(
        &self,
        caller: &Caller,
        request_id: &str,
        raw: RawSpec,
        force: bool,
    ) -> Result<Experiment> {
        let key = idempotency::Key::new(
            SERVICE,
            "UpdateExperiment",
            &caller.user_id,
            request_id,
            &body(&(&raw, force)),
        )?;
        let spec = self.parse(raw)?;
        let experiment_key = spec.key.clone();
        let saved = self
            .store
            .change(&key, &experiment_key, move |mut e| {
                e.update(spec, force)?;
                Ok(e)
            })
            .await?;
        self.cache_experiment(&saved);
        Ok(saved)
    }

    #[tracing::instrument(skip(self, caller))]
    pub async fn change_status(
        &self,
        caller: &Caller,
        request_id: &str,
        experiment_key: &str,
        action: Action,
    ) -> Result<Experiment> {
        let key = idempotency::Key::new(
            SERVICE,
            action.method(),
            &caller.user_id,
            request_id,
            experiment_key.as_bytes(),
        )?;
        let saved = self
            .store
            .change(&key, experiment_key, move |mut e| {
                e.apply(action)?;
                Ok(e)
            })
            .await?;
        self.cache_experiment(&saved);
        Ok(saved)
    }

    pub fn experiment(&self, key: &str) -> Result<Experiment> {
        self.snapshot()
            .experiments
            .get(key)
            .cloned()
            .ok_or_else(|| AbError::ExperimentNotFound(key.to_owned()))
    }

    pub fn experiments(&self) -> Vec<Experiment> {
        let mut all: Vec<Experiment> = self.snapshot().experiments.values().cloned().collect();
        all.sort_by(|a, b| a.spec.key.cmp(&b.spec.key));
        all
    }

    /// Counts the assignment and logs its exposure when `caller` may speak for the user it
    /// is about: a service or admin for anyone, a user for themselves. An anonymous caller
    /// (or a user naming someone else) still gets the answer, but writes nothing into the
    /// results: otherwise anyone could fill an experiment's groups with made-up users.
    fn expose(&self, caller: Option<&Caller>, a: &Assignment, at: DateTime<Utc>) {
        self.metrics.assigned(a.outcome);
        let vouched = caller
            .is_some_and(|c| c.has_any_role(&EXPOSE_ANYONE) || c.user_id == a.hash_attribute_value);
        if let (true, true, Some(bucket)) = (vouched, a.in_experiment, a.bucket) {
            self.exposures.record(Exposure {
                experiment_key: a.experiment_key.clone(),
                variation_index: u32::try_from(a.variation_index).unwrap_or(u32::MAX),
                variation_key: a.variation_key.clone(),
                hash_attribute: a.hash_attribute.clone(),
                user: a.hash_attribute_value.clone(),
                bucket,
                at,
            });
        }
    }

    /// The user's variant of one experiment; an exposure is logged when they are in it and
    /// `caller` may speak for them (see [`Self::expose`]).
    pub fn assign(
        &self,
        caller: Option<&Caller>,
        experiment_key: &str,
        attributes: &Attributes,
    ) -> Result<Assignment> {
        let snapshot = self.snapshot();
        let e = snapshot
            .experiments
            .get(experiment_key)
            .ok_or_else(|| AbError::ExperimentNotFound(experiment_key.to_owned()))?;
        let a = e.assign(attributes);
        self.expose(caller, &a, (self.clock)());
        Ok(a)
    }

    /// The user's variants of the named experiments (every running one when none is named).
    pub fn assign_batch(
        &self,
        caller: Option<&Caller>,
        experiment_keys: &[String],
        attributes: &Attributes,
    ) -> Result<Vec<Assignment>> {
        if experiment_keys.len() > MAX_BATCH {
            return Err(AbError::Invalid(format!(
                "at most {MAX_BATCH} experiments per batch; {} named",
                experiment_keys.len()
            )));
        }
        let snapshot = self.snapshot();
        let keys = if experiment_keys.is_empty() {
            &snapshot.running
        } else {
            experiment_keys
        };
        let now = (self.clock)();
        keys.iter()
            .map(|k| {
                let e = snapshot
                    .experiments
                    .get(k)
                    .ok_or_else(|| AbError::ExperimentNotFound(k.clone()))?;
                let a = e.assign(attributes);
                self.expose(caller, &a, now);
                Ok(a)
            })
            .collect()
    }

    #[tracing::instrument(skip(self, caller, flag), fields(key = %flag.key))]
    pub async fn upsert_flag(
        &self,
        caller: &Caller,
        request_id: &str,
        mut flag: FeatureFlag,
    ) -> Result<FeatureFlag> {
        if flag.environment.is_empty() {
            DEFAULT_ENVIRONMENT.clone_into(&mut flag.environment);
        }
        let key = idempotency::Key::new(
            SERVICE,
            "UpsertFlag",
            &caller.user_id,
            request_id,
            &body(&flag),
        )?;
        // Experiments created through other replicas count too.
        self.refresh().await?;
        let snapshot = self.snapshot();
        flag.validate(|k| snapshot.experiments.get(k))?;
        let saved = self.store.upsert_flag(&key, &flag).await?;
        self.apply_local(|_, flags| {
            flags.retain(|f| f.key != saved.key);
            flags.push(saved.clone());
        });
        Ok(saved)
    }

    pub fn flags(&self, environment: &str) -> Vec<FeatureFlag> {
        self.snapshot()
            .flags
            .iter()
            .filter(|f| environment.is_empty() || f.environment == environment)
            .cloned()
            .collect()
    }

    /// Every flag of `environment` for this user; experiment rules that decide log exposures.
    pub fn evaluate_flags(
        &self,
        caller: Option<&Caller>,
        environment: &str,
        attributes: &Attributes,
    ) -> Vec<Evaluation> {
        let environment = if environment.is_empty() {
            DEFAULT_ENVIRONMENT
        } else {
            environment
        };
        let snapshot = self.snapshot();
        let now = (self.clock)();
        snapshot
            .flags
            .iter()
            .filter(|f| f.environment == environment)
            .map(|f| {
                let ev = f.evaluate(attributes, |k| snapshot.experiments.get(k));
                if let Some(a) = &ev.assignment {
                    self.expose(caller, a, now);
                }
                ev
            })
            .collect()
    }

    /// Users per variant, the sample-ratio check and every metric's lifts, from ClickHouse.
    #[tracing::instrument(skip(self))]
    pub async fn results(&self, experiment_key: &str) -> Result<Results> {
        let e = self.experiment(experiment_key)?;
        let spec = &e.spec;
        let index = |i: usize| u32::try_from(i).unwrap_or(u32::MAX);
        let counted = self.results.users(experiment_key).await?;
        let users_of = |i: usize| {
            counted
                .iter()
                .find(|(v, _)| *v == index(i))
                .map_or(0, |(_, n)| *n)
        };
        let observed: Vec<u64> = (0..spec.variants.len()).map(users_of).collect();
        let weights = spec.weights();
        let srm = stats::sample_ratio_mismatch(&observed, &weights);
        let users = spec
            .variants
            .iter()
            .enumerate()
            .map(|(i, v)| VariantUsers {
                index: index(i),
                key: v.key.clone(),
                users: observed[i],
                expected_share: v.weight,
            })
            .collect();
        let mut kinds: Vec<MetricKind> = spec
            .metrics
            .iter()
            .map(|m| MetricKind::Conversion(m.clone()))
            .collect();
        kinds.push(MetricKind::Revenue);
        let mut metrics = Vec::with_capacity(kinds.len());
        for kind in kinds {
            let rows = self.results.metric(experiment_key, &kind).await?;
            let sample_of = |i: usize| {
                rows.iter()
                    .find(|(v, _)| *v == index(i))
                    .map_or_else(Sample::default, |(_, s)| *s)
            };
            let control = sample_of(spec.control);
            let variants =
                spec.variants
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let sample = sample_of(i);
                        let lift = (i != spec.control).then(|| {
                            stats::relative_lift(&control, &sample, self.settings.confidence_level)
                                .map(|mut l| {
                                    if !self.settings.bayesian {
                                        l.chance_to_beat_control = 0.0;
                                    }
                                    l
                                })
                        });
                        VariantMetric {
                            index: index(i),
                            key: v.key.clone(),
                            sample,
                            lift,
                        }
                    })
                    .collect();
            metrics.push(MetricResult {
                metric: match &kind {
                    MetricKind::Conversion(name) => name.clone(),
                    MetricKind::Revenue => "revenue".to_owned(),
                },
                kind,
                variants,
            });
        }
        Ok(Results {
            experiment_key: experiment_key.to_owned(),
            users,
            srm_mismatch: srm.is_some_and(|s| s.p_value < self.settings.srm_p_value_threshold),
            srm,
            metrics,
            confidence_level: self.settings.confidence_level,
        })
    }
}
