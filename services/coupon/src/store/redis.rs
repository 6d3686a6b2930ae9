//! Redis: the fast lookup and the live counters of coupons. Every change is one Lua script over
//! the keys of one coupon, which share its hash tag (`{coupon:<CODE>}`) and so one Redis Cluster
//! slot. `Script` sends EVALSHA and loads the script on NOSCRIPT (after a restart).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use redis::{Script, Value};
use titan_kit::{
    KitError,
    datastores::redis::RedisHandle,
    idempotency,
    ratelimit::{RateLimit, RateLimited, RateLimiter},
};

use crate::{
    app::{Cached, Consume, CouponCache, Hold, IN_FLIGHT_GRACE, LedgerEntry, Result, Snapshot},
    domain::{Coupon, CouponCode, UsageSnapshot},
};

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("lua/common.lua"),
            "\n",
            include_str!($file)
        ))
    };
}

#[derive(Debug)]
struct Scripts {
    snapshot: Script,
    consume: Script,
    release: Script,
    sync: Script,
    forget: Script,
}

#[derive(Debug, Clone)]
pub struct RedisCoupons {
    redis: RedisHandle,
    scripts: Arc<Scripts>,
    ttl_seconds: u32,
    validations: RateLimiter,
}

/// The keys every coupon script takes, in its KEYS order.
const NAMES: [&str; 5] = ["meta", "uses", "users", "orders", "missing"];
/// The scope of the shoppers' validation budgets (kit's `RateLimiter`).
pub const VALIDATE_SCOPE: &str = "coupon:validate";

/// The key kit's `RateLimiter` keeps `user`'s validation budget under, before the cell
/// prefix. Kit does not expose it; an erasure needs it, so this follows kit's layout
/// (`rl:<scope>:<composite(user)>`), and the privacy test checks that no key of the user is left.
fn budget_key_name(user: &str) -> String {
    format!("rl:{VALIDATE_SCOPE}:{}", idempotency::composite(&[user]))
}

/// How long a code found in no coupon is remembered as missing, at most.
const MISSING_SECONDS: u32 = 60;

fn text(v: &Value) -> String {
    redis::from_redis_value_ref::<String>(v).unwrap_or_default()
}

fn corrupt(what: impl std::fmt::Display) -> crate::app::CouponError {
    KitError::Other(format!("unexpected coupon data in redis: {what}")).into()
}

impl RedisCoupons {
    /// `ttl_seconds`: how long a coupon stays loaded after its last change.
    pub fn new(redis: RedisHandle, ttl_seconds: u32) -> Self {
        Self {
            validations: RateLimiter::new(redis.clone(), VALIDATE_SCOPE),
            redis,
            scripts: Arc::new(Scripts {
                snapshot: script!("lua/snapshot.lua"),
                consume: script!("lua/consume.lua"),
                release: script!("lua/release.lua"),
                sync: script!("lua/sync.lua"),
                forget: script!("lua/forget.lua"),
            }),
            ttl_seconds,
        }
    }

    fn key(&self, code: &CouponCode, name: &str) -> String {
        self.redis.key(&key_name(code, name))
    }

    fn invocation<'a>(&self, script: &'a Script, code: &CouponCode) -> redis::ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        for name in NAMES {
            inv.key(self.key(code, name));
        }
        inv
    }
}

/// Key `name` of coupon `code`, before the cell prefix. Every key of a coupon starts with the
/// coupon's hash tag, so the keys of each script call hash to one Redis Cluster slot.
fn key_name(code: &CouponCode, name: &str) -> String {
    format!("{{coupon:{code}}}:{name}")
}

/// What forgetting one shopper did on one coupon's keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Forgotten {
    /// Ledger entries of the shopper's orders, now under the pseudonym.
    pub entries: u64,
    /// The shopper's use count, now the pseudonym's (0 or 1).
    pub counts: u64,
}

