//! A person's livestream records for the privacy jobs (`crate::privacy`): everything held about
//! them, and their erasure. The streams they hosted stay (viewers bought in them) with the
//! pseudonym as their seller, and so do their purchases (money moved) and their entries in the
//! viewer figures of recent streams (the counts stay right); their comments and their rate
//! budgets go.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use titan_kit::ratelimit::RateLimiter;
use uuid::Uuid;

use super::redis::{COMMENT_SCOPE, KEEP_SECONDS, Live, REACT_SCOPE, Viewing};
use crate::{app::LivestreamError, domain::StreamId};

/// A stream the person hosted. Its key is not exported: only its hash is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct StreamRecord {
    pub id: Uuid,
    pub title: String,
    pub status: String,
    pub scheduled_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub recording_url: Option<String>,
    pub featured: Vec<String>,
}

/// A comment the person posted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct CommentRecord {
    pub stream_id: Uuid,
    pub id: Uuid,
    pub text: String,
    pub created_at: DateTime<Utc>,
    pub pinned_at: Option<DateTime<Utc>>,
}

/// A purchase the person made in a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct PurchaseRecord {
    pub order_id: String,
    pub stream_id: Uuid,
    pub product_id: String,
    pub quantity: i32,
    pub amount_minor: i64,
    pub currency: String,
    pub created_at: DateTime<Utc>,
}

/// Everything livestream holds about one person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Records {
    pub user_id: String,
    pub streams: Vec<StreamRecord>,
    pub comments: Vec<CommentRecord>,
    pub purchases: Vec<PurchaseRecord>,
    /// Their entries in the viewer figures Redis keeps of recent streams.
    pub viewing: Vec<Viewing>,
}

/// What an erasure did, by kind of record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    pub streams: u64,
    pub comments: u64,
    pub purchases: u64,
    pub viewer_entries: u64,
    pub minute_entries: u64,
    pub budgets: u64,
}

#[derive(Debug, Clone)]
pub struct PersonalStore {
    pool: PgPool,
    live: Live,
    /// The comment and reaction limiters, whose budgets name the user.
    budgets: [RateLimiter; 2],
}

impl PersonalStore {
    pub fn new(pool: PgPool, live: Live) -> Self {
        let budgets =
            [COMMENT_SCOPE, REACT_SCOPE].map(|scope| RateLimiter::new(live.redis(), scope));
        Self {
            pool,
            live,
            budgets,
        }
    }

    /// The streams whose viewer figures may still be in Redis: heartbeats are taken only while
    /// a stream is LIVE, and its keys expire [`KEEP_SECONDS`] after the last one (a day more
    /// here, for a heartbeat that raced the end).
    async fn recent_streams(&self) -> Result<Vec<StreamId>, LivestreamError> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM livestream_streams
              WHERE started_at IS NOT NULL
                AND (ended_at IS NULL
                     OR ended_at > now() - make_interval(days => $1))
              ORDER BY id",
        )
        .bind(i32::try_from(KEEP_SECONDS / (24 * 3600) + 1).unwrap_or(i32::MAX))
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(StreamId::from_uuid).collect())
    }

    /// Everything held about `user`, all of it (no page limits), PostgreSQL from one snapshot.
    pub async fn records(&self, user: &str) -> Result<Records, LivestreamError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        let streams = sqlx::query_as(
            "SELECT id, title, status, scheduled_at, started_at, ended_at, recording_url, featured
               FROM livestream_streams WHERE seller_id = $1 ORDER BY created_at, id",
        )
        .bind(user)
        .fetch_all(&mut *tx)
        .await?;
        let comments = sqlx::query_as(
            "SELECT stream_id, id, text, created_at, pinned_at
               FROM livestream_comments WHERE user_id = $1 ORDER BY created_at, id",
        )
        .bind(user)
        .fetch_all(&mut *tx)
        .await?;
        let purchases = sqlx::query_as(
            "SELECT order_id, stream_id, product_id, quantity, amount_minor, currency, created_at
               FROM livestream_purchases WHERE buyer_id = $1 ORDER BY created_at, order_id",
        )
        .bind(user)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut viewing = Vec::new();
        for stream in self.recent_streams().await? {
            if let Some(v) = self.live.viewing(stream, user).await? {
                viewing.push(v);
            }
        }
        Ok(Records {
            user_id: user.to_owned(),
            streams,
            comments,
            purchases,
            viewing,
        })
    }

    /// Erases `user`, keeping their streams, purchases and viewer entries under `pseudonym`.
    /// Idempotent: a second run finds nothing and reports zeros. Redis and PostgreSQL are
    /// independent here (the streams to look at in Redis do not depend on the user), so a run
    /// cut short anywhere is completed by the next.
    pub async fn erase(&self, user: &str, pseudonym: &str) -> Result<Erased, LivestreamError> {
        let mut erased = Erased::default();
        for stream in self.recent_streams().await? {
            let (entries, minutes) = self
                .live
                .pseudonymise_viewer(stream, user, pseudonym)
                .await?;
            erased.viewer_entries += entries;
            erased.minute_entries += minutes;
        }
        for limiter in &self.budgets {
            erased.budgets += u64::from(limiter.forget(user).await?);
        }

        let mut tx = self.pool.begin().await?;
        erased.comments = sqlx::query("DELETE FROM livestream_comments WHERE user_id = $1")
            .bind(user)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        erased.purchases =
            sqlx::query("UPDATE livestream_purchases SET buyer_id = $2 WHERE buyer_id = $1")
                .bind(user)
                .bind(pseudonym)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        erased.streams =
            sqlx::query("UPDATE livestream_streams SET seller_id = $2 WHERE seller_id = $1")
                .bind(user)
                .bind(pseudonym)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        tx.commit().await?;
        Ok(erased)
    }
}
