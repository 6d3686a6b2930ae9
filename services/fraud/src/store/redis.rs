//! Redis, one pipelined round trip per check: velocity — one sorted set per user, card, device
//! and IP, scored by time in milliseconds, a member per transaction (`<amount>:<transaction
//! id>`, added once, so a retried check counts once), entries older than 7 days dropped, the
//! week read back and the windows tallied here — and each active user's history, a copy of what
//! PostgreSQL holds (`Known`): a hash of the scalars, a set of first-seen devices and IPs and a
//! sorted set of the newest amounts, read before the transaction is added to them. The same
//! round trip reads the decision kept for the transaction id, which answers a replay.
//!
//! The decision log (`log.lua`): a check's decision is appended to a stream and kept under its
//! transaction id for [`REPLAY_WINDOW`] in one script, unless one was kept already (a racing
//! duplicate gets that one); `store::log` stores the stream in PostgreSQL.
//!
//! The copy is filled from PostgreSQL by the first check that finds none (`fill.lua`, refused
//! when the user's epoch moved since that check read it), kept current by every check, dropped
//! (epoch bumped) after a chargeback, a payment failure or an order changes PostgreSQL, and
//! expires [`HISTORY_TTL`] after its fill whatever happens, which bounds how stale a copy whose
//! drop failed can be. (A Lua script that tallied velocity in Redis cost ~400 µs of Redis's
//! single thread per check — 24 `redis.call`s and the string handling; the pipeline's plain
//! commands cost ~60 µs.)

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use redis::{FromRedisValue, Script, Value, from_redis_value_ref};
use titan_kit::{
    datastores::redis::RedisHandle,
    events::{Envelope, stream_key},
};

use crate::{
    app::{Decided, FraudError, Hot, HotStore, Logged, NewDecision},
    domain::{
        Dimension, Transaction, Velocity, Window,
        profile::{HISTORY, Known, Recent, Snapshot},
        signals::{DimensionTally, Tally},
    },
};

/// A cached history is read again from PostgreSQL at the latest this long after its fill.
pub const HISTORY_TTL: Duration = Duration::from_secs(3600);

/// The hash field that marks a whole history, holding the epoch it was filled under.
const EPOCH: &str = "epoch";

/// The decision log's name for kit's stream reader (its key is `<prefix>events:fraud-log`).
/// `log.lua` writes a decision key and the log together, so decision keys are named beside
/// the log's key ([`RedisHandle::beside`]: in its slot on a Redis Cluster).
pub const LOG_SOURCE: &str = "fraud-log";
/// The type of the log's entries (kit envelopes carrying a [`NewDecision`]).
pub const LOGGED: &str = "fraud.decision_logged";
/// How long a decision answers replays of its transaction id from Redis: a day, as payment
/// APIs keep idempotency keys. Its row in PostgreSQL is kept for good.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Entries the log may hold before checks store their decisions in PostgreSQL themselves: about
/// a minute of checks at 2,000/s, so a sink that cannot write slows checks down instead of
/// filling Redis.
pub const LOG_CAP: u64 = 100_000;

#[derive(Clone)]
pub struct RedisHot {
    redis: RedisHandle,
    cell: String,
    /// The log stream's key.
    log_key: String,
    log_cap: u64,
    fill: Arc<Script>,
    log: Arc<Script>,
}

impl std::fmt::Debug for RedisHot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHot").finish_non_exhaustive()
    }
}

/// The keys of one user's cached history; the braces keep them in one Redis Cluster slot.
struct UserKeys {
    history: String,
    seen: String,
    recent: String,
    epoch: String,
}

impl RedisHot {
    /// `cell` names the cell in the log's envelopes.
    pub fn new(redis: RedisHandle, cell: String) -> Self {
        Self {
            log_key: stream_key(&redis, LOG_SOURCE),
            redis,
            cell,
            log_cap: LOG_CAP,
            fill: Arc::new(Script::new(include_str!("lua/fill.lua"))),
            log: Arc::new(Script::new(include_str!("lua/log.lua"))),
        }
    }

