//! URI SAN patterns and SPIFFE IDs: exact URIs, a trailing `*` prefix, `*` standing for one path
//! segment, and trust domains.
//!
//! Anything looser than an exact match on a `spiffe://` pattern applies only to well-formed SPIFFE
//! IDs, so a certificate's `spiffe://td/ns/../sa/web` can never satisfy `spiffe://td/ns/*/sa/web`.

use std::fmt;

/// A validated `uri` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UriPattern {
    /// The URI itself, compared byte for byte.
    Exact(String),
    /// `prefix*`: any URI that starts with `prefix` and has more after it.
    Prefix(String),
    /// A SPIFFE pattern with `*` segments: the trust domain and path segments, then an optional open
    /// tail (`Some(p)`: one more segment starting with `p`, possibly followed by anything).
    Segments {
        segments: Vec<Segment>,
        tail: Option<String>,
    },
}

/// One segment of a [`UriPattern::Segments`] pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// `*`: exactly one segment.
    Any,
}

impl UriPattern {
    pub(crate) fn parse(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("is empty".into());
        }
        if let Some(bad) = pattern
            .chars()
            .find(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!("has the character {bad:?}, not allowed in a URI"));
        }
        let Some((scheme, _)) = pattern.split_once(':') else {
            return Err("has no scheme (expected e.g. spiffe://trust.domain/path)".into());
        };
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return Err(format!("has an invalid scheme {scheme:?}"));
        }
        let (body, open) = match pattern.strip_suffix('*') {
            Some(body) => (body, true),
            None => (pattern, false),
        };
        match body.strip_prefix("spiffe://") {
            // SPIFFE patterns are validated segment by segment even when they need no segment matching.
            Some(rest) => {
                let segmented = parse_spiffe_segments(rest, open)?;
                if body.contains('*') {
                    return Ok(segmented);
                }
            }
            None if body.contains('*') => {
                return Err(
                    "uses `*` inside the URI, which only SPIFFE patterns (spiffe://trust.domain/...) may do".into(),
                )
            }
            None => {}
        }
        Ok(if open {
            UriPattern::Prefix(body.to_owned())
        } else {
            UriPattern::Exact(body.to_owned())
        })
    }

    /// Whether a certificate URI SAN matches.
    pub fn matches(&self, uri: &str) -> bool {
        match self {
            UriPattern::Exact(exact) => exact == uri,
            UriPattern::Prefix(prefix) => {
                uri.len() > prefix.len()
                    && uri.starts_with(prefix.as_str())
                    && (!prefix.starts_with("spiffe://") || SpiffeId::parse(uri).is_some())
            }
            UriPattern::Segments { segments, tail } => SpiffeId::parse(uri)
                .is_some_and(|id| segments_match(segments, tail.as_deref(), &id)),
        }
    }
}

