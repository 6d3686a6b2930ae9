//! Tracking's rules, pure and unit tested: the statuses and their guarded machine, the fold
//! of a record's events into its status ([`status::status_of`]), the checks every input
//! passes before any I/O ([`input`]) and carriers' webhook signatures ([`signature`]).

pub mod input;
pub mod signature;
pub mod status;

pub use input::{Coordinates, EventInput, NewEvent, carrier, page, tracking_number};
pub use status::{Event, Folded, Status, status_of};

/// The service's name: its config section, migrations table and event source.
pub const SERVICE: &str = "tracking";
