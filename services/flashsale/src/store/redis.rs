//! Redis: the live stock of warmed sales. Every change is one Lua script over keys that share
//! the sale's hash tag (`{flashsale:<id>}`), so a sale lives in one Redis Cluster slot and each
//! step is atomic. `Script` sends EVALSHA and loads the script on NOSCRIPT (after a restart).

use std::{collections::BTreeMap, sync::Arc};

use chrono::{DateTime, Utc};
use redis::{Script, Value};
use serde::Serialize;
use titan_kit::{
    datastores::redis::{RedisHandle, glob_literal},
    idempotency::{self, IdempotencyError},
    ratelimit::{RateLimit, RateLimiter},
};

use crate::{
    app::{Attempt, Healed, HoldOutcome, Reservation, Result, Sold, Stats, StockStore},
    config::Settings,
    domain::{FlashSale, Refusal, ReservationId, ReservationStatus, SaleId, sale::StockLevel},
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
    forget: Script,
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
            forget: script!("lua/forget.lua"),
        };
        Self {
            challenges: RateLimiter::new(redis.clone(), CHALLENGE_SCOPE),
            watches: RateLimiter::new(redis.clone(), WATCH_SCOPE),
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

/// The scope of the buyers' budget of challenges (kit's `RateLimiter`).
const CHALLENGE_SCOPE: &str = "flashsale:challenge";
/// The scope of the buyers' budget of `WatchSale` openings.
const WATCH_SCOPE: &str = "flashsale:watch";
/// The per-buyer budgets kept outside any sale.
const BUDGET_SCOPES: [&str; 2] = [CHALLENGE_SCOPE, WATCH_SCOPE];

/// The key kit's `RateLimiter` of `scope` keeps `user`'s budget under, before the cell prefix.
/// Kit does not expose it; an erasure needs it, so this follows kit's layout
/// (`rl:<scope>:<composite(user)>`), and the privacy test checks that no key of the user is left.
fn budget_key_name(scope: &str, user: &str) -> String {
    format!("rl:{scope}:{}", idempotency::composite(&[user]))
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

/// One reservation of a buyer, as the sale's keys hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldReservation {
    pub id: String,
    /// The request id of the attempt that made it; none for one rebuilt from a recorded order.
    pub request_id: Option<String>,
    pub quantity: u32,
    /// None for one rebuilt from a recorded order (it never expires).
    pub expires_at: Option<DateTime<Utc>>,
    pub status: &'static str,
}

/// What one sale's keys hold of one buyer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuyerKeys {
    pub reservations: Vec<HeldReservation>,
    /// Units the sale counts the buyer as holding (reserved or bought), when it counts any.
    pub units_held: Option<i64>,
    /// Whether the buyer's attempt budget of the sale is in use.
    pub budget: bool,
    /// The replay fields of the buyer's attempts, which name the buyer.
    replays: Vec<String>,
}

/// What forgetting one buyer did on one sale.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Forgotten {
    /// Reservations deleted: held ones (given back to the sale first), cancelled, expired.
    pub reservations: u64,
    /// Paid reservations kept under the pseudonym.
    pub paid: u64,
    pub replays: u64,
    /// Per-buyer unit counts deleted (one per sale).
    pub counts: u64,
    pub budgets: u64,
}

/// A person's state in Redis (`titan_kit::privacy`): found by the key layout, never by KEYS.
/// Per-sale keys are named from the sale ids PostgreSQL lists and the buyer's replay fields
/// found with HSCAN in the sale's replay hash; only challenges, whose keys name a random
/// challenge and hold the buyer in their value, need a SCAN of the cell's prefix.
impl RedisStock {
    /// Those of `sales` whose keys may hold something of `user`: any with a reservation or
    /// replay hash, or the user's attempt budget (keys of a sale expire a week after its end,
    /// so old sales drop out here at the cost of one pipelined EXISTS each).
    pub async fn sales_holding(&self, sales: &[SaleId], user: &str) -> Result<Vec<SaleId>> {
        if sales.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for sale in sales {
            pipe.cmd("EXISTS")
                .arg(self.key(*sale, "res"))
                .arg(self.key(*sale, "req"))
                .arg(self.redis.key(&rate_limit_key_name(*sale, user)));
        }
        let mut conn = self.redis.conn.clone();
        let found: Vec<i64> = pipe.query_async(&mut conn).await?;
        Ok(sales
            .iter()
            .zip(found)
            .filter(|(_, n)| *n > 0)
            .map(|(s, _)| *s)
            .collect())
    }

