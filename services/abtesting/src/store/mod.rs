//! The A/B testing stores: [`pg::PgStore`] (experiments and flags), [`clickhouse`] (the
//! asynchronous exposure writer, the exposures table, and the result aggregates; SQL in `sql/`),
//! [`recent`] (the exposures a replica queued lately, so repeats are not queued again),
//! [`privacy`] (a user's exposures and flag targeting: their export and erasure).

pub mod clickhouse;
pub mod pg;
pub mod privacy;
pub mod recent;
