//! GPS positions: a latitude and longitude on the globe and the time the device measured
//! them. An update must be later than the last accepted one (devices resend and networks
//! reorder; an older fix would move the driver back) and not ahead of the service's clock by
//! more than a skew allowance. A jump faster than any delivery vehicle drives is kept but
//! flagged: GPS glitches happen and the driver should not be refused for them.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use titan_route::{Haversine, Metric};

use super::InputError;

/// How far ahead of the service's clock a device's timestamp may be.
pub const MAX_FUTURE_SKEW: Duration = Duration::seconds(30);
/// The speed above which a move is flagged implausible, in metres per second (252 km/h:
/// above any road vehicle's).
pub const MAX_PLAUSIBLE_SPEED_MPS: f64 = 70.0;
/// Moves shorter than this are never flagged: two fixes a second apart may differ by tens of
/// metres from the receiver's noise alone.
pub const GPS_NOISE_M: f64 = 50.0;

/// A position as a device measured it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// Degrees, -90 to 90.
    pub lat: f64,
    /// Degrees, -180 to 180.
    pub lng: f64,
    pub at: DateTime<Utc>,
}

impl Position {
    /// Checks the ranges; a refusal names `lat` or `lng` under `field` (`stops[2].lat`), or
    /// alone when `field` is empty: the requests that carry one position have them at the top.
    pub fn parse(field: &str, lat: f64, lng: f64, at: DateTime<Utc>) -> Result<Self, InputError> {
        let name = |leaf: &str| {
            if field.is_empty() {
                leaf.to_owned()
            } else {
                format!("{field}.{leaf}")
            }
        };
        if !(lat.is_finite() && (-90.0..=90.0).contains(&lat)) {
            return Err(InputError::new(
                name("lat"),
                format!("is {lat}; a latitude is -90 to 90"),
            ));
        }
        if !(lng.is_finite() && (-180.0..=180.0).contains(&lng)) {
            return Err(InputError::new(
                name("lng"),
                format!("is {lng}; a longitude is -180 to 180"),
            ));
        }
        Ok(Self { lat, lng, at })
    }

    /// Great-circle distance to `other`, in metres.
    pub fn distance_m(&self, other: &Self) -> f64 {
        // Both points were checked on the globe and the speed is positive, so the metric
        // cannot refuse them.
        Haversine::new(vec![(self.lat, self.lng), (other.lat, other.lng)], 1.0)
            .map_or(f64::NAN, |m| m.distance(0, 1))
    }

    /// Accepts this position as the one after `last` (the latest accepted, if any) at the
    /// service's time `now`.
    pub fn follow(self, last: Option<&Position>, now: DateTime<Utc>) -> Result<Update, GpsError> {
        if self.at > now + MAX_FUTURE_SKEW {
            return Err(GpsError::Future { at: self.at, now });
        }
        let Some(last) = last else {
            return Ok(Update {
                position: self,
                distance_m: 0.0,
                speed_mps: None,
                implausible: false,
            });
        };
        if self.at <= last.at {
            return Err(GpsError::NotAfter {
                at: self.at,
                last: last.at,
            });
        }
        let distance_m = self.distance_m(last);
        let seconds = (self.at - last.at).as_seconds_f64();
        let speed_mps = distance_m / seconds;
        Ok(Update {
            position: self,
            distance_m,
            speed_mps: Some(speed_mps),
            implausible: distance_m > GPS_NOISE_M && speed_mps > MAX_PLAUSIBLE_SPEED_MPS,
        })
    }
}

/// An accepted position and how it moved from the last one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Update {
    pub position: Position,
    /// From the last accepted position (0 for the first).
    pub distance_m: f64,
    /// Mean speed since the last accepted position, `None` for the first.
    pub speed_mps: Option<f64>,
    /// Faster than [`MAX_PLAUSIBLE_SPEED_MPS`] over more than [`GPS_NOISE_M`].
    pub implausible: bool,
}

