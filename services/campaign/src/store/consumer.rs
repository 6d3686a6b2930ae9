//! Purchases from the bus: `flashsale.purchased` records the order (once, by order id) with
//! its buyer, total and time, for conversions and attributed revenue.

use serde::Deserialize;
use titan_kit::{
    events::{Envelope, Handler, HandlerError},
    money::Money,
};

/// The service whose stream this handler reads.
pub const SOURCE: &str = "flashsale";
/// The event that is a conversion.
pub const FLASHSALE_PURCHASED: &str = "flashsale.purchased";

/// The fields of `flashsale.purchased` v1 that attribution needs.
#[derive(Debug, Deserialize)]
struct Purchased {
    order_id: String,
    user_id: String,
    total: Money,
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
        if p.user_id.is_empty() || p.order_id.is_empty() {
            return Err(HandlerError::Permanent(format!(
                "{FLASHSALE_PURCHASED} {} has no user_id or order_id",
                event.id
            )));
        }
        record_purchase(
            tx,
            &p.order_id,
            &p.user_id,
            p.total.minor_units,
            p.total.currency.as_str(),
            event.occurred_at,
        )
        .await
        .map_err(HandlerError::from)
    }
}

/// Records an order once (a redelivered event changes nothing).
pub async fn record_purchase(
    tx: &mut sqlx::PgConnection,
    order_id: &str,
    user_id: &str,
    amount: i64,
    currency: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO campaign_purchases (order_id, user_id, amount, currency, at)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(order_id)
    .bind(user_id)
    .bind(amount)
    .bind(currency)
    .bind(at)
    .execute(tx)
    .await?;
    Ok(())
}
