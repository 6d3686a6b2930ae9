//! A shopper's records for the privacy jobs (`crate::privacy`): everything held about them,
//! and their erasure. The ledger and the reward redemptions stay on the books under the
//! shopper's pseudonym (points are a liability until spent); the account's counters, streaks
//! and dates, the badges, the leaderboard entries and the feed's bookkeeping in Redis go.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::redis::{Placing, RedisBoards};
use crate::app::Result;

/// The account row as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct AccountRecord {
    pub balance: i64,
    pub lifetime: i64,
    pub purchases: i32,
    pub reviews: i32,
    pub last_login: Option<NaiveDate>,
    pub streak: i32,
    pub last_check_in: Option<NaiveDate>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct BadgeRecord {
    pub badge: String,
    pub awarded_at: DateTime<Utc>,
}

/// One points change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct LedgerRecord {
    pub id: i64,
    pub delta: i64,
    pub reason: String,
    pub source_id: String,
    pub balance_after: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct RedemptionRecord {
    pub id: Uuid,
    pub reward_id: Uuid,
    /// The reward's name as the catalog has it now.
    pub reward: Option<String>,
    pub cost: i64,
    pub created_at: DateTime<Utc>,
}

/// Everything the service holds about one shopper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Records {
    pub user_id: String,
    /// None when the shopper never earned or spent anything.
    pub account: Option<AccountRecord>,
    pub badges: Vec<BadgeRecord>,
    /// Every points change, oldest first.
    pub ledger: Vec<LedgerRecord>,
    pub reward_redemptions: Vec<RedemptionRecord>,
    pub leaderboards: Vec<Placing>,
}

/// What an erasure did, by kind of record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    pub accounts: u64,
    pub badges: u64,
    pub ledger_entries: u64,
    pub reward_redemptions: u64,
    pub leaderboard_entries: u64,
    /// The feed's last applied ledger id of the shopper, in Redis.
    pub feed_positions: u64,
}

#[derive(Debug, Clone)]
pub struct PersonalStore {
    pool: PgPool,
    boards: RedisBoards,
}

impl PersonalStore {
    pub fn new(pool: PgPool, boards: RedisBoards) -> Self {
        Self { pool, boards }
    }

    /// Everything held about `user`, all of it (no page limits).
    pub async fn records(&self, user: &str) -> Result<Records> {
        let mut tx = self.pool.begin().await?;
        // One snapshot, so the ledger and the account agree.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        let account = sqlx::query_as(
            "SELECT balance, lifetime, purchases, reviews, last_login, streak, last_check_in, updated_at
             FROM gamification_accounts WHERE user_id = $1",
        )
        .bind(user)
        .fetch_optional(&mut *tx)
        .await?;
        let badges = sqlx::query_as(
            "SELECT badge, awarded_at FROM gamification_badges
             WHERE user_id = $1 ORDER BY awarded_at, badge",
        )
        .bind(user)
        .fetch_all(&mut *tx)
        .await?;
        let ledger = sqlx::query_as(
            "SELECT id, delta, reason, source_id, balance_after, created_at
             FROM gamification_ledger WHERE user_id = $1 ORDER BY id",
        )
        .bind(user)
        .fetch_all(&mut *tx)
        .await?;
        let reward_redemptions = sqlx::query_as(
            "SELECT r.id, r.reward_id, w.name AS reward, r.cost, r.created_at
             FROM gamification_reward_redemptions r
             LEFT JOIN gamification_rewards w ON w.id = r.reward_id
             WHERE r.user_id = $1 ORDER BY r.created_at, r.id",
        )
        .bind(user)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Records {
            user_id: user.to_owned(),
            account,
            badges,
            ledger,
            reward_redemptions,
            leaderboards: self.boards.placings(user).await?,
        })
    }

    /// Erases `user`, keeping the books under `pseudonym` (see `sql/erase.sql`), then takes
    /// them off the leaderboards. Idempotent: a second run finds nothing and reports zeros.
    ///
    /// The transaction holds the feeder's advisory lock from start to commit: a feed round
    /// that read the shopper's rows before the erasure has put them on the boards before
    /// [`RedisBoards::forget`] runs, and no round can read them afterwards (they are marked
    /// ranked and pseudonymised). Redis is cleared before the commit, so a failure there
    /// leaves PostgreSQL untouched and the whole erasure runs again.
    pub async fn erase(&self, user: &str, pseudonym: &str) -> Result<Erased> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('gamification_leaderboards'))")
            .execute(&mut *tx)
            .await?;
        // The account first, as every award takes it: awards of the shopper wait, and the
        // erasure's statement, which starts after, sees every row they committed.
        sqlx::query("SELECT 1 FROM gamification_accounts WHERE user_id = $1 FOR UPDATE")
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?;
        let (accounts, badges, ledger_entries, reward_redemptions): (i64, i64, i64, i64) =
            sqlx::query_as(include_str!("sql/erase.sql"))
                .bind(user)
                .bind(pseudonym)
                .fetch_one(&mut *tx)
                .await?;
        let forgotten = self.boards.forget(user).await?;
        tx.commit().await?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(Erased {
            accounts: count(accounts),
            badges: count(badges),
            ledger_entries: count(ledger_entries),
            reward_redemptions: count(reward_redemptions),
            leaderboard_entries: forgotten.entries,
            feed_positions: forgotten.applied,
        })
    }
}
