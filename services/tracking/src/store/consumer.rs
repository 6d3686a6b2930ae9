//! Appends from the bus, inside kit's consumer transaction (so a redelivered envelope is
//! skipped by kit, and an event is appended once even if it came twice under one id: the
//! envelope id is the source event id). What each event means is in docs/tracking.md:
//! - `shipping.shipment_created` creates the record with its CREATED event;
//!   `shipping.shipment_cancelled` appends CANCELLED (final; accepted only before anything
//!   moved the parcel, like shipping's own cancel).
//! - `driver.delivery_in_transit` and `driver.delivery_at_location` append OUT_FOR_DELIVERY,
//!   `driver.delivery_completed` DELIVERED, `driver.delivery_failed` EXCEPTION and
//!   `driver.delivery_rescheduled` IN_TRANSIT (back in the network until the next attempt);
//!   `driver.delivery_assigned` moves no parcel and is skipped.
//!
//! A driver event or a cancellation for a shipment tracking does not know yet is retried
//! (shipping's `shipment_created` may arrive later: the streams are not ordered across
//! services) until the consumer's maxDeliveries, then dead-lettered.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use titan_kit::events::{Envelope, Handler, HandlerError};
use uuid::Uuid;

use super::pg::{CreateError, NewRecord, PgTracking, append_in, create_in, record_by_shipment_in};
use crate::{
    app::{Tracking, TrackingError},
    domain::{Coordinates, NewEvent, Status, input},
};

/// The services whose streams tracking reads, one consumer each.
pub const SOURCES: [&str; 2] = ["shipping", "driver"];

/// The fields of `shipping.shipment_created` v1 tracking needs.
#[derive(Debug, Deserialize)]
struct ShipmentCreated {
    shipment_id: String,
    #[serde(default)]
    order_id: String,
    tracking_number: String,
    carrier: String,
    #[serde(default)]
    service_level: String,
    #[serde(default)]
    owner_id: String,
    created_at: Option<DateTime<Utc>>,
}

/// The fields of `shipping.shipment_cancelled` v1 tracking needs.
#[derive(Debug, Deserialize)]
struct ShipmentCancelled {
    shipment_id: String,
    cancelled_at: Option<DateTime<Utc>>,
}

/// The fields of every `driver.delivery_*` v1 event tracking needs.
#[derive(Debug, Deserialize)]
struct DeliveryChanged {
    delivery_id: Uuid,
    shipment_id: String,
    driver_id: Option<Uuid>,
    at: DateTime<Utc>,
    /// `[lat, lng]` of the driver when the status changed.
    location: Option<[f64; 2]>,
}

/// A driver event's status on the tracking record and the note it leaves; `None` for an
/// event that moves no parcel.
pub fn driver_status(kind: &str) -> Option<(Status, &'static str)> {
    Some(match kind {
        "driver.delivery_in_transit" => (Status::OutForDelivery, "the driver departed"),
        "driver.delivery_at_location" => (Status::OutForDelivery, "the driver is at the address"),
        "driver.delivery_completed" => (Status::Delivered, "delivered with a proof"),
        "driver.delivery_failed" => (Status::Exception, "the delivery attempt failed"),
        "driver.delivery_rescheduled" => (Status::InTransit, "the delivery was rescheduled"),
        _ => return None,
    })
}

#[derive(Clone)]
pub struct EventHandler {
    app: Arc<Tracking<PgTracking>>,
}

impl std::fmt::Debug for EventHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHandler").finish_non_exhaustive()
    }
}

impl EventHandler {
    pub fn new(app: Arc<Tracking<PgTracking>>) -> Self {
        Self { app }
    }
}

fn permanent(event: &Envelope, e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Permanent(format!("{} {}: {e}", event.kind, event.id))
}

fn stored(e: TrackingError) -> HandlerError {
    match e {
        TrackingError::Kit(e) => HandlerError::Retry(e.to_string()),
        // A record full of events stays full: retrying cannot help.
        other => HandlerError::Permanent(other.to_string()),
    }
}

/// The source and event id an envelope is appended under.
fn source_of(event: &Envelope) -> Option<&'static str> {
    event
        .kind
        .split_once('.')
        .and_then(|(s, _)| SOURCES.into_iter().find(|&k| k == s))
}

