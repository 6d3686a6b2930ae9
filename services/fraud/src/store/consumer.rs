//! Successful orders from the bus: each `flashsale.purchased` adds one to its buyer's
//! successful orders (trust), inside the consumer's transaction, so an event delivered twice
//! counts once; once committed, the buyer's cached history is dropped so the next check reads
//! the new count.

use std::sync::Arc;

use serde::Deserialize;
use titan_kit::events::{Envelope, Handler, HandlerError};

use crate::app::{Fraud, FraudStore, HotStore};

/// The service whose stream this handler reads.
pub const SOURCE: &str = "flashsale";
/// The purchase event counted.
pub const FLASHSALE_PURCHASED: &str = "flashsale.purchased";

/// The field of `flashsale.purchased` v1 that trust needs.
#[derive(Debug, Deserialize)]
struct Purchased {
    user_id: String,
}

#[derive(Debug)]
pub struct PurchaseHandler<S, V> {
    app: Arc<Fraud<S, V>>,
}

impl<S, V> PurchaseHandler<S, V> {
    pub fn new(app: Arc<Fraud<S, V>>) -> Self {
        Self { app }
    }
}

/// The buyer of a `flashsale.purchased`; `None` for every other kind.
fn buyer(event: &Envelope) -> Result<Option<String>, HandlerError> {
    if event.kind != FLASHSALE_PURCHASED {
        return Ok(None);
    }
    let p: Purchased = event
        .payload_as()
        .map_err(|e| HandlerError::Permanent(e.to_string()))?;
    if p.user_id.is_empty() {
        return Err(HandlerError::Permanent(format!(
            "{FLASHSALE_PURCHASED} {} has no user_id",
            event.id
        )));
    }
    Ok(Some(p.user_id))
}

impl<S: FraudStore, V: HotStore> Handler for PurchaseHandler<S, V> {
    async fn handle(
        &self,
        tx: &mut sqlx::PgConnection,
        event: &Envelope,
    ) -> Result<(), HandlerError> {
        let Some(user) = buyer(event)? else {
            return Ok(());
        };
        sqlx::query(
            "INSERT INTO fraud_users (user_id, first_seen_at, successful_orders) VALUES ($1, $2, 1)
             ON CONFLICT (user_id) DO UPDATE SET successful_orders = fraud_users.successful_orders + 1",
        )
        .bind(&user)
        .bind(event.occurred_at)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    async fn committed(&self, event: &Envelope) {
        // `handle` accepted the event, so it decodes.
        if let Ok(Some(user)) = buyer(event) {
            self.app.invalidate(&user).await;
        }
    }
}
