//! PostgreSQL: the pool and migrations. Each service (and kit itself) embeds its migrations
//! with `sqlx::migrate!` and records them in its own table, `_titan_migrations_<service>`, so
//! services sharing a cell database never see each other's history. sqlx takes a database-wide
//! advisory lock around a run, so replicas may start together.

use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::{
    PgPool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::{KitError, config::PostgresConfig};

/// A pooled connection used within this long is handed out without a ping.
const ALIVE_WITHOUT_PING: Duration = Duration::from_secs(1);

/// Opens a pool; fails fast when the server is unreachable. Every session gets the configured
/// `statement_timeout` and `idle_in_transaction_session_timeout`, so neither a runaway query
/// nor a stuck transaction holds a connection (and its locks) for longer.
pub async fn connect(config: &PostgresConfig, application: &str) -> Result<PgPool, KitError> {
    let millis = |d: Duration| d.as_millis().to_string();
    let options: PgConnectOptions = config
        .url
        .expose_secret()
        .parse::<PgConnectOptions>()
        .map_err(|e| KitError::config("postgres.url", e.to_string()))?
        .application_name(application)
        .options([
            ("statement_timeout", millis(config.statement_timeout)),
            (
                "idle_in_transaction_session_timeout",
                millis(config.idle_in_transaction_timeout),
            ),
        ]);
    let pool = PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_secs(5))
        // sqlx pings every connection it hands out: one more round trip in every request.
        // A connection used within the last second is known to be alive (HikariCP's
        // "alive bypass window", 500 ms, does the same); one idle for longer — across a
        // failover or a server restart — is still pinged, and replaced when it fails.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > ALIVE_WITHOUT_PING {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .connect_with(options)
        .await?;
    Ok(pool)
}

/// Kit's own tables: the outbox, idempotency keys and processed events.
pub fn kit_migrator() -> Migrator {
    sqlx::migrate!("./migrations")
}

/// Applies `migrator` as the migrations of `owner`; already-applied ones are checked, not rerun.
pub async fn migrate(pool: &PgPool, owner: &str, mut migrator: Migrator) -> Result<(), KitError> {
    super::check_owner(owner)?;
    migrator.dangerous_set_table_name(format!("_titan_migrations_{owner}"));
    migrator
        .run(pool)
        .await
        .map_err(|source| KitError::Migrate {
            service: owner.to_owned(),
            source,
        })?;
    tracing::info!(owner, "migrations applied");
    Ok(())
}

/// Readiness: the server answers a query.
pub async fn ping(pool: &PgPool) -> Result<(), KitError> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}
