//! A rewrite of the request headers (names removed, values set) and how to apply it with the fewest
//! hostcalls.
//!
//! Envoy's `replace` hostcall overwrites only the first of duplicate headers, so a name that arrived
//! twice takes a remove and an add. Any rewrite of two or more operations is therefore sent as one
//! whole map (`proxy_set_header_map_pairs`, one hostcall) instead.

pub mod forwarded;
pub mod forwarding;

use crate::facts::pairs::HeaderPairs;

/// The headers to remove (every value, every spelling) and the values to set (lowercase names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderRewrite<'a> {
    /// Names as they arrived (one entry per distinct spelling).
    removed: Vec<&'a [u8]>,
    set: Vec<(&'a str, Vec<u8>)>,
}

/// One hostcall of the operation-by-operation way of applying a rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderEdit<'a> {
    Remove(&'a [u8]),
    Replace(&'a str, &'a [u8]),
    Add(&'a str, &'a [u8]),
}

/// The hostcalls that apply a rewrite: none, one edit, or the whole map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RewriteCalls<'a> {
    Nothing,
    /// One edit, one hostcall.
    Edit(HeaderEdit<'a>),
    /// The whole new map, one hostcall.
    WholeMap(Vec<(&'a [u8], &'a [u8])>),
}

impl<'a> HeaderRewrite<'a> {
    /// Removes every value of a received header name.
    pub(crate) fn remove(&mut self, name: &'a [u8]) {
        if !self.removed.contains(&name) {
            self.removed.push(name);
        }
    }

    /// Sets a header (a lowercase name) to one value, dropping whatever arrived under that name.
    pub(crate) fn set(&mut self, name: &'a str, value: Vec<u8>) {
        self.set.retain(|(known, _)| *known != name);
        self.set.push((name, value));
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.set.is_empty()
    }

    /// The rewrite as individual hostcalls, given the headers it applies to.
    pub(crate) fn edits<'m>(&'m self, headers: &HeaderPairs<'_>) -> Vec<HeaderEdit<'m>> {
        let mut edits = Vec::new();
        for (index, name) in self.removed.iter().enumerate() {
            let also_set = self
                .set
                .iter()
                .any(|(set, _)| name.eq_ignore_ascii_case(set.as_bytes()));
            let spelled_before = self
                .removed
                .get(..index)
                .unwrap_or_default()
                .iter()
                .any(|earlier| earlier.eq_ignore_ascii_case(name));
            if !also_set && !spelled_before {
                edits.push(HeaderEdit::Remove(name));
            }
        }
        for (name, value) in &self.set {
            let arrived = headers
                .iter()
                .filter(|(key, _)| key.eq_ignore_ascii_case(name.as_bytes()))
                .count();
            match arrived {
                0 => edits.push(HeaderEdit::Add(name, value)),
                1 => edits.push(HeaderEdit::Replace(name, value)),
                _ => {
                    edits.push(HeaderEdit::Remove(name.as_bytes()));
                    edits.push(HeaderEdit::Add(name, value));
                }
            }
        }
        edits
    }

    /// The whole map after the rewrite: untouched headers in their order, then the set ones.
    pub fn apply<'m>(&'m self, headers: &HeaderPairs<'m>) -> Vec<(&'m [u8], &'m [u8])> {
        let touched = |key: &[u8]| {
            self.removed
                .iter()
                .any(|name| key.eq_ignore_ascii_case(name))
                || self
                    .set
                    .iter()
                    .any(|(name, _)| key.eq_ignore_ascii_case(name.as_bytes()))
        };
        headers
            .iter()
            .filter(|(key, _)| !touched(key))
            .copied()
            .chain(
                self.set
                    .iter()
                    .map(|(name, value)| (name.as_bytes(), value.as_slice())),
            )
            .collect()
    }

    /// The cheapest application: nothing, one edit, or the whole map in one hostcall.
    pub fn calls<'m>(&'m self, headers: &HeaderPairs<'m>) -> RewriteCalls<'m> {
        let edits = self.edits(headers);
        match edits.as_slice() {
            [] => RewriteCalls::Nothing,
            [edit] => RewriteCalls::Edit(*edit),
            _ => RewriteCalls::WholeMap(self.apply(headers)),
        }
    }
}

/// Whether a received header name is a spelling of a (lowercase) header name certgate owns: any
/// letter case, and `_` for `-`, since some servers map `x_client_dns` onto `x-client-dns`.
pub fn is_spelling_of(received: &[u8], owned: &str) -> bool {
    received.len() == owned.len()
        && received
            .iter()
            .zip(owned.bytes())
            .all(|(r, o)| r.to_ascii_lowercase() == o || (*r == b'_' && o == b'-'))
}

#[cfg(test)]
mod tests {
    mod forwarding_headers;
}
