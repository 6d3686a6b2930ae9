//! Identifiers as they arrive from clients, parsed once: users (token subjects and the ids
//! callers name), conversations and messages (UUIDs; message ids are UUIDv7, so they sort by
//! time). A refusal names the field it came in.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use titan_kit::input::InputError;

/// A user: 1 to 128 printable ASCII characters without spaces.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    pub fn parse(field: &'static str, s: &str) -> Result<Self, InputError> {
        titan_kit::input::ident(field, s).map(|s| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn uuid(field: &'static str, s: &str) -> Result<Uuid, InputError> {
    if s.is_empty() {
        return Err(InputError::new(field, "is empty"));
    }
    Uuid::try_parse(s).map_err(|_| InputError::new(field, format!("{s:?} is not a UUID")))
}

/// A conversation's id (UUIDv7 when created here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConversationId(Uuid);

impl ConversationId {
    pub fn parse(field: &'static str, s: &str) -> Result<Self, InputError> {
        uuid(field, s).map(Self)
    }

    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub fn uuid(self) -> Uuid {
        self.0
    }
}

impl Default for ConversationId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A message's id: UUIDv7, so ids order messages by time within a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(Uuid);

impl MessageId {
    /// Any UUID names a message in a request; the store says whether it exists.
    pub fn parse(field: &'static str, s: &str) -> Result<Self, InputError> {
        uuid(field, s).map(Self)
    }

    /// An optional id: empty means absent.
    pub fn parse_opt(field: &'static str, s: &str) -> Result<Option<Self>, InputError> {
        if s.is_empty() {
            Ok(None)
        } else {
            Self::parse(field, s).map(Some)
        }
    }

    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub fn uuid(self) -> Uuid {
        self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_parsed_and_name_their_field() {
        assert_eq!(
            UserId::parse("other_user_id", ""),
            Err(InputError::new("other_user_id", "is required"))
        );
        assert_eq!(
            UserId::parse("user_id", "a b").map_err(|e| e.to_string()),
            Err("user_id: must be printable ASCII without spaces".into())
        );
        assert!(UserId::parse("user_id", &"x".repeat(129)).is_err());
        assert!(UserId::parse("user_id", "auth0|123").is_ok());
        assert_eq!(
            ConversationId::parse("conversation_id", "nope").map_err(|e| e.to_string()),
            Err("conversation_id: \"nope\" is not a UUID".into())
        );
        assert_eq!(MessageId::parse_opt("before", ""), Ok(None));
        assert!(MessageId::parse_opt("before", "x").is_err());
    }
}
