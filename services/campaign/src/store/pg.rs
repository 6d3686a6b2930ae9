//! PostgreSQL: campaigns with their lifecycle under row locks, deliveries keyed by (campaign,
//! occurrence, user, channel) so each happens at most once, the budget reserved when a batch
//! is claimed and given back for what was not sent, contacts, suppressions, engagements and
//! the purchases attribution reads.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use sqlx::{PgConnection, PgPool, Row, postgres::PgRow};
use titan_kit::{KitError, idempotency};
use uuid::Uuid;

use crate::{
    app::{
        CampaignError, CampaignStore, Claimed, Counts, Credited, Outcome, Result, Shown,
        VariantCounts,
    },
    domain::{
        Bounce, Campaign, CampaignId, Caps, Channel, Contact, LinkKind, Linked, NewCampaign,
        Purchase, QuietHours, Rule, Schedule, Segment, Status, Template, Touch, Transition,
        Trigger, Variant, Variants,
    },
};

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

const CAMPAIGN_COLUMNS: &str = "id, name, channel, status, subject, body, click_url, segment, \
    cap_max, cap_window_hours, quiet_start, quiet_end, budget, cost_per_message, currency, spent, \
    start_at, repeat_every_hours, end_at, created_at, trigger_event, trigger_delay_hours, \
    trigger_cancel_event, experiment_key, variants";

/// A variant's content as `campaigns.variants` stores it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct StoredVariant {
    key: String,
    subject: String,
    body: String,
    click_url: String,
}

fn stored_variants(v: &Variants) -> Vec<StoredVariant> {
    v.contents
        .iter()
        .map(|v| StoredVariant {
            key: v.key.clone(),
            subject: v.template.subject_source().to_owned(),
            body: v.template.body_source().to_owned(),
            click_url: v.template.click_url().to_owned(),
        })
        .collect()
}

fn corrupt(what: impl std::fmt::Display) -> CampaignError {
    CampaignError::Kit(KitError::Other(format!(
        "stored campaign is invalid: {what}"
    )))
}

