//! The A/B testing stores: [`pg::PgStore`] (experiments and flags), [`clickhouse`] (the
//! asynchronous exposure writer, the exposures table, and the result aggregates; SQL in `sql/`).

pub mod clickhouse;
pub mod pg;
