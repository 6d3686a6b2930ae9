//! Chat's stores: PostgreSQL for conversations, messages and receipts (`pg`), Redis for what
//! lives only while users are connected: typing, presence (`redis`).

pub mod pg;
pub mod redis;
