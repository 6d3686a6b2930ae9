//! The leaderboard feeder: moves ledger rows that earned points onto the Redis boards, each
//! once. One feeder works at a time (a transaction-scoped advisory lock), rows go in ledger
//! order, the apply script skips rows it has seen, and rows are marked ranked only after Redis
//! counted them. When Redis lost the boards, the feeder clears them and replays the ledger.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::redis::{RankedRow, RedisBoards};
use crate::app::{Entry, Leaderboards, RankView, Result};

/// Rows per round.
const BATCH: i64 = 500;

#[derive(Debug, Clone)]
pub struct FedBoards {
    pool: PgPool,
    boards: RedisBoards,
}

impl FedBoards {
    pub fn new(pool: PgPool, boards: RedisBoards) -> Self {
        Self { pool, boards }
    }
}

impl Leaderboards for FedBoards {
    /// One round; returns the rows taken from the ledger (0 when drained or another feeder runs).
    async fn feed(&self, now: DateTime<Utc>) -> Result<u32> {
        let mut tx = self.pool.begin().await?;
        let leader: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_xact_lock(hashtext('gamification_leaderboards'))",
        )
        .fetch_one(&mut *tx)
        .await?;
        if !leader {
            return Ok(0);
        }
        let rebuild = !self.boards.built().await?;
        if rebuild {
            tracing::info!("leaderboards missing from redis; rebuilding them from the ledger");
            self.boards.clear().await?;
            // Rows kept under a pseudonym after an erasure stay off the boards.
            sqlx::query(
                "UPDATE gamification_ledger SET ranked = false
                 WHERE ranked AND delta > 0 AND NOT pseudonymised",
            )
            .execute(&mut *tx)
            .await?;
        }
        let rows: Vec<(i64, String, i64, DateTime<Utc>)> = sqlx::query_as(
            "SELECT id, user_id, delta, created_at FROM gamification_ledger WHERE NOT ranked ORDER BY id LIMIT $1",
        )
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        let ranked: Vec<RankedRow> = rows
            .iter()
            .filter(|r| r.2 > 0)
            .map(|(id, user_id, delta, at)| RankedRow {
                id: *id,
                user_id: user_id.clone(),
                delta: *delta,
                at: *at,
            })
            .collect();
        self.boards.apply(&ranked, now).await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
        sqlx::query("UPDATE gamification_ledger SET ranked = true WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if rebuild {
            self.boards.mark_built().await?;
        }
        Ok(u32::try_from(rows.len()).unwrap_or(u32::MAX))
    }

    /// Makes sure the boards exist before they are read: after a loss, replays the ledger now.
    async fn ensure_built(&self, now: DateTime<Utc>) -> Result<()> {
        if self.boards.built().await? {
            return Ok(());
        }
        while self.feed(now).await? > 0 {}
        Ok(())
    }

    async fn page(&self, board: &str, start: u64, stop: u64) -> Result<Vec<Entry>> {
        self.boards.page(board, start, stop).await
    }

    async fn rank(&self, board: &str, user: &str, neighbours: u64) -> Result<RankView> {
        self.boards.rank(board, user, neighbours).await
    }
}
