//! The fraud service's own metrics (per-RPC metrics come from kit). Labels are levels and
//! decisions, fixed sets.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use titan_kit::{KitError, metrics::register};

use crate::domain::{Decision, Level, level::decision_str};

#[derive(Debug, Clone)]
pub struct Metrics {
    decisions: IntCounterVec,
    degraded: IntCounter,
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
        })
    }

    pub fn decided(&self, level: Level, decision: Decision) {
        self.decisions
            .with_label_values(&[level.as_str(), decision_str(decision)])
            .inc();
    }

    pub fn degraded(&self) {
        self.degraded.inc();
    }
}
