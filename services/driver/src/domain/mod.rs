//! Driver rules, pure: registration ([`driver`]), the driver, delivery and route state
//! machines with their guarded transitions ([`machine`], [`driver`], [`delivery`],
//! [`route`]), GPS positions ([`gps`]), proofs of delivery ([`proof`]) and performance with
//! ratings ([`performance`]), route optimisation requests over `titan-route` ([`optimize`]).
//! No I/O: the store runs each transition as one UPDATE whose WHERE
//! clause is the action's `leaves_from`.

/// Names of an enum's values as clients and rows spell them, both ways, with the parse that
/// refuses any other name naming the request field.
macro_rules! names {
    ($t:ident { $($v:ident => $s:literal),+ $(,)? }) => {
        impl $t {
            pub const ALL: &'static [$t] = &[$($t::$v),+];

            pub fn as_str(self) -> &'static str {
                match self { $($t::$v => $s),+ }
            }

            /// The value named `s` (as [`Self::as_str`] writes it), for rows read back.
            pub fn from_name(s: &str) -> Option<Self> {
                match s { $($s => Some($t::$v),)+ _ => None }
            }

            /// The value a client named in `field`; any other name is refused with the list.
            pub fn parse(field: &'static str, s: &str) -> Result<Self, InputError> {
                Self::from_name(s).ok_or_else(|| {
                    let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                    InputError::new(field, format!("{s:?} is not one of {}", names.join(", ")))
                })
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

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
