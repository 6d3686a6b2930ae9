//! The consumer runner: reads one service's stream on a consumer group and hands each event to
//! a [`Handler`] inside a PostgreSQL transaction that also records the event id, so the handler's
//! effect and "done" commit together (at most once per group, even across crashes). The message
//! is acknowledged only after that commit; what a dead consumer left pending is claimed with
//! `XAUTOCLAIM` after `claim_idle`, and an event that keeps failing goes to the dead-letter
//! stream after `max_deliveries` attempts. Only the handler's verdicts count as attempts: a
//! store that cannot be reached (PostgreSQL down) makes the consumer back off and read its own
//! pending messages again later, without spending any. A stream or group that disappeared
//! (`NOGROUP`: Redis lost its data) is created again and reading goes on.

use std::{future::Future, time::Duration};

use redis::{
    AsyncCommands, Value,
    streams::{StreamAutoClaimReply, StreamId, StreamReadReply},
};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Envelope, dead_letter_key, stream_key};
use crate::{KitError, config::EventsConfig, datastores::redis::RedisHandle};

/// Application logic run for each event.
pub trait Handler: Send + Sync + 'static {
    /// Runs inside the transaction that records the event as processed; write through `tx`.
    fn handle(
        &self,
        tx: &mut PgConnection,
        event: &Envelope,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Runs after the transaction of [`Handler::handle`] committed (not for a duplicate), for
    /// what must see the committed state: dropping a cache of it, for one. A failure here
    /// cannot undo the commit, so it is the handler's to log.
    fn committed(&self, event: &Envelope) -> impl Future<Output = ()> + Send {
        let _ = event;
        async {}
    }
}

/// A failed attempt: retried later, or dead-lettered at once when retrying cannot help.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The event failed; it counts towards `max_deliveries`.
    #[error("{0}")]
    Retry(String),
    #[error("{0}")]
    Permanent(String),
    /// A store could not be reached: the event is not at fault, so this is no attempt; the
    /// consumer backs off and tries again.
    #[error("{0}")]
    Unavailable(String),
}

impl From<sqlx::Error> for HandlerError {
    fn from(e: sqlx::Error) -> Self {
        if is_unreachable(&e) {
            Self::Unavailable(format!("postgres unavailable: {e}"))
        } else {
            Self::Retry(format!("postgres: {e}"))
        }
    }
}

/// Whether `e` says PostgreSQL cannot be reached (as opposed to refusing this event's writes):
/// no connection, a pool that cannot get one, or the server shutting down or starting
/// (SQLSTATE class 08, 57P01–57P03).
fn is_unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

/// What happened to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Handled,
    /// Already processed by this group (a redelivery or a relay duplicate).
    Duplicate,
    /// Failed; stays pending and will be redelivered.
    Failed(String),
    /// Cannot ever succeed (malformed, or a permanent error).
    Rejected(String),
    /// Not attempted: a store was unreachable. Stays pending, counts nothing.
    Unavailable(String),
}

#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// The service whose stream is read.
    pub source: String,
    /// The consumer group: names the reading service (`gamification`), shared by its replicas.
    pub group: String,
    /// This replica's name within the group (the pod name).
    pub consumer: String,
    pub batch: usize,
    pub block: Duration,
    pub claim_idle: Duration,
    pub max_deliveries: u32,
}

impl ConsumerOptions {
    pub fn new(source: &str, group: &str, consumer: &str, events: &EventsConfig) -> Self {
        Self {
            source: source.to_owned(),
            group: group.to_owned(),
            consumer: consumer.to_owned(),
            batch: 64,
            block: Duration::from_secs(1),
            claim_idle: events.claim_idle,
            max_deliveries: events.max_deliveries,
        }
    }
}

/// One message read from the stream.
#[derive(Debug, Clone)]
pub struct Message {
    pub stream_id: String,
    pub event: Result<Envelope, String>,
}

/// The Redis side of a consumer group, without any handling: reads, claims, acknowledges and
/// dead-letters messages of one stream. [`Consumer`] puts a PostgreSQL-transactional handler on
/// top; a sink that de-duplicates by itself (analytics into ClickHouse) uses it directly,
/// acknowledging a whole batch once it is stored.
#[derive(Debug)]
pub struct StreamReader {
    redis: RedisHandle,
    options: ConsumerOptions,
    stream: String,
    failures: String,
    dead: String,
    /// Blocking reads wait here so they never stall the shared connection.
    blocking: crate::datastores::redis::RedisConn,
    /// Whether this replica's own pending list has been re-read since start.
    recovered_own: bool,
    /// When [`StreamReader::poll`] last took over other replicas' stale messages.
    last_claim: tokio::time::Instant,
}

