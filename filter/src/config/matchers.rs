//! Matcher lists as `routes[].allow`, `routes[].deny` and `trusted_proxies.identities` write them:
//! `{"dns": "..."}` and its siblings, one key per object.

use super::json::Json;
use super::read::*;
use crate::decide::matcher::{Matcher, MatcherKind, MatcherSet};

/// `{"dns": "..."}` and its siblings: exactly one key per object.
pub(super) fn matcher(value: &Json, path: &str, problems: &mut Problems<'_>) -> Option<RawMatcher> {
    let Json::Object(members) = value else {
        return invalid_type(value, path, "a JSON object", problems);
    };
    let keys = || MatcherKind::ALL.iter().map(|kind| kind.key());
    let [(key, pattern)] = members.as_slice() else {
        problems.add(
            path,
            format!("expected exactly one key, {}", alternatives(keys())),
        );
        return None;
    };
    let Some(kind) = MatcherKind::ALL.into_iter().find(|kind| kind.key() == key) else {
        problems.add(
            path,
            format!("unknown variant `{key}`, expected {}", alternatives(keys())),
        );
        return None;
    };
    string(pattern, &field_path(path, key), problems).map(|pattern| (kind, pattern))
}

/// A matcher's kind and its pattern as written.
pub(super) type RawMatcher = (MatcherKind, String);

pub(super) fn compile_matchers(
    raw: &[RawMatcher],
    path: &str,
    problems: &mut Problems<'_>,
) -> MatcherSet {
    let matchers = raw
        .iter()
        .enumerate()
        .filter_map(|(index, (kind, value))| {
            Matcher::parse(*kind, value)
                .map_err(|message| problems.add(format!("{path}[{index}].{}", kind.key()), message))
                .ok()
        })
        .collect();
    MatcherSet::new(matchers)
}
