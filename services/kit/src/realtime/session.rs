//! One socket as the rest of the process sees it: its [`Outlet`] (the bounded send queue the
//! hub and the handlers push into without ever waiting — a store-backed feed may wait for room
//! with [`Session::send_paced`] — and the switch that closes it) and the
//! [`Session`] a service's handlers receive (the caller, the path parameters, sending, topics).

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex, PoisonError},
};

use axum::extract::ws::Utf8Bytes;
use serde::Serialize;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio_util::sync::CancellationToken;

use super::{
    Realtime,
    frame::{Close, FrameError, ServerFrame},
    hub::Hub,
    metrics::Disconnect,
};
use crate::auth::Caller;

/// The sending side of one socket; shared by its session and the hub.
#[derive(Debug)]
pub(crate) struct Outlet {
    pub(crate) id: u64,
    queue: mpsc::Sender<Utf8Bytes>,
    closing: CancellationToken,
    why: Mutex<Option<(Close, Disconnect)>>,
}

impl Outlet {
    /// An outlet queueing at most `capacity` frames, and the receiving end its writer drains.
    pub(crate) fn new(id: u64, capacity: usize) -> (Arc<Self>, mpsc::Receiver<Utf8Bytes>) {
        let (queue, rx) = mpsc::channel(capacity);
        let outlet = Self {
            id,
            queue,
            closing: CancellationToken::new(),
            why: Mutex::new(None),
        };
        (Arc::new(outlet), rx)
    }

    /// Queues `text` at once or not at all: a full queue means the client reads slower than
    /// it is sent to, and the socket is closed (4408) rather than anyone waiting for it.
    pub(crate) fn push(&self, text: Utf8Bytes) -> bool {
        match self.queue.try_send(text) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.close(
                    Close::new(
                        Close::SLOW_CONSUMER,
                        "slow consumer: the send queue is full",
                    ),
                    Disconnect::SlowConsumer,
                );
                false
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    /// Queues `text`, waiting for room rather than closing the socket: for a producer whose
    /// own source is bounded and can wait (a backlog read page by page from a store), paced by
    /// the reader. False once the socket is closing.
    pub(crate) async fn push_paced(&self, text: Utf8Bytes) -> bool {
        tokio::select! {
            sent = self.queue.send(text) => sent.is_ok(),
            () = self.closing() => false,
        }
    }

    /// Asks the socket to close with `close`; the first reason given wins.
    pub(crate) fn close(&self, close: Close, why: Disconnect) {
        let mut slot = self.why.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some((close, why));
        }
        self.closing.cancel();
    }

    /// Marks the socket closed without a frame to send (the client left).
    pub(crate) fn gone(&self) {
        self.closing.cancel();
    }

    pub(crate) async fn closing(&self) {
        self.closing.cancelled().await;
    }

