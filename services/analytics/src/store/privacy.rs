//! A person's events for the privacy jobs (`crate::privacy`): their export, and their erasure.
//!
//! An erasure keeps the events under the person's pseudonym, so every report still counts
//! them, once, as one person; the free-form `properties` of those events are cleared, as they
//! may hold anything a client or a service put there. `user_id` is in the sorting key of
//! `analytics_events`, which a mutation cannot change, so each event is copied under the
//! pseudonym (`INSERT … SELECT` of the events without a copy yet) and the originals that have
//! a copy are deleted (`ALTER TABLE … DELETE`, waited for in `system.mutations`). The copies
//! feed the rollups' materialized views like any insert, so the pseudonym's active days are set
//! before the person's rows of `analytics_user_days` are deleted. A crash anywhere leaves
//! either originals with their copies (the next run deletes them) or originals without copies
//! (the next run copies them): running again finishes the job.
//!
//! `analytics_days` (per day and cell: events, users, purchasers) is recomputed from the events
//! when a day's insert count moved; a count read while the originals and their copies were both
//! there would count the person twice, so each day the person was active gets one more
//! "inserted" row once the originals are gone, and is recomputed on its next read.

use std::time::Duration;

use chrono::{DateTime, Utc};
use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};
use titan_kit::{KitError, datastores::clickhouse::mutate};

/// How long an erasure's mutation may take (`titan_kit::datastores::clickhouse::mutate`).
const MUTATION_DEADLINE: Duration = Duration::from_secs(600);

/// Rounds of an erasure: each one takes the events that arrived during the one before (a
/// client that still sends them); more than this means they keep coming.
const ROUNDS: u32 = 5;

/// One event as stored, without the person's id.
#[derive(Debug, Clone, Row, Deserialize)]
struct StoredEvent {
    event_id: String,
    name: String,
    session_id: String,
    time: u32,
    time_ms: u16,
    properties: String,
    device: String,
    platform: String,
    country: String,
    city: String,
    cell: String,
    product_id: String,
    order_id: String,
    page: String,
    revenue: i64,
    currency: String,
    source: String,
    ingested_at: u32,
}

/// One event as exported: every column but the person's id, times in RFC 3339 (UTC) and the
/// properties as the JSON they are.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRecord {
    pub event_id: String,
    pub name: String,
    pub session_id: String,
    pub time: DateTime<Utc>,
    pub properties: serde_json::Value,
    pub device: String,
    pub platform: String,
    pub country: String,
    pub city: String,
    pub cell: String,
    pub product_id: String,
    pub order_id: String,
    pub page: String,
    /// In minor units of `currency`.
    pub revenue: i64,
    pub currency: String,
    pub source: String,
    pub ingested_at: DateTime<Utc>,
}

impl From<StoredEvent> for EventRecord {
    fn from(e: StoredEvent) -> Self {
        let at = |seconds: u32, ms: u16| {
            DateTime::from_timestamp_millis(i64::from(seconds) * 1000 + i64::from(ms))
                .unwrap_or_default()
        };
        Self {
            time: at(e.time, e.time_ms),
            ingested_at: at(e.ingested_at, 0),
            // Stored as compact JSON; text that is not JSON (an older row) goes out as text.
            properties: serde_json::from_str(&e.properties)
                .unwrap_or(serde_json::Value::String(e.properties)),
            event_id: e.event_id,
            name: e.name,
            session_id: e.session_id,
            device: e.device,
            platform: e.platform,
            country: e.country,
            city: e.city,
            cell: e.cell,
            product_id: e.product_id,
            order_id: e.order_id,
            page: e.page,
            revenue: e.revenue,
            currency: e.currency,
            source: e.source,
        }
    }
}

/// What an erasure did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    /// Distinct events moved to the pseudonym.
    pub events: u64,
    /// The person's (56-day block, cell) rows of `analytics_user_days` deleted; the pseudonym's
    /// take their place.
    pub active_day_blocks: u64,
}

/// A day and cell the person was active in.
#[derive(Debug, Row, Deserialize)]
struct Day {
    date: u16,
    cell: String,
}

