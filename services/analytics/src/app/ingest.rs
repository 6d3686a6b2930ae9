//! The ingestion buffer: callers hand over rows and wait until ClickHouse has them; one flusher
//! per table gathers whatever is waiting into one `INSERT` (by size, or after the flush
//! interval), so many small calls become few large inserts. The buffer is bounded in rows: when
//! ClickHouse is slow or down and it fills, new rows are refused at once (`Unavailable`)
//! instead of queueing without bound, and every caller whose rows were not stored is told so —
//! nothing is dropped silently, and a retry is harmless because rows de-duplicate by id.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use titan_kit::KitError;

use crate::metrics::Metrics;

/// Stores a batch of rows in one go.
pub trait Sink<R>: Send + Sync + 'static {
    fn write(&self, rows: Vec<R>) -> impl Future<Output = Result<(), KitError>> + Send;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    #[error("the ingestion buffer is full ({0} rows waiting for ClickHouse); retry later")]
    BufferFull(u32),
    #[error("clickhouse did not store the batch: {0}")]
    NotStored(String),
    #[error("the service is shutting down")]
    Stopped,
}

#[derive(Debug, Clone, Copy)]
pub struct IngestOptions {
    /// Rows per insert that trigger a flush at once.
    pub batch_rows: usize,
    /// Longest a row waits for more rows before its batch is inserted.
    pub flush_every: Duration,
    /// Rows accepted but not yet stored, across all callers.
    pub capacity: u32,
    /// Longest one insert may take before its callers are told it failed.
    pub insert_timeout: Duration,
}

struct Pending<R> {
    rows: Vec<R>,
    done: oneshot::Sender<Result<(), IngestError>>,
    /// Returned to the buffer when the caller has its answer.
    permit: OwnedSemaphorePermit,
}

/// The callers' side of one table's buffer.
pub struct Ingestor<R> {
    table: &'static str,
    queue: mpsc::UnboundedSender<Pending<R>>,
    permits: Arc<Semaphore>,
    capacity: u32,
}

impl<R> std::fmt::Debug for Ingestor<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingestor")
            .field("table", &self.table)
            .field("capacity", &self.capacity)
            .field("free", &self.permits.available_permits())
            .finish()
    }
}

impl<R> Clone for Ingestor<R> {
    fn clone(&self) -> Self {
        Self {
            table: self.table,
            queue: self.queue.clone(),
            permits: self.permits.clone(),
            capacity: self.capacity,
        }
    }
}

impl<R: Send + 'static> Ingestor<R> {
    /// The buffer and its flusher; run the flusher until `shutdown` (it stores what is queued
    /// before it returns).
    pub fn new<S: Sink<R>>(
        table: &'static str,
        sink: S,
        options: IngestOptions,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> (
        Self,
        impl Future<Output = Result<(), KitError>> + Send + 'static,
    ) {
        let (queue, rx) = mpsc::unbounded_channel();
        let permits = Arc::new(Semaphore::new(options.capacity as usize));
        let flusher = flush_loop(table, sink, options, rx, metrics, shutdown);
        (
            Self {
                table,
                queue,
                permits,
                capacity: options.capacity,
            },
            flusher,
        )
    }

    /// Returns once `rows` are stored, or says why they were not.
    pub async fn submit(&self, rows: Vec<R>) -> Result<(), IngestError> {
        if rows.is_empty() {
            return Ok(());
        }
        let n = u32::try_from(rows.len()).unwrap_or(u32::MAX);
        let permit = self
            .permits
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| IngestError::BufferFull(self.capacity))?;
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Pending { rows, done, permit })
            .map_err(|_| IngestError::Stopped)?;
        answer.await.map_err(|_| IngestError::Stopped)?
    }

    /// Rows accepted and not yet answered.
    pub fn waiting(&self) -> u32 {
        self.capacity
            .saturating_sub(u32::try_from(self.permits.available_permits()).unwrap_or(u32::MAX))
    }
}

async fn flush_loop<R: Send + 'static, S: Sink<R>>(
    table: &'static str,
    sink: S,
    options: IngestOptions,
    mut rx: mpsc::UnboundedReceiver<Pending<R>>,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<(), KitError> {
    let mut stopping = false;
    loop {
        // Wait for the first caller of the next batch.
        let first = if stopping {
            match rx.try_recv() {
                Ok(p) => p,
                Err(_) => return Ok(()),
            }
        } else {
            tokio::select! {
                () = shutdown.cancelled() => { stopping = true; continue; }
                p = rx.recv() => match p { Some(p) => p, None => return Ok(()) },
            }
        };
        let deadline = Instant::now() + options.flush_every;
        let mut rows = first.rows;
        let mut waiting = vec![(first.done, first.permit)];
        // Then gather more until the batch is full or the first row has waited long enough.
        while rows.len() < options.batch_rows {
            let next = if stopping {
                rx.try_recv().ok()
            } else {
                tokio::select! {
                    () = shutdown.cancelled() => { stopping = true; continue; }
                    () = tokio::time::sleep_until(deadline) => None,
                    p = rx.recv() => p,
                }
            };
            let Some(p) = next else { break };
            rows.extend(p.rows);
            waiting.push((p.done, p.permit));
        }
        let count = rows.len();
        let started = Instant::now();
        let result = match tokio::time::timeout(options.insert_timeout, sink.write(rows)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(IngestError::NotStored(e.to_string())),
            Err(_) => Err(IngestError::NotStored(format!(
                "insert took longer than {:?}",
                options.insert_timeout
            ))),
        };
        metrics.flushed(table, count, started.elapsed(), result.is_ok());
        if let Err(e) = &result {
            tracing::warn!(table, rows = count, error = %e, "batch not stored; its callers are told to retry");
        }
        for (done, permit) in waiting {
            // A caller that gave up no longer listens; its rows' fate is in the metrics.
            let _ = done.send(result.clone());
            drop(permit);
        }
    }
}
