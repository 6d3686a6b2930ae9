//! Warehouse: warehouses with zones and bins, a stock ledger per (warehouse, product, bin)
//! where every change is a movement row written in the same transaction and neither
//! `available` nor `reserved` ever goes below zero, reservations for orders (reserve, pick,
//! ship, or release; expired ones released by a periodic job), allocation of an order across
//! ACTIVE warehouses, putaway suggestions and pick lists in bin walk order.
//!
//! [`domain`] holds the rules, pure and unit tested; [`app`] runs the use cases (who may do
//! what, input parsed before any I/O) over the [`store`] (PostgreSQL).

#![forbid(unsafe_code)]

pub mod app;
pub mod domain;
pub mod store;

/// The service's PostgreSQL migrations, embedded.
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}
