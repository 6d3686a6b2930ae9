//! Recordings a participant uploads after both parties consented: the media types accepted,
//! the size caps, who may upload when, and where the object goes. Pure; the app streams the
//! bytes to object storage through kit and the store keeps a row per recording.

use chrono::{DateTime, Utc};
use titan_kit::input::InputError;
use uuid::Uuid;

use super::{Call, NotAllowed, Party, SERVICE, Status};

/// Largest `data` of one upload message: small enough that a message never nears gRPC's
/// 4 MiB default, large enough that a recording is not thousands of tiny messages.
pub const MAX_CHUNK_BYTES: usize = 1 << 20;

/// The media types a recording may have: what browsers' MediaRecorder writes (WebM, MP4 on
/// Safari) and Ogg for audio-only recorders. Parameters (`;codecs=vp8,opus`) are accepted and
/// dropped: the stored type is the bare one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingType {
    VideoWebm,
    AudioWebm,
    VideoMp4,
    AudioOgg,
}

impl RecordingType {
    pub const ALL: [Self; 4] = [
        Self::VideoWebm,
        Self::AudioWebm,
        Self::VideoMp4,
        Self::AudioOgg,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::VideoWebm => "video/webm",
            Self::AudioWebm => "audio/webm",
            Self::VideoMp4 => "video/mp4",
            Self::AudioOgg => "audio/ogg",
        }
    }

    /// The file extension of the stored object, so a downloaded file opens in a player.
    pub fn extension(self) -> &'static str {
        match self {
            Self::VideoWebm | Self::AudioWebm => "webm",
            Self::VideoMp4 => "mp4",
            Self::AudioOgg => "ogg",
        }
    }

    /// The type named by `s` (case-insensitive, parameters dropped); the refusal names the
    /// `content_type` field and lists what is accepted.
    pub fn parse(s: &str) -> Result<Self, InputError> {
        let bare = s.split(';').next().unwrap_or_default().trim();
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(bare))
            .ok_or_else(|| {
                InputError::new(
                    "content_type",
                    format!("{s:?} is not one of video/webm, audio/webm, video/mp4, audio/ogg"),
                )
            })
    }

    /// The type stored as [`Self::as_str`] writes it, for rows read back.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One stored recording: its row, the object at `key` holding its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    /// UUIDv7.
    pub id: Uuid,
    pub call_id: Uuid,
    pub uploader_id: String,
    /// The object key in the cell's bucket.
    pub key: String,
    pub content_type: RecordingType,
    pub bytes: u64,
    /// SHA-256 of the bytes as received, so a client (or an audit) checks what was stored.
    pub sha256: [u8; 32],
    pub created_at: DateTime<Utc>,
}

/// Why a participant may not upload a recording of this call now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadRefused {
    #[error(transparent)]
    NotAllowed(#[from] NotAllowed),
    /// Recordings are of a call that took place: ACTIVE (uploaded as it goes on) or ENDED.
    #[error("call {call} is {status}; recordings are uploaded only while ACTIVE or once ENDED")]
    Status { call: Uuid, status: Status },
    #[error("call {call} is not recorded: the {party} has not consented")]
    ConsentMissing { call: Uuid, party: &'static str },
}

/// Whether `user` may upload a recording of `call`: a participant, of a call ACTIVE or
/// ENDED, that both parties consented to record (the consent kept on the call).
pub fn may_upload(call: &Call, user: &str) -> Result<Party, UploadRefused> {
    let party = call
        .party(user)
        .ok_or_else(|| NotAllowed::NotAParticipant {
            user: user.to_owned(),
            call: call.id,
        })?;
    if !matches!(call.status, Status::Active | Status::Ended) {
        return Err(UploadRefused::Status {
            call: call.id,
            status: call.status,
        });
    }
    let missing = if call.caller_consent_at.is_none() {
        Some("caller")
    } else if call.callee_consent_at.is_none() {
        Some("callee")
    } else {
        None
    };
    match missing {
        Some(party) => Err(UploadRefused::ConsentMissing {
            call: call.id,
            party,
        }),
        None => Ok(party),
    }
}

/// A recording's bytes exceed a cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a recording is at most {max} bytes (videocall.maxRecordingBytes); this one is larger")]
pub struct TooLarge {
    pub max: u64,
}

/// The running size of an upload against its caps, checked on every chunk before it is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    max: u64,
    used: u64,
}

impl Budget {
    pub fn new(max: u64) -> Self {
        Self { max, used: 0 }
    }

    /// Counts a chunk of `len` bytes: refused when the chunk is over [`MAX_CHUNK_BYTES`]
    /// (naming the `data` field) or the total goes over the recording cap.
    pub fn take(&mut self, len: usize) -> Result<(), ChunkRefused> {
        if len > MAX_CHUNK_BYTES {
            return Err(ChunkRefused::Invalid(InputError::new(
                "data",
                format!("{len} bytes in one message; at most {MAX_CHUNK_BYTES}"),
            )));
        }
        let used = self.used.saturating_add(len as u64);
        if used > self.max {
            return Err(ChunkRefused::TooLarge(TooLarge { max: self.max }));
        }
        self.used = used;
        Ok(())
    }

