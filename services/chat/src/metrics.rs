//! The chat service's own metrics (per-RPC and WebSocket metrics come from kit). Labels are
//! message types, a fixed set.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use titan_kit::{KitError, metrics::register};

use crate::domain::MessageKind;

#[derive(Debug, Clone)]
pub struct Metrics {
    sent: IntCounterVec,
    publish_failures: IntCounter,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Result<Self, KitError> {
        Ok(Self {
            sent: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "titan_chat_messages_sent_total",
                        "messages accepted by SendMessage (replays included), by type",
                    ),
                    &["type"],
                )?,
            )?,
            publish_failures: register(
                registry,
                IntCounter::new(
                    "titan_chat_publish_failures_total",
                    "live events not published to redis (subscribers catch up from the store)",
                )?,
            )?,
        })
    }

    pub fn sent(&self, kind: MessageKind) {
        self.sent.with_label_values(&[kind.as_str()]).inc();
    }

    pub fn publish_failed(&self) {
        self.publish_failures.inc();
    }
}
