//! Shared data (`proxy_get_shared_data` / `proxy_set_shared_data`): a key-value store with
//! compare-and-swap tokens that several plugins can share, as every VM with the same `vm_id`
//! shares it inside one Envoy process (one VM per worker thread).

use crate::abi::Status;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// A shared-data store. Cloning shares it: give the same store to several plugins (through
/// [`PluginSettings::shared_data`](crate::PluginSettings::shared_data)) to model Envoy workers.
///
/// ```
/// use host_harness::{SharedData, Status};
/// let store = SharedData::new();
/// assert_eq!(store.set(b"k", b"v1", 0), Status::Ok);
/// let (_, cas) = store.get(b"k").unwrap();
/// assert_eq!(store.set(b"k", b"v2", cas + 1), Status::CasMismatch);
/// assert_eq!(store.set(b"k", b"v2", cas), Status::Ok);
/// ```
#[derive(Clone, Default)]
pub struct SharedData {
    inner: Arc<Mutex<Entries>>,
}

#[derive(Default)]
struct Entries {
    values: BTreeMap<Vec<u8>, (Vec<u8>, u32)>,
    last_cas: u32,
}

impl std::fmt::Debug for SharedData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedData")
            .field("entries", &self.lock().values.len())
            .finish()
    }
}

impl SharedData {
    pub fn new() -> SharedData {
        SharedData::default()
    }

    // A panic while holding the lock leaves the map consistent (every write is one insert), so a
    // poisoned lock is still usable.
    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The value and CAS token of `key`.
    pub fn get(&self, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        self.lock().values.get(key).cloned()
    }

    /// cpp-host's semantics: CAS 0 writes unconditionally, a non-zero CAS must match the current
    /// token of an existing key (CAS_MISMATCH otherwise), and every write takes a new token.
    pub fn set(&self, key: &[u8], value: &[u8], cas: u32) -> Status {
        let mut entries = self.lock();
        if let Some((_, current)) = entries.values.get(key) {
            if cas != 0 && cas != *current {
                return Status::CasMismatch;
            }
        }
        entries.last_cas = entries.last_cas.wrapping_add(1).max(1);
        let token = entries.last_cas;
        entries.values.insert(key.to_vec(), (value.to_vec(), token));
        Status::Ok
    }
}
