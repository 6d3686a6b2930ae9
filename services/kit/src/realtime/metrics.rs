//! The WebSocket metrics of a replica, registered once per process in kit's registry: open
//! sockets, frames in and out by type, refusals and disconnects by reason, and the fan-out
//! latency (publish on any replica → queued for the local sockets of this one).

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

use crate::{KitError, metrics::register};

/// Why a handshake was refused (label `reason` of `titan_realtime_refusals_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    MaxConnections,
    MaxConnectionsPerUser,
    Origin,
    Token,
    /// The service's opening hook refused (rate limit, not found, forbidden).
    Service,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Self::MaxConnections => "max_connections",
            Self::MaxConnectionsPerUser => "max_connections_per_user",
            Self::Origin => "origin",
            Self::Token => "token",
            Self::Service => "service",
        }
    }
}

/// Why an open socket ended (label `reason` of `titan_realtime_disconnects_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// The client closed it, or the connection dropped.
    Client,
    SlowConsumer,
    MissedPongs,
    TokenExpired,
    BadFrame,
    /// The replica drained (1001).
    GoingAway,
    /// The service closed it (its stream ended or failed).
    Service,
}

impl Disconnect {
    pub fn label(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::SlowConsumer => "slow_consumer",
            Self::MissedPongs => "missed_pongs",
            Self::TokenExpired => "token_expired",
            Self::BadFrame => "bad_frame",
            Self::GoingAway => "going_away",
            Self::Service => "service",
        }
    }
}

/// The collectors; cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub connections: IntGauge,
    frames_in: IntCounterVec,
    frames_out: IntCounterVec,
    refusals: IntCounterVec,
    disconnects: IntCounterVec,
    pub fanout_latency: Histogram,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Result<Self, KitError> {
        Ok(Self {
            connections: register(
                registry,
                IntGauge::new(
                    "titan_realtime_connections",
                    "WebSocket connections open on this replica",
                )?,
            )?,
            frames_in: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "titan_realtime_frames_in_total",
                        "frames received from clients, by type (unknown types as \"unknown\")",
                    ),
                    &["type"],
                )?,
            )?,
            frames_out: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "titan_realtime_frames_out_total",
                        "frames queued for clients, by type",
                    ),
                    &["type"],
                )?,
            )?,
            refusals: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "titan_realtime_refusals_total",
                        "WebSocket handshakes refused, by reason",
                    ),
                    &["reason"],
                )?,
            )?,
            disconnects: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "titan_realtime_disconnects_total",
                        "open WebSocket connections ended, by reason",
                    ),
                    &["reason"],
                )?,
            )?,
            fanout_latency: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "titan_realtime_fanout_latency_seconds",
                        "from a publish on any replica to its frame queued for this replica's sockets",
                    )
                    .buckets(vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    ]),
                )?,
            )?,
        })
    }

    pub fn frame_in(&self, kind: &str) {
        self.frames_in.with_label_values(&[kind]).inc();
    }

    pub fn frames_out(&self, kind: &str, n: u64) {
        self.frames_out.with_label_values(&[kind]).inc_by(n);
    }

    pub fn refused(&self, why: Refusal) {
        self.refusals.with_label_values(&[why.label()]).inc();
    }

    pub fn disconnected(&self, why: Disconnect) {
        self.disconnects.with_label_values(&[why.label()]).inc();
    }
}
