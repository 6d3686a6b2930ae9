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
/// How long the sink lets the log fill after storing a batch smaller than [`BATCH`]. Read as
/// soon as they arrive, entries came a few at a time: a statement, a commit and the outbox
/// relay's publication for every few checks, which kept PostgreSQL busier than the checks
/// themselves kept Redis. 2 ms stores about 5 per statement at 2,000 checks/s (a wait and a
/// store of ~2.5 ms); a decision reaches PostgreSQL (its case, `fraud.decided`) that much
/// later, while replays are answered from the log at once. Longer waits made fewer, longer statements, and a check's Redis reply woke a
/// thread that waited behind one: at 10 ms (~20 per statement) 90–96 % of checks were answered
/// within 2 ms, at 50 ms the p99 tripled. 2 ms is better only with the sink on the background
/// runtime (`kit::background`), where its more frequent work yields to checks; at their
/// priority it was worse than 10 (`docs/fraud.md`, "Where the tail is now").
const LINGER: Duration = Duration::from_millis(2);
/// Entries decoded between two yields to the runtime: a batch's decoding shares the workers
/// with checks instead of holding one for the whole batch.
const DECODE_RUN: usize = 8;

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
            let (full, stored) = match batch {
                Ok(batch) => (batch.len() >= BATCH, self.store(batch).await),
                Err(e) => (false, Err(e)),
            };
            let wait = match stored {
                // More is waiting already.
                Ok(()) if full => continue,
                Ok(()) => LINGER,
                Err(e) => {
                    tracing::warn!(error = %e, "the decision log's sink failed; retrying");
                    PAUSE
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
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
        for (i, mut message) in batch.into_iter().enumerate() {
            if i % DECODE_RUN == DECODE_RUN - 1 {
                tokio::task::yield_now().await;
            }
            match decision_of(&mut message) {
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

/// The decision an entry carries, or why it can never be stored. The envelope is taken out of
/// the message, so its payload is read without a copy: settling the message reads the entry
/// from the stream again, not from here.
fn decision_of(message: &mut Message) -> Result<NewDecision, String> {
    let envelope = std::mem::replace(&mut message.event, Err(String::new()))?;
    if envelope.kind != LOGGED || envelope.version != 1 {
        return Err(format!(
            "the decision log holds {} v{}, not {LOGGED} v1",
            envelope.kind, envelope.version
        ));
    }
    envelope
        .into_payload::<NewDecision>()
        .map_err(|e| format!("malformed logged decision: {e}"))
}
