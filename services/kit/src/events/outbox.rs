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
