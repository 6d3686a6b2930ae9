//! Periodic clean-up of kit's tables: idempotency keys outlive any client retry by far after a
//! day, and de-duplication records any redelivery after a week. Deleting from several replicas
//! at once is harmless, so no lock is taken.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::{KitError, events::consumer::purge_processed, idempotency};

const EVERY: Duration = Duration::from_secs(3600);
const KEEP_IDEMPOTENCY: Duration = Duration::from_secs(24 * 3600);
const KEEP_PROCESSED: Duration = Duration::from_secs(7 * 24 * 3600);

pub async fn run(pool: PgPool, shutdown: CancellationToken) -> Result<(), KitError> {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(EVERY) => {}
        }
        match sweep(&pool).await {
            Ok((keys, events)) => tracing::info!(keys, events, "housekeeping done"),
            Err(e) => tracing::warn!(error = %e, "housekeeping failed; will retry"),
        }
    }
}

/// One pass; returns (idempotency keys, processed-event records) deleted.
pub async fn sweep(pool: &PgPool) -> Result<(u64, u64), KitError> {
    Ok((
        idempotency::purge(pool, KEEP_IDEMPOTENCY).await?,
        purge_processed(pool, KEEP_PROCESSED).await?,
    ))
}
