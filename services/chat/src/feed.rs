//! One subscriber's view of a conversation, shared by the WebSocket and gRPC `Subscribe`:
//! every stored message after the one the client saw last, then live events, with no gap and
//! no duplicate.
//!
//! How: the conversation's topic is subscribed FIRST (so nothing published from then on is
//! missed), then the backlog is read from the store by seq, then live frames follow. Messages
//! carry a seq (1, 2, 3, … per conversation, given under the conversation's row lock, so a
//! message commits only after every lower seq did). A live message at or below the last seq
//! delivered is a duplicate of the backlog and dropped; one above the next seq means some
//! were published late or lost (pub/sub keeps nothing), and the store, which already holds
//! them, fills the hole before it. Edits, deletions, receipts and typing pass as they come.

use std::{collections::VecDeque, sync::Arc};

use serde::Deserialize;
use titan_kit::realtime::Listener;

use crate::{
    app::{Chat, ChatError, ChatStore},
    domain::{ConversationId, InputError, Message, MessageId, Receipt, Typing, topic},
};

/// Messages read from the store at a time while catching up.
const BACKLOG_PAGE: u32 = 100;
/// Live frames a feed may have unread before it is cut off (the client then resumes).
const LISTENER_QUEUE: usize = 1024;

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", content = "payload", rename_all = "lowercase")]
pub enum Event {
    /// A new message, in seq order, once.
    Message(Message),
    /// A message edited or deleted.
    Updated(Message),
    Receipt(Receipt),
    Typing(Typing),
}

pub struct Feed<S> {
    app: Arc<Chat<S>>,
    conversation: ConversationId,
    listener: Listener,
    /// The seq of the last message delivered (or of `after`).
    last_seq: i64,
    /// Whether the store has nothing after `last_seq` that was not queued in `pending`.
    caught_up: bool,
    pending: VecDeque<Message>,
}

impl<S> std::fmt::Debug for Feed<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("conversation", &self.conversation)
            .field("last_seq", &self.last_seq)
            .finish_non_exhaustive()
    }
}

impl<S: ChatStore> Feed<S> {
    /// Subscribes to the conversation's topic, then finds where the client is.
    pub(crate) async fn open(
        app: Arc<Chat<S>>,
        conversation: ConversationId,
        after: Option<MessageId>,
    ) -> Result<Self, ChatError> {
        let listener = app
            .realtime
            .listen(&topic(conversation), LISTENER_QUEUE)
            .await?;
        let last_seq = match after {
            Some(id) => app.store.seq_of(conversation, id).await?.ok_or_else(|| {
                InputError::new(
                    "after",
                    format!("{id} is not a message of conversation {conversation}"),
                )
            })?,
            None => app.store.last_seq(conversation).await?,
        };
        Ok(Self {
            app,
            conversation,
            listener,
            last_seq,
            caught_up: after.is_none(),
            pending: VecDeque::new(),
        })
    }

    pub fn conversation(&self) -> ConversationId {
        self.conversation
    }

    /// The next event; `SlowConsumer` when live frames came faster than they were read.
    pub async fn next(&mut self) -> Result<Event, ChatError> {
        loop {
            if let Some(m) = self.pending.pop_front() {
                if m.seq > self.last_seq {
                    self.last_seq = m.seq;
                    return Ok(Event::Message(m));
                }
                continue;
            }
            if !self.caught_up {
                let page = self
                    .app
                    .store
                    .after_seq(self.conversation, self.last_seq, BACKLOG_PAGE)
                    .await?;
                self.caught_up = page.len() < BACKLOG_PAGE as usize;
                self.pending.extend(page);
                continue;
            }
            let frame = self
                .listener
                .next()
                .await
                .map_err(|_| ChatError::SlowConsumer)?;
            let event: Event = match serde_json::from_str(frame.as_str()) {
                Ok(event) => event,
                Err(e) => {
                    tracing::warn!(conversation = %self.conversation, error = %e, "ignoring a malformed chat frame");
                    continue;
                }
            };
            match event {
                Event::Message(m) if m.seq <= self.last_seq => {}
                Event::Message(m) if m.seq == self.last_seq + 1 => {
                    self.last_seq = m.seq;
                    return Ok(Event::Message(m));
                }
                // A hole before this message: those below it are committed; read them (and
                // this one) from the store.
                Event::Message(_) => self.caught_up = false,
                other => return Ok(other),
            }
        }
    }
}
