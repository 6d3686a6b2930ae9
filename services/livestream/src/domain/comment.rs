//! Live comments: 1 to [`MAX_COMMENT_CHARS`] characters (newlines allowed, other control
//! characters not), pinned by the stream's seller, at most `livestream.maxPinnedComments` at
//! once.

use std::fmt;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{InputError, StreamId, input};

/// The most characters in a comment.
pub const MAX_COMMENT_CHARS: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct CommentId(Uuid);

impl CommentId {
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn parse(field: &str, s: &str) -> Result<Self, InputError> {
        if s.is_empty() {
            return Err(InputError::new(field, "is required"));
        }
        Uuid::try_parse(s)
            .map(Self)
            .map_err(|_| InputError::new(field, format!("{:?} is not a comment id", input::cut(s))))
    }

    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub fn uuid(self) -> Uuid {
        self.0
    }
}

impl fmt::Display for CommentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A comment's text, trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentText(String);

impl CommentText {
    pub fn parse(field: &str, s: &str) -> Result<Self, InputError> {
        input::text(field, s, MAX_COMMENT_CHARS, true).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Comment {
    pub id: CommentId,
    pub stream_id: StreamId,
    pub user_id: String,
    pub text: String,
    pub created_at: DateTime<Utc>,
    pub pinned_at: Option<DateTime<Utc>>,
}

/// Too many comments pinned already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "stream {stream} already has {max} pinned comments (livestream.maxPinnedComments); unpin one first"
)]
pub struct TooManyPinned {
    pub stream: StreamId,
    pub max: u32,
}

/// Whether one more pin fits beside `pinned` others.
pub fn may_pin(stream: StreamId, pinned: u32, max: u32) -> Result<(), TooManyPinned> {
    if pinned < max {
        Ok(())
    } else {
        Err(TooManyPinned { stream, max })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_capped_and_may_span_lines() {
        assert_eq!(
            CommentText::parse("text", " so\ncool ")
                .expect("ok")
                .as_str(),
            "so\ncool"
        );
        assert!(CommentText::parse("text", &"x".repeat(500)).is_ok());
        assert_eq!(
            CommentText::parse("text", &"x".repeat(501))
                .expect_err("refused")
                .to_string(),
            "text: has 501 characters; at most 500 are allowed"
        );
        assert_eq!(
            CommentText::parse("text", "a\u{7}b")
                .expect_err("refused")
                .to_string(),
            "text: must not contain control characters"
        );
        assert_eq!(
            CommentText::parse("text", "\n \n")
                .expect_err("refused")
                .to_string(),
            "text: is required"
        );
    }

    #[test]
    fn pins_are_bounded() {
        let s = StreamId::generate();
        assert!(may_pin(s, 2, 3).is_ok());
        assert_eq!(may_pin(s, 3, 3), Err(TooManyPinned { stream: s, max: 3 }));
        assert!(may_pin(s, 0, 0).is_err());
    }
}
