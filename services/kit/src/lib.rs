//! The shared runtime of every Titan service: configuration, the three servers (gRPC, HTTP,
//! admin), JWT authentication, error mapping, datastore clients and migrations, idempotent
//! mutations, the event bus (outbox, relay, consumers, dead letters) and the limits every call
//! runs under (deadlines, load shedding, per-user rate limits), and WebSockets across replicas
//! (`realtime`). A service crate builds on these and never re-invents them.
#![forbid(unsafe_code)]

pub mod auth;
pub mod background;
pub mod batch;
pub mod config;
pub mod datastores;
pub mod deadline;
pub mod error;
pub mod events;
pub mod housekeeping;
pub mod idempotency;
pub mod input;
pub mod load_shed;
pub mod metrics;
pub mod money;
pub mod objects;
pub mod privacy;
pub mod ratelimit;
pub mod realtime;
pub mod runtime;
pub mod service;
pub mod telemetry;
pub mod testing;
pub mod tls;
pub mod turn;
pub mod wire;

pub use error::{ErrorCode, KitError, ServiceError};

/// The clock a service reads "now" from: `Arc::new(chrono::Utc::now)` when it serves, a
/// [`testing::TestClock`] in tests, so expiries and windows need no waiting.
pub type Clock = std::sync::Arc<dyn Fn() -> chrono::DateTime<chrono::Utc> + Send + Sync>;

/// The datastore clients' crates, for [`datastore_errors!`] to name from any service.
#[doc(hidden)]
pub mod reexport {
    pub use ::clickhouse;
    pub use ::redis;
    pub use ::sqlx;
}

/// Lets `?` turn a datastore client's error into `$error::Kit(KitError)` in a service's error
/// enum (which maps it to `Unavailable` or `Internal`), instead of three `From` impls each.
#[macro_export]
macro_rules! datastore_errors {
    ($error:ty) => {
        impl From<$crate::reexport::sqlx::Error> for $error {
            fn from(e: $crate::reexport::sqlx::Error) -> Self {
                Self::Kit(e.into())
            }
        }
        impl From<$crate::reexport::redis::RedisError> for $error {
            fn from(e: $crate::reexport::redis::RedisError) -> Self {
                Self::Kit(e.into())
            }
        }
        impl From<$crate::reexport::clickhouse::error::Error> for $error {
            fn from(e: $crate::reexport::clickhouse::error::Error) -> Self {
                Self::Kit(e.into())
            }
        }
        impl From<$crate::objects::ObjectError> for $error {
            fn from(e: $crate::objects::ObjectError) -> Self {
                Self::Kit(e.into())
            }
        }
    };
}
pub use service::{Datastore, Mounted, ServiceContext, ServiceDef};