impl StreamReader {
    /// Creates the group if needed (from the start of the stream, so nothing published before
    /// the first deployment of a consumer is lost).
    pub async fn new(redis: RedisHandle, options: ConsumerOptions) -> Result<Self, KitError> {
        let stream = stream_key(&redis, &options.source);
        let failures = redis.key(&format!(
            "events:{}:failures:{}",
            options.source, options.group
        ));
        let dead = dead_letter_key(&redis, &options.source, &options.group);
        create_group(&redis, &stream, &options.group).await?;
        let blocking = redis
            .dedicated(options.block + Duration::from_secs(5))
            .await?;
        Ok(Self {
            redis,
            options,
            stream,
            failures,
            dead,
            blocking,
            recovered_own: false,
            last_claim: tokio::time::Instant::now(),
        })
    }

    /// The Redis key of the stream read.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The consumer span of handling `message`, a child of the span that wrote the event (its
    /// envelope's `traceparent`), so the handling joins the trace of the request behind it; a
    /// disabled span when the event carries no trace context or nothing is exported. A reader
    /// that stores batches itself holds each message's span until the batch is stored.
    pub fn span(&self, message: &Message) -> tracing::Span {
        let traced = match &message.event {
            Ok(event) if crate::telemetry::exporting() => {
                event.traceparent.as_deref().map(|tp| (event, tp))
            }
            _ => None,
        };
        let Some((event, traceparent)) = traced else {
            return tracing::Span::none();
        };
        let span = tracing::info_span!(
            "event handling",
            otel.name = format!("handle {}", event.kind),
            otel.kind = "consumer",
            messaging.system = "redis",
            messaging.destination.name = %self.stream,
            messaging.consumer.group.name = %self.options.group,
            messaging.message.id = %event.id,
        );
        crate::telemetry::continue_event(&span, traceparent);
        span
    }

