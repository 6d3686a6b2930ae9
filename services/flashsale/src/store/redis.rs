//! Redis: the live stock of warmed sales. Every change is one Lua script over keys that share
//! the sale's hash tag (`{flashsale:<id>}`), so a sale lives in one Redis Cluster slot and each
//! step is atomic. `Script` sends EVALSHA and loads the script on NOSCRIPT (after a restart).

use std::{collections::BTreeMap, sync::Arc};

use chrono::{DateTime, Utc};
use redis::{Script, Value};
use titan_kit::{
    datastores::redis::RedisHandle,
    idempotency::{self, IdempotencyError},
    ratelimit::{RateLimit, RateLimiter},
};

use crate::{
    app::{Attempt, Healed, HoldOutcome, Reservation, Result, Sold, Stats, StockStore},
    config::Settings,
    domain::{FlashSale, Refusal, ReservationId, SaleId, sale::StockLevel},
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
    reserve: Script,
    confirm: Script,
    cancel: Script,
    sweep: Script,
    warm: Script,
    restore: Script,
}

#[derive(Debug, Clone)]
pub struct RedisStock {
    redis: RedisHandle,
    scripts: Arc<Scripts>,
    /// Per-buyer budget of `GetChallenge`, which writes to Redis on every call.
    challenges: RateLimiter,
    /// Per-buyer budget of opening `WatchSale` streams, which read both stores.
    watches: RateLimiter,
}

/// The seven keys every stock script takes, in its KEYS order.
const NAMES: [&str; 7] = ["meta", "stock", "buyers", "res", "expiry", "req", "stats"];

impl RedisStock {
    pub fn new(redis: RedisHandle) -> Self {
        let scripts = Scripts {
            reserve: script!("lua/reserve.lua"),
            confirm: script!("lua/confirm.lua"),
            cancel: script!("lua/cancel.lua"),
            sweep: script!("lua/sweep.lua"),
            warm: script!("lua/warm.lua"),
            restore: script!("lua/restore.lua"),
        };
        Self {
            challenges: RateLimiter::new(redis.clone(), "flashsale:challenge"),
            watches: RateLimiter::new(redis.clone(), "flashsale:watch"),
            redis,
            scripts: Arc::new(scripts),
        }
    }

    fn key(&self, sale: SaleId, name: &str) -> String {
        self.redis.key(&key_name(sale, name))
    }

    fn invocation<'a>(&self, script: &'a Script, sale: SaleId) -> redis::ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        for name in NAMES {
            inv.key(self.key(sale, name));
        }
        inv
    }

    /// The key a challenge is stored under; in the sale's slot so the reserve script can take it.
    fn challenge_key(&self, sale: SaleId, challenge: &str) -> String {
        self.redis.key(&challenge_key_name(sale, challenge))
    }
}

/// Key `name` of sale `sale`, before the cell prefix. Every key of a sale starts with the
/// sale's hash tag, so the keys of each script call hash to one Redis Cluster slot.
pub fn key_name(sale: SaleId, name: &str) -> String {
    format!("{{flashsale:{sale}}}:{name}")
}

/// The buyer's reserve rate-limit key of a sale (reserve's KEYS[8]), before the cell prefix.
fn rate_limit_key_name(sale: SaleId, user: &str) -> String {
    key_name(sale, &format!("rl:{user}"))
}

/// A presented challenge's key (reserve's KEYS[9]), before the cell prefix.
fn challenge_key_name(sale: SaleId, challenge: &str) -> String {
    key_name(sale, &format!("ch:{challenge}"))
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn text(v: &Value) -> String {
    redis::from_redis_value_ref::<String>(v).unwrap_or_default()
}

fn num<T: std::str::FromStr + Default>(v: &Value) -> T {
    text(v).parse().unwrap_or_default()
}

fn bad_reply(what: &str, reply: &[Value]) -> crate::app::FlashSaleError {
    titan_kit::KitError::Other(format!("unexpected {what} script reply: {reply:?}")).into()
}

/// Appends the (reservation_id, user, quantity) triples the warm and restore scripts take.
fn with_orders<'a>(
    mut inv: redis::ScriptInvocation<'a>,
    orders: &[Sold],
) -> redis::ScriptInvocation<'a> {
    for o in orders {
        inv.arg(&o.reservation).arg(&o.user).arg(o.quantity);
    }
    inv
}

