//! Events from the bus, one consumer per source stream ([`SOURCES`]), all with this handler,
//! inside the consumer's transaction (so an event delivered twice changes nothing):
//! - `flashsale.purchased` and `livestream.purchased` record the order (once, by order id)
//!   with its buyer, total and time, for conversions and attributed revenue;
//! - an event a triggered campaign names cancels the messages it started for the same user
//!   and not yet sent (`cancel_event`), or starts one (`event`): a delivery due
//!   `delay_hours` after the event, recorded once per (campaign, event), which the sender
//!   sends like any other (caps, quiet hours, suppressions and the budget apply).

use chrono::{DateTime, Utc};
use serde::Deserialize;
use titan_kit::{
    events::{Envelope, Handler, HandlerError},
    money::Money,
};
use uuid::Uuid;

pub use crate::domain::trigger::SOURCES;

/// The events that are a conversion.
pub const PURCHASES: [&str; 2] = ["flashsale.purchased", "livestream.purchased"];

/// The fields of `flashsale.purchased` v1 and `livestream.purchased` v1 that attribution
/// needs.
#[derive(Debug, Deserialize)]
struct Purchased {
    order_id: String,
    user_id: String,
    total: Money,
}

/// What a trigger reads of any event it names.
#[derive(Debug, Deserialize)]
struct About {
    user_id: String,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct EventHandler;

impl Handler for EventHandler {
    async fn handle(
        &self,
        tx: &mut sqlx::PgConnection,
        event: &Envelope,
    ) -> Result<(), HandlerError> {
        if !crate::domain::trigger::EVENTS.contains(&event.kind.as_str()) {
            return Ok(());
        }
        let about: About = event
            .payload_as()
            .map_err(|e| HandlerError::Permanent(e.to_string()))?;
        if about.user_id.is_empty() {
            return Err(HandlerError::Permanent(format!(
                "{} {} has no user_id",
                event.kind, event.id
            )));
        }
        if PURCHASES.contains(&event.kind.as_str()) {
            let p: Purchased = event
                .payload_as()
                .map_err(|e| HandlerError::Permanent(e.to_string()))?;
            if p.order_id.is_empty() {
                return Err(HandlerError::Permanent(format!(
                    "{} {} has no order_id",
                    event.kind, event.id
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
            .await?;
        }
        cancel_triggered(tx, &event.kind, &about.user_id, event.occurred_at).await?;
        start_triggered(tx, &event.kind, event.id, &about.user_id, event.occurred_at).await?;
        Ok(())
    }
}

/// Records an order once (a redelivered event changes nothing).
pub async fn record_purchase(
    tx: &mut sqlx::PgConnection,
    order_id: &str,
    user_id: &str,
    amount: i64,
    currency: &str,
    at: DateTime<Utc>,
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

/// Cancels the unsent messages that `user`'s events before `at` started in the campaigns
/// `kind` cancels; returns how many.
pub async fn cancel_triggered(
    tx: &mut sqlx::PgConnection,
    kind: &str,
    user: &str,
    at: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE campaign_deliveries d
         SET status = 'CANCELLED', error = 'cancelled by ' || $1
         FROM campaign_triggers t JOIN campaigns c ON c.id = t.campaign_id
         WHERE c.trigger_cancel_event = $1 AND t.user_id = $2 AND t.at <= $3
           AND d.campaign_id = t.campaign_id AND d.occurrence = t.occurrence
           AND d.user_id = t.user_id AND d.status = 'PENDING'",
    )
    .bind(kind)
    .bind(user)
    .bind(at)
    .execute(tx)
    .await?
    .rows_affected())
}

/// Starts a message to `user` in every running (or paused) campaign `kind` triggers, once per
/// (campaign, event): the campaign's next occurrence number is the delivery's, due
/// `delay_hours` after `at`. A user without a contact gets nothing; one without an address
/// for the channel is recorded NO_ADDRESS. Returns the deliveries recorded.
pub async fn start_triggered(
    tx: &mut sqlx::PgConnection,
    kind: &str,
    event: Uuid,
    user: &str,
    at: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "WITH fired AS (
             UPDATE campaigns c SET next_occurrence = c.next_occurrence + 1
             WHERE c.trigger_event = $1 AND c.status IN ('RUNNING', 'PAUSED')
               AND (c.end_at IS NULL OR c.end_at > $4)
               AND EXISTS (SELECT 1 FROM campaign_contacts ct WHERE ct.user_id = $3)
               AND NOT EXISTS (SELECT 1 FROM campaign_triggers t
                               WHERE t.campaign_id = c.id AND t.event_id = $2)
             RETURNING c.id, c.channel, c.next_occurrence - 1 AS occurrence, c.trigger_delay_hours),
         noted AS (
             INSERT INTO campaign_triggers (campaign_id, event_id, user_id, occurrence, at)
             SELECT id, $2, $3, occurrence, $4 FROM fired)
         INSERT INTO campaign_deliveries (campaign_id, occurrence, user_id, channel, status, not_before)
         SELECT f.id, f.occurrence, ct.user_id, f.channel,
                CASE WHEN (CASE f.channel WHEN 'EMAIL' THEN ct.email WHEN 'SMS' THEN ct.phone
                                          WHEN 'PUSH' THEN ct.push_token ELSE 'in-app' END) = ''
                     THEN 'NO_ADDRESS' ELSE 'PENDING' END,
                $4 + make_interval(hours => f.trigger_delay_hours)
         FROM fired f JOIN campaign_contacts ct ON ct.user_id = $3",
    )
    .bind(kind)
    .bind(event)
    .bind(user)
    .bind(at)
    .execute(tx)
    .await?
    .rows_affected())
}