/// A person's state in Redis (`titan_kit::privacy`), found by the key layout, never by KEYS.
impl RedisCoupons {
    /// The coupons whose loaded keys count uses of `user`. A use taken and given back before it
    /// was recorded (the record refused it) leaves the shopper's count at 0 in a coupon the
    /// record has nothing of theirs for, so the record alone cannot name them all: the coupons'
    /// count hashes are found by a SCAN bounded by the cell's prefix and the key layout (kit's
    /// `RedisHandle::scan_keys`, on every master of a cluster), which walks the keyspace a page
    /// at a time and never blocks the server as KEYS would; one HEXISTS per coupon found,
    /// pipelined, says which count the user.
    pub async fn codes_counting(&self, user: &str) -> Result<Vec<CouponCode>> {
        let head = self.redis.key("{coupon:");
        let tail = "}:users";
        let keys = self.redis.scan_keys(&format!("{{coupon:*{tail}")).await?;
        let mut codes = Vec::new();
        let mut conn = self.redis.conn.clone();
        for chunk in keys.chunks(500) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.hexists(key, user);
            }
            let counted: Vec<bool> = pipe.query_async(&mut conn).await?;
            for (key, counted) in chunk.iter().zip(counted) {
                if !counted {
                    continue;
                }
                let code = key
                    .strip_prefix(&head)
                    .and_then(|rest| rest.strip_suffix(tail))
                    .ok_or_else(|| corrupt(format!("key {key:?}")))?;
                codes.push(CouponCode::parse(code, u32::MAX).map_err(corrupt)?);
            }
        }
        Ok(codes)
    }

    /// Puts `pseudonym` in place of `user` in `code`'s keys (`lua/forget.lua`): the ledger
    /// entries of `orders` that are the user's, and the user's use count.
    pub async fn forget_shopper(
        &self,
        code: &CouponCode,
        user: &str,
        pseudonym: &str,
        orders: &[String],
    ) -> Result<Forgotten> {
        let mut inv = self.invocation(&self.scripts.forget, code);
        inv.arg(user).arg(pseudonym);
        for order in orders {
            inv.arg(order);
        }
        let mut conn = self.redis.conn.clone();
        let reply: Vec<u64> = inv.invoke_async(&mut conn).await?;
        Ok(Forgotten {
            entries: reply.first().copied().unwrap_or(0),
            counts: reply.get(1).copied().unwrap_or(0),
        })
    }

    /// Whether `user`'s validation budget is in use.
    pub async fn has_budget(&self, user: &str) -> Result<bool> {
        let mut conn = self.redis.conn.clone();
        Ok(redis::cmd("EXISTS")
            .arg(self.redis.key(&budget_key_name(user)))
            .query_async(&mut conn)
            .await?)
    }

    /// Deletes `user`'s validation budget; how many keys went (0 or 1).
    pub async fn forget_budget(&self, user: &str) -> Result<u64> {
        let mut conn = self.redis.conn.clone();
        Ok(redis::cmd("DEL")
            .arg(self.redis.key(&budget_key_name(user)))
            .query_async(&mut conn)
            .await?)
    }
}

impl CouponCache for RedisCoupons {
    async fn throttle(
        &self,
        user: &str,
        limit: RateLimit,
    ) -> Result<std::result::Result<(), RateLimited>> {
        Ok(self.validations.check(user, limit).await?)
    }

    async fn snapshot(&self, code: &CouponCode, user: &str, order: Option<&str>) -> Result<Cached> {
        let mut conn = self.redis.conn.clone();
        let reply: Vec<Value> = self
            .invocation(&self.scripts.snapshot, code)
            .arg(user)
            .arg(order.unwrap_or(""))
            .invoke_async(&mut conn)
            .await?;
        let [coupon, uses, user_uses, hold] = reply.as_slice() else {
            return match reply.as_slice() {
                [] => Ok(Cached::Cold),
                [missing] if text(missing) == "MISSING" => Ok(Cached::Missing),
                _ => Err(corrupt(format!("{reply:?}"))),
            };
        };
        let coupon: Coupon = serde_json::from_str(&text(coupon)).map_err(corrupt)?;
        let count = |v: &Value| {
            text(v)
                .parse::<i64>()
                .map(|n| u32::try_from(n.max(0)).unwrap_or(u32::MAX))
        };
        Ok(Cached::Hit(Snapshot {
            coupon,
            usage: UsageSnapshot {
                uses: count(uses).map_err(corrupt)?,
                user_uses: count(user_uses).map_err(corrupt)?,
            },
            held: match text(hold).as_str() {
                "" => None,
                "A" => Some(Hold::Applied),
                "R" => Some(Hold::Reversed),
                _ => Some(Hold::OtherUser),
            },
        }))
    }

