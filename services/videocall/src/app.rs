//! Videocall's use cases over a [`CallStore`] (PostgreSQL) and the replica's hub: the caller
//! comes from the token, every input is parsed before any I/O, who may act is decided by the
//! domain, and each change is pushed to both parties' topics after it committed.

use std::{future::Future, pin::Pin};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::Value;
use titan_kit::{
    Clock, ErrorCode, KitError, ServiceError,
    auth::Caller,
    idempotency::{self, IdempotencyError, composite},
    input::ident,
    objects::{ObjectError, ObjectKey, ObjectStorage},
    realtime::Hub,
    turn,
};
use uuid::Uuid;

use crate::{
    config::Settings,
    domain::{
        Action, Call, CallKind, IllegalTransition, InputError, Media, NotAllowed, Party, SERVICE,
        Sample, SignalKind, Status, Summary,
        call::{check_callee, end_reason, reasons},
        ice, quality,
        recording::{
            self, Budget, ChunkRefused, Recording, RecordingType, TooLarge, UploadRefused,
        },
        signal, user_topic,
    },
    metrics::Metrics,
};

/// Frame types the service pushes to a user's sockets.
pub mod frames {
    /// A call of the user changed (its new state, as `GetCall` shows it without quality).
    pub const CALL: &str = "call";
    /// A signaling frame from the other party.
    pub const SIGNAL: &str = "signal";
    /// The user's place in the support queue.
    pub const QUEUE: &str = "queue";
}

/// Largest history page.
pub const MAX_PAGE: u32 = 100;
const DEFAULT_PAGE: u32 = 20;
/// Longest analytics range, in days.
pub const MAX_DAYS: i64 = 92;
/// Queued callers told their new place after each take (the rest learn it on the next).
const QUEUE_NOTICES: u32 = 100;
/// Overdue calls one sweep finishes; the next tick takes the rest.
const SWEEP_BATCH: u32 = 500;
/// What signaling, ICE servers and consent need.
pub const NEEDS_LIVE: &str = "only a RINGING or ACTIVE call may do this";
/// What quality reports need.
pub const NEEDS_ACTIVE: &str = "quality is reported only while the call is ACTIVE";
/// Longest reason a party gives for a failure.
const MAX_REASON: usize = 200;
/// Recordings one call may have: a few per party (a reconnect starts a new recorder), not an
/// unbounded list in every GetCall.
pub const MAX_RECORDINGS_PER_CALL: u32 = 20;
/// Recordings GetCall lists: all of them, as the store never holds more.
pub const MAX_RECORDINGS_LISTED: u32 = MAX_RECORDINGS_PER_CALL;
/// How long a recording's presigned URL in GetCall works: long enough to start a download or
/// a player, short enough that a leaked URL soon stops opening the recording.
pub const RECORDING_URL_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// Roles that read recordings' URLs besides the participants.
const RECORDING_READERS: &[&str] = &["admin"];

#[derive(Debug, thiserror::Error)]
pub enum VideocallError {
    #[error(transparent)]
    Invalid(#[from] InputError),
    #[error(transparent)]
    NotAllowed(#[from] NotAllowed),
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    /// The call is not in a status where this may be done (signaling, ICE servers, quality,
    /// consent); not a transition, so not [`Self::Illegal`].
    #[error("call {call} is {status}; {needs}")]
    NotLive {
        call: Uuid,
        status: Status,
        needs: &'static str,
    },
    #[error("call {0} does not exist")]
    NotFound(Uuid),
    #[error("user {user} is already in call {call}, which has not ended")]
    Busy { user: String, call: Uuid },
    #[error("only users with the role agent take calls from the support queue")]
    NotAnAgent,
    #[error("only the agent itself, admin or analyst may read agent {0}'s calls")]
    NotAnAnalyst(String),
    #[error("call {0} has its maximum of {max} quality samples", max = quality::MAX_SAMPLES_PER_CALL)]
    TooManyReports(Uuid),
    #[error("calls are not recorded in this cell (videocall.recordingAllowed is false)")]
    RecordingNotAllowed,
    #[error("call {call} is {status}; recordings are uploaded only while ACTIVE or once ENDED")]
    NotRecordable { call: Uuid, status: Status },
    #[error("call {call} is not recorded: the {party} has not consented")]
    ConsentMissing { call: Uuid, party: &'static str },
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
    #[error("call {0} has its maximum of {max} recordings", max = MAX_RECORDINGS_PER_CALL)]
    TooManyRecordings(Uuid),
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    #[error(transparent)]
    Kit(#[from] KitError),
}

titan_kit::datastore_errors!(VideocallError);

impl ServiceError for VideocallError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) => ErrorCode::InvalidArgument,
            Self::NotAllowed(_) | Self::NotAnAgent | Self::NotAnAnalyst(_) => {
                ErrorCode::PermissionDenied
            }
            Self::Illegal(_)
            | Self::NotLive { .. }
            | Self::Busy { .. }
            | Self::RecordingNotAllowed
            | Self::NotRecordable { .. }
            | Self::ConsentMissing { .. } => ErrorCode::FailedPrecondition,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::TooManyReports(_) | Self::TooLarge(_) | Self::TooManyRecordings(_) => {
                ErrorCode::ResourceExhausted
            }
            Self::Idempotency(e) => e.code(),
            Self::Kit(e) => e.code(),
        }
    }

    fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Invalid(_) => Some("INVALID_ARGUMENT"),
            Self::NotAllowed(NotAllowed::NotAParticipant { .. }) => Some("NOT_A_PARTICIPANT"),
            Self::NotAllowed(NotAllowed::NotTheCallee { .. }) => Some("NOT_THE_CALLEE"),
            Self::NotAllowed(NotAllowed::NotTheCaller { .. }) => Some("NOT_THE_CALLER"),
            Self::Illegal(_) => Some("ILLEGAL_TRANSITION"),
            Self::NotLive { .. } => Some("CALL_NOT_LIVE"),
            Self::NotFound(_) => Some("CALL_NOT_FOUND"),
            Self::Busy { .. } => Some("BUSY"),
            Self::NotAnAgent => Some("NOT_AN_AGENT"),
            Self::NotAnAnalyst(_) => Some("NOT_AN_ANALYST"),
            Self::TooManyReports(_) => Some("TOO_MANY_REPORTS"),
            Self::RecordingNotAllowed => Some("RECORDING_NOT_ALLOWED"),
            Self::NotRecordable { .. } => Some("CALL_NOT_RECORDABLE"),
            Self::ConsentMissing { .. } => Some("CONSENT_MISSING"),
            Self::TooLarge(_) => Some("TOO_LARGE"),
            Self::TooManyRecordings(_) => Some("TOO_MANY_RECORDINGS"),
            Self::Idempotency(e) => e.reason(),
            Self::Kit(_) => None,
        }
    }
}

impl From<UploadRefused> for VideocallError {
    fn from(e: UploadRefused) -> Self {
        match e {
            UploadRefused::NotAllowed(e) => e.into(),
            UploadRefused::Status { call, status } => Self::NotRecordable { call, status },
            UploadRefused::ConsentMissing { call, party } => Self::ConsentMissing { call, party },
        }
    }
}

impl From<ChunkRefused> for VideocallError {
    fn from(e: ChunkRefused) -> Self {
        match e {
            ChunkRefused::Invalid(e) => e.into(),
            ChunkRefused::TooLarge(e) => e.into(),
        }
    }
}

/// What the store trait's methods return: boxed, so the trait stays object-safe and simple.
pub type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, VideocallError>> + Send + 'a>>;

/// One guarded status change.
#[derive(Debug, Clone)]
pub struct Transition {
    pub call: Uuid,
    pub action: Action,
    /// The statuses it may leave from (the WHERE clause of its UPDATE).
    pub from: Vec<Status>,
    pub to: Status,
    pub at: DateTime<Utc>,
    pub end_reason: Option<String>,
    /// ANSWER: only while the ringing deadline is after `at`.
    pub before_deadline: bool,
    /// RING from the queue: the agent who becomes the callee.
    pub callee: Option<String>,
}

/// What storing a recording's row came to.
#[derive(Debug, Clone)]
pub enum AddedRecording {
    /// Stored now.
    New(Recording),
    /// The upload's key was committed meanwhile (a concurrent retry): its recording.
    Replay(Recording),
    /// The call no longer allows it (or has its maximum of recordings): the call as it is.
    Refused(Call),
}

/// One UTC day of an agent's calls.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentDay {
    pub day: NaiveDate,
    pub calls: u32,
    pub answered: u32,
    pub missed: u32,
    pub rejected: u32,
    pub total_wait_seconds: f64,
    pub ended: u32,
    pub total_duration_seconds: f64,
}

impl AgentDay {
    fn ratio(n: u32, d: u32) -> f64 {
        if d == 0 {
            0.0
        } else {
            f64::from(n) / f64::from(d)
        }
    }

    pub fn answer_rate(&self) -> f64 {
        Self::ratio(self.answered, self.calls)
    }

    pub fn missed_rate(&self) -> f64 {
        Self::ratio(self.missed, self.calls)
    }

    pub fn average_wait_seconds(&self) -> f64 {
        if self.answered == 0 {
            0.0
        } else {
            self.total_wait_seconds / f64::from(self.answered)
        }
    }

    pub fn average_duration_seconds(&self) -> f64 {
        if self.ended == 0 {
            0.0
        } else {
            self.total_duration_seconds / f64::from(self.ended)
        }
    }
}

