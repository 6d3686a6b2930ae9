//! The router's rules, pure: partition keys and their hash ([`key`]), cell names
//! ([`cell`]), the versioned bucket table ([`table`]), how a table follows the set of cells
//! ([`rebalance`]) and its stored form ([`encoding`]). `rebalance` and `encoding` are public
//! so the operator can write the table the router reads.

pub mod cell;
pub mod encoding;
pub mod key;
pub mod rebalance;
pub mod table;

pub use cell::{CellEntry, CellName, CellNameError};
pub use key::{KeyError, MAX_KEY_BYTES, PartitionKey, key_hash};
pub use rebalance::{RebalanceError, initial, rebalance};
pub use table::{BucketCount, DEFAULT_BUCKETS, MAX_CELLS, Route, Table, TableError};

/// The service's name: `titan serve router` and its config section.
pub const SERVICE: &str = "router";
