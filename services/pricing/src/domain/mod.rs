//! Pricing rules, pure: rules and their typed strategy parameters, how a price is computed
//! from a rule and its inputs (rounding, price endings, the clamp, the no-flap step), the
//! demand score, competitor aggregation, log-log elasticity with its uncertainty, and revenue
//! impact. No I/O.

pub mod competitor;
pub mod demand;
pub mod elasticity;
pub mod input;
pub mod price;
pub mod revenue;
pub mod rule;

pub use competitor::{CompetitorPrice, Reference};
pub use demand::Signals;
pub use elasticity::{Fit, NotEnoughData, Observation};
pub use input::{InputError, ProductId, Segment};
pub use price::{Computed, Inputs, decide};
pub use revenue::Impact;
pub use rule::{Ending, Rule, RuleDraft, Strategy, Target};

/// The service's name: its migrations, its stream and its config section.
pub const SERVICE: &str = "pricing";
/// Published for every price change written to history.
pub const PRICE_CHANGED: &str = "pricing.changed";