    /// What `sale` holds of `user`: the reservations their attempts made (found through their
    /// replay fields) and those of `paid` (their recorded orders' reservations) that are theirs,
    /// their unit count and whether their attempt budget is in use.
    pub async fn buyer_keys(&self, sale: SaleId, user: &str, paid: &[String]) -> Result<BuyerKeys> {
        let mut conn = self.redis.conn.clone();
        // Replay fields are composite(user, request id): length-prefixed, so the fields that
        // start with composite(user) are exactly this user's.
        let mine = idempotency::composite(&[user]);
        let pattern = format!("{}*", glob_literal(&mine));
        let mut replays: Vec<(String, String)> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, flat): (u64, Vec<String>) = redis::cmd("HSCAN")
                .arg(self.key(sale, "req"))
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            for pair in flat.chunks_exact(2) {
                replays.push((pair[0].clone(), pair[1].clone()));
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let mut ids: Vec<(String, Option<String>)> = Vec::new();
        for (field, answer) in &replays {
            let request_id = field.strip_prefix(&mine).and_then(request_of);
            if let Some(id) = answer.split('|').next() {
                ids.push((id.to_owned(), request_id));
            }
        }
        for id in paid {
            if !ids.iter().any(|(known, _)| known == id) {
                ids.push((id.clone(), None));
            }
        }
        let mut pipe = redis::pipe();
        for (id, _) in &ids {
            pipe.hget(self.key(sale, "res"), id);
        }
        pipe.hget(self.key(sale, "buyers"), user)
            .exists(self.redis.key(&rate_limit_key_name(sale, user)));
        let mut values: Vec<Value> = pipe.query_async(&mut conn).await?;
        let budget: bool = values.pop().map(value).transpose()?.unwrap_or(false);
        let units_held: Option<i64> = values.pop().map(value).transpose()?.flatten();
        let mut reservations = Vec::new();
        for ((id, request_id), stored) in ids.into_iter().zip(values) {
            let Some(stored) = value::<Option<String>>(stored)? else {
                continue;
            };
            let Some((owner, quantity, expires, status)) = parse_stored(&stored) else {
                return Err(bad_value("reservation", &stored));
            };
            if owner != user {
                continue;
            }
            reservations.push(HeldReservation {
                id,
                request_id,
                quantity,
                // A reservation rebuilt from a recorded order is stored with expiry 0.
                expires_at: (expires > 0)
                    .then(|| DateTime::from_timestamp_millis(expires))
                    .flatten(),
                status: status.as_str(),
            });
        }
        Ok(BuyerKeys {
            reservations,
            units_held,
            budget,
            replays: replays.into_iter().map(|(field, _)| field).collect(),
        })
    }

    /// Forgets `user` on `sale` in one script (`lua/forget.lua`): what `keys` found is checked
    /// again there, so a reservation that changed since is still treated by its state then.
    pub async fn forget_buyer(
        &self,
        sale: SaleId,
        user: &str,
        pseudonym: &str,
        keys: &BuyerKeys,
    ) -> Result<Forgotten> {
        let mut inv = self.invocation(&self.scripts.forget, sale);
        inv.key(self.redis.key(&rate_limit_key_name(sale, user)))
            .arg(user)
            .arg(pseudonym)
            .arg(keys.replays.len());
        for field in &keys.replays {
            inv.arg(field);
        }
        for r in &keys.reservations {
            inv.arg(&r.id);
        }
        let mut conn = self.redis.conn.clone();
        let reply: Vec<u64> = inv.invoke_async(&mut conn).await?;
        let at = |i: usize| reply.get(i).copied().unwrap_or(0);
        Ok(Forgotten {
            reservations: at(0),
            paid: at(1),
            replays: at(2),
            counts: at(3),
            budgets: at(4),
        })
    }

