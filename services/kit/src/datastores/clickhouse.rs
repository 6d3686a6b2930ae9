//! ClickHouse: an HTTP client on the cell's database, and versioned migrations. Row validation
//! is a setting because the server Debian ships (18.16) does not know the format it uses.
//!
//! An `https://` URL is spoken over TLS (rustls with ring, as everywhere in titan), the server
//! verified against `clickhouse.caFile` or, without one, the system's roots. The connector is
//! kit's own rather than the clickhouse crate's `rustls-tls*` features: those choose aws-lc or
//! webpki's roots, and panic when the system has no roots at all.

use std::{path::Path, sync::Arc, time::Duration};

use clickhouse::{Client, Row};
use hyper_rustls::{ConfigBuilderExt, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{Client as HttpClient, connect::HttpConnector},
    rt::TokioExecutor,
};
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::{KitError, config::ClickHouseConfig};

/// The setting named when the CA file is wrong or misplaced.
const CA_FILE: &str = "clickhouse.caFile";
/// As the clickhouse crate's own HTTP client: TCP keep-alive on pooled connections, and idle
/// ones dropped before the server's 3 s keep-alive timeout closes them under a request.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// A client whose every query carries the configured `max_execution_time` and
/// `max_memory_usage`: one heavy report cannot starve the server. A CA file beside an `http://`
/// URL is refused: the connection would be plaintext.
pub fn connect(config: &ClickHouseConfig) -> Result<Client, KitError> {
    let client = match (config.url.starts_with("https://"), &config.ca_file) {
        (true, ca_file) => https(ca_file.as_deref())?,
        (false, Some(_)) => {
            return Err(KitError::config(
                CA_FILE,
                "is set but clickhouse.url is not https://: the connection would be plaintext",
            ));
        }
        (false, None) => pooled(tcp()),
    };
    let mut client = client
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
    Ok(client)
}

/// A client that speaks https only, verifying the server against `ca_file` or the system's
/// roots.
fn https(ca_file: Option<&Path>) -> Result<Client, KitError> {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| KitError::config(CA_FILE, e.to_string()))?;
    let tls = match ca_file {
        Some(path) => tls.with_root_certificates(crate::tls::roots(CA_FILE, path)?),
        None => tls.with_native_roots().map_err(|e| {
            KitError::config(
                CA_FILE,
                format!(
                    "clickhouse.url is https and the system's CA certificates do not load ({e}): \
                     set TITAN_CLICKHOUSE_CA_FILE (or clickhouse.caFile) to the CA that signs it"
                ),
            )
        })?,
    }
    .with_no_client_auth();
    let mut tcp = tcp();
    // The TLS connector below takes https URLs; the TCP one must let them through to it.
    tcp.enforce_http(false);
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(tcp);
    Ok(pooled(connector))
}

/// The TCP side of every ClickHouse connection: keep-alive probes, and TCP_NODELAY, which
/// hyper (and so the clickhouse crate's own client) leaves off. A request whose head and body
/// leave in separate segments would otherwise hold the second until the server's delayed
/// acknowledgement of the first, up to 40 ms.
fn tcp() -> HttpConnector {
    let mut tcp = HttpConnector::new();
    tcp.set_keepalive(Some(TCP_KEEPALIVE));
    tcp.set_nodelay(true);
    tcp
}

/// A client pooling connections over `connector`, whose idle connections close before the
/// server's keep-alive timeout would close them under a request.
fn pooled<C>(connector: C) -> Client
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    Client::with_http_client(
        HttpClient::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector),
    )
}

/// Readiness: the server answers a query.
pub async fn ping(client: &Client) -> Result<(), KitError> {
    client.query("SELECT 1").fetch_one::<u8>().await?;
    Ok(())
}

/// How often [`mutate`] looks at `system.mutations` while a mutation runs.
const MUTATION_POLL: Duration = Duration::from_millis(50);

/// Runs `mutation`, an `ALTER TABLE <table> DELETE|UPDATE …` built on `client` with its binds,
/// and returns once every mutation of `table` in the client's database is done, so the rows it
/// deletes are gone (and those it updates changed) for the next query. ClickHouse answers an
/// ALTER as soon as the mutation is queued and applies it part by part in the background; the
/// server Debian ships (18.16) has no `mutations_sync` setting to wait for it, so the wait polls
/// `system.mutations` every 50 ms. A mutation has no id its ALTER returns, hence every
/// mutation of the table, others' included. A mutation still running after `deadline` (one
/// that cannot be applied stays undone for ever: 18.16 reports no failure) is an error; it
/// stays queued.
pub async fn mutate(
    client: &Client,
    table: &str,
    mutation: clickhouse::query::Query,
    deadline: Duration,
) -> Result<(), KitError> {
    mutation.execute().await?;
    let started = tokio::time::Instant::now();
    loop {
        let running: u64 = client
            .query(
                "SELECT count() FROM system.mutations
                 WHERE database = currentDatabase() AND table = ? AND is_done = 0",
            )
            .bind(table)
            .fetch_one()
            .await?;
        if running == 0 {
            return Ok(());
        }
        if started.elapsed() > deadline {
            return Err(KitError::Other(format!(
                "{running} mutation(s) of clickhouse table {table} not done after {deadline:?}"
            )));
        }
        tokio::time::sleep(MUTATION_POLL).await;
    }
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
