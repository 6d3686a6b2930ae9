//! The coupon stores: [`pg::PgCoupons`] (the record) and [`redis::RedisCoupons`] (the fast
//! lookup and live counters, Lua scripts in `lua/`).

pub mod pg;
pub mod redis;
