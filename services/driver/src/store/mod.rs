//! Where drivers, deliveries, routes and positions live: PostgreSQL ([`pg`]), the record;
//! Redis ([`live`]), the nearby set, latest positions and their fan-out, rebuilt from it;
//! [`privacy`], a person's records for export and erasure.

pub mod live;
pub mod pg;
pub mod privacy;
