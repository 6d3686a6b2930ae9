//! Where the service keeps its state: PostgreSQL ([`pg`]); [`privacy`], who acted, for a
//! person's export and erasure.

pub mod pg;
pub mod privacy;
