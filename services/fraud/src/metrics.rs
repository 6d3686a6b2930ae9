//! The fraud service's own metrics (per-RPC metrics come from kit). Labels are levels,
//! decisions and the two stores a history is read from: fixed sets.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};
use titan_kit::{KitError, metrics::register};

use crate::domain::{Decision, Level, level::decision_str};

/// Finer than kit's per-RPC buckets around the 2 ms target of the checkout path.
const CHECK_BUCKETS: [f64; 12] = [
    0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1,
];

/// The stages of a check that [`Metrics::stage`] times.
#[derive(Debug, Clone, Copy)]
pub enum Stage {
    History,
    Score,
    Store,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Self::History => "history",
            Self::Score => "score",
            Self::Store => "store",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Metrics {
    decisions: IntCounterVec,
    degraded: IntCounter,
    check: Histogram,
    stages: HistogramVec,
    history: IntCounterVec,
    stale: IntCounter,
    log: IntCounterVec,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Result<Self, KitError> {
        Ok(Self {
            decisions: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "titan_fraud_decisions_total",
                        "transactions checked (replays included), by level and decision",
                    ),
                    &["level", "decision"],
                )?,
            )?,
            degraded: register(
                registry,
                IntCounter::new(
                    "titan_fraud_degraded_total",
                    "checks answered without velocity because redis did not answer in time",
                )?,
            )?,
            check: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "titan_fraud_check_seconds",
                        "time to score and store one check (validation to commit)",
                    )
                    .buckets(CHECK_BUCKETS.to_vec()),
                )?,
            )?,
            // Where a check's time goes, so a slow check says which store to look at.
            stages: register(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "titan_fraud_check_stage_seconds",
                        "time of one stage of a check: history (redis, or postgres when not cached), score (signals, model, rules), store (the decision log in redis; postgres when the log is full or redis did not answer)",
                    )
                    .buckets(CHECK_BUCKETS.to_vec()),
                    &["stage"],
                )?,
            )?,
            history: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "titan_fraud_history_reads_total",
                        "user histories a check scored from, by store (redis = cached, postgres = not cached or redis down)",
                    ),
                    &["store"],
                )?,
            )?,
            stale: register(
                registry,
                IntCounter::new(
                    "titan_fraud_stale_histories_total",
                    "cached histories that could not be dropped after a change (they expire on their own)",
                )?,
            )?,
            log: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "titan_fraud_decision_log_total",
                        "the decision log: stored (by the sink), conflict (its transaction id stored earlier with another decision), full (a check stored its decision directly)",
                    ),
                    &["outcome"],
                )?,
            )?,
        })
    }

    pub fn decided(&self, level: Level, decision: Decision) {
        self.decisions
            .with_label_values(&[level.as_str(), decision_str(decision)])
            .inc();
    }

    pub fn checked(&self, took: std::time::Duration) {
        self.check.observe(took.as_secs_f64());
    }

    pub fn stage(&self, stage: Stage, took: std::time::Duration) {
        self.stages
            .with_label_values(&[stage.as_str()])
            .observe(took.as_secs_f64());
    }

    pub fn degraded(&self) {
        self.degraded.inc();
    }

    /// `store` is "redis" or "postgres".
    pub fn history_read(&self, store: &'static str) {
        self.history.with_label_values(&[store]).inc();
    }

    pub fn stale(&self) {
        self.stale.inc();
    }

    pub fn logged_stored(&self) {
        self.log.with_label_values(&["stored"]).inc();
    }

    pub fn log_conflict(&self) {
        self.log.with_label_values(&["conflict"]).inc();
    }

    pub fn log_full(&self) {
        self.log.with_label_values(&["full"]).inc();
    }
}
