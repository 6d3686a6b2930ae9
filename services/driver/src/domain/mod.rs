//! Driver rules, pure: registration ([`driver`]), the driver, delivery and route state
//! machines with their guarded transitions ([`machine`], [`driver`], [`delivery`],
//! [`route`]), GPS positions ([`gps`]), proofs of delivery ([`proof`]) and performance with
//! ratings ([`performance`]), route optimisation requests over `titan-route` ([`optimize`]).
//! No I/O: the store runs each transition as one UPDATE whose WHERE
//! clause is the action's `leaves_from`.

pub mod delivery;
pub mod driver;
pub mod gps;
pub mod machine;
pub mod optimize;
pub mod performance;
pub mod proof;
pub mod route;

pub use delivery::{Delivery, DeliveryAction, DeliveryChanged, DeliveryStatus, Size, TimeWindow};
pub use driver::{
    Capacity, Driver, DriverAction, DriverStatus, Email, Phone, Registration, VehicleType,
};
pub use gps::{GpsError, Position, Update};
pub use machine::{IllegalTransition, Transition};
pub use performance::{NotRateable, Outcome, Performance, Rating};
pub use proof::{Attachment, AttachmentKind, Proof};
pub use route::{AssignmentError, Plan, RouteAction, RouteStatus, Stop, check_assignment};
pub use titan_kit::input::InputError;

/// The service's name: its migrations, its stream and its config section.
pub const SERVICE: &str = "driver";
