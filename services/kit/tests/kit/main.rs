//! Kit's integration tests, against the real PostgreSQL, Redis, ClickHouse and S3 (s3s-fs)
//! servers that `cargo xtask test` starts; every test has its own database and key prefix.

mod auth;
mod ch;
mod events;
mod idempotency;
mod jwks;
mod limits;
mod objects;
mod privacy;
mod realtime;
mod redis_connections;
mod redis_scan;
mod runtime;
mod tls;
mod traces;
