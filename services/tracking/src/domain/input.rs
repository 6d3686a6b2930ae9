//! Input checks, before any I/O: tracking numbers, carrier names, pages of history and the
//! events carriers send. Each refusal names the request field.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use titan_kit::input::{InputError, ident};

use super::status::Status;

/// Shortest and longest tracking number (UPS and DHL numbers fit; shipping's are 6–24).
pub const TRACKING_NUMBER_LEN: std::ops::RangeInclusive<usize> = 6..=40;
/// Longest carrier name, as shipping's config allows.
pub const MAX_CARRIER: usize = 63;
/// Longest place name, in characters.
pub const MAX_LOCATION: usize = 200;
/// Longest internal note, in characters.
pub const MAX_NOTE: usize = 1000;
/// Events a page of history holds when the request does not say.
pub const DEFAULT_PAGE: u32 = 50;
/// Most events one page holds.
pub const MAX_PAGE: u32 = 100;
/// How far ahead of our clock an event's time may be: carriers' clocks drift.
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);

/// A tracking number: 6–40 of A-Z and 0-9; lower case is upper-cased, as carriers print
/// them upper case and people type them either way.
pub fn tracking_number(field: &str, s: &str) -> Result<String, InputError> {
    if s.is_empty() {
        return Err(InputError::new(field, "is required"));
    }
    if !TRACKING_NUMBER_LEN.contains(&s.len()) {
        return Err(InputError::new(
            field,
            format!("has {} characters; 6 to 40 are allowed", s.chars().count()),
        ));
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(InputError::new(
            field,
            "may hold only letters A-Z and digits",
        ));
    }
    Ok(s.to_ascii_uppercase())
}

/// A carrier name as shipping configures it: 1–63 of a-z, 0-9, '-' and '.'. `optional`
/// lets it be empty (a lookup that does not narrow by carrier).
pub fn carrier(field: &str, s: &str, optional: bool) -> Result<String, InputError> {
    if s.is_empty() {
        return if optional {
            Ok(String::new())
        } else {
            Err(InputError::new(field, "is required"))
        };
    }
    if s.len() > MAX_CARRIER
        || !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Err(InputError::new(
            field,
            "must be 1 to 63 of a-z, 0-9, '-' and '.'",
        ));
    }
    Ok(s.to_owned())
}

/// A page of history: `(offset, size)` from the request's size (0 = the default) and token
/// (empty = the first page, else the offset a previous page answered).
pub fn page(size: u32, token: &str) -> Result<(u32, u32), InputError> {
    let size = match size {
        0 => DEFAULT_PAGE,
        n if n > MAX_PAGE => {
            return Err(InputError::new(
                "page_size",
                format!("is {n}; at most {MAX_PAGE} are allowed"),
            ));
        }
        n => n,
    };
    let offset = if token.is_empty() {
        0
    } else {
        token
            .parse::<u32>()
            .map_err(|_| InputError::new("page_token", "is not a token this service gave"))?
    };
    Ok((offset, size))
}

/// A point in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Coordinates {
    pub lat: f64,
    pub lng: f64,
}

impl Coordinates {
    pub fn new(field: &str, lat: f64, lng: f64) -> Result<Self, InputError> {
        if !(-90.0..=90.0).contains(&lat) {
            return Err(InputError::new(format!("{field}.lat"), "must be -90 to 90"));
        }
        if !(-180.0..=180.0).contains(&lng) {
            return Err(InputError::new(
                format!("{field}.lng"),
                "must be -180 to 180",
            ));
        }
        Ok(Self { lat, lng })
    }
}

/// An event as a carrier's webhook sends it (docs/tracking.md), unchecked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    /// The carrier's id of the event: the same id again is the same event.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub tracking_number: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub location: String,
    pub lat: Option<f64>,
    pub lng: Option<f64>,
    /// RFC 3339.
    #[serde(default)]
    pub at: String,
    #[serde(default)]
    pub note: String,
    /// RFC 3339, optional.
    pub estimated_delivery: Option<String>,
}

/// A checked event, ready to append: who reported it is added by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub source_event_id: String,
    pub kind: Status,
    pub location: String,
    pub coordinates: Option<Coordinates>,
    pub at: DateTime<Utc>,
    pub note: String,
    pub estimated_delivery: Option<DateTime<Utc>>,
}

