//! The outbox relay: moves a service's outbox rows to its Redis stream in `seq` order. One
//! replica relays at a time (a session advisory lock on a dedicated connection), so order holds
//! with many replicas. The order is per entity (a row committed late with an earlier `seq` is
//! published when it commits); a crash between XADD and DELETE publishes a row twice, which
//! consumers absorb by event id.
//!
//! The lock alone cannot stop a relay whose session died just after it checked the lock: its
//! batch would land after the new leader's. So each leader also writes a fresh fencing token
//! into Redis when it takes the lock, and a batch is appended by one script only while the
//! token is still its own: a relay that lost its lock publishes nothing once another has led.

use std::{collections::HashMap, sync::Arc, time::Duration};

use prometheus::{IntGaugeVec, Opts, Registry, core::Collector};
use redis::{Script, Value};
use sqlx::{PgPool, postgres::PgListener};
use tokio_util::sync::CancellationToken;

use super::{
    outbox::{self, CHANNEL},
    positions::{Position, positions},
    stream_key,
};
use crate::{KitError, config::EventsConfig, datastores::redis::RedisHandle, metrics::register};

/// How often a follower retries to become the relay, and the relay polls without a NOTIFY.
const IDLE: Duration = Duration::from_secs(1);
/// After a wake-up or a batch, the relay polls this often for [`HOT_FOR`]: the `NOTIFY` comes
/// from [`outbox::announce`], not from the writer's commit, so a writer may commit after it.
const HOT_POLL: Duration = Duration::from_millis(50);
/// How long the relay stays on [`HOT_POLL`] after the last wake-up or batch.
const HOT_FOR: Duration = Duration::from_secs(1);
/// How often the leading relay measures the bus for [`BusMetrics`].
const OBSERVE_EVERY: Duration = Duration::from_secs(5);

/// The bus as the leading relay of each service sees it: what waits in the outbox, how long
/// the stream is, the length at which trimming starts to drop what a group still needs, and
/// per consumer group what it has not read (lag) or not acknowledged (pending). The chart's
/// `TitanEventStreamNearTrimCap` alert fires when the stream passes half of that cap. A relay
/// that stops leading removes its series, so only the leader reports a service.
#[derive(Debug, Clone)]
pub struct BusMetrics {
    outbox_backlog: IntGaugeVec,
    stream_length: IntGaugeVec,
    trim_cap: IntGaugeVec,
    group_lag: IntGaugeVec,
    group_pending: IntGaugeVec,
}

impl BusMetrics {
    pub fn new(registry: &Registry) -> Result<Self, KitError> {
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels)
                .map_err(|e| KitError::Other(e.to_string()))
                .and_then(|g| register(registry, g))
        };
        Ok(Self {
            outbox_backlog: gauge(
                "titan_events_outbox_backlog",
                "outbox rows not yet published, by publishing service",
                &["service"],
            )?,
            stream_length: gauge(
                "titan_events_stream_length",
                "entries in the service's event stream",
                &["service"],
            )?,
            trim_cap: gauge(
                "titan_events_stream_trim_cap",
                "stream length from which trimming drops entries a consumer group has not read or acknowledged",
                &["service"],
            )?,
            group_lag: gauge(
                "titan_events_group_lag",
                "entries of the stream a consumer group has not read yet",
                &["service", "group"],
            )?,
            group_pending: gauge(
                "titan_events_group_pending",
                "entries a consumer group read but has not acknowledged",
                &["service", "group"],
            )?,
        })
    }

    /// Removes the series of `service`: a relay that no longer leads must not keep reporting
    /// the last values it saw next to the new leader's.
    fn forget(&self, service: &str) {
        for gauge in [&self.outbox_backlog, &self.stream_length, &self.trim_cap] {
            let _ = gauge.remove_label_values(&[service]);
        }
        for gauge in [&self.group_lag, &self.group_pending] {
            let stale: Vec<String> = gauge
                .collect()
                .iter()
                .flat_map(|family| family.get_metric())
                .filter(|m| label(m, "service") == Some(service))
                .filter_map(|m| label(m, "group").map(str::to_owned))
                .collect();
            for group in stale {
                let _ = gauge.remove_label_values(&[service, &group]);
            }
        }
    }
}

fn label<'a>(metric: &'a prometheus::proto::Metric, name: &str) -> Option<&'a str> {
    metric
        .get_label()
        .iter()
        .find(|l| l.name() == name)
        .map(|l| l.value())
}