impl EventHandler {
    async fn created(
        &self,
        tx: &mut sqlx::PgConnection,
        event: &Envelope,
    ) -> Result<(), HandlerError> {
        let p: ShipmentCreated = event.payload_as().map_err(|e| permanent(event, e))?;
        let new = NewRecord {
            tracking_number: input::tracking_number("tracking_number", &p.tracking_number)
                .map_err(|e| permanent(event, e))?,
            carrier: input::carrier("carrier", &p.carrier, false)
                .map_err(|e| permanent(event, e))?,
            shipment_id: titan_kit::input::ident("shipment_id", &p.shipment_id)
                .map_err(|e| permanent(event, e))?
                .to_owned(),
            order_id: p.order_id,
            service_level: p.service_level,
            owner_id: p.owner_id,
        };
        let created = NewEvent {
            source_event_id: event.id.to_string(),
            kind: Status::Created,
            location: String::new(),
            coordinates: None,
            at: p.created_at.unwrap_or(event.occurred_at),
            note: format!("shipment {} created", new.shipment_id),
            estimated_delivery: None,
        };
        match create_in(tx, &new, &created, "shipping", self.app.now()).await {
            Ok(_) => Ok(()),
            Err(e @ CreateError::NumberTaken { .. }) => Err(permanent(event, e)),
            Err(CreateError::Store(e)) => Err(stored(e)),
        }
    }

    /// Appends `new` to the shipment's record; retried while the record is not there.
    async fn append(
        &self,
        tx: &mut sqlx::PgConnection,
        event: &Envelope,
        shipment_id: &str,
        new: NewEvent,
    ) -> Result<(), HandlerError> {
        let source =
            source_of(event).ok_or_else(|| permanent(event, "not from a source tracking reads"))?;
        let record = record_by_shipment_in(tx, shipment_id)
            .await
            .map_err(stored)?
            .ok_or_else(|| {
                HandlerError::Retry(format!(
                    "{} {}: no tracking record for shipment {shipment_id} yet",
                    event.kind, event.id
                ))
            })?;
        append_in(tx, record.id, source, &new, self.app.now())
            .await
            .map_err(stored)?;
        Ok(())
    }
}

impl Handler for EventHandler {
    async fn handle(
        &self,
        tx: &mut sqlx::PgConnection,
        event: &Envelope,
    ) -> Result<(), HandlerError> {
        match event.kind.as_str() {
            "shipping.shipment_created" => self.created(tx, event).await,
            "shipping.shipment_cancelled" => {
                let p: ShipmentCancelled = event.payload_as().map_err(|e| permanent(event, e))?;
                let new = NewEvent {
                    source_event_id: event.id.to_string(),
                    kind: Status::Cancelled,
                    location: String::new(),
                    coordinates: None,
                    at: p.cancelled_at.unwrap_or(event.occurred_at),
                    note: format!("shipment {} cancelled", p.shipment_id),
                    estimated_delivery: None,
                };
                self.append(tx, event, &p.shipment_id, new).await
            }
            kind => {
                let Some((status, note)) = driver_status(kind) else {
                    return Ok(());
                };
                let p: DeliveryChanged = event.payload_as().map_err(|e| permanent(event, e))?;
                let coordinates = p
                    .location
                    .map(|[lat, lng]| Coordinates::new("location", lat, lng))
                    .transpose()
                    .map_err(|e| permanent(event, e))?;
                let by = p
                    .driver_id
                    .map(|d| format!(" by driver {d}"))
                    .unwrap_or_default();
                let new = NewEvent {
                    source_event_id: event.id.to_string(),
                    kind: status,
                    location: String::new(),
                    coordinates,
                    at: p.at,
                    note: format!("{note} (delivery {}{by})", p.delivery_id),
                    estimated_delivery: None,
                };
                self.append(tx, event, &p.shipment_id, new).await
            }
        }
    }

    async fn committed(&self, event: &Envelope) {
        if let Some(source) = source_of(event) {
            self.app
                .publish_appended(source, &event.id.to_string())
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_events_map_to_statuses() {
        let mapped: Vec<_> = [
            "driver.delivery_assigned",
            "driver.delivery_in_transit",
            "driver.delivery_at_location",
            "driver.delivery_completed",
            "driver.delivery_failed",
            "driver.delivery_rescheduled",
            "driver.driver_registered",
        ]
        .into_iter()
        .map(|k| driver_status(k).map(|(s, _)| s.as_str()))
        .collect();
        assert_eq!(
            mapped,
            [
                None,
                Some("OUT_FOR_DELIVERY"),
                Some("OUT_FOR_DELIVERY"),
                Some("DELIVERED"),
                Some("EXCEPTION"),
                Some("IN_TRANSIT"),
                None
            ]
        );
    }
}
