//! Resumed TLS sessions: which presented certificates certgate takes as validated although Envoy
//! reports `peer_certificate_valid` false.
//!
//! Envoy validates a client's chain only in a full handshake; on a resumed session (a TLS 1.3 ticket,
//! a TLS 1.2 session) it reports the certificate of the original session as not validated. certgate
//! therefore remembers, per scope (the connection's local address and Envoy's filter chain name),
//! the certificates (SHA-256 digests) Envoy reported validated there, and admits a not-validated
//! certificate only when the same scope validated it recently: no later than `validity_secs` ago and
//! not past the certificate's `notAfter`. A resumed session presents the certificate of a session
//! that a full handshake established and whose key the client proved then, so the fact "Envoy
//! validated this certificate here" is what the original handshake would have said.
//!
//! The record is shared by the VM's workers through proxy-wasm shared data, in [`SLOTS`] slots
//! (a slot per hash of scope and digest; a collision overwrites, which only costs a resumed client a
//! refusal), with a per-worker cache in front of it. The host is behind [`SharedStore`].

use sha2::{Digest, Sha256};

/// How many shared-data slots the record uses (so at most this many keys, about 200 bytes each).
pub(crate) const SLOTS: u64 = 4096;
/// The longest any session Envoy's BoringSSL issues can be resumed after the full handshake that
/// validated its certificate: TLS 1.3's non-renewable authentication timeout (7 days). TLS 1.2
/// sessions end sooner, at the listener's `session_timeout` (2 hours unless set).
pub(crate) const MAX_VALIDITY_SECS: u32 = 7 * 24 * 60 * 60;
/// How many recorded certificates each worker keeps in front of the shared record (direct-mapped by
/// slot: a plain array costs the `.wasm` less than a hash map).
const LOCAL_SLOTS: u64 = 256;
/// A certificate this worker recorded less than this long ago is not written to shared data again:
/// a new connection of a known client costs no shared write, and a record's validity starts at
/// most this much earlier than it could.
const REWRITE_AFTER_SECS: i64 = 60;
/// The shared-data key prefix; the slot number follows.
const KEY_PREFIX: &str = "certgate.validated.";

/// What certgate does with a certificate Envoy reports presented but not validated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum ResumptionMode {
    /// Taken as validated when the same scope validated it recently (see the module doc).
    #[default]
    TrustValidatedOnListener,
    /// Never: every resumed session is refused `cert_not_validated`.
    Refuse,
}

impl ResumptionMode {
    /// The configuration names, the one source of truth for reading and writing them.
    pub(crate) const NAMES: &'static [(&'static str, Self)] = &[
        (
            "trust_validated_on_listener",
            ResumptionMode::TrustValidatedOnListener,
        ),
        ("refuse", ResumptionMode::Refuse),
    ];
}

/// The `session_resumption` options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resumption {
    pub(crate) mode: ResumptionMode,
    /// How long after Envoy validated a certificate in a scope it is still taken as validated there.
    pub(crate) validity_secs: u32,
}

impl Default for Resumption {
    fn default() -> Self {
        Resumption {
            mode: ResumptionMode::default(),
            validity_secs: MAX_VALIDITY_SECS,
        }
    }
}

/// How certgate takes a presented certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Validation {
    /// Envoy validated its chain on this connection: admitted, and recorded for resumed sessions.
    Validated,
    /// Envoy cannot say (before 1.39) and the policy assumes validation: admitted, not recorded.
    Assumed,
    /// Not validated on this connection, but validated recently in the same scope.
    Resumed,
    NotValidated,
}

impl Validation {
    pub(crate) fn admitted(self) -> bool {
        self != Validation::NotValidated
    }
}

impl Resumption {
    /// Whether certgate records validated certificates and looks them up.
    pub(crate) fn trusts(&self) -> bool {
        self.mode == ResumptionMode::TrustValidatedOnListener
    }

    /// Takes what Envoy reported of a presented certificate (`peer_certificate_valid`, `None` when
    /// the attribute does not exist); `recorded` asks the record, only when its answer matters.
    pub(crate) fn classify(
        &self,
        reported: Option<bool>,
        assume_presented_validated: bool,
        recorded: impl FnOnce() -> bool,
    ) -> Validation {
        match reported {
            Some(true) => Validation::Validated,
            None if assume_presented_validated => Validation::Assumed,
            Some(false) if self.trusts() && recorded() => Validation::Resumed,
            Some(false) | None => Validation::NotValidated,
        }
    }
}

