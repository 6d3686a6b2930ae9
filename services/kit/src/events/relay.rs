//! The outbox relay: moves a service's outbox rows to its Redis stream in `seq` order. One
//! replica relays at a time (a session advisory lock on a dedicated connection), so order holds
//! with many replicas. The order is per entity (a row committed late with an earlier `seq` is
//! published when it commits); a crash between XADD and DELETE publishes a row twice, which
//! consumers absorb by event id.

use std::time::Duration;

use sqlx::{PgPool, postgres::PgListener};
use tokio_util::sync::CancellationToken;

use super::{outbox::CHANNEL, stream_key};
use crate::{KitError, config::EventsConfig, datastores::redis::RedisHandle};

/// How often a follower retries to become the relay, and the relay polls without a NOTIFY.
const IDLE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct Relay {
    pool: PgPool,
    redis: RedisHandle,
    service: String,
    batch: u32,
    max_len: u64,
}

impl Relay {
    pub fn new(pool: PgPool, redis: RedisHandle, service: &str, config: &EventsConfig) -> Self {
        Self {
            pool,
            redis,
            service: service.to_owned(),
            batch: config.relay_batch,
            max_len: config.stream_max_len,
        }
    }

    /// Relays until `shutdown`; errors are logged and retried, never fatal.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), KitError> {
        while !shutdown.is_cancelled() {
            if let Err(e) = self.lead(&shutdown).await {
                tracing::warn!(service = %self.service, error = %e, "outbox relay interrupted; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(IDLE) => {}
                }
            }
        }
        Ok(())
    }

    /// Holds the relay lock while publishing; returns when the lock or a connection is lost.
    async fn lead(&self, shutdown: &CancellationToken) -> Result<(), KitError> {
        let mut lock_conn = self.pool.acquire().await?;
        let lock_key = format!("titan_outbox_relay:{}", self.service);
        loop {
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
                .bind(&lock_key)
                .fetch_one(&mut *lock_conn)
                .await?;
            if got {
                break;
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(IDLE) => {}
            }
        }
        tracing::info!(service = %self.service, "outbox relay leading");
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANNEL).await?;
        let result = async {
            loop {
                let moved = self.relay_once().await?;
                if moved == u64::from(self.batch) {
                    continue;
                }
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    n = listener.recv() => { n?; }
                    () = tokio::time::sleep(IDLE) => {
                        // Also proves the lock connection is alive: a dead one means lost leadership.
                        sqlx::query("SELECT 1").execute(&mut *lock_conn).await?;
                    }
                }
            }
        }
        .await;
        // Unlock explicitly: a pooled connection outlives this call.
        let _ = sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
            .bind(&lock_key)
            .execute(&mut *lock_conn)
            .await;
        result
    }

    /// Publishes one batch; returns how many rows moved.
    pub async fn relay_once(&self) -> Result<u64, KitError> {
        let rows: Vec<(i64, uuid::Uuid, String, serde_json::Value)> = sqlx::query_as(
            "SELECT seq, event_id, event_type, envelope FROM titan_outbox
             WHERE service = $1 ORDER BY seq LIMIT $2",
        )
        .bind(&self.service)
        .bind(i64::from(self.batch))
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let stream = stream_key(&self.redis, &self.service);
        let mut pipe = redis::pipe();
        for (_, id, kind, envelope) in &rows {
            pipe.xadd_maxlen(
                &stream,
                redis::streams::StreamMaxlen::Approx(
                    usize::try_from(self.max_len).unwrap_or(usize::MAX),
                ),
                "*",
                &[
                    ("id", id.to_string()),
                    ("type", kind.clone()),
                    ("envelope", envelope.to_string()),
                ],
            )
            .ignore();
        }
        let mut conn = self.redis.conn.clone();
        let () = pipe.query_async(&mut conn).await?;
        let seqs: Vec<i64> = rows.iter().map(|r| r.0).collect();
        sqlx::query("DELETE FROM titan_outbox WHERE service = $1 AND seq = ANY($2)")
            .bind(&self.service)
            .bind(&seqs)
            .execute(&self.pool)
            .await?;
        Ok(rows.len() as u64)
    }
}
