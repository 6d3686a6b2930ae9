//! Earning from the bus: `flashsale.purchased` and `livestream.purchased` (the same fields
//! under the same names) award 1 point per whole currency unit of the
//! order's total to its buyer, inside the consumer's transaction, so an event delivered twice
//! (a redelivery, a relay duplicate, or the same order from another source) awards once.

use serde::Deserialize;
use titan_kit::{
    events::{Envelope, Handler, HandlerError},
    money::Money,
};

use super::pg::award_in;
use crate::{
    app::{GamificationError, Grant},
    config::Settings,
    domain::{Action, Reason},
    metrics::Metrics,
};

/// The services whose streams this handler reads, one consumer each.
pub const SOURCES: [&str; 2] = ["flashsale", "livestream"];
/// A flash-sale purchase.
pub const FLASHSALE_PURCHASED: &str = "flashsale.purchased";
/// A purchase made in a live stream.
pub const LIVESTREAM_PURCHASED: &str = "livestream.purchased";
/// The events this handler earns from.
const PURCHASES: [&str; 2] = [FLASHSALE_PURCHASED, LIVESTREAM_PURCHASED];

/// The fields of `flashsale.purchased` v1 and `livestream.purchased` v1 that earning needs.
#[derive(Debug, Deserialize)]
struct Purchased {
    order_id: String,
    user_id: String,
    total: Money,
}

#[derive(Debug, Clone)]
pub struct PurchaseHandler {
    settings: Settings,
    metrics: Metrics,
}

impl PurchaseHandler {
    pub fn new(settings: Settings, metrics: Metrics) -> Self {
        Self { settings, metrics }
    }
}

impl Handler for PurchaseHandler {
    async fn handle(
        &self,
        tx: &mut sqlx::PgConnection,
        event: &Envelope,
    ) -> Result<(), HandlerError> {
        if !PURCHASES.contains(&event.kind.as_str()) {
            return Ok(());
        }
        let p: Purchased = event
            .payload_as()
            .map_err(|e| HandlerError::Permanent(e.to_string()))?;
        if p.user_id.is_empty() || p.order_id.is_empty() {
            return Err(HandlerError::Permanent(format!(
                "{} {} has no user_id or order_id",
                event.kind, event.id
            )));
        }
        let grant = Grant {
            user_id: p.user_id,
            action: Action::Purchase(p.total),
            source_id: p.order_id,
            at: event.occurred_at,
        };
        match award_in(tx, &grant, &self.settings).await {
            Ok(awarded) => {
                self.metrics.awarded(Reason::Purchase, &awarded);
                Ok(())
            }
            Err(GamificationError::Invalid(e)) => Err(HandlerError::Permanent(e)),
            Err(e) => Err(HandlerError::Retry(e.to_string())),
        }
    }
}
