//! Livestream's own metrics (per-RPC and WebSocket metrics come from kit). Labels are fixed
//! sets: callback outcomes and reaction kinds.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use titan_kit::{KitError, metrics::register};

#[derive(Debug, Clone)]
pub struct Metrics {
    callbacks: IntCounterVec,
    heartbeats: IntCounter,
    comments: IntCounter,
    purchases: IntCounter,
    publish_failures: IntCounter,
}

/// What a callback of the RTMP server was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackOutcome {
    Admitted,
    Refused,
    Ended,
    Recorded,
    ForeignSource,
}

impl CallbackOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Admitted => "admitted",
            Self::Refused => "refused",
            Self::Ended => "ended",
            Self::Recorded => "recorded",
            Self::ForeignSource => "foreign_source",
        }
    }
}

impl Metrics {
    pub fn new(registry: &Registry) -> Result<Self, KitError> {
        Ok(Self {
            callbacks: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "titan_livestream_rtmp_callbacks_total",
                        "callbacks of the cell's RTMP server, by outcome",
                    ),
                    &["outcome"],
                )?,
            )?,
            heartbeats: register(
                registry,
                IntCounter::new(
                    "titan_livestream_heartbeats_total",
                    "viewer heartbeats recorded",
                )?,
            )?,
            comments: register(
                registry,
                IntCounter::new(
                    "titan_livestream_comments_total",
                    "comments stored (replays not counted)",
                )?,
            )?,
            purchases: register(
                registry,
                IntCounter::new(
                    "titan_livestream_purchases_total",
                    "in-stream purchases recorded (replays not counted)",
                )?,
            )?,
            publish_failures: register(
                registry,
                IntCounter::new(
                    "titan_livestream_publish_failures_total",
                    "live pushes not published to redis (viewers read the state again)",
                )?,
            )?,
        })
    }

    pub fn callback(&self, outcome: CallbackOutcome) {
        self.callbacks.with_label_values(&[outcome.label()]).inc();
    }

    pub fn heartbeat(&self) {
        self.heartbeats.inc();
    }

    pub fn comment(&self) {
        self.comments.inc();
    }

    pub fn purchase(&self) {
        self.purchases.inc();
    }

    pub fn publish_failed(&self) {
        self.publish_failures.inc();
    }
}