/// Calls, the busy marks of their parties, quality samples and consent, with idempotency keys
/// and the outbox.
pub trait CallStore: Send + Sync + 'static {
    /// Stores `call` (RINGING, or INITIATED for the queue) and marks its parties busy, once
    /// per `key`; [`VideocallError::Busy`] when a party is in another call.
    fn create<'a>(
        &'a self,
        key: &'a idempotency::Key,
        call: &'a Call,
        ring_deadline: DateTime<Utc>,
    ) -> Fut<'a, Call>;
    /// The oldest queued call, rung to `agent` (marked busy), once per `key`.
    fn take_next<'a>(
        &'a self,
        key: &'a idempotency::Key,
        agent: &'a str,
        at: DateTime<Utc>,
        ring_deadline: DateTime<Utc>,
    ) -> Fut<'a, Option<Call>>;
    /// Runs `t` as one guarded UPDATE (once per `key` when given); a final status frees the
    /// parties and writes [`crate::domain::CALL_FINISHED`]. An UPDATE that matched nothing is
    /// [`VideocallError::Illegal`] with the status the call has.
    fn transition<'a>(
        &'a self,
        key: Option<&'a idempotency::Key>,
        t: &'a Transition,
    ) -> Fut<'a, Call>;
    fn call(&self, id: Uuid) -> Fut<'_, Option<Call>>;
    /// 1-based place of a queued call (0 when it is not queued).
    fn queue_position(&self, id: Uuid) -> Fut<'_, u32>;
    /// The first `limit` queued calls with their callers, in queue order.
    fn queue(&self, limit: u32) -> Fut<'_, Vec<(Uuid, String)>>;
    /// Calls due at `now` (at most `limit`) with their status: queued or ringing past their
    /// deadline, active for longer than `max_call`.
    fn due(
        &self,
        now: DateTime<Utc>,
        max_call: Duration,
        limit: u32,
    ) -> Fut<'_, Vec<(Uuid, Status)>>;
    /// Adds a sample of an ACTIVE call, once per `key`; returns the call's count.
    fn add_sample<'a>(
        &'a self,
        key: &'a idempotency::Key,
        call: Uuid,
        reporter: &'a str,
        sample: &'a Sample,
        at: DateTime<Utc>,
    ) -> Fut<'a, u32>;
    fn samples(&self, call: Uuid) -> Fut<'_, Vec<Sample>>;
    /// Sets or clears `party`'s consent of a RINGING or ACTIVE call, once per `key`.
    fn consent<'a>(
        &'a self,
        key: &'a idempotency::Key,
        call: Uuid,
        party: Party,
        at: Option<DateTime<Utc>>,
    ) -> Fut<'a, Call>;
    /// The recording a committed upload key stored; `Reused` when the id came with another
    /// call or type.
    fn recording_replay<'a>(&'a self, key: &'a idempotency::Key) -> Fut<'a, Option<Recording>>;
    /// Stores the row of a recording whose object is written, once per `key`, if its call is
    /// still ACTIVE or ENDED with both consents, `uploader` a participant, and fewer than
    /// [`MAX_RECORDINGS_PER_CALL`] recordings.
    fn add_recording<'a>(
        &'a self,
        key: &'a idempotency::Key,
        recording: &'a Recording,
    ) -> Fut<'a, AddedRecording>;
    /// A call's recordings, oldest first (at most [`MAX_RECORDINGS_LISTED`]).
    fn recordings(&self, call: Uuid) -> Fut<'_, Vec<Recording>>;
    /// `user`'s calls (as callee only when `agent`), ids below `before`, newest first.
    fn history<'a>(
        &'a self,
        user: &'a str,
        agent: bool,
        before: Option<Uuid>,
        limit: u32,
    ) -> Fut<'a, Vec<Call>>;
    /// `agent`'s calls per UTC day created in `[from, to)`.
    fn agent_days<'a>(
        &'a self,
        agent: &'a str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Fut<'a, Vec<AgentDay>>;
}

/// The STUN/TURN servers for one participant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IceServers {
    pub servers: Vec<IceServer>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// A call as pushed to a party's sockets.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallFrame<'a> {
    pub id: Uuid,
    pub caller_id: &'a str,
    pub callee_id: Option<&'a str>,
    #[serde(rename = "type")]
    pub kind: CallKind,
    pub media: Media,
    pub status: Status,
    pub end_reason: Option<&'a str>,
    pub duration_seconds: Option<u64>,
}

impl<'a> CallFrame<'a> {
    pub fn of(c: &'a Call) -> Self {
        Self {
            id: c.id,
            caller_id: &c.caller_id,
            callee_id: c.callee_id.as_deref(),
            kind: c.kind,
            media: c.media,
            status: c.status,
            end_reason: c.end_reason.as_deref(),
            duration_seconds: c.duration_seconds(),
        }
    }
}

/// The first message of an upload: which call, what type, under which request id.
#[derive(Debug, Clone)]
pub struct UploadHeader {
    pub request_id: String,
    pub call_id: String,
    pub content_type: String,
}

/// A recording as GetCall shows it: with a presigned URL for those who may play it.
#[derive(Debug, Clone)]
pub struct RecordingView {
    pub recording: Recording,
    /// Set for the participants and "admin"; expires after [`RECORDING_URL_TTL`].
    pub url: Option<String>,
    pub url_expires_at: Option<DateTime<Utc>>,
}

