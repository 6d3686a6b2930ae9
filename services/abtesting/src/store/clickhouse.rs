//! ClickHouse: the `abtesting_exposures` table, the exposure writer and the result aggregates.
//!
//! Exposures go through a bounded channel to one writer task that inserts a batch when it has
//! `exposureBatchSize` rows or its oldest row has waited `exposureFlushMillis`. An exposure this
//! replica queued lately (same experiment, variant and user; see [`super::recent`]) is not
//! queued again and is counted in `titan_abtesting_exposures_deduplicated_total`. `Assign` only
//! ever `try_send`s: when the queue is full (ClickHouse slow or down) the exposure is dropped and
//! counted in `titan_abtesting_exposures_dropped_total` rather than slowing assignment. A failed
//! insert is logged and its rows counted in `titan_abtesting_exposures_lost_total`.
//!
//! Results are aggregated in ClickHouse (per variant: users, sum, sum of squares); metrics come
//! from the analytics service's `analytics_events` table (docs/analytics.md), joined on
//! `user_id` = the exposure's hash attribute value — so results are meaningful when experiments
//! hash on the user id, the default.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use clickhouse::{Client, Row};
use serde::Serialize;
use titan_kit::{KitError, datastores::clickhouse::Migration};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    app::{Exposure, ExposureSink, MetricKind, Result, ResultsSource},
    config::Settings,
    domain::stats::Sample,
    metrics::Metrics,
    store::recent::Recent,
};

/// The service's ClickHouse tables, applied by `titan migrate`.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "abtesting_exposures",
    sql: include_str!("sql/exposures_table.sql"),
}];

/// Queue length in batches: room for bursts while one batch is being inserted.
const QUEUE_BATCHES: usize = 4;

#[derive(Debug, Row, Serialize)]
struct ExposureRow {
    experiment_key: String,
    variation_index: u32,
    variation_key: String,
    hash_attribute: String,
    user_id: String,
    bucket: f64,
    /// `DateTime`: seconds since the epoch.
    time: u32,
    time_ms: u16,
    /// `Date`: days since the epoch.
    date: u16,
    cell: String,
}

fn row(e: Exposure, cell: &str) -> ExposureRow {
    let at: DateTime<Utc> = e.at;
    let seconds = at.timestamp();
    ExposureRow {
        experiment_key: e.experiment_key,
        variation_index: e.variation_index,
        variation_key: e.variation_key,
        hash_attribute: e.hash_attribute,
        user_id: e.user,
        bucket: e.bucket,
        time: u32::try_from(seconds).unwrap_or(0),
        time_ms: u16::try_from(at.timestamp_subsec_millis()).unwrap_or(0),
        date: u16::try_from(seconds.div_euclid(86_400)).unwrap_or(0),
        cell: cell.to_owned(),
    }
}

/// The sending half: what `Assign` calls.
#[derive(Debug, Clone)]
pub struct Exposures {
    tx: mpsc::Sender<Exposure>,
    recent: Arc<Recent>,
    metrics: Metrics,
}

impl ExposureSink for Exposures {
    fn record(&self, exposure: Exposure) {
        let key = self.recent.key(
            &exposure.experiment_key,
            exposure.variation_index,
            &exposure.user,
        );
        if !self.recent.insert(key) {
            self.metrics.exposure_deduplicated();
            return;
        }
        if self.tx.try_send(exposure).is_err() {
            // Not queued: the user's next assignment must be able to log it.
            self.recent.remove(key);
            self.metrics.exposure_dropped();
        }
    }
}

/// The receiving half: one task per replica that batches into ClickHouse.
#[derive(Debug)]
pub struct ExposureWriter {
    rx: mpsc::Receiver<Exposure>,
    client: Client,
    cell: String,
    batch: usize,
    flush_after: Duration,
    metrics: Metrics,
}

/// A connected sink and writer.
pub fn exposures(
    client: Client,
    settings: &Settings,
    cell: String,
    metrics: Metrics,
) -> (Exposures, ExposureWriter) {
    let batch = usize::try_from(settings.exposure_batch_size)
        .unwrap_or(1)
        .max(1);
    let (tx, rx) = mpsc::channel(batch.saturating_mul(QUEUE_BATCHES).max(1024));
    (
        Exposures {
            tx,
            recent: Arc::new(Recent::default()),
            metrics: metrics.clone(),
        },
        ExposureWriter {
            rx,
            client,
            cell,
            batch,
            flush_after: Duration::from_millis(u64::from(settings.exposure_flush_millis)),
            metrics,
        },
    )
}

impl ExposureWriter {
    /// Writes until shutdown, then writes what is queued and returns.
    pub async fn run(mut self, shutdown: CancellationToken) -> std::result::Result<(), KitError> {
        let mut buffer: Vec<Exposure> = Vec::with_capacity(self.batch);
        let mut deadline = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    while let Ok(e) = self.rx.try_recv() {
                        buffer.push(e);
                    }
                    self.flush(&mut buffer).await;
                    return Ok(());
                }
                received = self.rx.recv() => match received {
                    Some(e) => {
                        if buffer.is_empty() {
                            deadline = tokio::time::Instant::now() + self.flush_after;
                        }
                        buffer.push(e);
                        if buffer.len() >= self.batch {
                            self.flush(&mut buffer).await;
                        }
                    }
                    None => {
                        self.flush(&mut buffer).await;
                        return Ok(());
                    }
                },
                () = tokio::time::sleep_until(deadline), if !buffer.is_empty() => {
                    self.flush(&mut buffer).await;
                }
            }
        }
    }

    async fn flush(&self, buffer: &mut Vec<Exposure>) {
        if buffer.is_empty() {
            return;
        }
        let n = buffer.len();
        match self.insert(buffer.drain(..)).await {
            Ok(()) => self.metrics.exposures_written(n),
            Err(e) => {
                tracing::warn!(error = %e, rows = n, "exposure batch not written; rows dropped");
                self.metrics.exposures_lost(n);
            }
        }
    }

    async fn insert(
        &self,
        rows: impl Iterator<Item = Exposure>,
    ) -> std::result::Result<(), clickhouse::error::Error> {
        let mut insert = self
            .client
            .insert::<ExposureRow>("abtesting_exposures")
            .await?;
        for e in rows {
            insert.write(&row(e, &self.cell)).await?;
        }
        insert.end().await
    }
}

/// Result aggregates over exposures and analytics events.
#[derive(Debug, Clone)]
pub struct ChResults {
    client: Client,
}

impl ChResults {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

impl ResultsSource for ChResults {
    async fn users(&self, experiment_key: &str) -> Result<Vec<(u32, u64)>> {
        Ok(self
            .client
            .query(include_str!("sql/users.sql"))
            .bind(experiment_key)
            .fetch_all::<(u32, u64)>()
            .await?)
    }

    async fn metric(
        &self,
        experiment_key: &str,
        metric: &MetricKind,
    ) -> Result<Vec<(u32, Sample)>> {
        let query = match metric {
            MetricKind::Conversion(event) => self
                .client
                .query(include_str!("sql/conversion.sql"))
                .bind(experiment_key)
                .bind(event.as_str()),
            MetricKind::Revenue => self
                .client
                .query(include_str!("sql/revenue.sql"))
                .bind(experiment_key),
        };
        Ok(query
            .fetch_all::<(u32, u64, f64, f64)>()
            .await?
            .into_iter()
            .map(|(variant, n, sum, sum_sq)| (variant, Sample { n, sum, sum_sq }))
            .collect())
    }
}
