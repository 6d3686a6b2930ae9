//! Where the service keeps its state: PostgreSQL ([`pg`]). Labels go to object storage
//! from the use cases, before the row that names them. [`privacy`]: a person's shipments
//! for export and erasure.

pub mod pg;
pub mod privacy;
