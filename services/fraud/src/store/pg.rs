//! PostgreSQL: the record of every user's history (read in one query when Redis holds no copy
//! of it, or is down); a check stores its decision, first-seen
//! device and IP, case and `fraud.decided` event in one statement. Decisions go through a
//! group commit ([`titan_kit::batch`]): the checks that arrive while a write is in flight are
//! stored together in the next one, each answered once its batch has committed.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Row, postgres::PgRow, types::Json};
use titan_kit::{
    batch::{self, BatchOptions, Batcher},
    events::{Envelope, outbox},
};
use uuid::Uuid;

use crate::{
    app::{
        Case, Decided, DecidedEvent, FraudError, FraudStore, ModelVersion, NewDecision, Reason,
        SavedRule, check_assign, check_decide,
    },
    domain::{
        CaseStatus, DECIDED, Facts, Level, SERVICE, Transaction, Verdict,
        level::{decision_str, parse_decision},
        model::Model,
        profile::{HISTORY, Known, MAX_FAILURES, MAX_SEEN, Recent, Seen, Snapshot},
        rules::{self, Action, Hit, Mode, Rule},
    },
};

#[derive(Debug, Clone)]
pub struct PgFraud {
    pool: PgPool,
    writer: Arc<DecisionWriter>,
    decisions: Batcher<NewDecision, Result<Decided, FraudError>>,
}

impl PgFraud {
    /// Starts the decision writers on the current Tokio runtime.
    pub fn new(pool: PgPool, cell: String) -> Self {
        let writer = Arc::new(DecisionWriter {
            pool: pool.clone(),
            cell,
        });
        let batch_writer = writer.clone();
        let decisions = Batcher::spawn(
            "fraud_decisions",
            BatchOptions::default(),
            move |batch: Vec<NewDecision>| {
                let writer = batch_writer.clone();
                async move { writer.write(batch).await }
            },
        );
        Self {
            pool,
            writer,
            decisions,
        }
    }

