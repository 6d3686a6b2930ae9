//! The flash-sale stores: [`pg::PgSales`] (the record) and [`redis::RedisStock`] (the hot path,
//! Lua scripts in `lua/`).

pub mod pg;
pub mod redis;
