//! A user's records for the privacy jobs (`crate::privacy`), in PostgreSQL: everything held
//! about them, and their erasure. Decisions, cases (with their audit trail) and chargebacks
//! stay under the user's pseudonym — anti-fraud and chargeback records must be kept, and they
//! are the model's training labels — with the device, IP, card, e-mail domain and user agent
//! of the user's requests blanked; the profile behind the trust score, the first-seen devices
//! and IPs and the failed payments go.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::app::FraudError;

/// What `fraud_users` holds about the user: the parts of the trust score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ProfileRecord {
    pub first_seen_at: DateTime<Utc>,
    pub account_created_at: Option<DateTime<Utc>>,
    pub successful_orders: i64,
    pub chargebacks: i64,
}

/// A device or IP first seen for the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct SeenRecord {
    pub kind: String,
    pub value: String,
    pub first_seen_at: DateTime<Utc>,
}

/// A decision about one of the user's transactions, with what it was made from.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct DecisionRecord {
    pub transaction_id: String,
    pub amount: i64,
    pub currency: String,
    /// What the caller sent (device, IP, card, e-mail domain, user agent, countries).
    pub request: serde_json::Value,
    pub facts: serde_json::Value,
    pub reasons: serde_json::Value,
    pub rule_hits: serde_json::Value,
    pub score: f64,
    pub level: String,
    pub decision: String,
    pub degraded: bool,
    pub model_version: Option<i64>,
    pub decided_at: DateTime<Utc>,
}

/// A review case about one of the user's transactions (the analyst's name is theirs, not the
/// user's, and is left out).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct CaseRecord {
    pub id: Uuid,
    pub transaction_id: String,
    pub score: f64,
    pub level: String,
    pub status: String,
    pub verdict: Option<String>,
    pub reason: Option<String>,
    pub opened_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ChargebackRecord {
    pub transaction_id: String,
    pub amount: i64,
    pub reason: String,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct PaymentFailureRecord {
    pub payment_id: String,
    pub failed_at: DateTime<Utc>,
}

/// Everything PostgreSQL holds about one user (the Redis copies are of the same records).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Records {
    pub user_id: String,
    /// None when fraud never stored a profile for the user.
    pub profile: Option<ProfileRecord>,
    pub seen: Vec<SeenRecord>,
    pub decisions: Vec<DecisionRecord>,
    pub cases: Vec<CaseRecord>,
    pub chargebacks: Vec<ChargebackRecord>,
    pub payment_failures: Vec<PaymentFailureRecord>,
}

/// What a transaction put into the velocity sets of Redis: its member (`<amount>:<id>`) and the
/// card, device and IP whose sets hold it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct VelocityEntry {
    pub transaction_id: String,
    pub amount: i64,
    pub card: Option<String>,
    pub device: Option<String>,
    pub ip: Option<String>,
}

/// What [`erase`] did in PostgreSQL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    pub decisions: u64,
    pub cases: u64,
    pub case_audit: u64,
    pub chargebacks: u64,
    pub profiles: u64,
    pub seen: u64,
    pub payment_failures: u64,
}

/// Everything held about `user`, oldest first within each kind.
pub async fn records(pool: &PgPool, user: &str) -> Result<Records, FraudError> {
    let profile = sqlx::query_as::<_, ProfileRecord>(
        "SELECT first_seen_at, account_created_at, successful_orders, chargebacks
         FROM fraud_users WHERE user_id = $1",
    )
    .bind(user)
    .fetch_optional(pool)
    .await?;
    let seen = sqlx::query_as::<_, SeenRecord>(
        "SELECT kind, value, first_seen_at FROM fraud_seen WHERE user_id = $1
         ORDER BY first_seen_at, kind, value",
    )
    .bind(user)
    .fetch_all(pool)
    .await?;
    let decisions = sqlx::query_as::<_, DecisionRecord>(
        "SELECT transaction_id, amount, currency, request, facts, reasons, rule_hits, score,
                level, decision, degraded, model_version, decided_at
         FROM fraud_decisions WHERE user_id = $1 ORDER BY decided_at, transaction_id",
    )
    .bind(user)
    .fetch_all(pool)
    .await?;
    let cases = sqlx::query_as::<_, CaseRecord>(
        "SELECT id, transaction_id, score, level, status, verdict, reason, opened_at, decided_at
         FROM fraud_cases WHERE user_id = $1 ORDER BY opened_at, id",
    )
    .bind(user)
    .fetch_all(pool)
    .await?;
    let chargebacks = sqlx::query_as::<_, ChargebackRecord>(
        "SELECT transaction_id, amount, reason, recorded_at FROM fraud_chargebacks
         WHERE user_id = $1 ORDER BY recorded_at, transaction_id",
    )
    .bind(user)
    .fetch_all(pool)
    .await?;
    let payment_failures = sqlx::query_as::<_, PaymentFailureRecord>(
        "SELECT payment_id, failed_at FROM fraud_payment_failures WHERE user_id = $1
         ORDER BY failed_at, payment_id",
    )
    .bind(user)
    .fetch_all(pool)
    .await?;
    Ok(Records {
        user_id: user.to_owned(),
        profile,
        seen,
        decisions,
        cases,
        chargebacks,
        payment_failures,
    })
}

