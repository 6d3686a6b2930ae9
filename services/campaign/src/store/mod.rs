//! The stores: PostgreSQL (campaigns, deliveries, contacts, suppressions, engagements,
//! purchases), ClickHouse (segment members from analytics_events) and the bus consumer that
//! records purchases.

pub mod ch;
pub mod consumer;
pub mod pg;