/// Why a position is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GpsError {
    #[error("at: {at} is not after the last accepted position's {last}")]
    NotAfter {
        at: DateTime<Utc>,
        last: DateTime<Utc>,
    },
    #[error("at: {at} is more than 30 s ahead of the service's clock ({now})")]
    Future {
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    },
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0)
            .single()
            .expect("time")
    }

    fn p(lat: f64, lng: f64, s: i64) -> Position {
        Position::parse("location", lat, lng, t(s)).expect("position")
    }

    #[test]
    fn ranges_are_checked_and_name_the_coordinate() {
        assert!(Position::parse("location", 90.0, -180.0, t(0)).is_ok());
        let field = |lat, lng| {
            Position::parse("location", lat, lng, t(0))
                .map_err(|e| e.field)
                .err()
        };
        assert_eq!(field(90.5, 0.0), Some("location.lat".into()));
        assert_eq!(
            Position::parse("", 0.0, 181.0, t(0)).map_err(|e| e.field),
            Err("lng".into())
        );
        assert_eq!(field(f64::NAN, 0.0), Some("location.lat".into()));
        assert_eq!(field(0.0, 180.01), Some("location.lng".into()));
        assert_eq!(field(0.0, f64::NEG_INFINITY), Some("location.lng".into()));
    }

    #[test]
    fn timestamps_must_move_forward_and_not_run_ahead() {
        let last = p(1.30, 103.80, 0);
        assert_eq!(
            p(1.30, 103.80, 0).follow(Some(&last), t(10)),
            Err(GpsError::NotAfter {
                at: t(0),
                last: t(0)
            })
        );
        assert!(p(1.30, 103.80, -1).follow(Some(&last), t(10)).is_err());
        assert_eq!(
            p(1.30, 103.80, 41).follow(Some(&last), t(10)),
            Err(GpsError::Future {
                at: t(41),
                now: t(10)
            })
        );
        assert!(p(1.30, 103.80, 40).follow(Some(&last), t(10)).is_ok());
        let first = p(1.30, 103.80, 5).follow(None, t(10)).expect("first");
        assert_eq!(
            (first.distance_m, first.speed_mps, first.implausible),
            (0.0, None, false)
        );
    }

    #[test]
    fn a_jump_faster_than_a_vehicle_is_flagged_not_refused() {
        let last = p(1.3000, 103.8000, 0);
        // 0.01° of latitude is 1,112 m: in 60 s that is 18.5 m/s, a car in town.
        let town = p(1.3100, 103.8000, 60)
            .follow(Some(&last), t(60))
            .expect("town");
        assert!(
            (town.distance_m - 1_111.95).abs() < 0.5,
            "{}",
            town.distance_m
        );
        assert!(!town.implausible);
        // The same move in 10 s is 111 m/s.
        let jump = p(1.3100, 103.8000, 10)
            .follow(Some(&last), t(60))
            .expect("jump");
        assert!(jump.implausible);
        // 40 m in 0.1 s of receiver noise is fast but short: not flagged.
        let noise = Position {
            at: last.at + Duration::milliseconds(100),
            ..p(1.30036, 103.8, 0)
        };
        let noise = noise.follow(Some(&last), t(60)).expect("noise");
        assert!(noise.distance_m < GPS_NOISE_M && noise.speed_mps > Some(MAX_PLAUSIBLE_SPEED_MPS));
        assert!(!noise.implausible);
    }

    proptest! {
        #[test]
        fn the_flag_is_exactly_fast_and_far(
            lat in -80.0f64..80.0, lng in -179.0f64..179.0,
            dlat in -0.05f64..0.05, dlng in -0.05f64..0.05, dt in 1i64..600,
        ) {
            let last = p(lat, lng, 0);
            let u = p(lat + dlat, lng + dlng, dt).follow(Some(&last), t(dt)).expect("later");
            let speed = u.distance_m / dt as f64;
            prop_assert_eq!(u.speed_mps, Some(speed));
            prop_assert_eq!(u.implausible, u.distance_m > GPS_NOISE_M && speed > MAX_PLAUSIBLE_SPEED_MPS);
            // Reversed, the same pair is refused: it is not after.
            prop_assert!(last.follow(Some(&u.position), t(dt)).is_err());
        }
    }
}