/// Where Envoy validated a certificate: session tickets and session caches belong to one filter
/// chain's TLS context, and a local address to one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scope<'a> {
    /// `destination.address`.
    pub(crate) local_address: &'a str,
    /// `xds.filter_chain_name`; empty for an unnamed chain.
    pub(crate) filter_chain: &'a str,
}

impl Scope<'_> {
    /// The scope and digest as one unambiguous text (the address is length-prefixed).
    fn key(&self, digest: &str) -> String {
        format!(
            "{digest} {}:{} {}",
            self.local_address.len(),
            self.local_address,
            self.filter_chain
        )
    }
}

/// The shared-data slot number of a scope and digest key.
fn slot(key: &str) -> u64 {
    let hash = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 8];
    for (byte, from) in first.iter_mut().zip(hash.iter()) {
        *byte = *from;
    }
    u64::from_le_bytes(first) % SLOTS
}

/// The shared-data key of a slot.
fn slot_key(slot: u64) -> String {
    format!("{KEY_PREFIX}{slot}")
}

/// When Envoy validated a certificate in a scope, and until when the certificate itself is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) validated_at: i64,
    /// `None` when unknown (an identity read from Envoy's attributes).
    pub(crate) not_after: Option<i64>,
}

impl Record {
    /// Whether the record still stands at `now` for a policy with `validity_secs`.
    pub(crate) fn admits(&self, now: i64, validity_secs: u32) -> bool {
        let until = self.validated_at.saturating_add(i64::from(validity_secs));
        now < self
            .not_after
            .map_or(until, |not_after| until.min(not_after))
    }

    /// The slot value: `validated_at` and `not_after` (`i64::MAX` when unknown) as 8 bytes
    /// little-endian each, then the key.
    fn encode(&self, key: &str) -> Vec<u8> {
        let mut value = Vec::with_capacity(16 + key.len());
        value.extend_from_slice(&self.validated_at.to_le_bytes());
        value.extend_from_slice(&self.not_after.unwrap_or(i64::MAX).to_le_bytes());
        value.extend_from_slice(key.as_bytes());
        value
    }

    /// The record in a slot value, if the value is for `key` (a slot holds any colliding key).
    fn decode(value: &[u8], key: &str) -> Option<Record> {
        let number = |range: std::ops::Range<usize>| {
            value
                .get(range)
                .and_then(|bytes| bytes.try_into().ok())
                .map(i64::from_le_bytes)
        };
        if value.get(16..)? != key.as_bytes() {
            return None;
        }
        Some(Record {
            validated_at: number(0..8)?,
            not_after: Some(number(8..16)?).filter(|&not_after| not_after != i64::MAX),
        })
    }
}

/// The host's shared data (`proxy_get_shared_data` / `proxy_set_shared_data`).
pub(crate) trait SharedStore {
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    /// Writes unconditionally; `false` when the host refused.
    fn set(&self, key: &str, value: &[u8]) -> bool;
}

/// One worker's view of the record: the shared slots, and the records this worker saw recently.
#[derive(Debug)]
pub(crate) struct Ledger {
    /// Indexed by slot modulo [`LOCAL_SLOTS`]; an entry holds its key.
    local: Vec<Option<(String, Record)>>,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger {
            local: vec![None; LOCAL_SLOTS as usize],
        }
    }
}

impl Ledger {
    /// Records that Envoy validated the certificate `digest` in `scope` at `now`; `false` when the
    /// host refused the shared write (this worker still remembers it). A certificate this worker
    /// recorded within [`REWRITE_AFTER_SECS`] is not written again.
    pub(crate) fn record(
        &mut self,
        store: &impl SharedStore,
        scope: &Scope<'_>,
        digest: &str,
        not_after: Option<i64>,
        now: i64,
    ) -> bool {
        if digest.is_empty() {
            return false;
        }
        let key = scope.key(digest);
        let record = Record {
            validated_at: now,
            not_after,
        };
        let slot = slot(&key);
        let recent = self
            .local
            .get(local_index(slot))
            .and_then(Option::as_ref)
            .is_some_and(|(known, earlier)| {
                *known == key
                    && earlier.not_after == not_after
                    && now.saturating_sub(earlier.validated_at) < REWRITE_AFTER_SECS
            });
        if recent {
            return true;
        }
        let written = store.set(&slot_key(slot), &record.encode(&key));
        self.remember(slot, key, record);
        written
    }

