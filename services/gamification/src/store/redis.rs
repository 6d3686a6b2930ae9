//! Redis: the leaderboards, one sorted set per board (`day:<date>`, `week:<iso week>`, `all`)
//! with a hash of each shopper's current member, all under the `{lb}` hash tag so that one
//! script can update every board of a row atomically. Rows are added only by `lua/apply.lua`;
//! an erasure takes a shopper off every board with `lua/forget.lua`.

use std::{collections::BTreeMap, sync::Arc};

use chrono::{DateTime, Utc};
use redis::Script;
use titan_kit::datastores::redis::RedisHandle;

use crate::{
    app::{Entry, RankView, Result},
    domain::Period,
};

/// A ledger row to count on the boards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankedRow {
    pub id: i64,
    pub user_id: String,
    pub delta: i64,
    pub at: DateTime<Utc>,
}

/// A shopper's place on one board, for an export.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Placing {
    pub board: String,
    pub points: i64,
    /// 1 = the top.
    pub rank: u64,
}

/// What [`RedisBoards::forget`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Forgotten {
    /// Board entries (one per board the shopper was on).
    pub entries: u64,
    /// The shopper's last applied ledger id (0 or 1).
    pub applied: u64,
}

#[derive(Debug, Clone)]
pub struct RedisBoards {
    redis: RedisHandle,
    apply: Arc<Script>,
    forget: Arc<Script>,
}

/// The user in a board member (`<reach time>:<user>`).
fn user_of(member: &str) -> String {
    member.split_once(':').map_or(member, |(_, u)| u).to_owned()
}

impl RedisBoards {
    pub fn new(redis: RedisHandle) -> Self {
        Self {
            redis,
            apply: Arc::new(Script::new(include_str!("lua/apply.lua"))),
            forget: Arc::new(Script::new(include_str!("lua/forget.lua"))),
        }
    }

    fn key(&self, name: &str) -> String {
        self.redis.key(&format!("{{lb}}:{name}"))
    }

    fn board(&self, board: &str) -> (String, String) {
        (
            self.key(&format!("board:{board}")),
            self.key(&format!("members:{board}")),
        )
    }

    /// Whether the boards have been built from the ledger since Redis last lost them.
    pub async fn built(&self) -> Result<bool> {
        let mut conn = self.redis.conn.clone();
        let n: i64 = redis::cmd("EXISTS")
            .arg(self.key("built"))
            .query_async(&mut conn)
            .await?;
        Ok(n == 1)
    }

    pub async fn mark_built(&self) -> Result<()> {
        let mut conn = self.redis.conn.clone();
        let () = redis::cmd("SET")
            .arg(self.key("built"))
            .arg(1)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Every key of the boards whose name (after the `{lb}:` tag) starts with `start`.
    async fn scan(&self, start: &str) -> Result<Vec<String>> {
        let mut conn = self.redis.conn.clone();
        let pattern = format!("{}*", self.key(start));
        let mut cursor: u64 = 0;
        let mut found = Vec::new();
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            found.extend(keys);
            if next == 0 {
                // SCAN may return a key twice.
                found.sort_unstable();
                found.dedup();
                return Ok(found);
            }
            cursor = next;
        }
    }

    /// Deletes every board and the applied ids, before a rebuild from the ledger.
    pub async fn clear(&self) -> Result<()> {
        let keys = self.scan("").await?;
        let mut conn = self.redis.conn.clone();
        for chunk in keys.chunks(1000) {
            let _: i64 = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await?;
        }
        Ok(())
    }

    /// The boards that exist now (daily and weekly ones expire), by name.
    async fn boards(&self) -> Result<Vec<String>> {
        let members = self.key("members:");
        Ok(self
            .scan("members:")
            .await?
            .into_iter()
            .filter_map(|k| k.strip_prefix(&members).map(str::to_owned))
            .collect())
    }

    /// The shopper's place on every board they are on, in board order.
    pub async fn placings(&self, user: &str) -> Result<Vec<Placing>> {
        let mut placings = Vec::new();
        for board in self.boards().await? {
            if let Some(view) = self.rank(&board, user, 0).await?.entry {
                placings.push(Placing {
                    board,
                    points: view.points,
                    rank: view.rank,
                });
            }
        }
        Ok(placings)
    }

