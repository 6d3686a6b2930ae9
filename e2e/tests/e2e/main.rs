//! End to end: the real `titan` binary as a process, on the real PostgreSQL and Redis servers
//! that `cargo xtask test` starts, driven by real gRPC and HTTP clients.

mod events;
mod flashsale;
mod serving;
