//! Livestream's use cases over a [`StreamStore`] (PostgreSQL: streams, comments, purchases),
//! [`Live`] (Redis: viewer figures) and an [`AnalyticsSource`] (ClickHouse: a stream's
//! analytics), with the replica's realtime hub for pushes to viewers. The caller comes from the token, every input is parsed before any I/O, only a
//! stream's seller changes it, and pushes are published after the change committed.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::json;
use titan_kit::{
    Clock, ErrorCode, KitError, ServiceError,
    auth::{Caller, NotAService},
    idempotency::{self, IdempotencyError, composite},
    money::Money,
    objects::ObjectKey,
    ratelimit::{RateLimit, RateLimited, RateLimiter},
    realtime::Realtime,
};

use crate::{
    config::Settings,
    domain::{
        Comment, CommentId, CommentText, InputError, KeyHash, PageToken, ProductIds, SERVICE,
        Status, Stream, StreamId, StreamKey, Title, Transition, ViewerStats, WrongStatus,
        analytics::{Order, StreamAnalytics, ViewerMinutes, figures, minute_of},
        comment::TooManyPinned,
        input::scheduled_at,
        page_size,
        stream::next,
        topic,
        viewers::Reaction,
    },
    metrics::Metrics,
    store::redis::{COMMENT_SCOPE, Live, REACT_SCOPE},
};

/// The role that schedules and runs streams.
pub const SELLER_ROLE: &str = "seller";
/// Roles that read any stream's analytics (a seller reads its own).
pub const ANALYTICS_ROLES: &[&str] = &["analyst", "admin"];
/// A viewer's comments: a burst of 5, then one every 2 s, shared by every replica.
const COMMENT_RATE: RateLimit = RateLimit {
    burst: 5,
    interval: Duration::from_secs(2),
};
/// A viewer's likes and shares: a burst of 20, then 5 a second.
const REACT_RATE: RateLimit = RateLimit {
    burst: 20,
    interval: Duration::from_millis(200),
};
/// Streams per page when the caller does not say.
const STREAM_PAGE: u32 = 20;
/// Comments per page when the caller does not say.
const COMMENT_PAGE: u32 = 50;

#[derive(Debug, thiserror::Error)]
pub enum LivestreamError {
    #[error(transparent)]
    Invalid(#[from] InputError),
    #[error("only sellers (role \"seller\") schedule streams")]
    SellerOnly,
    #[error("user {user} is not the seller of stream {stream}")]
    NotTheSeller { stream: StreamId, user: String },
    #[error("user {user} is neither the seller of stream {stream} nor an analyst or admin")]
    NotAnAnalyst { stream: StreamId, user: String },
    #[error("stream {0} not found")]
    NotFound(StreamId),
    #[error("comment {comment} not found in stream {stream}")]
    CommentNotFound {
        stream: StreamId,
        comment: CommentId,
    },
    #[error(transparent)]
    WrongStatus(#[from] WrongStatus),
    #[error(transparent)]
    TooManyPinned(#[from] TooManyPinned),
    #[error("order {0} was recorded before with other details")]
    OrderConflict(String),
    #[error(transparent)]
    NotAService(#[from] NotAService),
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    #[error(transparent)]
    Kit(#[from] KitError),
}

titan_kit::datastore_errors!(LivestreamError);

impl ServiceError for LivestreamError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) => ErrorCode::InvalidArgument,
            Self::SellerOnly | Self::NotTheSeller { .. } | Self::NotAnAnalyst { .. } => {
                ErrorCode::PermissionDenied
            }
            Self::NotFound(_) | Self::CommentNotFound { .. } => ErrorCode::NotFound,
            Self::WrongStatus(_) | Self::TooManyPinned(_) | Self::OrderConflict(_) => {
                ErrorCode::FailedPrecondition
            }
            Self::NotAService(e) => e.code(),
            Self::RateLimited(e) => e.code(),
            Self::Idempotency(e) => e.code(),
            Self::Kit(e) => e.code(),
        }
    }

    fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Invalid(_) => Some("INVALID_ARGUMENT"),
            Self::SellerOnly => Some("SELLER_ONLY"),
            Self::NotTheSeller { .. } => Some("NOT_THE_SELLER"),
            Self::NotAnAnalyst { .. } => Some("NOT_AN_ANALYST"),
            Self::NotFound(_) => Some("STREAM_NOT_FOUND"),
            Self::CommentNotFound { .. } => Some("COMMENT_NOT_FOUND"),
            Self::WrongStatus(_) => Some("WRONG_STATUS"),
            Self::TooManyPinned(_) => Some("TOO_MANY_PINNED"),
            Self::OrderConflict(_) => Some("ORDER_CONFLICT"),
            Self::NotAService(e) => e.reason(),
            Self::RateLimited(e) => e.reason(),
            Self::Idempotency(e) => e.reason(),
            Self::Kit(_) => None,
        }
    }
}

