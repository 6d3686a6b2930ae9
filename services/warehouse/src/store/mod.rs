//! Where the service keeps its state: PostgreSQL ([`pg`]).

pub mod pg;