/// `{available, oversold}` as the warm and restore scripts answer.
fn healed(reply: &[i64]) -> Healed {
    let at = |i: usize| u32::try_from(reply.get(i).copied().unwrap_or(0)).unwrap_or(u32::MAX);
    Healed {
        available: at(0),
        oversold: at(1),
    }
}

/// "reservation_id|quantity|expires_ms"
fn parse_answer(answer: &str, remaining: u32) -> Option<Reservation> {
    let mut parts = answer.split('|');
    let id = ReservationId::parse(parts.next()?).ok()?;
    let quantity = parts.next()?.parse().ok()?;
    let expires_at = DateTime::from_timestamp_millis(parts.next()?.parse().ok()?)?;
    Some(Reservation {
        id,
        quantity,
        expires_at,
        remaining,
    })
}

impl StockStore for RedisStock {
    async fn warm(
        &self,
        sale: &FlashSale,
        ttl: std::time::Duration,
        orders: &[Sold],
    ) -> Result<Healed> {
        let s = &sale.spec;
        // Keep the keys a week past the end: reservations and stats stay readable for reconcile.
        let expire_at = s.ends_at.timestamp() + 7 * 86_400;
        let mut conn = self.redis.conn.clone();
        let mut inv = self.invocation(&self.scripts.warm, sale.id);
        inv.arg(ms(s.starts_at))
            .arg(ms(s.ends_at))
            .arg(s.max_per_user)
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
            .arg(sale.state.as_str())
            .arg(s.pow_difficulty)
            .arg(s.total_quantity)
            .arg(expire_at);
        let reply: Vec<i64> = with_orders(inv, orders).invoke_async(&mut conn).await?;
        Ok(healed(&reply))
    }

    async fn restore(&self, sale: SaleId, orders: &[Sold]) -> Result<Healed> {
        if orders.is_empty() {
            return Ok(Healed::default());
        }
        let mut conn = self.redis.conn.clone();
        let inv = self.invocation(&self.scripts.restore, sale);
        let reply: Vec<i64> = with_orders(inv, orders).invoke_async(&mut conn).await?;
        // The script answers {repaired, oversold}; only the oversell matters to callers.
        Ok(Healed {
            available: 0,
            oversold: healed(&reply).oversold,
        })
    }

