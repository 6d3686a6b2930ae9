//! Warehouse rules, pure: warehouses and their codes ([`warehouse`]), zones, bins, their walk
//! order and putaway ([`bin`]), quantities and the movements that make up the stock ledger
//! ([`stock`]), the reservation state machine and order lines ([`reservation`]) and the
//! allocation of an order across warehouses ([`allocation`]). No I/O: the store runs each
//! stock change as a guarded UPDATE with its movement row in the same transaction.

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
            pub fn parse(field: &str, s: &str) -> Result<Self, InputError> {
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

pub mod allocation;
pub mod bin;
pub mod reservation;
pub mod stock;
pub mod warehouse;

pub use allocation::{Allocation, Candidate, Pick, Preference, Shortage, Stocked, allocate};
pub use bin::{BinCode, Putaway, Slot, ZoneCode, suggest_putaway};
pub use reservation::{
    IllegalTransition, OrderLine, ReservationAction, ReservationStatus, Ttl, parse_lines,
};
pub use stock::{Adjustment, Delta, MovementType, Quantity, ReceiptKind};
pub use titan_kit::input::InputError;
pub use warehouse::{Location, NewWarehouse, WarehouseCode, WarehouseStatus};

/// The service's name: its migrations, its stream and its config section.
pub const SERVICE: &str = "warehouse";

/// Most lines one order, transfer list or page may carry.
pub const MAX_LINES: usize = 100;
