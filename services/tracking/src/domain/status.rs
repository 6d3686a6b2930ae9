//! The status of a tracking record, computed from its events and nothing else.
//!
//! [`status_of`] sorts the events by time, with a documented tie-break, and folds them
//! through the guarded machine of [`Status::accepts`] starting from CREATED: an event the
//! status at its place in time does not accept is kept in the history (flagged not applied)
//! but moves nothing. Because the outcome depends only on the set of events, events that
//! arrive late or out of order give the same status as if they had arrived in time order.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::input::Coordinates;

/// A record's status, and the type of an event (an event of type X moves the record to X).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// The shipment exists and has a label; the record's first status.
    Created,
    PickedUp,
    InTransit,
    AtFacility,
    OutForDelivery,
    Exception,
    Delivered,
    Returned,
    /// Shipping cancelled the shipment before pickup.
    Cancelled,
}

titan_kit::names!(Status {
    Created => "CREATED",
    PickedUp => "PICKED_UP",
    InTransit => "IN_TRANSIT",
    AtFacility => "AT_FACILITY",
    OutForDelivery => "OUT_FOR_DELIVERY",
    Exception => "EXCEPTION",
    Delivered => "DELIVERED",
    Returned => "RETURNED",
    Cancelled => "CANCELLED",
});

impl Status {
    /// DELIVERED, RETURNED and CANCELLED: nothing moves a record on from them.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Delivered | Self::Returned | Self::Cancelled)
    }

    /// Whether an event of type `next` moves a record that is in `self`. Repeats of the
    /// in-network statuses are accepted (each scan updates the location); CREATED only
    /// confirms CREATED; a parcel goes back into the network (IN_TRANSIT) after a failed
    /// attempt or an exception; it is cancelled only before anything moved it and returned
    /// only after something did.
    pub fn accepts(self, next: Status) -> bool {
        use Status::*;
        if self.is_final() {
            return false;
        }
        match next {
            Created | PickedUp | Cancelled => self == Created,
            InTransit | Exception => true,
            AtFacility => matches!(self, Created | PickedUp | InTransit | AtFacility),
            OutForDelivery | Delivered => {
                matches!(
                    self,
                    Created | PickedUp | InTransit | AtFacility | OutForDelivery
                )
            }
            Returned => self != Created,
        }
    }
}

/// An event as it is stored: appended once, never changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Tracking's own id (UUIDv7).
    pub id: Uuid,
    pub kind: Status,
    /// The place name; empty when unknown.
    pub location: String,
    pub coordinates: Option<Coordinates>,
    /// When it happened, as its source says.
    pub at: DateTime<Utc>,
    /// Internal; never shown to recipients.
    pub note: String,
    /// `shipping`, `driver` or `carrier:<name>`.
    pub source: String,
    /// Unique per source: a bus envelope id or a carrier's event id.
    pub source_event_id: String,
    pub estimated_delivery: Option<DateTime<Utc>>,
    /// When tracking stored it.
    pub recorded_at: DateTime<Utc>,
}

/// The order of a record's history: by time, then by the machine's order of the types (so
/// of two scans in the same second, OUT_FOR_DELIVERY comes before DELIVERED whatever order
/// they arrived in), then by source and the source's event id, which together are unique.
/// The order is total, so the history and the status do not depend on arrival.
pub fn history_order(a: &Event, b: &Event) -> Ordering {
    (a.at, a.kind, &a.source, &a.source_event_id).cmp(&(
        b.at,
        b.kind,
        &b.source,
        &b.source_event_id,
    ))
}

/// One event of the history and whether it moved the status.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry<'a> {
    pub event: &'a Event,
    pub applied: bool,
}

/// What a record's events imply.
#[derive(Debug, Clone, PartialEq)]
pub struct Folded<'a> {
    pub status: Status,
    /// The place name of the latest applied event that named one.
    pub location: String,
    /// The coordinates of the latest applied event that had them.
    pub coordinates: Option<Coordinates>,
    /// The estimate of the latest applied event that carried one.
    pub estimated_delivery: Option<DateTime<Utc>>,
    /// Every event, in [`history_order`].
    pub history: Vec<Entry<'a>>,
}

