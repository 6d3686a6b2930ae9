//! The shared runtime of every Titan service: configuration, the three servers (gRPC, HTTP,
//! admin), JWT authentication, error mapping, datastore clients and migrations, idempotent
//! mutations and the event bus (outbox, relay, consumers). A service crate builds on these and
//! never re-invents them.
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod datastores;
pub mod error;
pub mod events;
pub mod housekeeping;
pub mod idempotency;
pub mod metrics;
pub mod money;
pub mod runtime;
pub mod service;
pub mod telemetry;
pub mod testing;
pub mod turn;
pub mod wire;

pub use error::{ErrorCode, KitError, ServiceError};
pub use service::{Datastore, Mounted, ServiceContext, ServiceDef};
