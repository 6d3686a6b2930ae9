//! Viewer figures in Redis, per stream: a sorted set of viewers scored by their last heartbeat
//! (concurrent = members within the window), a HyperLogLog of every viewer (unique), the peak,
//! the like and share counters, and each viewer's last minute reported to analytics. Each
//! heartbeat is one Lua script, so the trim, the count, the peak and the minute are one atomic
//! step however many replicas take heartbeats. Keys live a week
//! after the last heartbeat (the figures of a past stream stay readable; analytics keeps the
//! history in ClickHouse). Kit's rate limiters keep each user's comment and reaction budgets
//! in `<prefix>rl:<scope>:<user>`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use redis::Script;
use titan_kit::{KitError, datastores::redis::RedisHandle};

use crate::domain::{
    StreamId, ViewerStats,
    viewers::{Reaction, window_start},
};

/// How long the figures of a stream outlive its last heartbeat, in seconds.
pub const KEEP_SECONDS: u64 = 7 * 24 * 3600;

/// The rate limiters' scopes: comments and reactions.
pub const COMMENT_SCOPE: &str = "livestream:comment";
pub const REACT_SCOPE: &str = "livestream:react";

/// What Redis holds of one viewer in one stream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Viewing {
    pub stream_id: StreamId,
    /// Their last heartbeat, while it is among the stream's viewers.
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// The last minute since the start reported to analytics for them.
    pub last_minute: Option<u32>,
}

#[derive(Clone)]
pub struct Live {
    redis: RedisHandle,
    heartbeat: Arc<Script>,
    stats: Arc<Script>,
    erase_viewer: Arc<Script>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

fn figures(v: [u64; 5]) -> ViewerStats {
    let [concurrent, peak, unique, likes, shares] = v;
    ViewerStats {
        concurrent,
        peak,
        unique,
        likes,
        shares,
    }
}

impl Live {
    pub fn new(redis: RedisHandle) -> Self {
        Self {
            redis,
            heartbeat: Arc::new(Script::new(include_str!("lua/heartbeat.lua"))),
            stats: Arc::new(Script::new(include_str!("lua/stats.lua"))),
            erase_viewer: Arc::new(Script::new(include_str!("lua/erase_viewer.lua"))),
        }
    }

    pub fn redis(&self) -> RedisHandle {
        self.redis.clone()
    }

    fn keys(&self, stream: StreamId) -> [String; 6] {
        ["viewers", "unique", "peak", "likes", "shares", "minutes"]
            .map(|k| self.redis.key(&format!("livestream:{{{stream}}}:{k}")))
    }

    /// Records `viewer`'s heartbeat at `now`, in `minute` since the stream started, and
    /// returns the figures and whether this is the viewer's first heartbeat in that minute
    /// (every replica together answers `true` once per viewer and minute).
    pub async fn heartbeat(
        &self,
        stream: StreamId,
        viewer: &str,
        now: DateTime<Utc>,
        minute: Option<u32>,
        ttl_seconds: u32,
    ) -> Result<(ViewerStats, bool), KitError> {
        let now_ms = now.timestamp_millis();
        let mut conn = self.redis.conn.clone();
        let [concurrent, peak, unique, likes, shares, new_minute]: [u64; 6] = self
            .heartbeat
            .key(&self.keys(stream))
            .arg(now_ms)
            .arg(window_start(now_ms, ttl_seconds))
            .arg(viewer)
            .arg(KEEP_SECONDS)
            .arg(minute.map_or(-1, i64::from))
            .invoke_async(&mut conn)
            .await?;
        Ok((
            figures([concurrent, peak, unique, likes, shares]),
            new_minute == 1,
        ))
    }

    /// Forgets the viewer's last reported minute, so that the next heartbeat reports its
    /// minute again (the event of this one was not stored; a minute reported twice is merged
    /// by the analytics query).
    pub async fn forget_minute(&self, stream: StreamId, viewer: &str) -> Result<(), KitError> {
        let [.., minutes] = self.keys(stream);
        let mut conn = self.redis.conn.clone();
        let _: u64 = redis::cmd("HDEL")
            .arg(minutes)
            .arg(viewer)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The figures at `now`.
    pub async fn stats(
        &self,
        stream: StreamId,
        now: DateTime<Utc>,
        ttl_seconds: u32,
    ) -> Result<ViewerStats, KitError> {
        let mut conn = self.redis.conn.clone();
        let v: [u64; 5] = self
            .stats
            .key(&self.keys(stream))
            .arg(window_start(now.timestamp_millis(), ttl_seconds))
            .invoke_async(&mut conn)
            .await?;
        Ok(figures(v))
    }

    /// Counts one like or share.
    pub async fn react(&self, stream: StreamId, reaction: Reaction) -> Result<(), KitError> {
        let key = self
            .redis
            .key(&format!("livestream:{{{stream}}}:{}", reaction.as_str()));
        let mut conn = self.redis.conn.clone();
        let (): () = redis::pipe()
            .atomic()
            .incr(&key, 1)
            .ignore()
            .expire(&key, KEEP_SECONDS as i64)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// What the stream's figures hold of `viewer`, if anything.
    pub async fn viewing(
        &self,
        stream: StreamId,
        viewer: &str,
    ) -> Result<Option<Viewing>, KitError> {
        let [viewers, .., minutes] = self.keys(stream);
        let mut conn = self.redis.conn.clone();
        // Two keys of one hash slot (the stream is their tag).
        let (seen, minute): (Option<f64>, Option<u32>) = redis::pipe()
            .cmd("ZSCORE")
            .arg(viewers)
            .arg(viewer)
            .cmd("HGET")
            .arg(minutes)
            .arg(viewer)
            .query_async(&mut conn)
            .await?;
        if seen.is_none() && minute.is_none() {
            return Ok(None);
        }
        Ok(Some(Viewing {
            stream_id: stream,
            // Scores are milliseconds, well within f64's exact integers.
            last_heartbeat_at: seen.and_then(|ms| DateTime::from_timestamp_millis(ms as i64)),
            last_minute: minute,
        }))
    }

    /// Hands `viewer`'s entries of the stream's figures to `pseudonym` (concurrent and peak
    /// counts unchanged); returns (viewer entries, minute entries) moved.
    pub async fn pseudonymise_viewer(
        &self,
        stream: StreamId,
        viewer: &str,
        pseudonym: &str,
    ) -> Result<(u64, u64), KitError> {
        let [viewers, .., minutes] = self.keys(stream);
        let mut conn = self.redis.conn.clone();
        let [entries, minute]: [u64; 2] = self
            .erase_viewer
            .key(viewers)
            .key(minutes)
            .arg(viewer)
            .arg(pseudonym)
            .invoke_async(&mut conn)
            .await?;
        Ok((entries, minute))
    }
}
