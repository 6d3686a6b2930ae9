//! Deliveries and their state machine. PENDING until a route takes it (ASSIGNED), then
//! IN_TRANSIT when the driver heads for it, AT_LOCATION on arrival, and COMPLETED only there
//! with a proof of delivery; FAILED after an attempt (in transit or at the door); RESCHEDULED
//! with a new window from any open status, after which a later route may take it again.
//! COMPLETED and FAILED are final. Each transition publishes `driver.delivery_<status>`.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{InputError, Transition, driver::MAX_CAPACITY};

/// Longest time window a delivery may have.
pub const MAX_WINDOW: Duration = Duration::days(7);
/// Longest delivery address, in characters.
pub const MAX_ADDRESS_CHARS: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryStatus {
    Pending,
    Assigned,
    InTransit,
    AtLocation,
    Completed,
    Failed,
    Rescheduled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryAction {
    /// A route assigned to a driver includes it.
    Assign,
    /// The driver heads for it.
    Depart,
    Arrive,
    /// With a proof of delivery.
    Complete,
    Fail,
    /// A new window, at the customer's or the dispatcher's request.
    Reschedule,
}

titan_kit::names!(DeliveryStatus {
    Pending => "PENDING",
    Assigned => "ASSIGNED",
    InTransit => "IN_TRANSIT",
    AtLocation => "AT_LOCATION",
    Completed => "COMPLETED",
    Failed => "FAILED",
    Rescheduled => "RESCHEDULED",
});
titan_kit::names!(DeliveryAction {
    Assign => "ASSIGN",
    Depart => "DEPART",
    Arrive => "ARRIVE",
    Complete => "COMPLETE",
    Fail => "FAIL",
    Reschedule => "RESCHEDULE",
});

impl DeliveryStatus {
    /// Nothing moves the delivery any more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }

    /// The delivery no longer needs its route's driver: the route completes when every
    /// stop is settled.
    pub fn settles_stop(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Rescheduled)
    }
}

impl DeliveryAction {
    /// The outbox event type the transition publishes (tracking consumes them).
    pub fn event(self) -> &'static str {
        match self {
            Self::Assign => "driver.delivery_assigned",
            Self::Depart => "driver.delivery_in_transit",
            Self::Arrive => "driver.delivery_at_location",
            Self::Complete => "driver.delivery_completed",
            Self::Fail => "driver.delivery_failed",
            Self::Reschedule => "driver.delivery_rescheduled",
        }
    }
}

impl Transition for DeliveryAction {
    type Status = DeliveryStatus;
    const SUBJECT: &'static str = "delivery";

    fn leaves_from(self) -> &'static [DeliveryStatus] {
        use DeliveryStatus::*;
        match self {
            Self::Assign => &[Pending, Rescheduled],
            Self::Depart => &[Assigned],
            Self::Arrive => &[InTransit],
            Self::Complete => &[AtLocation],
            Self::Fail => &[InTransit, AtLocation],
            Self::Reschedule => &[Pending, Assigned, InTransit, AtLocation],
        }
    }

    fn target(self) -> DeliveryStatus {
        match self {
            Self::Assign => DeliveryStatus::Assigned,
            Self::Depart => DeliveryStatus::InTransit,
            Self::Arrive => DeliveryStatus::AtLocation,
            Self::Complete => DeliveryStatus::Completed,
            Self::Fail => DeliveryStatus::Failed,
            Self::Reschedule => DeliveryStatus::Rescheduled,
        }
    }
}

/// When the customer accepts the delivery: `start` before `end`, at most [`MAX_WINDOW`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeWindow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl TimeWindow {
    pub fn new(field: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Self, InputError> {
        if end <= start {
            return Err(InputError::new(
                field,
                format!("ends at {end}, not after its start {start}"),
            ));
        }
        if end - start > MAX_WINDOW {
            return Err(InputError::new(field, "is longer than 7 days"));
        }
        Ok(Self { start, end })
    }

    /// Whether `at` falls in the window, both ends included.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at <= self.end
    }
}

/// How much of a vehicle's capacity a delivery takes: 1 to the largest capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Size(u32);

