//! Stream keys: the secret a seller's encoder publishes with. A key is `lsk_` followed by
//! `livestream.streamKeyBytes` random bytes in hex; it is shown once and only its SHA-256 is
//! stored (keys are long random strings, so a fast hash resists guessing as well as a slow
//! one would, and lets `on_publish` find the stream with one index lookup).

use std::fmt;

use rand::RngCore;
use sha2::{Digest, Sha256};

const PREFIX: &str = "lsk_";
/// The longest key nginx could send for any configured size (64 bytes in hex).
const MAX_KEY_CHARS: usize = PREFIX.len() + 128;

/// A freshly generated key, in clear; never stored, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct StreamKey(String);

impl fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StreamKey(<redacted>)")
    }
}

impl StreamKey {
    /// A new key of `bytes` random bytes from the thread's CSPRNG (ChaCha, seeded by the OS).
    pub fn generate(bytes: u32) -> Self {
        let mut buf = vec![0u8; bytes as usize];
        rand::rng().fill_bytes(&mut buf);
        Self(format!("{PREFIX}{}", hex::encode(buf)))
    }

    /// The key as the seller's encoder sends it.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> KeyHash {
        KeyHash::of(&self.0)
    }
}

/// SHA-256 of a key: what the store keeps and looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    fn of(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    /// The hash of a key nginx forwarded, or `None` when it cannot be one of ours (so a
    /// malformed name is refused without a lookup).
    pub fn of_presented(name: &str) -> Option<Self> {
        let hex_part = name.strip_prefix(PREFIX)?;
        (name.len() <= MAX_KEY_CHARS
            && !hex_part.is_empty()
            && hex_part
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        .then(|| Self::of(name))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_key_has_its_size_and_hides_in_debug() {
        let key = StreamKey::generate(24);
        assert_eq!(key.reveal().len(), 4 + 48);
        assert!(key.reveal().starts_with("lsk_"));
        assert_eq!(format!("{key:?}"), "StreamKey(<redacted>)");
        assert_ne!(StreamKey::generate(24), key);
    }

    #[test]
    fn malformed_names_are_not_keys() {
        for name in ["", "lsk_", "abc", "lsk_XYZ", "lsk_AB12", "other_ab12"] {
            assert_eq!(KeyHash::of_presented(name), None, "{name:?}");
        }
        let too_long = format!("lsk_{}", "a".repeat(129));
        assert_eq!(KeyHash::of_presented(&too_long), None);
    }

    proptest! {
        #[test]
        fn a_generated_key_is_found_by_its_hash(bytes in 16u32..=64) {
            let key = StreamKey::generate(bytes);
            prop_assert_eq!(KeyHash::of_presented(key.reveal()), Some(key.hash()));
            let other = StreamKey::generate(bytes);
            prop_assert_ne!(KeyHash::of_presented(other.reveal()), Some(key.hash()));
        }
    }
}