/// A signaling frame as relayed to the other party: the sender's `data` as it came.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignalFrame<'a> {
    pub call_id: Uuid,
    pub from: &'a str,
    pub kind: SignalKind,
    pub data: &'a Value,
}

/// What the app needs besides its store.
pub struct Parts {
    pub hub: Option<Hub>,
    pub settings: Settings,
    /// The secret shared with the cell's TURN server; without it only STUN is handed out.
    pub turn_secret: Option<SecretString>,
    /// The cell's bucket, where recordings go.
    pub objects: ObjectStorage,
    pub clock: Clock,
    pub metrics: Metrics,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The TURN secret stays out of logs.
        f.debug_struct("Parts")
            .field("settings", &self.settings)
            .field("turn_secret", &self.turn_secret.is_some())
            .finish_non_exhaustive()
    }
}

pub struct Videocall<S> {
    store: S,
    parts: Parts,
}

impl<S> std::fmt::Debug for Videocall<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Videocall").finish_non_exhaustive()
    }
}

/// Parses a call id field.
pub fn call_id(field: &str, s: &str) -> Result<Uuid, InputError> {
    if s.is_empty() {
        return Err(InputError::new(field, "is required"));
    }
    Uuid::parse_str(s).map_err(|_| InputError::new(field, format!("{s:?} is not a UUID")))
}

fn day(field: &str, s: &str) -> Result<NaiveDate, InputError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| InputError::new(field, format!("{s:?} is not a day like 2026-12-06")))
}

fn key(
    method: &'static str,
    caller: &Caller,
    request_id: &str,
    body: &[&str],
) -> Result<idempotency::Key, VideocallError> {
    Ok(idempotency::Key::new(
        SERVICE,
        method,
        &caller.user_id,
        request_id,
        composite(body).as_bytes(),
    )?)
}

impl<S: CallStore> Videocall<S> {
    pub fn new(store: S, parts: Parts) -> Self {
        Self { store, parts }
    }

    pub fn settings(&self) -> &Settings {
        &self.parts.settings
    }

    fn now(&self) -> DateTime<Utc> {
        (self.parts.clock)()
    }

    fn ring_timeout(&self) -> Duration {
        Duration::seconds(i64::from(self.parts.settings.ring_timeout_seconds))
    }

    fn max_call(&self) -> Duration {
        Duration::seconds(i64::from(self.parts.settings.max_call_seconds))
    }

    async fn load(&self, id: Uuid) -> Result<Call, VideocallError> {
        self.store
            .call(id)
            .await?
            .ok_or(VideocallError::NotFound(id))
    }

    /// Places a call; a SUPPORT call without a callee waits in the queue. Answers the call and
    /// its queue position (0 when it rings at once).
    #[tracing::instrument(skip(self, caller), fields(user = %caller.user_id))]
    pub async fn initiate(
        &self,
        caller: &Caller,
        request_id: &str,
        callee: &str,
        kind: CallKind,
        media: Media,
    ) -> Result<(Call, u32), VideocallError> {
        let callee = if callee.is_empty() {
            None
        } else {
            Some(ident("callee_id", callee)?)
        };
        check_callee(&caller.user_id, kind, callee)?;
        let key = key(
            "InitiateCall",
            caller,
            request_id,
            &[callee.unwrap_or_default(), kind.as_str(), media.as_str()],
        )?;
        let now = self.now();
        let call = Call {
            id: Uuid::now_v7(),
            caller_id: caller.user_id.clone(),
            callee_id: callee.map(str::to_owned),
            kind,
            media,
            status: if callee.is_some() {
                Status::Ringing
            } else {
                Status::Initiated
            },
            created_at: now,
            ringing_at: callee.map(|_| now),
            answered_at: None,
            ended_at: None,
            end_reason: None,
            caller_consent_at: None,
            callee_consent_at: None,
        };
        let stored = self
            .store
            .create(&key, &call, now + self.ring_timeout())
            .await?;
        let position = if stored.status == Status::Initiated {
            self.store.queue_position(stored.id).await?
        } else {
            0
        };
        self.parts.metrics.initiated(kind);
        self.notify(&stored).await;
        if position > 0 {
            self.push(
                &stored.caller_id,
                frames::QUEUE,
                &serde_json::json!({ "callId": stored.id, "position": position }),
            )
            .await;
        }
        Ok((stored, position))
    }

    /// An agent takes the oldest queued SUPPORT call: it rings on the agent's side.
    #[tracing::instrument(skip(self, caller), fields(user = %caller.user_id))]
    pub async fn take_next(
        &self,
        caller: &Caller,
        request_id: &str,
    ) -> Result<Option<Call>, VideocallError> {
        if !caller.has_role("agent") {
            return Err(VideocallError::NotAnAgent);
        }
        let key = key("TakeNextCall", caller, request_id, &[])?;
        let now = self.now();
        let taken = self
            .store
            .take_next(&key, &caller.user_id, now, now + self.ring_timeout())
            .await?;
        if let Some(call) = &taken {
            self.notify(call).await;
            self.push_queue_positions().await;
        }
        Ok(taken)
    }

