//! What lives only while users are connected, in Redis and shared by every replica:
//! - typing: a sorted set per conversation, `<prefix>chat:typing:<conversation>`, member the
//!   user, score the moment the indicator expires (ms); read from now on, so an indicator
//!   that is not refreshed disappears after `chat.typingTtlSeconds`; the key itself expires
//!   with its last indicator.
//! - presence: a sorted set per user, `<prefix>chat:presence:<user>`, one member per open
//!   connection (replica and a random id), scored with the moment its heartbeat runs out. A
//!   user is online while one member has not run out, so closing one of two connections
//!   changes nothing and a dead replica's connections stop counting after the TTL.
//!   `<prefix>chat:seen:<user>` holds the last moment a connection of theirs was alive.
//! - the send rate: kit's limiter keeps each user's budget in `<prefix>rl:chat:send:<user>`.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use titan_kit::{KitError, datastores::redis::RedisHandle, idempotency::composite};

use crate::domain::{ConversationId, UserId};

/// The rate limiter's scope of sends; kit keys a user's budget `rl:<scope>:<user>`.
pub const SEND_SCOPE: &str = "chat:send";

/// What [`Live::forget`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Forgotten {
    /// Presence and last-seen keys.
    pub presence: u64,
    /// Typing indicators.
    pub typing: u64,
}

/// A user's presence as `GetPresence` answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub user_id: UserId,
    pub online: bool,
    pub last_seen: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct Live {
    redis: RedisHandle,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

impl Live {
    pub fn new(redis: RedisHandle) -> Self {
        Self { redis }
    }

    pub fn redis(&self) -> &RedisHandle {
        &self.redis
    }

    fn typing_key(&self, conversation: ConversationId) -> String {
        self.redis.key(&format!("chat:typing:{conversation}"))
    }

    /// User ids are printable but may hold `:`; the composite keeps keys unambiguous. The
    /// user is the hash tag of both presence keys, which change in one transaction: on a Redis
    /// Cluster they must share a slot.
    fn presence_key(&self, user: &str) -> String {
        self.redis
            .key(&format!("chat:presence:{{{}}}", composite(&[user])))
    }

    fn seen_key(&self, user: &str) -> String {
        self.redis
            .key(&format!("chat:seen:{{{}}}", composite(&[user])))
    }

    pub async fn set_typing(
        &self,
        conversation: ConversationId,
        user: &UserId,
        typing: bool,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<(), KitError> {
        let key = self.typing_key(conversation);
        let mut conn = self.redis.conn.clone();
        let mut pipe = redis::pipe();
        pipe.atomic();
        if typing {
            pipe.cmd("ZADD")
                .arg(&key)
                .arg(ms(now) + ttl_ms(ttl))
                .arg(user.as_str())
                .ignore()
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(ttl_ms(ttl))
                .ignore();
        } else {
            pipe.cmd("ZREM").arg(&key).arg(user.as_str()).ignore();
        }
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(ms(now))
            .ignore();
        let () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    /// Who is typing at `now`.
    pub async fn typing(
        &self,
        conversation: ConversationId,
        now: DateTime<Utc>,
    ) -> Result<Vec<UserId>, KitError> {
        let mut conn = self.redis.conn.clone();
        let users: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.typing_key(conversation))
            .arg(format!("({}", ms(now)))
            .arg("+inf")
            .query_async(&mut conn)
            .await?;
        Ok(users
            .iter()
            .filter_map(|u| UserId::parse("typing user", u).ok())
            .collect())
    }

    /// Counts (or refreshes) `connection` of `user` for `ttl` from `now`.
    pub async fn connected(
        &self,
        user: &str,
        connection: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<(), KitError> {
        let key = self.presence_key(user);
        let mut conn = self.redis.conn.clone();
        let () = redis::pipe()
            .atomic()
            .cmd("ZADD")
            .arg(&key)
            .arg(ms(now) + ttl_ms(ttl))
            .arg(connection)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(ms(now))
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(ttl_ms(ttl))
            .ignore()
            .cmd("SET")
            .arg(self.seen_key(user))
            .arg(ms(now))
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// `connection` of `user` closed at `now`.
    pub async fn disconnected(
        &self,
        user: &str,
        connection: &str,
        now: DateTime<Utc>,
    ) -> Result<(), KitError> {
        let mut conn = self.redis.conn.clone();
        let () = redis::pipe()
            .atomic()
            .cmd("ZREM")
            .arg(self.presence_key(user))
            .arg(connection)
            .ignore()
            .cmd("SET")
            .arg(self.seen_key(user))
            .arg(ms(now))
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// When a connection of `user` was last alive, if the key is still there.
    pub async fn last_seen(&self, user: &str) -> Result<Option<DateTime<Utc>>, KitError> {
        let mut conn = self.redis.conn.clone();
        let seen: Option<i64> = redis::cmd("GET")
            .arg(self.seen_key(user))
            .query_async(&mut conn)
            .await?;
        Ok(seen.and_then(|t| Utc.timestamp_millis_opt(t).single()))
    }

    /// Deletes what Redis holds of `user` here: presence, last seen, and their typing
    /// indicators in `conversations` (the send budget is kit's: `RateLimiter::forget`). One command per key: on a Redis Cluster the keys
    /// sit in different slots.
    pub async fn forget(
        &self,
        user: &str,
        conversations: &[ConversationId],
    ) -> Result<Forgotten, KitError> {
        let mut conn = self.redis.conn.clone();
        let mut forgotten = Forgotten::default();
        for key in [self.presence_key(user), self.seen_key(user)] {
            let n: u64 = redis::cmd("DEL").arg(key).query_async(&mut conn).await?;
            forgotten.presence += n;
        }
        for conversation in conversations {
            let n: u64 = redis::cmd("ZREM")
                .arg(self.typing_key(*conversation))
                .arg(user)
                .query_async(&mut conn)
                .await?;
            forgotten.typing += n;
        }
        Ok(forgotten)
    }

    pub async fn presence(
        &self,
        users: &[UserId],
        now: DateTime<Utc>,
    ) -> Result<Vec<Presence>, KitError> {
        let mut pipe = redis::pipe();
        for user in users {
            pipe.cmd("ZCOUNT")
                .arg(self.presence_key(user.as_str()))
                .arg(format!("({}", ms(now)))
                .arg("+inf")
                .cmd("GET")
                .arg(self.seen_key(user.as_str()));
        }
        let mut conn = self.redis.conn.clone();
        // Two answers per user, in order: the live connections, then the last seen time.
        let answers: Vec<Option<i64>> = pipe.query_async(&mut conn).await?;
        Ok(users
            .iter()
            .zip(answers.chunks(2))
            .map(|(user, pair)| {
                let open = pair.first().copied().flatten().unwrap_or(0);
                let seen = pair.get(1).copied().flatten();
                let last_seen = seen.and_then(|t| Utc.timestamp_millis_opt(t).single());
                Presence {
                    user_id: user.clone(),
                    online: open > 0,
                    // While online, "last seen" is now.
                    last_seen: if open > 0 { Some(now) } else { last_seen },
                }
            })
            .collect())
    }
}
