//! Signaling frames between the two parties of a call: their kinds and size cap. The payload
//! (an SDP offer or answer, an ICE candidate) is relayed as the client sent it; only its
//! encoded size is checked here.

use serde::{Deserialize, Serialize};
use titan_kit::input::InputError;

/// Largest encoded `data` of one frame: an SDP offer with many codecs and candidates is a few
/// KiB; this leaves room without letting a client push megabytes through Redis.
pub const MAX_SIGNAL_BYTES: usize = 32 * 1024;

/// What a signaling frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignalKind {
    Offer,
    Answer,
    Ice,
    Hangup,
}

impl SignalKind {
    pub const ALL: [Self; 4] = [Self::Offer, Self::Answer, Self::Ice, Self::Hangup];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offer => "offer",
            Self::Answer => "answer",
            Self::Ice => "ice",
            Self::Hangup => "hangup",
        }
    }

    /// The kind named `s`; the refusal names the `kind` field.
    pub fn parse(s: &str) -> Result<Self, InputError> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                InputError::new(
                    "kind",
                    format!("{s:?} is not one of offer, answer, ice, hangup"),
                )
            })
    }
}

/// Checks the encoded size of a frame's `data`.
pub fn check_size(encoded_len: usize) -> Result<(), InputError> {
    if encoded_len > MAX_SIGNAL_BYTES {
        return Err(InputError::new(
            "data",
            format!("has {encoded_len} bytes; at most {MAX_SIGNAL_BYTES} are allowed"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_sizes() {
        assert_eq!(SignalKind::parse("ice"), Ok(SignalKind::Ice));
        assert_eq!(
            SignalKind::parse("bye").map_err(|e| e.field),
            Err("kind".into())
        );
        assert_eq!(check_size(MAX_SIGNAL_BYTES), Ok(()));
        assert_eq!(
            check_size(MAX_SIGNAL_BYTES + 1).map_err(|e| e.field),
            Err("data".into())
        );
    }
}
