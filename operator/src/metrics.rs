//! The operator's Prometheus metrics, in a registry of their own so tests stay isolated.

use std::time::Instant;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Reconcile counters and timings per controller, and the fleets' rollout halts.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    reconciliations: IntCounterVec,
    duration: HistogramVec,
    errors: IntCounterVec,
    fleet_halts: IntCounterVec,
    fleet_halted: IntGaugeVec,
}

impl Metrics {
    /// Creates the metrics in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reconciliations = IntCounterVec::new(
            Opts::new(
                "titan_operator_reconciliations_total",
                "Reconcile rounds run",
            ),
            &["controller"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "titan_operator_reconcile_duration_seconds",
                "Time a reconcile round took",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["controller"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "titan_operator_reconcile_errors_total",
                "Reconcile rounds that failed, by stable reason",
            ),
            &["controller", "reason"],
        )?;
        // Labelled by fleet: a cluster holds a handful of fleets, not an unbounded set.
        let fleet_halts = IntCounterVec::new(
            Opts::new(
                "titan_operator_fleet_halts_total",
                "Rollouts halted by a failing cell, by fleet",
            ),
            &["fleet"],
        )?;
        let fleet_halted = IntGaugeVec::new(
            Opts::new(
                "titan_operator_fleet_halted",
                "1 while a failing cell holds the fleet's rollout, else 0",
            ),
            &["fleet"],
        )?;
        registry.register(Box::new(reconciliations.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(fleet_halts.clone()))?;
        registry.register(Box::new(fleet_halted.clone()))?;
        Ok(Self {
            registry,
            reconciliations,
            duration,
            errors,
            fleet_halts,
            fleet_halted,
        })
    }

    /// Records a finished round of `controller` that started at `start`.
    pub fn observe(&self, controller: &str, start: Instant, error_reason: Option<&str>) {
        self.reconciliations.with_label_values(&[controller]).inc();
        self.duration
            .with_label_values(&[controller])
            .observe(start.elapsed().as_secs_f64());
        if let Some(reason) = error_reason {
            self.errors.with_label_values(&[controller, reason]).inc();
        }
    }

    /// Failed rounds of `controller` with `reason` so far.
    pub fn errors(&self, controller: &str, reason: &str) -> u64 {
        self.errors.with_label_values(&[controller, reason]).get()
    }

    /// Counts a rollout of `fleet` halted by a failing cell.
    pub fn fleet_halt(&self, fleet: &str) {
        self.fleet_halts.with_label_values(&[fleet]).inc();
    }

    /// Halts of `fleet`'s rollouts so far.
    pub fn fleet_halts(&self, fleet: &str) -> u64 {
        self.fleet_halts.with_label_values(&[fleet]).get()
    }

    /// Sets whether `fleet`'s rollout is halted now.
    pub fn set_fleet_halted(&self, fleet: &str, halted: bool) {
        self.fleet_halted
            .with_label_values(&[fleet])
            .set(i64::from(halted));
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding gathered families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8_lossy(&buffer).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halts_are_counted_and_the_halted_gauge_follows_the_fleet() {
        let metrics = Metrics::new().expect("metrics");
        metrics.fleet_halt("prod");
        metrics.set_fleet_halted("prod", true);
        assert_eq!(metrics.fleet_halts("prod"), 1);
        assert!(
            metrics
                .encode()
                .contains("titan_operator_fleet_halted{fleet=\"prod\"} 1")
        );
        metrics.set_fleet_halted("prod", false);
        assert!(
            metrics
                .encode()
                .contains("titan_operator_fleet_halted{fleet=\"prod\"} 0")
        );
        assert_eq!(metrics.fleet_halts("staging"), 0);
    }
}