impl Size {
    pub fn parse(field: &str, n: i64) -> Result<Self, InputError> {
        match u32::try_from(n) {
            Ok(s @ 1..=MAX_CAPACITY) => Ok(Self(s)),
            _ => Err(InputError::new(
                field,
                format!("is {n}; it must be 1 to {MAX_CAPACITY}"),
            )),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// A delivery address as a person reads it: 1 to [`MAX_ADDRESS_CHARS`] characters, trimmed,
/// no control characters other than line breaks.
pub fn parse_address(field: &'static str, s: &str) -> Result<String, InputError> {
    let a = s.trim();
    if a.is_empty() {
        return Err(InputError::new(field, "is required"));
    }
    let chars = a.chars().count();
    if chars > MAX_ADDRESS_CHARS {
        return Err(InputError::new(
            field,
            format!("has {chars} characters; at most {MAX_ADDRESS_CHARS} are allowed"),
        ));
    }
    if a.chars().any(|c| c.is_control() && c != '\n') {
        return Err(InputError::new(field, "contains a control character"));
    }
    Ok(a.to_owned())
}

/// A delivery as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: Uuid,
    pub shipment_id: String,
    pub address: String,
    /// Degrees.
    pub lat: f64,
    pub lng: f64,
    pub window: TimeWindow,
    pub size: Size,
    /// Time spent at the door, in seconds.
    pub service_seconds: u32,
    pub status: DeliveryStatus,
    pub route_id: Option<Uuid>,
    pub driver_id: Option<Uuid>,
    /// When it reached COMPLETED or FAILED.
    pub finished_at: Option<DateTime<Utc>>,
}

/// The payload of every `driver.delivery_*` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryChanged {
    pub delivery_id: Uuid,
    pub shipment_id: String,
    pub driver_id: Option<Uuid>,
    pub route_id: Option<Uuid>,
    pub status: DeliveryStatus,
    pub at: DateTime<Utc>,
    /// The driver's latest position when the status changed, `[lat, lng]`.
    pub location: Option<[f64; 2]>,
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;
    use crate::domain::machine::tests::check_table;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0)
            .single()
            .expect("time")
    }

    #[test]
    fn the_table_is_consistent_and_completion_happens_only_at_the_door() {
        check_table(DeliveryAction::ALL, DeliveryStatus::ALL);
        for &s in DeliveryStatus::ALL {
            assert_eq!(
                DeliveryAction::Complete.apply(s).is_ok(),
                s == DeliveryStatus::AtLocation,
                "{s}"
            );
        }
        assert_eq!(
            DeliveryAction::Complete
                .apply(DeliveryStatus::InTransit)
                .map_err(|e| e.to_string()),
            Err("cannot COMPLETE a delivery that is IN_TRANSIT".into())
        );
    }

    #[test]
    fn final_statuses_leave_nowhere_and_every_action_has_its_event() {
        for &s in DeliveryStatus::ALL.iter().filter(|s| s.is_final()) {
            assert!(
                DeliveryAction::ALL.iter().all(|a| a.apply(s).is_err()),
                "{s}"
            );
            assert!(s.settles_stop());
        }
        let events: std::collections::BTreeSet<_> =
            DeliveryAction::ALL.iter().map(|a| a.event()).collect();
        assert_eq!(events.len(), DeliveryAction::ALL.len());
        assert!(events.iter().all(|e| e.starts_with("driver.delivery_")));
        assert_eq!(
            DeliveryAction::Depart.event(),
            format!(
                "driver.delivery_{}",
                DeliveryStatus::InTransit.as_str().to_lowercase()
            )
        );
    }

    proptest! {
        /// Along any sequence of actions from PENDING, a completed delivery went through
        /// AT_LOCATION just before, and once final nothing changes it.
        #[test]
        fn completion_follows_arrival_and_final_is_final(
            actions in prop::collection::vec(prop::sample::select(DeliveryAction::ALL), 0..40)
        ) {
            let mut status = DeliveryStatus::Pending;
            for a in actions {
                match a.apply(status) {
                    Ok(next) => {
                        prop_assert!(!status.is_final());
                        if next == DeliveryStatus::Completed {
                            prop_assert_eq!(status, DeliveryStatus::AtLocation);
                        }
                        status = next;
                    }
                    Err(e) => prop_assert_eq!(e.current, status),
                }
            }
        }
    }

    #[test]
    fn windows_sizes_and_addresses_are_checked() {
        let w = TimeWindow::new("window", t(0), t(3600)).expect("window");
        assert!(
            w.contains(t(0)) && w.contains(t(3600)) && !w.contains(t(3601)) && !w.contains(t(-1))
        );
        assert_eq!(
            TimeWindow::new("window", t(10), t(10)).map_err(|e| e.field),
            Err("window".into())
        );
        assert!(TimeWindow::new("window", t(0), t(7 * 86_400)).is_ok());
        assert_eq!(
            TimeWindow::new("window", t(0), t(7 * 86_400 + 1)).map_err(|e| e.to_string()),
            Err("window: is longer than 7 days".into())
        );
        assert_eq!(Size::parse("size", 3).map(Size::get), Ok(3));
        assert_eq!(
            Size::parse("deliveries[2].size", 0).map_err(|e| e.to_string()),
            Err("deliveries[2].size: is 0; it must be 1 to 100000".into())
        );
        assert!(Size::parse("size", i64::from(MAX_CAPACITY) + 1).is_err());
        assert_eq!(
            parse_address("address", " 1 Main St\nUnit 2 "),
            Ok("1 Main St\nUnit 2".into())
        );
        assert!(parse_address("address", "  ").is_err());
        assert!(parse_address("address", "a\u{7}").is_err());
        assert!(parse_address("address", &"a".repeat(501)).is_err());
    }
}
