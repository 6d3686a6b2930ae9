//! The stores: PostgreSQL (campaigns, deliveries, contacts, suppressions, engagements,
//! purchases, trigger events), ClickHouse (segment members from analytics_events) and the bus
//! consumer that records purchases and starts or cancels triggered messages; a person's
//! records for the privacy jobs (`privacy`).

pub mod ch;
pub mod consumer;
pub mod pg;
pub mod privacy;
