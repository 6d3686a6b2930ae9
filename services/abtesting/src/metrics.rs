//! The A/B testing service's own metrics (per-RPC metrics come from kit). Outcomes are a fixed
//! set; experiment keys are never labels.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use titan_kit::{KitError, metrics::register};

use crate::domain::Outcome;

#[derive(Debug, Clone)]
pub struct Metrics {
    /// One counter per outcome, looked up once: `Assign` is the hot path.
    assigned: [IntCounter; 5],
    exposures_dropped: IntCounter,
    exposures_deduplicated: IntCounter,
    exposures_written: IntCounter,
    exposures_lost: IntCounter,
    exposure_insert_retries: IntCounter,
    refresh_failures: IntCounter,
}

fn outcome_index(o: Outcome) -> usize {
    match o {
        Outcome::Assigned => 0,
        Outcome::NotRunning => 1,
        Outcome::NoHashAttribute => 2,
        Outcome::NotInNamespace => 3,
        Outcome::NotCovered => 4,
    }
}

impl Metrics {
    pub fn new(registry: &Registry) -> Result<Self, KitError> {
        let by_outcome = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "titan_abtesting_assignments_total",
                    "assignments by outcome (assigned or why the user is not in the experiment)",
                ),
                &["outcome"],
            )?,
        )?;
        let counter = |name: &str, help: &str| -> Result<IntCounter, KitError> {
            register(registry, IntCounter::new(name, help)?)
        };
        Ok(Self {
            assigned: [
                "assigned",
                "not_running",
                "no_hash_attribute",
                "not_in_namespace",
                "not_covered",
            ]
            .map(|o| by_outcome.with_label_values(&[o])),
            exposures_dropped: counter(
                "titan_abtesting_exposures_dropped_total",
                "exposures dropped because the writer's queue was full or closed for shutdown (Assign never waits for it)",
            )?,
            exposures_deduplicated: counter(
                "titan_abtesting_exposures_deduplicated_total",
                "exposures not queued because this replica queued the same experiment, variant and user lately",
            )?,
            exposures_written: counter(
                "titan_abtesting_exposures_written_total",
                "exposures written to ClickHouse",
            )?,
            exposures_lost: counter(
                "titan_abtesting_exposures_lost_total",
                "exposures lost because a ClickHouse insert failed on every try",
            )?,
            exposure_insert_retries: counter(
                "titan_abtesting_exposure_insert_retries_total",
                "failed ClickHouse inserts of exposures that are tried again",
            )?,
            refresh_failures: counter(
                "titan_abtesting_cache_refresh_failures_total",
                "failed reloads of the experiment and flag cache from PostgreSQL",
            )?,
        })
    }

    pub fn assigned(&self, outcome: Outcome) {
        self.assigned[outcome_index(outcome)].inc();
    }

    pub fn exposure_dropped(&self) {
        self.exposures_dropped.inc();
    }

    pub fn exposure_deduplicated(&self) {
        self.exposures_deduplicated.inc();
    }

    pub fn exposures_written(&self, n: usize) {
        self.exposures_written.inc_by(n as u64);
    }

    pub fn exposures_lost(&self, n: usize) {
        self.exposures_lost.inc_by(n as u64);
    }

    pub fn exposure_insert_retried(&self) {
        self.exposure_insert_retries.inc();
    }

    pub fn refresh_failed(&self) {
        self.refresh_failures.inc();
    }

    pub fn dropped_count(&self) -> u64 {
        self.exposures_dropped.get()
    }

    pub fn written_count(&self) -> u64 {
        self.exposures_written.get()
    }

    pub fn deduplicated_count(&self) -> u64 {
        self.exposures_deduplicated.get()
    }

    pub fn lost_count(&self) -> u64 {
        self.exposures_lost.get()
    }

    pub fn insert_retries_count(&self) -> u64 {
        self.exposure_insert_retries.get()
    }
}
