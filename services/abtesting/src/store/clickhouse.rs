//! ClickHouse: the `abtesting_exposures` table, the exposure writer and the result aggregates.
//!
//! Exposures go through a bounded queue of `exposureQueueRows` rows to one writer
//! task. The writer batches adaptively: it starts an insert when `exposureBatchSize` rows wait
//! or the oldest has waited `exposureFlushMillis`, taking whatever is queued up to
//! [`WriterLimits::rows_per_insert`], and keeps receiving while up to
//! [`WriterLimits::inserts_in_flight`] inserts run. At a low rate inserts stay small and prompt;
//! at a high one each insert takes what piled up during the ones before, so the queue drains at
//! ClickHouse's bulk rate (few large inserts) rather than one small batch per round trip.
//!
//! An exposure this replica queued lately (same experiment, variant and user; see
//! [`super::recent`]) is not queued again and is counted in
//! `titan_abtesting_exposures_deduplicated_total`. `Assign` only ever `try_send`s: when the
//! queue is full (ClickHouse slower than assignment for longer than the queue lasts, or down)
//! the exposure is dropped and counted in `titan_abtesting_exposures_dropped_total` rather than
//! slowing assignment. A failed insert is tried again after each of
//! [`WriterLimits::retry_delays`] (each counted in
//! `titan_abtesting_exposure_insert_retries_total`); only then are its rows counted in
//! `titan_abtesting_exposures_lost_total`. On shutdown the queue is closed and all it holds is
//! written.
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
use tokio::{sync::mpsc, task::JoinSet, time::Instant};
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

/// How the writer queues, batches and retries. [`Default`] is what the service runs with; tests
/// shrink it to reach the edges quickly.
#[derive(Debug, Clone, PartialEq)]
pub struct WriterLimits {
    /// Rows one insert takes at most (at least `exposureBatchSize`). ClickHouse makes a part
    /// per insert and wants few large ones; 65,536 rows are ~4 MiB of `RowBinary`.
    pub rows_per_insert: usize,
    /// Inserts running at once: while one waits on ClickHouse the next is serialised and sent,
    /// so a round trip does not idle the writer. Two keep the parts few.
    pub inserts_in_flight: usize,
    /// Waits before each new try of a failed insert; once all are spent its rows are lost.
    pub retry_delays: Vec<Duration>,
}

impl Default for WriterLimits {
    fn default() -> Self {
        Self {
            rows_per_insert: 1 << 16,
            inserts_in_flight: 2,
            // Rides out ~8 s of ClickHouse away (a restart, a failover) and stays well inside
            // the shutdown grace period (20 s after the pre-stop delay by default).
            retry_delays: [250, 500, 1_000, 2_000, 4_000]
                .map(Duration::from_millis)
                .to_vec(),
        }
    }
}

/// One exposure as inserted, borrowed from the queued one: a failed insert is tried again from
/// the same rows.
#[derive(Debug, Row, Serialize)]
struct ExposureRow<'a> {
    experiment_key: &'a str,
    variation_index: u32,
    variation_key: &'a str,
    hash_attribute: &'a str,
    user_id: &'a str,
    bucket: f64,
    /// `DateTime`: seconds since the epoch.
    time: u32,
    time_ms: u16,
    /// `Date`: days since the epoch.
    date: u16,
    cell: &'a str,
}

