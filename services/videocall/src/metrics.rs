//! The videocall service's own metrics (per-RPC and WebSocket metrics come from kit). Labels
//! are call types, final statuses and signaling kinds: fixed sets.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use titan_kit::{KitError, metrics::register};

use crate::domain::{CallKind, SignalKind, Status};

#[derive(Debug, Clone)]
pub struct Metrics {
    initiated: IntCounterVec,
    finished: IntCounterVec,
    signals: IntCounterVec,
    publish_failures: IntCounter,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Result<Self, KitError> {
        Ok(Self {
            initiated: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "titan_videocall_calls_initiated_total",
                        "calls placed (replays included), by type",
                    ),
                    &["type"],
                )?,
            )?,
            finished: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "titan_videocall_calls_finished_total",
                        "calls that reached a final status on this replica, by status",
                    ),
                    &["status"],
                )?,
            )?,
            signals: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "titan_videocall_signals_relayed_total",
                        "signaling frames relayed to the other party, by kind",
                    ),
                    &["kind"],
                )?,
            )?,
            publish_failures: register(
                registry,
                IntCounter::new(
                    "titan_videocall_publish_failures_total",
                    "call frames not pushed to redis (clients read the call again)",
                )?,
            )?,
        })
    }

    pub fn initiated(&self, kind: CallKind) {
        self.initiated.with_label_values(&[kind.as_str()]).inc();
    }

    pub fn finished(&self, status: Status) {
        self.finished.with_label_values(&[status.as_str()]).inc();
    }

    pub fn signal(&self, kind: SignalKind) {
        self.signals.with_label_values(&[kind.as_str()]).inc();
    }

    pub fn publish_failed(&self) {
        self.publish_failures.inc();
    }
}
