//! ClickHouse: an HTTP client on the cell's database, and versioned migrations. Row validation
//! is a setting because the server Debian ships (18.16) does not know the format it uses.

use clickhouse::{Client, Row};
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::{KitError, config::ClickHouseConfig};

/// A client whose every query carries the configured `max_execution_time` and
/// `max_memory_usage`: one heavy report cannot starve the server.
pub fn connect(config: &ClickHouseConfig) -> Client {
    let mut client = Client::default()
        .with_url(&config.url)
        .with_database(&config.database)
        .with_validation(config.validation)
        .with_setting(
            "max_execution_time",
            config.max_execution_time.as_secs().to_string(),
        )
        .with_setting("max_memory_usage", config.max_memory_usage.to_string());
    if let Some(user) = &config.user {
        client = client.with_user(user);
    }
    if let Some(password) = &config.password {
        client = client.with_password(password.expose_secret());
    }
    client
}

/// Readiness: the server answers a query.
pub async fn ping(client: &Client) -> Result<(), KitError> {
    client.query("SELECT 1").fetch_one::<u8>().await?;
    Ok(())
}

/// One schema change of a service's ClickHouse tables.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Applied in increasing order; never reused or renumbered once released.
    pub version: u32,
    pub description: &'static str,
    /// One statement. ClickHouse has no transactions and no advisory locks, so it must be
    /// idempotent (`IF NOT EXISTS`): two replicas starting together may both run it.
    pub sql: &'static str,
}

#[derive(Debug, Row, Deserialize)]
struct Applied {
    version: u32,
}

/// Applies `migrations` of `owner` that its history table `_titan_migrations_<owner>` does not
/// list yet, in version order, recording each one after it succeeds.
pub async fn migrate(
    client: &Client,
    owner: &str,
    migrations: &[Migration],
) -> Result<(), KitError> {
    super::check_owner(owner)?;
    let mut ordered: Vec<&Migration> = migrations.iter().collect();
    ordered.sort_by_key(|m| m.version);
    if let Some(pair) = ordered.windows(2).find(|w| w[0].version == w[1].version) {
        return Err(KitError::Migration(format!(
            "{owner}: clickhouse migration version {} is used twice",
            pair[0].version
        )));
    }
    let history = format!("_titan_migrations_{owner}");
    client
        .query(&format!(
            "CREATE TABLE IF NOT EXISTS {history} (version UInt32, description String, \
             applied_at DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY version"
        ))
        .execute()
        .await?;
    let applied: Vec<u32> = client
        .query(&format!("SELECT DISTINCT version FROM {history}"))
        .fetch_all::<Applied>()
        .await?
        .into_iter()
        .map(|a| a.version)
        .collect();
    for migration in ordered {
        if applied.contains(&migration.version) {
            continue;
        }
        client.query(migration.sql).execute().await.map_err(|e| {
            KitError::Migration(format!(
                "{owner}: clickhouse migration {} ({}) failed: {e}",
                migration.version, migration.description
            ))
        })?;
        client
            .query(&format!(
                "INSERT INTO {history} (version, description) VALUES (?, ?)"
            ))
            .bind(migration.version)
            .bind(migration.description)
            .execute()
            .await?;
        tracing::info!(
            owner,
            version = migration.version,
            "clickhouse migration applied"
        );
    }
    Ok(())
}