    /// Reads the next messages: first this replica's own pending ones after a restart, then new ones.
    pub async fn next_batch(&mut self) -> Result<Vec<Message>, KitError> {
        let start = if self.recovered_own { ">" } else { "0" };
        let block = if self.recovered_own {
            Some(self.options.block)
        } else {
            None
        };
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.options.group)
            .arg(&self.options.consumer)
            .arg("COUNT")
            .arg(self.options.batch);
        if let Some(block) = block {
            cmd.arg("BLOCK")
                .arg(u64::try_from(block.as_millis()).unwrap_or(u64::MAX));
        }
        cmd.arg("STREAMS").arg(&self.stream).arg(start);
        let reply: Option<StreamReadReply> = match cmd.query_async(&mut self.blocking).await {
            Err(e) if is_nogroup(&e) => {
                self.recreate_group().await?;
                return Ok(Vec::new());
            }
            other => other?,
        };
        let ids: Vec<StreamId> = reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default();
        if !self.recovered_own && ids.is_empty() {
            self.recovered_own = true;
        }
        Ok(ids.into_iter().map(parse).collect())
    }

    /// The next messages to handle: every `claim_idle / 2` those other replicas left behind
    /// ([`StreamReader::claim_stale`]), otherwise new ones ([`StreamReader::next_batch`]);
    /// `None` when `shutdown` is cancelled while waiting.
    pub async fn poll(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Option<Result<Vec<Message>, KitError>> {
        if self.last_claim.elapsed() >= self.options.claim_idle / 2 {
            self.last_claim = tokio::time::Instant::now();
            return Some(self.claim_stale().await);
        }
        tokio::select! {
            () = shutdown.cancelled() => None,
            batch = self.next_batch() => Some(batch),
        }
    }

    /// Makes the next reads return this replica's unacknowledged messages again, after a batch
    /// could not be stored.
    pub fn reread_pending(&mut self) {
        self.recovered_own = false;
    }

    /// The stream or the group is gone (Redis lost its data, or someone deleted the key):
    /// creates both again, reading from the start of whatever the stream holds now.
    async fn recreate_group(&self) -> Result<(), KitError> {
        tracing::warn!(stream = %self.stream, group = %self.options.group, "consumer group missing (NOGROUP); creating it again");
        create_group(&self.redis, &self.stream, &self.options.group).await
    }

    /// Takes over messages other replicas left unacknowledged for longer than `claim_idle`.
    pub async fn claim_stale(&self) -> Result<Vec<Message>, KitError> {
        let mut conn = self.redis.conn.clone();
        let reply: redis::RedisResult<StreamAutoClaimReply> = redis::cmd("XAUTOCLAIM")
            .arg(&self.stream)
            .arg(&self.options.group)
            .arg(&self.options.consumer)
            .arg(u64::try_from(self.options.claim_idle.as_millis()).unwrap_or(u64::MAX))
            .arg("0-0")
            .arg("COUNT")
            .arg(self.options.batch)
            .query_async(&mut conn)
            .await;
        match reply {
            Ok(reply) => Ok(reply.claimed.into_iter().map(parse).collect()),
            Err(e) if is_nogroup(&e) => {
                self.recreate_group().await?;
                Ok(Vec::new())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Acknowledges messages whose effect is stored.
    pub async fn ack(&self, messages: &[Message]) -> Result<(), KitError> {
        if messages.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = messages.iter().map(|m| m.stream_id.as_str()).collect();
        let mut conn = self.redis.conn.clone();
        let () = redis::pipe()
            .xack(&self.stream, &self.options.group, &ids)
            .ignore()
            .hdel(&self.failures, &ids)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Acknowledges, counts a failure, or dead-letters, according to `outcome`.
    pub async fn settle(&self, message: &Message, outcome: &Outcome) -> Result<(), KitError> {
        match outcome {
            Outcome::Handled | Outcome::Duplicate => self.ack(std::slice::from_ref(message)).await,
            Outcome::Failed(error) => {
                let mut conn = self.redis.conn.clone();
                let failures: u32 = conn.hincr(&self.failures, &message.stream_id, 1).await?;
                tracing::warn!(stream = %self.stream, id = %message.stream_id, failures, %error, "event handler failed");
                if failures >= self.options.max_deliveries {
                    self.dead_letter(message, error).await?;
                }
                Ok(())
            }
            Outcome::Rejected(error) => {
                tracing::error!(stream = %self.stream, id = %message.stream_id, %error, "event rejected");
                self.dead_letter(message, error).await
            }
            Outcome::Unavailable(error) => {
                tracing::warn!(stream = %self.stream, id = %message.stream_id, %error, "event not attempted; it stays pending");
                Ok(())
            }
        }
    }

    async fn dead_letter(&self, message: &Message, error: &str) -> Result<(), KitError> {
        let mut conn = self.redis.conn.clone();
        let original: Vec<(String, Vec<(String, Value)>)> = conn
            .xrange_count(&self.stream, &message.stream_id, &message.stream_id, 1)
            .await?;
        let mut fields: Vec<(String, String)> = vec![
            ("stream_id".into(), message.stream_id.clone()),
            ("error".into(), error.to_owned()),
        ];
        if let Some((_, entry)) = original.into_iter().next() {
            for (name, value) in entry {
                if let Ok(text) = redis::from_redis_value::<String>(value) {
                    fields.push((name, text));
                }
            }
        }
        let () = redis::pipe()
            .xadd(&self.dead, "*", &fields)
            .ignore()
            .xack(&self.stream, &self.options.group, &[&message.stream_id])
            .ignore()
            .hdel(&self.failures, &message.stream_id)
            .ignore()
            .query_async(&mut conn)
            .await?;
        tracing::error!(stream = %self.stream, id = %message.stream_id, dead_letter = %self.dead, "event dead-lettered");
        Ok(())
    }
}

/// Pauses between attempts while a store is unreachable: 100 ms, doubling up to 5 s.
#[derive(Debug)]
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Self(Duration::from_millis(100))
    }
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let now = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
        now
    }
}

/// A consumer group member whose handler runs in a PostgreSQL transaction.
#[derive(Debug)]
pub struct Consumer<H> {
    pool: PgPool,
    reader: StreamReader,
    handler: H,
}

impl<H: Handler> Consumer<H> {
    pub async fn new(
        pool: PgPool,
        redis: RedisHandle,
        options: ConsumerOptions,
        handler: H,
    ) -> Result<Self, KitError> {
        Ok(Self {
            pool,
            reader: StreamReader::new(redis, options).await?,
            handler,
        })
    }

    /// Runs until `shutdown`. A store that cannot be reached (Redis or PostgreSQL) makes it
    /// back off, from 100 ms doubling to 5 s, and then read its own pending messages again:
    /// an outage costs time, never deliveries.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), KitError> {
        let mut backoff = Backoff::default();
        while !shutdown.is_cancelled() {
            let Some(batch) = self.reader.poll(&shutdown).await else {
                break;
            };
            let unavailable = match batch {
                Ok(messages) => self.handle_batch(messages).await,
                Err(e) => {
                    tracing::warn!(stream = %self.reader.stream, group = %self.reader.options.group, error = %e, "cannot read stream; backing off");
                    true
                }
            };
            if unavailable {
                self.reader.reread_pending();
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(backoff.next()) => {}
                }
            } else {
                backoff = Backoff::default();
            }
        }
        Ok(())
    }

    /// Handles and settles `messages` in order; stops at the first that could not be attempted
    /// and says so (the rest stay pending for the re-read).
    async fn handle_batch(&self, messages: Vec<Message>) -> bool {
        for message in messages {
            let outcome = self.handle(&message).await;
            if matches!(outcome, Outcome::Unavailable(_)) {
                tracing::warn!(stream = %self.reader.stream, group = %self.reader.options.group, ?outcome, "store unavailable; backing off");
                return true;
            }
            if let Err(e) = self.settle(&message, &outcome).await {
                tracing::warn!(stream = %self.reader.stream, error = %e, "cannot settle message; it will be redelivered");
                return true;
            }
        }
        false
    }

    /// See [`StreamReader::next_batch`].
    pub async fn next_batch(&mut self) -> Result<Vec<Message>, KitError> {
        self.reader.next_batch().await
    }

    /// See [`StreamReader::claim_stale`].
    pub async fn claim_stale(&self) -> Result<Vec<Message>, KitError> {
        self.reader.claim_stale().await
    }

    /// Runs the handler for one message and commits its effect with the de-duplication record.
    /// Does not acknowledge: see [`Consumer::settle`].
    pub async fn handle(&self, message: &Message) -> Outcome {
        let event = match &message.event {
            Ok(event) => event,
            Err(e) => return Outcome::Rejected(e.clone()),
        };
        let span = self.reader.span(message);
        match self.handle_in_tx(event).instrument(span).await {
            Ok(outcome) => outcome,
            Err(HandlerError::Retry(e)) => Outcome::Failed(e),
            Err(HandlerError::Permanent(e)) => Outcome::Rejected(e),
            Err(HandlerError::Unavailable(e)) => Outcome::Unavailable(e),
        }
    }

    async fn handle_in_tx(&self, event: &Envelope) -> Result<Outcome, HandlerError> {
        let mut tx = self.pool.begin().await?;
        // Blocks behind a concurrent transaction holding the same id, then sees it as done.
        let fresh = sqlx::query(
            "INSERT INTO titan_processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(&self.reader.options.group)
        .bind(event.id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !fresh {
            return Ok(Outcome::Duplicate);
        }
        self.handler.handle(&mut tx, event).await?;
        tx.commit().await?;
        self.handler.committed(event).await;
        Ok(Outcome::Handled)
    }

    /// See [`StreamReader::settle`].
    pub async fn settle(&self, message: &Message, outcome: &Outcome) -> Result<(), KitError> {
        self.reader.settle(message, outcome).await
    }
}

/// Creates `group` on `stream` (and the stream) from its start; an existing group is fine.
async fn create_group(redis: &RedisHandle, stream: &str, group: &str) -> Result<(), KitError> {
    let mut conn = redis.conn.clone();
    let created: redis::RedisResult<()> = conn.xgroup_create_mkstream(stream, group, "0").await;
    match created {
        Err(e) if e.code() != Some("BUSYGROUP") => Err(e.into()),
        _ => Ok(()),
    }
}

fn is_nogroup(e: &redis::RedisError) -> bool {
    e.code() == Some("NOGROUP")
}

fn parse(entry: StreamId) -> Message {
    let event = match entry.get::<String>("envelope") {
        Some(json) => {
            serde_json::from_str::<Envelope>(&json).map_err(|e| format!("malformed envelope: {e}"))
        }
        None => Err("message has no envelope field".to_owned()),
    };
    Message {
        stream_id: entry.id,
        event,
    }
}

/// Deletes de-duplication records older than `keep`; far longer than any redelivery takes.
pub async fn purge_processed(pool: &PgPool, keep: Duration) -> Result<u64, KitError> {
    let done = sqlx::query(
        "DELETE FROM titan_processed_events WHERE processed_at < now() - make_interval(secs => $1)",
    )
    .bind(keep.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
