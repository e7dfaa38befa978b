//! An ordered, multi-valued header map with Envoy's semantics: keys are lowercased when stored,
//! lookups ignore case, and repeated keys keep every value in arrival order.

use std::fmt;
use std::sync::Arc;

/// Headers (or trailers) in arrival order. Keys are stored lowercased, as Envoy's
/// `LowerCaseString` does; values are kept byte for byte.
///
/// Clones share the entries until one of them changes (copy on write): the upstream request, the
/// stream's maps and the client's response hold the same headers without copying every string.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HeaderMap {
    entries: Arc<Vec<(String, String)>>,
}

impl HeaderMap {
    pub fn new() -> HeaderMap {
        HeaderMap::default()
    }

    /// An empty map with room for `capacity` headers before it grows.
    pub(crate) fn with_capacity(capacity: usize) -> HeaderMap {
        HeaderMap {
            entries: Arc::new(Vec::with_capacity(capacity)),
        }
    }

    /// Builds a map from pairs, lowercasing keys and keeping duplicates.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (key, value) in pairs {
            map.add(key.as_ref(), value.as_ref());
        }
        map
    }

    /// The first value of `key`, as `proxy_get_header_map_value` returns it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn get_all(&self, key: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Every value of `key` joined with `,`, as Envoy's attribute lookups
    /// (`request.headers[...]`) return repeated headers.
    pub fn get_joined(&self, key: &str) -> Option<String> {
        let values = self.get_all(key);
        (!values.is_empty()).then(|| values.join(","))
    }

    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Appends a value, keeping existing ones (`proxy_add_header_map_value`).
    pub fn add(&mut self, key: &str, value: &str) {
        self.add_owned(key, value.to_string());
    }

    /// [`HeaderMap::add`] for a value the caller built and no longer needs. A pseudo-header
    /// (`:name`) goes after the last pseudo-header, not at the end: Envoy's header map keeps
    /// pseudo-headers ahead of regular ones whatever order they were added in.
    pub(crate) fn add_owned(&mut self, key: &str, value: String) {
        let key = key.to_ascii_lowercase();
        let entries = Arc::make_mut(&mut self.entries);
        if key.starts_with(':') {
            let regular = entries
                .iter()
                .position(|(k, _)| !k.starts_with(':'))
                .unwrap_or(entries.len());
            entries.insert(regular, (key, value));
        } else {
            entries.push((key, value));
        }
    }

    /// Replaces every value of `key` with one value in the place of the first
    /// (`proxy_replace_header_map_value`, Envoy's `setCopy`); appends when absent.
    pub fn set(&mut self, key: &str, value: &str) {
        self.set_owned(key, value.to_string());
    }

    /// [`HeaderMap::set`] for a value the caller built and no longer needs.
    pub(crate) fn set_owned(&mut self, key: &str, value: String) {
        match self
            .entries
            .iter()
            .position(|(k, _)| k.eq_ignore_ascii_case(key))
        {
            Some(first) => {
                let entries = Arc::make_mut(&mut self.entries);
                entries[first].1 = value;
                let mut index = 0;
                entries.retain(|(k, _)| {
                    let keep = index <= first || !k.eq_ignore_ascii_case(key);
                    index += 1;
                    keep
                });
            }
            None => self.add_owned(key, value),
        }
    }

    /// Replaces every value of `key` with one value at the end, as a guest's
    /// `proxy_replace_header_map_value` does in Envoy: its `setCopy` removes the key and appends
    /// it (a pseudo-header after the last pseudo-header). Envoy's own inline setters (the codec's
    /// `:authority`, the HCM's `:path`) keep the place, which is [`HeaderMap::set`].
    pub fn replace(&mut self, key: &str, value: &str) {
        self.remove(key);
        self.add(key, value);
    }

    /// Removes every value of `key`.
    pub fn remove(&mut self, key: &str) {
        if self.contains(key) {
            Arc::make_mut(&mut self.entries).retain(|(k, _)| !k.eq_ignore_ascii_case(key));
        }
    }

    /// Keeps only the entries whose name passes `keep`.
    pub(crate) fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        if !self.entries.iter().all(|(k, _)| keep(k)) {
            Arc::make_mut(&mut self.entries).retain(|(k, _)| keep(k));
        }
    }

    /// Whether some name arrives more than once.
    pub(crate) fn has_repeated_names(&self) -> bool {
        let entries = &self.entries;
        (1..entries.len()).any(|at| entries[..at].iter().any(|(k, _)| *k == entries[at].0))
    }

    /// Number of entries, counting each repeated value (what the guest receives as the header
    /// count of `proxy_on_*_headers`).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sum of key and value lengths: Envoy's `byteSize()`, returned by `proxy_get_header_map_size`.
    pub fn byte_size(&self) -> usize {
        self.entries.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The entries, in order.
    pub(crate) fn entries(&self) -> &[(String, String)] {
        &self.entries
    }

    /// The entries as owned pairs, in order.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        self.entries.to_vec()
    }
}

impl fmt::Debug for HeaderMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(k, v)| format!("{k}: {v}")))
            .finish()
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> From<[(K, V); N]> for HeaderMap {
    fn from(pairs: [(K, V); N]) -> HeaderMap {
        HeaderMap::from_pairs(&pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_lowercased_and_lookups_ignore_case() {
        let mut map = HeaderMap::new();
        map.add("X-Thing", "1");
        assert_eq!(map.get("x-thing"), Some("1"));
        assert_eq!(map.iter().next(), Some(("x-thing", "1")));
    }

    #[test]
    fn set_replaces_all_values_in_place_of_the_first() {
        let mut map = HeaderMap::from_pairs(&[("a", "1"), ("b", "2"), ("a", "3")]);
        map.set("A", "9");
        assert_eq!(
            map.to_pairs(),
            vec![("a".into(), "9".into()), ("b".into(), "2".into())]
        );
    }

    #[test]
    fn replace_moves_the_key_to_the_end_of_its_section() {
        let mut map = HeaderMap::from_pairs(&[(":path", "/"), ("a", "1"), ("b", "2"), ("a", "3")]);
        map.replace("A", "9");
        map.add(":method", "GET");
        map.replace(":path", "/x");
        assert_eq!(
            map.to_pairs(),
            vec![
                (":method".into(), "GET".into()),
                (":path".into(), "/x".into()),
                ("b".into(), "2".into()),
                ("a".into(), "9".into()),
            ]
        );
    }

    #[test]
    fn pseudo_headers_stay_ahead_of_regular_ones() {
        let mut map = HeaderMap::from_pairs(&[("x-a", "1"), (":method", "GET"), ("x-b", "2")]);
        map.add(":scheme", "https");
        map.set(":authority", "example.org");
        map.set(":method", "POST");
        let keys: Vec<&str> = map.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, [":method", ":scheme", ":authority", "x-a", "x-b"]);
        assert_eq!(map.get(":method"), Some("POST"));
    }

    #[test]
    fn repeated_values_are_kept_and_joined() {
        let map = HeaderMap::from_pairs(&[("xff", "1.1.1.1"), ("xff", "2.2.2.2")]);
        assert_eq!(map.get("xff"), Some("1.1.1.1"));
        assert_eq!(map.get_joined("xff").as_deref(), Some("1.1.1.1,2.2.2.2"));
        assert_eq!(map.byte_size(), 20);
    }
}
