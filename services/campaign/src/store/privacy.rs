//! A person's records for the privacy jobs (`crate::privacy`), in PostgreSQL: everything held
//! about them, and their erasure. The contact (e-mail address, phone, push token, first name),
//! the suppressions, the messages not sent yet and the trigger records go; the outcomes of
//! messages sent or tried, the opens and clicks and the purchases stay under the pseudonym,
//! because a campaign's counts, its per-variant results and its attribution and ROI are
//! computed from those rows (there is no other copy of the counts), with the provider's error
//! text — which can quote the address — blanked.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::app::Result;

/// The contact as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ContactRecord {
    pub email: String,
    pub phone: String,
    pub push_token: String,
    pub time_zone: String,
    pub level: i32,
    pub first_name: String,
    pub country: String,
    pub updated_at: DateTime<Utc>,
}

/// A message to the person (EMAIL, PUSH, SMS, or a BANNER or POPUP shown in the app).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct DeliveryRecord {
    pub campaign_id: Uuid,
    pub campaign: String,
    pub occurrence: i32,
    pub channel: String,
    pub status: String,
    pub variant: String,
    pub not_before: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub attempts: i32,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct SuppressionRecord {
    pub channel: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// An open or a click.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct EngagementRecord {
    pub campaign_id: Uuid,
    pub kind: String,
    pub at: DateTime<Utc>,
}

/// A purchase from the bus, as attribution reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct PurchaseRecord {
    pub order_id: String,
    pub amount: i64,
    pub currency: String,
    pub at: DateTime<Utc>,
}

/// A bus event that started a triggered message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct TriggerRecord {
    pub campaign_id: Uuid,
    pub event_id: Uuid,
    pub occurrence: i32,
    pub at: DateTime<Utc>,
}

/// Everything the service holds about one person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Records {
    pub user_id: String,
    /// None when no contact is registered.
    pub contact: Option<ContactRecord>,
    pub deliveries: Vec<DeliveryRecord>,
    pub suppressions: Vec<SuppressionRecord>,
    pub engagements: Vec<EngagementRecord>,
    pub purchases: Vec<PurchaseRecord>,
    pub triggers: Vec<TriggerRecord>,
}

/// What [`erase`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    pub contacts: u64,
    pub suppressions: u64,
    pub unsent: u64,
    pub triggers: u64,
    pub deliveries: u64,
    pub engagements: u64,
    pub purchases: u64,
}

/// Everything held about `user`, oldest first within each kind.
pub async fn records(pool: &PgPool, user: &str) -> Result<Records> {
    let contact = sqlx::query_as::<_, ContactRecord>(
        "SELECT email, phone, push_token, time_zone, level, first_name, country, updated_at
         FROM campaign_contacts WHERE user_id = $1",
    )
    .bind(user)
    .fetch_optional(pool)
    .await?;
    let deliveries = sqlx::query_as::<_, DeliveryRecord>(
        "SELECT d.campaign_id, c.name AS campaign, d.occurrence, d.channel, d.status, d.variant,
                d.not_before, d.sent_at, d.attempts, d.error
         FROM campaign_deliveries d JOIN campaigns c ON c.id = d.campaign_id
         WHERE d.user_id = $1
         ORDER BY d.not_before, d.campaign_id, d.occurrence, d.channel",
    )
    .bind(user)
    .fetch_all(pool)
    .await?;
    let suppressions = sqlx::query_as::<_, SuppressionRecord>(
        "SELECT channel, reason, at FROM campaign_suppressions WHERE user_id = $1
         ORDER BY at, channel",
    )
    .bind(user)
    .fetch_all(pool)
    .await?;
    let engagements = sqlx::query_as::<_, EngagementRecord>(
        "SELECT campaign_id, kind, at FROM campaign_engagements WHERE user_id = $1
         ORDER BY at, campaign_id, kind",
    )
    .bind(user)
    .fetch_all(pool)
    .await?;
    let purchases = sqlx::query_as::<_, PurchaseRecord>(
        "SELECT order_id, amount, currency, at FROM campaign_purchases WHERE user_id = $1
         ORDER BY at, order_id",
    )
    .bind(user)
    .fetch_all(pool)
    .await?;
    let triggers = sqlx::query_as::<_, TriggerRecord>(
        "SELECT campaign_id, event_id, occurrence, at FROM campaign_triggers WHERE user_id = $1
         ORDER BY at, campaign_id, event_id",
    )
    .bind(user)
    .fetch_all(pool)
    .await?;
    Ok(Records {
        user_id: user.to_owned(),
        contact,
        deliveries,
        suppressions,
        engagements,
        purchases,
        triggers,
    })
}

