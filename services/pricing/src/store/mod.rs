//! Pricing's stores: PostgreSQL for products, rules, prices, history, competitor prices and the
//! round lease (`pg`); ClickHouse for the demand signals in `analytics_events` (`demand`).

pub mod demand;
pub mod pg;
