//! Fraud rules, pure: validated transactions, risk levels and decisions, a user's profile, the
//! signals and their weights, the rule language, robust statistics, the logistic model and its IRLS fit, and the
//! trust score. No I/O.

pub mod case;
pub mod level;
pub mod model;
pub mod profile;
pub mod rules;
pub mod signals;
pub mod stats;
pub mod transaction;

pub use case::{CaseStatus, Verdict};
pub use level::{Decision, Level, decide};
pub use signals::{Dimension, Facts, Fired, Signal, Velocity, Window};
pub use transaction::{InputError, Transaction};

/// The service's name: its migrations, its stream and its config section.
pub const SERVICE: &str = "fraud";
/// Published for every stored decision.
pub const DECIDED: &str = "fraud.decided";

/// A user's trust in 0..1 from what the service knows of them: account age up to 90 days
/// gives 0.3, successful orders up to 10 give 0.7, and each chargeback halves what is left
/// (so one chargeback outweighs a long clean history).
pub fn trust(account_age_days: u32, successful_orders: u64, chargebacks: u64) -> f64 {
    let age = f64::from(account_age_days.min(90)) / 90.0;
    // At most 10 orders count, so the conversion is exact.
    let orders = successful_orders.min(10) as f64 / 10.0;
    let base = 0.3 * age + 0.7 * orders;
    base * 0.5f64.powi(i32::try_from(chargebacks.min(64)).unwrap_or(64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_grows_with_age_and_orders_and_halves_per_chargeback() {
        assert_eq!(trust(0, 0, 0), 0.0);
        assert_eq!(trust(90, 10, 0), 1.0);
        assert_eq!(trust(365, 50, 0), 1.0);
        assert!((trust(45, 5, 0) - 0.5).abs() < 1e-12);
        assert_eq!(trust(90, 10, 1), 0.5);
        assert_eq!(trust(90, 10, 2), 0.25);
    }
}
