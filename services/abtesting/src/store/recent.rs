//! Which exposures this replica queued recently, so a user assigned again — every page view
//! asks — is not queued again (GrowthBook's SDKs de-duplicate per session the same way).
//! Results count a user once, in the variant of their first exposure, so a repeat adds a row
//! and nothing else; at high assignment rates the repeats filled the writer's queue and pushed
//! out first exposures, which undercounted the groups.
//!
//! Memory is bounded: each of [`SHARDS`] shards keeps two generations of at most
//! `per_generation` keys; when the current one fills it becomes the previous one and the
//! oldest generation is forgotten. A forgotten exposure that comes back is queued once more,
//! which is harmless for the reason above.

use std::{
    collections::HashSet,
    hash::{BuildHasher, Hash, RandomState},
    sync::Mutex,
};

/// Shards, so assignments on different threads rarely wait for the same lock.
pub const SHARDS: usize = 16;

/// Keys per generation and shard by default: 16 × 2 × 16,384 ≈ 524,000 remembered exposures
/// in about 12 MiB per replica.
pub const DEFAULT_PER_GENERATION: usize = 16_384;

#[derive(Debug, Default)]
struct Generations {
    current: HashSet<u64>,
    previous: HashSet<u64>,
}

/// The set of recently queued exposures.
#[derive(Debug)]
pub struct Recent {
    hasher: RandomState,
    shards: [Mutex<Generations>; SHARDS],
    per_generation: usize,
}

impl Default for Recent {
    fn default() -> Self {
        Self::new(DEFAULT_PER_GENERATION)
    }
}

/// One exposure's identity: the experiment, the variant and the user. A user moved to another
/// variant (a forced update) is a new exposure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key(u64);

impl Recent {
    /// A set remembering up to `2 × SHARDS × per_generation` exposures (`per_generation` ≥ 1).
    pub fn new(per_generation: usize) -> Self {
        Self {
            hasher: RandomState::new(),
            shards: std::array::from_fn(|_| Mutex::new(Generations::default())),
            per_generation: per_generation.max(1),
        }
    }

    /// The key of an exposure. A 64-bit hash: two exposures collide with odds of about
    /// n²/2⁶⁵, and a collision only skips one repeat-looking row.
    pub fn key(&self, experiment: &str, variation: u32, user: &str) -> Key {
        let mut h = self.hasher.build_hasher();
        (experiment, variation, user).hash(&mut h);
        Key(std::hash::Hasher::finish(&h))
    }

    fn shard(&self, key: Key) -> &Mutex<Generations> {
        // The low bits pick the shard; HashSet rehashes the whole key inside it.
        &self.shards[(key.0 as usize) % SHARDS]
    }

    /// Remembers `key`; `false` when it was already remembered (a repeat: skip it).
    pub fn insert(&self, key: Key) -> bool {
        let mut g = self
            .shard(key)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if g.current.contains(&key.0) || g.previous.contains(&key.0) {
            return false;
        }
        if g.current.len() >= self.per_generation {
            g.previous = std::mem::take(&mut g.current);
        }
        g.current.insert(key.0);
        true
    }

    /// Forgets `key`: its exposure was not queued after all, so the next one must be.
    pub fn remove(&self, key: Key) {
        let mut g = self
            .shard(key)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.current.remove(&key.0);
        g.previous.remove(&key.0);
    }

    /// Keys remembered now (both generations, every shard).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let g = s.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                g.current.len() + g.previous.len()
            })
            .sum()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_repeat_is_refused_and_another_variant_or_user_is_not() {
        let r = Recent::default();
        assert!(r.insert(r.key("checkout", 1, "u1")));
        assert!(!r.insert(r.key("checkout", 1, "u1")));
        assert!(r.insert(r.key("checkout", 2, "u1")));
        assert!(r.insert(r.key("checkout", 1, "u2")));
        assert!(r.insert(r.key("banner", 1, "u1")));
        assert_eq!(r.len(), 4);
    }

    #[test]
    fn a_removed_key_is_accepted_again() {
        let r = Recent::default();
        let k = r.key("checkout", 0, "u1");
        assert!(r.insert(k));
        r.remove(k);
        assert!(r.insert(k));
    }

    #[test]
    fn the_oldest_generation_is_forgotten_and_memory_stays_bounded() {
        let r = Recent::new(2);
        let keys: Vec<Key> = (0..10_000)
            .map(|i| r.key("e", 0, &format!("u{i}")))
            .collect();
        for k in &keys {
            assert!(r.insert(*k));
        }
        assert!(r.len() <= 2 * SHARDS * 2, "{} keys kept", r.len());
        // The first keys were forgotten long ago: they are accepted again.
        assert!(r.insert(keys[0]));
        // The last one is still remembered.
        assert!(!r.insert(keys[9_999]));
    }

    proptest! {
        /// Whatever the order, each distinct exposure is accepted exactly once while the set
        /// is large enough to remember them all.
        #[test]
        fn each_distinct_exposure_is_accepted_once(
            visits in prop::collection::vec((0u8..4, 0u32..3, 0u16..200), 0..2_000),
        ) {
            let r = Recent::new(1_000);
            let mut accepted = HashSet::new();
            for (e, v, u) in visits {
                let first = accepted.insert((e, v, u));
                let k = r.key(&format!("e{e}"), v, &format!("u{u}"));
                prop_assert_eq!(r.insert(k), first);
            }
        }
    }
}