    /// Tells every queued caller (the first [`QUEUE_NOTICES`]) their place.
    async fn push_queue_positions(&self) {
        match self.store.queue(QUEUE_NOTICES).await {
            Ok(queue) => {
                for (position, (id, caller)) in (1u32..).zip(queue) {
                    self.push(
                        &caller,
                        frames::QUEUE,
                        &serde_json::json!({ "callId": id, "position": position }),
                    )
                    .await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "queue positions not pushed"),
        }
    }

    /// Runs `action` for `caller` on the call `id`: who may is checked on the stored call,
    /// when on the guarded UPDATE.
    async fn act(
        &self,
        method: &'static str,
        caller: &Caller,
        request_id: &str,
        id: &str,
        action: Action,
        failure: Option<&str>,
    ) -> Result<Call, VideocallError> {
        let id = call_id("call_id", id)?;
        let key = key(
            method,
            caller,
            request_id,
            &[&id.to_string(), failure.unwrap_or_default()],
        )?;
        let call = self.load(id).await?;
        call.authorize(&caller.user_id, action)?;
        let now = self.now();
        // The callee may end only an answered call; the caller also cancels before that.
        let from = match (action, call.party(&caller.user_id)) {
            (Action::End, Some(Party::Callee)) => vec![Status::Active],
            _ => action.from_statuses().to_vec(),
        };
        let t = Transition {
            call: id,
            action,
            from,
            to: action.apply(call.status)?,
            at: now,
            end_reason: failure
                .map(str::to_owned)
                .or_else(|| end_reason(action, call.status).map(str::to_owned)),
            before_deadline: action == Action::Answer,
            callee: None,
        };
        let done = match self.store.transition(Some(&key), &t).await {
            Err(VideocallError::Illegal(IllegalTransition {
                current: Status::Ringing,
                ..
            })) if action == Action::Answer => {
                // Answered after its ringing time: it is missed now, whichever replica's job
                // gets there first; the callee learns the outcome.
                let missed = self.miss(id, Status::Ringing).await?;
                return Err(IllegalTransition {
                    action,
                    current: missed.status,
                }
                .into());
            }
            other => other?,
        };
        // A replay answers the call as it was then; the parties were told at the time.
        if done.status == t.to {
            self.finished(&done);
            self.notify(&done).await;
        }
        Ok(done)
    }

    fn finished(&self, call: &Call) {
        if call.status.is_final() {
            self.parts.metrics.finished(call.status);
        }
    }

    /// Marks an overdue call MISSED (or finds what another replica made of it).
    async fn miss(&self, id: Uuid, from: Status) -> Result<Call, VideocallError> {
        let t = Transition {
            call: id,
            action: Action::Miss,
            from: Action::Miss.from_statuses().to_vec(),
            to: Status::Missed,
            at: self.now(),
            end_reason: end_reason(Action::Miss, from).map(str::to_owned),
            before_deadline: false,
            callee: None,
        };
        match self.store.transition(None, &t).await {
            Ok(call) => {
                self.finished(&call);
                self.notify(&call).await;
                Ok(call)
            }
            Err(VideocallError::Illegal(_)) => self.load(id).await,
            Err(e) => Err(e),
        }
    }

    pub async fn answer(
        &self,
        caller: &Caller,
        request_id: &str,
        id: &str,
    ) -> Result<Call, VideocallError> {
        self.act("AnswerCall", caller, request_id, id, Action::Answer, None)
            .await
    }

    pub async fn reject(
        &self,
        caller: &Caller,
        request_id: &str,
        id: &str,
    ) -> Result<Call, VideocallError> {
        self.act("RejectCall", caller, request_id, id, Action::Reject, None)
            .await
    }

    pub async fn end(
        &self,
        caller: &Caller,
        request_id: &str,
        id: &str,
    ) -> Result<Call, VideocallError> {
        self.act("EndCall", caller, request_id, id, Action::End, None)
            .await
    }

    pub async fn fail(
        &self,
        caller: &Caller,
        request_id: &str,
        id: &str,
        reason: &str,
    ) -> Result<Call, VideocallError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > MAX_REASON || reason.chars().any(char::is_control) {
            return Err(InputError::new(
                "reason",
                format!("must be 1..={MAX_REASON} bytes of text without control characters"),
            )
            .into());
        }
        self.act(
            "FailCall",
            caller,
            request_id,
            id,
            Action::Fail,
            Some(reason),
        )
        .await
    }

    /// The call for its participants (and admin, analyst), with its quality aggregate.
    pub async fn get(&self, caller: &Caller, id: &str) -> Result<(Call, Summary), VideocallError> {
        let id = call_id("call_id", id)?;
        let call = self.load(id).await?;
        if call.party(&caller.user_id).is_none() && !caller.has_any_role(&["admin", "analyst"]) {
            return Err(NotAllowed::NotAParticipant {
                user: caller.user_id.clone(),
                call: id,
            }
            .into());
        }
        let samples = self.store.samples(id).await?;
        Ok((call, quality::summarize(&samples)))
    }

