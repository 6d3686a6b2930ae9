//! Chat's use cases over a [`ChatStore`] (PostgreSQL) and [`Live`] (Redis: typing, presence,
//! rate limits) with the replica's hub for live events: the caller comes from the token,
//! every input is parsed before any I/O, only participants reach a conversation, and each
//! change is published to the conversation's topic after it committed.

use std::{future::Future, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use serde::Serialize;
use titan_kit::{
    Clock, ErrorCode, KitError, ServiceError,
    auth::Caller,
    idempotency::{self, IdempotencyError, composite},
    ratelimit::{RateLimit, RateLimited, RateLimiter},
    realtime::{Hub, Realtime},
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    config::Settings,
    domain::{
        Content, Conversation, ConversationId, ConversationKind, InputError, Limits, Markers,
        MemberRole, Message, MessageId, MessageKind, Metadata, Receipt, Typing, UserId, check_edit,
        conversation::parse_name,
        direct_key,
        message::{ContentError, EditRefusal, check_text},
        topic,
    },
    feed::Feed,
    metrics::Metrics,
    store::redis::{Live, Presence, SEND_SCOPE},
};

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error(transparent)]
    Invalid(#[from] InputError),
    #[error("{0}")]
    TooLarge(String),
    #[error("type: SYSTEM messages are written by the service only")]
    SystemOnly,
    #[error("user {user} is not a participant of conversation {conversation}")]
    NotAParticipant {
        user: String,
        conversation: ConversationId,
    },
    #[error("conversation {0} is not a group; only groups change members")]
    NotAGroup(ConversationId),
    #[error("user {user} is not an admin of group {conversation}")]
    NotAnAdmin {
        user: String,
        conversation: ConversationId,
    },
    #[error("group {conversation} has its maximum of {max} members (chat.maxGroupMembers)")]
    TooManyMembers {
        conversation: ConversationId,
        max: u32,
    },
    #[error("message {message} is not in conversation {conversation}")]
    MessageNotFound {
        conversation: ConversationId,
        message: MessageId,
    },
    #[error(transparent)]
    Edit(#[from] EditRefusal),
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    #[error(
        "the subscriber read too slowly and was cut off; subscribe again with the last message id it has"
    )]
    SlowConsumer,
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    #[error(transparent)]
    Kit(#[from] KitError),
}

titan_kit::datastore_errors!(ChatError);

impl From<ContentError> for ChatError {
    fn from(e: ContentError) -> Self {
        match e {
            ContentError::Invalid(e) => Self::Invalid(e),
            e @ ContentError::TooLarge { .. } => Self::TooLarge(e.to_string()),
            ContentError::SystemOnly => Self::SystemOnly,
        }
    }
}

impl ServiceError for ChatError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) | Self::TooLarge(_) => ErrorCode::InvalidArgument,
            Self::SystemOnly | Self::NotAParticipant { .. } | Self::NotAnAdmin { .. } => {
                ErrorCode::PermissionDenied
            }
            Self::Edit(EditRefusal::NotTheSender(_) | EditRefusal::System(_)) => {
                ErrorCode::PermissionDenied
            }
            Self::Edit(EditRefusal::Deleted { .. } | EditRefusal::WindowClosed { .. })
            | Self::NotAGroup(_)
            | Self::TooManyMembers { .. } => ErrorCode::FailedPrecondition,
            Self::MessageNotFound { .. } => ErrorCode::NotFound,
            Self::RateLimited(e) => e.code(),
            Self::SlowConsumer => ErrorCode::Aborted,
            Self::Idempotency(e) => e.code(),
            Self::Kit(e) => e.code(),
        }
    }

    fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Invalid(_) => Some("INVALID_ARGUMENT"),
            Self::TooLarge(_) => Some("MESSAGE_TOO_LARGE"),
            Self::SystemOnly => Some("SYSTEM_ONLY"),
            Self::NotAParticipant { .. } => Some("NOT_A_PARTICIPANT"),
            Self::NotAGroup(_) => Some("NOT_A_GROUP"),
            Self::NotAnAdmin { .. } => Some("NOT_AN_ADMIN"),
            Self::TooManyMembers { .. } => Some("TOO_MANY_MEMBERS"),
            Self::MessageNotFound { .. } => Some("MESSAGE_NOT_FOUND"),
            Self::Edit(EditRefusal::NotTheSender(_) | EditRefusal::System(_)) => {
                Some("NOT_THE_SENDER")
            }
            Self::Edit(EditRefusal::Deleted { .. }) => Some("MESSAGE_DELETED"),
            Self::Edit(EditRefusal::WindowClosed { .. }) => Some("EDIT_WINDOW_CLOSED"),
            Self::RateLimited(e) => e.reason(),
            Self::SlowConsumer => Some("SLOW_CONSUMER"),
            Self::Idempotency(e) => e.reason(),
            Self::Kit(_) => None,
        }
    }
}