    async fn mark_missing(&self, code: &CouponCode) -> Result<()> {
        let mut conn = self.redis.conn.clone();
        let () = redis::cmd("SET")
            .arg(self.key(code, "missing"))
            .arg(1)
            .arg("EX")
            .arg(self.ttl_seconds.min(MISSING_SECONDS))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn forget_missing(&self, codes: &[CouponCode]) -> Result<()> {
        let mut conn = self.redis.conn.clone();
        for chunk in codes.chunks(500) {
            let mut pipe = redis::pipe();
            for code in chunk {
                pipe.del(self.key(code, "missing")).ignore();
            }
            let () = pipe.query_async(&mut conn).await?;
        }
        Ok(())
    }

    async fn consume(
        &self,
        code: &CouponCode,
        user: &str,
        order: &str,
        now: DateTime<Utc>,
    ) -> Result<Consume> {
        let mut conn = self.redis.conn.clone();
        let answer: String = self
            .invocation(&self.scripts.consume, code)
            .arg(user)
            .arg(order)
            .arg(now.timestamp_millis())
            .arg(self.ttl_seconds)
            .invoke_async(&mut conn)
            .await?;
        Ok(match answer.as_str() {
            "TAKEN" => Consume::Taken,
            "HELD" => Consume::AlreadyHeld,
            "NOT_WARM" => Consume::NotWarm,
            "PAUSED" => Consume::Refused("PAUSED"),
            "NOT_STARTED" => Consume::Refused("NOT_STARTED"),
            "EXPIRED" => Consume::Refused("EXPIRED"),
            "DEPLETED" => Consume::Refused("DEPLETED"),
            "USER_LIMIT" => Consume::Refused("USER_LIMIT"),
            "REVERSED" => Consume::Refused("REVERSED"),
            "OTHER_USER" => Consume::Refused("OTHER_USER"),
            other => return Err(corrupt(format!("consume answered {other:?}"))),
        })
    }

    async fn release(&self, code: &CouponCode, order: &str, forget: bool) -> Result<bool> {
        let mut conn = self.redis.conn.clone();
        let n: i64 = self
            .invocation(&self.scripts.release, code)
            .arg(order)
            .arg(if forget { "1" } else { "0" })
            .arg(self.ttl_seconds)
            .invoke_async(&mut conn)
            .await?;
        Ok(n == 1)
    }

    async fn sync(
        &self,
        coupon: &Coupon,
        ledger: &[LedgerEntry],
        now: DateTime<Utc>,
    ) -> Result<u32> {
        let s = &coupon.spec;
        let json = serde_json::to_string(coupon).map_err(|e| KitError::Other(e.to_string()))?;
        let mut inv = self.invocation(&self.scripts.sync, &s.code);
        inv.arg(now.timestamp_millis())
            .arg(u64::try_from(IN_FLIGHT_GRACE.as_millis()).unwrap_or(u64::MAX))
            .arg(self.ttl_seconds)
            .arg(json)
            .arg(s.total_limit)
            .arg(s.per_user_limit)
            .arg(s.valid_from.timestamp_millis())
            .arg(s.valid_until.timestamp_millis())
            .arg(if coupon.paused { "1" } else { "0" });
        for e in ledger {
            inv.arg(&e.order_id)
                .arg(&e.user_id)
                .arg(if e.applied { "A" } else { "R" });
        }
        let mut conn = self.redis.conn.clone();
        let uses: i64 = inv.invoke_async(&mut conn).await?;
        Ok(u32::try_from(uses).unwrap_or(0))
    }

    async fn uses(&self, codes: &[CouponCode]) -> Result<Vec<Option<u32>>> {
        if codes.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for code in codes {
            pipe.get(self.key(code, "uses"));
        }
        let mut conn = self.redis.conn.clone();
        let replies: Vec<Option<i64>> = pipe.query_async(&mut conn).await?;
        Ok(replies
            .into_iter()
            .map(|n| n.map(|n| u32::try_from(n.max(0)).unwrap_or(u32::MAX)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use titan_kit::datastores::redis::same_slot;

    use super::*;

    /// Each script call's keys hash to one cluster slot, whatever the cell prefix or code.
    #[test]
    fn every_script_call_names_keys_of_one_slot() {
        for n in 0..200 {
            let code = CouponCode::parse(&format!("SAVE{n}-X_{}", n * 7), 64).expect("a code");
            let keys: Vec<String> = NAMES.iter().map(|name| key_name(&code, name)).collect();
            for prefix in ["", "titan:cell-a:", "t_0f3a:"] {
                assert!(
                    same_slot(keys.iter().map(|k| format!("{prefix}{k}"))),
                    "code {code}, prefix {prefix:?}: {keys:?}"
                );
            }
        }
    }
}