    /// A participant of a call that may still connect (queued, ringing or active) and the call.
    async fn participant(
        &self,
        caller: &Caller,
        id: Uuid,
    ) -> Result<(Call, Party), VideocallError> {
        let call = self.load(id).await?;
        let party = call
            .party(&caller.user_id)
            .ok_or_else(|| NotAllowed::NotAParticipant {
                user: caller.user_id.clone(),
                call: id,
            })?;
        Ok((call, party))
    }

    /// ICE servers for a participant of a RINGING or ACTIVE call.
    pub async fn ice_servers(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<IceServers, VideocallError> {
        let id = call_id("call_id", id)?;
        let (call, _) = self.participant(caller, id).await?;
        if !call.status.may_signal() {
            return Err(VideocallError::NotLive {
                call: id,
                status: call.status,
                needs: NEEDS_LIVE,
            });
        }
        let now = self.now();
        let must_end_by = ice::must_end_by(
            call.ringing_at.unwrap_or(call.created_at),
            call.answered_at,
            self.ring_timeout(),
            self.max_call(),
        );
        let ttl = Duration::seconds(i64::from(self.parts.settings.turn.credential_ttl_seconds));
        let expires_at = ice::credential_expiry(now, ttl, must_end_by);
        let (stun, turn_uris) = ice::split_uris(&self.parts.settings.turn.uris);
        let mut servers = Vec::new();
        if !stun.is_empty() {
            servers.push(IceServer {
                urls: stun,
                username: None,
                credential: None,
            });
        }
        if let (false, Some(secret)) = (turn_uris.is_empty(), &self.parts.turn_secret) {
            let expiry = u64::try_from(expires_at.timestamp()).unwrap_or_default();
            let credential = turn::mint(secret.expose_secret().as_bytes(), &caller.user_id, expiry);
            servers.push(IceServer {
                urls: turn_uris,
                username: Some(credential.username),
                credential: Some(credential.password),
            });
        }
        Ok(IceServers {
            servers,
            expires_at,
        })
    }

    /// A participant's quality sample of an ACTIVE call.
    pub async fn report_quality(
        &self,
        caller: &Caller,
        request_id: &str,
        id: &str,
        values: [u32; 6],
    ) -> Result<u32, VideocallError> {
        let id = call_id("call_id", id)?;
        let sample = Sample::parse(values)?;
        let body: Vec<String> = values.iter().map(u32::to_string).collect();
        let mut parts: Vec<&str> = vec![];
        let id_text = id.to_string();
        parts.push(&id_text);
        parts.extend(body.iter().map(String::as_str));
        let key = key("ReportQuality", caller, request_id, &parts)?;
        self.participant(caller, id).await?;
        self.store
            .add_sample(&key, id, &caller.user_id, &sample, self.now())
            .await
    }

    /// A participant's consent to record (or its withdrawal).
    pub async fn consent(
        &self,
        caller: &Caller,
        request_id: &str,
        id: &str,
        consent: bool,
    ) -> Result<Call, VideocallError> {
        let id = call_id("call_id", id)?;
        if !self.parts.settings.recording_allowed {
            return Err(VideocallError::RecordingNotAllowed);
        }
        let key = key(
            "SetRecordingConsent",
            caller,
            request_id,
            &[&id.to_string(), if consent { "1" } else { "0" }],
        )?;
        let (_, party) = self.participant(caller, id).await?;
        let call = self
            .store
            .consent(&key, id, party, consent.then(|| self.now()))
            .await?;
        self.notify(&call).await;
        Ok(call)
    }

    /// Stores a participant's recording of `header.call_id`: refused before a byte is read
    /// when the cell forbids recording, the caller is not a participant, the call is not
    /// ACTIVE or ENDED or a party has not consented; then the chunks stream to object storage
    /// (each at most [`recording::MAX_CHUNK_BYTES`], all together at most
    /// videocall.maxRecordingBytes, else the upload is aborted and nothing stored), and the
    /// row is written once the object is. A retry with the same request_id answers the first
    /// recording without storing anything.
    pub async fn upload_recording<C>(
        &self,
        caller: &Caller,
        header: UploadHeader,
        chunks: C,
    ) -> Result<Recording, VideocallError>
    where
        C: Stream<Item = Result<Bytes, VideocallError>> + Send + Unpin,
    {
        let id = call_id("call_id", &header.call_id)?;
        let kind = RecordingType::parse(&header.content_type)?;
        let key = key(
            "UploadRecording",
            caller,
            &header.request_id,
            &[&id.to_string(), kind.as_str()],
        )?;
        if !self.parts.settings.recording_allowed {
            return Err(VideocallError::RecordingNotAllowed);
        }
        if let Some(first) = self.store.recording_replay(&key).await? {
            return Ok(first);
        }
        let call = self.load(id).await?;
        recording::may_upload(&call, &caller.user_id)?;
        let recording_id = Uuid::now_v7();
        let object = ObjectKey::new(recording::object_parts(id, recording_id, kind))
            .map_err(|e| KitError::Other(e.to_string()))?;
        let (size, sha256) = self.store_object(&object, kind, chunks).await?;
        let row = Recording {
            id: recording_id,
            call_id: id,
            uploader_id: caller.user_id.clone(),
            key: object.to_string(),
            content_type: kind,
            bytes: size,
            sha256,
            created_at: self.now(),
        };
        let added = self.store.add_recording(&key, &row).await;
        if !matches!(added, Ok(AddedRecording::New(_))) {
            // No row of ours: the object goes too, so none is left without its row.
            self.discard(&object).await;
        }
        match added? {
            AddedRecording::New(stored) | AddedRecording::Replay(stored) => Ok(stored),
            AddedRecording::Refused(now) => {
                Err(match recording::may_upload(&now, &caller.user_id) {
                    Err(e) => e.into(),
                    Ok(_) => VideocallError::TooManyRecordings(id),
                })
            }
        }
    }

    /// Streams `chunks` to `object` through kit, counting them against the caps and hashing
    /// them; a refused chunk aborts the upload and is the answer.
    // The chunk closure's error is kit's ObjectError, the type put_stream takes; it is built
    // once per upload at most, so its size costs nothing.
    #[allow(clippy::result_large_err)]
    async fn store_object<C>(
        &self,
        object: &ObjectKey,
        kind: RecordingType,
        chunks: C,
    ) -> Result<(u64, [u8; 32]), VideocallError>
    where
        C: Stream<Item = Result<Bytes, VideocallError>> + Send + Unpin,
    {
        let mut budget = Budget::new(self.parts.settings.max_recording_bytes);
        let mut hash = Sha256::new();
        let mut refused: Option<VideocallError> = None;
        let body = chunks.map(|chunk| {
            let checked = chunk.and_then(|c| {
                budget.take(c.len())?;
                hash.update(&c);
                Ok(c)
            });
            checked.map_err(|e| {
                let detail = e.to_string();
                refused = Some(e);
                ObjectError::Body { detail }
            })
        });
        let stored = self
            .parts
            .objects
            .put_stream(object, kind.as_str(), body)
            .await;
        if let Some(e) = refused {
            return Err(e);
        }
        stored?;
        let size = match budget.finish() {
            Ok(size) => size,
            Err(e) => {
                // An empty upload: S3 stored an empty object, which has no row to go with.
                self.discard(object).await;
                return Err(e.into());
            }
        };
        Ok((size, hash.finalize().into()))
    }

    /// Deletes an object that has no row; a failure leaves an orphan, logged with its key so
    /// it can be removed by hand (docs/videocall.md, "Recordings").
    async fn discard(&self, object: &ObjectKey) {
        if let Err(e) = self.parts.objects.delete(object).await {
            tracing::error!(error = %e, key = %object, "recording object without a row not deleted");
        }
    }

    /// The call's recordings for `caller`, who already read the call ([`Self::get`]): with
    /// presigned URLs for its participants and "admin"; analysts see only that they exist.
    pub async fn recordings(
        &self,
        caller: &Caller,
        call: &Call,
    ) -> Result<Vec<RecordingView>, VideocallError> {
        let playable =
            call.party(&caller.user_id).is_some() || caller.has_any_role(RECORDING_READERS);
        let now = self.now();
        let mut views = Vec::new();
        for recording in self.store.recordings(call.id).await? {
            let (url, url_expires_at) = if playable {
                let key =
                    ObjectKey::parse(&recording.key).map_err(|e| KitError::Other(e.to_string()))?;
                let url = self
                    .parts
                    .objects
                    .presigned_get(&key, RECORDING_URL_TTL)
                    .await?;
                let ttl = Duration::from_std(RECORDING_URL_TTL).unwrap_or_default();
                (Some(url), Some(now + ttl))
            } else {
                (None, None)
            };
            views.push(RecordingView {
                recording,
                url,
                url_expires_at,
            });
        }
        Ok(views)
    }

    /// Whether the call is recorded, as this cell decides.
    pub fn recording(&self, call: &Call) -> bool {
        call.recording(self.parts.settings.recording_allowed)
    }

    /// A page of history, newest first; the token is the last id of the previous page.
    pub async fn history(
        &self,
        caller: &Caller,
        agent_id: &str,
        page_size: u32,
        page_token: &str,
    ) -> Result<(Vec<Call>, Option<Uuid>), VideocallError> {
        if page_size > MAX_PAGE {
            return Err(
                InputError::new("page_size", format!("{page_size} is above {MAX_PAGE}")).into(),
            );
        }
        let limit = if page_size == 0 {
            DEFAULT_PAGE
        } else {
            page_size
        };
        let before = if page_token.is_empty() {
            None
        } else {
            Some(call_id("page_token", page_token)?)
        };
        let (user, agent) = if agent_id.is_empty() {
            (caller.user_id.as_str(), false)
        } else {
            let agent = ident("agent_id", agent_id)?;
            self.may_read_agent(caller, agent)?;
            (agent, true)
        };
        let calls = self.store.history(user, agent, before, limit + 1).await?;
        let more = calls.len() > limit as usize;
        let mut calls = calls;
        calls.truncate(limit as usize);
        let next = if more {
            calls.last().map(|c| c.id)
        } else {
            None
        };
        Ok((calls, next))
    }

    fn may_read_agent(&self, caller: &Caller, agent: &str) -> Result<(), VideocallError> {
        if caller.user_id == agent || caller.has_any_role(&["admin", "analyst"]) {
            Ok(())
        } else {
            Err(VideocallError::NotAnAnalyst(agent.to_owned()))
        }
    }

    /// An agent's calls per UTC day between two days (both included).
    pub async fn agent_analytics(
        &self,
        caller: &Caller,
        agent_id: &str,
        from_day: &str,
        to_day: &str,
    ) -> Result<Vec<AgentDay>, VideocallError> {
        let agent = ident("agent_id", agent_id)?;
        let from = day("from_day", from_day)?;
        let to = day("to_day", to_day)?;
        if to < from {
            return Err(InputError::new("to_day", "is before from_day").into());
        }
        if (to - from).num_days() >= MAX_DAYS {
            return Err(InputError::new(
                "to_day",
                format!("is more than {MAX_DAYS} days after from_day"),
            )
            .into());
        }
        self.may_read_agent(caller, agent)?;
        let start = from.and_time(chrono::NaiveTime::MIN).and_utc();
        let end = to.and_time(chrono::NaiveTime::MIN).and_utc() + Duration::days(1);
        self.store.agent_days(agent, start, end).await
    }

    /// Relays a signaling frame to the other participant of a RINGING or ACTIVE call.
    pub async fn signal(
        &self,
        caller: &Caller,
        id: &str,
        kind: &str,
        data: &Value,
    ) -> Result<(), VideocallError> {
        let id = call_id("callId", id)?;
        let kind = SignalKind::parse(kind)?;
        let encoded =
            serde_json::to_vec(data).map_err(|e| InputError::new("data", e.to_string()))?;
        signal::check_size(encoded.len())?;
        let (call, party) = self.participant(caller, id).await?;
        // A RINGING or ACTIVE call always has its callee.
        let other = match call.other(party) {
            Some(other) if call.status.may_signal() => other,
            _ => {
                return Err(VideocallError::NotLive {
                    call: id,
                    status: call.status,
                    needs: NEEDS_LIVE,
                });
            }
        };
        let hub = self
            .parts
            .hub
            .as_ref()
            .ok_or_else(|| KitError::Other("signaling needs redis".into()))?;
        hub.publish(
            &user_topic(other),
            frames::SIGNAL,
            &SignalFrame {
                call_id: id,
                from: &caller.user_id,
                kind,
                data,
            },
        )
        .await
        .map_err(|e| KitError::Other(e.to_string()))?;
        self.parts.metrics.signal(kind);
        Ok(())
    }

    /// Misses the calls past their ringing (or queue) deadline and ends those past the longest
    /// call; run by every replica every second, each call's UPDATE guarded so only one wins.
    pub async fn sweep(&self) -> Result<u32, VideocallError> {
        let now = self.now();
        let due = self.store.due(now, self.max_call(), SWEEP_BATCH).await?;
        let mut done = 0;
        for (id, status) in due {
            // Active too long: ended; queued or ringing too long: missed.
            let (action, reason) = if status == Status::Active {
                (Action::End, Some(reasons::MAX_DURATION))
            } else {
                (Action::Miss, end_reason(Action::Miss, status))
            };
            let t = Transition {
                call: id,
                action,
                from: vec![status],
                to: action.apply(status)?,
                at: now,
                end_reason: reason.map(str::to_owned),
                before_deadline: false,
                callee: None,
            };
            match self.store.transition(None, &t).await {
                Ok(call) => {
                    done += 1;
                    self.finished(&call);
                    self.notify(&call).await;
                    if call.callee_id.is_none() {
                        self.push_queue_positions().await;
                    }
                }
                // Another replica (or a party) moved it first: one outcome, theirs.
                Err(VideocallError::Illegal(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// Pushes the call's state to its parties' sockets; a failure is logged (clients read
    /// the call again when they reconnect).
    async fn notify(&self, call: &Call) {
        let frame = CallFrame::of(call);
        for user in call.participants() {
            self.push(user, frames::CALL, &frame).await;
        }
    }

    async fn push<T: Serialize>(&self, user: &str, kind: &str, payload: &T) {
        let Some(hub) = &self.parts.hub else {
            return;
        };
        if let Err(e) = hub.publish(&user_topic(user), kind, payload).await {
            self.parts.metrics.publish_failed();
            tracing::warn!(error = %e, kind, "call frame not pushed");
        }
    }
}
