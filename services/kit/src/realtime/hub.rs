//! Fan-out across replicas: each replica's [`Hub`] holds ONE Redis subscriber connection and
//! the map topic → local sockets. A channel (`<prefix>realtime:<topic>`, so cells and tests
//! never hear each other) is subscribed while a local socket wants its topic and unsubscribed
//! when the last one leaves. One task reads the connection and queues each message for the
//! topic's sockets in the order Redis delivered it (per-topic order kept), never waiting on a
//! socket: a full queue closes that socket alone (4408). A dropped connection is re-opened and
//! every wanted channel subscribed again; what was published meanwhile is lost (pub/sub keeps
//! nothing), which clients recover from by reading state again.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use axum::extract::ws::Utf8Bytes;
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::{frame::ServerFrame, metrics::Metrics, session::Outlet};
use crate::{KitError, datastores::redis::RedisHandle};

/// The first pause before reconnecting the subscriber; it doubles up to [`RECONNECT_MAX`].
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

type Topics = HashMap<String, HashMap<u64, Arc<Outlet>>>;

/// The replica's hub; cheap to clone.
#[derive(Debug, Clone)]
pub struct Hub {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
}

#[derive(Debug)]
struct Shared {
    redis: RedisHandle,
    /// `<prefix>realtime:`, what every channel name starts with.
    channel_prefix: String,
    topics: Mutex<Topics>,
    metrics: Metrics,
}

/// What the subscriber task is asked to do, in the order the map changed.
#[derive(Debug)]
enum Command {
    /// Subscribe (unless already), then answer.
    Subscribe(String, oneshot::Sender<Result<(), String>>),
    Unsubscribe(String),
}

/// A publication refused before it reached Redis.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("frame type {0:?} must be non-empty without spaces or line breaks")]
    Kind(String),
    #[error(transparent)]
    Redis(#[from] KitError),
}

impl Hub {
    /// A hub over `redis`; its subscriber task runs until the last clone is dropped.
    pub(crate) fn start(redis: RedisHandle, metrics: Metrics) -> Self {
        let shared = Arc::new(Shared {
            channel_prefix: redis.key("realtime:"),
            redis,
            topics: Mutex::new(Topics::new()),
            metrics,
        });
        let (commands, rx) = mpsc::unbounded_channel();
        tokio::spawn(subscriber(shared.clone(), rx));
        Self { shared, commands }
    }

    /// Sends `{type: kind, payload}` to every socket subscribed to `topic`, on every replica.
    /// Frames published one after the other by one caller arrive in that order.
    pub async fn publish<T: Serialize>(
        &self,
        topic: &str,
        kind: &str,
        payload: &T,
    ) -> Result<(), PublishError> {
        if kind.is_empty() || kind.contains([' ', '\n', '\r']) {
            return Err(PublishError::Kind(kind.to_owned()));
        }
        let frame = ServerFrame {
            kind,
            id: None,
            payload,
        }
        .text();
        let body = format!("{} {kind}\n{frame}", now_micros());
        let mut conn = self.shared.redis.conn.clone();
        let _receivers: i64 = redis::cmd("PUBLISH")
            .arg(self.shared.channel(topic))
            .arg(body)
            .query_async(&mut conn)
            .await
            .map_err(KitError::from)?;
        Ok(())
    }

    /// Adds `outlet` to `topic`'s sockets; returns once the channel is subscribed.
    pub(crate) async fn subscribe(&self, topic: &str, outlet: Arc<Outlet>) -> Result<(), KitError> {
        let (done, confirmed) = oneshot::channel();
        {
            let mut topics = self.shared.lock();
            topics
                .entry(topic.to_owned())
                .or_default()
                .insert(outlet.id, outlet);
            // Sent under the lock, so the task sees subscriptions in the map's order.
            let _ = self
                .commands
                .send(Command::Subscribe(self.shared.channel(topic), done));
        }
        match confirmed.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(KitError::Other(format!(
                "cannot subscribe to topic {topic}: {why}"
            ))),
            Err(_) => Err(KitError::Other(format!(
                "cannot subscribe to topic {topic}: the hub stopped"
            ))),
        }
    }

    /// Removes socket `id` from `topic`; the channel is left when no local socket wants it.
    pub(crate) fn unsubscribe(&self, topic: &str, id: u64) {
        let mut topics = self.shared.lock();
        let Some(sockets) = topics.get_mut(topic) else {
            return;
        };
        sockets.remove(&id);
        if sockets.is_empty() {
            topics.remove(topic);
            let _ = self
                .commands
                .send(Command::Unsubscribe(self.shared.channel(topic)));
        }
    }

    /// Topics at least one local socket is subscribed to.
    pub fn topics(&self) -> usize {
        self.shared.lock().len()
    }
}

/// A topic's frames delivered to this process instead of a socket: for a service that
/// filters or re-orders them before they reach a client (chat de-duplicates a resumed
/// conversation's live frames against its backlog) or serves them over gRPC streams. Made by
/// [`super::Realtime::listen`]; leaves the topic when dropped.
#[derive(Debug)]
pub struct Listener {
    hub: Hub,
    topic: String,
    outlet: Arc<Outlet>,
    queue: mpsc::Receiver<Utf8Bytes>,
}

/// The listener's queue filled (its reader fell behind) and it was cut off; frames after
/// those still queued are lost to it, so its reader must read state again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the listener fell behind its topic and was cut off")]
pub struct Lagged;

