//! Livestream's stores: PostgreSQL for streams, comments and purchases ([`pg`]) and Redis for
//! the viewer figures ([`redis`]).

pub mod pg;
pub mod redis;