impl fmt::Display for UriPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UriPattern::Exact(uri) => f.write_str(uri),
            UriPattern::Prefix(prefix) => write!(f, "{prefix}*"),
            UriPattern::Segments { segments, tail } => {
                f.write_str("spiffe:/")?;
                for segment in segments {
                    match segment {
                        Segment::Literal(literal) => write!(f, "/{literal}")?,
                        Segment::Any => f.write_str("/*")?,
                    }
                }
                match tail {
                    Some(prefix) => write!(f, "/{prefix}*"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Parses what follows `spiffe://` in a pattern that has `*` segments.
fn parse_spiffe_segments(rest: &str, open: bool) -> Result<UriPattern, String> {
    let mut parts: Vec<&str> = rest.split('/').collect();
    let tail = if open {
        parts.pop().map(str::to_owned)
    } else {
        None
    };
    if let Some(tail) = &tail {
        if !tail.bytes().all(is_segment_byte) {
            return Err(format!(
                "has an invalid SPIFFE path segment {:?}",
                format!("{tail}*")
            ));
        }
    }
    let mut segments = Vec::with_capacity(parts.len());
    for (index, part) in parts.into_iter().enumerate() {
        let segment = match part {
            "*" if index == 0 => return Err("has `*` as its trust domain: name the trust domain".into()),
            "*" => Segment::Any,
            _ if part.contains('*') => {
                return Err(format!(
                    "has `*` inside the segment {part:?}: `*` may only be a whole segment or the last character"
                ))
            }
            _ if index == 0 && !is_trust_domain(part) => {
                return Err(format!("has an invalid SPIFFE trust domain {part:?}"))
            }
            _ if index > 0 && !is_spiffe_path(part) => {
                return Err(format!("has an invalid SPIFFE path segment {part:?}"))
            }
            _ => Segment::Literal(part.to_owned()),
        };
        segments.push(segment);
    }
    if segments.is_empty() {
        return Err("has `*` in its trust domain: name the trust domain in full".into());
    }
    Ok(UriPattern::Segments { segments, tail })
}

fn segments_match(pattern: &[Segment], tail: Option<&str>, id: &SpiffeId<'_>) -> bool {
    let mut actual = std::iter::once(id.trust_domain).chain(id.path_segments());
    for expected in pattern {
        match (expected, actual.next()) {
            (_, None) => return false,
            (Segment::Any, Some(_)) => {}
            (Segment::Literal(literal), Some(segment)) if literal == segment => {}
            (Segment::Literal(_), Some(_)) => return false,
        }
    }
    match tail {
        None => actual.next().is_none(),
        Some(prefix) => match actual.next() {
            None => false,
            Some(segment) => {
                segment.starts_with(prefix)
                    && (segment.len() > prefix.len() || actual.next().is_some())
            }
        },
    }
}

/// A well-formed SPIFFE ID: `spiffe://` + a lowercase trust domain + optional path of non-empty
/// segments of `[A-Za-z0-9._-]`, none `.` or `..`, no query or fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpiffeId<'a> {
    pub trust_domain: &'a str,
    /// The path without its leading `/`; empty for the trust domain's own ID.
    path: &'a str,
}

impl<'a> SpiffeId<'a> {
    pub fn parse(uri: &'a str) -> Option<Self> {
        let rest = uri.strip_prefix("spiffe://")?;
        // Byte scans, not `split('/')`: this runs on every request's URI SANs, once per matcher
        // set, and splitting was half its time in the guest (profiled through the harness).
        let domain_end = rest.bytes().position(|b| b == b'/').unwrap_or(rest.len());
        let (trust_domain, path) = rest.split_at(domain_end);
        if !is_trust_domain(trust_domain) {
            return None;
        }
        match path.strip_prefix('/') {
            None => Some(SpiffeId {
                trust_domain,
                path: "",
            }),
            Some(path) if is_spiffe_path(path) => Some(SpiffeId { trust_domain, path }),
            Some(_) => None,
        }
    }

    pub(crate) fn path_segments(&self) -> impl Iterator<Item = &'a str> {
        let path = self.path;
        path.split('/').filter(move |_| !path.is_empty())
    }
}

/// A SPIFFE trust domain name: lowercase letters, digits, `.`, `-`, `_`.
pub(crate) fn is_trust_domain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
}

fn is_segment_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._".contains(&b)
}

/// Whether `path` is one or more SPIFFE path segments separated by single `/`s: each non-empty,
/// of `[A-Za-z0-9._-]`, and neither `.` nor `..`.
fn is_spiffe_path(path: &str) -> bool {
    // The current segment's length and how many of its bytes are dots.
    let (mut length, mut dots) = (0usize, 0usize);
    for byte in path.bytes() {
        match byte {
            b'/' if is_path_segment(length, dots) => (length, dots) = (0, 0),
            b'/' => return false,
            b'.' => (length, dots) = (length + 1, dots + 1),
            _ if is_segment_byte(byte) => length += 1,
            _ => return false,
        }
    }
    is_path_segment(length, dots)
}

/// A segment of `length` valid bytes, `dots` of them `.`, is neither empty nor `.` or `..`.
fn is_path_segment(length: usize, dots: usize) -> bool {
    length > 0 && !(dots == length && length <= 2)
}