    /// Whether Envoy validated the certificate `digest` in `scope` recently enough: this worker's
    /// cache first, then the shared slot (no hostcall when the cache answers).
    pub(crate) fn knows(
        &mut self,
        store: &impl SharedStore,
        scope: &Scope<'_>,
        digest: &str,
        now: i64,
        validity_secs: u32,
    ) -> bool {
        if digest.is_empty() {
            return false;
        }
        let key = scope.key(digest);
        let slot = slot(&key);
        let local = self.local.get(local_index(slot)).and_then(Option::as_ref);
        if local.is_some_and(|(known, record)| *known == key && record.admits(now, validity_secs)) {
            return true;
        }
        // Another worker may have validated it since, or later than this worker saw.
        let Some(record) = store
            .get(&slot_key(slot))
            .and_then(|value| Record::decode(&value, &key))
        else {
            return false;
        };
        self.remember(slot, key, record);
        record.admits(now, validity_secs)
    }

    fn remember(&mut self, slot: u64, key: String, record: Record) {
        if let Some(entry) = self.local.get_mut(local_index(slot)) {
            *entry = Some((key, record));
        }
    }
}

fn local_index(slot: u64) -> usize {
    // Below LOCAL_SLOTS, which fits any usize.
    (slot % LOCAL_SLOTS) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    /// A shared-data store that counts its calls and can refuse writes.
    #[derive(Default)]
    struct FakeStore {
        values: RefCell<HashMap<String, Vec<u8>>>,
        gets: Cell<usize>,
        sets: Cell<usize>,
        refuse_writes: bool,
    }

    impl SharedStore for FakeStore {
        fn get(&self, key: &str) -> Option<Vec<u8>> {
            self.gets.set(self.gets.get() + 1);
            self.values.borrow().get(key).cloned()
        }

        fn set(&self, key: &str, value: &[u8]) -> bool {
            self.sets.set(self.sets.get() + 1);
            if self.refuse_writes {
                return false;
            }
            self.values
                .borrow_mut()
                .insert(key.to_owned(), value.to_vec());
            true
        }
    }

    const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const OTHER_DIGEST: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";
    const NOW: i64 = 1_800_000_000;
    const HOUR: u32 = 3600;

    fn scope(local_address: &str) -> Scope<'_> {
        Scope {
            local_address,
            filter_chain: "mtls",
        }
    }

    #[test]
    fn classification_table() {
        let trust = Resumption::default();
        let refuse = Resumption {
            mode: ResumptionMode::Refuse,
            ..Resumption::default()
        };
        // (case, options, reported, assume, recorded, expected)
        let table = [
            (
                "validated",
                trust,
                Some(true),
                false,
                false,
                Validation::Validated,
            ),
            (
                "validated, refuse",
                refuse,
                Some(true),
                false,
                false,
                Validation::Validated,
            ),
            (
                "resumed, recorded",
                trust,
                Some(false),
                false,
                true,
                Validation::Resumed,
            ),
            (
                "resumed, unknown",
                trust,
                Some(false),
                false,
                false,
                Validation::NotValidated,
            ),
            (
                "resumed, refuse",
                refuse,
                Some(false),
                false,
                true,
                Validation::NotValidated,
            ),
            (
                "old Envoy, assumed",
                trust,
                None,
                true,
                false,
                Validation::Assumed,
            ),
            (
                "old Envoy",
                trust,
                None,
                false,
                true,
                Validation::NotValidated,
            ),
            (
                "not validated, assume set",
                trust,
                Some(false),
                true,
                false,
                Validation::NotValidated,
            ),
        ];
        for (case, options, reported, assume, recorded, expected) in table {
            assert_eq!(
                options.classify(reported, assume, || recorded),
                expected,
                "{case}"
            );
        }
    }

    #[test]
    fn the_record_is_asked_only_when_its_answer_matters() {
        let asked = Cell::new(0);
        let ask = || {
            asked.set(asked.get() + 1);
            true
        };
        let trust = Resumption::default();
        trust.classify(Some(true), false, ask);
        trust.classify(None, false, ask);
        Resumption {
            mode: ResumptionMode::Refuse,
            ..trust
        }
        .classify(Some(false), false, ask);
        assert_eq!(asked.get(), 0);
        trust.classify(Some(false), false, ask);
        assert_eq!(asked.get(), 1);
    }

    #[test]
    fn a_record_stands_until_the_validity_or_the_certificate_ends() {
        let record = Record {
            validated_at: NOW,
            not_after: Some(NOW + 10 * i64::from(HOUR)),
        };
        assert!(record.admits(NOW, HOUR));
        assert!(record.admits(NOW + i64::from(HOUR) - 1, HOUR));
        assert!(!record.admits(NOW + i64::from(HOUR), HOUR));
        // The certificate's end comes first.
        assert!(record.admits(NOW + 10 * i64::from(HOUR) - 1, 20 * HOUR));
        assert!(!record.admits(NOW + 10 * i64::from(HOUR), 20 * HOUR));
        let unknown_end = Record {
            validated_at: NOW,
            not_after: None,
        };
        assert!(unknown_end.admits(NOW + i64::from(HOUR) - 1, HOUR));
        assert!(!unknown_end.admits(NOW + i64::from(HOUR), HOUR));
        let far = Record {
            validated_at: i64::MAX - 1,
            not_after: None,
        };
        assert!(far.admits(i64::MAX - 1, MAX_VALIDITY_SECS), "no overflow");
    }

    #[test]
    fn slot_values_round_trip_and_name_their_scope() {
        let key = scope("10.0.0.1:8443").key(DIGEST);
        for not_after in [Some(NOW + 5), None, Some(-1)] {
            let record = Record {
                validated_at: NOW,
                not_after,
            };
            assert_eq!(Record::decode(&record.encode(&key), &key), Some(record));
        }
        let record = Record {
            validated_at: NOW,
            not_after: None,
        };
        let value = record.encode(&key);
        for other in [
            scope("10.0.0.2:8443").key(DIGEST),
            scope("10.0.0.1:8443").key(OTHER_DIGEST),
            Scope {
                local_address: "10.0.0.1:8443",
                filter_chain: "other",
            }
            .key(DIGEST),
        ] {
            assert_eq!(Record::decode(&value, &other), None, "{other}");
        }
        for garbage in [&b""[..], b"12", &value[..15], &value[..value.len() - 1]] {
            assert_eq!(Record::decode(garbage, &key), None, "{garbage:?}");
        }
    }

    #[test]
    fn the_address_is_length_prefixed_so_scopes_never_alias() {
        let a = Scope {
            local_address: "a b",
            filter_chain: "c",
        };
        let b = Scope {
            local_address: "a",
            filter_chain: "b c",
        };
        assert_ne!(a.key(DIGEST), b.key(DIGEST));
    }

    #[test]
    fn slots_are_bounded_and_stable() {
        let mut seen = std::collections::HashSet::new();
        for port in 0..20_000u32 {
            let number = slot(&scope(&format!("10.0.0.1:{port}")).key(DIGEST));
            assert!(number < SLOTS, "{number}");
            seen.insert(number);
        }
        assert!(
            seen.len() > 3000,
            "spread over the slots: {} used",
            seen.len()
        );
        let key = scope("10.0.0.1:8443").key(DIGEST);
        assert_eq!(slot(&key), slot(&key));
        assert_eq!(slot_key(7), "certgate.validated.7");
    }

    #[test]
    fn a_certificate_validated_in_a_scope_is_known_there_only() {
        let store = FakeStore::default();
        let mut ledger = Ledger::default();
        let here = scope("10.0.0.1:8443");
        assert!(ledger.record(&store, &here, DIGEST, None, NOW));
        assert!(ledger.knows(&store, &here, DIGEST, NOW + 1, HOUR));
        assert!(!ledger.knows(&store, &scope("10.0.0.1:9443"), DIGEST, NOW + 1, HOUR));
        assert!(!ledger.knows(&store, &here, OTHER_DIGEST, NOW + 1, HOUR));
        let other_chain = Scope {
            filter_chain: "accept-untrusted",
            ..here
        };
        assert!(!ledger.knows(&store, &other_chain, DIGEST, NOW + 1, HOUR));
        assert!(!ledger.knows(&store, &here, DIGEST, NOW + i64::from(HOUR), HOUR));
    }

    #[test]
    fn workers_share_the_record_and_cache_what_they_learn() {
        let store = FakeStore::default();
        let here = scope("10.0.0.1:8443");
        let mut first_worker = Ledger::default();
        let mut second_worker = Ledger::default();
        first_worker.record(&store, &here, DIGEST, None, NOW);
        assert!(first_worker.knows(&store, &here, DIGEST, NOW, HOUR));
        assert_eq!(store.gets.get(), 0, "the recording worker knows it already");
        assert!(second_worker.knows(&store, &here, DIGEST, NOW, HOUR));
        assert!(second_worker.knows(&store, &here, DIGEST, NOW, HOUR));
        assert_eq!(store.gets.get(), 1, "then the other worker knows it too");
    }

    #[test]
    fn a_certificate_recorded_a_moment_ago_is_not_written_again() {
        let store = FakeStore::default();
        let here = scope("10.0.0.1:8443");
        let mut ledger = Ledger::default();
        assert!(ledger.record(&store, &here, DIGEST, None, NOW));
        assert!(ledger.record(&store, &here, DIGEST, None, NOW + REWRITE_AFTER_SECS - 1));
        assert_eq!(store.sets.get(), 1, "a new connection of a known client");
        ledger.record(&store, &here, DIGEST, None, NOW + REWRITE_AFTER_SECS);
        assert_eq!(store.sets.get(), 2, "refreshed once a minute at most");
        ledger.record(&store, &here, OTHER_DIGEST, None, NOW + REWRITE_AFTER_SECS);
        ledger.record(
            &store,
            &scope("10.0.0.2:8443"),
            DIGEST,
            None,
            NOW + REWRITE_AFTER_SECS,
        );
        assert_eq!(
            store.sets.get(),
            4,
            "another certificate or scope is written"
        );
    }

    #[test]
    fn a_later_validation_elsewhere_renews_a_stale_local_record() {
        let store = FakeStore::default();
        let here = scope("10.0.0.1:8443");
        let mut first_worker = Ledger::default();
        let mut second_worker = Ledger::default();
        first_worker.record(&store, &here, DIGEST, None, NOW);
        let later = NOW + i64::from(HOUR);
        second_worker.record(&store, &here, DIGEST, None, later);
        assert!(first_worker.knows(&store, &here, DIGEST, later + 1, HOUR));
    }

    #[test]
    fn a_colliding_record_costs_a_refusal_and_nothing_else() {
        let store = FakeStore::default();
        let here = scope("10.0.0.1:8443");
        let key = here.key(DIGEST);
        // Another scope and digest overwrote the slot.
        let intruder = Record {
            validated_at: NOW,
            not_after: None,
        }
        .encode(&scope("10.9.9.9:1").key(OTHER_DIGEST));
        store
            .values
            .borrow_mut()
            .insert(slot_key(slot(&key)), intruder);
        assert!(!Ledger::default().knows(&store, &here, DIGEST, NOW, HOUR));
    }

    #[test]
    fn a_refused_write_is_reported_and_remembered_by_the_worker() {
        let store = FakeStore {
            refuse_writes: true,
            ..FakeStore::default()
        };
        let here = scope("10.0.0.1:8443");
        let mut ledger = Ledger::default();
        assert!(!ledger.record(&store, &here, DIGEST, None, NOW));
        assert!(ledger.knows(&store, &here, DIGEST, NOW, HOUR));
        assert!(!Ledger::default().knows(&store, &here, DIGEST, NOW, HOUR));
    }

    #[test]
    fn an_empty_digest_is_never_recorded_nor_known() {
        let store = FakeStore::default();
        let here = scope("10.0.0.1:8443");
        let mut ledger = Ledger::default();
        assert!(!ledger.record(&store, &here, "", None, NOW));
        assert!(!ledger.knows(&store, &here, "", NOW, HOUR));
        assert!(store.values.borrow().is_empty());
    }
}
