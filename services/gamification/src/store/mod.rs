//! The gamification stores: [`pg::PgLedger`] (accounts, the ledger, rewards, missions: the
//! record), [`redis::RedisBoards`] (leaderboard sorted sets, Lua in `lua/`), [`feed::Feeder`]
//! (moves ledger rows onto the boards exactly once) and [`consumer`] (earning from events).

pub mod consumer;
pub mod feed;
pub mod pg;
pub mod redis;
