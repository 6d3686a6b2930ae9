//! Writing events: the outbox row goes into the caller's transaction, and a NOTIFY (delivered
//! only on commit) wakes the relay at once instead of waiting for its next poll.

use sqlx::PgConnection;

use super::Envelope;
use crate::KitError;

/// The channel the relay listens on.
pub const CHANNEL: &str = "titan_outbox";

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
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(service)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