/// The relay lock of one service, a session advisory lock held on its own connection, and the
/// fencing token this leader wrote into Redis when it took the lock. The connection is detached
/// from the pool: it never goes back (it closes when dropped, ending the session and the lock,
/// so an error path cannot leave a pooled connection holding the lock), and it does not take a
/// pool slot for as long as this replica leads — `titan serve all` leads a relay per service,
/// and their locks and listeners held in the pool (two of its 20 connections per service) left
/// requests timing out for a connection.
#[derive(Debug)]
pub struct Leadership {
    conn: sqlx::PgConnection,
    key: String,
    token: String,
}

impl Leadership {
    /// Unlocks explicitly, then closes the lock's connection.
    pub async fn release(mut self) {
        let _ = sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
            .bind(&self.key)
            .execute(&mut self.conn)
            .await;
    }

    /// Whether the lock's session is alive (one round trip); an error when it is gone. A
    /// session-level advisory lock ends only with an explicit unlock (only [`Self::release`]
    /// does one) or with its session, and this connection never returns to the pool, so a live
    /// session holds the lock. (Reading `pg_locks` to be sure cost about 4 % of PostgreSQL's
    /// CPU under `titan-bench fraud`: `pg_lock_status` walks every lock table, predicate locks
    /// included, and the relay asks before each batch.)
    async fn session_alive(&mut self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&mut self.conn)
            .await
            .map(|_| ())
    }

    /// The server process of the lock's session (to end it in tests and by operators).
    pub async fn backend_pid(&mut self) -> Result<i32, KitError> {
        Ok(sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut self.conn)
            .await?)
    }
}

/// How far past `streamMaxLen` the stream may grow to keep what a slow group still needs.
const HARD_CAP: usize = 10;

/// How one batch trims the stream.
#[derive(Debug)]
enum Trim {
    /// Keep every entry from this id on (what the slowest group still needs).
    MinId(String),
    MaxLen(usize),
}

/// Appends one batch to the stream (KEYS[1]) unless ARGV[1] is a fencing token other than the
/// one in KEYS[2] (an empty ARGV[1] is unfenced). ARGV[2], ARGV[3]: the trim strategy and its
/// threshold; then `id, type, envelope` per entry. Returns how many were appended, or -1 when
/// fenced off.
const APPEND: &str = r"
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
local n = 0
for i = 4, #ARGV, 3 do
  redis.call('XADD', KEYS[1], ARGV[2], '~', ARGV[3], '*',
    'id', ARGV[i], 'type', ARGV[i + 1], 'envelope', ARGV[i + 2])
  n = n + 1
end
return n
";

#[derive(Debug, Clone)]
pub struct Relay {
    pool: PgPool,
    redis: RedisHandle,
    service: String,
    batch: u32,
    max_len: u64,
    metrics: Option<BusMetrics>,
    append: Arc<Script>,
}

impl Relay {
    pub fn new(pool: PgPool, redis: RedisHandle, service: &str, config: &EventsConfig) -> Self {
        Self {
            pool,
            redis,
            service: service.to_owned(),
            batch: config.relay_batch,
            max_len: config.stream_max_len,
            metrics: None,
            append: Arc::new(Script::new(APPEND)),
        }
    }

    /// Reports the bus into `metrics` while leading.
    #[must_use]
    pub fn with_metrics(mut self, metrics: BusMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Measures the outbox, the stream and its groups into the metrics (if any).
    pub async fn observe(&self) -> Result<(), KitError> {
        let Some(m) = &self.metrics else {
            return Ok(());
        };
        let backlog: i64 =
            sqlx::query_scalar("SELECT count(*) FROM titan_outbox WHERE service = $1")
                .bind(&self.service)
                .fetch_one(&self.pool)
                .await?;
        let stream = stream_key(&self.redis, &self.service);
        let mut conn = self.redis.conn.clone();
        let length: i64 = redis::cmd("XLEN")
            .arg(&stream)
            .query_async(&mut conn)
            .await?;
        // No stream yet (nothing published, no consumer): no groups either.
        let groups: Vec<HashMap<String, Value>> = if length == 0 {
            Vec::new()
        } else {
            redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(&stream)
                .query_async(&mut conn)
                .await?
        };
        let service = self.service.as_str();
        m.outbox_backlog.with_label_values(&[service]).set(backlog);
        m.stream_length.with_label_values(&[service]).set(length);
        m.trim_cap
            .with_label_values(&[service])
            .set(i64::try_from(self.trim_cap()).unwrap_or(i64::MAX));
        for group in &groups {
            let field = |name: &str| {
                group
                    .get(name)
                    .and_then(|v| redis::from_redis_value_ref::<i64>(v).ok())
            };
            let Some(name) = group
                .get("name")
                .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
            else {
                continue;
            };
            m.group_pending
                .with_label_values(&[service, &name])
                .set(field("pending").unwrap_or(0));
            // `lag` is nil when Redis cannot tell (after deletions); keep the last value then.
            if let Some(lag) = field("lag") {
                m.group_lag.with_label_values(&[service, &name]).set(lag);
            }
        }
        Ok(())
    }

    /// Relays until `shutdown`; errors are logged and retried, never fatal. Beside it, this
    /// replica announces its own outbox writes ([`outbox::announce`]) to whichever replica
    /// leads.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), KitError> {
        let relay = async {
            while !shutdown.is_cancelled() {
                if let Err(e) = self.lead(&shutdown).await {
                    tracing::warn!(service = %self.service, error = %e, "outbox relay interrupted; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(IDLE) => {}
                    }
                }
            }
        };
        tokio::join!(relay, outbox::announce(&self.pool, &shutdown));
        Ok(())
    }

