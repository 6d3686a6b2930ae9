//! Livestream's stores: PostgreSQL for streams, comments and purchases ([`pg`]), Redis for
//! the viewer figures ([`redis`]) and ClickHouse for a stream's analytics ([`clickhouse`]).

pub mod clickhouse;
pub mod pg;
pub mod redis;
