//! The flash-sale service's own metrics (per-RPC metrics come from kit). Reasons are a fixed
//! set, so label values stay bounded; per-sale figures are in the statistics RPC, not here.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use titan_kit::{KitError, metrics::register};

use crate::app::Drift;

#[derive(Debug, Clone)]
pub struct Metrics {
    attempts: IntCounterVec,
    confirmations: IntCounter,
    expiries: IntCounter,
    drift_sales: IntGauge,
    drift_units: IntGauge,
    reconciles: IntCounter,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Result<Self, KitError> {
        Ok(Self {
            attempts: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "titan_flashsale_attempts_total",
                        "purchase attempts by outcome (reserved or the refusal reason)",
                    ),
                    &["outcome"],
                )?,
            )?,
            confirmations: register(
                registry,
                IntCounter::new("titan_flashsale_confirmations_total", "orders confirmed")?,
            )?,
            expiries: register(
                registry,
                IntCounter::new(
                    "titan_flashsale_expiries_total",
                    "reservations expired by the sweeper",
                )?,
            )?,
            drift_sales: register(
                registry,
                IntGauge::new(
                    "titan_flashsale_drift_sales",
                    "sales whose Redis and PostgreSQL figures disagree at the last reconcile",
                )?,
            )?,
            drift_units: register(
                registry,
                IntGauge::new(
                    "titan_flashsale_drift_units",
                    "units in disagreement between Redis and PostgreSQL at the last reconcile",
                )?,
            )?,
            reconciles: register(
                registry,
                IntCounter::new("titan_flashsale_reconciles_total", "reconcile runs")?,
            )?,
        })
    }

    pub fn reserved(&self) {
        self.attempts.with_label_values(&["reserved"]).inc();
    }

    pub fn refused(&self, reason: &'static str) {
        self.attempts.with_label_values(&[reason]).inc();
    }

    pub fn confirmed(&self) {
        self.confirmations.inc();
    }

    pub fn expired(&self, n: u32) {
        self.expiries.inc_by(u64::from(n));
    }

    pub fn drift(&self, drifts: &[Drift]) {
        self.reconciles.inc();
        self.drift_sales
            .set(i64::try_from(drifts.len()).unwrap_or(i64::MAX));
        self.drift_units
            .set(i64::try_from(drifts.iter().map(Drift::units).sum::<u64>()).unwrap_or(i64::MAX));
    }
}