pub type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, LivestreamError>> + Send + 'a>>;

/// A stream about to be scheduled.
#[derive(Debug, Clone)]
pub struct NewStream {
    pub id: StreamId,
    pub seller_id: String,
    pub title: Title,
    pub scheduled_at: DateTime<Utc>,
    pub key: KeyHash,
}

/// How a change finds its stream: by id, or by the key nginx forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Id(StreamId),
    Key(KeyHash),
}

/// What a change writes; the store clears the key when the status leaves SCHEDULED/LIVE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Edit {
        title: Option<Title>,
        scheduled_at: Option<DateTime<Utc>>,
    },
    Rotate(KeyHash),
    Status {
        to: Status,
        at: DateTime<Utc>,
    },
    Featured(ProductIds),
    Recording(String),
}

/// Decides the change from the locked stream: `Ok(None)` changes nothing.
pub type Decide<'a> =
    Box<dyn FnOnce(&Stream) -> Result<Option<Change>, LivestreamError> + Send + 'a>;

/// The stream after a change, and whether the change was a replay of an earlier call.
#[derive(Debug, Clone)]
pub struct Changed {
    pub stream: Stream,
    pub replayed: bool,
}

/// A page of streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamQuery {
    pub seller_id: Option<String>,
    pub status: Option<Status>,
    pub before: Option<uuid::Uuid>,
    pub limit: u32,
}

/// A page of comments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommentQuery {
    pub stream: StreamId,
    pub pinned_only: bool,
    pub before: Option<uuid::Uuid>,
    pub limit: u32,
}

/// A purchase made in a stream, as checkout reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Purchase {
    pub order_id: String,
    /// The buyer (named `user_id` in the event, as `flashsale.purchased` does).
    pub user_id: String,
    pub stream_id: StreamId,
    pub seller_id: String,
    pub product_id: String,
    pub quantity: u32,
    pub total: Money,
    pub purchased_at: DateTime<Utc>,
}

/// The most items of one in-stream purchase.
pub const MAX_QUANTITY: u32 = 10_000;
/// The largest total of one in-stream purchase, in minor units.
pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000;

/// A purchase as checkout reports it, before it is parsed.
#[derive(Debug, Clone, Copy)]
pub struct PurchaseInput<'a> {
    pub stream_id: &'a str,
    pub order_id: &'a str,
    pub buyer_id: &'a str,
    pub product_id: &'a str,
    pub quantity: u32,
    pub amount_minor: i64,
    pub currency: &'a str,
}

/// Streams, comments and purchases, with their idempotency keys and events.
pub trait StreamStore: Send + Sync + 'static {
    /// Stores a new stream, or returns the one its request id made before (`false`).
    fn schedule<'a>(
        &'a self,
        key: &'a idempotency::Key,
        new: &'a NewStream,
    ) -> Fut<'a, (Stream, bool)>;
    /// Locks the target stream, lets `decide` choose the change and writes it; `None` when
    /// no stream matches. With an idempotency key, a replay returns the stream unchanged.
    fn change<'a>(
        &'a self,
        target: Target,
        key: Option<&'a idempotency::Key>,
        decide: Decide<'a>,
    ) -> Fut<'a, Option<Changed>>;
    fn stream(&self, id: StreamId) -> Fut<'_, Option<Stream>>;
    fn streams<'a>(&'a self, query: &'a StreamQuery) -> Fut<'a, Vec<Stream>>;
    /// Stores a comment, or returns the one its request id stored before (`false`).
    fn comment<'a>(
        &'a self,
        key: &'a idempotency::Key,
        comment: &'a Comment,
    ) -> Fut<'a, (Comment, bool)>;
    fn comments(&self, query: CommentQuery) -> Fut<'_, Vec<Comment>>;
    /// Pins (at `at`, at most `max` at once) or unpins a comment under the stream's lock.
    fn pin(
        &self,
        stream: StreamId,
        comment: CommentId,
        pin: Option<DateTime<Utc>>,
        max: u32,
    ) -> Fut<'_, Option<Comment>>;
    /// Stores the purchase and its `livestream.purchased` event; `false` when the same order
    /// was stored before, [`LivestreamError::OrderConflict`] when it differed.
    fn purchase<'a>(&'a self, purchase: &'a Purchase) -> Fut<'a, bool>;
    /// Emits `livestream.watched` for analytics.
    fn watched<'a>(&'a self, watched: &'a Watched) -> Fut<'a, ()>;
}

