//! Ping's PostgreSQL store: the emission row, its outbox event and its idempotency answer are
//! written in one transaction.

use sqlx::PgPool;
use titan_kit::{
    KitError,
    events::{Envelope, outbox},
    idempotency::{self, Begin},
};

use crate::{
    app::{PingError, PingStore},
    domain::{Emitted, Receipt, SERVICE},
};

#[derive(Debug, Clone)]
pub struct PgPingStore {
    pool: PgPool,
}

impl PgPingStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

impl PingStore for PgPingStore {
    async fn record(
        &self,
        key: &idempotency::Key,
        emitted: &Emitted,
        event: &Envelope,
    ) -> Result<Receipt, PingError> {
        let mut tx = self.pool.begin().await.map_err(KitError::from)?;
        if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            return serde_json::from_slice(&answer).map_err(|e| {
                PingError::Kit(KitError::Other(format!(
                    "stored ping receipt does not parse: {e}"
                )))
            });
        }
        sqlx::query(
            "INSERT INTO ping_emissions (id, user_id, message, emitted_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(emitted.emission_id)
        .bind(&emitted.user_id)
        .bind(&emitted.message)
        .bind(event.occurred_at)
        .execute(&mut *tx)
        .await
        .map_err(KitError::from)?;
        outbox::write(&mut tx, SERVICE, event).await?;
        let receipt = Receipt {
            event_id: event.id,
            emitted_at: event.occurred_at,
        };
        let answer = serde_json::to_vec(&receipt).map_err(|e| KitError::Other(e.to_string()))?;
        idempotency::finish(&mut tx, key, &answer).await?;
        tx.commit().await.map_err(KitError::from)?;
        Ok(receipt)
    }
}