    /// Takes the relay lock of this service if no other replica holds it, then makes this
    /// relay the only one whose batches Redis appends (a fresh fencing token).
    pub async fn try_lead(&self) -> Result<Option<Leadership>, KitError> {
        let mut conn = self.pool.acquire().await?.detach();
        let key = format!("titan_outbox_relay:{}", self.service);
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(&key)
            .fetch_one(&mut conn)
            .await?;
        if !got {
            return Ok(None);
        }
        let token = uuid::Uuid::new_v4().to_string();
        let mut redis = self.redis.conn.clone();
        let () = redis::cmd("SET")
            .arg(self.fence_key())
            .arg(&token)
            .query_async(&mut redis)
            .await?;
        Ok(Some(Leadership { conn, key, token }))
    }

    /// Where the fencing token of the service's current leader is kept; in the stream's
    /// cluster slot, since the append script reads it.
    fn fence_key(&self) -> String {
        self.redis
            .beside(&stream_key(&self.redis, &self.service), "relay-fence")
    }

    /// Publishes one batch while `leadership` holds: the lock is checked on its session first
    /// (one round trip), so a relay whose lock session died stops at once; one that lost it
    /// after that check is stopped by the fence (see [`Relay::publish_as`]).
    pub async fn relay_leading(&self, leadership: &mut Leadership) -> Result<u64, KitError> {
        match leadership.session_alive().await {
            Ok(()) => self.publish_as(leadership).await,
            Err(e) => Err(KitError::Event(format!(
                "relay of {} lost its lock session ({e}); it stops publishing",
                self.service
            ))),
        }
    }

    /// Publishes one batch under `leadership`'s fence, without checking its lock first (what
    /// [`Relay::relay_leading`] does after its check): the batch is appended whole only while
    /// the fencing token in Redis is still this leader's, else refused whole, with nothing
    /// published and the rows left for the new leader.
    pub async fn publish_as(&self, leadership: &Leadership) -> Result<u64, KitError> {
        self.publish(Some(&leadership.token)).await
    }

