//! The pricing service's own metrics (per-RPC metrics come from kit).

use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounter, Registry};
use titan_kit::{KitError, metrics::register};

#[derive(Debug, Clone)]
pub struct Metrics {
    reads: IntCounter,
    changes: IntCounter,
    rounds: Histogram,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Result<Self, KitError> {
        Ok(Self {
            reads: register(
                registry,
                IntCounter::new(
                    "titan_pricing_prices_read_total",
                    "prices answered from the replica's cache",
                )?,
            )?,
            changes: register(
                registry,
                IntCounter::new(
                    "titan_pricing_price_changes_total",
                    "price changes written to history",
                )?,
            )?,
            rounds: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "titan_pricing_round_seconds",
                        "duration of re-optimisation rounds (scheduled and on demand)",
                    )
                    .buckets(vec![0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0]),
                )?,
            )?,
        })
    }

    pub fn read(&self) {
        self.reads.inc();
    }

    pub fn round(&self, took: Duration, changes: u64) {
        self.rounds.observe(took.as_secs_f64());
        self.changes.inc_by(changes);
    }
}
