//! Writing events: the outbox row goes into the caller's transaction, and the relay is woken
//! without a `NOTIFY` in that transaction. PostgreSQL serialises the commits of every
//! transaction that notified (one lock on the notification queue, held through the commit's
//! WAL flush), so a `NOTIFY` per business transaction made publishing services commit one at a
//! time. Instead a write raises this process's [`written`] signal; [`announce`] (run beside
//! each relay) sends one `NOTIFY` on its own connection for all the writes of the last
//! [`COALESCE`], and a woken relay keeps polling briefly for a writer that commits later.

use std::{sync::LazyLock, time::Duration};

use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Envelope;
use crate::KitError;

/// The channel the relay listens on.
pub const CHANNEL: &str = "titan_outbox";

/// How long [`announce`] gathers writes before it notifies: long enough for the writer's
/// transaction to commit in the common case, short beside the relay's own poll.
pub const COALESCE: Duration = Duration::from_millis(2);

/// Raised by every outbox write in this process; permits coalesce, so a burst of writes is one
/// wake-up.
static WRITTEN: LazyLock<Notify> = LazyLock::new(Notify::new);

/// Resolves after an outbox write in this process since the last time it resolved.
pub async fn written() {
    WRITTEN.notified().await;
}

/// Until `shutdown`: after each burst of outbox writes in this process, one `NOTIFY` on
/// [`CHANNEL`] from `pool`, which wakes the leading relay of every service in any replica.
/// A failed `NOTIFY` is logged; the relays' own polling still moves the rows.
pub async fn announce(pool: &PgPool, shutdown: &CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = written() => {}
        }
        tokio::time::sleep(COALESCE).await;
        if let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
            .bind(CHANNEL)
            .execute(pool)
            .await
        {
            tracing::warn!(error = %e, "cannot wake the outbox relays; they poll instead");
        }
    }
}

/// Adds `envelope` to `service`'s outbox inside `tx`.
pub async fn write(
    tx: &mut PgConnection,
    service: &str,
    envelope: &Envelope,
) -> Result<(), KitError> {
    let json = serde_json::to_value(envelope).map_err(|e| KitError::Event(e.to_string()))?;
    sqlx::query("INSERT INTO titan_outbox (service, event_id, event_type, envelope) VALUES ($1, $2, $3, $4)")
        .bind(service)
        .bind(envelope.id)
        .bind(&envelope.kind)
        .bind(json)
        .execute(&mut *tx)
        .await?;
    WRITTEN.notify_one();
    Ok(())
}

/// Adds every envelope of `envelopes` to `service`'s outbox inside `tx` in one statement (their
/// `seq` in slice order), one wake-up for all of them: a batch job that changes thousands of
/// entities in one transaction would otherwise pay two round trips per event.
pub async fn write_all(
    tx: &mut PgConnection,
    service: &str,
    envelopes: &[Envelope],
) -> Result<(), KitError> {
    if envelopes.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(envelopes.len());
    let mut kinds = Vec::with_capacity(envelopes.len());
    let mut jsons = Vec::with_capacity(envelopes.len());
    for envelope in envelopes {
        ids.push(envelope.id);
        kinds.push(envelope.kind.clone());
        jsons.push(serde_json::to_value(envelope).map_err(|e| KitError::Event(e.to_string()))?);
    }
    sqlx::query(
        "INSERT INTO titan_outbox (service, event_id, event_type, envelope)
         SELECT $1, e.id, e.kind, e.envelope
           FROM UNNEST($2::uuid[], $3::text[], $4::jsonb[]) WITH ORDINALITY AS e(id, kind, envelope, n)
          ORDER BY e.n",
    )
    .bind(service)
    .bind(ids)
    .bind(kinds)
    .bind(jsons)
    .execute(&mut *tx)
    .await?;
    WRITTEN.notify_one();
    Ok(())
}

/// A data-modifying CTE named `outbox` that writes the events of a [`Staged`] inside the
/// caller's own statement: a state change and its events in one round trip, atomic without an
/// explicit transaction (four round trips — `BEGIN`, the change, the outbox, `COMMIT` — were
/// most of a hot path's latency). `$1`–`$5` are the staged columns ([`Staged::bind`] binds
/// them first, so the statement's own parameters start at `$6`); the statement must define,
/// before this CTE, a CTE `kept(key)` naming the keys whose events to write — for example the
/// ids an `INSERT ... ON CONFLICT DO NOTHING` returned, so a replay writes no second event.
#[macro_export]
macro_rules! outbox_cte {
    () => {
        "outbox AS (
             INSERT INTO titan_outbox (service, event_id, event_type, envelope)
             SELECT $1, e.id, e.kind, e.envelope
               FROM UNNEST($2::uuid[], $3::text[], $4::jsonb[], $5::text[])
                    WITH ORDINALITY AS e(id, kind, envelope, key, n)
              WHERE e.key IN (SELECT key FROM kept)
              ORDER BY e.n
             RETURNING 1
         )"
    };
}

/// Events keyed by the entity each belongs to, for a statement built with [`outbox_cte!`].
#[derive(Debug, Clone)]
pub struct Staged {
    service: String,
    ids: Vec<uuid::Uuid>,
    kinds: Vec<String>,
    envelopes: Vec<serde_json::Value>,
    keys: Vec<String>,
}

impl Staged {
    pub fn new(service: &str) -> Self {
        Self {
            service: service.to_owned(),
            ids: Vec::new(),
            kinds: Vec::new(),
            envelopes: Vec::new(),
            keys: Vec::new(),
        }
    }

    /// Stages `envelope`, written only if `key` is among the statement's `kept` keys.
    pub fn push(&mut self, key: &str, envelope: &Envelope) -> Result<(), KitError> {
        self.envelopes
            .push(serde_json::to_value(envelope).map_err(|e| KitError::Event(e.to_string()))?);
        self.ids.push(envelope.id);
        self.kinds.push(envelope.kind.clone());
        self.keys.push(key.to_owned());
        Ok(())
    }

    /// Binds `$1`–`$5` of `query` (call it before binding the statement's own parameters) and
    /// wakes the relay, as [`write`] does.
    pub fn bind<'q>(
        self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        if !self.ids.is_empty() {
            WRITTEN.notify_one();
        }
        query
            .bind(self.service)
            .bind(self.ids)
            .bind(self.kinds)
            .bind(self.envelopes)
            .bind(self.keys)
    }
}