/// Sorts `events` by [`history_order`] and folds them through [`Status::accepts`] from
/// CREATED (a record exists from its shipment's creation, so an early scan whose clock runs
/// behind shipping's still applies).
pub fn status_of(events: &[Event]) -> Folded<'_> {
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by(|a, b| history_order(a, b));
    let mut folded = Folded {
        status: Status::Created,
        location: String::new(),
        coordinates: None,
        estimated_delivery: None,
        history: Vec::with_capacity(sorted.len()),
    };
    for event in sorted {
        let applied = folded.status.accepts(event.kind);
        if applied {
            folded.status = event.kind;
            if !event.location.is_empty() {
                folded.location.clone_from(&event.location);
            }
            if event.coordinates.is_some() {
                folded.coordinates = event.coordinates;
            }
            if event.estimated_delivery.is_some() {
                folded.estimated_delivery = event.estimated_delivery;
            }
        }
        folded.history.push(Entry { event, applied });
    }
    folded
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000 + s, 0).expect("time")
    }

    fn event(n: u32, kind: Status, at: i64) -> Event {
        Event {
            id: Uuid::from_u128(u128::from(n)),
            kind,
            location: format!("place {n}"),
            coordinates: None,
            at: t(at),
            note: String::new(),
            source: "carrier:acme".into(),
            source_event_id: format!("e{n}"),
            estimated_delivery: None,
            recorded_at: t(at),
        }
    }

    fn statuses(folded: &Folded<'_>) -> Vec<(&'static str, bool)> {
        folded
            .history
            .iter()
            .map(|e| (e.event.kind.as_str(), e.applied))
            .collect()
    }

    #[test]
    fn the_machine_table() {
        use Status::*;
        let table: [(Status, &[Status]); 9] = [
            (
                Created,
                &[
                    Created,
                    PickedUp,
                    InTransit,
                    AtFacility,
                    OutForDelivery,
                    Exception,
                    Delivered,
                    Cancelled,
                ],
            ),
            (
                PickedUp,
                &[
                    InTransit,
                    AtFacility,
                    OutForDelivery,
                    Exception,
                    Delivered,
                    Returned,
                ],
            ),
            (
                InTransit,
                &[
                    InTransit,
                    AtFacility,
                    OutForDelivery,
                    Exception,
                    Delivered,
                    Returned,
                ],
            ),
            (
                AtFacility,
                &[
                    InTransit,
                    AtFacility,
                    OutForDelivery,
                    Exception,
                    Delivered,
                    Returned,
                ],
            ),
            (
                OutForDelivery,
                &[InTransit, OutForDelivery, Exception, Delivered, Returned],
            ),
            (Exception, &[InTransit, Exception, Returned]),
            (Delivered, &[]),
            (Returned, &[]),
            (Cancelled, &[]),
        ];
        for (from, allowed) in table {
            for &to in Status::ALL {
                assert_eq!(from.accepts(to), allowed.contains(&to), "{from} → {to}");
            }
        }
    }

    #[test]
    fn a_parcel_from_creation_to_delivery() {
        let events = [
            event(1, Status::Created, 0),
            event(2, Status::PickedUp, 10),
            event(3, Status::InTransit, 20),
            event(4, Status::AtFacility, 30),
            event(5, Status::OutForDelivery, 40),
            event(6, Status::Delivered, 50),
        ];
        let folded = status_of(&events);
        assert_eq!(folded.status, Status::Delivered);
        assert_eq!(folded.location, "place 6");
        assert!(folded.history.iter().all(|e| e.applied));
    }

    #[test]
    fn an_exception_recovers_only_through_in_transit() {
        let events = [
            event(1, Status::Created, 0),
            event(2, Status::OutForDelivery, 10),
            event(3, Status::Exception, 20),
            event(4, Status::OutForDelivery, 30),
            event(5, Status::InTransit, 40),
            event(6, Status::OutForDelivery, 50),
        ];
        let folded = status_of(&events);
        assert_eq!(folded.status, Status::OutForDelivery);
        assert_eq!(
            statuses(&folded),
            [
                ("CREATED", true),
                ("OUT_FOR_DELIVERY", true),
                ("EXCEPTION", true),
                ("OUT_FOR_DELIVERY", false),
                ("IN_TRANSIT", true),
                ("OUT_FOR_DELIVERY", true),
            ]
        );
        // The refused event's place does not become the record's.
        assert_eq!(folded.location, "place 6");
    }

    #[test]
    fn final_statuses_stay_and_later_events_are_kept_unapplied() {
        let events = [
            event(1, Status::Created, 0),
            event(2, Status::Delivered, 10),
            event(3, Status::Exception, 20),
            event(4, Status::Returned, 30),
        ];
        let folded = status_of(&events);
        assert_eq!(folded.status, Status::Delivered);
        assert_eq!(
            statuses(&folded),
            [
                ("CREATED", true),
                ("DELIVERED", true),
                ("EXCEPTION", false),
                ("RETURNED", false)
            ]
        );
        assert_eq!(folded.location, "place 2");
        // Cancelled only before anything moved the parcel; returned only after.
        let cancelled = [event(1, Status::Created, 0), event(2, Status::Cancelled, 5)];
        assert_eq!(status_of(&cancelled).status, Status::Cancelled);
        let late = [
            event(1, Status::PickedUp, 0),
            event(2, Status::Cancelled, 5),
        ];
        assert_eq!(status_of(&late).status, Status::PickedUp);
        let returned = [event(1, Status::Created, 0), event(2, Status::Returned, 5)];
        assert_eq!(status_of(&returned).status, Status::Created);
    }

    #[test]
    fn late_arrivals_take_their_place_in_time() {
        // Delivered arrived first, the scans before it later: the history is in time order.
        let events = [
            event(6, Status::Delivered, 50),
            event(1, Status::Created, 0),
            event(5, Status::OutForDelivery, 40),
            event(3, Status::InTransit, 20),
        ];
        let folded = status_of(&events);
        assert_eq!(folded.status, Status::Delivered);
        assert_eq!(
            folded
                .history
                .iter()
                .map(|e| e.event.id.as_u128())
                .collect::<Vec<_>>(),
            [1, 3, 5, 6]
        );
    }

    #[test]
    fn ties_in_time_follow_the_machine_then_the_source_ids() {
        let mut delivered = event(2, Status::Delivered, 10);
        delivered.source = "driver".into();
        let out = event(1, Status::OutForDelivery, 10);
        let events = [delivered, out];
        let folded = status_of(&events);
        assert_eq!(
            statuses(&folded),
            [("OUT_FOR_DELIVERY", true), ("DELIVERED", true)]
        );
        let a = event(7, Status::InTransit, 10);
        let mut b = event(8, Status::InTransit, 10);
        b.source_event_id = "a0".into();
        let events = [a, b];
        let folded = status_of(&events);
        assert_eq!(folded.history[0].event.id.as_u128(), 8);
    }

    #[test]
    fn estimates_and_coordinates_come_from_the_latest_applied_event_with_one() {
        let mut first = event(1, Status::InTransit, 10);
        first.estimated_delivery = Some(t(1000));
        first.coordinates = Some(Coordinates { lat: 1.0, lng: 2.0 });
        let mut second = event(2, Status::AtFacility, 20);
        second.location = String::new();
        let mut refused = event(3, Status::PickedUp, 30);
        refused.estimated_delivery = Some(t(5));
        let events = [first, second, refused];
        let folded = status_of(&events);
        assert_eq!(folded.status, Status::AtFacility);
        assert_eq!(folded.location, "place 1");
        assert_eq!(folded.estimated_delivery, Some(t(1000)));
        assert_eq!(folded.coordinates, Some(Coordinates { lat: 1.0, lng: 2.0 }));
    }

    fn kind() -> impl Strategy<Value = Status> {
        proptest::sample::select(Status::ALL)
    }

    /// Up to 30 events with times in a small range (so ties happen) and unique source ids.
    fn events() -> impl Strategy<Value = Vec<Event>> {
        proptest::collection::vec((kind(), 0_i64..20, 0_u8..3), 0..30).prop_map(|raw| {
            raw.into_iter()
                .enumerate()
                .map(|(n, (kind, at, source))| {
                    let n = u32::try_from(n).expect("few events");
                    let mut e = event(n, kind, at);
                    e.source = ["driver", "shipping", "carrier:acme"][usize::from(source)].into();
                    e
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn any_arrival_order_gives_the_same_status_and_history(
            events in events(),
            shuffle in proptest::collection::vec(any::<proptest::sample::Index>(), 30),
        ) {
            let mut shuffled = events.clone();
            // A Fisher–Yates shuffle driven by proptest, so a failure shrinks and replays.
            for i in (1..shuffled.len()).rev() {
                let j = shuffle[i].index(i + 1);
                shuffled.swap(i, j);
            }
            let a = status_of(&events);
            let b = status_of(&shuffled);
            prop_assert_eq!(a.status, b.status);
            prop_assert_eq!(&a.location, &b.location);
            prop_assert_eq!(a.estimated_delivery, b.estimated_delivery);
            let order = |f: &Folded<'_>| f.history.iter().map(|e| (e.event.id, e.applied)).collect::<Vec<_>>();
            prop_assert_eq!(order(&a), order(&b));
            // The history is in time order and the status is the last applied event's.
            prop_assert!(a.history.windows(2).all(|w| w[0].event.at <= w[1].event.at));
            let last_applied = a.history.iter().rev().find(|e| e.applied).map_or(Status::Created, |e| e.event.kind);
            prop_assert_eq!(a.status, last_applied);
        }
    }
}
