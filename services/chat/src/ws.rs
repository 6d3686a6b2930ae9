//! Chat over a WebSocket, `GET /v1/chat/ws` (kit's handshake, frames and close codes). The
//! same operations as gRPC, as client frames with an `id` answered by an ack or an error
//! frame: `subscribe {conversationId, after?}` (backlog after `after` from the store, then
//! live; the ack may arrive after the first frames), `unsubscribe {conversationId}`,
//! `send {requestId, conversationId, type, content, metadata?}`, `edit {conversationId,
//! messageId, content}`, `delete {conversationId, messageId}`, `receipt {conversationId,
//! deliveredUpTo?, readUpTo?}` and `typing {conversationId, typing}`. The server pushes
//! `message`, `updated`, `receipt` and `typing` frames of the conversations subscribed. An open
//! socket keeps its user online. A subscription that falls behind closes the socket with 4408;
//! the client reconnects and subscribes with the last id it has.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};
use titan_kit::realtime::{Close, Endpoint, FrameError, Realtime, Session};
use tokio_util::sync::CancellationToken;

use crate::{
    app::{Chat, ChatError, ChatStore},
    domain::{ConversationId, InputError, MessageKind, Metadata},
    feed::Event,
};

pub const PATH: &str = "/v1/chat/ws";

