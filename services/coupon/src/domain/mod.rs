//! Coupon rules, pure: codes, coupon specs and their status, carts, the ordered validation
//! checks with one refusal reason each, the four discount types, and the stacking rules. No I/O.

pub mod cart;
pub mod code;
pub mod coupon;
pub mod discount;

pub use cart::{Cart, CartError, CartItem};
pub use code::{BadCode, CouponCode};
pub use coupon::{Coupon, CouponKind, CouponSpec, CouponStatus, RawSpec, SpecError};
pub use discount::{Refusal, UsageSnapshot, evaluate, stack};

/// The service's name: its migrations, its stream and its config section.
pub const SERVICE: &str = "coupon";
/// Published for each coupon of a redeemed order.
pub const REDEEMED: &str = "coupon.redeemed";
/// Published for each redemption given back.
pub const REVERSED: &str = "coupon.reversed";
