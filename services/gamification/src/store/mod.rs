//! The gamification stores: [`pg::PgLedger`] (accounts, the ledger, rewards, missions: the
//! record), [`redis::RedisBoards`] (leaderboard sorted sets, Lua in `lua/`), [`feed::FedBoards`]
//! (the boards fed with ledger rows, each once), [`consumer`] (earning from events) and
//! [`privacy`] (a shopper's records: their export and erasure).

pub mod consumer;
pub mod feed;
pub mod pg;
pub mod privacy;
pub mod redis;
