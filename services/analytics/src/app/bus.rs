//! Every domain event on the bus into `analytics_events`: one reader per source service on the
//! `analytics` consumer group. A batch is acknowledged only after ClickHouse stored it; when it
//! is not stored the messages stay pending and are read again after a pause, so the bus holds
//! what ClickHouse cannot take yet. Redeliveries are harmless: rows de-duplicate by event id.

use std::time::Duration;

use chrono::Utc;
use titan_kit::{
    KitError,
    events::{Message, Outcome, StreamReader},
};
use tokio_util::sync::CancellationToken;

use super::Ingestor;
use crate::{domain::Event, store::EventRow};

/// Longest pause between attempts while ClickHouse refuses batches.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Reads one source's stream until `shutdown`.
pub async fn ingest(
    mut reader: StreamReader,
    events: Ingestor<EventRow>,
    shutdown: CancellationToken,
) -> Result<(), KitError> {
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        let Some(batch) = reader.poll(&shutdown).await else {
            break;
        };
        let stored = match batch {
            Ok(messages) => store(&reader, &events, messages).await,
            Err(e) => Err(e),
        };
        match stored {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(stream = %reader.stream(), error = %e, ?backoff, "events not ingested; they stay pending and are read again");
                reader.reread_pending();
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    Ok(())
}

/// Stores one batch and acknowledges it; malformed messages go to the dead-letter stream.
async fn store(
    reader: &StreamReader,
    events: &Ingestor<EventRow>,
    messages: Vec<Message>,
) -> Result<(), KitError> {
    let now = Utc::now();
    let mut rows = Vec::with_capacity(messages.len());
    let mut good = Vec::with_capacity(messages.len());
    // Each traced event's handling span, in its writer's trace, lasts until the batch is stored
    // (untraced events have none, and the vector then never allocates).
    let mut spans = Vec::new();
    for message in messages {
        match &message.event {
            Ok(envelope) => {
                rows.push(EventRow::new(Event::from_envelope(envelope), now));
                let span = reader.span(&message);
                if !span.is_none() {
                    spans.push(span);
                }
                good.push(message);
            }
            Err(e) => {
                let outcome = Outcome::Rejected(e.clone());
                reader.settle(&message, &outcome).await?;
            }
        }
    }
    events
        .submit(rows)
        .await
        .map_err(|e| KitError::Other(e.to_string()))?;
    let acked = reader.ack(&good).await;
    drop(spans);
    acked
}