    /// The same, with a log that holds at most `cap` entries instead of [`LOG_CAP`].
    pub fn with_log_cap(self, cap: u64) -> Self {
        Self {
            log_cap: cap,
            ..self
        }
    }

    /// The decision answered for `transaction`, kept [`REPLAY_WINDOW`].
    fn decision_key(&self, transaction: &str) -> String {
        self.redis
            .beside(&self.log_key, &format!("d:{transaction}"))
    }

    fn key(&self, d: Dimension, id: &str) -> String {
        self.redis.key(&format!("fraud:v:{}:{id}", d.as_str()))
    }

    fn user(&self, user: &str) -> UserKeys {
        let k = |kind: &str| self.redis.key(&format!("fraud:{kind}:{{{user}}}"));
        UserKeys {
            history: k("u"),
            seen: k("s"),
            recent: k("r"),
            epoch: k("e"),
        }
    }
}

/// Milliseconds, as `PEXPIRE` takes them.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How long the sets of a user outlive their last check: longer than any history's TTL, so a
/// hash never outlives the sets it vouches for.
fn keep() -> u64 {
    // An hour past the week, so a velocity key outlives its newest entry's window.
    u64::try_from(Window::Week.millis() + Window::Hour.millis()).unwrap_or(u64::MAX)
}

fn malformed(what: &str) -> FraudError {
    FraudError::Kit(titan_kit::KitError::Other(format!(
        "redis answered {what} in an unexpected shape"
    )))
}

fn encoding(what: &str, e: &serde_json::Error) -> FraudError {
    FraudError::Kit(titan_kit::KitError::Other(format!(
        "cannot encode {what}: {e}"
    )))
}

/// A decision as [`HotStore::log`] keeps it for replays.
fn decoded(json: &str) -> Result<Decided, FraudError> {
    serde_json::from_str(json).map_err(|e| malformed(&format!("a decision ({e})")))
}

/// One answer of the check pipeline as `T`.
fn parse<T: FromRedisValue>(v: &Value, what: &str) -> Result<T, FraudError> {
    from_redis_value_ref(v).map_err(|e| malformed(&format!("{what} ({e})")))
}