    /// Stores a batch of decisions in one statement, as the group commit does, and answers
    /// each with what is stored for its transaction id (see [`FraudStore::record`]).
    pub async fn record_batch(&self, batch: &[NewDecision]) -> Result<Vec<Decided>, FraudError> {
        self.writer.write_all(batch).await
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

fn corrupt(what: &str) -> FraudError {
    FraudError::Kit(titan_kit::KitError::Other(format!(
        "stored {what} does not parse"
    )))
}

/// One earlier decision as the snapshot query returns it.
#[derive(Debug, serde::Deserialize)]
struct RecentRow {
    transaction_id: String,
    amount: i64,
    at: DateTime<Utc>,
}

/// `kind:value` of `fraud_seen` as the cache's set member.
fn seen_of(s: &str) -> Result<Seen, FraudError> {
    match s.split_once(':') {
        Some(("device", v)) => Ok(Seen::Device(v.to_owned())),
        Some(("ip", v)) => Ok(Seen::Ip(v.to_owned())),
        _ => Err(corrupt("fraud_seen.kind")),
    }
}

/// A row limit as PostgreSQL takes it (the limits are small constants).
fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn decided(row: &PgRow) -> Result<Decided, FraudError> {
    let level: String = row.try_get("level")?;
    let decision: String = row.try_get("decision")?;
    let reasons: serde_json::Value = row.try_get("reasons")?;
    let hits: serde_json::Value = row.try_get("rule_hits")?;
    Ok(Decided {
        transaction_id: row.try_get("transaction_id")?,
        user_id: row.try_get("user_id")?,
        amount: row.try_get("amount")?,
        score: row.try_get("score")?,
        level: Level::parse(&level).ok_or_else(|| corrupt("level"))?,
        decision: parse_decision(&decision).ok_or_else(|| corrupt("decision"))?,
        reasons: serde_json::from_value::<Vec<Reason>>(reasons).map_err(|_| corrupt("reasons"))?,
        rule_hits: serde_json::from_value::<Vec<Hit>>(hits).map_err(|_| corrupt("rule hits"))?,
        degraded: row.try_get("degraded")?,
        model_version: row.try_get("model_version")?,
        case_id: row.try_get("case_id")?,
        decided_at: row.try_get("decided_at")?,
    })
}

/// Stored decisions by transaction id (`$1`, an array).
const DECIDED_SELECT: &str =
    "SELECT d.transaction_id, d.user_id, d.amount, d.score, d.level, d.decision,
        d.reasons, d.rule_hits, d.degraded, d.model_version, d.decided_at, c.id AS case_id
     FROM fraud_decisions d LEFT JOIN fraud_cases c USING (transaction_id)
     WHERE d.transaction_id = ANY($1)";

/// One statement for a whole batch — atomic on its own, one round trip: the decisions, then
/// for those that are new the users, their first-seen devices and IPs, the cases and the
/// `fraud.decided` events (`$1`–`$5`, [`outbox::Staged`]). A user twice in a batch is upserted once
/// (`ON CONFLICT DO UPDATE` may not touch a row twice in one statement): first seen at its
/// first decision, with the account creation time the newest request that gave one gave.
const RECORD_BATCH: &str = concat!(
    "WITH i AS (
         SELECT * FROM UNNEST($6::text[], $7::text[], $8::int8[], $9::text[], $10::jsonb[],
                              $11::jsonb[], $12::text[], $13::jsonb[], $14::jsonb[], $15::float8[],
                              $16::text[], $17::text[], $18::bool[], $19::int8[],
                              $20::timestamptz[], $21::timestamptz[], $22::text[], $23::text[],
                              $24::uuid[])
             AS i(transaction_id, user_id, amount, currency, request, facts, features, reasons,
                  rule_hits, score, level, decision, degraded, model_version, decided_at,
                  account_created_at, device, ip, case_id)
     ), d AS (
         INSERT INTO fraud_decisions (transaction_id, user_id, amount, currency, request, facts,
             features, reasons, rule_hits, score, level, decision, degraded, model_version,
             decided_at)
         SELECT transaction_id, user_id, amount, currency, request, facts, features::float8[],
                reasons, rule_hits, score, level, decision, degraded, model_version, decided_at
           FROM i
         ON CONFLICT (transaction_id) DO NOTHING
         RETURNING transaction_id
     ), n AS (
         SELECT i.* FROM i JOIN d USING (transaction_id)
     ), u AS (
         INSERT INTO fraud_users (user_id, first_seen_at, account_created_at)
         SELECT user_id, min(decided_at),
                (array_agg(account_created_at ORDER BY decided_at DESC)
                   FILTER (WHERE account_created_at IS NOT NULL))[1]
           FROM n GROUP BY user_id
         ON CONFLICT (user_id) DO UPDATE SET account_created_at = EXCLUDED.account_created_at
         WHERE EXCLUDED.account_created_at IS NOT NULL
           AND EXCLUDED.account_created_at IS DISTINCT FROM fraud_users.account_created_at
         RETURNING 1
     ), s AS (
         INSERT INTO fraud_seen (user_id, kind, value, first_seen_at)
         SELECT n.user_id, k.kind, k.value, n.decided_at
           FROM n, LATERAL (VALUES ('device', n.device), ('ip', n.ip)) AS k(kind, value)
          WHERE k.value IS NOT NULL
         ON CONFLICT DO NOTHING
         RETURNING 1
     ), c AS (
         INSERT INTO fraud_cases (id, transaction_id, user_id, score, level, status, opened_at)
         SELECT case_id, transaction_id, user_id, score, level, 'OPEN', decided_at
           FROM n WHERE case_id IS NOT NULL
         RETURNING 1
     ), kept AS (
         SELECT transaction_id AS key FROM d
     ), ",
    titan_kit::outbox_cte!(),
    " SELECT transaction_id FROM d"
);

/// Writes batches of decisions for [`PgFraud`]'s group commit.
#[derive(Debug)]
struct DecisionWriter {
    pool: PgPool,
    cell: String,
}

impl DecisionWriter {
    /// One answer per decision, in order (a failed batch is retried one by one).
    async fn write(self: Arc<Self>, batch: Vec<NewDecision>) -> Vec<Result<Decided, FraudError>> {
        batch::or_one_by_one("fraud_decisions", &batch, |b| {
            let writer = self.clone();
            Box::pin(async move { writer.write_all(b).await })
        })
        .await
    }

