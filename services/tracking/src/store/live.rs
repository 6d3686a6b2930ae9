//! The fan-out of appended events to `Subscribe` streams on every replica: the realtime
//! topic `tracking:<record id>` of kit's hub (Redis pub/sub), one `event` frame per appended
//! event, published after the transaction that appended it committed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use titan_kit::{
    KitError,
    realtime::{Listener, Realtime},
};
use uuid::Uuid;

use crate::domain::{Coordinates, Event, Status};

/// The frame type of an appended event.
pub const EVENT_FRAME: &str = "event";

/// An event as a subscriber receives it, with the record's status after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub status: Status,
    pub event: Event,
    /// Whether the event moved the status when it was appended.
    pub applied: bool,
}

/// An appended event on its way to the record's subscribers.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveEvent {
    pub record: Uuid,
    pub update: Update,
}

/// [`Update`] on the wire: statuses as their names.
#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    status: String,
    applied: bool,
    id: Uuid,
    kind: String,
    location: String,
    coordinates: Option<Coordinates>,
    at: DateTime<Utc>,
    note: String,
    source: String,
    source_event_id: String,
    estimated_delivery: Option<DateTime<Utc>>,
    recorded_at: DateTime<Utc>,
}

impl Wire {
    fn of(u: &Update) -> Self {
        let e = &u.event;
        Self {
            status: u.status.as_str().to_owned(),
            applied: u.applied,
            id: e.id,
            kind: e.kind.as_str().to_owned(),
            location: e.location.clone(),
            coordinates: e.coordinates,
            at: e.at,
            note: e.note.clone(),
            source: e.source.clone(),
            source_event_id: e.source_event_id.clone(),
            estimated_delivery: e.estimated_delivery,
            recorded_at: e.recorded_at,
        }
    }

    fn update(self) -> Option<Update> {
        Some(Update {
            status: Status::from_name(&self.status)?,
            applied: self.applied,
            event: Event {
                id: self.id,
                kind: Status::from_name(&self.kind)?,
                location: self.location,
                coordinates: self.coordinates,
                at: self.at,
                note: self.note,
                source: self.source,
                source_event_id: self.source_event_id,
                estimated_delivery: self.estimated_delivery,
                recorded_at: self.recorded_at,
            },
        })
    }
}

/// The frame the hub delivers: `{type, payload}`.
#[derive(Debug, Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    payload: Wire,
}

/// A `{type, payload}` frame of a record's topic → its update; `None` for anything else.
pub fn parse_frame(text: &str) -> Option<Update> {
    let frame: Frame = serde_json::from_str(text).ok()?;
    (frame.kind == EVENT_FRAME)
        .then(|| frame.payload.update())
        .flatten()
}

/// The realtime topic of a record's events.
pub fn topic(record: Uuid) -> String {
    format!("tracking:{record}")
}

#[derive(Debug, Clone)]
pub struct Live {
    realtime: Realtime,
}

impl Live {
    pub fn new(realtime: Realtime) -> Self {
        Self { realtime }
    }

    /// Sends the appended event to the record's subscribers on every replica.
    pub async fn publish(&self, live: &LiveEvent) -> Result<(), KitError> {
        let hub = self.realtime.hub().ok_or_else(|| {
            KitError::Other(
                "tracking subscriptions need the realtime hub, which needs redis".into(),
            )
        })?;
        hub.publish(&topic(live.record), EVENT_FRAME, &Wire::of(&live.update))
            .await
            .map_err(|e| KitError::Other(e.to_string()))
    }

    /// The record's events as they are published, at most `capacity` unread; subscribed
    /// when this returns.
    pub async fn listen(&self, record: Uuid, capacity: usize) -> Result<Listener, KitError> {
        self.realtime.listen(&topic(record), capacity).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_travel_as_frames_and_read_back() {
        let at = DateTime::from_timestamp(1_900_000_000, 0).expect("time");
        let update = Update {
            status: Status::OutForDelivery,
            applied: true,
            event: Event {
                id: Uuid::from_u128(7),
                kind: Status::OutForDelivery,
                location: "Jurong".into(),
                coordinates: Some(Coordinates {
                    lat: 1.3,
                    lng: 103.7,
                }),
                at,
                note: "driver departed".into(),
                source: "driver".into(),
                source_event_id: "e-1".into(),
                estimated_delivery: None,
                recorded_at: at,
            },
        };
        let text = serde_json::json!({"type": "event", "payload": Wire::of(&update)});
        assert_eq!(parse_frame(&text.to_string()), Some(update.clone()));
        let other = serde_json::json!({"type": "other", "payload": Wire::of(&update)});
        assert_eq!(parse_frame(&other.to_string()), None);
        let mut bad = serde_json::json!({"type": "event", "payload": Wire::of(&update)});
        bad["payload"]["kind"] = "LOST".into();
        assert_eq!(parse_frame(&bad.to_string()), None);
    }
}
