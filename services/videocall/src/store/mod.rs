//! Where calls live: PostgreSQL ([`pg`]). Live frames go through kit's hub, not a store. A
//! person's records for export and erasure, recordings in the bucket included: [`privacy`].

pub mod pg;
pub mod privacy;