    /// Stores the decisions not stored yet with their events, in one statement, and answers
    /// each with what is stored for its transaction id: itself, or an earlier decision (a
    /// replay, or the same id twice in the batch).
    async fn write_all(&self, batch: &[NewDecision]) -> Result<Vec<Decided>, FraudError> {
        let mut firsts: Vec<&NewDecision> = Vec::with_capacity(batch.len());
        for n in batch {
            if !firsts
                .iter()
                .any(|f| f.decided.transaction_id == n.decided.transaction_id)
            {
                firsts.push(n);
            }
        }
        let c = Columns::of(&firsts)?;
        let mut events = outbox::Staged::new(SERVICE);
        for n in &firsts {
            events.push(
                &n.decided.transaction_id,
                &Envelope::new(&self.cell, DECIDED, 1, &event(n))?,
            )?;
        }
        let inserted: Vec<String> = events
            .bind(sqlx::query(RECORD_BATCH))
            .bind(c.transaction_id)
            .bind(c.user_id)
            .bind(c.amount)
            .bind(c.currency)
            .bind(c.request)
            .bind(c.facts)
            .bind(c.features)
            .bind(c.reasons)
            .bind(c.rule_hits)
            .bind(c.score)
            .bind(c.level)
            .bind(c.decision)
            .bind(c.degraded)
            .bind(c.model_version)
            .bind(c.decided_at)
            .bind(c.account_created_at)
            .bind(c.device)
            .bind(c.ip)
            .bind(c.case_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?;
        let (new, earlier): (Vec<&NewDecision>, Vec<&NewDecision>) = firsts
            .iter()
            .partition(|n| inserted.contains(&n.decided.transaction_id));
        // Stored before (a replay, or a check racing this one): answer what is stored.
        let mut stored: Vec<Decided> = if earlier.is_empty() {
            Vec::new()
        } else {
            let ids: Vec<&str> = earlier
                .iter()
                .map(|n| n.decided.transaction_id.as_str())
                .collect();
            sqlx::query(DECIDED_SELECT)
                .bind(ids)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(decided)
                .collect::<Result<_, _>>()?
        };
        stored.extend(new.into_iter().map(|n| n.decided.clone()));
        batch
            .iter()
            .map(|n| {
                stored
                    .iter()
                    .find(|d| d.transaction_id == n.decided.transaction_id)
                    .cloned()
                    .ok_or_else(|| corrupt("decision (neither written nor found)"))
            })
            .collect()
    }
}

/// The `fraud.decided` payload of a decision.
fn event(n: &NewDecision) -> DecidedEvent {
    let d = &n.decided;
    DecidedEvent {
        transaction_id: d.transaction_id.clone(),
        user_id: d.user_id.clone(),
        amount: d.amount,
        currency: n.transaction.currency.clone(),
        score: d.score,
        level: d.level,
        decision: decision_str(d.decision).to_owned(),
        reasons: d.reasons.iter().map(|r| r.code.clone()).collect(),
        degraded: d.degraded,
        model_version: d.model_version,
        case_id: d.case_id,
    }
}

/// The `request` column: what the caller sent beside the decision's own columns.
#[derive(Serialize)]
struct Request<'a> {
    ip: &'a Option<String>,
    device: &'a Option<String>,
    card: &'a Option<String>,
    email_domain: &'a Option<String>,
    user_agent: &'a str,
    country: &'a Option<String>,
    billing_country: &'a Option<String>,
    shipping_country: &'a Option<String>,
    account_created_at: Option<DateTime<Utc>>,
}

/// A batch of decisions as the column arrays [`RECORD_BATCH`] unnests; the JSON columns are
/// serialised straight into the statement's parameters (a `serde_json::Value` per column and
/// row was built and dropped before).
#[derive(Default)]
struct Columns<'a> {
    transaction_id: Vec<&'a str>,
    user_id: Vec<&'a str>,
    amount: Vec<i64>,
    currency: Vec<&'a str>,
    request: Vec<Json<Request<'a>>>,
    facts: Vec<Json<&'a Facts>>,
    /// Array literals (`{0.1,2}`): a batch of arrays cannot be one SQL array of arrays of
    /// different rows' lengths, and text round-trips an `f64` exactly.
    features: Vec<String>,
    reasons: Vec<Json<&'a [Reason]>>,
    rule_hits: Vec<Json<&'a [Hit]>>,
    score: Vec<f64>,
    level: Vec<&'static str>,
    decision: Vec<&'static str>,
    degraded: Vec<bool>,
    model_version: Vec<Option<i64>>,
    decided_at: Vec<DateTime<Utc>>,
    account_created_at: Vec<Option<DateTime<Utc>>>,
    device: Vec<Option<&'a str>>,
    ip: Vec<Option<&'a str>>,
    case_id: Vec<Option<Uuid>>,
}

