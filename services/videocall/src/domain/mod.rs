//! Videocall rules, pure: the call and its guarded state machine with who may do what
//! ([`call`]), quality samples and their aggregate ([`quality`]), ICE credential lifetimes
//! ([`ice`]), signaling frames ([`signal`]) and recording uploads ([`recording`]). No I/O.

pub mod call;
pub mod ice;
pub mod quality;
pub mod recording;
pub mod signal;

pub use call::{Action, Call, CallKind, IllegalTransition, Media, NotAllowed, Party, Status};
pub use quality::{Sample, Summary};
pub use signal::SignalKind;
pub use titan_kit::input::InputError;

/// The service's name: its migrations, its stream and its config section.
pub const SERVICE: &str = "videocall";
/// Published when a call reaches a final status (ENDED, REJECTED, MISSED, FAILED).
pub const CALL_FINISHED: &str = "videocall.call_finished";

/// The hub topic of one user's videocall frames (call changes, signaling, queue position),
/// on every replica.
pub fn user_topic(user: &str) -> String {
    format!("videocall:user:{user}")
}

/// The payload of [`CALL_FINISHED`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CallFinished {
    pub call_id: uuid::Uuid,
    pub caller_id: String,
    pub callee_id: Option<String>,
    pub kind: CallKind,
    pub media: Media,
    pub status: Status,
    pub end_reason: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub answered_at: Option<chrono::DateTime<chrono::Utc>>,
    pub ended_at: Option<chrono::DateTime<chrono::Utc>>,
    pub duration_seconds: Option<u64>,
}

impl CallFinished {
    pub fn of(call: &Call) -> Self {
        Self {
            call_id: call.id,
            caller_id: call.caller_id.clone(),
            callee_id: call.callee_id.clone(),
            kind: call.kind,
            media: call.media,
            status: call.status,
            end_reason: call.end_reason.clone(),
            created_at: call.created_at,
            answered_at: call.answered_at,
            ended_at: call.ended_at,
            duration_seconds: call.duration_seconds(),
        }
    }
}
