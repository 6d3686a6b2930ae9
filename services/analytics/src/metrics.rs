//! The analytics service's own metrics (per-RPC metrics come from kit): what was stored, what
//! was refused and why, and how long inserts take. Label values are fixed sets.

use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};
use titan_kit::{KitError, metrics::register};

#[derive(Debug, Clone)]
pub struct Metrics {
    rows: IntCounterVec,
    refused: IntCounterVec,
    flushes: IntCounterVec,
    flush_seconds: Histogram,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Result<Self, KitError> {
        Ok(Self {
            rows: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "titan_analytics_rows_stored_total",
                        "rows inserted into ClickHouse",
                    ),
                    &["table"],
                )?,
            )?,
            refused: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "titan_analytics_rows_refused_total",
                        "rows not accepted, by reason (invalid, buffer_full, not_stored)",
                    ),
                    &["reason"],
                )?,
            )?,
            flushes: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "titan_analytics_flushes_total",
                        "inserts by table and result",
                    ),
                    &["table", "result"],
                )?,
            )?,
            flush_seconds: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "titan_analytics_flush_duration_seconds",
                        "time one batch insert takes",
                    )
                    .buckets(vec![
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    ]),
                )?,
            )?,
        })
    }

    pub fn flushed(&self, table: &str, rows: usize, took: Duration, ok: bool) {
        self.flush_seconds.observe(took.as_secs_f64());
        let result = if ok { "ok" } else { "error" };
        self.flushes.with_label_values(&[table, result]).inc();
        if ok {
            self.rows
                .with_label_values(&[table])
                .inc_by(u64::try_from(rows).unwrap_or(u64::MAX));
        } else {
            self.refused(NOT_STORED, rows);
        }
    }

    pub fn refused(&self, reason: &str, rows: usize) {
        self.refused
            .with_label_values(&[reason])
            .inc_by(u64::try_from(rows).unwrap_or(u64::MAX));
    }
}

pub const INVALID: &str = "invalid";
pub const BUFFER_FULL: &str = "buffer_full";
pub const NOT_STORED: &str = "not_stored";
