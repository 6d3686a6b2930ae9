//! The campaign service's own metrics (per-RPC metrics come from kit). Labels are channels
//! and delivery outcomes, fixed sets.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use titan_kit::{KitError, metrics::register};

use crate::domain::Channel;

#[derive(Debug, Clone)]
pub struct Metrics {
    deliveries: IntCounterVec,
    recovered: IntCounter,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Result<Self, KitError> {
        Ok(Self {
            deliveries: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "titan_campaign_deliveries_total",
                        "deliveries recorded by the sender, by channel and outcome",
                    ),
                    &["channel", "outcome"],
                )?,
            )?,
            recovered: register(
                registry,
                IntCounter::new(
                    "titan_campaign_unknown_deliveries_total",
                    "deliveries left claimed by a stopped replica, recorded UNKNOWN and never resent",
                )?,
            )?,
        })
    }

    pub fn delivery(&self, channel: Channel, outcome: &str) {
        self.deliveries
            .with_label_values(&[channel.as_str(), outcome])
            .inc();
    }

    pub fn recovered(&self, n: u64) {
        self.recovered.inc_by(n);
    }
}
