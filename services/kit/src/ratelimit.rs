//! Per-user rate limits shared by every replica: a GCRA (a burst, then one call per interval)
//! kept in Redis by one Lua script, for read paths that touch a store (issuing proof-of-work
//! challenges, validating coupons), so one client cannot turn cheap calls into load on the
//! cell. Keys are `<prefix>rl:<scope>:<user>`, expiring with the budget.

use std::{sync::Arc, time::Duration};

use redis::Script;

use crate::{ErrorCode, KitError, ServiceError, datastores::redis::RedisHandle};

/// A burst of `burst` calls, then one every `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub burst: u32,
    pub interval: Duration,
}

/// A call over its user's budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("too many {scope} calls from this user; retry in {} ms", retry_after.as_millis())]
pub struct RateLimited {
    pub scope: &'static str,
    pub retry_after: Duration,
}

impl ServiceError for RateLimited {
    fn code(&self) -> ErrorCode {
        ErrorCode::ResourceExhausted
    }

    fn reason(&self) -> Option<&'static str> {
        Some("RATE_LIMITED")
    }
}

/// GCRA: the theoretical arrival time in one key. ARGV: now_ms, interval_ms, burst. Returns 0
/// when allowed, else the milliseconds until it would be.
const GCRA: &str = r"
local now, interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local allow_at = tat + interval - burst * interval
if allow_at > now then return allow_at - now end
redis.call('SET', KEYS[1], tat + interval, 'PX', tat + interval - now + 1000)
return 0
";

/// The limiter of one scope (`flashsale:challenge`); cheap to clone.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    redis: RedisHandle,
    scope: &'static str,
    script: Arc<Script>,
}

impl RateLimiter {
    pub fn new(redis: RedisHandle, scope: &'static str) -> Self {
        Self {
            redis,
            scope,
            script: Arc::new(Script::new(GCRA)),
        }
    }

    /// The key of `user`'s budget in this scope.
    fn key(&self, user: &str) -> String {
        self.redis.key(&format!(
            "rl:{}:{}",
            self.scope,
            crate::idempotency::composite(&[user])
        ))
    }

    /// Deletes `user`'s budget, whose key names them (an erasure); `true` if there was one.
    pub async fn forget(&self, user: &str) -> Result<bool, KitError> {
        let mut conn = self.redis.conn.clone();
        let deleted: u64 = redis::AsyncCommands::del(&mut conn, self.key(user)).await?;
        Ok(deleted > 0)
    }

    /// Takes one call of `user`'s budget (`Ok(Ok(()))`), or says when to retry (`Ok(Err)`);
    /// `Err` when Redis could not be asked.
    pub async fn check(
        &self,
        user: &str,
        limit: RateLimit,
    ) -> Result<Result<(), RateLimited>, KitError> {
        self.check_at(user, limit, std::time::SystemTime::now())
            .await
    }

    /// [`Self::check`] at `now` — a service's own clock, so a test that holds the clock still
    /// sees a burst refused however slowly the machine runs it.
    pub async fn check_at(
        &self,
        user: &str,
        limit: RateLimit,
        now: std::time::SystemTime,
    ) -> Result<Result<(), RateLimited>, KitError> {
        let key = self.key(user);
        let now = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let mut conn = self.redis.conn.clone();
        let wait: u64 = self
            .script
            .key(key)
            .arg(u64::try_from(now).unwrap_or(u64::MAX))
            .arg(u64::try_from(limit.interval.as_millis()).unwrap_or(u64::MAX))
            .arg(limit.burst)
            .invoke_async(&mut conn)
            .await?;
        Ok(if wait == 0 {
            Ok(())
        } else {
            Err(RateLimited {
                scope: self.scope,
                retry_after: Duration::from_millis(wait),
            })
        })
    }
}
