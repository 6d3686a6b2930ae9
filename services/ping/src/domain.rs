//! Ping's rules: what a message may be, and the event an emission publishes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The service's name: its migrations, its stream and its config section.
pub const SERVICE: &str = "ping";
/// The event an accepted `Emit` publishes.
pub const EMITTED: &str = "ping.emitted";
pub const MAX_MESSAGE_CHARS: usize = 256;

/// A message: 1 to 256 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("message is empty")]
    Empty,
    #[error("message has {0} characters; at most {MAX_MESSAGE_CHARS} are allowed")]
    TooLong(usize),
    #[error("message contains a control character at position {0}")]
    Control(usize),
}

impl Message {
    pub fn parse(text: &str) -> Result<Self, MessageError> {
        if text.is_empty() {
            return Err(MessageError::Empty);
        }
        let chars = text.chars().count();
        if chars > MAX_MESSAGE_CHARS {
            return Err(MessageError::TooLong(chars));
        }
        if let Some(pos) = text.chars().position(char::is_control) {
            return Err(MessageError::Control(pos));
        }
        Ok(Self(text.to_owned()))
    }

    /// `Ping` echoes an empty message as is; only `Emit` requires one.
    pub fn parse_echo(text: &str) -> Result<Option<Self>, MessageError> {
        if text.is_empty() {
            Ok(None)
        } else {
            Self::parse(text).map(Some)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Payload of `ping.emitted` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Emitted {
    pub emission_id: Uuid,
    pub user_id: String,
    pub message: String,
}

/// What `Emit` answers, the first time and on every retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub event_id: Uuid,
    pub emitted_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_validated() {
        assert_eq!(Message::parse(""), Err(MessageError::Empty));
        assert_eq!(
            Message::parse(&"é".repeat(257)),
            Err(MessageError::TooLong(257))
        );
        assert!(Message::parse(&"é".repeat(256)).is_ok());
        assert_eq!(Message::parse("a\nb"), Err(MessageError::Control(1)));
        assert_eq!(Message::parse_echo(""), Ok(None));
    }
}
