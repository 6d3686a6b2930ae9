//! Where tracking's state lives: PostgreSQL ([`pg`]), the records and their append-only
//! events; Redis ([`live`]), the fan-out of appended events to subscribers on every replica;
//! and the bus ([`consumer`]), shipping's and drivers' events turned into appends;
//! [`privacy`], a person's records for export and erasure.

pub mod consumer;
pub mod live;
pub mod pg;
pub mod privacy;
