//! What makes a warning, or an observation, once per connection or per certificate: a small ring
//! of recent keys, and the certificates a worker has seen.

use crate::collections::cache::TwoGenerationCache;
use crate::identity::PeerIdentity;
use rustc_hash::FxHasher;
use std::hash::Hasher as _;

/// The last keys seen, in a fixed ring: what makes a warning once per connection or certificate
/// without a hash map (a warning repeats only after `capacity` newer keys).
#[derive(Debug)]
pub(crate) struct WarnOnce {
    keys: Vec<u64>,
    next: usize,
    capacity: usize,
}

impl WarnOnce {
    pub(crate) fn new(capacity: usize) -> Self {
        WarnOnce {
            keys: Vec::new(),
            next: 0,
            capacity: capacity.max(1),
        }
    }

    /// Whether `key` is not among the recent keys (it is from now on).
    pub(crate) fn first_time(&mut self, key: u64) -> bool {
        if self.keys.contains(&key) {
            return false;
        }
        if self.keys.len() < self.capacity {
            self.keys.push(key);
        } else if let Some(slot) = self.keys.get_mut(self.next) {
            *slot = key;
        }
        self.next = (self.next + 1) % self.capacity;
        true
    }
}

/// The certificates a worker has seen (their digests, hashed): what observes a certificate's expiry
/// once, however many requests it makes, so a chatty client weighs in the expiry histogram what a
/// quiet one does. Bounded: a certificate out of sight for more than half the capacity of newer
/// ones is observed again.
#[derive(Debug)]
pub(crate) struct SeenCertificates(TwoGenerationCache<u64, ()>);

impl SeenCertificates {
    pub(crate) fn new(capacity: usize) -> Self {
        SeenCertificates(TwoGenerationCache::new(capacity))
    }

    /// Whether `identity` is seen for the first time (it is seen from now on).
    pub(crate) fn first_sight(&mut self, identity: &PeerIdentity) -> bool {
        let mut hasher = FxHasher::default();
        hasher.write(identity.sha256.as_bytes());
        let key = hasher.finish();
        if self.0.get(&key).is_some() {
            return false;
        }
        self.0.insert(key, ());
        true
    }
}
