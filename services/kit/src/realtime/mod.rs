//! WebSockets across replicas. A service mounts routes on its HTTP port with
//! [`Realtime::route`] and an [`Endpoint`] (a handler per client frame type, an opening hook);
//! kit does the rest the same way for every service:
//! - the handshake ([`endpoint`]): `Origin` allow-list, the same JWT as gRPC (header,
//!   `bearer` subprotocol or `?access_token=`), per-replica and per-user connection limits;
//! - the frames ([`frame`]): JSON `{type, id, payload}`, acks and error frames, close codes;
//! - each socket's life ([`connection`]): pings, token expiry, bounded send queue, drain;
//! - fan-out between replicas ([`hub`]): one Redis subscriber connection per replica;
//! - metrics ([`metrics`]).
//!
//! One [`Realtime`] per process, made by the runtime and handed to each service in its
//! [`crate::ServiceContext`]; the runtime drains it on shutdown (1001 to every socket, queues
//! flushed within the grace period). See "WebSockets" in `docs/runtime.md`.

mod connection;
pub mod endpoint;
pub mod frame;
pub mod hub;
pub mod metrics;
pub mod session;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock, PoisonError, atomic::AtomicU64},
};

use prometheus::Registry;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use endpoint::Endpoint;
pub use frame::{Close, FrameError};
pub use hub::{Hub, Lagged, Listener, PublishError};
pub use session::{Closed, Session};

use crate::{
    KitError, auth::Authenticator, config::RealtimeConfig, datastores::redis::RedisHandle,
};

/// The WebSockets of one process; cheap to clone.
#[derive(Debug, Clone)]
pub struct Realtime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: RealtimeConfig,
    auth: Authenticator,
    metrics: metrics::Metrics,
    redis: Option<RedisHandle>,
    /// Started with the first socket that subscribes to a topic or the first publication.
    hub: OnceLock<Hub>,
    open: Mutex<Open>,
    next_id: AtomicU64,
    /// Every open socket's task, so that draining can wait for them.
    tracker: TaskTracker,
    drain: CancellationToken,
}

/// Sockets open now, in all and per user.
#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_user: HashMap<String, usize>,
}

impl Inner {
    fn lock_open(&self) -> std::sync::MutexGuard<'_, Open> {
        // Each change is a few integer updates: a panic cannot leave them half-done.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Realtime {
    /// The WebSockets of a process: its metrics go to `registry`; topics need `redis`.
    pub fn new(
        config: RealtimeConfig,
        auth: Authenticator,
        registry: &Registry,
        redis: Option<RedisHandle>,
    ) -> Result<Self, KitError> {
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                auth,
                metrics: metrics::Metrics::new(registry)?,
                redis,
                hub: OnceLock::new(),
                open: Mutex::new(Open::default()),
                next_id: AtomicU64::new(1),
                tracker: TaskTracker::new(),
                drain: CancellationToken::new(),
            }),
        })
    }

    /// The router serving `endpoint` at `path` (axum syntax: `/v1/x/{id}/watch`), for
    /// [`crate::Mounted::http`].
    pub fn route(&self, path: &str, endpoint: Endpoint) -> axum::Router {
        endpoint::router(self.clone(), path, endpoint)
    }

    /// The replica's hub, for publishing; `None` when the process has no Redis.
    pub fn hub(&self) -> Option<Hub> {
        let redis = self.inner.redis.as_ref()?;
        Some(
            self.inner
                .hub
                .get_or_init(|| Hub::start(redis.clone(), self.inner.metrics.clone()))
                .clone(),
        )
    }

    /// Receives `topic`'s frames, published on any replica, in this process (see
    /// [`Listener`]); at most `capacity` wait unread before the listener is cut off.
    pub async fn listen(&self, topic: &str, capacity: usize) -> Result<Listener, KitError> {
        let hub = self.hub().ok_or_else(|| {
            KitError::Other("topics need redis, which this process is not connected to".into())
        })?;
        let id = self
            .inner
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        hub.listen(topic, id, capacity).await
    }

    /// Sockets open on this replica now.
    pub fn connections(&self) -> usize {
        self.inner.lock_open().total
    }

    /// Closes every socket with 1001 once its queue is flushed, and refuses new ones.
    pub fn drain(&self) {
        self.inner.drain.cancel();
        self.inner.tracker.close();
    }

    /// Resolves when every socket has ended after [`Self::drain`].
    pub async fn drained(&self) {
        self.inner.tracker.wait().await;
    }
}