    /// Holds the relay lock while publishing; returns when the lock or a connection is lost.
    async fn lead(&self, shutdown: &CancellationToken) -> Result<(), KitError> {
        let mut leadership = loop {
            if let Some(l) = self.try_lead().await? {
                break l;
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(IDLE) => {}
            }
        };
        tracing::info!(service = %self.service, "outbox relay leading");
        // The listener's connection lives as long as the leadership; a pool of its own keeps
        // it (and its reconnects) out of the request pool, as the lock's connection is.
        let listen_pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with((*self.pool.connect_options()).clone());
        let mut listener = PgListener::connect_with(&listen_pool).await?;
        listener.listen(CHANNEL).await?;
        let mut observed = tokio::time::Instant::now() - OBSERVE_EVERY;
        let mut hot_until = tokio::time::Instant::now();
        let result = async {
            loop {
                let moved = self.relay_leading(&mut leadership).await?;
                if moved > 0 {
                    hot_until = tokio::time::Instant::now() + HOT_FOR;
                }
                if observed.elapsed() >= OBSERVE_EVERY {
                    observed = tokio::time::Instant::now();
                    if let Err(e) = self.observe().await {
                        tracing::warn!(service = %self.service, error = %e, "cannot measure the event bus");
                    }
                }
                if moved == u64::from(self.batch) {
                    continue;
                }
                let poll = if tokio::time::Instant::now() < hot_until {
                    HOT_POLL
                } else {
                    IDLE
                };
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    n = listener.recv() => {
                        n?;
                        hot_until = tokio::time::Instant::now() + HOT_FOR;
                    }
                    () = tokio::time::sleep(poll) => {}
                }
            }
        }
        .await;
        leadership.release().await;
        if let Some(metrics) = &self.metrics {
            metrics.forget(&self.service);
        }
        result
    }

    /// How to trim the stream on this batch: never past the oldest entry a consumer group
    /// still needs (its oldest unacknowledged entry, else its last delivered one), unless that
    /// would keep more than [`HARD_CAP`] × `streamMaxLen` entries (a group nobody reads any
    /// more must not pin the stream for ever: then it loses what is trimmed, said in the log
    /// and visible in `titan_events_group_lag`). Without groups, `MAXLEN ~ streamMaxLen`.
    async fn trim(
        &self,
        conn: &mut crate::datastores::redis::RedisConn,
        stream: &str,
    ) -> Result<Trim, KitError> {
        let max_len = usize::try_from(self.max_len).unwrap_or(usize::MAX);
        let cap = self.trim_cap();
        let length: usize = redis::cmd("XLEN").arg(stream).query_async(conn).await?;
        if length == 0 {
            return Ok(Trim::MaxLen(max_len));
        }
        let floor = positions(conn, stream)
            .await?
            .iter()
            .filter_map(Position::needs_from)
            .min();
        Ok(match floor {
            Some(floor) if length < cap => Trim::MinId(floor.to_string()),
            Some(_) => {
                tracing::error!(service = %self.service, length, "a consumer group is so far behind that its stream reached the hard cap; trimming what it has not read");
                Trim::MaxLen(cap)
            }
            None => Trim::MaxLen(max_len),
        })
    }

    /// The stream length from which trimming drops what a group still needs.
    fn trim_cap(&self) -> usize {
        usize::try_from(self.max_len)
            .unwrap_or(usize::MAX)
            .saturating_mul(HARD_CAP)
    }

    /// Publishes one batch without a lock or a fence, as a single relay does (tests, tools);
    /// returns how many rows moved.
    pub async fn relay_once(&self) -> Result<u64, KitError> {
        self.publish(None).await
    }

    /// A producer span per row whose envelope carries a `traceparent` (none without an
    /// exporter), each a child of the span that wrote the event.
    fn relay_spans(
        &self,
        stream: &str,
        rows: &[(i64, uuid::Uuid, String, serde_json::Value)],
    ) -> Vec<tracing::Span> {
        if !crate::telemetry::exporting() {
            return Vec::new();
        }
        rows.iter()
            .filter_map(|(_, id, kind, envelope)| {
                let traceparent = envelope.get("traceparent")?.as_str()?;
                let span = tracing::info_span!(
                    "event relay",
                    otel.name = format!("relay {kind}"),
                    otel.kind = "producer",
                    messaging.system = "redis",
                    messaging.destination.name = stream,
                    messaging.message.id = %id,
                );
                crate::telemetry::continue_event(&span, traceparent);
                Some(span)
            })
            .collect()
    }

    /// Publishes one batch, fenced by `token` when given; returns how many rows moved.
    async fn publish(&self, token: Option<&str>) -> Result<u64, KitError> {
        let rows: Vec<(i64, uuid::Uuid, String, serde_json::Value)> = sqlx::query_as(
            "SELECT seq, event_id, event_type, envelope FROM titan_outbox
             WHERE service = $1 ORDER BY seq LIMIT $2",
        )
        .bind(&self.service)
        .bind(i64::from(self.batch))
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let stream = stream_key(&self.redis, &self.service);
        let mut conn = self.redis.conn.clone();
        let trim = self.trim(&mut conn, &stream).await?;
        let mut append = self.append.key(&stream);
        append.key(self.fence_key()).arg(token.unwrap_or(""));
        match &trim {
            Trim::MinId(floor) => append.arg("MINID").arg(floor),
            Trim::MaxLen(n) => append.arg("MAXLEN").arg(n),
        };
        for (_, id, kind, envelope) in &rows {
            append
                .arg(id.to_string())
                .arg(kind)
                .arg(envelope.to_string());
        }
        // Each traced event's relay span, in the trace of the request that wrote it, lasts
        // as long as the append that publishes it.
        let relayed = self.relay_spans(&stream, &rows);
        let appended: i64 = append.invoke_async(&mut conn).await?;
        drop(relayed);
        if appended < 0 {
            return Err(KitError::Event(format!(
                "relay of {} was fenced off: another relay leads now; it stops publishing",
                self.service
            )));
        }
        let seqs: Vec<i64> = rows.iter().map(|r| r.0).collect();
        sqlx::query("DELETE FROM titan_outbox WHERE service = $1 AND seq = ANY($2)")
            .bind(&self.service)
            .bind(&seqs)
            .execute(&self.pool)
            .await?;
        Ok(rows.len() as u64)
    }
}
