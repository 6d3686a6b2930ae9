//! What Redis holds for the driver service, shared by every replica; PostgreSQL stays the
//! record and everything here can be rebuilt from it:
//! - `<prefix>driver:available`: a GEO set of the AVAILABLE drivers with a known position,
//!   member the driver's id. Written after the PostgreSQL commit that changed the driver; a
//!   write that fails there is healed by the driver's next position report and by the
//!   periodic [`Live::resync`] from PostgreSQL (see docs/driver.md).
//! - `<prefix>driver:latest`: a hash, field the driver's id, value `<µs> <lat> <lng>`, the
//!   latest accepted position; a Lua script replaces it only with a later one, so two reports
//!   racing to Redis cannot put the older one last.
//! - the realtime topic `driver:<id>`: every accepted position as a `position` frame, through
//!   kit's hub, for `WatchDriver` streams on any replica.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use titan_kit::{
    KitError,
    datastores::redis::RedisHandle,
    realtime::{Listener, Realtime},
};
use uuid::Uuid;

use crate::domain::Position;

/// The frame type of a position on a driver's topic.
pub const POSITION_FRAME: &str = "position";

/// Replaces the latest position only with a later one: KEYS[1] the hash, ARGV the driver, the
/// time in µs, latitude and longitude. Returns 1 when it replaced it.
const SET_LATEST: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local at = tonumber(string.match(current, '^(%-?%d+)'))
  if at and at >= tonumber(ARGV[2]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[4])
return 1
";

/// A driver near a point, as a nearby search answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct Nearby {
    pub driver_id: Uuid,
    pub distance_m: f64,
    pub lat: f64,
    pub lng: f64,
}

/// A position as it travels on a driver's topic.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PositionFrame {
    pub lat: f64,
    pub lng: f64,
    /// Microseconds since the epoch: exact, so a watcher can drop what it already sent.
    pub at_micros: i64,
}

impl PositionFrame {
    pub fn of(p: &Position) -> Self {
        Self {
            lat: p.lat,
            lng: p.lng,
            at_micros: p.at.timestamp_micros(),
        }
    }

    pub fn position(&self) -> Option<Position> {
        Some(Position {
            lat: self.lat,
            lng: self.lng,
            at: DateTime::<Utc>::from_timestamp_micros(self.at_micros)?,
        })
    }
}

/// The frame the hub delivers: `{type, payload}`.
#[derive(Debug, Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    payload: PositionFrame,
}

/// A `{type, payload}` frame of a driver's topic → its position; `None` for anything else.
pub fn parse_frame(text: &str) -> Option<Position> {
    let frame: Frame = serde_json::from_str(text).ok()?;
    (frame.kind == POSITION_FRAME)
        .then(|| frame.payload.position())
        .flatten()
}

/// The realtime topic of a driver's positions.
pub fn topic(driver: Uuid) -> String {
    format!("driver:{driver}")
}

#[derive(Debug, Clone)]
pub struct Live {
    redis: RedisHandle,
    realtime: Realtime,
}

impl Live {
    pub fn new(redis: RedisHandle, realtime: Realtime) -> Self {
        Self { redis, realtime }
    }

    fn available_key(&self) -> String {
        self.redis.key("driver:available")
    }

    fn latest_key(&self) -> String {
        self.redis.key("driver:latest")
    }

    /// Puts the driver in the GEO set at `at` when AVAILABLE there, takes them out otherwise.
    pub async fn place(&self, driver: Uuid, at: Option<(f64, f64)>) -> Result<(), KitError> {
        let mut conn = self.redis.conn.clone();
        let key = self.available_key();
        match at {
            Some((lat, lng)) => {
                let _: i64 = redis::cmd("GEOADD")
                    .arg(&key)
                    .arg(lng)
                    .arg(lat)
                    .arg(driver.to_string())
                    .query_async(&mut conn)
                    .await?;
            }
            None => {
                let _: i64 = redis::cmd("ZREM")
                    .arg(&key)
                    .arg(driver.to_string())
                    .query_async(&mut conn)
                    .await?;
            }
        }
        Ok(())
    }

    /// Keeps `p` as the driver's latest position unless a later one is there; `false` then.
    pub async fn set_latest(&self, driver: Uuid, p: &Position) -> Result<bool, KitError> {
        let mut conn = self.redis.conn.clone();
        let replaced: i64 = redis::Script::new(SET_LATEST)
            .key(self.latest_key())
            .arg(driver.to_string())
            .arg(p.at.timestamp_micros())
            .arg(p.lat)
            .arg(p.lng)
            .invoke_async(&mut conn)
            .await?;
        Ok(replaced == 1)
    }

    /// The driver's latest position as Redis has it.
    pub async fn latest(&self, driver: Uuid) -> Result<Option<Position>, KitError> {
        let mut conn = self.redis.conn.clone();
        let value: Option<String> = redis::cmd("HGET")
            .arg(self.latest_key())
            .arg(driver.to_string())
            .query_async(&mut conn)
            .await?;
        Ok(value.as_deref().and_then(parse_latest))
    }

