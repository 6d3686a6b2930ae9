//! Proof of work against bots: the server issues a random challenge; the buyer finds a nonce
//! such that hex(SHA-256(challenge ‖ nonce)) starts with `difficulty` zeros. Checking costs one
//! hash; finding costs about 16^difficulty.

use sha2::{Digest, Sha256};

/// Whether `nonce` solves `challenge` at `difficulty`.
pub fn verify(challenge: &str, nonce: &str, difficulty: u32) -> bool {
    !nonce.is_empty() && strength(challenge, nonce) >= difficulty
}

/// The difficulty `nonce` meets for `challenge` (leading zero hex digits); 0 for an oversized
/// nonce. The stock script compares it with the sale's difficulty, so the hot path needs no
/// look-up of the sale.
pub fn strength(challenge: &str, nonce: &str) -> u32 {
    if nonce.len() > 64 {
        return 0;
    }
    let digest = Sha256::new()
        .chain_update(challenge.as_bytes())
        .chain_update(nonce.as_bytes())
        .finalize();
    leading_zero_nibbles(&digest)
}

fn leading_zero_nibbles(bytes: &[u8]) -> u32 {
    let mut n = 0;
    for b in bytes {
        if *b == 0 {
            n += 2;
        } else {
            return n + u32::from(*b < 0x10);
        }
    }
    n
}

/// Finds a nonce (what a client does); for tests and load generators.
pub fn solve(challenge: &str, difficulty: u32) -> String {
    (0u64..)
        .map(|i| i.to_string())
        .find(|nonce| verify(challenge, nonce, difficulty))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solutions_verify_and_others_do_not() {
        let nonce = solve("abc", 3);
        assert!(verify("abc", &nonce, 3));
        assert!(
            !verify("abc", "x", 8),
            "an arbitrary nonce does not meet a high difficulty"
        );
        assert!(verify("abc", "anything", 0));
        assert!(!verify("abc", "", 0), "a nonce is required");
        assert_eq!(leading_zero_nibbles(&[0, 0x0f, 0xff]), 3);
        assert_eq!(leading_zero_nibbles(&[0x10]), 0);
    }
}