    /// The bytes counted so far.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// The whole upload is done: it must hold at least one byte.
    pub fn finish(&self) -> Result<u64, InputError> {
        if self.used == 0 {
            return Err(InputError::new("data", "a recording has at least one byte"));
        }
        Ok(self.used)
    }
}

/// A chunk refused by a [`Budget`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkRefused {
    #[error(transparent)]
    Invalid(InputError),
    #[error(transparent)]
    TooLarge(TooLarge),
}

/// The object key parts of a recording: `videocall/recordings/<call>/<recording>.<ext>`, so a
/// call's recordings sit together and every upload has a key of its own.
pub fn object_parts(call: Uuid, recording: Uuid, kind: RecordingType) -> [String; 4] {
    [
        SERVICE.to_owned(),
        "recordings".to_owned(),
        call.to_string(),
        format!("{recording}.{}", kind.extension()),
    ]
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use proptest::prelude::*;

    use super::*;
    use crate::domain::{CallKind, Media};

    fn call(status: Status, caller: bool, callee: bool) -> Call {
        let t = DateTime::UNIX_EPOCH;
        Call {
            id: Uuid::nil(),
            caller_id: "ann".into(),
            callee_id: Some("bob".into()),
            kind: CallKind::Sales,
            media: Media::Video,
            status,
            created_at: t,
            ringing_at: Some(t),
            answered_at: Some(t),
            ended_at: None,
            end_reason: None,
            caller_consent_at: caller.then_some(t),
            callee_consent_at: callee.then_some(t),
        }
    }

    #[test]
    fn types_are_the_allow_list_with_parameters_dropped() {
        assert_eq!(
            RecordingType::parse("video/webm;codecs=vp8,opus"),
            Ok(RecordingType::VideoWebm)
        );
        assert_eq!(
            RecordingType::parse("Audio/Ogg"),
            Ok(RecordingType::AudioOgg)
        );
        assert_eq!(
            RecordingType::parse("video/mp4"),
            Ok(RecordingType::VideoMp4)
        );
        let e = RecordingType::parse("video/x-matroska").expect_err("matroska");
        assert_eq!(e.field, "content_type");
        assert!(RecordingType::parse("").is_err());
        for t in RecordingType::ALL {
            assert_eq!(RecordingType::from_name(t.as_str()), Some(t));
        }
    }

    #[test]
    fn participants_upload_active_or_ended_calls_with_both_consents() {
        assert_eq!(
            may_upload(&call(Status::Active, true, true), "bob"),
            Ok(Party::Callee)
        );
        assert_eq!(
            may_upload(&call(Status::Ended, true, true), "ann"),
            Ok(Party::Caller)
        );
        assert!(matches!(
            may_upload(&call(Status::Active, true, true), "eve"),
            Err(UploadRefused::NotAllowed(
                NotAllowed::NotAParticipant { .. }
            ))
        ));
        assert_eq!(
            may_upload(&call(Status::Active, false, true), "ann"),
            Err(UploadRefused::ConsentMissing {
                call: Uuid::nil(),
                party: "caller"
            })
        );
        assert_eq!(
            may_upload(&call(Status::Active, true, false), "ann"),
            Err(UploadRefused::ConsentMissing {
                call: Uuid::nil(),
                party: "callee"
            })
        );
        for status in [
            Status::Ringing,
            Status::Rejected,
            Status::Missed,
            Status::Failed,
        ] {
            assert_eq!(
                may_upload(&call(status, true, true), "ann"),
                Err(UploadRefused::Status {
                    call: Uuid::nil(),
                    status
                })
            );
        }
    }

    #[test]
    fn budget_refuses_big_chunks_and_totals_and_empty_uploads() {
        let mut b = Budget::new(10);
        assert_eq!(b.finish().expect_err("empty").field, "data");
        assert_eq!(b.take(6), Ok(()));
        assert_eq!(b.take(4), Ok(()));
        assert_eq!(b.take(1), Err(ChunkRefused::TooLarge(TooLarge { max: 10 })));
        assert_eq!(b.finish(), Ok(10));
        let mut big = Budget::new(u64::MAX);
        assert!(matches!(
            big.take(MAX_CHUNK_BYTES + 1),
            Err(ChunkRefused::Invalid(e)) if e.field == "data"
        ));
        assert_eq!(big.take(MAX_CHUNK_BYTES), Ok(()));
    }

    #[test]
    fn keys_sit_under_the_call() {
        let call = Uuid::from_u128(1);
        let rec = Uuid::from_u128(2);
        assert_eq!(
            object_parts(call, rec, RecordingType::AudioWebm).join("/"),
            format!("videocall/recordings/{call}/{rec}.webm")
        );
    }

    proptest! {
        /// Whatever the chunk sizes, the budget's total is what it accepted and never above
        /// the cap; the first refusal leaves the count untouched.
        #[test]
        fn budget_never_passes_its_cap(max in 0u64..5_000, chunks in proptest::collection::vec(0usize..2_000, 0..20)) {
            let mut b = Budget::new(max);
            let mut accepted = 0u64;
            for len in chunks {
                let before = b.used();
                match b.take(len) {
                    Ok(()) => accepted += len as u64,
                    Err(_) => prop_assert_eq!(b.used(), before),
                }
                prop_assert!(b.used() <= max);
            }
            prop_assert_eq!(b.used(), accepted);
        }
    }
}
