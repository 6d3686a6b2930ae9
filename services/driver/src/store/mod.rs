//! Where drivers, deliveries, routes and positions live: PostgreSQL ([`pg`]).

pub mod pg;
