//! The operator's Prometheus metrics, in a registry of their own so tests stay isolated.

use std::time::Instant;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// Reconcile counters and timings per controller.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    reconciliations: IntCounterVec,
    duration: HistogramVec,
    errors: IntCounterVec,
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
        registry.register(Box::new(reconciliations.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        Ok(Self {
            registry,
            reconciliations,
            duration,
            errors,
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

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding gathered families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8_lossy(&buffer).into_owned()
    }
}
