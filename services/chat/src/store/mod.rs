//! Chat's stores: PostgreSQL for conversations, messages and receipts (`pg`), Redis for what
//! lives only while users are connected: typing, presence (`redis`); a person's records for
//! export and erasure (`privacy`).

pub mod pg;
pub mod privacy;
pub mod redis;