fn u32_of(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

fn campaign(row: &PgRow) -> Result<Campaign> {
    let id = CampaignId::from_uuid(row.try_get("id")?);
    let channel: String = row.try_get("channel")?;
    let status: String = row.try_get("status")?;
    let rules: sqlx::types::Json<Vec<Rule>> = row.try_get("segment")?;
    let start_at: Option<DateTime<Utc>> = row.try_get("start_at")?;
    let schedule = match start_at {
        Some(start) => Some(
            Schedule::new(
                start,
                u32_of(row.try_get("repeat_every_hours")?),
                row.try_get("end_at")?,
            )
            .map_err(corrupt)?,
        ),
        None => None,
    };
    let currency: String = row.try_get("currency")?;
    let trigger_event: String = row.try_get("trigger_event")?;
    let trigger = if trigger_event.is_empty() {
        None
    } else {
        Some(
            Trigger::new(
                &trigger_event,
                u32_of(row.try_get("trigger_delay_hours")?),
                &row.try_get::<String, _>("trigger_cancel_event")?,
            )
            .map_err(corrupt)?,
        )
    };
    let segment = match &trigger {
        Some(_) => Segment::anyone(),
        None => Segment::new(rules.0).map_err(corrupt)?,
    };
    let mut spec = NewCampaign::new(
        &row.try_get::<String, _>("name")?,
        Channel::parse(&channel).ok_or_else(|| corrupt(&channel))?,
        Template::new(
            &row.try_get::<String, _>("subject")?,
            &row.try_get::<String, _>("body")?,
            &row.try_get::<String, _>("click_url")?,
        )
        .map_err(corrupt)?,
        segment,
        Caps::new(
            u32_of(row.try_get("cap_max")?),
            u32_of(row.try_get("cap_window_hours")?),
        )
        .map_err(corrupt)?,
        QuietHours::new(
            u32_of(row.try_get("quiet_start")?),
            u32_of(row.try_get("quiet_end")?),
        )
        .map_err(corrupt)?,
        row.try_get("budget")?,
        row.try_get("cost_per_message")?,
        &currency,
    )
    .map_err(corrupt)?;
    spec.trigger = trigger;
    let experiment_key: String = row.try_get("experiment_key")?;
    if !experiment_key.is_empty() {
        let stored: sqlx::types::Json<Vec<StoredVariant>> = row.try_get("variants")?;
        let contents = stored
            .0
            .into_iter()
            .map(|v| {
                Ok(Variant {
                    template: Template::new(&v.subject, &v.body, &v.click_url).map_err(corrupt)?,
                    key: v.key,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        spec = spec
            .with_variants(Variants::new(&experiment_key, contents).map_err(corrupt)?)
            .map_err(corrupt)?;
    }
    Ok(Campaign {
        id,
        spec,
        status: Status::parse(&status).ok_or_else(|| corrupt(&status))?,
        schedule,
        spent: row.try_get("spent")?,
        created_at: row.try_get("created_at")?,
    })
}

async fn locked(conn: &mut PgConnection, id: CampaignId) -> Result<Campaign> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1 FOR UPDATE"
    )))
    .bind(id.uuid())
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(CampaignError::NotFound(id))?;
    campaign(&row)
}

fn contact(row: &PgRow) -> Result<Contact> {
    Contact::new(
        &row.try_get::<String, _>("user_id")?,
        &row.try_get::<String, _>("email")?,
        &row.try_get::<String, _>("phone")?,
        &row.try_get::<String, _>("push_token")?,
        &row.try_get::<String, _>("time_zone")?,
        u32_of(row.try_get("level")?),
        &row.try_get::<String, _>("first_name")?,
        &row.try_get::<String, _>("country")?,
    )
    .map_err(|e| CampaignError::Kit(KitError::Other(format!("stored contact is invalid: {e}"))))
}

fn i32_of(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

impl CampaignStore for PgStore {
    async fn put_contact(&self, c: &Contact, now: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "INSERT INTO campaign_contacts
                 (user_id, email, phone, push_token, time_zone, level, first_name, country, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (user_id) DO UPDATE SET email = $2, phone = $3, push_token = $4,
                 time_zone = $5, level = $6, first_name = $7, country = $8, updated_at = $9",
        )
        .bind(&c.user_id)
        .bind(&c.email)
        .bind(&c.phone)
        .bind(&c.push_token)
        .bind(c.time_zone.name())
        .bind(i32_of(c.level))
        .bind(&c.first_name)
        .bind(&c.country)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn create(&self, key: &idempotency::Key, c: &Campaign) -> Result<CampaignId> {
        let mut tx = self.pool.begin().await?;
        if let idempotency::Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            let id = Uuid::from_slice(&answer).map_err(corrupt)?;
            return Ok(CampaignId::from_uuid(id));
        }
        let s = &c.spec;
        sqlx::query(
            "INSERT INTO campaigns (id, name, channel, status, subject, body, click_url, segment,
                 cap_max, cap_window_hours, quiet_start, quiet_end, budget, cost_per_message,
                 currency, created_at, trigger_event, trigger_delay_hours, trigger_cancel_event,
                 experiment_key, variants)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                     $18, $19, $20, $21)",
        )
        .bind(c.id.uuid())
        .bind(&s.name)
        .bind(s.channel.as_str())
        .bind(c.status.as_str())
        .bind(s.template.subject_source())
        .bind(s.template.body_source())
        .bind(s.template.click_url())
        .bind(sqlx::types::Json(s.segment.rules()))
        .bind(i32_of(s.caps.max_per_user))
        .bind(i32_of(s.caps.window_hours))
        .bind(i32_of(s.quiet_hours.start_hour))
        .bind(i32_of(s.quiet_hours.end_hour))
        .bind(s.budget)
        .bind(s.cost_per_message)
        .bind(s.currency.as_str())
        .bind(c.created_at)
        .bind(s.trigger.as_ref().map_or("", |t| t.event.as_str()))
        .bind(i32_of(s.trigger.as_ref().map_or(0, |t| t.delay_hours)))
        .bind(s.trigger.as_ref().map_or("", Trigger::cancel_source))
        .bind(
            s.variants
                .as_ref()
                .map_or("", |v| v.experiment_key.as_str()),
        )
        .bind(sqlx::types::Json(
            s.variants.as_ref().map(stored_variants).unwrap_or_default(),
        ))
        .execute(&mut *tx)
        .await?;
        idempotency::finish(&mut tx, key, c.id.uuid().as_bytes()).await?;
        tx.commit().await?;
        Ok(c.id)
    }

    async fn get(&self, id: CampaignId) -> Result<Option<Campaign>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1"
        )))
        .bind(id.uuid())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(campaign).transpose()
    }

    async fn list(&self, after: Option<CampaignId>, limit: u32) -> Result<Vec<Campaign>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE $1::uuid IS NULL OR id < $1
             ORDER BY id DESC LIMIT $2"
        )))
        .bind(after.map(CampaignId::uuid))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(campaign).collect()
    }

    async fn transition(
        &self,
        key: &idempotency::Key,
        id: CampaignId,
        t: Transition,
        schedule: Option<Schedule>,
    ) -> Result<Campaign> {
        let mut tx = self.pool.begin().await?;
        if let idempotency::Begin::Replay(_) = idempotency::begin(&mut tx, key).await? {
            drop(tx);
            return self.get(id).await?.ok_or(CampaignError::NotFound(id));
        }
        let c = locked(&mut tx, id).await?;
        let to = t.apply(c.status).ok_or(CampaignError::InvalidTransition {
            what: t.as_str(),
            from: c.status.as_str(),
        })?;
        if t == Transition::Resume && c.affordable(1) == 0 {
            return Err(CampaignError::BudgetSpent(id));
        }
        match schedule {
            Some(s) => {
                sqlx::query(
                    "UPDATE campaigns SET status = $2, start_at = $3, repeat_every_hours = $4,
                         end_at = $5, next_occurrence = 0, next_due_at = $3 WHERE id = $1",
                )
                .bind(id.uuid())
                .bind(to.as_str())
                .bind(s.start_at)
                .bind(i32_of(s.repeat_every_hours))
                .bind(s.end_at)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query("UPDATE campaigns SET status = $2 WHERE id = $1")
                    .bind(id.uuid())
                    .bind(to.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        idempotency::finish(&mut tx, key, id.uuid().as_bytes()).await?;
        let after = locked(&mut tx, id).await?;
        tx.commit().await?;
        Ok(after)
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<(Campaign, u32)>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE campaigns SET next_due_at = $2
             WHERE id = (SELECT id FROM campaigns
                         WHERE status IN ('SCHEDULED', 'RUNNING') AND next_due_at <= $1
                         ORDER BY next_due_at LIMIT 1 FOR UPDATE SKIP LOCKED)
             RETURNING {CAMPAIGN_COLUMNS}, next_occurrence"
        )))
        .bind(now)
        .bind(now + lease)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(Some((
                campaign(&row)?,
                u32_of(row.try_get("next_occurrence")?),
            ))),
            None => Ok(None),
        }
    }

    async fn record_snapshot(
        &self,
        c: &Campaign,
        n: u32,
        users: &[String],
        levels: (u32, u32),
        due_at: DateTime<Utc>,
        next_due: Option<DateTime<Utc>>,
    ) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        // Only the replica whose claim is still current records it; a late one finds the
        // occurrence moved on and writes nothing.
        let moved = sqlx::query(
            "UPDATE campaigns SET next_occurrence = $2 + 1, next_due_at = $3,
                 status = CASE WHEN status = 'SCHEDULED' THEN 'RUNNING' ELSE status END
             WHERE id = $1 AND next_occurrence = $2",
        )
        .bind(c.id.uuid())
        .bind(i32_of(n))
        .bind(next_due)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved == 0 {
            return Ok(0);
        }
        let address = match c.spec.channel {
            Channel::Email => "c.email",
            Channel::Sms => "c.phone",
            Channel::Push => "c.push_token",
            Channel::Banner | Channel::Popup => "'in-app'",
        };
        let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO campaign_deliveries (campaign_id, occurrence, user_id, channel, status, not_before)
             SELECT $1, $2, c.user_id, $3,
                    CASE WHEN {address} = '' THEN 'NO_ADDRESS' ELSE 'PENDING' END, $4
             FROM UNNEST($5::text[]) AS m(user_id)
             JOIN campaign_contacts c ON c.user_id = m.user_id
             WHERE c.level BETWEEN $6 AND $7
             ON CONFLICT DO NOTHING"
        )))
        .bind(c.id.uuid())
        .bind(i32_of(n))
        .bind(c.spec.channel.as_str())
        .bind(due_at)
        .bind(users)
        .bind(i32_of(levels.0))
        .bind(i32_of(levels.1))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(inserted)
    }

    async fn sendable(&self, now: DateTime<Utc>) -> Result<Vec<CampaignId>> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT c.id FROM campaigns c
             WHERE c.status = 'RUNNING' AND c.channel IN ('EMAIL', 'PUSH', 'SMS')
               AND EXISTS (SELECT 1 FROM campaign_deliveries d
                           WHERE d.campaign_id = c.id AND d.status = 'PENDING' AND d.not_before <= $1)
             ORDER BY c.id",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(CampaignId::from_uuid).collect())
    }

    async fn claim(
        &self,
        id: CampaignId,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Option<(Campaign, Vec<Claimed>)>> {
        let mut tx = self.pool.begin().await?;
        let c = locked(&mut tx, id).await?;
        if c.status != Status::Running {
            return Ok(None);
        }
        let n = c.affordable(limit);
        if n == 0 {
            return Ok(None);
        }
        let rows = sqlx::query(
            "WITH picked AS (
                 SELECT occurrence, user_id FROM campaign_deliveries
                 WHERE campaign_id = $1 AND status = 'PENDING' AND not_before <= $2
                 ORDER BY not_before, occurrence, user_id LIMIT $3 FOR UPDATE SKIP LOCKED)
             UPDATE campaign_deliveries d
             SET status = 'SENDING', claimed_at = $2
             FROM picked p
             WHERE d.campaign_id = $1 AND d.occurrence = p.occurrence AND d.user_id = p.user_id
             RETURNING d.occurrence, d.user_id",
        )
        .bind(id.uuid())
        .bind(now)
        .bind(i64::from(n))
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let claimed: Vec<(u32, String)> = rows
            .iter()
            .map(|r| Ok((u32_of(r.try_get("occurrence")?), r.try_get("user_id")?)))
            .collect::<Result<_>>()?;
        let users: Vec<&str> = claimed.iter().map(|(_, u)| u.as_str()).collect();
        let since = c.spec.caps.window().map(|w| now - w).unwrap_or(now);
        let details = sqlx::query(
            "SELECT c.*,
                    EXISTS (SELECT 1 FROM campaign_suppressions s
                            WHERE s.user_id = c.user_id AND s.channel = $2) AS suppressed,
                    (SELECT count(*) FROM campaign_deliveries d
                     WHERE d.user_id = c.user_id AND d.status = 'SENT' AND d.sent_at > $3) AS recent
             FROM campaign_contacts c WHERE c.user_id = ANY($1)",
        )
        .bind(&users)
        .bind(c.spec.channel.as_str())
        .bind(since)
        .fetch_all(&mut *tx)
        .await?;
        let mut by_user = HashMap::with_capacity(details.len());
        for row in &details {
            let recent: i64 = row.try_get("recent")?;
            by_user.insert(
                row.try_get::<String, _>("user_id")?,
                (contact(row)?, row.try_get::<bool, _>("suppressed")?, recent),
            );
        }
        let cost = c.spec.cost_per_message * i64::try_from(claimed.len()).unwrap_or(0);
        sqlx::query("UPDATE campaigns SET spent = spent + $2 WHERE id = $1")
            .bind(id.uuid())
            .bind(cost)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let out = claimed
            .into_iter()
            .map(|(occurrence, user_id)| {
                let found = by_user.remove(&user_id);
                Claimed {
                    occurrence,
                    contact: found.as_ref().map(|f| f.0.clone()),
                    suppressed: found.as_ref().is_some_and(|f| f.1),
                    recent: found.map(|f| u64::try_from(f.2).unwrap_or(0)).unwrap_or(0),
                    user_id,
                }
            })
            .collect();
        let mut c = c;
        c.spent += cost;
        Ok(Some((c, out)))
    }

    async fn take_sends(&self, second: i64, wanted: u32, rate: u32) -> Result<u32> {
        // One upsert: replicas taking sends at once queue on the second's row, and every
        // right-hand side reads the row as it was, so `granted` and `used` agree and together
        // they never pass `rate`.
        let granted: i32 = sqlx::query_scalar(
            "INSERT INTO campaign_send_window AS w (second, used, granted)
             VALUES ($1, LEAST($2, $3), LEAST($2, $3))
             ON CONFLICT (second) DO UPDATE
             SET granted = LEAST($2, GREATEST($3 - w.used, 0)),
                 used = w.used + LEAST($2, GREATEST($3 - w.used, 0))
             RETURNING granted",
        )
        .bind(second)
        .bind(i32_of(wanted))
        .bind(i32_of(rate))
        .fetch_one(&self.pool)
        .await?;
        Ok(u32_of(granted))
    }

    async fn give_back_sends(&self, second: i64, n: u32) -> Result<()> {
        sqlx::query(
            "UPDATE campaign_send_window SET used = GREATEST(used - $2, 0) WHERE second = $1",
        )
        .bind(second)
        .bind(i32_of(n))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn record(&self, c: &Campaign, outcomes: &[(u32, String, Outcome)]) -> Result<()> {
        let mut occurrences = Vec::with_capacity(outcomes.len());
        let mut users = Vec::with_capacity(outcomes.len());
        let mut statuses = Vec::with_capacity(outcomes.len());
        let mut sent_at: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(outcomes.len());
        let mut not_before: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(outcomes.len());
        let mut errors = Vec::with_capacity(outcomes.len());
        let mut attempts = Vec::with_capacity(outcomes.len());
        let mut variants = Vec::with_capacity(outcomes.len());
        let mut bounced = Vec::new();
        let mut unsent: i64 = 0;
        for (occurrence, user, o) in outcomes {
            occurrences.push(i32_of(*occurrence));
            users.push(user.as_str());
            statuses.push(o.status());
            let (at, until, error) = match o {
                Outcome::Sent { at, .. } => (Some(*at), None, String::new()),
                Outcome::Deferred { until } => (None, Some(*until), String::new()),
                Outcome::Failed { error, .. } => (None, None, error.clone()),
                Outcome::Bounced { error, .. } => {
                    bounced.push(user.as_str());
                    (None, None, error.clone())
                }
                Outcome::Suppressed | Outcome::Capped | Outcome::NoAddress => {
                    (None, None, String::new())
                }
            };
            if at.is_none() {
                unsent += 1;
            }
            attempts.push(i32_of(o.attempts()));
            variants.push(match o {
                Outcome::Sent { variant, .. } => variant.as_str(),
                _ => "",
            });
            sent_at.push(at);
            not_before.push(until);
            errors.push(error);
        }
        let mut tx = self.pool.begin().await?;
        // The planner reads the claimed rows through the SENDING partial index, whose
        // statistics were taken while nothing was SENDING: it expects one row and rescans the
        // UNNEST for each claimed delivery (a 1,000-row batch took 440 ms, and PostgreSQL
        // became the sender's ceiling). A hash join takes 4 ms; this transaction only runs
        // the statements below.
        sqlx::query("SET LOCAL enable_nestloop = off")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE campaign_deliveries d
             SET status = o.status, sent_at = o.sent_at,
                 not_before = COALESCE(o.not_before, d.not_before), error = o.error,
                 attempts = d.attempts + o.attempts, variant = o.variant
             FROM UNNEST($2::int[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::text[], $8::int[], $9::text[])
                  AS o(occurrence, user_id, status, sent_at, not_before, error, attempts, variant)
             WHERE d.campaign_id = $1 AND d.occurrence = o.occurrence AND d.user_id = o.user_id
               AND d.status = 'SENDING'",
        )
        .bind(c.id.uuid())
        .bind(&occurrences)
        .bind(&users)
        .bind(&statuses)
        .bind(&sent_at)
        .bind(&not_before)
        .bind(&errors)
        .bind(&attempts)
        .bind(&variants)
        .execute(&mut *tx)
        .await?;
        if unsent > 0 {
            sqlx::query("UPDATE campaigns SET spent = GREATEST(spent - $2, 0) WHERE id = $1")
                .bind(c.id.uuid())
                .bind(unsent * c.spec.cost_per_message)
                .execute(&mut *tx)
                .await?;
        }
        if !bounced.is_empty() {
            sqlx::query(
                "INSERT INTO campaign_suppressions (user_id, channel, reason, at)
                 SELECT u, $2, 'bounce', now() FROM UNNEST($1::text[]) AS u
                 ON CONFLICT DO NOTHING",
            )
            .bind(&bounced)
            .bind(c.spec.channel.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn recover(&self, cutoff: DateTime<Utc>) -> Result<u64> {
        // Seconds that old are over: their counts are not needed any more.
        sqlx::query("DELETE FROM campaign_send_window WHERE second < $1")
            .bind(cutoff.timestamp())
            .execute(&self.pool)
            .await?;
        Ok(sqlx::query(
            "UPDATE campaign_deliveries
             SET status = 'UNKNOWN', error = 'the replica sending it stopped before recording the outcome; not sent again'
             WHERE status = 'SENDING' AND claimed_at < $1",
        )
        .bind(cutoff)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn complete(&self, now: DateTime<Utc>) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE campaigns c SET status = 'COMPLETED'
             WHERE c.status = 'RUNNING' AND c.next_due_at IS NULL
               AND (
                 -- Everything sent: a scheduled campaign after its last snapshot, a triggered
                 -- one after its end (it listens for ever without one).
                 (c.channel IN ('EMAIL', 'PUSH', 'SMS')
                  AND (c.trigger_event = '' OR (c.end_at IS NOT NULL AND c.end_at <= $1))
                  AND NOT EXISTS (SELECT 1 FROM campaign_deliveries d
                                  WHERE d.campaign_id = c.id AND d.status IN ('PENDING', 'SENDING')))
                 -- The budget is spent and nothing is in flight.
                 OR (c.channel IN ('EMAIL', 'PUSH', 'SMS')
                     AND c.cost_per_message > 0 AND c.budget - c.spent < c.cost_per_message
                     AND NOT EXISTS (SELECT 1 FROM campaign_deliveries d
                                     WHERE d.campaign_id = c.id AND d.status = 'SENDING'))
                 OR (c.channel IN ('BANNER', 'POPUP') AND c.end_at IS NOT NULL AND c.end_at <= $1)
               )",
        )
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn count_contacts(&self, users: &[String], levels: (u32, u32)) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM campaign_contacts
             WHERE user_id = ANY($1) AND level BETWEEN $2 AND $3",
        )
        .bind(users)
        .bind(i32_of(levels.0))
        .bind(i32_of(levels.1))
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn show_in_app(&self, user: &str, now: DateTime<Utc>) -> Result<Shown> {
        let mut tx = self.pool.begin().await?;
        let Some(contact_row) = sqlx::query("SELECT * FROM campaign_contacts WHERE user_id = $1")
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok((Vec::new(), None));
        };
        let contact = contact(&contact_row)?;
        // The newest occurrence of each running in-app campaign the user is in, unless
        // unsubscribed from its channel.
        let rows = sqlx::query(
            "SELECT DISTINCT ON (d.campaign_id) d.campaign_id, d.occurrence, d.status
             FROM campaign_deliveries d JOIN campaigns c ON c.id = d.campaign_id
             WHERE d.user_id = $1 AND c.status = 'RUNNING' AND c.channel IN ('BANNER', 'POPUP')
               AND d.not_before <= $2
               AND NOT EXISTS (SELECT 1 FROM campaign_suppressions s
                               WHERE s.user_id = d.user_id AND s.channel = d.channel)
             ORDER BY d.campaign_id, d.occurrence DESC",
        )
        .bind(user)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut shown = Vec::new();
        for row in rows {
            let id = CampaignId::from_uuid(row.try_get("campaign_id")?);
            let occurrence = u32_of(row.try_get("occurrence")?);
            let status: String = row.try_get("status")?;
            let c = locked(&mut tx, id).await?;
            match status.as_str() {
                "SENT" => shown.push((c, occurrence)),
                "PENDING" => {
                    let recent: i64 = match c.spec.caps.window() {
                        Some(w) => {
                            sqlx::query_scalar(
                                "SELECT count(*) FROM campaign_deliveries
                                 WHERE user_id = $1 AND status = 'SENT' AND sent_at > $2",
                            )
                            .bind(user)
                            .bind(now - w)
                            .fetch_one(&mut *tx)
                            .await?
                        }
                        None => 0,
                    };
                    if !c.spec.caps.allows(u64::try_from(recent).unwrap_or(0))
                        || c.affordable(1) == 0
                    {
                        continue;
                    }
                    sqlx::query(
                        "UPDATE campaign_deliveries SET status = 'SENT', sent_at = $4, attempts = 1
                         WHERE campaign_id = $1 AND occurrence = $2 AND user_id = $3",
                    )
                    .bind(id.uuid())
                    .bind(i32_of(occurrence))
                    .bind(user)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "UPDATE campaigns SET spent = spent + cost_per_message WHERE id = $1",
                    )
                    .bind(id.uuid())
                    .execute(&mut *tx)
                    .await?;
                    shown.push((c, occurrence));
                }
                _ => {}
            }
        }
        tx.commit().await?;
        Ok((shown, Some(contact)))
    }

    async fn engage(&self, l: &Linked, kind: LinkKind, at: DateTime<Utc>) -> Result<bool> {
        let n = sqlx::query(
            "INSERT INTO campaign_engagements (campaign_id, user_id, kind, at)
             SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM campaign_deliveries
                 WHERE campaign_id = $1 AND occurrence = $5 AND user_id = $2 AND channel = $6)
             ON CONFLICT DO NOTHING",
        )
        .bind(l.campaign.uuid())
        .bind(&l.user_id)
        .bind(kind.as_str())
        .bind(at)
        .bind(i32_of(l.occurrence))
        .bind(l.channel.as_str())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    async fn bounce(&self, b: &Bounce, at: DateTime<Utc>) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let found = sqlx::query(
            "UPDATE campaign_deliveries
             SET status = CASE WHEN $4 THEN 'BOUNCED' ELSE status END, error = $5
             WHERE campaign_id = $1 AND occurrence = $2 AND user_id = $3 AND channel = 'EMAIL'
               AND status IN ('SENT', 'BOUNCED')",
        )
        .bind(b.campaign.uuid())
        .bind(i32_of(b.occurrence))
        .bind(&b.user_id)
        .bind(b.permanent)
        .bind(format!(
            "{} bounce: {}",
            if b.permanent {
                "permanent"
            } else {
                "transient"
            },
            b.diagnostic
        ))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if found > 0 && b.permanent {
            sqlx::query(
                "INSERT INTO campaign_suppressions (user_id, channel, reason, at)
                 VALUES ($1, 'EMAIL', 'bounce', $2) ON CONFLICT DO NOTHING",
            )
            .bind(&b.user_id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(found > 0)
    }

    async fn suppress(&self, l: &Linked, reason: &str, at: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "INSERT INTO campaign_suppressions (user_id, channel, reason, at)
             SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM campaign_deliveries
                 WHERE campaign_id = $5 AND occurrence = $6 AND user_id = $1 AND channel = $2)
             ON CONFLICT DO NOTHING",
        )
        .bind(&l.user_id)
        .bind(l.channel.as_str())
        .bind(reason)
        .bind(at)
        .bind(l.campaign.uuid())
        .bind(i32_of(l.occurrence))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn counts(&self, id: CampaignId) -> Result<Counts> {
        let row = sqlx::query(
            "SELECT
                 count(*) FILTER (WHERE status = 'SENT') AS sent,
                 count(*) FILTER (WHERE status = 'BOUNCED') AS bounced,
                 count(*) FILTER (WHERE status IN ('FAILED', 'UNKNOWN')) AS failed,
                 count(*) FILTER (WHERE status IN ('SUPPRESSED', 'NO_ADDRESS')) AS suppressed,
                 count(*) FILTER (WHERE status = 'CAPPED') AS capped,
                 (SELECT count(*) FROM campaign_engagements e WHERE e.campaign_id = $1 AND e.kind = 'open') AS opened,
                 (SELECT count(*) FROM campaign_engagements e WHERE e.campaign_id = $1 AND e.kind = 'click') AS clicked
             FROM campaign_deliveries WHERE campaign_id = $1",
        )
        .bind(id.uuid())
        .fetch_one(&self.pool)
        .await?;
        let n = |name: &str| -> Result<u64> {
            Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or(0))
        };
        let per_variant = sqlx::query(
            "SELECT d.variant, count(*) AS sent,
                    count(DISTINCT d.user_id) FILTER (WHERE o.user_id IS NOT NULL) AS opened,
                    count(DISTINCT d.user_id) FILTER (WHERE k.user_id IS NOT NULL) AS clicked
             FROM campaign_deliveries d
             LEFT JOIN campaign_engagements o
               ON o.campaign_id = d.campaign_id AND o.user_id = d.user_id AND o.kind = 'open'
             LEFT JOIN campaign_engagements k
               ON k.campaign_id = d.campaign_id AND k.user_id = d.user_id AND k.kind = 'click'
             WHERE d.campaign_id = $1 AND d.status = 'SENT' AND d.variant <> ''
             GROUP BY d.variant ORDER BY d.variant",
        )
        .bind(id.uuid())
        .fetch_all(&self.pool)
        .await?;
        let count = |row: &PgRow, name: &str| -> Result<u64> {
            Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or(0))
        };
        let variants = per_variant
            .iter()
            .map(|row| {
                Ok(VariantCounts {
                    key: row.try_get("variant")?,
                    sent: count(row, "sent")?,
                    opened: count(row, "opened")?,
                    clicked: count(row, "clicked")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Counts {
            variants,
            sent: n("sent")?,
            bounced: n("bounced")?,
            failed: n("failed")?,
            suppressed: n("suppressed")?,
            capped: n("capped")?,
            opened: n("opened")?,
            clicked: n("clicked")?,
        })
    }

    async fn credited(&self, c: &Campaign, window: Duration) -> Result<Vec<Credited>> {
        // Purchases after one of this campaign's touches and within the window of it, with
        // every touch (any campaign) of the buyer in the window before each purchase.
        let rows = sqlx::query(
            "WITH mine AS (
                 SELECT user_id, min(sent_at) AS first_at FROM campaign_deliveries
                 WHERE campaign_id = $1 AND status = 'SENT' GROUP BY user_id),
             bought AS (
                 SELECT p.* FROM campaign_purchases p JOIN mine m ON m.user_id = p.user_id
                 WHERE p.currency = $2 AND p.at >= m.first_at)
             SELECT b.order_id, b.amount, b.at, d.campaign_id, d.sent_at
             FROM bought b JOIN campaign_deliveries d
               ON d.user_id = b.user_id AND d.status = 'SENT'
              AND d.sent_at <= b.at AND d.sent_at > b.at - $3::interval
             ORDER BY b.order_id",
        )
        .bind(c.id.uuid())
        .bind(c.spec.currency.as_str())
        .bind(window)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<Credited> = Vec::new();
        for row in rows {
            let order_id: String = row.try_get("order_id")?;
            let touch = Touch {
                campaign: CampaignId::from_uuid(row.try_get("campaign_id")?),
                at: row.try_get("sent_at")?,
            };
            match out.last_mut() {
                Some(last) if last.purchase.order_id == order_id => last.touches.push(touch),
                _ => out.push(Credited {
                    purchase: Purchase {
                        order_id,
                        amount: row.try_get("amount")?,
                        at: row.try_get("at")?,
                    },
                    touches: vec![touch],
                }),
            }
        }
        Ok(out)
    }
}