    /// AVAILABLE drivers within `radius_m` of the point, nearest first, at most `limit`.
    pub async fn nearby(
        &self,
        lat: f64,
        lng: f64,
        radius_m: u32,
        limit: u32,
    ) -> Result<Vec<Nearby>, KitError> {
        let mut conn = self.redis.conn.clone();
        let found: Vec<(String, f64, (f64, f64))> = redis::cmd("GEOSEARCH")
            .arg(self.available_key())
            .arg("FROMLONLAT")
            .arg(lng)
            .arg(lat)
            .arg("BYRADIUS")
            .arg(radius_m)
            .arg("m")
            .arg("ASC")
            .arg("COUNT")
            .arg(limit)
            .arg("WITHDIST")
            .arg("WITHCOORD")
            .query_async(&mut conn)
            .await?;
        found
            .into_iter()
            .map(|(member, distance_m, (lng, lat))| {
                let driver_id = Uuid::try_parse(&member).map_err(|_| {
                    KitError::Other(format!("driver GEO set holds a non-UUID member {member:?}"))
                })?;
                Ok(Nearby {
                    driver_id,
                    distance_m,
                    lat,
                    lng,
                })
            })
            .collect()
    }

    /// Replaces the GEO set with `available` (the AVAILABLE drivers PostgreSQL holds with a
    /// position), built aside and renamed over the live set in one step, so a search never
    /// sees it half-built.
    pub async fn resync(&self, available: &[(Uuid, f64, f64)]) -> Result<(), KitError> {
        let mut conn = self.redis.conn.clone();
        let key = self.available_key();
        if available.is_empty() {
            let _: i64 = redis::cmd("DEL").arg(&key).query_async(&mut conn).await?;
            return Ok(());
        }
        let aside = self
            .redis
            .key(&format!("driver:available:resync:{}", Uuid::new_v4()));
        for chunk in available.chunks(1000) {
            let mut add = redis::cmd("GEOADD");
            add.arg(&aside);
            for (id, lat, lng) in chunk {
                add.arg(*lng).arg(*lat).arg(id.to_string());
            }
            let _: i64 = add.query_async(&mut conn).await?;
        }
        let _: () = redis::cmd("RENAME")
            .arg(&aside)
            .arg(&key)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Takes the driver out of the nearby set and drops their latest position (an erasure);
    /// answers how many of the two were there.
    pub async fn forget(&self, driver: Uuid) -> Result<u64, KitError> {
        let mut conn = self.redis.conn.clone();
        let (nearby, latest): (u64, u64) = redis::pipe()
            .cmd("ZREM")
            .arg(self.available_key())
            .arg(driver.to_string())
            .cmd("HDEL")
            .arg(self.latest_key())
            .arg(driver.to_string())
            .query_async(&mut conn)
            .await?;
        Ok(nearby + latest)
    }

    /// Sends `p` to the driver's watchers on every replica.
    pub async fn publish(&self, driver: Uuid, p: &Position) -> Result<(), KitError> {
        let hub = self.realtime.hub().ok_or_else(no_hub)?;
        hub.publish(&topic(driver), POSITION_FRAME, &PositionFrame::of(p))
            .await
            .map_err(|e| KitError::Other(e.to_string()))
    }

    /// The driver's positions as they are published, at most `capacity` unread.
    pub async fn listen(&self, driver: Uuid, capacity: usize) -> Result<Listener, KitError> {
        self.realtime.listen(&topic(driver), capacity).await
    }
}

fn no_hub() -> KitError {
    KitError::Other("driver positions need the realtime hub, which needs redis".into())
}

/// `<µs> <lat> <lng>` → the position.
fn parse_latest(value: &str) -> Option<Position> {
    let mut parts = value.split(' ');
    let at = DateTime::<Utc>::from_timestamp_micros(parts.next()?.parse().ok()?)?;
    let lat = parts.next()?.parse().ok()?;
    let lng = parts.next()?.parse().ok()?;
    Some(Position { lat, lng, at })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_values_and_frames_read_back() {
        let at = DateTime::from_timestamp_micros(1_900_000_000_123_456).expect("time");
        let p = Position {
            lat: 1.3,
            lng: -103.8,
            at,
        };
        assert_eq!(parse_latest("1900000000123456 1.3 -103.8"), Some(p));
        assert_eq!(parse_latest("1900000000123456 1.3"), None);
        assert_eq!(parse_latest("x 1.3 2"), None);
        let text = serde_json::json!({"type": "position", "payload": PositionFrame::of(&p)});
        assert_eq!(parse_frame(&text.to_string()), Some(p));
        let other = serde_json::json!({"type": "other", "payload": PositionFrame::of(&p)});
        assert_eq!(parse_frame(&other.to_string()), None);
    }
}