impl<'a> Columns<'a> {
    fn of(batch: &[&'a NewDecision]) -> Result<Self, FraudError> {
        let mut c = Self::default();
        for n in batch {
            let (d, t) = (&n.decided, &n.transaction);
            c.transaction_id.push(&d.transaction_id);
            c.user_id.push(&d.user_id);
            c.amount.push(d.amount);
            c.currency.push(&t.currency);
            c.request.push(Json(Request {
                ip: &t.ip,
                device: &t.device,
                card: &t.card,
                email_domain: &t.email_domain,
                user_agent: &t.user_agent,
                country: &t.country,
                billing_country: &t.billing_country,
                shipping_country: &t.shipping_country,
                account_created_at: t.account_created_at,
            }));
            c.facts.push(Json(&n.facts));
            let features: Vec<String> = n.features.iter().map(f64::to_string).collect();
            c.features.push(format!("{{{}}}", features.join(",")));
            c.reasons.push(Json(&d.reasons));
            c.rule_hits.push(Json(&d.rule_hits));
            c.score.push(d.score);
            c.level.push(d.level.as_str());
            c.decision.push(decision_str(d.decision));
            c.degraded.push(d.degraded);
            c.model_version.push(d.model_version);
            c.decided_at.push(d.decided_at);
            c.account_created_at.push(t.account_created_at);
            c.device.push(t.device.as_deref());
            c.ip.push(t.ip.as_deref());
            c.case_id.push(d.case_id);
        }
        Ok(c)
    }
}

fn case(row: &PgRow) -> Result<Case, FraudError> {
    let level: String = row.try_get("level")?;
    let status: String = row.try_get("status")?;
    let verdict: Option<String> = row.try_get("verdict")?;
    Ok(Case {
        id: row.try_get("id")?,
        transaction_id: row.try_get("transaction_id")?,
        user_id: row.try_get("user_id")?,
        score: row.try_get("score")?,
        level: Level::parse(&level).ok_or_else(|| corrupt("level"))?,
        status: CaseStatus::parse(&status).ok_or_else(|| corrupt("case status"))?,
        assignee: row.try_get("assignee")?,
        verdict: match verdict {
            Some(v) => Some(Verdict::parse(&v).ok_or_else(|| corrupt("verdict"))?),
            None => None,
        },
        reason: row.try_get("reason")?,
        opened_at: row.try_get("opened_at")?,
        decided_at: row.try_get("decided_at")?,
    })
}

const CASE_COLUMNS: &str = "id, transaction_id, user_id, score, level, status, assignee, verdict, reason, opened_at, decided_at";

fn saved_rule(row: &PgRow) -> Result<SavedRule, FraudError> {
    let condition: String = row.try_get("condition")?;
    let action: serde_json::Value = row.try_get("action")?;
    let mode: serde_json::Value = serde_json::Value::String(row.try_get("mode")?);
    Ok(SavedRule {
        rule: Rule {
            name: row.try_get("name")?,
            version: row.try_get("version")?,
            priority: row.try_get("priority")?,
            // Checked when it was saved; a stored condition that no longer parses (a later
            // release renamed an attribute) is a corrupt row, not a scoring-time parse error.
            expr: rules::parse(&condition).map_err(|_| corrupt("rule condition"))?,
            condition,
            action: serde_json::from_value::<Action>(action).map_err(|_| corrupt("rule action"))?,
            mode: serde_json::from_value::<Mode>(mode).map_err(|_| corrupt("rule mode"))?,
        },
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
    })
}

fn model_version(row: &PgRow) -> Result<ModelVersion, FraudError> {
    Ok(ModelVersion {
        version: row.try_get("version")?,
        model: Model {
            intercept: row.try_get("intercept")?,
            weights: row.try_get("weights")?,
        },
        auc: row.try_get("auc")?,
        brier: row.try_get("brier")?,
        train_examples: row.try_get("train_examples")?,
        test_examples: row.try_get("test_examples")?,
        active: row.try_get("active")?,
        created_at: row.try_get("created_at")?,
    })
}

const MODEL_COLUMNS: &str =
    "version, intercept, weights, auc, brier, train_examples, test_examples, active, created_at";

fn mode_str(m: Mode) -> &'static str {
    match m {
        Mode::Enforce => "ENFORCE",
        Mode::Shadow => "SHADOW",
        Mode::Disabled => "DISABLED",
    }
}