/// A viewer watched a minute of a stream: the `livestream.watched` event, emitted on the
/// viewer's first heartbeat in each minute since the stream started (analytics ingests it
/// into `analytics_events`, where [`AnalyticsSource`] reads it back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Watched {
    pub stream_id: StreamId,
    pub user_id: String,
    /// Whole minutes since `started_at`, from 0.
    pub minute: u32,
    pub watched_at: DateTime<Utc>,
}

/// What analytics holds of one stream, from its first day to its last.
pub trait AnalyticsSource: Send + Sync + 'static {
    /// The minutes each viewer watched and the stream's orders, from the events of days
    /// `from..=to`.
    fn rows(
        &self,
        stream: StreamId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Fut<'_, (Vec<ViewerMinutes>, Vec<Order>)>;
}

/// What the RTMP server is answered when a publisher arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Publish under this stream's id.
    Admitted(StreamId),
    /// Drop the publisher; the reason is logged, never sent to the encoder.
    Refused(String),
}

/// The service's use cases.
pub struct Livestream<S> {
    store: S,
    live: Live,
    analytics: Arc<dyn AnalyticsSource>,
    realtime: Realtime,
    comments: RateLimiter,
    reactions: RateLimiter,
    settings: Settings,
    clock: Clock,
    metrics: Metrics,
}

impl<S> std::fmt::Debug for Livestream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Livestream").finish_non_exhaustive()
    }
}

/// What a [`Livestream`] is built from besides its store.
pub struct Parts {
    pub live: Live,
    pub analytics: Arc<dyn AnalyticsSource>,
    pub realtime: Realtime,
    pub settings: Settings,
    pub clock: Clock,
    pub metrics: Metrics,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn page<T>(mut items: Vec<T>, limit: u32, id: impl Fn(&T) -> String) -> (Vec<T>, String) {
    let next = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(id).unwrap_or_default()
    } else {
        String::new()
    };
    (items, next)
}

fn owned_by(stream: &Stream, caller: &Caller) -> Result<(), LivestreamError> {
    if stream.seller_id == caller.user_id {
        Ok(())
    } else {
        Err(LivestreamError::NotTheSeller {
            stream: stream.id,
            user: caller.user_id.clone(),
        })
    }
}

/// The change a transition makes, or `None` for a repeat that changes nothing.
fn status_change(
    stream: &Stream,
    transition: Transition,
    at: DateTime<Utc>,
) -> Result<Option<Change>, LivestreamError> {
    Ok(next(stream.id, stream.status, transition)?.map(|to| Change::Status { to, at }))
}

