//! Livestream's stores: PostgreSQL for streams, comments and purchases ([`pg`]), Redis for
//! the viewer figures ([`redis`]) and ClickHouse for a stream's analytics ([`clickhouse`]); a
//! person's records for export and erasure across the first two ([`privacy`]).

pub mod clickhouse;
pub mod pg;
pub mod privacy;
pub mod redis;
