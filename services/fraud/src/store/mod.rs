//! Fraud's stores: PostgreSQL for users, first-seen history, decisions, rules, models, cases
//! and chargebacks (`pg`); Redis for velocity (`redis`); the purchase events that count a
//! user's successful orders (`consumer`).

pub mod consumer;
pub mod pg;
pub mod redis;
