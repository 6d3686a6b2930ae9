//! The coupon service's own metrics (per-RPC metrics come from kit). Outcomes are the fixed set
//! of refusal reasons, so label values stay bounded; per-coupon figures are in the usage RPCs.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use titan_kit::{KitError, metrics::register};

use crate::app::Drift;

#[derive(Debug, Clone)]
pub struct Metrics {
    validations: IntCounterVec,
    redemptions: IntCounterVec,
    reversals: IntCounter,
    drift: IntGauge,
    reconciles: IntCounter,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Result<Self, KitError> {
        Ok(Self {
            validations: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "titan_coupon_validations_total",
                        "validations by outcome (valid or the refusal reason)",
                    ),
                    &["outcome"],
                )?,
            )?,
            redemptions: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "titan_coupon_redemptions_total",
                        "redemption calls by outcome (redeemed, error or the refusal reason)",
                    ),
                    &["outcome"],
                )?,
            )?,
            reversals: register(
                registry,
                IntCounter::new("titan_coupon_reversals_total", "redemptions given back")?,
            )?,
            drift: register(
                registry,
                IntGauge::new(
                    "titan_coupon_drift_coupons",
                    "coupons whose Redis counter disagreed with PostgreSQL at the last reconcile",
                )?,
            )?,
            reconciles: register(
                registry,
                IntCounter::new("titan_coupon_reconciles_total", "reconcile runs")?,
            )?,
        })
    }

    pub fn validated(&self, outcome: &str) {
        self.validations.with_label_values(&[outcome]).inc();
    }

    pub fn redeemed(&self, outcome: &str) {
        self.redemptions.with_label_values(&[outcome]).inc();
    }

    pub fn reversed(&self, n: usize) {
        self.reversals.inc_by(n as u64);
    }

    pub fn drift(&self, drifts: &[Drift]) {
        self.reconciles.inc();
        self.drift
            .set(i64::try_from(drifts.len()).unwrap_or(i64::MAX));
    }
}
