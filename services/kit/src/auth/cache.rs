//! A bounded cache of verified tokens, so a client that sends the same bearer token on every
//! call (every gRPC client does) pays for the signature check and the claims' JSON once, not
//! per request: at flash-sale rates that check was a visible share of a call's CPU.
//!
//! An entry is the token's exact bytes, so only the very token that verified is answered from
//! here. What a verification decided stays true for the token's life with two exceptions, and
//! both are re-checked on every hit: time (`exp`, with the configured leeway, checked here) and
//! the keys. The configured keys never change under one [`super::Authenticator`] (a new
//! configuration builds a new one, and its cache starts empty); the identity provider's key
//! set (JWKS) does, and each entry carries the key-set generation it verified under, which the
//! authenticator compares on every hit: once a key is withdrawn, tokens it signed are checked
//! again (and refused). `nbf` and the lifetime cap only get easier to meet as time passes, so a
//! token that met them once still does.
//!
//! Memory is bounded with two generations per shard: new entries go to the current one; when it
//! is full it becomes the previous one and the older previous one is dropped, and a hit in the
//! previous generation moves the entry back. That keeps what is in use (an LRU approximation)
//! at O(1) per call, with at most `2 × capacity` entries held.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::Mutex,
};

use super::Caller;

/// Shards, so that concurrent calls on different tokens rarely wait on one lock.
const SHARDS: usize = 16;

/// A verified token's answer: who it is, until when (`exp`, seconds since the epoch), and
/// under which generation of the provider's key set.
#[derive(Debug, Clone)]
pub(super) struct Verified {
    pub(super) caller: Caller,
    pub(super) exp: u64,
    pub(super) generation: u64,
}

#[derive(Debug, Default)]
struct Shard {
    current: HashMap<Box<str>, Verified>,
    previous: HashMap<Box<str>, Verified>,
}

/// Verified tokens by their exact text.
#[derive(Debug)]
pub(super) struct TokenCache {
    shards: Box<[Mutex<Shard>]>,
    /// Entries per shard and generation.
    per_shard: usize,
    /// Seconds a token is still accepted after `exp`, as the verifier allows.
    leeway: u64,
    hasher: RandomState,
}

impl TokenCache {
    /// A cache holding at most about `2 × capacity` tokens.
    pub(super) fn new(capacity: usize, leeway: u64) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            leeway,
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, token: &str) -> &Mutex<Shard> {
        // The modulo keeps the index below SHARDS, so the cast back cannot truncate.
        let index = (self.hasher.hash_one(token) % SHARDS as u64) as usize;
        &self.shards[index]
    }

    /// The answer for `token` at `now` (seconds since the epoch), if it verified before and has
    /// not expired since. An expired entry is dropped, so the caller verifies again and
    /// reports the expiry in the verifier's own words.
    pub(super) fn get(&self, token: &str, now: u64) -> Option<Verified> {
        let mut shard = self.lock(token);
        let live = |v: &Verified| now <= v.exp.saturating_add(self.leeway);
        if let Some(v) = shard.current.get(token) {
            if live(v) {
                return Some(v.clone());
            }
            shard.current.remove(token);
            return None;
        }
        let (key, v) = shard.previous.remove_entry(token)?;
        if !live(&v) {
            return None;
        }
        let answer = v.clone();
        self.admit(&mut shard, key, v);
        Some(answer)
    }

    /// Remembers a token that has just verified.
    pub(super) fn put(&self, token: &str, verified: Verified) {
        let mut shard = self.lock(token);
        self.admit(&mut shard, token.into(), verified);
    }

    fn admit(&self, shard: &mut Shard, token: Box<str>, verified: Verified) {
        if shard.current.len() >= self.per_shard && !shard.current.contains_key(&token) {
            shard.previous = std::mem::take(&mut shard.current);
        }
        shard.current.insert(token, verified);
    }

    fn lock(&self, token: &str) -> std::sync::MutexGuard<'_, Shard> {
        // A panic while holding a shard cannot leave it inconsistent (each operation is one
        // map insert or remove), so a poisoned lock is used as is.
        self.shard(token)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Entries held, over both generations.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                s.current.len() + s.previous.len()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(user: &str, exp: u64) -> Verified {
        Verified {
            caller: Caller {
                user_id: user.to_owned(),
                roles: vec!["buyer".to_owned()],
            },
            exp,
            generation: 0,
        }
    }

    #[test]
    fn a_token_is_answered_until_its_expiry_and_leeway() {
        let cache = TokenCache::new(64, 5);
        cache.put("t1", verified("u1", 100));
        assert_eq!(
            cache.get("t1", 100).map(|v| v.caller.user_id),
            Some("u1".to_owned())
        );
        assert_eq!(cache.get("t1", 105).map(|v| v.exp), Some(100));
        assert!(cache.get("t1", 106).is_none(), "past exp + leeway");
        assert!(
            cache.get("t1", 100).is_none(),
            "the expired entry was dropped"
        );
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn only_the_exact_token_is_answered() {
        let cache = TokenCache::new(64, 0);
        cache.put("header.claims.signature", verified("u1", 100));
        assert!(cache.get("header.claims.signaturf", 50).is_none());
        assert!(cache.get("header.claims.signatur", 50).is_none());
        assert!(cache.get("header.claims.signature", 50).is_some());
    }

    #[test]
    fn memory_stays_within_two_generations_and_keeps_what_is_used() {
        let capacity = 160;
        let cache = TokenCache::new(capacity, 0);
        cache.put("hot", verified("hot", 1_000));
        for i in 0..capacity * 10 {
            cache.put(&format!("token-{i}"), verified("u", 1_000));
            // The hot token is used all along: it must survive every generation change.
            assert!(
                cache.get("hot", 1).is_some(),
                "hot token lost after {i} puts"
            );
        }
        assert!(
            cache.len() <= 2 * capacity,
            "{} entries held for a capacity of {capacity}",
            cache.len()
        );
        assert!(
            cache.get("token-0", 1).is_none(),
            "the oldest cold token was evicted"
        );
    }
}