/// The velocity entries of `user`'s transactions, from their decisions while they still name
/// the user (an erasure reads them before it blanks the requests, and a retry after the
/// PostgreSQL step finds none: Redis was cleared before it).
pub async fn velocity_entries(pool: &PgPool, user: &str) -> Result<Vec<VelocityEntry>, FraudError> {
    Ok(sqlx::query_as::<_, VelocityEntry>(
        "SELECT transaction_id, amount, request->>'card' AS card, request->>'device' AS device,
                request->>'ip' AS ip
         FROM fraud_decisions WHERE user_id = $1 ORDER BY transaction_id",
    )
    .bind(user)
    .fetch_all(pool)
    .await?)
}

/// In one transaction: the decisions, cases and chargebacks of `user` pass to `pseudonym`, with
/// the identifying fields of the requests blanked and the user id replaced in the free text
/// about them (a case's reason and audit details, a chargeback's reason); the profile, the
/// first-seen devices and IPs and the failed payments are deleted. None of the kept tables has
/// a unique key on the user, so nothing merges. A second run finds nothing.
pub async fn erase(pool: &PgPool, user: &str, pseudonym: &str) -> Result<Erased, FraudError> {
    let mut tx = pool.begin().await?;
    let case_audit = sqlx::query(
        "UPDATE fraud_case_audit a SET detail = replace(a.detail, $1, $2)
         FROM fraud_cases c
         WHERE c.id = a.case_id AND c.user_id = $1 AND strpos(a.detail, $1) > 0",
    )
    .bind(user)
    .bind(pseudonym)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let cases = sqlx::query(
        "UPDATE fraud_cases SET user_id = $2, reason = replace(reason, $1, $2)
         WHERE user_id = $1",
    )
    .bind(user)
    .bind(pseudonym)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let decisions = sqlx::query(
        "UPDATE fraud_decisions
         SET user_id = $2,
             request = request || jsonb_build_object('ip', NULL, 'device', NULL, 'card', NULL,
                                                     'email_domain', NULL, 'user_agent', '')
         WHERE user_id = $1",
    )
    .bind(user)
    .bind(pseudonym)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let chargebacks = sqlx::query(
        "UPDATE fraud_chargebacks SET user_id = $2, reason = replace(reason, $1, $2)
         WHERE user_id = $1",
    )
    .bind(user)
    .bind(pseudonym)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let seen = delete(&mut tx, "DELETE FROM fraud_seen WHERE user_id = $1", user).await?;
    let profiles = delete(&mut tx, "DELETE FROM fraud_users WHERE user_id = $1", user).await?;
    let payment_failures = delete(
        &mut tx,
        "DELETE FROM fraud_payment_failures WHERE user_id = $1",
        user,
    )
    .await?;
    tx.commit().await?;
    Ok(Erased {
        decisions,
        cases,
        case_audit,
        chargebacks,
        profiles,
        seen,
        payment_failures,
    })
}

/// Runs `sql`, a `DELETE` by user id, and says how many rows went.
async fn delete(
    tx: &mut sqlx::PgConnection,
    sql: &'static str,
    user: &str,
) -> Result<u64, FraudError> {
    Ok(sqlx::query(sql)
        .bind(user)
        .execute(tx)
        .await?
        .rows_affected())
}
