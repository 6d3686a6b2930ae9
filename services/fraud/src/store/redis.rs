//! Redis, one pipelined round trip per check: velocity — one sorted set per user, card, device
//! and IP, scored by time in milliseconds, a member per transaction (`<amount>:<transaction
//! id>`, added once, so a retried check counts once), entries older than 7 days dropped, the
//! week read back as three member-only ranges cut at the windows' starts and summed here — and
//! each active user's history, a copy of what
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
    events::{Envelope, dead_letter_key, stream_key},
};

use crate::{
    app::{Decided, FraudError, Hot, HotStore, Logged, NewDecision},
    domain::{
        Dimension, Transaction, Velocity, Window,
        profile::{HISTORY, Known, Recent, Snapshot},
        signals::{DimensionTally, Tally},
    },
    store::{log::GROUP, privacy::VelocityEntry},
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
        // Each window's entries beyond the next shorter one: `(start, end]` in milliseconds,
        // an entry exactly a window old being outside it.
        let segments = window_segments(now);
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
                .ignore();
            // Members only, one range per window beyond the shorter one: the windows are cut
            // by Redis and no score comes back, so the reply is half what a week with scores
            // was (parsing those replies was the service's largest user-space cost).
            for (start, end) in &segments {
                pipe.cmd("ZRANGEBYSCORE").arg(&key).arg(start).arg(end);
            }
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
            ranges @ ..,
        ] = values.as_slice()
        else {
            return Err(malformed("the check pipeline"));
        };
        if ranges.len() != keys.len() * Window::ALL.len() {
            return Err(malformed("the velocity ranges"));
        }
        let tallies = keys
            .iter()
            .zip(ranges.chunks_exact(Window::ALL.len()))
            .map(|((d, _), segments)| {
                Ok(DimensionTally {
                    dimension: *d,
                    windows: windows(segments)?,
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
        let entry = Envelope::encode(&self.cell, LOGGED, 1, d)?;
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
/// What [`RedisHot::forget`] deleted of one user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Forgotten {
    /// Keys of the cached history (scalars, first-seen devices and IPs, newest amounts, epoch).
    pub history_keys: u64,
    /// The user's own velocity set.
    pub velocity_keys: u64,
    /// The user's transactions in the velocity sets of their cards, devices and IPs.
    pub velocity_entries: u64,
    /// Decisions kept for replays of the user's transaction ids.
    pub replays: u64,
}

/// Log entries read per `XRANGE` while looking for a user's.
const SCAN_PAGE: usize = 500;

impl RedisHot {
    /// Deletes what Redis holds of `user`: the cached history, the user's velocity set, the
    /// user's transactions (`entries`) in the card, device and IP sets — which are named by
    /// the user's card, device and IP; a set left empty goes with its last member — and the
    /// decisions kept for replays of those transactions. Each command deletes only what is
    /// still there, so a second run counts zeros.
    pub async fn forget(
        &self,
        user: &str,
        entries: &[VelocityEntry],
    ) -> Result<Forgotten, FraudError> {
        let u = self.user(user);
        let mut conn = self.redis.conn.clone();
        let history_keys: u64 = redis::cmd("DEL")
            .arg(&u.history)
            .arg(&u.seen)
            .arg(&u.recent)
            .arg(&u.epoch)
            .query_async(&mut conn)
            .await?;
        let velocity_keys: u64 = redis::cmd("DEL")
            .arg(self.key(Dimension::User, user))
            .query_async(&mut conn)
            .await?;
        let (mut velocity_entries, mut replays) = (0, 0);
        for e in entries {
            let member = format!("{}:{}", e.amount, e.transaction_id);
            for (d, id) in [
                (Dimension::Card, &e.card),
                (Dimension::Device, &e.device),
                (Dimension::Ip, &e.ip),
            ] {
                if let Some(id) = id {
                    let n: u64 = redis::cmd("ZREM")
                        .arg(self.key(d, id))
                        .arg(&member)
                        .query_async(&mut conn)
                        .await?;
                    velocity_entries += n;
                }
            }
            let n: u64 = redis::cmd("DEL")
                .arg(self.decision_key(&e.transaction_id))
                .query_async(&mut conn)
                .await?;
            replays += n;
        }
        Ok(Forgotten {
            history_keys,
            velocity_keys,
            velocity_entries,
            replays,
        })
    }

    /// Decisions about `user` still in the decision log or among its dead letters: not stored
    /// in PostgreSQL yet, so an erasure would miss them (and the sink would store them under
    /// the user's id after it).
    pub async fn logged_for(&self, user: &str) -> Result<u64, FraudError> {
        let dead = dead_letter_key(&self.redis, LOG_SOURCE, GROUP);
        let mut found = 0;
        for stream in [&self.log_key, &dead] {
            let mut start = "-".to_owned();
            loop {
                let mut conn = self.redis.conn.clone();
                let page: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                    .arg(stream)
                    .arg(&start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(SCAN_PAGE)
                    .query_async(&mut conn)
                    .await?;
                for (_, fields) in &page {
                    let names_user = fields
                        .iter()
                        .filter(|(name, _)| name == "envelope")
                        .filter_map(|(_, json)| serde_json::from_str::<Envelope>(json).ok())
                        .any(|e| e.payload["decided"]["user_id"].as_str() == Some(user));
                    if names_user {
                        found += 1;
                    }
                }
                match page.last() {
                    Some((id, _)) if page.len() == SCAN_PAGE => start = format!("({id}"),
                    _ => break,
                }
            }
        }
        Ok(found)
    }
}

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

/// The `ZRANGEBYSCORE` bounds of each window's entries beyond the next shorter window, in
/// [`Window::ALL`] order: the hour `(now − 1 h, +inf]`, then `(now − 24 h, now − 1 h]`, then
/// `(now − 7 d, now − 24 h]`. An entry counts in every window it is newer than the start of,
/// so one exactly an hour old is in the day, not the hour.
fn window_segments(now: i64) -> [(String, String); 3] {
    let mut end = "+inf".to_owned();
    Window::ALL.map(|w| {
        let start = now - w.millis();
        let bounds = (format!("({start}"), end.clone());
        end = start.to_string();
        bounds
    })
}

/// Each window's count and summed amount from the members of its segments
/// ([`window_segments`]), read where the reply lies (a member copied into a `String` first
/// cost an allocation each): a window holds its own segment and every shorter window's.
fn windows(segments: &[Value]) -> Result<[Tally; 3], FraudError> {
    let mut windows = [Tally::default(); 3];
    let mut running = Tally::default();
    for (window, segment) in windows.iter_mut().zip(segments) {
        let Value::Array(members) = segment else {
            return Err(malformed("a velocity range"));
        };
        for member in members {
            let Value::BulkString(member) = member else {
                return Err(malformed("a velocity member"));
            };
            running.count += 1;
            running.amount += amount_of(member);
        }
        *window = running;
    }
    Ok(windows)
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
    fn each_segment_starts_where_the_next_shorter_window_starts() {
        let now = 10 * Window::Week.millis();
        let hour = now - Window::Hour.millis();
        let day = now - Window::Day.millis();
        let week = now - Window::Week.millis();
        assert_eq!(
            window_segments(now),
            [
                (format!("({hour}"), "+inf".to_owned()),
                (format!("({day}"), hour.to_string()),
                (format!("({week}"), day.to_string()),
            ]
        );
    }

    #[test]
    fn a_window_holds_its_segment_and_every_shorter_one() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let segment = |members: &[&str]| Value::Array(members.iter().map(|m| bulk(m)).collect());
        let t = |count, amount| Tally { count, amount };
        assert_eq!(
            windows(&[
                segment(&["100:a", "400:c", "bad"]),
                segment(&["800:d"]),
                segment(&["1600:e", "200:b:x"]),
            ])
            .expect("ranges"),
            [t(3, 500), t(4, 1300), t(6, 3100)],
            "a member whose amount does not parse counts as a transaction of 0"
        );
        assert_eq!(
            windows(&[segment(&[]), segment(&[]), segment(&[])]).expect("empty"),
            [Tally::default(); 3]
        );
        for broken in [
            [segment(&["100:a"]), Value::Nil, segment(&[])],
            [
                segment(&[]),
                segment(&[]),
                Value::Array(vec![Value::Int(5)]),
            ],
        ] {
            assert!(windows(&broken).is_err(), "{broken:?}");
        }
    }
}
