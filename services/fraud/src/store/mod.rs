//! Fraud's stores: PostgreSQL for users, first-seen history, decisions, rules, models, cases
//! and chargebacks (`pg`); Redis for velocity, cached histories and the decision log checks
//! answer from (`redis`); the log's sink into PostgreSQL (`log`); the purchase events that
//! count a user's successful orders (`consumer`); a user's records for the privacy jobs
//! (`privacy`).

pub mod consumer;
pub mod log;
pub mod pg;
pub mod privacy;
pub mod redis;
