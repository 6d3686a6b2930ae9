//! Clients of the cell's datastores, built from [`crate::config::Config`]: a PostgreSQL pool
//! with per-service migrations, a Redis connection manager with the process's key prefix, and a
//! ClickHouse client.

pub mod clickhouse;
pub mod postgres;
pub mod redis;