fn text(field: String, s: &str, max: usize) -> Result<String, InputError> {
    let n = s.chars().count();
    if n > max {
        return Err(InputError::new(
            field,
            format!("has {n} characters; at most {max} are allowed"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(InputError::new(field, "may not hold control characters"));
    }
    Ok(s.trim().to_owned())
}

fn time(field: String, s: &str) -> Result<DateTime<Utc>, InputError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| InputError::new(field, format!("{s:?} is not an RFC 3339 time")))
}

impl EventInput {
    /// Checks the event at `prefix` (`events[3]`) as of `now`; answers its tracking number
    /// (upper case) and the event. CREATED is refused: only shipping creates a record.
    pub fn check(
        &self,
        prefix: &str,
        now: DateTime<Utc>,
    ) -> Result<(String, NewEvent), InputError> {
        let f = |name: &str| format!("{prefix}.{name}");
        let source_event_id = ident(f("id"), &self.id)?.to_owned();
        let number = tracking_number(&f("tracking_number"), &self.tracking_number)?;
        let kind = Status::parse(f("type"), &self.kind)?;
        if kind == Status::Created {
            return Err(InputError::new(
                f("type"),
                "CREATED is recorded when shipping creates the shipment",
            ));
        }
        let location = text(f("location"), &self.location, MAX_LOCATION)?;
        let coordinates = match (self.lat, self.lng) {
            (None, None) => None,
            (Some(lat), Some(lng)) => Some(Coordinates::new(prefix, lat, lng)?),
            (Some(_), None) => return Err(InputError::new(f("lng"), "is required with lat")),
            (None, Some(_)) => return Err(InputError::new(f("lat"), "is required with lng")),
        };
        if self.at.is_empty() {
            return Err(InputError::new(f("at"), "is required"));
        }
        let at = time(f("at"), &self.at)?;
        if at > now + MAX_CLOCK_SKEW {
            return Err(InputError::new(
                f("at"),
                format!("{at} is more than 5 minutes ahead of {now}"),
            ));
        }
        let note = text(f("note"), &self.note, MAX_NOTE)?;
        let estimated_delivery = self
            .estimated_delivery
            .as_deref()
            .map(|s| time(f("estimated_delivery"), s))
            .transpose()?;
        Ok((
            number,
            NewEvent {
                source_event_id,
                kind,
                location,
                coordinates,
                at,
                note,
                estimated_delivery,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000, 0).expect("time")
    }

    fn good() -> EventInput {
        EventInput {
            id: "ev-1".into(),
            tracking_number: "fr0123456789abcdef".into(),
            kind: "IN_TRANSIT".into(),
            location: " Singapore Hub ".into(),
            lat: Some(1.3),
            lng: Some(103.8),
            at: "2030-03-17T17:46:40Z".into(),
            note: "scanned at dock 4".into(),
            estimated_delivery: Some("2030-03-19T12:00:00+08:00".into()),
        }
    }

    fn field(e: &EventInput) -> String {
        e.check("events[2]", now()).expect_err("refused").field
    }

    #[test]
    fn a_good_event_is_normalised() {
        let (number, event) = good().check("events[0]", now()).expect("valid");
        assert_eq!(number, "FR0123456789ABCDEF");
        assert_eq!(event.kind, Status::InTransit);
        assert_eq!(event.location, "Singapore Hub");
        assert_eq!(
            event.coordinates,
            Some(Coordinates {
                lat: 1.3,
                lng: 103.8
            })
        );
        assert_eq!(
            event.at,
            DateTime::from_timestamp(1_900_000_000, 0).expect("t")
        );
        assert_eq!(
            event.estimated_delivery,
            DateTime::from_timestamp(1_900_123_200, 0)
        );
    }

    /// A change to a good event and the field its refusal names.
    type Case = (Box<dyn Fn(&mut EventInput)>, &'static str);

    #[test]
    fn every_bad_field_is_named() {
        let cases: Vec<Case> = vec![
            (Box::new(|e| e.id = String::new()), "events[2].id"),
            (Box::new(|e| e.id = "a b".into()), "events[2].id"),
            (
                Box::new(|e| e.tracking_number = "AB12".into()),
                "events[2].tracking_number",
            ),
            (
                Box::new(|e| e.tracking_number = "AB12-34567".into()),
                "events[2].tracking_number",
            ),
            (Box::new(|e| e.kind = "LOST".into()), "events[2].type"),
            (Box::new(|e| e.kind = "CREATED".into()), "events[2].type"),
            (
                Box::new(|e| e.location = "x".repeat(201)),
                "events[2].location",
            ),
            (
                Box::new(|e| e.location = "a\nb".into()),
                "events[2].location",
            ),
            (Box::new(|e| e.lat = Some(91.0)), "events[2].lat"),
            (Box::new(|e| e.lng = Some(f64::NAN)), "events[2].lng"),
            (Box::new(|e| e.lng = None), "events[2].lng"),
            (Box::new(|e| e.lat = None), "events[2].lat"),
            (Box::new(|e| e.at = String::new()), "events[2].at"),
            (Box::new(|e| e.at = "yesterday".into()), "events[2].at"),
            (
                Box::new(|e| e.at = "2030-03-17T17:52:00Z".into()),
                "events[2].at",
            ),
            (Box::new(|e| e.note = "n".repeat(1001)), "events[2].note"),
            (
                Box::new(|e| e.estimated_delivery = Some("soon".into())),
                "events[2].estimated_delivery",
            ),
        ];
        for (change, expected) in cases {
            let mut e = good();
            change(&mut e);
            assert_eq!(field(&e), expected, "{e:?}");
        }
        // Five minutes ahead is still accepted.
        let mut e = good();
        e.at = "2030-03-17T17:51:40Z".into();
        assert!(e.check("events[0]", now()).is_ok());
    }

    #[test]
    fn numbers_carriers_and_pages() {
        assert_eq!(
            tracking_number("n", "1z999aa10123456784"),
            Ok("1Z999AA10123456784".into())
        );
        assert_eq!(
            tracking_number("n", &"A".repeat(41)).map_err(|e| e.field),
            Err("n".into())
        );
        assert_eq!(carrier("carrier", "", true), Ok(String::new()));
        assert_eq!(
            carrier("carrier", "", false).map_err(|e| e.message),
            Err("is required".into())
        );
        assert_eq!(
            carrier("carrier", "flat-rate", false),
            Ok("flat-rate".into())
        );
        assert!(carrier("carrier", "Flat", true).is_err());
        assert_eq!(
            carrier("carrier", "dhl-express.asia", false),
            Ok("dhl-express.asia".into())
        );
        assert!(carrier("carrier", &"a".repeat(63), true).is_ok());
        assert!(carrier("carrier", &"a".repeat(64), true).is_err());
        assert_eq!(page(0, ""), Ok((0, DEFAULT_PAGE)));
        assert_eq!(page(100, "200"), Ok((200, 100)));
        assert_eq!(page(101, "").map_err(|e| e.field), Err("page_size".into()));
        assert_eq!(page(1, "x").map_err(|e| e.field), Err("page_token".into()));
    }
}