/// In one transaction (a retry after a failure finds everything or nothing done): deletes the
/// contact, the suppressions, the messages not sent yet (PENDING, or SENDING: nothing
/// may go out to the person after this) and the trigger records; moves the sent or tried
/// messages, the opens and clicks and the purchases to `pseudonym`, blanking the messages'
/// error text. A row the pseudonym already has (the person engaged again through an old link
/// after an earlier erasure) is the same record: the person's copy is deleted instead of
/// breaking the primary key, and counted as moved. A second run finds nothing.
pub async fn erase(pool: &PgPool, user: &str, pseudonym: &str) -> Result<Erased> {
    let mut tx = pool.begin().await?;
    let contacts = delete(
        &mut tx,
        "DELETE FROM campaign_contacts WHERE user_id = $1",
        user,
    )
    .await?;
    let suppressions = delete(
        &mut tx,
        "DELETE FROM campaign_suppressions WHERE user_id = $1",
        user,
    )
    .await?;
    let unsent = delete(
        &mut tx,
        "DELETE FROM campaign_deliveries WHERE user_id = $1 AND status IN ('PENDING', 'SENDING')",
        user,
    )
    .await?;
    let triggers = delete(
        &mut tx,
        "DELETE FROM campaign_triggers WHERE user_id = $1",
        user,
    )
    .await?;
    let merged_deliveries = rename(
        &mut tx,
        "DELETE FROM campaign_deliveries d USING campaign_deliveries p
         WHERE d.user_id = $1 AND p.user_id = $2 AND p.campaign_id = d.campaign_id
           AND p.occurrence = d.occurrence AND p.channel = d.channel",
        user,
        pseudonym,
    )
    .await?;
    let deliveries = rename(
        &mut tx,
        "UPDATE campaign_deliveries SET user_id = $2, error = '' WHERE user_id = $1",
        user,
        pseudonym,
    )
    .await?;
    let merged_engagements = rename(
        &mut tx,
        "DELETE FROM campaign_engagements e USING campaign_engagements p
         WHERE e.user_id = $1 AND p.user_id = $2 AND p.campaign_id = e.campaign_id
           AND p.kind = e.kind",
        user,
        pseudonym,
    )
    .await?;
    let engagements = rename(
        &mut tx,
        "UPDATE campaign_engagements SET user_id = $2 WHERE user_id = $1",
        user,
        pseudonym,
    )
    .await?;
    let purchases = rename(
        &mut tx,
        "UPDATE campaign_purchases SET user_id = $2 WHERE user_id = $1",
        user,
        pseudonym,
    )
    .await?;
    tx.commit().await?;
    Ok(Erased {
        contacts,
        suppressions,
        unsent,
        triggers,
        deliveries: deliveries + merged_deliveries,
        engagements: engagements + merged_engagements,
        purchases,
    })
}

/// Runs `sql`, a `DELETE` by the user id (`$1`); the rows it deleted.
async fn delete(tx: &mut PgConnection, sql: &'static str, user: &str) -> Result<u64> {
    Ok(sqlx::query(sql)
        .bind(user)
        .execute(tx)
        .await?
        .rows_affected())
}

/// Runs `sql` with the user id as `$1` and the pseudonym as `$2`; the rows it touched.
async fn rename(
    tx: &mut PgConnection,
    sql: &'static str,
    user: &str,
    pseudonym: &str,
) -> Result<u64> {
    Ok(sqlx::query(sql)
        .bind(user)
        .bind(pseudonym)
        .execute(tx)
        .await?
        .rows_affected())
}