/// A stored model version with its held-out measures.
#[derive(Debug, Clone)]
pub struct NewModel<'a> {
    pub model: &'a Model,
    pub auc: f64,
    pub brier: f64,
    pub calibration: serde_json::Value,
    pub train_examples: i64,
    pub test_examples: i64,
    pub at: DateTime<Utc>,
}

impl PgFraud {
    async fn case_for_update(tx: &mut sqlx::PgConnection, id: Uuid) -> Result<Case, FraudError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CASE_COLUMNS} FROM fraud_cases WHERE id = $1 FOR UPDATE"
        )))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(FraudError::UnknownCase(id))?;
        case(&row)
    }

    async fn audit(
        tx: &mut sqlx::PgConnection,
        id: Uuid,
        at: DateTime<Utc>,
        actor: &str,
        action: &str,
        detail: &str,
    ) -> Result<(), FraudError> {
        sqlx::query(
            "INSERT INTO fraud_case_audit (case_id, at, actor, action, detail) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(at)
        .bind(actor)
        .bind(action)
        .bind(detail)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// Stores a trained model, inactive.
    pub async fn insert_model(&self, m: &NewModel<'_>) -> Result<ModelVersion, FraudError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO fraud_models (intercept, weights, auc, brier, calibration, train_examples,
                 test_examples, active, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, false, $8) RETURNING {MODEL_COLUMNS}"
        )))
        .bind(m.model.intercept)
        .bind(&m.model.weights)
        .bind(m.auc)
        .bind(m.brier)
        .bind(&m.calibration)
        .bind(m.train_examples)
        .bind(m.test_examples)
        .bind(m.at)
        .fetch_one(&self.pool)
        .await?;
        model_version(&row)
    }

    /// Labelled examples `(transaction id, features, fraud)`: a chargeback or a FRAUD verdict
    /// is fraud, a LEGITIMATE verdict is not, and an approved decision older than `settled`
    /// with neither is taken as legitimate.
    pub async fn labelled(
        &self,
        settled: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<(String, Vec<f64>, bool)>, FraudError> {
        let rows = sqlx::query(
            "SELECT d.transaction_id, d.features,
                    (cb.transaction_id IS NOT NULL OR COALESCE(c.verdict = 'FRAUD', false)) AS fraud
             FROM fraud_decisions d
             LEFT JOIN fraud_chargebacks cb USING (transaction_id)
             LEFT JOIN fraud_cases c USING (transaction_id)
             WHERE cb.transaction_id IS NOT NULL
                OR c.verdict IS NOT NULL
                OR (d.decision = 'APPROVE' AND d.decided_at < $1)
             ORDER BY d.transaction_id
             LIMIT $2",
        )
        .bind(settled)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("transaction_id")?,
                    r.try_get("features")?,
                    r.try_get("fraud")?,
                ))
            })
            .collect()
    }
}

