//! Kit's integration tests, against the real PostgreSQL and Redis servers that `cargo xtask
//! test` starts; every test has its own database and key prefix.

mod auth;
mod ch;
mod events;
mod idempotency;
mod limits;
mod realtime;
mod runtime;
