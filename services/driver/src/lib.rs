//! Driver: last-mile delivery drivers, their availability and positions, deliveries and the
//! routes that carry them, proofs of delivery, and each driver's performance and rating.
//!
//! [`domain`] holds the rules, pure and unit tested: registration, the driver, delivery and
//! route state machines with their guarded transitions, GPS validation and the performance
//! figures. [`app`] runs the use cases over the [`store`] (PostgreSQL) and the cell's object
//! storage. The route plans themselves come from `titan-route`.

pub mod app;
pub mod domain;
pub mod store;

/// The service's PostgreSQL migrations, embedded.
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}
