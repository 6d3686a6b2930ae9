//! Warehouse rules, pure: warehouses and their codes ([`warehouse`]), zones, bins, their walk
//! order and putaway ([`bin`]), quantities and the movements that make up the stock ledger
//! ([`stock`]), the reservation state machine and order lines ([`reservation`]) and the
//! allocation of an order across warehouses ([`allocation`]). No I/O: the store runs each
//! stock change as a guarded UPDATE with its movement row in the same transaction.

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