    async fn due(&self, sale: SaleId, now: DateTime<Utc>, limit: usize) -> Result<Vec<String>> {
        let mut conn = self.redis.conn.clone();
        Ok(redis::cmd("ZRANGEBYSCORE")
            .arg(self.key(sale, "expiry"))
            .arg("-inf")
            .arg(ms(now))
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut conn)
            .await?)
    }

    async fn reserve(
        &self,
        a: &Attempt<'_>,
        settings: &Settings,
    ) -> Result<std::result::Result<Reservation, Refusal>> {
        let mut conn = self.redis.conn.clone();
        let (challenge, strength) = a.challenge.unwrap_or(("", 0));
        let challenge_key = self.challenge_key(a.sale, challenge);
        let reply: Vec<Value> = self
            .invocation(&self.scripts.reserve, a.sale)
            .key(self.redis.key(&rate_limit_key_name(a.sale, a.user)))
            .key(challenge_key)
            .arg(a.user)
            .arg(a.quantity.get())
            .arg(idempotency::composite(&[a.user, a.request_id]))
            .arg(ms(a.now))
            .arg(a.reservation.to_string())
            .arg(settings.rate_limit_burst)
            .arg(settings.rate_limit_interval_ms)
            .arg(strength)
            .invoke_async(&mut conn)
            .await?;
        let tag = reply.first().map(text).unwrap_or_default();
        let detail = reply.get(2).map(text).unwrap_or_default();
        match tag.as_str() {
            "OK" | "REPLAY" => {
                let answer = reply.get(1).map(text).unwrap_or_default();
                let remaining = detail.parse().unwrap_or(0);
                parse_answer(&answer, remaining)
                    .map(Ok)
                    .ok_or_else(|| bad_reply("reserve", &reply))
            }
            "REUSED" => Err(IdempotencyError::Reused(a.request_id.to_owned()).into()),
            "REFUSED" => {
                let reason = reply.get(1).map(text).unwrap_or_default();
                let n: u64 = detail.parse().unwrap_or(0);
                let units = u32::try_from(n).unwrap_or(u32::MAX);
                let refusal = match reason.as_str() {
                    "NOT_WARM" => Refusal::NotWarmedUp,
                    "RATE_LIMITED" => Refusal::RateLimited { retry_after_ms: n },
                    "ENDED" => Refusal::Ended,
                    "NOT_STARTED" => Refusal::NotStarted {
                        starts_at: DateTime::from_timestamp_millis(i64::try_from(n).unwrap_or(0))
                            .unwrap_or_default(),
                    },
                    "BAD_PROOF" => Refusal::BadProof,
                    "LIMIT_REACHED" => {
                        let (held, max) = detail.split_once(':').unwrap_or(("0", "0"));
                        Refusal::LimitReached {
                            held: held.parse().unwrap_or(0),
                            max: max.parse().unwrap_or(0),
                        }
                    }
                    "SOLD_OUT" => Refusal::SoldOut {
                        held_by_reservations: units,
                    },
                    "NOT_ENOUGH_STOCK" => Refusal::NotEnoughStock { remaining: units },
                    _ => return Err(bad_reply("reserve", &reply)),
                };
                Ok(Err(refusal))
            }
            _ => Err(bad_reply("reserve", &reply)),
        }
    }

    async fn confirm(
        &self,
        id: ReservationId,
        user: &str,
        now: DateTime<Utc>,
    ) -> Result<HoldOutcome> {
        let mut conn = self.redis.conn.clone();
        let reply: Vec<Value> = self
            .invocation(&self.scripts.confirm, id.sale)
            .arg(id.to_string())
            .arg(user)
            .arg(ms(now))
            .invoke_async(&mut conn)
            .await?;
        hold_outcome(&reply)
    }

    async fn cancel(&self, id: ReservationId, user: &str) -> Result<HoldOutcome> {
        let mut conn = self.redis.conn.clone();
        let reply: Vec<Value> = self
            .invocation(&self.scripts.cancel, id.sale)
            .arg(id.to_string())
            .arg(user)
            .invoke_async(&mut conn)
            .await?;
        hold_outcome(&reply)
    }

    async fn sweep(
        &self,
        sale: SaleId,
        now: DateTime<Utc>,
        reservations: &[String],
    ) -> Result<u32> {
        let mut conn = self.redis.conn.clone();
        let mut inv = self.invocation(&self.scripts.sweep, sale);
        inv.arg(ms(now));
        for id in reservations {
            inv.arg(id);
        }
        Ok(inv.invoke_async(&mut conn).await?)
    }

    async fn levels(&self, sales: &[SaleId]) -> Result<Vec<Option<StockLevel>>> {
        if sales.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for sale in sales {
            pipe.get(self.key(*sale, "stock"))
                .cmd("HMGET")
                .arg(self.key(*sale, "stats"))
                .arg("units_reserved")
                .arg("units_sold");
        }
        let mut conn = self.redis.conn.clone();
        let replies: Vec<Value> = pipe.query_async(&mut conn).await?;
        Ok(replies
            .chunks(2)
            .map(|pair| {
                if matches!(pair[0], Value::Nil) {
                    return None;
                }
                let counts: Vec<Option<u32>> =
                    redis::from_redis_value_ref(&pair[1]).unwrap_or_default();
                Some(StockLevel {
                    available: num(&pair[0]),
                    reserved: counts.first().copied().flatten().unwrap_or(0),
                    sold: counts.get(1).copied().flatten().unwrap_or(0),
                })
            })
            .collect())
    }

    async fn stats(&self, sale: SaleId) -> Result<Stats> {
        let mut conn = self.redis.conn.clone();
        let (stock, all): (Option<u32>, BTreeMap<String, u64>) = redis::pipe()
            .get(self.key(sale, "stock"))
            .hgetall(self.key(sale, "stats"))
            .query_async(&mut conn)
            .await?;
        let get = |k: &str| all.get(k).copied().unwrap_or(0);
        Ok(Stats {
            views: get("views"),
            attempts: get("attempts"),
            reservations: get("reservations"),
            confirmations: get("confirmations"),
            expiries: get("expiries"),
            cancellations: get("cancellations"),
            refusals: all
                .iter()
                .filter_map(|(k, v)| k.strip_prefix("refused:").map(|r| (r.to_owned(), *v)))
                .collect(),
            level: StockLevel {
                available: stock.unwrap_or(0),
                reserved: u32::try_from(get("units_reserved")).unwrap_or(u32::MAX),
                sold: u32::try_from(get("units_sold")).unwrap_or(u32::MAX),
            },
        })
    }

    async fn count_view(&self, sale: SaleId) -> Result<()> {
        let mut conn = self.redis.conn.clone();
        let _: i64 = redis::cmd("HINCRBY")
            .arg(self.key(sale, "stats"))
            .arg("views")
            .arg(1)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn issue_challenge(
        &self,
        sale: SaleId,
        user: &str,
        challenge: &str,
        ttl: std::time::Duration,
        limit: RateLimit,
    ) -> Result<std::result::Result<(), Refusal>> {
        if let Err(refusal) = limited(&self.challenges, user, limit).await? {
            return Ok(Err(refusal));
        }
        let mut conn = self.redis.conn.clone();
        let () = redis::cmd("SET")
            .arg(self.challenge_key(sale, challenge))
            .arg(user)
            .arg("PX")
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
            .query_async(&mut conn)
            .await?;
        Ok(Ok(()))
    }

    async fn admit_watch(
        &self,
        user: &str,
        limit: RateLimit,
    ) -> Result<std::result::Result<(), Refusal>> {
        limited(&self.watches, user, limit).await
    }
}

