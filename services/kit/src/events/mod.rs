//! The event bus: a service writes [`Envelope`]s to the [`outbox`] in the transaction of the
//! change; the [`relay`] publishes them to the service's Redis stream in order; a
//! [`consumer`] on a consumer group handles each event at most once per group (de-duplicated by
//! event id in the handler's transaction), redelivers what a dead consumer left unacknowledged,
//! and parks what keeps failing in a dead-letter stream, which [`dead_letters`] lists and
//! re-drives; [`forget`] deletes a person from the streams once every group is done with them.

pub mod consumer;
pub mod dead_letters;
pub mod envelope;
pub mod forget;
pub mod outbox;
mod positions;
pub mod relay;

pub use consumer::{
    Consumer, ConsumerOptions, Handler, HandlerError, Message, Outcome, StreamReader,
};
pub use envelope::Envelope;

use crate::datastores::redis::RedisHandle;

/// The stream a service's events are published to.
pub fn stream_key(redis: &RedisHandle, service: &str) -> String {
    redis.key(&format!("events:{service}"))
}

/// Where events that a group could not handle end up, with the error; in the stream's cluster
/// slot, since a replay moves a letter back to the stream in one transaction.
pub fn dead_letter_key(redis: &RedisHandle, service: &str, group: &str) -> String {
    redis.beside(&stream_key(redis, service), &format!("dead:{group}"))
}
