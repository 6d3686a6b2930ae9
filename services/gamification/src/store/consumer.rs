//! Earning from the bus: `flashsale.purchased` awards 1 point per whole currency unit of the
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

/// The service whose stream this handler reads.
pub const SOURCE: &str = "flashsale";
/// The event this handler earns from.
pub const FLASHSALE_PURCHASED: &str = "flashsale.purchased";

/// The fields of `flashsale.purchased` v1 that earning needs.
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
