//! Partition keys and their hash. The hash is XXH3-64 with seed 0 over the key's UTF-8 bytes:
//! its output is frozen by the xxHash 0.8 format (the same on every platform and in every
//! implementation), so a key's bucket never changes between releases. The tests pin
//! reference values; a change of the hash fails them.

use xxhash_rust::xxh3::xxh3_64;

/// The longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 256;

/// A key to route: 1 to [`MAX_KEY_BYTES`] bytes of UTF-8 (a user id, a shop id, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionKey<'a>(&'a str);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key is empty")]
    Empty,
    #[error("key has {0} bytes; at most {MAX_KEY_BYTES} are allowed")]
    TooLong(usize),
}

impl<'a> PartitionKey<'a> {
    pub fn parse(key: &'a str) -> Result<Self, KeyError> {
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(KeyError::TooLong(key.len()));
        }
        Ok(Self(key))
    }

    pub fn as_str(&self) -> &'a str {
        self.0
    }

    pub fn hash(&self) -> u64 {
        key_hash(self.0.as_bytes())
    }
}

/// The hash every bucket is derived from (XXH3-64, seed 0).
pub fn key_hash(bytes: &[u8]) -> u64 {
    xxh3_64(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated() {
        assert_eq!(PartitionKey::parse(""), Err(KeyError::Empty));
        assert_eq!(
            PartitionKey::parse(&"é".repeat(129)),
            Err(KeyError::TooLong(258))
        );
        let longest = "k".repeat(MAX_KEY_BYTES);
        assert_eq!(
            PartitionKey::parse(&longest).map(|k| k.as_str().len()),
            Ok(MAX_KEY_BYTES)
        );
    }

    /// Reference values of XXH3-64 (seed 0): the empty input from the xxHash repository's
    /// sanity tests, the others recorded when the router shipped. A different value here means
    /// every key may move to another cell: never change them.
    #[test]
    fn the_hash_is_frozen() {
        assert_eq!(key_hash(b""), 0x2d06_8005_38d3_94c2);
        assert_eq!(key_hash(b"user-1"), RECORDED_USER_1);
        assert_eq!(key_hash("héllo".as_bytes()), RECORDED_HELLO);
    }

    const RECORDED_USER_1: u64 = 0x7c76_15c1_1438_e5c9;
    const RECORDED_HELLO: u64 = 0x6a45_b79a_7b54_9b1f;
}
