//! The coupon service's settings: the `coupon` config type of the `crds` crate, so the operator
//! validates exactly what this service parses (`services.coupon` in the file).

pub use titan_crds::config::CouponConfig as Settings;
