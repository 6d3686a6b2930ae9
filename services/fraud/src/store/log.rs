//! The decision log's sink: checks answer once their decision is in the log (a Redis stream,
//! [`crate::store::redis::LOG_SOURCE`]); this task, on every replica, reads it in a consumer
//! group and stores each batch in PostgreSQL — decisions, first-seen devices and IPs, cases
//! and `fraud.decided` events — in one statement, then acknowledges and deletes the entries.
//! A batch PostgreSQL refused is read again after a pause; an entry that keeps failing goes to
//! the log's dead letters; an entry a dead replica left unacknowledged is claimed by another.
//! Storing is idempotent by transaction id, so an entry stored twice is stored once.

use std::{sync::Arc, time::Duration};

use titan_kit::{
    KitError,
    datastores::redis::RedisHandle,
    events::{ConsumerOptions, Message, Outcome, StreamReader},
};
use tokio_util::sync::CancellationToken;

use crate::{
    app::{Fraud, FraudStore, HotStore, NewDecision},
    store::redis::{LOG_SOURCE, LOGGED},
};

/// The consumer group of the sinks (every replica's is a consumer in it).
pub const GROUP: &str = "fraud-sink";
/// How long the sink waits after PostgreSQL refused a batch before reading it again.
const PAUSE: Duration = Duration::from_secs(1);
/// Entries stored per statement at most.
const BATCH: usize = 256;

pub struct DecisionSink<S, V> {
    app: Arc<Fraud<S, V>>,
    reader: StreamReader,
    redis: RedisHandle,
}

impl<S, V> std::fmt::Debug for DecisionSink<S, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionSink")
            .field("stream", &self.reader.stream())
            .finish_non_exhaustive()
    }
}

impl<S: FraudStore, V: HotStore> DecisionSink<S, V> {
    /// `options` name this replica (`consumer`) and carry the bus's claim and retry settings;
    /// its source, group and batch are the log's.
    pub async fn new(
        app: Arc<Fraud<S, V>>,
        redis: RedisHandle,
        options: ConsumerOptions,
    ) -> Result<Self, KitError> {
        let options = ConsumerOptions {
            source: LOG_SOURCE.to_owned(),
            group: GROUP.to_owned(),
            batch: BATCH,
            ..options
        };
        let reader = StreamReader::new(redis.clone(), options).await?;
        Ok(Self { app, reader, redis })
    }

    /// Stores what the log receives until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), KitError> {
        while let Some(batch) = self.reader.poll(&shutdown).await {
            let stored = match batch {
                Ok(batch) => self.store(batch).await,
                Err(e) => Err(e),
            };
            if let Err(e) = stored {
                tracing::warn!(error = %e, "the decision log's sink failed; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(PAUSE) => {}
                }
            }
        }
        Ok(())
    }

    /// Stores everything the log holds now, then returns how many entries it stored: what a
    /// test awaits instead of the running task.
    pub async fn drain(&mut self) -> Result<usize, KitError> {
        let mut stored = 0;
        // The first read returns this consumer's pending entries and the next new ones;
        // two empty reads in a row mean the log is empty.
        let mut empty = 0;
        while empty < 2 {
            let batch = self.reader.next_batch().await?;
            if batch.is_empty() {
                empty += 1;
                continue;
            }
            empty = 0;
            stored += batch.len();
            self.store(batch).await?;
        }
        Ok(stored)
    }

    /// Stores one batch; what PostgreSQL refused stays pending (read again after a pause) and
    /// is dead-lettered once it failed `max_deliveries` times.
    async fn store(&mut self, batch: Vec<Message>) -> Result<(), KitError> {
        let mut decisions: Vec<NewDecision> = Vec::with_capacity(batch.len());
        let mut read: Vec<Message> = Vec::with_capacity(batch.len());
        // Stored, or dead-lettered: either way out of the log.
        let mut done: Vec<Message> = Vec::with_capacity(batch.len());
        for message in batch {
            match decision_of(&message) {
                Ok(d) => {
                    decisions.push(d);
                    read.push(message);
                }
                Err(error) => {
                    self.reader
                        .settle(&message, &Outcome::Rejected(error))
                        .await?;
                    done.push(message);
                }
            }
        }
        let answers = if decisions.is_empty() {
            Vec::new()
        } else {
            self.app.store_logged(decisions).await
        };
        let mut stored: Vec<Message> = Vec::with_capacity(read.len());
        let mut failed = None;
        for (message, answer) in read.into_iter().zip(answers) {
            match answer {
                Ok(_) => stored.push(message),
                Err(e) => {
                    let error = e.to_string();
                    self.reader
                        .settle(&message, &Outcome::Failed(error.clone()))
                        .await?;
                    failed = Some(error);
                }
            }
        }
        self.reader.ack(&stored).await?;
        done.extend(stored);
        self.delete(&done).await?;
        match failed {
            Some(error) => {
                self.reader.reread_pending();
                Err(KitError::Other(format!(
                    "postgresql refused logged decisions: {error}"
                )))
            }
            None => Ok(()),
        }
    }

    /// Acknowledged entries leave the stream at once: the log holds what is not stored yet,
    /// which is what its cap ([`crate::store::redis::LOG_CAP`]) bounds.
    async fn delete(&self, done: &[Message]) -> Result<(), KitError> {
        if done.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = done.iter().map(|m| m.stream_id.as_str()).collect();
        let mut conn = self.redis.conn.clone();
        let _deleted: u64 = redis::cmd("XDEL")
            .arg(self.reader.stream())
            .arg(&ids)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}

/// The decision an entry carries, or why it can never be stored.
fn decision_of(message: &Message) -> Result<NewDecision, String> {
    let envelope = message.event.as_ref().map_err(Clone::clone)?;
    if envelope.kind != LOGGED || envelope.version != 1 {
        return Err(format!(
            "the decision log holds {} v{}, not {LOGGED} v1",
            envelope.kind, envelope.version
        ));
    }
    envelope
        .payload_as::<NewDecision>()
        .map_err(|e| format!("malformed logged decision: {e}"))
}
