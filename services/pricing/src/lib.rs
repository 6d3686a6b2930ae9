//! The pricing service: rules per product or category (DYNAMIC, COMPETITIVE, TIME_BASED,
//! SEGMENTED, PENETRATION, FIXED) turn demand from ClickHouse's `analytics_events`, competitor
//! prices and the clock into prices clamped to each rule's bounds, written to PostgreSQL with
//! their history and a `pricing.changed` event. Re-optimisation runs on a schedule on one
//! replica at a time and on demand; reads come from a per-replica cache. Elasticity is
//! estimated by log-log least squares with its uncertainty, and drives revenue-impact
//! estimates.
#![forbid(unsafe_code)]

pub mod domain;