impl HotStore for RedisHot {
    async fn record(
        &self,
        keys: &[(Dimension, &str)],
        t: &Transaction,
        at: DateTime<Utc>,
    ) -> Result<Hot, FraudError> {
        let now = at.timestamp_millis();
        let micros = at.timestamp_micros();
        let week_start = now - Window::Week.millis();
        let keep = keep();
        let member = format!("{}:{}", t.amount, t.transaction_id);
        let u = self.user(&t.user_id);
        let device = t.device.as_deref().map(|d| format!("d:{d}"));
        let ip = t.ip.as_deref().map(|i| format!("i:{i}"));
        let mut pipe = redis::pipe();
        // A decision taken before answers a replay; then the reads of the history: they answer
        // for the state before this transaction.
        pipe.cmd("GET")
            .arg(self.decision_key(&t.transaction_id))
            .cmd("HGETALL")
            .arg(&u.history)
            .cmd("GET")
            .arg(&u.epoch)
            .cmd("SISMEMBER")
            .arg(&u.seen)
            .arg(device.as_deref().unwrap_or_default())
            .cmd("SISMEMBER")
            .arg(&u.seen)
            .arg(ip.as_deref().unwrap_or_default())
            .cmd("ZREVRANGE")
            .arg(&u.recent)
            .arg(0)
            .arg(HISTORY)
            .arg("WITHSCORES");
        for (d, id) in keys {
            let key = self.key(*d, id);
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(&key)
                .arg("-inf")
                .arg(format!("({week_start}"))
                .ignore()
                .cmd("ZADD")
                .arg(&key)
                .arg("NX")
                .arg(now)
                .arg(&member)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(keep)
                .ignore()
                .cmd("ZRANGEBYSCORE")
                .arg(&key)
                .arg(format!("({week_start}"))
                .arg("+inf")
                .arg("WITHSCORES");
        }
        // Then this transaction into the history, whether or not a whole one is cached: a
        // later fill adds to what checks wrote.
        pipe.cmd("HSETNX")
            .arg(&u.history)
            .arg("first_seen")
            .arg(micros)
            .ignore();
        if let Some(created) = t.account_created_at {
            pipe.cmd("HSET")
                .arg(&u.history)
                .arg("created")
                .arg(created.timestamp_micros())
                .ignore();
        }
        // Only a hash no fill has given a TTL yet gets one here.
        pipe.cmd("PEXPIRE")
            .arg(&u.history)
            .arg(millis(HISTORY_TTL))
            .arg("NX")
            .ignore();
        let seen: Vec<&String> = device.iter().chain(ip.iter()).collect();
        if !seen.is_empty() {
            pipe.cmd("SADD").arg(&u.seen).arg(&seen).ignore();
            pipe.cmd("PEXPIRE").arg(&u.seen).arg(keep).ignore();
        }
        pipe.cmd("ZADD")
            .arg(&u.recent)
            .arg("NX")
            .arg(micros)
            .arg(&member)
            .ignore()
            .cmd("ZREMRANGEBYRANK")
            .arg(&u.recent)
            .arg(0)
            .arg(-2 - i64::try_from(HISTORY).unwrap_or(i64::MAX))
            .ignore()
            .cmd("PEXPIRE")
            .arg(&u.recent)
            .arg(keep)
            .ignore();
        let mut conn = self.redis.conn.clone();
        let values: Vec<Value> = pipe.query_async(&mut conn).await?;
        let [
            earlier,
            history,
            epoch,
            device_seen,
            ip_seen,
            recent,
            weeks @ ..,
        ] = values.as_slice()
        else {
            return Err(malformed("the check pipeline"));
        };
        if weeks.len() != keys.len() {
            return Err(malformed("the velocity ranges"));
        }
        let tallies = keys
            .iter()
            .zip(weeks)
            .map(|((d, _), week)| {
                Ok(DimensionTally {
                    dimension: *d,
                    windows: windows(now, &week_entries(week)?),
                })
            })
            .collect::<Result<_, FraudError>>()?;
        let epoch: Option<u64> = parse(epoch, "the epoch")?;
        let history: HashMap<String, String> = parse(history, "the history")?;
        // The sets outlive the hash (a change in PostgreSQL drops only the hash): what checks
        // wrote is read either way, as a whole history's part or as what PostgreSQL may not
        // hold yet.
        let written = Known {
            device_seen: device.is_some() && parse(device_seen, "the device")?,
            ip_seen: ip.is_some() && parse(ip_seen, "the ip")?,
            recent: recent_of(&parse::<Vec<(String, f64)>>(recent, "the amounts")?),
            ..Known::default()
        };
        let known = match cached(&history) {
            Ok(Some(c)) => Some(Known {
                device_seen: written.device_seen,
                ip_seen: written.ip_seen,
                recent: written.recent.clone(),
                ..c
            }),
            Ok(None) => None,
            Err(field) => {
                // Read from PostgreSQL and filled again rather than scored from a bad copy.
                tracing::warn!(user = %t.user_id, field, "cached history does not parse; reading it again");
                None
            }
        };
        let earlier = parse::<Option<String>>(earlier, "the earlier decision")?
            .map(|json| decoded(&json))
            .transpose()?;
        Ok(Hot {
            velocity: Velocity { tallies },
            known,
            epoch: epoch.unwrap_or(0),
            earlier,
            written,
        })
    }

