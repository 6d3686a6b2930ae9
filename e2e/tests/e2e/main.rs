//! End to end: the real `titan` binary as a process, on the real PostgreSQL, Redis and
//! ClickHouse servers that `cargo xtask test` starts, driven by real gRPC, HTTP and WebSocket
//! clients (tokio-tungstenite, and Node's `ws` that `cargo xtask test` installs).

mod analytics;
mod campaign;
mod chat;
mod driver;
mod events;
mod flashsale;
mod fraud;
mod livestream;
mod livestream_recorder;
mod marketing;
mod pricing;
mod privacy;
mod realtime;
mod route;
mod serving;
mod shipping;
mod traces;
mod tracking;
mod videocall;
mod videocall_browser;
mod warehouse;
