//! Dead letters, for operators: what a consumer group parked in
//! `<prefix>events:<service>:dead:<group>` (the original message's fields, its stream id and
//! the error), listed, and re-driven onto the source stream once the cause is fixed. A
//! re-driven event reaches every group of the stream again; the others skip it as a duplicate
//! (consumers de-duplicate by event id).

use redis::{
    AsyncCommands,
    streams::{StreamId, StreamRangeReply},
};

use super::{dead_letter_key, stream_key};
use crate::{KitError, datastores::redis::RedisHandle};

/// One dead-lettered message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetter {
    /// Its id in the dead-letter stream: what [`replay`] takes.
    pub dead_id: String,
    /// Its id in the source stream when it failed.
    pub stream_id: String,
    pub error: String,
    /// The event id, type and envelope, as published (empty when the message had none).
    pub event_id: String,
    pub event_type: String,
    pub envelope: String,
}

fn dead_letter(entry: &StreamId) -> DeadLetter {
    let field = |name: &str| entry.get::<String>(name).unwrap_or_default();
    DeadLetter {
        dead_id: entry.id.clone(),
        stream_id: field("stream_id"),
        error: field("error"),
        event_id: field("id"),
        event_type: field("type"),
        envelope: field("envelope"),
    }
}

/// The oldest `limit` dead letters of `group` on `source`'s stream.
pub async fn list(
    redis: &RedisHandle,
    source: &str,
    group: &str,
    limit: usize,
) -> Result<Vec<DeadLetter>, KitError> {
    let mut conn = redis.conn.clone();
    let reply: StreamRangeReply = conn
        .xrange_count(dead_letter_key(redis, source, group), "-", "+", limit)
        .await?;
    Ok(reply.ids.iter().map(dead_letter).collect())
}

/// Publishes the dead letters `ids` (their `dead_id`s) onto `source`'s stream again and removes
/// them from the dead-letter stream, each in one step; returns those re-driven. An id that is
/// not (or no longer) there is skipped, so a repeated replay does not publish twice.
pub async fn replay(
    redis: &RedisHandle,
    source: &str,
    group: &str,
    ids: &[String],
) -> Result<Vec<DeadLetter>, KitError> {
    let dead = dead_letter_key(redis, source, group);
    let stream = stream_key(redis, source);
    let mut conn = redis.conn.clone();
    let mut replayed = Vec::new();
    for id in ids {
        let reply: StreamRangeReply = conn.xrange_count(&dead, id, id, 1).await?;
        let Some(entry) = reply.ids.first() else {
            continue;
        };
        let letter = dead_letter(entry);
        if letter.envelope.is_empty() {
            return Err(KitError::Event(format!(
                "dead letter {id} has no envelope to publish again; inspect it and delete it by hand"
            )));
        }
        let fields = [
            ("id", letter.event_id.as_str()),
            ("type", letter.event_type.as_str()),
            ("envelope", letter.envelope.as_str()),
        ];
        let () = redis::pipe()
            .atomic()
            .xadd(&stream, "*", &fields)
            .ignore()
            .xdel(&dead, &[id])
            .ignore()
            .query_async(&mut conn)
            .await?;
        replayed.push(letter);
    }
    Ok(replayed)
}
