//! Livestream's rules, free of I/O: ids and inputs parsed once at the edge ([`input`]), the
//! stream's status machine ([`stream`]), stream keys and their hashes ([`key`]), comments
//! ([`comment`]), viewer figures ([`viewers`]), the callbacks of the cell's RTMP server
//! ([`rtmp`]) and a stream's analytics from ClickHouse ([`analytics`]).

pub mod analytics;
pub mod comment;
pub mod input;
pub mod key;
pub mod rtmp;
pub mod stream;
pub mod viewers;

pub use comment::{Comment, CommentId, CommentText};
pub use input::{InputError, PageToken, ProductIds, StreamId, Title, page_size};
pub use key::{KeyHash, StreamKey};
pub use stream::{Status, Stream, Transition, WrongStatus};
pub use viewers::ViewerStats;

/// The service's name: config section, outbox source, idempotency scope.
pub const SERVICE: &str = "livestream";

/// The realtime topic of a stream's viewers (comments, pins, featured products, status).
pub fn topic(stream: StreamId) -> String {
    format!("livestream:{stream}")
}
