//! Velocity in Redis: one sorted set per user, card, device and IP, scored by time in
//! milliseconds, a member per transaction (`<amount>:<transaction id>`, added once, so a
//! retried check counts once). One script adds the transaction, drops what is older than 7
//! days, and tallies the three windows of every key in one round trip.

use chrono::{DateTime, Utc};
use redis::Script;
use titan_kit::datastores::redis::RedisHandle;

use crate::{
    app::{FraudError, VelocityStore},
    domain::{
        Dimension, Velocity, Window,
        signals::{DimensionTally, Tally},
    },
};

/// ARGV: now (ms), member, the start of the hour, day and week windows (ms). Returns per key
/// [count, amount] for each window, hour first.
const TALLY: &str = r"
local now, member = tonumber(ARGV[1]), ARGV[2]
local starts = {tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])}
local ttl = tonumber(ARGV[6])
local out = {}
for _, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. starts[3])
  redis.call('ZADD', key, 'NX', now, member)
  redis.call('PEXPIRE', key, ttl)
  local entries = redis.call('ZRANGEBYSCORE', key, '(' .. starts[3], '+inf', 'WITHSCORES')
  local counts, sums = {0, 0, 0}, {0, 0, 0}
  for i = 1, #entries, 2 do
    local at = tonumber(entries[i + 1])
    local amount = tonumber(string.match(entries[i], '^(%d+):')) or 0
    for w = 1, 3 do
      if at > starts[w] then
        counts[w] = counts[w] + 1
        sums[w] = sums[w] + amount
      end
    end
  end
  for w = 1, 3 do
    table.insert(out, counts[w])
    table.insert(out, sums[w])
  end
end
return out
";

#[derive(Clone)]
pub struct RedisVelocity {
    redis: RedisHandle,
    script: Script,
}

impl std::fmt::Debug for RedisVelocity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisVelocity").finish_non_exhaustive()
    }
}

impl RedisVelocity {
    pub fn new(redis: RedisHandle) -> Self {
        Self {
            redis,
            script: Script::new(TALLY),
        }
    }

    fn key(&self, d: Dimension, id: &str) -> String {
        self.redis.key(&format!("fraud:v:{}:{id}", d.as_str()))
    }
}

impl VelocityStore for RedisVelocity {
    async fn record(
        &self,
        keys: &[(Dimension, &str)],
        transaction_id: &str,
        amount: i64,
        at: DateTime<Utc>,
    ) -> Result<Velocity, FraudError> {
        let now = at.timestamp_millis();
        let mut inv = self.script.prepare_invoke();
        for (d, id) in keys {
            inv.key(self.key(*d, id));
        }
        inv.arg(now)
            .arg(format!("{amount}:{transaction_id}"))
            .arg(now - Window::Hour.millis())
            .arg(now - Window::Day.millis())
            .arg(now - Window::Week.millis())
            // An hour past the week, so a key outlives its newest entry's window.
            .arg(Window::Week.millis() + Window::Hour.millis());
        let mut conn = self.redis.conn.clone();
        let flat: Vec<i64> = inv.invoke_async(&mut conn).await?;
        if flat.len() != keys.len() * 6 {
            return Err(FraudError::Kit(titan_kit::KitError::Other(format!(
                "velocity script answered {} numbers for {} keys",
                flat.len(),
                keys.len()
            ))));
        }
        let tallies = keys
            .iter()
            .zip(flat.chunks(6))
            .map(|((d, _), c)| DimensionTally {
                dimension: *d,
                windows: [0, 1, 2].map(|w| Tally {
                    count: u64::try_from(c[2 * w]).unwrap_or(0),
                    amount: c[2 * w + 1],
                }),
            })
            .collect();
        Ok(Velocity { tallies })
    }
}