impl FraudStore for PgFraud {
    async fn snapshot(
        &self,
        t: &Transaction,
        since_7d: DateTime<Utc>,
    ) -> Result<Snapshot, FraudError> {
        let row = sqlx::query(
            "SELECT u.first_seen_at, u.account_created_at,
                    COALESCE(u.successful_orders, 0) AS successful_orders,
                    COALESCE(u.chargebacks, 0) AS chargebacks,
                    EXISTS (SELECT 1 FROM fraud_seen
                            WHERE user_id = $1 AND kind = 'device' AND value = $2) AS device_seen,
                    EXISTS (SELECT 1 FROM fraud_seen
                            WHERE user_id = $1 AND kind = 'ip' AND value = $3) AS ip_seen,
                    ARRAY(SELECT failed_at FROM fraud_payment_failures
                          WHERE user_id = $1 AND failed_at > $4
                          ORDER BY failed_at DESC LIMIT $5) AS failures,
                    (SELECT COALESCE(json_agg(json_build_object(
                                'transaction_id', transaction_id, 'amount', amount, 'at', decided_at)
                              ORDER BY decided_at DESC, transaction_id), '[]')
                       FROM (SELECT transaction_id, amount, decided_at FROM fraud_decisions
                             WHERE user_id = $1
                             ORDER BY decided_at DESC, transaction_id LIMIT $6) r) AS recent,
                    ARRAY(SELECT kind || ':' || value FROM fraud_seen
                          WHERE user_id = $1 LIMIT $7) AS seen
             FROM (SELECT 1) AS one
             LEFT JOIN fraud_users u ON u.user_id = $1",
        )
        .bind(&t.user_id)
        .bind(t.device.as_deref().unwrap_or_default())
        .bind(t.ip.as_deref().unwrap_or_default())
        .bind(since_7d)
        .bind(limit(MAX_FAILURES))
        .bind(limit(HISTORY + 1))
        .bind(limit(MAX_SEEN + 1))
        .fetch_one(&self.pool)
        .await?;
        let recent: sqlx::types::Json<Vec<RecentRow>> = row.try_get("recent")?;
        let seen: Vec<String> = row.try_get("seen")?;
        let seen = (seen.len() <= MAX_SEEN)
            .then(|| {
                seen.iter()
                    .map(|s| seen_of(s))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(Snapshot {
            known: Known {
                first_seen_at: row.try_get("first_seen_at")?,
                account_created_at: row.try_get("account_created_at")?,
                successful_orders: row.try_get("successful_orders")?,
                chargebacks: row.try_get("chargebacks")?,
                device_seen: row.try_get("device_seen")?,
                ip_seen: row.try_get("ip_seen")?,
                failures: row.try_get("failures")?,
                recent: recent
                    .0
                    .into_iter()
                    .map(|r| Recent {
                        transaction_id: r.transaction_id,
                        amount: r.amount,
                        at: r.at,
                    })
                    .collect(),
            },
            seen,
        })
    }

    async fn record(&self, n: &NewDecision) -> Result<Decided, FraudError> {
        self.decisions.submit(n.clone()).await?
    }

    async fn record_logged(&self, batch: Vec<NewDecision>) -> Vec<Result<Decided, FraudError>> {
        self.writer.clone().write(batch).await
    }

    async fn rules(&self) -> Result<Vec<SavedRule>, FraudError> {
        let rows = sqlx::query(
            "SELECT DISTINCT ON (name) name, version, priority, condition, action, mode, created_by, created_at
             FROM fraud_rules ORDER BY name, version DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(saved_rule).collect()
    }

    async fn save_rule(
        &self,
        r: &Rule,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<SavedRule, FraudError> {
        let mut tx = self.pool.begin().await?;
        // One saver per rule name at a time, so versions are consecutive.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 20))")
            .bind(&r.name)
            .execute(&mut *tx)
            .await?;
        let current = sqlx::query(
            "SELECT name, version, priority, condition, action, mode, created_by, created_at
             FROM fraud_rules WHERE name = $1 ORDER BY version DESC LIMIT 1",
        )
        .bind(&r.name)
        .fetch_optional(&mut *tx)
        .await?;
        let current = current.as_ref().map(saved_rule).transpose()?;
        let unchanged = |c: &&SavedRule| {
            c.rule.priority == r.priority
                && c.rule.condition == r.condition
                && c.rule.action == r.action
                && c.rule.mode == r.mode
        };
        if let Some(c) = current.as_ref().filter(unchanged) {
            return Ok(c.clone());
        }
        let version = current.map_or(1, |c| c.rule.version + 1);
        sqlx::query(
            "INSERT INTO fraud_rules (name, version, priority, condition, action, mode, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&r.name)
        .bind(version)
        .bind(r.priority)
        .bind(&r.condition)
        .bind(serde_json::to_value(r.action).map_err(|_| corrupt("rule action"))?)
        .bind(mode_str(r.mode))
        .bind(by)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(SavedRule {
            rule: Rule {
                version,
                ..r.clone()
            },
            created_by: by.to_owned(),
            created_at: at,
        })
    }

    async fn active_model(&self) -> Result<Option<ModelVersion>, FraudError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {MODEL_COLUMNS} FROM fraud_models WHERE active"
        )))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(model_version).transpose()
    }

    async fn models(&self) -> Result<Vec<ModelVersion>, FraudError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {MODEL_COLUMNS} FROM fraud_models ORDER BY version DESC LIMIT 50"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(model_version).collect()
    }

