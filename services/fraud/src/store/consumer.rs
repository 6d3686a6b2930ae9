//! Successful orders from the bus: each `flashsale.purchased` adds one to its buyer's
//! successful orders (trust), inside the consumer's transaction, so an event delivered twice
//! counts once.

use serde::Deserialize;
use titan_kit::events::{Envelope, Handler, HandlerError};

/// The service whose stream this handler reads.
pub const SOURCE: &str = "flashsale";
/// The purchase event counted.
pub const FLASHSALE_PURCHASED: &str = "flashsale.purchased";

/// The field of `flashsale.purchased` v1 that trust needs.
#[derive(Debug, Deserialize)]
struct Purchased {
    user_id: String,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct PurchaseHandler;

impl Handler for PurchaseHandler {
    async fn handle(
        &self,
        tx: &mut sqlx::PgConnection,
        event: &Envelope,
    ) -> Result<(), HandlerError> {
        if event.kind != FLASHSALE_PURCHASED {
            return Ok(());
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
        sqlx::query(
            "INSERT INTO fraud_users (user_id, first_seen_at, successful_orders) VALUES ($1, $2, 1)
             ON CONFLICT (user_id) DO UPDATE SET successful_orders = fraud_users.successful_orders + 1",
        )
        .bind(&p.user_id)
        .bind(event.occurred_at)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}