    async fn log(&self, d: &NewDecision) -> Result<Logged, FraudError> {
        let answered =
            serde_json::to_string(&d.decided).map_err(|e| encoding("the decision", &e))?;
        let entry = Envelope::new(&self.cell, LOGGED, 1, d)?;
        let entry = serde_json::to_string(&entry).map_err(|e| encoding("the log entry", &e))?;
        let mut conn = self.redis.conn.clone();
        let reply: Vec<Value> = self
            .log
            .key(self.decision_key(&d.decided.transaction_id))
            .key(&self.log_key)
            .arg(answered)
            .arg(millis(REPLAY_WINDOW))
            .arg(self.log_cap)
            .arg(entry)
            .invoke_async(&mut conn)
            .await?;
        match reply.as_slice() {
            [status] if parse::<u8>(status, "the log status")? == 0 => Ok(Logged::Logged),
            [status] if parse::<u8>(status, "the log status")? == 2 => Ok(Logged::Full),
            [status, earlier] if parse::<u8>(status, "the log status")? == 1 => Ok(
                Logged::Earlier(decoded(&parse::<String>(earlier, "the earlier decision")?)?),
            ),
            _ => Err(malformed("the decision log's answer")),
        }
    }

    async fn remember(&self, d: &Decided) -> Result<(), FraudError> {
        let answered = serde_json::to_string(d).map_err(|e| encoding("the decision", &e))?;
        let mut conn = self.redis.conn.clone();
        // NX: a decision the log holds already is the one replays must get.
        let _set: Option<String> = redis::cmd("SET")
            .arg(self.decision_key(&d.transaction_id))
            .arg(answered)
            .arg("PX")
            .arg(millis(REPLAY_WINDOW))
            .arg("NX")
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn fill(&self, user: &str, s: &Snapshot, epoch: u64) -> Result<bool, FraudError> {
        let Some(seen) = &s.seen else {
            return Ok(false);
        };
        let u = self.user(user);
        let k = &s.known;
        let failures = k
            .failures
            .iter()
            .map(|f| f.timestamp_micros().to_string())
            .collect::<Vec<_>>()
            .join(",");
        let mut set: Vec<(&str, String)> = vec![
            ("orders", k.successful_orders.to_string()),
            ("chargebacks", k.chargebacks.to_string()),
            ("failures", failures),
        ];
        if let Some(first) = k.first_seen_at {
            set.push(("first_seen", first.timestamp_micros().to_string()));
        }
        let set_nx: Vec<(&str, String)> = k
            .account_created_at
            .map(|c| ("created", c.timestamp_micros().to_string()))
            .into_iter()
            .collect();
        let mut call = self.fill.prepare_invoke();
        call.key(&u.history)
            .key(&u.seen)
            .key(&u.recent)
            .key(&u.epoch)
            .arg(epoch)
            .arg(millis(HISTORY_TTL))
            .arg(keep())
            .arg(HISTORY + 1);
        for group in [&set, &set_nx] {
            call.arg(group.len());
            for (field, value) in group {
                call.arg(*field).arg(value);
            }
        }
        call.arg(seen.len());
        for s in seen {
            call.arg(s.member());
        }
        call.arg(k.recent.len());
        for r in &k.recent {
            call.arg(r.at.timestamp_micros())
                .arg(format!("{}:{}", r.amount, r.transaction_id));
        }
        let mut conn = self.redis.conn.clone();
        let filled: i64 = call.invoke_async(&mut conn).await?;
        Ok(filled == 1)
    }

    async fn invalidate(&self, user: &str) -> Result<(), FraudError> {
        let u = self.user(user);
        let mut conn = self.redis.conn.clone();
        // The epoch first: a fill that read the old one is refused from here on.
        let () = redis::pipe()
            .atomic()
            .cmd("INCR")
            .arg(&u.epoch)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&u.epoch)
            .arg(keep())
            .ignore()
            .cmd("DEL")
            .arg(&u.history)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}

/// The scalars of a cached history; `Ok(None)` when the hash is not a whole history (no fill
/// since it was dropped), `Err(field)` when a field does not parse.
fn cached(h: &HashMap<String, String>) -> Result<Option<Known>, &'static str> {
    if !h.contains_key(EPOCH) {
        return Ok(None);
    }
    let time = |field: &'static str| -> Result<Option<DateTime<Utc>>, &'static str> {
        h.get(field)
            .map(|v| {
                v.parse::<i64>()
                    .ok()
                    .and_then(DateTime::from_timestamp_micros)
                    .ok_or(field)
            })
            .transpose()
    };
    let count = |field: &'static str| -> Result<i64, &'static str> {
        h.get(field)
            .map_or(Ok(0), |v| v.parse::<i64>().map_err(|_| field))
    };
    let failures = h
        .get("failures")
        .map(String::as_str)
        .unwrap_or_default()
        .split(',')
        .filter(|f| !f.is_empty())
        .map(|f| {
            f.parse::<i64>()
                .ok()
                .and_then(DateTime::from_timestamp_micros)
                .ok_or("failures")
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(Known {
        first_seen_at: time("first_seen")?,
        account_created_at: time("created")?,
        successful_orders: count("orders")?,
        chargebacks: count("chargebacks")?,
        failures,
        ..Known::default()
    }))
}

/// The newest amounts from `(<amount>:<transaction id>, time in µs)` entries, newest first;
/// an entry that does not parse is skipped (it cannot have been written by a check).
fn recent_of(entries: &[(String, f64)]) -> Vec<Recent> {
    entries
        .iter()
        .filter_map(|(member, at)| {
            let (amount, id) = member.split_once(':')?;
            Some(Recent {
                transaction_id: id.to_owned(),
                amount: amount.parse().ok()?,
                // Scores are whole microseconds, exact in an f64 until the year 2255.
                at: DateTime::from_timestamp_micros(*at as i64)?,
            })
        })
        .collect()
}

/// `(amount, time in ms)` of each entry of a `ZRANGEBYSCORE … WITHSCORES` reply, read where
/// the reply lies: a check reads a week of entries for each of up to four keys, and copying
/// every member into a `String` first cost an allocation per entry (the allocator was a fifth
/// of the service's CPU under load). Both reply shapes are read: RESP2's flat member, score, …
/// and RESP3's [member, score] pairs.
fn week_entries(reply: &Value) -> Result<Vec<(i64, f64)>, FraudError> {
    let bad = || malformed("a velocity range");
    let Value::Array(items) = reply else {
        return Err(bad());
    };
    let entry = |member: &Value, score: &Value| {
        let Value::BulkString(member) = member else {
            return None;
        };
        let at = match score {
            Value::Double(d) => *d,
            Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok()?,
            _ => return None,
        };
        Some((amount_of(member), at))
    };
    let entries: Option<Vec<_>> = if items.iter().all(|i| matches!(i, Value::Array(_))) {
        items
            .iter()
            .map(|pair| match pair {
                Value::Array(p) if p.len() == 2 => entry(&p[0], &p[1]),
                _ => None,
            })
            .collect()
    } else if items.len() % 2 == 0 {
        items.chunks_exact(2).map(|p| entry(&p[0], &p[1])).collect()
    } else {
        None
    };
    entries.ok_or_else(bad)
}

/// The amount of a velocity member `<amount>:<transaction id>`; 0 for one that does not parse
/// (it still counts as a transaction).
fn amount_of(member: &[u8]) -> i64 {
    member
        .iter()
        .position(|&b| b == b':')
        .and_then(|colon| std::str::from_utf8(&member[..colon]).ok())
        .and_then(|amount| amount.parse().ok())
        .unwrap_or(0)
}

/// Each window's count and summed amount from a key's week of `(amount, time in ms)` entries:
/// an entry counts in every window it is newer than the start of.
fn windows(now: i64, week: &[(i64, f64)]) -> [Tally; 3] {
    Window::ALL.map(|w| {
        let start = (now - w.millis()) as f64;
        week.iter()
            .filter(|(_, at)| *at > start)
            .fold(Tally::default(), |t, (amount, _)| Tally {
                count: t.count + 1,
                amount: t.amount + amount,
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_without_its_marker_is_no_history() {
        let h: HashMap<String, String> = [("first_seen", "5"), ("created", "7")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        assert_eq!(cached(&h), Ok(None));
    }

    #[test]
    fn a_whole_history_parses_and_a_bad_field_is_named() {
        let mut h: HashMap<String, String> = [
            ("epoch", "3"),
            ("first_seen", "1900000000000000"),
            ("orders", "4"),
            ("chargebacks", "1"),
            ("failures", "1900000000000002,1900000000000001"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
        let at = |us| DateTime::from_timestamp_micros(us).expect("time");
        assert_eq!(
            cached(&h),
            Ok(Some(Known {
                first_seen_at: Some(at(1_900_000_000_000_000)),
                account_created_at: None,
                successful_orders: 4,
                chargebacks: 1,
                failures: vec![at(1_900_000_000_000_002), at(1_900_000_000_000_001)],
                ..Known::default()
            }))
        );
        h.insert("orders".into(), "four".into());
        assert_eq!(cached(&h), Err("orders"));
    }

    #[test]
    fn recent_entries_keep_their_order_and_skip_what_does_not_parse() {
        let r = recent_of(&[
            ("300:b".to_owned(), 2e15),
            ("junk".to_owned(), 1.5e15),
            ("100:a:x".to_owned(), 1e15),
        ]);
        let at = |us| DateTime::from_timestamp_micros(us).expect("time");
        assert_eq!(
            r,
            vec![
                Recent {
                    transaction_id: "b".into(),
                    amount: 300,
                    at: at(2_000_000_000_000_000)
                },
                Recent {
                    transaction_id: "a:x".into(),
                    amount: 100,
                    at: at(1_000_000_000_000_000)
                },
            ]
        );
    }

    #[test]
    fn entries_count_in_every_window_they_are_newer_than_the_start_of() {
        let now = 10 * Window::Week.millis();
        let at = |ago: i64| (now - ago) as f64;
        let week = [
            ("100:a", at(1)),
            ("200:b", at(Window::Hour.millis())),
            ("400:c", at(Window::Hour.millis() - 1)),
            ("800:d", at(Window::Day.millis() - 1)),
            ("1600:e", at(Window::Day.millis() + 1)),
            ("bad", at(2)),
        ];
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        // RESP2: member, score, member, score, … with scores as strings.
        let flat = Value::Array(
            week.iter()
                .flat_map(|(m, at)| [bulk(m), bulk(&at.to_string())])
                .collect(),
        );
        // RESP3: [member, score] pairs with scores as doubles.
        let pairs = Value::Array(
            week.iter()
                .map(|(m, at)| Value::Array(vec![bulk(m), Value::Double(*at)]))
                .collect(),
        );
        let t = |count, amount| Tally { count, amount };
        for reply in [flat, pairs] {
            assert_eq!(
                windows(now, &week_entries(&reply).expect("a range")),
                [t(3, 500), t(5, 1500), t(6, 3100)],
                "the entry exactly an hour old is outside the hour, inside the day"
            );
        }
        assert_eq!(
            windows(now, &week_entries(&Value::Array(vec![])).expect("empty")),
            [Tally::default(); 3]
        );
        for broken in [
            Value::Array(vec![bulk("100:a")]),
            Value::Array(vec![bulk("100:a"), bulk("soon")]),
            Value::Array(vec![Value::Array(vec![bulk("100:a")])]),
            Value::Nil,
        ] {
            assert!(week_entries(&broken).is_err(), "{broken:?}");
        }
    }
}