/// One call of `user`'s budget in `limiter`, or the `RATE_LIMITED` refusal.
async fn limited(
    limiter: &RateLimiter,
    user: &str,
    limit: RateLimit,
) -> Result<std::result::Result<(), Refusal>> {
    Ok(limiter
        .check(user, limit)
        .await?
        .map_err(|limited| Refusal::RateLimited {
            retry_after_ms: u64::try_from(limited.retry_after.as_millis()).unwrap_or(u64::MAX),
        }))
}

fn hold_outcome(reply: &[Value]) -> Result<HoldOutcome> {
    Ok(match reply.first().map(text).as_deref() {
        Some("OK") => HoldOutcome::Done {
            quantity: reply.get(1).map(num).unwrap_or(0),
        },
        Some("NOT_FOUND") => HoldOutcome::NotFound,
        Some("NOT_OWNER") => HoldOutcome::NotOwner,
        Some("EXPIRED") => HoldOutcome::Expired,
        Some("CANCELLED") => HoldOutcome::Cancelled,
        Some("CONFIRMED") => HoldOutcome::Confirmed,
        _ => return Err(bad_reply("hold", reply)),
    })
}

#[cfg(test)]
mod tests {
    use titan_kit::datastores::redis::same_slot;

    use super::*;

    /// Each script call's keys (the seven, and reserve's rate limit and challenge) hash to one
    /// cluster slot, whatever the cell prefix, buyer or challenge; braces in a buyer id or a
    /// challenge do not matter, since Redis hashes the first `{...}`: the sale's tag.
    #[test]
    fn every_script_call_names_keys_of_one_slot() {
        for n in 0..200_u128 {
            let sale = SaleId::parse(&uuid::Uuid::from_u128(n * 7_919 + 1).to_string())
                .expect("a sale id");
            let user = format!("buyer-{{{n}}}");
            let mut keys: Vec<String> = NAMES.iter().map(|name| key_name(sale, name)).collect();
            keys.push(rate_limit_key_name(sale, &user));
            keys.push(challenge_key_name(sale, &format!("}}{n}{{")));
            for prefix in ["", "titan:cell-a:", "t_0f3a:"] {
                assert!(
                    same_slot(keys.iter().map(|k| format!("{prefix}{k}"))),
                    "sale {sale}, prefix {prefix:?}: {keys:?}"
                );
            }
        }
    }
}
