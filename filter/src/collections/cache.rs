//! A small cache that keeps what was used recently, so each certificate is parsed once, and each
//! connection's facts read once, not once per request.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// Keeps at most `capacity` entries in two generations: new and used entries go to the recent
/// one; when it is full it becomes the older one and the previous older one is dropped. An entry
/// used again within half the capacity of other insertions survives, and every operation is
/// constant time: a stream of new keys (a new connection per request) never scans the cache.
#[derive(Debug)]
pub(crate) struct TwoGenerationCache<K, V> {
    generation: usize,
    recent: HashMap<K, V>,
    older: HashMap<K, V>,
}

impl<K: Eq + Hash, V: Clone> TwoGenerationCache<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        TwoGenerationCache {
            generation: (capacity / 2).max(1),
            recent: HashMap::new(),
            older: HashMap::new(),
        }
    }

    pub(crate) fn get<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        if let Some(value) = self.recent.get(key) {
            return Some(value.clone());
        }
        let (key, value) = self.older.remove_entry(key)?;
        self.keep(key, value.clone());
        Some(value)
    }

    pub(crate) fn insert(&mut self, key: K, value: V) {
        self.older.remove(&key);
        self.keep(key, value);
    }

    fn keep(&mut self, key: K, value: V) {
        if self.recent.len() >= self.generation && !self.recent.contains_key(&key) {
            self.older = std::mem::take(&mut self.recent);
        }
        self.recent.insert(key, value);
    }

    /// How many entries the two generations hold (what the tests bound).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.recent.len() + self.older.len()
    }
}

#[cfg(test)]
mod tests {
    use super::TwoGenerationCache;

    #[test]
    fn entries_used_again_survive_and_stale_ones_go() {
        let mut cache = TwoGenerationCache::new(8);
        for key in 0..5 {
            cache.insert(key, key * 10);
        }
        // 0..4 are the older generation now; 0 is used again and moves to the recent one.
        assert_eq!(cache.get(&0), Some(0));
        for key in 5..8 {
            cache.insert(key, key * 10);
        }
        assert_eq!(
            (cache.get(&1), cache.get(&2), cache.get(&3)),
            (None, None, None)
        );
        for key in [0, 4, 5, 6, 7] {
            assert_eq!(cache.get(&key), Some(key * 10), "key {key}");
        }
    }

    #[test]
    fn a_stream_of_new_keys_never_exceeds_the_capacity() {
        let mut cache = TwoGenerationCache::new(1024);
        for key in 0..100_000u64 {
            cache.insert(key, ());
            assert!(cache.len() <= 1024);
        }
        assert_eq!(cache.get(&99_999), Some(()));
    }

    #[test]
    fn replacing_a_key_keeps_one_entry_with_the_new_value() {
        let mut cache = TwoGenerationCache::new(4);
        cache.insert("a", 1);
        cache.insert("b", 2);
        cache.insert("c", 3);
        cache.insert("a", 4);
        assert_eq!((cache.get("a"), cache.len()), (Some(4), 3));
    }
}