/// The subscriptions of every socket of this replica: (socket, conversation) → its feed's stop.
type Subscriptions = Arc<Mutex<HashMap<(u64, ConversationId), CancellationToken>>>;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Subscribe {
    conversation_id: String,
    #[serde(default)]
    after: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Unsubscribe {
    conversation_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SendFrame {
    #[serde(default)]
    request_id: String,
    conversation_id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    content: String,
    #[serde(default)]
    metadata: Metadata,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Edit {
    conversation_id: String,
    message_id: String,
    content: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Delete {
    conversation_id: String,
    message_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Mark {
    conversation_id: String,
    #[serde(default)]
    delivered_up_to: String,
    #[serde(default)]
    read_up_to: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SetTyping {
    conversation_id: String,
    typing: bool,
}

fn parse<T: DeserializeOwned>(payload: Value) -> Result<T, FrameError> {
    serde_json::from_value(payload).map_err(|e| FrameError::new("INVALID_ARGUMENT", e.to_string()))
}

fn refused(e: &ChatError) -> FrameError {
    FrameError::from_service(e)
}

fn json_of<T: serde::Serialize>(v: &T) -> Result<Value, FrameError> {
    serde_json::to_value(v).map_err(|e| FrameError::new("INTERNAL", e.to_string()))
}

/// Registers a handler that gets the app, the session and the payload.
fn with_app<S, F, Fut>(endpoint: Endpoint, kind: &'static str, app: &Arc<Chat<S>>, f: F) -> Endpoint
where
    S: ChatStore,
    F: Fn(Arc<Chat<S>>, Session, Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, FrameError>> + Send + 'static,
{
    let app = app.clone();
    endpoint.on(kind, move |s: Session, payload: Value| {
        f(app.clone(), s, payload)
    })
}

pub fn router<S: ChatStore>(realtime: &Realtime, app: Arc<Chat<S>>) -> axum::Router {
    let subscriptions: Subscriptions = Arc::default();
    let open_app = app.clone();
    let mut endpoint = Endpoint::new().on_open(move |session: Session| {
        let online = open_app.online(&session.caller().user_id);
        async move {
            tokio::spawn(async move {
                session.closed().await;
                drop(online);
            });
            Ok(())
        }
    });
    let subs = subscriptions.clone();
    endpoint = with_app(endpoint, "subscribe", &app, move |app, s, payload| {
        let subs = subs.clone();
        async move {
            let Subscribe {
                conversation_id,
                after,
            } = parse(payload)?;
            subscribe(app, s, subs, &conversation_id, &after).await
        }
    });
    let subs = subscriptions;
    endpoint = with_app(endpoint, "unsubscribe", &app, move |_app, s, payload| {
        let subs = subs.clone();
        async move {
            let Unsubscribe { conversation_id } = parse(payload)?;
            let id = ConversationId::parse("conversationId", &conversation_id)
                .map_err(|e| refused(&e.into()))?;
            if let Some(stop) = lock(&subs).remove(&(s.id(), id)) {
                stop.cancel();
            }
            Ok(json!({ "conversationId": id }))
        }
    });
    endpoint = with_app(endpoint, "send", &app, |app, s, payload| async move {
        let m: SendFrame = parse(payload)?;
        let kind = MessageKind::parse("type", &m.kind).map_err(|e| refused(&e.into()))?;
        let sent = app
            .send(
                s.caller(),
                &m.request_id,
                &m.conversation_id,
                kind,
                &m.content,
                m.metadata,
            )
            .await
            .map_err(|e| refused(&e))?;
        json_of(&sent)
    });
    endpoint = with_app(endpoint, "edit", &app, |app, s, payload| async move {
        let e: Edit = parse(payload)?;
        let edited = app
            .edit(s.caller(), &e.conversation_id, &e.message_id, &e.content)
            .await
            .map_err(|e| refused(&e))?;
        json_of(&edited)
    });
    endpoint = with_app(endpoint, "delete", &app, |app, s, payload| async move {
        let d: Delete = parse(payload)?;
        let deleted = app
            .delete(s.caller(), &d.conversation_id, &d.message_id)
            .await
            .map_err(|e| refused(&e))?;
        json_of(&deleted)
    });
    endpoint = with_app(endpoint, "receipt", &app, |app, s, payload| async move {
        let r: Mark = parse(payload)?;
        let marked = app
            .mark(
                s.caller(),
                &r.conversation_id,
                &r.delivered_up_to,
                &r.read_up_to,
            )
            .await
            .map_err(|e| refused(&e))?;
        json_of(&marked)
    });
    endpoint = with_app(endpoint, "typing", &app, |app, s, payload| async move {
        let t: SetTyping = parse(payload)?;
        app.set_typing(s.caller(), &t.conversation_id, t.typing)
            .await
            .map_err(|e| refused(&e))?;
        Ok(Value::Null)
    });
    realtime.route(PATH, endpoint)
}

fn lock(
    subs: &Subscriptions,
) -> std::sync::MutexGuard<'_, HashMap<(u64, ConversationId), CancellationToken>> {
    // Each change is one insert or remove: a panic cannot leave the map half-changed.
    subs.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Opens the feed (topic subscribed, position found) before answering, then pumps it into
/// the socket until the socket closes or the client unsubscribes.
async fn subscribe<S: ChatStore>(
    app: Arc<Chat<S>>,
    session: Session,
    subs: Subscriptions,
    conversation: &str,
    after: &str,
) -> Result<Value, FrameError> {
    if conversation.is_empty() {
        return Err(refused(
            &InputError::new("conversationId", "is empty").into(),
        ));
    }
    let mut feed = app
        .feed(session.caller(), conversation, after)
        .await
        .map_err(|e| refused(&e))?;
    let id = feed.conversation();
    let key = (session.id(), id);
    let stop = CancellationToken::new();
    if let Some(previous) = lock(&subs).insert(key, stop.clone()) {
        // Subscribing again restarts from the new position: the old feed stops.
        previous.cancel();
    }
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                () = session.closed() => break,
                () = stop.cancelled() => break,
                next = feed.next() => next,
            };
            // Paced: a resumed backlog comes from the store page by page and waits for the
            // reader; a reader too slow for the live frames is cut off by the feed's listener.
            let sent = match next {
                Ok(Event::Message(m)) => session.send_paced(crate::app::frames::MESSAGE, &m).await,
                Ok(Event::Updated(m)) => session.send_paced(crate::app::frames::UPDATED, &m).await,
                Ok(Event::Receipt(r)) => session.send_paced(crate::app::frames::RECEIPT, &r).await,
                Ok(Event::Typing(t)) => session.send_paced(crate::app::frames::TYPING, &t).await,
                Err(ChatError::SlowConsumer) => {
                    session.close(Close::new(
                        Close::SLOW_CONSUMER,
                        format!("SLOW_CONSUMER: conversation {id} fell behind; subscribe again with the last id seen"),
                    ));
                    break;
                }
                Err(e) => {
                    session.close(Close::from_service(&e));
                    break;
                }
            };
            if sent.is_err() {
                break;
            }
        }
        // A cancelled stop was removed by `unsubscribe` or replaced by a newer subscription,
        // whose entry stays; otherwise the entry is still ours.
        if !stop.is_cancelled() {
            lock(&subs).remove(&key);
        }
    });
    Ok(json!({ "conversationId": id }))
}
