//! Driver: last-mile delivery drivers, their availability and positions, deliveries and the
//! routes that carry them, proofs of delivery, and each driver's performance and rating.
//!
//! [`domain`] holds the rules, pure and unit tested: registration, the driver, delivery and
//! route state machines with their guarded transitions, GPS validation and the performance
//! figures. The route plans themselves come from `titan-route`.

pub mod domain;