    /// Takes the shopper off every board, periodic ones included, and forgets the last ledger
    /// id applied for them. Finding nothing is not an error: it runs again after a failure.
    pub async fn forget(&self, user: &str) -> Result<Forgotten> {
        let mut inv = self.forget.prepare_invoke();
        inv.key(self.key("applied"));
        for board in self.boards().await? {
            let (z, m) = self.board(&board);
            inv.key(z);
            inv.key(m);
        }
        inv.arg(user);
        let mut conn = self.redis.conn.clone();
        let (entries, applied): (u64, u64) = inv.invoke_async(&mut conn).await?;
        Ok(Forgotten { entries, applied })
    }

    /// Counts `rows` on the boards of their periods; boards older than they are kept are
    /// skipped. Returns the rows newly counted.
    pub async fn apply(&self, rows: &[RankedRow], now: DateTime<Utc>) -> Result<u32> {
        if rows.is_empty() {
            return Ok(0);
        }
        let mut keys = vec![self.key("applied")];
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        let mut args: Vec<String> = Vec::with_capacity(rows.len() * 10);
        for r in rows {
            args.extend([
                r.id.to_string(),
                r.user_id.clone(),
                r.delta.to_string(),
                r.at.timestamp_millis().to_string(),
            ]);
            for period in Period::ALL {
                let keep = period.keep_seconds();
                let stale = keep > 0
                    && (now - r.at).num_seconds() > i64::try_from(keep).unwrap_or(i64::MAX);
                if stale {
                    args.extend(["0".to_owned(), "0".to_owned()]);
                    continue;
                }
                let board = period.board(r.at);
                let at = *index.entry(board.clone()).or_insert_with(|| {
                    let (z, m) = self.board(&board);
                    keys.push(z);
                    keys.push(m);
                    keys.len() - 1
                });
                args.extend([at.to_string(), keep.to_string()]);
            }
        }
        let mut inv = self.apply.prepare_invoke();
        for k in &keys {
            inv.key(k);
        }
        for a in &args {
            inv.arg(a);
        }
        let mut conn = self.redis.conn.clone();
        let n: i64 = inv.invoke_async(&mut conn).await?;
        Ok(u32::try_from(n).unwrap_or(0))
    }

    fn entries(reply: Vec<(String, f64)>, first_rank: u64) -> Vec<Entry> {
        reply
            .into_iter()
            .zip(first_rank..)
            .map(|((member, score), rank)| Entry {
                rank,
                user_id: user_of(&member),
                // Scores are sums of whole points, exact in a double far beyond any balance.
                points: score as i64,
            })
            .collect()
    }

    /// Entries `start..=stop` (0-based) of a board, best first.
    pub async fn page(&self, board: &str, start: u64, stop: u64) -> Result<Vec<Entry>> {
        let (z, _) = self.board(board);
        let mut conn = self.redis.conn.clone();
        let reply: Vec<(String, f64)> = redis::cmd("ZREVRANGE")
            .arg(&z)
            .arg(start)
            .arg(stop)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await?;
        Ok(Self::entries(reply, start + 1))
    }

    /// A shopper's place on a board with `neighbours` entries above and below.
    pub async fn rank(&self, board: &str, user: &str, neighbours: u64) -> Result<RankView> {
        let (z, m) = self.board(board);
        let mut conn = self.redis.conn.clone();
        let member: Option<String> = redis::cmd("HGET")
            .arg(&m)
            .arg(user)
            .query_async(&mut conn)
            .await?;
        let Some(member) = member else {
            return Ok(RankView::default());
        };
        let rank: Option<u64> = redis::cmd("ZREVRANK")
            .arg(&z)
            .arg(&member)
            .query_async(&mut conn)
            .await?;
        let Some(rank) = rank else {
            return Ok(RankView::default());
        };
        let start = rank.saturating_sub(neighbours);
        let mut around = self.page(board, start, rank + neighbours).await?;
        let split = usize::try_from(rank - start).unwrap_or(0);
        let below = around.split_off((split + 1).min(around.len()));
        let entry = around.pop();
        Ok(RankView {
            entry,
            above: around,
            below,
        })
    }
}
