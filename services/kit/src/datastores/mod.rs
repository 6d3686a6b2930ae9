//! Clients of the cell's datastores, built from [`crate::config::Config`]: a PostgreSQL pool
//! with per-service migrations, a Redis connection manager with the process's key prefix, and a
//! ClickHouse client.

pub mod clickhouse;
pub mod postgres;
pub mod redis;

use crate::KitError;

/// Owners name migration history tables (`_titan_migrations_<owner>`), so they must be safe
/// identifiers in every datastore.
fn check_owner(owner: &str) -> Result<(), KitError> {
    if owner.is_empty()
        || !owner
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(KitError::Migration(format!(
            "migration owner {owner:?} must be lower-case letters, digits and '_'"
        )));
    }
    Ok(())
}
