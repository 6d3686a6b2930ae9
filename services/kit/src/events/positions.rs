//! Where each consumer group of a stream stands: what the relay may trim (nothing a group still
//! needs) and what an erasure may delete from the bus (only what every group is done with).

use std::collections::HashMap;

use redis::Value;

use crate::{KitError, datastores::redis::RedisConn};

/// A stream entry id (`<ms>-<seq>`), ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct StreamId(u64, u64);

impl StreamId {
    pub(crate) fn parse(id: &str) -> Option<Self> {
        let (ms, seq) = id.split_once('-')?;
        Some(Self(ms.parse().ok()?, seq.parse().ok()?))
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// One consumer group's position in a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) group: String,
    /// The newest entry handed to one of its consumers.
    pub(crate) last_delivered: Option<StreamId>,
    /// Its oldest entry handed out and not acknowledged.
    pub(crate) oldest_pending: Option<StreamId>,
}

impl Position {
    /// The oldest entry the group may still need: its oldest unacknowledged one, else its
    /// last delivered one (kept, to be safe with a reset group).
    pub(crate) fn needs_from(&self) -> Option<StreamId> {
        self.oldest_pending.or(self.last_delivered)
    }

    /// Whether the group is done with `id`: delivered and acknowledged.
    pub(crate) fn done_with(&self, id: StreamId) -> bool {
        self.last_delivered.is_some_and(|last| id <= last)
            && self.oldest_pending.is_none_or(|oldest| id < oldest)
    }
}

/// The positions of every consumer group of `stream` (none for a stream without groups).
pub(crate) async fn positions(
    conn: &mut RedisConn,
    stream: &str,
) -> Result<Vec<Position>, KitError> {
    let groups: Vec<HashMap<String, Value>> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async(conn)
        .await?;
    let mut positions = Vec::with_capacity(groups.len());
    for group in &groups {
        let text = |name: &str| {
            group
                .get(name)
                .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
        };
        let Some(name) = text("name") else { continue };
        // [count, oldest id, newest id, consumers]
        let pending: Vec<Value> = redis::cmd("XPENDING")
            .arg(stream)
            .arg(&name)
            .query_async(conn)
            .await?;
        positions.push(Position {
            group: name,
            last_delivered: text("last-delivered-id").and_then(|id| StreamId::parse(&id)),
            oldest_pending: pending
                .get(1)
                .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
                .and_then(|id| StreamId::parse(&id)),
        });
    }
    Ok(positions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> StreamId {
        StreamId::parse(s).expect("id")
    }

    #[test]
    fn stream_ids_order_as_redis_orders_them() {
        assert!(id("9-5") < id("10-0"), "numerically, not as text");
        assert!(id("10-2") < id("10-10"));
        assert_eq!(id("1700000000000-3").to_string(), "1700000000000-3");
        assert_eq!(StreamId::parse("0"), None);
        assert_eq!(StreamId::parse("a-1"), None);
    }

    #[test]
    fn a_group_is_done_with_what_it_was_given_and_acknowledged() {
        let caught_up = Position {
            group: "a".into(),
            last_delivered: Some(id("5-0")),
            oldest_pending: None,
        };
        assert!(caught_up.done_with(id("5-0")));
        assert!(!caught_up.done_with(id("5-1")));
        assert_eq!(caught_up.needs_from(), Some(id("5-0")));
        let behind = Position {
            group: "b".into(),
            last_delivered: Some(id("9-0")),
            oldest_pending: Some(id("3-0")),
        };
        assert!(behind.done_with(id("2-9")));
        assert!(!behind.done_with(id("3-0")));
        assert_eq!(behind.needs_from(), Some(id("3-0")));
        let fresh = Position {
            group: "c".into(),
            last_delivered: None,
            oldest_pending: None,
        };
        assert!(!fresh.done_with(id("0-1")));
        assert_eq!(fresh.needs_from(), None);
    }
}
