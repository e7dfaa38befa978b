//! `SpiffeId::parse` against the SPIFFE ID grammar written out the plain way (split on `/`), on
//! chosen edge cases and on generated strings of the bytes that matter.

use crate::names::uri::{SpiffeId, UriPattern};
use proptest::prelude::*;

/// The grammar as the type documents it: `spiffe://`, a trust domain of `[a-z0-9._-]`, then
/// optionally `/` and non-empty segments of `[A-Za-z0-9._-]`, none `.` or `..`.
fn spec(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("spiffe://")?;
    let (domain, path) = match rest.split_once('/') {
        Some((domain, path)) => (domain, Some(path)),
        None => (rest, None),
    };
    let domain_ok = !domain.is_empty()
        && domain.len() <= 255
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    let segment_ok = |segment: &str| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
    };
    match path {
        _ if !domain_ok => None,
        None => Some((domain, "")),
        Some(path) if path.split('/').all(segment_ok) => Some((domain, path)),
        Some(_) => None,
    }
}

fn parsed(uri: &str) -> Option<(&str, Vec<&str>)> {
    SpiffeId::parse(uri).map(|id| (id.trust_domain, id.path_segments().collect()))
}

fn expected(uri: &str) -> Option<(&str, Vec<&str>)> {
    spec(uri).map(|(domain, path)| {
        let segments = if path.is_empty() {
            Vec::new()
        } else {
            path.split('/').collect()
        };
        (domain, segments)
    })
}

#[test]
fn edge_cases_parse_as_the_grammar_says() {
    for uri in [
        "spiffe://td",
        "spiffe://td/",
        "spiffe://td/a",
        "spiffe://td/a/",
        "spiffe://td//a",
        "spiffe://td/./a",
        "spiffe://td/a/..",
        "spiffe://td/.../a",
        "spiffe://td/.a/b.",
        "spiffe://TD/a",
        "spiffe:///a",
        "spiffe://td/a%20b",
        "spiffe://td/a?b",
        "spiffe://td/A-b_c.9",
        "http://td/a",
    ] {
        assert_eq!(parsed(uri), expected(uri), "{uri}");
    }
    assert_eq!(parsed("spiffe://td/ns/a"), Some(("td", vec!["ns", "a"])));
    assert_eq!(parsed("spiffe://td/.."), None);
    assert_eq!(parsed("spiffe://td/..."), Some(("td", vec!["..."])));
}

#[test]
fn a_segment_pattern_refuses_dot_and_empty_segments() {
    for pattern in ["spiffe://td/./*", "spiffe://td/../*", "spiffe://td//x/*"] {
        assert!(UriPattern::parse(pattern).is_err(), "{pattern}");
    }
    assert!(UriPattern::parse("spiffe://td/.../*").is_ok());
}

proptest! {
    #[test]
    fn parse_follows_the_grammar(tail in "[a-zA-Z0-9./_%-]{0,24}") {
        let uri = format!("spiffe://{tail}");
        prop_assert_eq!(parsed(&uri), expected(&uri));
    }
}
