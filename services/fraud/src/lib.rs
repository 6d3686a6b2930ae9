//! The fraud service: risk of a transaction on the checkout path from weighted signals
//! (first-seen devices and IPs, countries, velocity in Redis, amount anomaly against the user's
//! own history, failed payments, account age, known-bad lists, chargebacks), declarative rules
//! and a logistic model; every decision stored and published, HIGH and above opened as review
//! cases for analysts.
#![forbid(unsafe_code)]

pub mod domain;
