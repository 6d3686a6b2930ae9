//! The versioned envelope every event travels in: `{id, type, version, cell, occurred_at,
//! payload}` and, when traces are exported, the `traceparent` of the request that wrote it;
//! JSON on the wire so that any language can read a stream.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;

use crate::KitError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique per event; consumers de-duplicate on it. UUIDv7, so ids sort by time.
    pub id: Uuid,
    /// `<service>.<what happened>`, e.g. `flashsale.purchased`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Version of the payload's schema; bumped on incompatible change.
    pub version: u32,
    pub cell: String,
    pub occurred_at: DateTime<Utc>,
    pub payload: serde_json::Value,
    /// The W3C `traceparent` of the span that made the event, when traces are exported: the
    /// relay and every consumer continue that trace. Absent from events written without
    /// tracing, and from those stored before the field existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl Envelope {
    pub fn new(
        cell: &str,
        kind: &str,
        version: u32,
        payload: &impl Serialize,
    ) -> Result<Self, KitError> {
        check(kind, version)?;
        Ok(Self {
            id: Uuid::now_v7(),
            kind: kind.to_owned(),
            version,
            cell: cell.to_owned(),
            occurred_at: Utc::now(),
            payload: serde_json::to_value(payload)
                .map_err(|e| KitError::Event(format!("cannot encode {kind} payload: {e}")))?,
            traceparent: crate::telemetry::traceparent(),
        })
    }

    /// The JSON of the envelope [`Envelope::new`] would make of `payload`, written in one pass:
    /// the payload goes straight into the text instead of through a `serde_json::Value` (a
    /// map built and dropped per event). Readers parse it as any envelope; only the order of
    /// the payload's keys may differ (a struct's field order instead of sorted).
    pub fn encode(
        cell: &str,
        kind: &str,
        version: u32,
        payload: &impl Serialize,
    ) -> Result<String, KitError> {
        check(kind, version)?;
        serde_json::to_string(&Encoded {
            id: Uuid::now_v7(),
            kind,
            version,
            cell,
            occurred_at: Utc::now(),
            payload,
            traceparent: crate::telemetry::traceparent(),
        })
        .map_err(|e| KitError::Event(format!("cannot encode {kind} payload: {e}")))
    }

    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T, KitError> {
        serde_json::from_value(self.payload.clone())
            .map_err(|e| unreadable(&self.kind, self.version, &e))
    }

    /// The payload as `T`, consuming the envelope: [`Envelope::payload_as`] without copying the
    /// payload first.
    pub fn into_payload<T: DeserializeOwned>(self) -> Result<T, KitError> {
        serde_json::from_value(self.payload).map_err(|e| unreadable(&self.kind, self.version, &e))
    }
}

fn unreadable(kind: &str, version: u32, e: &serde_json::Error) -> KitError {
    KitError::Event(format!("{kind} v{version} payload does not parse: {e}"))
}

/// [`Envelope`]'s fields, borrowed, for [`Envelope::encode`]: the same names in the same order.
#[derive(Serialize)]
struct Encoded<'a, P> {
    id: Uuid,
    #[serde(rename = "type")]
    kind: &'a str,
    version: u32,
    cell: &'a str,
    occurred_at: DateTime<Utc>,
    payload: &'a P,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
}

/// Refuses an event type that is not dotted lower-case words, and version 0.
fn check(kind: &str, version: u32) -> Result<(), KitError> {
    if !is_event_type(kind) {
        return Err(KitError::Event(format!(
            "event type {kind:?} must be dotted lower-case words, e.g. flashsale.purchased"
        )));
    }
    if version == 0 {
        return Err(KitError::Event("event versions start at 1".into()));
    }
    Ok(())
}

fn is_event_type(kind: &str) -> bool {
    let mut words = 0;
    for word in kind.split('.') {
        let mut bytes = word.bytes();
        let first_ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase());
        if !first_ok || !bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return false;
        }
        words += 1;
    }
    words >= 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_as_json() {
        let e = Envelope::new(
            "sg-1",
            "flashsale.purchased",
            1,
            &serde_json::json!({"qty": 2}),
        )
        .expect("valid");
        let json = serde_json::to_string(&e).expect("encode");
        assert!(json.contains("\"type\":\"flashsale.purchased\""));
        let back: Envelope = serde_json::from_str(&json).expect("decode");
        assert_eq!(back, e);
    }

    #[test]
    fn an_encoded_envelope_reads_as_the_one_new_makes() {
        #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
        struct Bought {
            sku: String,
            qty: u32,
            price: f64,
            note: Option<String>,
        }
        let payload = Bought {
            sku: "a-1".into(),
            qty: 2,
            price: 0.1,
            note: None,
        };
        let json = Envelope::encode("sg-1", "flashsale.purchased", 3, &payload).expect("valid");
        let read: Envelope = serde_json::from_str(&json).expect("decode");
        let made = Envelope::new("sg-1", "flashsale.purchased", 3, &payload).expect("valid");
        assert_eq!(
            (&read.kind, read.version, &read.cell, &read.payload),
            (&made.kind, made.version, &made.cell, &made.payload)
        );
        assert_eq!(read.id.get_version_num(), 7);
        assert_eq!(
            read.clone().into_payload::<Bought>().expect("payload"),
            payload
        );
        assert_eq!(read.payload_as::<Bought>().expect("payload"), payload);
        let wrong = read.into_payload::<u32>().expect_err("not a number");
        assert!(
            wrong
                .to_string()
                .contains("flashsale.purchased v3 payload does not parse"),
            "{wrong}"
        );
        assert!(Envelope::encode("c", "purchased", 1, &()).is_err());
        assert!(Envelope::encode("c", "flashsale.purchased", 0, &()).is_err());
    }

    #[test]
    fn an_envelope_stored_before_traceparent_existed_still_reads() {
        let stored = r#"{"id":"01890a5d-ac96-774b-bcce-b302099a8057","type":"flashsale.purchased","version":1,"cell":"sg-1","occurred_at":"2026-01-01T00:00:00Z","payload":{"qty":2}}"#;
        let read: Envelope = serde_json::from_str(stored).expect("decode");
        assert_eq!(read.traceparent, None);
        // Without traces nothing is added to what is written either.
        let json = serde_json::to_string(&read).expect("encode");
        assert!(!json.contains("traceparent"), "{json}");
        let traced = Envelope {
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            ..read
        };
        let back: Envelope =
            serde_json::from_str(&serde_json::to_string(&traced).expect("encode")).expect("decode");
        assert_eq!(back, traced);
    }

    #[test]
    fn event_types_are_checked() {
        for bad in ["purchased", "Flash.sale", "a..b", "a.1b", ""] {
            assert!(Envelope::new("c", bad, 1, &()).is_err(), "{bad}");
        }
        assert!(Envelope::new("c", "flashsale.purchased", 0, &()).is_err());
    }
}