    /// The keys of the live challenges issued to `user`, with the sale of each. A challenge's
    /// key names the challenge, not the buyer (who is its value), so they are found by a SCAN
    /// bounded by the cell's prefix and the challenge layout, on every master of a cluster:
    /// SCAN walks the keyspace a page at a time and never blocks the server as KEYS would, and
    /// challenges live at most `challengeTtlSeconds` (an hour), so there are few to read.
    pub async fn challenges_of(&self, user: &str) -> Result<Vec<(String, String)>> {
        let head = self.redis.key("{flashsale:");
        let keys = self.redis.scan_keys("{flashsale:*}:ch:*").await?;
        let mut mine = Vec::new();
        let mut conn = self.redis.conn.clone();
        for chunk in keys.chunks(500) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.get(key);
            }
            let owners: Vec<Option<String>> = pipe.query_async(&mut conn).await?;
            for (key, owner) in chunk.iter().zip(owners) {
                if owner.as_deref() == Some(user) {
                    let sale = key
                        .strip_prefix(&head)
                        .and_then(|rest| rest.split_once('}'))
                        .map(|(sale, _)| sale.to_owned())
                        .unwrap_or_default();
                    mine.push((sale, key.clone()));
                }
            }
        }
        Ok(mine)
    }

    /// Deletes these challenge keys (of [`Self::challenges_of`]); how many were still there.
    pub async fn forget_challenges(&self, keys: &[String]) -> Result<u64> {
        let mut conn = self.redis.conn.clone();
        let mut deleted = 0;
        for key in keys {
            let n: u64 = redis::cmd("DEL").arg(key).query_async(&mut conn).await?;
            deleted += n;
        }
        Ok(deleted)
    }

    /// The scopes of the per-buyer budgets outside any sale (challenges, watch streams) that
    /// `user` has in use.
    pub async fn budgets_of(&self, user: &str) -> Result<Vec<&'static str>> {
        let mut pipe = redis::pipe();
        for scope in BUDGET_SCOPES {
            pipe.exists(self.redis.key(&budget_key_name(scope, user)));
        }
        let mut conn = self.redis.conn.clone();
        let used: Vec<bool> = pipe.query_async(&mut conn).await?;
        Ok(BUDGET_SCOPES
            .into_iter()
            .zip(used)
            .filter(|(_, used)| *used)
            .map(|(scope, _)| scope)
            .collect())
    }

    /// Deletes `user`'s budgets outside any sale; how many there were.
    pub async fn forget_budgets(&self, user: &str) -> Result<u64> {
        let mut conn = self.redis.conn.clone();
        let mut deleted = 0;
        for scope in BUDGET_SCOPES {
            let n: u64 = redis::cmd("DEL")
                .arg(self.redis.key(&budget_key_name(scope, user)))
                .query_async(&mut conn)
                .await?;
            deleted += n;
        }
        Ok(deleted)
    }
}

/// The request id of a replay field after its user part: `<length>:<request id>`.
fn request_of(rest: &str) -> Option<String> {
    let (len, id) = rest.split_once(':')?;
    (len.parse::<usize>().ok()? == id.len()).then(|| id.to_owned())
}

/// A stored reservation, `user|quantity|expires_ms|status`, as the scripts' `parse` reads it.
fn parse_stored(stored: &str) -> Option<(&str, u32, i64, ReservationStatus)> {
    let mut parts = stored.rsplitn(4, '|');
    let status = parts.next()?.chars().next()?;
    let expires = parts.next()?.parse().ok()?;
    let quantity = parts.next()?.parse().ok()?;
    let user = parts.next()?;
    Some((
        user,
        quantity,
        expires,
        ReservationStatus::from_code(status)?,
    ))
}

/// `v` as a `T`, or the parsing error as a Redis error.
fn value<T: redis::FromRedisValue>(v: Value) -> Result<T> {
    redis::from_redis_value(v).map_err(|e| redis::RedisError::from(e).into())
}

fn bad_value(what: &str, value: &str) -> crate::app::FlashSaleError {
    titan_kit::KitError::Other(format!("unexpected {what} in redis: {value:?}")).into()
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

    /// The erasure reads back what the scripts and kit wrote: a stored reservation whose
    /// buyer holds a `|`, the request id after a replay field's user part, a user id with glob
    /// characters matched literally.
    #[test]
    fn what_an_erasure_reads_is_parsed_exactly() {
        assert_eq!(
            parse_stored("a|b|2|1700000000000|C"),
            Some(("a|b", 2, 1_700_000_000_000, ReservationStatus::Confirmed))
        );
        assert_eq!(parse_stored("u|2|0|Z"), None);
        let field = idempotency::composite(&["u*1", "req:7"]);
        let rest = field.strip_prefix(&idempotency::composite(&["u*1"]));
        assert_eq!(rest.and_then(request_of), Some("req:7".to_owned()));
        assert_eq!(request_of("9:short"), None);
        assert_eq!(glob_literal(r"a*b?[c]\d"), r"a\*b\?\[c\]\\d");
    }

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
