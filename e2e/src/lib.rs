//! Helpers of the end-to-end suite and the load generator: build and start the real `titan`
//! binary (and the test consumer) as processes on private datastores, learn their bound
//! addresses from their logs, mint tokens, and stop them by signal. The tests live in
//! `tests/e2e`; the load generator in `bench/`.
#![forbid(unsafe_code)]

pub mod cell;
pub mod process;

pub use cell::{Cell, CellOptions, Replica, authed, seconds_from_now};
pub use process::{Process, titan_binary};
