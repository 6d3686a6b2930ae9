//! The versioned envelope every event travels in: `{id, type, version, cell, occurred_at,
//! payload}`, JSON on the wire so that any language can read a stream.

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
}

impl Envelope {
    pub fn new(
        cell: &str,
        kind: &str,
        version: u32,
        payload: &impl Serialize,
    ) -> Result<Self, KitError> {
        if !is_event_type(kind) {
            return Err(KitError::Event(format!(
                "event type {kind:?} must be dotted lower-case words, e.g. flashsale.purchased"
            )));
        }
        if version == 0 {
            return Err(KitError::Event("event versions start at 1".into()));
        }
        Ok(Self {
            id: Uuid::now_v7(),
            kind: kind.to_owned(),
            version,
            cell: cell.to_owned(),
            occurred_at: Utc::now(),
            payload: serde_json::to_value(payload)
                .map_err(|e| KitError::Event(format!("cannot encode {kind} payload: {e}")))?,
        })
    }

    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T, KitError> {
        serde_json::from_value(self.payload.clone()).map_err(|e| {
            KitError::Event(format!(
                "{} v{} payload does not parse: {e}",
                self.kind, self.version
            ))
        })
    }
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
    fn event_types_are_checked() {
        for bad in ["purchased", "Flash.sale", "a..b", "a.1b", ""] {
            assert!(Envelope::new("c", bad, 1, &()).is_err(), "{bad}");
        }
        assert!(Envelope::new("c", "flashsale.purchased", 0, &()).is_err());
    }
}
