//! Routes: an ordered plan of stops with ETAs, assigned to one AVAILABLE driver whose
//! vehicle carries the whole load. CREATED when planned, ASSIGNED to a driver (who becomes
//! ON_DELIVERY), IN_PROGRESS once the driver sets off for the first stop, COMPLETED when
//! every stop is settled (the driver becomes AVAILABLE again).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Capacity, DeliveryStatus, DriverStatus, InputError, Size, Transition};

/// Most stops on one route (and deliveries in one plan request).
pub const MAX_STOPS: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RouteStatus {
    Created,
    Assigned,
    InProgress,
    Completed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RouteAction {
    Assign,
    /// The driver sets off for the first stop.
    Start,
    /// Every stop is settled; also from ASSIGNED, when every stop was rescheduled before the
    /// driver set off.
    Complete,
}

titan_kit::names!(RouteStatus {
    Created => "CREATED",
    Assigned => "ASSIGNED",
    InProgress => "IN_PROGRESS",
    Completed => "COMPLETED",
});
titan_kit::names!(RouteAction { Assign => "ASSIGN", Start => "START", Complete => "COMPLETE" });

impl Transition for RouteAction {
    type Status = RouteStatus;
    const SUBJECT: &'static str = "route";

    fn leaves_from(self) -> &'static [RouteStatus] {
        use RouteStatus::*;
        match self {
            Self::Assign => &[Created],
            Self::Start => &[Assigned],
            Self::Complete => &[Assigned, InProgress],
        }
    }

    fn target(self) -> RouteStatus {
        match self {
            Self::Assign => RouteStatus::Assigned,
            Self::Start => RouteStatus::InProgress,
            Self::Complete => RouteStatus::Completed,
        }
    }
}

/// One stop of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stop {
    pub delivery_id: Uuid,
    pub eta: DateTime<Utc>,
}

/// A route's stops in visit order: 1 to [`MAX_STOPS`], each delivery once, ETAs never going
/// back in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    stops: Vec<Stop>,
}

impl Plan {
    pub fn new(field: &str, stops: Vec<Stop>) -> Result<Self, InputError> {
        if stops.is_empty() {
            return Err(InputError::new(field, "has no stops"));
        }
        if stops.len() > MAX_STOPS {
            return Err(InputError::new(
                field,
                format!("has {} stops; at most {MAX_STOPS} are allowed", stops.len()),
            ));
        }
        let mut seen = HashMap::with_capacity(stops.len());
        for (i, s) in stops.iter().enumerate() {
            if let Some(first) = seen.insert(s.delivery_id, i) {
                return Err(InputError::new(
                    format!("{field}[{i}].delivery_id"),
                    format!("{} is already stop {first}", s.delivery_id),
                ));
            }
            if i > 0 && s.eta < stops[i - 1].eta {
                return Err(InputError::new(
                    format!("{field}[{i}].eta"),
                    "is before the previous stop's",
                ));
            }
        }
        Ok(Self { stops })
    }

    pub fn stops(&self) -> &[Stop] {
        &self.stops
    }
}

/// What a vehicle carries from the start of a route: every stop's size.
pub fn load(sizes: impl IntoIterator<Item = Size>) -> u64 {
    sizes.into_iter().map(|s| u64::from(s.get())).sum()
}

/// Why a plan cannot go to a driver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignmentError {
    #[error("driver {driver} is {status}; only AVAILABLE drivers get routes")]
    DriverNotAvailable { driver: Uuid, status: DriverStatus },
    #[error("the route carries {load}; driver {driver}'s vehicle holds {capacity}")]
    OverCapacity {
        driver: Uuid,
        load: u64,
        capacity: u32,
    },
}