fn row<'a>(e: &'a Exposure, cell: &'a str) -> ExposureRow<'a> {
    let at: DateTime<Utc> = e.at;
    let seconds = at.timestamp();
    ExposureRow {
        experiment_key: &e.experiment_key,
        variation_index: e.variation_index,
        variation_key: &e.variation_key,
        hash_attribute: &e.hash_attribute,
        user_id: &e.user,
        bucket: e.bucket,
        time: u32::try_from(seconds).unwrap_or(0),
        time_ms: u16::try_from(at.timestamp_subsec_millis()).unwrap_or(0),
        date: u16::try_from(seconds.div_euclid(86_400)).unwrap_or(0),
        cell,
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
    inserter: Arc<Inserter>,
    /// Rows that start an insert at once when a slot is free (`exposureBatchSize`).
    batch: usize,
    flush_after: Duration,
    rows_per_insert: usize,
    inserts_in_flight: usize,
}

/// What an insert task needs, shared by the inserts in flight.
#[derive(Debug)]
struct Inserter {
    client: Client,
    cell: String,
    retry_delays: Vec<Duration>,
    metrics: Metrics,
}

/// Longest wait for ClickHouse to answer an insert before it counts as failed (and is tried
/// again): a hung server must not hold an insert slot for ever.
const INSERT_TIMEOUT: Duration = Duration::from_secs(30);

/// A connected sink and writer with the service's [`WriterLimits`].
pub fn exposures(
    client: Client,
    settings: &Settings,
    cell: String,
    metrics: Metrics,
) -> (Exposures, ExposureWriter) {
    exposures_with(client, settings, cell, metrics, WriterLimits::default())
}

/// A connected sink and writer with the given limits.
pub fn exposures_with(
    client: Client,
    settings: &Settings,
    cell: String,
    metrics: Metrics,
    limits: WriterLimits,
) -> (Exposures, ExposureWriter) {
    let batch = usize::try_from(settings.exposure_batch_size)
        .unwrap_or(1)
        .max(1);
    // A queued exposure is a 120-byte [`Exposure`] and its four short strings on the heap,
    // ~250 bytes in all; the channel allocates as it fills, so it is large only while full.
    let queue = usize::try_from(settings.exposure_queue_rows).unwrap_or(usize::MAX);
    let (tx, rx) = mpsc::channel(queue.max(1));
    (
        Exposures {
            tx,
            recent: Arc::new(Recent::default()),
            metrics: metrics.clone(),
        },
        ExposureWriter {
            rx,
            inserter: Arc::new(Inserter {
                client,
                cell,
                retry_delays: limits.retry_delays,
                metrics,
            }),
            batch,
            flush_after: Duration::from_millis(u64::from(settings.exposure_flush_millis)),
            rows_per_insert: limits.rows_per_insert.max(batch),
            inserts_in_flight: limits.inserts_in_flight.max(1),
        },
    )
}

impl ExposureWriter {
    /// Writes until shutdown; then closes the queue (exposures recorded later count as
    /// dropped), writes all it held and returns once every insert has finished.
    pub async fn run(mut self, shutdown: CancellationToken) -> std::result::Result<(), KitError> {
        // Received and not yet handed to an insert: never more than one insert's worth.
        let mut buffer: Vec<Exposure> = Vec::new();
        let mut inserts = JoinSet::new();
        // When the oldest buffered exposure must go, however few are buffered.
        let mut deadline = Instant::now();
        let mut closing = false;
        // The queue is closed and empty: write what is left, then stop.
        let mut drained = false;
        loop {
            let slot_free = inserts.len() < self.inserts_in_flight;
            let due = drained || buffer.len() >= self.batch || Instant::now() >= deadline;
            if slot_free && !buffer.is_empty() && due {
                inserts.spawn(self.inserter.clone().write(std::mem::take(&mut buffer)));
                continue;
            }
            if drained && buffer.is_empty() && inserts.is_empty() {
                return Ok(());
            }
            // With a full insert's worth buffered and every slot busy, receiving pauses and the
            // queue absorbs the burst, up to its capacity.
            let room = self.rows_per_insert.saturating_sub(buffer.len());
            let waiting = !buffer.is_empty();
            tokio::select! {
                () = shutdown.cancelled(), if !closing => {
                    closing = true;
                    self.rx.close();
                }
                received = self.rx.recv_many(&mut buffer, room), if room > 0 && !drained => {
                    if received == 0 {
                        drained = true;
                    } else if buffer.len() == received {
                        deadline = Instant::now() + self.flush_after;
                    }
                }
                Some(done) = inserts.join_next() => {
                    if let Err(e) = done {
                        tracing::error!(error = %e, "exposure insert task failed");
                    }
                }
                () = tokio::time::sleep_until(deadline), if slot_free && waiting => {}
            }
        }
    }
}

impl Inserter {
    /// Inserts `rows`, trying again after each retry delay, and counts them written or lost.
    async fn write(self: Arc<Self>, rows: Vec<Exposure>) {
        let mut delays = self.retry_delays.iter();
        loop {
            let Err(e) = self.insert(&rows).await else {
                self.metrics.exposures_written(rows.len());
                return;
            };
            let Some(delay) = delays.next() else {
                tracing::warn!(error = %e, rows = rows.len(), "exposure insert failed on every try; rows lost");
                self.metrics.exposures_lost(rows.len());
                return;
            };
            tracing::warn!(error = %e, rows = rows.len(), retry_in = ?delay, "exposure insert failed; trying again");
            self.metrics.exposure_insert_retried();
            tokio::time::sleep(*delay).await;
        }
    }

    async fn insert(&self, rows: &[Exposure]) -> std::result::Result<(), clickhouse::error::Error> {
        let mut insert = self
            .client
            .insert::<ExposureRow<'static>>("abtesting_exposures")
            .await?
            .with_timeouts(None, Some(INSERT_TIMEOUT));
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