    async fn promote(&self, version: i64) -> Result<ModelVersion, FraudError> {
        let mut tx = self.pool.begin().await?;
        let exists = sqlx::query("SELECT 1 FROM fraud_models WHERE version = $1 FOR UPDATE")
            .bind(version)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(FraudError::UnknownModel(version));
        }
        sqlx::query("UPDATE fraud_models SET active = false WHERE active AND version <> $1")
            .bind(version)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE fraud_models SET active = true WHERE version = $1 RETURNING {MODEL_COLUMNS}"
        )))
        .bind(version)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        model_version(&row)
    }

    async fn chargeback(
        &self,
        transaction_id: &str,
        user_id: &str,
        amount: i64,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<i64, FraudError> {
        let mut tx = self.pool.begin().await?;
        let owner: Option<String> =
            sqlx::query_scalar("SELECT user_id FROM fraud_decisions WHERE transaction_id = $1")
                .bind(transaction_id)
                .fetch_optional(&mut *tx)
                .await?;
        let owner =
            owner.ok_or_else(|| FraudError::UnknownTransaction(transaction_id.to_owned()))?;
        if owner != user_id {
            return Err(FraudError::UserMismatch {
                transaction: transaction_id.to_owned(),
                owner,
                given: user_id.to_owned(),
            });
        }
        let inserted = sqlx::query(
            "INSERT INTO fraud_chargebacks (transaction_id, user_id, amount, reason, recorded_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(transaction_id)
        .bind(user_id)
        .bind(amount)
        .bind(reason)
        .bind(at)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let count: i64 = if inserted {
            sqlx::query_scalar(
                "INSERT INTO fraud_users (user_id, first_seen_at, chargebacks) VALUES ($1, $2, 1)
                 ON CONFLICT (user_id) DO UPDATE SET chargebacks = fraud_users.chargebacks + 1
                 RETURNING chargebacks",
            )
            .bind(user_id)
            .bind(at)
            .fetch_one(&mut *tx)
            .await?
        } else {
            sqlx::query_scalar("SELECT chargebacks FROM fraud_users WHERE user_id = $1")
                .bind(user_id)
                .fetch_one(&mut *tx)
                .await?
        };
        tx.commit().await?;
        Ok(count)
    }

    async fn payment_failure(
        &self,
        payment_id: &str,
        user_id: &str,
        at: DateTime<Utc>,
        since_7d: DateTime<Utc>,
    ) -> Result<i64, FraudError> {
        sqlx::query(
            "INSERT INTO fraud_payment_failures (payment_id, user_id, failed_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(payment_id)
        .bind(user_id)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM fraud_payment_failures WHERE user_id = $1 AND failed_at > $2",
        )
        .bind(user_id)
        .bind(since_7d)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn cases(
        &self,
        status: Option<CaseStatus>,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Case>, FraudError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CASE_COLUMNS} FROM fraud_cases
             WHERE ($1::text IS NULL OR status = $1) AND ($2::uuid IS NULL OR id > $2)
             ORDER BY id LIMIT $3"
        )))
        .bind(status.map(CaseStatus::as_str))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(case).collect()
    }

    async fn assign(
        &self,
        id: Uuid,
        assignee: &str,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<Case, FraudError> {
        let mut tx = self.pool.begin().await?;
        let c = Self::case_for_update(&mut tx, id).await?;
        check_assign(&c)?;
        if c.assignee.as_deref() == Some(assignee) {
            return Ok(c);
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE fraud_cases SET status = 'ASSIGNED', assignee = $2 WHERE id = $1
             RETURNING {CASE_COLUMNS}"
        )))
        .bind(id)
        .bind(assignee)
        .fetch_one(&mut *tx)
        .await?;
        Self::audit(&mut tx, id, at, actor, "assign", assignee).await?;
        tx.commit().await?;
        case(&row)
    }

    async fn decide_case(
        &self,
        id: Uuid,
        verdict: Verdict,
        reason: &str,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<Case, FraudError> {
        let mut tx = self.pool.begin().await?;
        let c = Self::case_for_update(&mut tx, id).await?;
        if !check_decide(&c, verdict, reason)? {
            return Ok(c);
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE fraud_cases SET status = 'DECIDED', verdict = $2, reason = $3, decided_at = $4,
                 assignee = COALESCE(assignee, $5)
             WHERE id = $1 RETURNING {CASE_COLUMNS}"
        )))
        .bind(id)
        .bind(verdict.as_str())
        .bind(reason)
        .bind(at)
        .bind(actor)
        .fetch_one(&mut *tx)
        .await?;
        Self::audit(&mut tx, id, at, actor, verdict.as_str(), reason).await?;
        tx.commit().await?;
        case(&row)
    }
}