/// Whether a route carrying `load` may go to the driver `driver` in `status` with
/// `capacity`.
pub fn check_assignment(
    driver: Uuid,
    status: DriverStatus,
    capacity: Capacity,
    load: u64,
) -> Result<(), AssignmentError> {
    if !status.gets_routes() {
        return Err(AssignmentError::DriverNotAvailable { driver, status });
    }
    if load > u64::from(capacity.get()) {
        return Err(AssignmentError::OverCapacity {
            driver,
            load,
            capacity: capacity.get(),
        });
    }
    Ok(())
}

/// Whether a route whose stops are in `statuses` is done: every stop settled.
pub fn is_done(statuses: &[DeliveryStatus]) -> bool {
    statuses.iter().all(|s| s.settles_stop())
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

    fn stop(n: u128, eta: i64) -> Stop {
        Stop {
            delivery_id: Uuid::from_u128(n),
            eta: t(eta),
        }
    }

    fn size(n: i64) -> Size {
        Size::parse("size", n).expect("size")
    }

    #[test]
    fn the_table_is_consistent() {
        check_table(RouteAction::ALL, RouteStatus::ALL);
        assert!(
            RouteAction::ALL
                .iter()
                .all(|a| a.apply(RouteStatus::Completed).is_err())
        );
        assert_eq!(
            RouteAction::Start
                .apply(RouteStatus::Created)
                .map_err(|e| e.to_string()),
            Err("cannot START a route that is CREATED".into())
        );
    }

    #[test]
    fn plans_are_checked() {
        let plan = Plan::new("stops", vec![stop(1, 0), stop(2, 60), stop(3, 60)]).expect("plan");
        assert_eq!(plan.stops().len(), 3);
        assert_eq!(load([size(3), size(4), size(5)]), 12);
        assert_eq!(
            Plan::new("stops", vec![]).map_err(|e| e.to_string()),
            Err("stops: has no stops".into())
        );
        assert_eq!(
            Plan::new("stops", vec![stop(1, 0), stop(2, 10), stop(1, 20)])
                .map_err(|e| e.to_string()),
            Err(format!(
                "stops[2].delivery_id: {} is already stop 0",
                Uuid::from_u128(1)
            ))
        );
        assert_eq!(
            Plan::new("stops", vec![stop(1, 10), stop(2, 9)]).map_err(|e| e.field),
            Err("stops[1].eta".into())
        );
        let many = (0..=MAX_STOPS as u128).map(|i| stop(i, 0)).collect();
        assert!(Plan::new("stops", many).is_err());
    }

    #[test]
    fn only_an_available_driver_with_room_gets_a_route() {
        let d = Uuid::from_u128(7);
        let load = load([size(30), size(20)]);
        let cap = |n| Capacity::parse("capacity", n).expect("capacity");
        assert_eq!(
            check_assignment(d, DriverStatus::Available, cap(50), load),
            Ok(())
        );
        assert_eq!(
            check_assignment(d, DriverStatus::Available, cap(49), load),
            Err(AssignmentError::OverCapacity {
                driver: d,
                load: 50,
                capacity: 49
            })
        );
        for &s in DriverStatus::ALL.iter().filter(|s| !s.gets_routes()) {
            assert_eq!(
                check_assignment(d, s, cap(50), load),
                Err(AssignmentError::DriverNotAvailable {
                    driver: d,
                    status: s
                })
            );
        }
    }

    #[test]
    fn a_route_is_done_when_every_stop_is_settled() {
        use DeliveryStatus::*;
        assert!(is_done(&[Completed, Failed, Rescheduled]));
        assert!(!is_done(&[Completed, AtLocation]));
        assert!(!is_done(&[Assigned]));
    }

    proptest! {
        #[test]
        fn a_plan_sorted_by_eta_with_distinct_deliveries_is_accepted(
            mut etas in prop::collection::vec(0i64..86_400, 1..50)
        ) {
            etas.sort_unstable();
            let stops: Vec<_> = etas.iter().enumerate().map(|(i, &e)| stop(i as u128, e)).collect();
            let n = stops.len();
            prop_assert_eq!(Plan::new("stops", stops).map(|p| p.stops().len()), Ok(n));
        }
    }
}