/// A conversation about to be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConversation {
    pub id: ConversationId,
    pub kind: ConversationKind,
    pub name: Option<String>,
    pub created_by: UserId,
    pub members: Vec<(UserId, MemberRole)>,
    /// DIRECT only: the pair's [`direct_key`].
    pub direct_key: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Which page of history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Latest,
    Before(MessageId),
    After(MessageId),
}

/// A message about to be stored; the store gives it its id and seq under the conversation's
/// lock.
#[derive(Debug, Clone, Copy)]
pub struct Draft<'a> {
    pub sender: &'a UserId,
    pub content: &'a Content,
    pub at: DateTime<Utc>,
}

/// What the store trait's methods return: boxed, so the trait stays object-safe and simple.
pub type Fut<'a, T> = std::pin::Pin<Box<dyn Future<Output = Result<T, ChatError>> + Send + 'a>>;

/// Conversations, members, messages and receipts, with their idempotency keys and events.
pub trait ChatStore: Send + Sync + 'static {
    /// Creates the pair's DIRECT conversation, or returns the one that exists (`false`).
    fn create_direct<'a>(&'a self, new: &'a NewConversation) -> Fut<'a, (Conversation, bool)>;
    /// Creates a GROUP or SUPPORT conversation once per `key`.
    fn create<'a>(
        &'a self,
        key: &'a idempotency::Key,
        new: &'a NewConversation,
    ) -> Fut<'a, Conversation>;
    fn conversation(&self, id: ConversationId) -> Fut<'_, Option<Conversation>>;
    /// Adds `user` (no change when a member already) and writes `note`; refuses past `max`.
    fn add_member<'a>(
        &'a self,
        id: ConversationId,
        user: &'a UserId,
        max: u32,
        note: Draft<'a>,
    ) -> Fut<'a, Option<Message>>;
    /// Removes `user` (no change when not a member) and writes `note`.
    fn remove_member<'a>(
        &'a self,
        id: ConversationId,
        user: &'a UserId,
        note: Draft<'a>,
    ) -> Fut<'a, Option<Message>>;
    /// `user`'s conversations with ids above `after`, with their unread counts.
    fn conversations_of<'a>(
        &'a self,
        user: &'a str,
        after: Option<ConversationId>,
        limit: u32,
    ) -> Fut<'a, Vec<(Conversation, u64)>>;
    /// Unread counts of every conversation of `user`, in one query.
    fn unread_counts<'a>(&'a self, user: &'a str) -> Fut<'a, Vec<(ConversationId, u64)>>;
    /// Stores a message with its `chat.message_sent` event once per `key`; `join` makes the
    /// sender a member first (an agent answering a SUPPORT conversation).
    fn send<'a>(
        &'a self,
        key: &'a idempotency::Key,
        conversation: &'a Conversation,
        draft: Draft<'a>,
        join: bool,
    ) -> Fut<'a, Message>;
    fn message(&self, conversation: ConversationId, id: MessageId) -> Fut<'_, Option<Message>>;
    /// Replaces the content unless the message was deleted meanwhile (`None`).
    fn edit<'a>(
        &'a self,
        conversation: ConversationId,
        id: MessageId,
        text: &'a str,
        at: DateTime<Utc>,
    ) -> Fut<'a, Option<Message>>;
    /// Empties the message and marks it deleted (once; later calls return it as it is).
    fn delete(
        &self,
        conversation: ConversationId,
        id: MessageId,
        at: DateTime<Utc>,
    ) -> Fut<'_, Option<Message>>;
    fn history(
        &self,
        conversation: ConversationId,
        page: Page,
        limit: u32,
    ) -> Fut<'_, Vec<Message>>;
    /// Messages with seq above `seq`, in order.
    fn after_seq(
        &self,
        conversation: ConversationId,
        seq: i64,
        limit: u32,
    ) -> Fut<'_, Vec<Message>>;
    fn seq_of(&self, conversation: ConversationId, id: MessageId) -> Fut<'_, Option<i64>>;
    fn last_seq(&self, conversation: ConversationId) -> Fut<'_, i64>;
    /// Moves `user`'s markers forward; `Err(field)` names a marker that is not a message of the
    /// conversation.
    fn mark<'a>(
        &'a self,
        conversation: ConversationId,
        user: &'a UserId,
        delivered: Option<MessageId>,
        read: Option<MessageId>,
        at: DateTime<Utc>,
    ) -> Fut<'a, Result<Markers, &'static str>>;
    fn receipts(&self, conversation: ConversationId) -> Fut<'_, Vec<Receipt>>;
}