#[derive(Debug, Row, Serialize)]
struct DayInsert {
    date: u16,
    cell: String,
    rows: u64,
}

#[derive(Debug, Clone)]
pub struct PersonalEvents {
    client: Client,
}

impl PersonalEvents {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Every event of `user`, once each (the newest copy of a duplicate), oldest first.
    pub async fn events(&self, user: &str) -> Result<Vec<EventRecord>, KitError> {
        let rows: Vec<StoredEvent> = self
            .client
            .query(
                "SELECT event_id, name, session_id, time, time_ms, properties, device, platform,
                        country, city, cell, product_id, order_id, page, revenue, currency,
                        source, ingested_at
                 FROM analytics_events
                 WHERE user_id = ?
                 ORDER BY time, time_ms, event_id, ingested_at DESC
                 LIMIT 1 BY event_id",
            )
            .bind(user)
            .fetch_all()
            .await?;
        Ok(rows.into_iter().map(EventRecord::from).collect())
    }

    /// Moves `user`'s events to `pseudonym` (see the module's documentation). Idempotent: a
    /// run that finds nothing of the person reports zeros.
    pub async fn erase(&self, user: &str, pseudonym: &str) -> Result<Erased, KitError> {
        let mut erased = Erased::default();
        for _ in 0..ROUNDS {
            let (events, blocks) = self.held(user).await?;
            if events == 0 && blocks == 0 {
                return Ok(erased);
            }
            let days: Vec<Day> = self
                .client
                .query("SELECT DISTINCT date, cell FROM analytics_events WHERE user_id = ?")
                .bind(user)
                .fetch_all()
                .await?;
            // The aliases differ from the columns: ClickHouse would read an alias named
            // user_id in the WHERE clause.
            self.client
                .query(
                    "INSERT INTO analytics_events (event_id, name, user_id, session_id, time,
                         time_ms, date, properties, device, platform, country, city, cell,
                         product_id, order_id, page, revenue, currency, source, ingested_at)
                     SELECT event_id, name, ? AS kept_user, session_id, time, time_ms, date,
                            '{}' AS cleared, device, platform, country, city, cell, product_id,
                            order_id, page, revenue, currency, source, ingested_at
                     FROM analytics_events
                     WHERE user_id = ?
                       AND event_id NOT IN (SELECT event_id FROM analytics_events WHERE user_id = ?)",
                )
                .bind(pseudonym)
                .bind(user)
                .bind(pseudonym)
                .execute()
                .await?;
            mutate(
                &self.client,
                "analytics_events",
                self.client
                    .query(
                        "ALTER TABLE analytics_events DELETE WHERE user_id = ?
                           AND event_id IN (SELECT event_id FROM analytics_events WHERE user_id = ?)",
                    )
                    .bind(user)
                    .bind(pseudonym),
                MUTATION_DEADLINE,
            )
            .await?;
            mutate(
                &self.client,
                "analytics_user_days",
                self.client
                    .query("ALTER TABLE analytics_user_days DELETE WHERE user_id = ?")
                    .bind(user),
                MUTATION_DEADLINE,
            )
            .await?;
            if !days.is_empty() {
                let mut insert = self
                    .client
                    .insert::<DayInsert>("analytics_day_inserts")
                    .await?;
                for Day { date, cell } in days {
                    insert
                        .write(&DayInsert {
                            date,
                            cell,
                            rows: 1,
                        })
                        .await?;
                }
                insert.end().await?;
            }
            erased.events += events;
            erased.active_day_blocks += blocks;
        }
        Err(KitError::Other(format!(
            "events of the erased user still arrive after {ROUNDS} rounds of erasure"
        )))
    }

    /// (distinct events, active-day blocks) held under `user`.
    async fn held(&self, user: &str) -> Result<(u64, u64), KitError> {
        let events: u64 = self
            .client
            .query("SELECT uniqExact(event_id) FROM analytics_events WHERE user_id = ?")
            .bind(user)
            .fetch_one()
            .await?;
        let blocks: u64 = self
            .client
            .query("SELECT uniqExact(block, cell) FROM analytics_user_days WHERE user_id = ?")
            .bind(user)
            .fetch_one()
            .await?;
        Ok((events, blocks))
    }
}