impl Listener {
    /// The next frame (`{"type", "payload"}` JSON) in publication order; `Err(Lagged)` once the
    /// queue overflowed and what was queued before has been read.
    pub async fn next(&mut self) -> Result<Utf8Bytes, Lagged> {
        tokio::select! {
            biased;
            frame = self.queue.recv() => frame.ok_or(Lagged),
            () = self.outlet.closing() => self.queue.try_recv().map_err(|_| Lagged),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.hub.unsubscribe(&self.topic, self.outlet.id);
    }
}

impl Hub {
    /// Delivers `topic`'s frames to a [`Listener`] queueing at most `capacity`; returns once
    /// the channel is subscribed, so every frame published after this returns is received.
    pub(crate) async fn listen(
        &self,
        topic: &str,
        id: u64,
        capacity: usize,
    ) -> Result<Listener, KitError> {
        let (outlet, queue) = Outlet::new(id, capacity.max(1));
        let listener = Listener {
            hub: self.clone(),
            topic: topic.to_owned(),
            outlet: outlet.clone(),
            queue,
        };
        self.subscribe(topic, outlet).await?;
        Ok(listener)
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Topics> {
        // Every change to the map is one call: a panic cannot leave it half-changed.
        self.topics.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn channel(&self, topic: &str) -> String {
        format!("{}{topic}", self.channel_prefix)
    }

    /// Queues one published message for the topic's local sockets.
    fn dispatch(&self, msg: &redis::Msg) {
        let channel = msg.get_channel_name();
        let Some(topic) = channel.strip_prefix(&self.channel_prefix) else {
            return;
        };
        let Some((published, kind, frame)) = parse(msg.get_payload_bytes()) else {
            tracing::warn!(%channel, "ignoring a malformed realtime message");
            return;
        };
        let text = Utf8Bytes::from(frame.to_owned());
        let delivered = {
            let topics = self.lock();
            topics.get(topic).map_or(0, |sockets| {
                sockets
                    .values()
                    .filter(|outlet| outlet.push(text.clone()))
                    .count()
            })
        };
        self.metrics.frames_out(kind, delivered as u64);
        let latency = now_micros().saturating_sub(published);
        self.metrics
            .fanout_latency
            .observe(Duration::from_micros(latency).as_secs_f64());
    }
}

/// `<publish time in µs> <type>\n<frame>` → its parts.
fn parse(body: &[u8]) -> Option<(u64, &str, &str)> {
    let body = std::str::from_utf8(body).ok()?;
    let (head, frame) = body.split_once('\n')?;
    let (micros, kind) = head.split_once(' ')?;
    Some((micros.parse().ok()?, kind, frame))
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The subscriber task: one connection, re-opened when it drops, until the hub is dropped.
async fn subscriber(shared: Arc<Shared>, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut pause = RECONNECT_FIRST;
    loop {
        match serve_connection(&shared, &mut commands).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?pause, "realtime subscriber connection lost; reconnecting");
            }
        }
        tokio::time::sleep(pause).await;
        if commands.is_closed() {
            return;
        }
        pause = (pause * 2).min(RECONNECT_MAX);
    }
}

/// Serves one subscriber connection: `Ok` when the hub is dropped, `Err` when the connection
/// fails (the caller opens another).
async fn serve_connection(
    shared: &Shared,
    commands: &mut mpsc::UnboundedReceiver<Command>,
) -> Result<(), KitError> {
    let (mut sink, mut stream) = shared.redis.pubsub().await?.split();
    let mut subscribed: HashSet<String> = HashSet::new();
    let wanted: Vec<String> = shared.lock().keys().map(|t| shared.channel(t)).collect();
    if !wanted.is_empty() {
        sink.subscribe(&wanted).await?;
        subscribed.extend(wanted);
    }
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => return Ok(()),
                Some(Command::Subscribe(channel, done)) => {
                    if subscribed.contains(&channel) {
                        let _ = done.send(Ok(()));
                        continue;
                    }
                    match sink.subscribe(&channel).await {
                        Ok(()) => {
                            subscribed.insert(channel);
                            let _ = done.send(Ok(()));
                        }
                        Err(e) => {
                            let _ = done.send(Err(e.to_string()));
                            return Err(e.into());
                        }
                    }
                }
                Some(Command::Unsubscribe(channel)) => {
                    // Subscribed again meanwhile: the map wants it, keep it.
                    let topic = channel.strip_prefix(&shared.channel_prefix).unwrap_or_default();
                    if shared.lock().contains_key(topic) {
                        continue;
                    }
                    if subscribed.remove(&channel) {
                        sink.unsubscribe(&channel).await?;
                    }
                }
            },
            msg = stream.next() => match msg {
                Some(msg) => shared.dispatch(&msg),
                None => return Err(KitError::Other("the redis subscriber connection closed".into())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_their_publish_time_and_type() {
        assert_eq!(
            parse(b"1700000000000000 sale\n{\"type\":\"sale\",\"payload\":1}"),
            Some((
                1_700_000_000_000_000,
                "sale",
                "{\"type\":\"sale\",\"payload\":1}"
            ))
        );
        assert_eq!(parse(b"garbage"), None);
        assert_eq!(parse(b"x sale\n{}"), None);
    }
}
