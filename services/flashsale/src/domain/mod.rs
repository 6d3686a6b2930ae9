//! Flash-sale rules, pure: sales and their status over time, reservations and their state
//! machine, refusals, proof of work, and [`model::StockModel`] — the reference the Redis
//! scripts are checked against.

pub mod model;
pub mod pow;
pub mod reservation;
pub mod sale;

pub use reservation::{Quantity, ReservationId, ReservationStatus};
pub use sale::{AdminState, FlashSale, Refusal, SaleId, SaleSpec, SaleStatus};

/// The service's name: its migrations, its stream and its config section.
pub const SERVICE: &str = "flashsale";
/// Published when a purchase is confirmed.
pub const PURCHASED: &str = "flashsale.purchased";