impl<S: StreamStore> Livestream<S> {
    pub fn new(store: S, parts: Parts) -> Self {
        let redis = parts.live.redis();
        Self {
            store,
            comments: RateLimiter::new(redis.clone(), COMMENT_SCOPE),
            reactions: RateLimiter::new(redis, REACT_SCOPE),
            live: parts.live,
            analytics: parts.analytics,
            realtime: parts.realtime,
            settings: parts.settings,
            clock: parts.clock,
            metrics: parts.metrics,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// Pushes `payload` to the stream's viewers on every replica. A failed push is counted
    /// and logged, not returned: the change committed, and viewers read the state again
    /// after a reconnect.
    async fn push<T: Serialize + Sync>(&self, stream: StreamId, kind: &str, payload: &T) {
        let Some(hub) = self.realtime.hub() else {
            return;
        };
        if let Err(e) = hub.publish(&topic(stream), kind, payload).await {
            self.metrics.publish_failed();
            tracing::warn!(stream = %stream, kind, error = %e, "livestream push not published");
        }
    }

    async fn existing(&self, id: StreamId) -> Result<Stream, LivestreamError> {
        self.store
            .stream(id)
            .await?
            .ok_or(LivestreamError::NotFound(id))
    }

    async fn change_by_id(
        &self,
        id: StreamId,
        key: Option<&idempotency::Key>,
        decide: Decide<'_>,
    ) -> Result<Changed, LivestreamError> {
        self.store
            .change(Target::Id(id), key, decide)
            .await?
            .ok_or(LivestreamError::NotFound(id))
    }

    /// Schedules a stream of the caller; the key is `None` on a replay.
    #[tracing::instrument(skip(self, caller, title))]
    pub async fn schedule(
        &self,
        caller: &Caller,
        request_id: &str,
        title: &str,
        at: Option<DateTime<Utc>>,
    ) -> Result<(Stream, Option<StreamKey>), LivestreamError> {
        if !caller.has_role(SELLER_ROLE) {
            return Err(LivestreamError::SellerOnly);
        }
        let title = Title::parse("title", title)?;
        let at = at.ok_or_else(|| InputError::new("scheduled_at", "is required"))?;
        let at = scheduled_at("scheduled_at", at, self.now())?;
        let key = idempotency::Key::new(
            SERVICE,
            "ScheduleStream",
            &caller.user_id,
            request_id,
            composite(&[title.as_str(), &at.to_rfc3339()]).as_bytes(),
        )?;
        let stream_key = StreamKey::generate(self.settings.stream_key_bytes);
        let new = NewStream {
            id: StreamId::generate(),
            seller_id: caller.user_id.clone(),
            title,
            scheduled_at: at,
            key: stream_key.hash(),
        };
        let (stream, fresh) = self.store.schedule(&key, &new).await?;
        Ok((stream, fresh.then_some(stream_key)))
    }

    /// Edits a SCHEDULED stream of the caller.
    pub async fn update(
        &self,
        caller: &Caller,
        id: &str,
        title: &str,
        at: Option<DateTime<Utc>>,
    ) -> Result<Stream, LivestreamError> {
        let id = StreamId::parse("stream_id", id)?;
        let title = (!title.is_empty())
            .then(|| Title::parse("title", title))
            .transpose()?;
        let at = at
            .map(|at| scheduled_at("scheduled_at", at, self.now()))
            .transpose()?;
        if title.is_none() && at.is_none() {
            return Err(InputError::new("title", "set title or scheduled_at to change").into());
        }
        let caller = caller.clone();
        let changed = self
            .change_by_id(
                id,
                None,
                Box::new(move |s| {
                    owned_by(s, &caller)?;
                    next(s.id, s.status, Transition::Edit)?;
                    Ok(Some(Change::Edit {
                        title,
                        scheduled_at: at,
                    }))
                }),
            )
            .await?;
        Ok(changed.stream)
    }

    /// Cancels a SCHEDULED stream of the caller (a repeat changes nothing).
    pub async fn cancel(&self, caller: &Caller, id: &str) -> Result<Stream, LivestreamError> {
        let id = StreamId::parse("stream_id", id)?;
        let caller = caller.clone();
        let now = self.now();
        let changed = self
            .change_by_id(
                id,
                None,
                Box::new(move |s| {
                    owned_by(s, &caller)?;
                    status_change(s, Transition::Cancel, now)
                }),
            )
            .await?;
        self.push(id, "status", &status_frame(&changed.stream))
            .await;
        Ok(changed.stream)
    }

    /// Gives a SCHEDULED stream of the caller a new key; `None` on a replay.
    pub async fn rotate(
        &self,
        caller: &Caller,
        request_id: &str,
        id: &str,
    ) -> Result<Option<StreamKey>, LivestreamError> {
        let id = StreamId::parse("stream_id", id)?;
        let key = idempotency::Key::new(
            SERVICE,
            "RotateStreamKey",
            &caller.user_id,
            request_id,
            id.to_string().as_bytes(),
        )?;
        let stream_key = StreamKey::generate(self.settings.stream_key_bytes);
        let hash = stream_key.hash();
        let owner = caller.clone();
        let changed = self
            .change_by_id(
                id,
                Some(&key),
                Box::new(move |s| {
                    owned_by(s, &owner)?;
                    next(s.id, s.status, Transition::Edit)?;
                    Ok(Some(Change::Rotate(hash)))
                }),
            )
            .await?;
        Ok((!changed.replayed).then_some(stream_key))
    }

    pub async fn get(&self, id: &str) -> Result<Stream, LivestreamError> {
        self.existing(StreamId::parse("stream_id", id)?).await
    }

    /// A page of streams, newest first, and the token of the next page.
    pub async fn list(
        &self,
        seller_id: &str,
        status: Option<Status>,
        size: u32,
        token: &str,
    ) -> Result<(Vec<Stream>, String), LivestreamError> {
        let seller_id = (!seller_id.is_empty())
            .then(|| titan_kit::input::ident("seller_id", seller_id).map(str::to_owned))
            .transpose()?;
        let limit = page_size("page_size", size, STREAM_PAGE)?;
        let before = PageToken::parse("page_token", token)?.0;
        let query = StreamQuery {
            seller_id,
            status,
            before,
            limit: limit + 1,
        };
        let streams = self.store.streams(&query).await?;
        Ok(page(streams, limit, |s| s.id.to_string()))
    }

    async fn live_stream(
        &self,
        id: StreamId,
        doing: Transition,
    ) -> Result<Stream, LivestreamError> {
        let stream = self.existing(id).await?;
        next(id, stream.status, doing)?;
        Ok(stream)
    }

    /// Counts the caller as watching a LIVE stream; the first heartbeat of the caller in each
    /// minute since the start emits `livestream.watched` for analytics.
    pub async fn heartbeat(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<ViewerStats, LivestreamError> {
        let id = StreamId::parse("stream_id", id)?;
        let stream = self.live_stream(id, Transition::Watch).await?;
        let now = self.now();
        let minute = stream.started_at.and_then(|start| minute_of(start, now));
        let (stats, new_minute) = self
            .live
            .heartbeat(
                id,
                &caller.user_id,
                now,
                minute,
                self.settings.viewer_ttl_seconds,
            )
            .await?;
        if let (true, Some(minute)) = (new_minute, minute) {
            let watched = Watched {
                stream_id: id,
                user_id: caller.user_id.clone(),
                minute,
                watched_at: now,
            };
            if let Err(e) = self.store.watched(&watched).await {
                // Let the next heartbeat report the minute instead of losing it; the viewer
                // retries this one on the error.
                if let Err(forget) = self.live.forget_minute(id, &caller.user_id).await {
                    tracing::warn!(stream = %id, error = %forget, "watched minute not forgotten");
                }
                return Err(e);
            }
        }
        self.metrics.heartbeat();
        Ok(stats)
    }

    /// A stream's analytics from ClickHouse: for its seller, or roles analyst and admin. A
    /// stream that never started has none.
    pub async fn analytics(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(Stream, StreamAnalytics), LivestreamError> {
        let id = StreamId::parse("stream_id", id)?;
        let stream = self.existing(id).await?;
        if stream.seller_id != caller.user_id && !caller.has_any_role(ANALYTICS_ROLES) {
            return Err(LivestreamError::NotAnAnalyst {
                stream: id,
                user: caller.user_id.clone(),
            });
        }
        let Some(started) = stream.started_at else {
            return Ok((stream, StreamAnalytics::default()));
        };
        // Purchases may come after the end, so the days run to today.
        let (viewers, orders) = self
            .analytics
            .rows(id, started.date_naive(), self.now().date_naive())
            .await?;
        Ok((stream, figures(&viewers, &orders)))
    }

    pub async fn stats(&self, id: &str) -> Result<ViewerStats, LivestreamError> {
        let id = StreamId::parse("stream_id", id)?;
        self.existing(id).await?;
        Ok(self
            .live
            .stats(id, self.now(), self.settings.viewer_ttl_seconds)
            .await?)
    }

    /// A like or a share of a LIVE stream by the caller.
    pub async fn react(
        &self,
        caller: &Caller,
        id: &str,
        reaction: Reaction,
    ) -> Result<ViewerStats, LivestreamError> {
        let id = StreamId::parse("stream_id", id)?;
        self.reactions
            .check_at(&caller.user_id, REACT_RATE, self.now().into())
            .await??;
        self.live_stream(id, Transition::Watch).await?;
        self.live.react(id, reaction).await?;
        Ok(self
            .live
            .stats(id, self.now(), self.settings.viewer_ttl_seconds)
            .await?)
    }

    /// Posts a comment on a LIVE stream and pushes it to the viewers (not on a replay).
    #[tracing::instrument(skip(self, caller, text))]
    pub async fn post_comment(
        &self,
        caller: &Caller,
        request_id: &str,
        id: &str,
        text: &str,
    ) -> Result<Comment, LivestreamError> {
        let id = StreamId::parse("stream_id", id)?;
        let text = CommentText::parse("text", text)?;
        let key = idempotency::Key::new(
            SERVICE,
            "PostComment",
            &caller.user_id,
            request_id,
            composite(&[&id.to_string(), text.as_str()]).as_bytes(),
        )?;
        self.comments
            .check_at(&caller.user_id, COMMENT_RATE, self.now().into())
            .await??;
        self.live_stream(id, Transition::Comment).await?;
        let comment = Comment {
            id: CommentId::generate(),
            stream_id: id,
            user_id: caller.user_id.clone(),
            text: text.as_str().to_owned(),
            created_at: self.now(),
            pinned_at: None,
        };
        let (comment, fresh) = self.store.comment(&key, &comment).await?;
        if fresh {
            self.metrics.comment();
            self.push(id, "comment", &comment).await;
        }
        Ok(comment)
    }

    /// A page of a stream's comments, newest first.
    pub async fn comments(
        &self,
        id: &str,
        pinned_only: bool,
        size: u32,
        token: &str,
    ) -> Result<(Vec<Comment>, String), LivestreamError> {
        let stream = StreamId::parse("stream_id", id)?;
        let limit = page_size("page_size", size, COMMENT_PAGE)?;
        let before = PageToken::parse("page_token", token)?.0;
        self.existing(stream).await?;
        let comments = self
            .store
            .comments(CommentQuery {
                stream,
                pinned_only,
                before,
                limit: limit + 1,
            })
            .await?;
        Ok(page(comments, limit, |c| c.id.to_string()))
    }

    /// Pins or unpins a comment of the caller's stream and pushes the change.
    pub async fn pin(
        &self,
        caller: &Caller,
        id: &str,
        comment: &str,
        pinned: bool,
    ) -> Result<Comment, LivestreamError> {
        let id = StreamId::parse("stream_id", id)?;
        let comment = CommentId::parse("comment_id", comment)?;
        owned_by(&self.existing(id).await?, caller)?;
        let pin = pinned.then(|| self.now());
        let c = self
            .store
            .pin(id, comment, pin, self.settings.max_pinned_comments)
            .await?
            .ok_or(LivestreamError::CommentNotFound {
                stream: id,
                comment,
            })?;
        self.push(id, if pinned { "pinned" } else { "unpinned" }, &c)
            .await;
        Ok(c)
    }

    /// Replaces the featured products of the caller's LIVE stream and pushes them.
    pub async fn feature(
        &self,
        caller: &Caller,
        id: &str,
        products: &[String],
    ) -> Result<Stream, LivestreamError> {
        let id = StreamId::parse("stream_id", id)?;
        let products = ProductIds::parse("product_ids", products)?;
        let caller = caller.clone();
        let changed = self
            .change_by_id(
                id,
                None,
                Box::new(move |s| {
                    owned_by(s, &caller)?;
                    next(s.id, s.status, Transition::Feature)?;
                    Ok(Some(Change::Featured(products)))
                }),
            )
            .await?;
        self.push(
            id,
            "featured",
            &json!({ "streamId": id, "productIds": changed.stream.featured.as_slice() }),
        )
        .await;
        Ok(changed.stream)
    }

    /// Records a purchase made in a stream that started; services only.
    pub async fn record_purchase(
        &self,
        caller: &Caller,
        input: PurchaseInput<'_>,
    ) -> Result<bool, LivestreamError> {
        caller.require_service(
            "RecordPurchase",
            "purchases are reported by checkout; buyers buy through it",
        )?;
        let PurchaseInput {
            stream_id,
            order_id,
            buyer_id,
            product_id,
            quantity,
            amount_minor,
            currency,
        } = input;
        let id = StreamId::parse("stream_id", stream_id)?;
        let order_id = titan_kit::input::ident("order_id", order_id)?.to_owned();
        let buyer = titan_kit::input::ident("buyer_id", buyer_id)?.to_owned();
        let product = titan_kit::input::ident("product_id", product_id)?.to_owned();
        if !(1..=MAX_QUANTITY).contains(&quantity) {
            return Err(InputError::new(
                "quantity",
                format!("{quantity} is not between 1 and {MAX_QUANTITY}"),
            )
            .into());
        }
        if !(1..=MAX_AMOUNT_MINOR).contains(&amount_minor) {
            return Err(InputError::new(
                "amount_minor",
                format!("{amount_minor} is not between 1 and {MAX_AMOUNT_MINOR}"),
            )
            .into());
        }
        let total = Money::parse(amount_minor, currency)
            .map_err(|e| InputError::new("currency", e.to_string()))?;
        let stream = self.existing(id).await?;
        next(id, stream.status, Transition::Sell)?;
        let purchase = Purchase {
            order_id,
            user_id: buyer,
            stream_id: id,
            seller_id: stream.seller_id,
            product_id: product,
            quantity,
            total,
            purchased_at: self.now(),
        };
        let recorded = self.store.purchase(&purchase).await?;
        if recorded {
            self.metrics.purchase();
        }
        Ok(recorded)
    }

    /// `on_publish`: a valid key of a SCHEDULED stream takes it LIVE; anything else is
    /// refused (a wrong key, a stream that ended or was cancelled, a second publisher).
    pub async fn on_publish(&self, app: &str, name: &str) -> Result<Admission, LivestreamError> {
        if app != crate::domain::rtmp::APP {
            return Ok(Admission::Refused(format!(
                "application {app:?} is not {:?}",
                crate::domain::rtmp::APP
            )));
        }
        let Some(hash) = KeyHash::of_presented(name) else {
            return Ok(Admission::Refused(
                "the stream name is not a stream key".into(),
            ));
        };
        let now = self.now();
        let changed = self
            .store
            .change(
                Target::Key(hash),
                None,
                Box::new(move |s| {
                    next(s.id, s.status, Transition::GoLive)?;
                    Ok(Some(Change::Status {
                        to: Status::Live,
                        at: now,
                    }))
                }),
            )
            .await;
        match changed {
            Ok(None) => Ok(Admission::Refused("no stream has this key".into())),
            Ok(Some(c)) => {
                self.push(c.stream.id, "status", &status_frame(&c.stream))
                    .await;
                Ok(Admission::Admitted(c.stream.id))
            }
            Err(LivestreamError::WrongStatus(e)) => Ok(Admission::Refused(e.to_string())),
            Err(e) => Err(e),
        }
    }

    /// `on_publish_done`: the publisher stopped, the stream ENDED and its key is revoked.
    /// `name` is the key the encoder published with or, after the rename, the stream's id.
    pub async fn on_publish_done(&self, name: &str) -> Result<Option<Stream>, LivestreamError> {
        let target = match KeyHash::of_presented(name) {
            Some(hash) => Target::Key(hash),
            None => Target::Id(StreamId::parse("name", name)?),
        };
        let now = self.now();
        let changed = self
            .store
            .change(
                target,
                None,
                Box::new(move |s| status_change(s, Transition::End, now)),
            )
            .await?;
        if let Some(c) = &changed {
            self.push(c.stream.id, "status", &status_frame(&c.stream))
                .await;
        }
        Ok(changed.map(|c| c.stream))
    }

    /// The recorder stored the stream's recording under `key`.
    pub async fn recorded(&self, id: &str, key: &str) -> Result<Stream, LivestreamError> {
        let id = StreamId::parse("name", id)?;
        let key = ObjectKey::parse(key).map_err(|e| InputError::new("key", e.to_string()))?;
        let url = key.as_str().to_owned();
        let changed = self
            .change_by_id(
                id,
                None,
                Box::new(move |s| {
                    next(s.id, s.status, Transition::Record)?;
                    Ok(Some(Change::Recording(url)))
                }),
            )
            .await?;
        Ok(changed.stream)
    }

    /// Checks that a viewer may open the stream's socket: the stream exists.
    pub async fn watchable(&self, id: &str) -> Result<Stream, LivestreamError> {
        self.get(id).await
    }
}

/// The `status` push: what a viewer's player needs to start or stop.
fn status_frame(s: &Stream) -> serde_json::Value {
    json!({ "streamId": s.id, "status": s.status.as_str() })
}
