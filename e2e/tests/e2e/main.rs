//! End to end: the real `titan` binary as a process, on the real PostgreSQL, Redis and
//! ClickHouse servers that `cargo xtask test` starts, driven by real gRPC and HTTP clients.

mod analytics;
mod events;
mod flashsale;
mod marketing;
mod serving;