/// The live event frames of a conversation's topic (and of the WebSocket).
pub mod frames {
    pub const MESSAGE: &str = "message";
    pub const UPDATED: &str = "updated";
    pub const RECEIPT: &str = "receipt";
    pub const TYPING: &str = "typing";
}

/// Largest page of `ListConversations`.
pub const MAX_CONVERSATION_PAGE: u32 = 100;
/// Most users one `GetPresence` asks about.
pub const MAX_PRESENCE_USERS: usize = 100;

pub struct Chat<S> {
    pub(crate) store: S,
    live: Live,
    hub: Hub,
    pub(crate) realtime: Realtime,
    settings: Settings,
    limits: Limits,
    sends: RateLimiter,
    instance: String,
    clock: Clock,
    metrics: Metrics,
}

impl<S> std::fmt::Debug for Chat<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chat")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What a [`Chat`] is made of besides its store.
pub struct Parts {
    pub live: Live,
    pub realtime: Realtime,
    pub settings: Settings,
    /// The cell's object storage bucket (`s3://` URLs of IMAGE and FILE messages).
    pub bucket: Option<String>,
    /// This replica's name, in presence connection ids.
    pub instance: String,
    pub clock: Clock,
    pub metrics: Metrics,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts")
            .field("settings", &self.settings)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl<S: ChatStore> Chat<S> {
    pub fn new(store: S, parts: Parts) -> Result<Self, KitError> {
        let hub = parts.realtime.hub().ok_or_else(|| {
            KitError::Other("chat needs redis for its hub, which is not connected".into())
        })?;
        Ok(Self {
            store,
            sends: RateLimiter::new(parts.live.redis().clone(), SEND_SCOPE),
            live: parts.live,
            hub,
            realtime: parts.realtime,
            limits: Limits {
                max_bytes: parts.settings.max_message_bytes as usize,
                bucket: parts.bucket,
            },
            settings: parts.settings,
            instance: parts.instance,
            clock: parts.clock,
            metrics: parts.metrics,
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    fn user(caller: &Caller) -> Result<UserId, ChatError> {
        Ok(UserId::parse("token subject", &caller.user_id)?)
    }

    /// The conversation, if `caller` takes part in it; a missing one is refused the same way,
    /// so nobody learns which ids exist.
    pub async fn participant(
        &self,
        caller: &Caller,
        id: ConversationId,
    ) -> Result<Conversation, ChatError> {
        match self.store.conversation(id).await? {
            Some(c) if c.admits(caller) => Ok(c),
            _ => Err(ChatError::NotAParticipant {
                user: caller.user_id.clone(),
                conversation: id,
            }),
        }
    }

    /// Publishes a live event after its change committed. A failed publication is logged, not
    /// returned: the change is stored, and subscribers get it from the store (at the next
    /// message's seq hole, or when they resume).
    async fn publish<T: Serialize>(&self, conversation: ConversationId, kind: &str, payload: &T) {
        if let Err(e) = self.hub.publish(&topic(conversation), kind, payload).await {
            self.metrics.publish_failed();
            tracing::warn!(%conversation, kind, error = %e, "live chat event not published");
        }
    }

    #[tracing::instrument(skip(self), fields(user = %caller.user_id))]
    pub async fn create_direct(
        &self,
        caller: &Caller,
        other: &str,
    ) -> Result<(Conversation, bool), ChatError> {
        let me = Self::user(caller)?;
        let other = UserId::parse("other_user_id", other)?;
        if other == me {
            return Err(InputError::new(
                "other_user_id",
                "is the caller; a DIRECT conversation needs two users",
            )
            .into());
        }
        let now = self.now();
        let new = NewConversation {
            id: ConversationId::new(),
            kind: ConversationKind::Direct,
            name: None,
            direct_key: Some(direct_key(&me, &other)),
            created_by: me.clone(),
            members: vec![(me, MemberRole::Member), (other, MemberRole::Member)],
            created_at: now,
        };
        self.store.create_direct(&new).await
    }

    #[tracing::instrument(skip(self, member_ids), fields(user = %caller.user_id))]
    pub async fn create_group(
        &self,
        caller: &Caller,
        request_id: &str,
        name: &str,
        member_ids: &[String],
    ) -> Result<Conversation, ChatError> {
        let me = Self::user(caller)?;
        let name = parse_name("name", name)?;
        let mut members = vec![(me.clone(), MemberRole::Admin)];
        for id in member_ids {
            let user = UserId::parse("member_ids", id)?;
            if !members.iter().any(|(u, _)| *u == user) {
                members.push((user, MemberRole::Member));
            }
        }
        let max = self.settings.max_group_members;
        if members.len() > max as usize {
            return Err(InputError::new(
                "member_ids",
                format!(
                    "a group has at most {max} members (chat.maxGroupMembers) with its creator; {} were named",
                    members.len()
                ),
            )
            .into());
        }
        let body = composite(
            &std::iter::once(name.as_str())
                .chain(members.iter().map(|(u, _)| u.as_str()))
                .collect::<Vec<_>>(),
        );
        let key = idempotency::Key::new(
            crate::domain::SERVICE,
            "CreateGroup",
            me.as_str(),
            request_id,
            body.as_bytes(),
        )?;
        let new = NewConversation {
            id: ConversationId::new(),
            kind: ConversationKind::Group,
            name: Some(name),
            created_by: me,
            members,
            direct_key: None,
            created_at: self.now(),
        };
        self.store.create(&key, &new).await
    }

    #[tracing::instrument(skip(self), fields(user = %caller.user_id))]
    pub async fn create_support(
        &self,
        caller: &Caller,
        request_id: &str,
        name: &str,
    ) -> Result<Conversation, ChatError> {
        let me = Self::user(caller)?;
        let name = parse_name("name", name)?;
        let key = idempotency::Key::new(
            crate::domain::SERVICE,
            "CreateSupport",
            me.as_str(),
            request_id,
            name.as_bytes(),
        )?;
        let new = NewConversation {
            id: ConversationId::new(),
            kind: ConversationKind::Support,
            name: Some(name),
            created_by: me.clone(),
            members: vec![(me, MemberRole::Admin)],
            direct_key: None,
            created_at: self.now(),
        };
        self.store.create(&key, &new).await
    }

    async fn group_of(
        &self,
        caller: &Caller,
        id: ConversationId,
    ) -> Result<Conversation, ChatError> {
        let c = self.participant(caller, id).await?;
        if c.kind != ConversationKind::Group {
            return Err(ChatError::NotAGroup(id));
        }
        Ok(c)
    }

    /// The prologue of a membership change: the caller, the group and the member, parsed and
    /// loaded, refused unless the caller is an admin of the group — or removes themself
    /// (`self_allowed`), since anyone may leave.
    async fn member_change(
        &self,
        caller: &Caller,
        conversation: &str,
        user: &str,
        self_allowed: bool,
    ) -> Result<(UserId, ConversationId, UserId, Conversation), ChatError> {
        let me = Self::user(caller)?;
        let id = ConversationId::parse("conversation_id", conversation)?;
        let user = UserId::parse("user_id", user)?;
        let c = self.group_of(caller, id).await?;
        let leaving = self_allowed && user == me;
        if !leaving && !c.is_admin(me.as_str()) {
            return Err(ChatError::NotAnAdmin {
                user: me.to_string(),
                conversation: id,
            });
        }
        Ok((me, id, user, c))
    }

    #[tracing::instrument(skip(self), fields(user = %caller.user_id))]
    pub async fn add_member(
        &self,
        caller: &Caller,
        conversation: &str,
        user: &str,
    ) -> Result<Conversation, ChatError> {
        let (me, id, user, _) = self
            .member_change(caller, conversation, user, false)
            .await?;
        let note = Content::system(format!("{me} added {user}"));
        let draft = Draft {
            sender: &me,
            content: &note,
            at: self.now(),
        };
        let added = self
            .store
            .add_member(id, &user, self.settings.max_group_members, draft)
            .await?;
        if let Some(m) = added {
            self.publish(id, frames::MESSAGE, &m).await;
        }
        self.participant(caller, id).await
    }

    #[tracing::instrument(skip(self), fields(user = %caller.user_id))]
    pub async fn remove_member(
        &self,
        caller: &Caller,
        conversation: &str,
        user: &str,
    ) -> Result<Conversation, ChatError> {
        let (me, id, user, c) = self.member_change(caller, conversation, user, true).await?;
        let text = if user == me {
            format!("{me} left")
        } else {
            format!("{me} removed {user}")
        };
        let note = Content::system(text);
        let draft = Draft {
            sender: &me,
            content: &note,
            at: self.now(),
        };
        if let Some(m) = self.store.remove_member(id, &user, draft).await? {
            self.publish(id, frames::MESSAGE, &m).await;
        }
        // Whoever left may no longer read the conversation: answer with what was stored.
        Ok(self.store.conversation(id).await?.unwrap_or(c))
    }

    pub async fn conversation(
        &self,
        caller: &Caller,
        conversation: &str,
    ) -> Result<Conversation, ChatError> {
        let id = ConversationId::parse("conversation_id", conversation)?;
        self.participant(caller, id).await
    }

    pub async fn list_conversations(
        &self,
        caller: &Caller,
        after: &str,
        limit: u32,
    ) -> Result<Vec<(Conversation, u64)>, ChatError> {
        let after = if after.is_empty() {
            None
        } else {
            Some(ConversationId::parse("after", after)?)
        };
        let limit = page_limit("limit", limit, MAX_CONVERSATION_PAGE)?;
        self.store
            .conversations_of(&caller.user_id, after, limit)
            .await
    }

    pub async fn unread_counts(
        &self,
        caller: &Caller,
    ) -> Result<Vec<(ConversationId, u64)>, ChatError> {
        self.store.unread_counts(&caller.user_id).await
    }

    /// Sends a message: checked, within the user's rate, stored once per request id with its
    /// event, then published (a replay is published again; subscribers drop the duplicate by
    /// its seq).
    #[tracing::instrument(skip(self, text, metadata), fields(user = %caller.user_id))]
    pub async fn send(
        &self,
        caller: &Caller,
        request_id: &str,
        conversation: &str,
        kind: MessageKind,
        text: &str,
        metadata: Metadata,
    ) -> Result<Message, ChatError> {
        let me = Self::user(caller)?;
        let id = ConversationId::parse("conversation_id", conversation)?;
        let content = Content::new(kind, text, metadata, &self.limits)?;
        let body = serde_json::to_string(content.metadata())
            .map_err(|e| KitError::Other(format!("cannot encode metadata: {e}")))?;
        let key = idempotency::Key::new(
            crate::domain::SERVICE,
            "SendMessage",
            me.as_str(),
            request_id,
            composite(&[&id.to_string(), kind.as_str(), text, &body]).as_bytes(),
        )?;
        let rate = RateLimit {
            burst: self.settings.send_burst,
            interval: Duration::from_millis(u64::from(self.settings.send_interval_ms)),
        };
        self.sends.check(me.as_str(), rate).await??;
        let c = self.participant(caller, id).await?;
        let join = c.member(me.as_str()).is_none();
        let draft = Draft {
            sender: &me,
            content: &content,
            at: self.now(),
        };
        let message = self.store.send(&key, &c, draft, join).await?;
        self.metrics.sent(kind);
        self.publish(id, frames::MESSAGE, &message).await;
        Ok(message)
    }

    async fn own_message(
        &self,
        caller: &Caller,
        conversation: &str,
        message: &str,
    ) -> Result<(ConversationId, Message), ChatError> {
        let id = ConversationId::parse("conversation_id", conversation)?;
        let message_id = MessageId::parse("message_id", message)?;
        self.participant(caller, id).await?;
        let m = self
            .store
            .message(id, message_id)
            .await?
            .ok_or(ChatError::MessageNotFound {
                conversation: id,
                message: message_id,
            })?;
        Ok((id, m))
    }

    #[tracing::instrument(skip(self, text), fields(user = %caller.user_id))]
    pub async fn edit(
        &self,
        caller: &Caller,
        conversation: &str,
        message: &str,
        text: &str,
    ) -> Result<Message, ChatError> {
        // The kind-independent checks first, before any I/O; TEXT's "not empty" needs the
        // message's type.
        check_text(MessageKind::System, text, &self.limits)?;
        let (id, m) = self.own_message(caller, conversation, message).await?;
        check_text(m.kind, text, &self.limits)?;
        let now = self.now();
        let window = chrono::Duration::seconds(i64::from(self.settings.edit_window_seconds));
        check_edit(&m, &caller.user_id, now, window)?;
        let edited = self
            .store
            .edit(id, m.id, text, now)
            .await?
            .ok_or(EditRefusal::Deleted { id: m.id, at: now })?;
        self.publish(id, frames::UPDATED, &edited).await;
        Ok(edited)
    }

    #[tracing::instrument(skip(self), fields(user = %caller.user_id))]
    pub async fn delete(
        &self,
        caller: &Caller,
        conversation: &str,
        message: &str,
    ) -> Result<Message, ChatError> {
        let (id, m) = self.own_message(caller, conversation, message).await?;
        if m.kind == MessageKind::System || m.sender_id.as_str() != caller.user_id {
            return Err(EditRefusal::NotTheSender(m.id).into());
        }
        if m.deleted_at.is_some() {
            return Ok(m);
        }
        let deleted = self.store.delete(id, m.id, self.now()).await?.unwrap_or(m);
        self.publish(id, frames::UPDATED, &deleted).await;
        Ok(deleted)
    }

    pub async fn history(
        &self,
        caller: &Caller,
        conversation: &str,
        before: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<Message>, ChatError> {
        let id = ConversationId::parse("conversation_id", conversation)?;
        let before = MessageId::parse_opt("before", before)?;
        let after = MessageId::parse_opt("after", after)?;
        let page = match (before, after) {
            (Some(_), Some(_)) => {
                return Err(InputError::new("before", "set before or after, not both").into());
            }
            (Some(b), None) => Page::Before(b),
            (None, Some(a)) => Page::After(a),
            (None, None) => Page::Latest,
        };
        let limit = if limit == 0 {
            self.settings.history_page_limit
        } else {
            page_limit("limit", limit, self.settings.history_page_limit)?
        };
        self.participant(caller, id).await?;
        self.store.history(id, page, limit).await
    }

    pub async fn mark(
        &self,
        caller: &Caller,
        conversation: &str,
        delivered: &str,
        read: &str,
    ) -> Result<Receipt, ChatError> {
        let me = Self::user(caller)?;
        let id = ConversationId::parse("conversation_id", conversation)?;
        let delivered = MessageId::parse_opt("delivered_up_to", delivered)?;
        let read = MessageId::parse_opt("read_up_to", read)?;
        if delivered.is_none() && read.is_none() {
            return Err(
                InputError::new("read_up_to", "set delivered_up_to, read_up_to or both").into(),
            );
        }
        self.participant(caller, id).await?;
        let markers = self
            .store
            .mark(id, &me, delivered, read, self.now())
            .await?
            .map_err(|field| {
                InputError::new(field, format!("is not a message of conversation {id}"))
            })?;
        let receipt = Receipt {
            conversation_id: id,
            user_id: me,
            markers,
        };
        self.publish(id, frames::RECEIPT, &receipt).await;
        Ok(receipt)
    }

    pub async fn receipts(
        &self,
        caller: &Caller,
        conversation: &str,
    ) -> Result<Vec<Receipt>, ChatError> {
        let id = ConversationId::parse("conversation_id", conversation)?;
        self.participant(caller, id).await?;
        self.store.receipts(id).await
    }

    pub async fn set_typing(
        &self,
        caller: &Caller,
        conversation: &str,
        typing: bool,
    ) -> Result<(), ChatError> {
        let me = Self::user(caller)?;
        let id = ConversationId::parse("conversation_id", conversation)?;
        self.participant(caller, id).await?;
        let ttl = Duration::from_secs(u64::from(self.settings.typing_ttl_seconds));
        self.live
            .set_typing(id, &me, typing, ttl, self.now())
            .await?;
        let event = Typing {
            conversation_id: id,
            user_id: me,
            typing,
        };
        self.publish(id, frames::TYPING, &event).await;
        Ok(())
    }

    pub async fn typing(
        &self,
        caller: &Caller,
        conversation: &str,
    ) -> Result<Vec<UserId>, ChatError> {
        let id = ConversationId::parse("conversation_id", conversation)?;
        self.participant(caller, id).await?;
        Ok(self.live.typing(id, self.now()).await?)
    }

    pub async fn presence(&self, users: &[String]) -> Result<Vec<Presence>, ChatError> {
        if users.is_empty() || users.len() > MAX_PRESENCE_USERS {
            return Err(InputError::new(
                "user_ids",
                format!(
                    "name 1 to {MAX_PRESENCE_USERS} users; {} were named",
                    users.len()
                ),
            )
            .into());
        }
        let users = users
            .iter()
            .map(|u| UserId::parse("user_ids", u))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.live.presence(&users, self.now()).await?)
    }

    /// Opens `conversation`'s feed for `caller` from after message `after` (empty: from now).
    pub async fn feed(
        self: &Arc<Self>,
        caller: &Caller,
        conversation: &str,
        after: &str,
    ) -> Result<Feed<S>, ChatError> {
        let id = ConversationId::parse("conversation_id", conversation)?;
        let after = MessageId::parse_opt("after", after)?;
        self.participant(caller, id).await?;
        Feed::open(self.clone(), id, after).await
    }

    /// Marks `user` online (on every replica) until the returned guard is dropped: one
    /// connection of theirs, refreshed every third of `chat.presenceTtlSeconds` so that a
    /// replica that dies stops counting within that time.
    pub fn online(&self, user: &str) -> Online {
        let stop = CancellationToken::new();
        let (live, clock) = (self.live.clone(), self.clock.clone());
        let user = user.to_owned();
        let connection = format!("{}:{}", self.instance, Uuid::new_v4().simple());
        let ttl = Duration::from_secs(u64::from(self.settings.presence_ttl_seconds));
        let done = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(ttl / 3);
            loop {
                tokio::select! {
                    () = done.cancelled() => break,
                    _ = tick.tick() => {
                        if let Err(e) = live.connected(&user, &connection, ttl, clock()).await {
                            tracing::warn!(%user, error = %e, "presence heartbeat failed");
                        }
                    }
                }
            }
            if let Err(e) = live.disconnected(&user, &connection, clock()).await {
                tracing::warn!(%user, error = %e, "presence not cleared; it expires with its ttl");
            }
        });
        Online { stop }
    }
}

/// Keeps one connection of a user online while held.
#[derive(Debug)]
pub struct Online {
    stop: CancellationToken,
}

impl Drop for Online {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn page_limit(field: &'static str, limit: u32, max: u32) -> Result<u32, InputError> {
    match limit {
        0 => Ok(max),
        n if n <= max => Ok(n),
        n => Err(InputError::new(
            field,
            format!("{n} is above the maximum of {max}"),
        )),
    }
}