    /// Why [`Self::close`] was called, once it was.
    pub(crate) fn reason(&self) -> Option<(Close, Disconnect)> {
        self.why
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The socket is closed; nothing more can be sent on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the websocket is closed")]
pub struct Closed;

/// One open socket, as its service's handlers see it; cheap to clone.
#[derive(Debug, Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    outlet: Arc<Outlet>,
    caller: Caller,
    params: HashMap<String, String>,
    realtime: Realtime,
    topics: Mutex<BTreeSet<String>>,
}

impl Session {
    pub(crate) fn new(
        outlet: Arc<Outlet>,
        caller: Caller,
        params: HashMap<String, String>,
        realtime: Realtime,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                outlet,
                caller,
                params,
                realtime,
                topics: Mutex::new(BTreeSet::new()),
            }),
        }
    }

    /// This socket's number, unique within the process: a key for a service's per-socket
    /// state (the conversations a chat socket follows).
    pub fn id(&self) -> u64 {
        self.inner.outlet.id
    }

    /// Who opened the socket (from the verified token).
    pub fn caller(&self) -> &Caller {
        &self.inner.caller
    }

    /// A parameter of the route's path (`/sales/{sale_id}/watch` → `sale_id`).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.inner.params.get(name).map(String::as_str)
    }

    /// Queues the frame `{type: kind, payload}`; a full queue closes the socket (4408).
    pub fn send<T: Serialize>(&self, kind: &str, payload: &T) -> Result<(), Closed> {
        let text = ServerFrame {
            kind,
            id: None,
            payload,
        }
        .text();
        self.push(kind, text)
    }

    /// Like [`Self::send`] but waits while the queue is full instead of closing the socket: for
    /// a feed that replays a store's backlog, which would otherwise overflow the queue of a
    /// socket that reads at network speed. Its caller's source must bound how far it may fall
    /// behind (chat's live listener cuts a lagging feed off by itself).
    pub async fn send_paced<T: Serialize>(&self, kind: &str, payload: &T) -> Result<(), Closed> {
        let text = ServerFrame {
            kind,
            id: None,
            payload,
        }
        .text();
        if self.inner.outlet.push_paced(text.into()).await {
            self.inner.realtime.inner.metrics.frames_out(kind, 1);
            Ok(())
        } else {
            Err(Closed)
        }
    }

    pub(crate) fn push(&self, kind: &str, text: String) -> Result<(), Closed> {
        if self.inner.outlet.push(text.into()) {
            self.inner.realtime.inner.metrics.frames_out(kind, 1);
            Ok(())
        } else {
            Err(Closed)
        }
    }

    /// Closes the socket with `close` once what is queued before it was sent.
    pub fn close(&self, close: Close) {
        self.inner.outlet.close(close, Disconnect::Service);
    }

    /// Resolves when the socket closes, whoever closed it; a task feeding it stops then.
    pub async fn closed(&self) {
        self.inner.outlet.closing().await;
    }

    /// Delivers `topic`'s messages, published on any replica, to this socket from now on:
    /// returns once this replica's Redis subscription is in place.
    pub async fn subscribe(&self, topic: &str) -> Result<(), FrameError> {
        let hub = self.hub()?;
        let fresh = self
            .inner
            .topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(topic.to_owned());
        if !fresh {
            return Ok(());
        }
        hub.subscribe(topic, self.inner.outlet.clone())
            .await
            .map_err(|e| FrameError::new("UNAVAILABLE", e.to_string()))
    }

    /// Stops delivering `topic` to this socket; the replica leaves the Redis channel when no
    /// local socket wants it any more.
    pub fn unsubscribe(&self, topic: &str) -> Result<(), FrameError> {
        let hub = self.hub()?;
        let was = self
            .inner
            .topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(topic);
        if was {
            hub.unsubscribe(topic, self.inner.outlet.id);
        }
        Ok(())
    }

    fn hub(&self) -> Result<Hub, FrameError> {
        self.inner.realtime.hub().ok_or_else(|| {
            FrameError::new(
                "UNAVAILABLE",
                "topics need redis, which this process is not connected to",
            )
        })
    }

    /// Leaves every topic; called once when the socket ends.
    pub(crate) fn leave_all(&self) {
        let topics = std::mem::take(
            &mut *self
                .inner
                .topics
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        if topics.is_empty() {
            return;
        }
        if let Some(hub) = self.inner.realtime.hub() {
            for topic in topics {
                hub.unsubscribe(&topic, self.inner.outlet.id);
            }
        }
    }

    pub(crate) fn outlet(&self) -> &Arc<Outlet> {
        &self.inner.outlet
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prometheus::Registry;
    use secrecy::SecretString;

    use super::*;
    use crate::{
        auth::Authenticator,
        config::{AuthConfig, RealtimeConfig},
    };

    #[tokio::test]
    async fn a_full_queue_closes_the_socket_as_a_slow_consumer() {
        let (outlet, mut rx) = Outlet::new(1, 2);
        assert!(outlet.push("a".into()));
        assert!(outlet.push("b".into()));
        assert_eq!(outlet.reason(), None);
        assert!(!outlet.push("c".into()));
        assert_eq!(
            outlet.reason(),
            Some((
                Close::new(4408, "slow consumer: the send queue is full"),
                Disconnect::SlowConsumer
            ))
        );
        // What was queued before stays, in order; the later reason does not replace the first.
        outlet.close(Close::new(1001, "bye"), Disconnect::GoingAway);
        assert_eq!(outlet.reason().map(|r| r.0.code), Some(4408));
        assert_eq!(rx.recv().await.as_deref(), Some("a"));
        assert_eq!(rx.recv().await.as_deref(), Some("b"));
    }

    #[tokio::test]
    async fn a_paced_push_waits_for_room_instead_of_closing() {
        let (outlet, mut rx) = Outlet::new(1, 1);
        assert!(outlet.push("a".into()));
        let mut paced = Box::pin(outlet.push_paced("b".into()));
        // The queue is full: the push waits, and the socket stays open.
        assert!(futures::poll!(&mut paced).is_pending());
        assert_eq!(outlet.reason(), None);
        assert_eq!(rx.recv().await.as_deref(), Some("a"));
        assert!(paced.await);
        assert_eq!(rx.recv().await.as_deref(), Some("b"));
        assert_eq!(outlet.reason(), None);
    }

    #[tokio::test]
    async fn a_paced_push_gives_up_when_the_socket_closes() {
        let (outlet, _rx) = Outlet::new(1, 1);
        assert!(outlet.push("a".into()));
        let mut paced = Box::pin(outlet.push_paced("b".into()));
        assert!(futures::poll!(&mut paced).is_pending());
        outlet.close(Close::new(1001, "bye"), Disconnect::GoingAway);
        assert!(!paced.await);
        assert_eq!(outlet.reason().map(|r| r.0.code), Some(1001));
    }

    #[tokio::test]
    async fn sessions_send_frames_and_refuse_topics_without_redis() {
        let (outlet, mut rx) = Outlet::new(1, 4);
        let auth = Authenticator::new(&AuthConfig {
            issuer: None,
            audience: None,
            hs256_secret: Some(SecretString::from("0123456789abcdef0123456789abcdef")),
            rs256_public_keys: vec![],
            leeway: Duration::ZERO,
            max_token_lifetime: Duration::from_secs(60),
            jwks: None,
        })
        .expect("auth");
        let realtime = Realtime::new(RealtimeConfig::default(), auth, &Registry::new(), None)
            .expect("realtime");
        let session = Session::new(
            outlet,
            Caller {
                user_id: "u1".into(),
                roles: vec![],
            },
            HashMap::from([("sale_id".to_owned(), "s1".to_owned())]),
            realtime,
        );
        assert_eq!(session.param("sale_id"), Some("s1"));
        session.send("tick", &3).expect("queued");
        assert_eq!(
            rx.recv().await.as_deref(),
            Some(r#"{"type":"tick","payload":3}"#)
        );
        assert_eq!(
            session.subscribe("t").await,
            Err(FrameError::new(
                "UNAVAILABLE",
                "topics need redis, which this process is not connected to"
            ))
        );
    }
}
