//! DNS names and the one wildcard form certgate accepts: `*.` followed by a name, covering exactly one
//! extra label. Used for certificate DNS SANs, `dns` matchers and route `hosts`.

use std::fmt;

/// A DNS name in canonical form: ASCII lowercase, no trailing dot.
pub fn canonical_name(name: &str) -> String {
    let name = name.strip_suffix('.').unwrap_or(name);
    name.to_ascii_lowercase()
}

/// A validated `dns` pattern from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsPattern {
    /// Matches the name itself (canonical form).
    Exact(String),
    /// `*.parent`: matches `label.parent` for one non-empty label (canonical parent).
    Wildcard(String),
}

impl DnsPattern {
    /// Parses a pattern, explaining what is wrong with it when it is not one certgate accepts.
    pub(crate) fn parse(pattern: &str) -> Result<Self, String> {
        if !pattern.is_ascii() {
            return Err(
                "has non-ASCII characters: write internationalised names in their A-label (xn--) form"
                    .into(),
            );
        }
        let canonical = canonical_name(pattern);
        match canonical.strip_prefix("*.") {
            Some(parent) => {
                validate_name(parent)?;
                Ok(DnsPattern::Wildcard(parent.to_owned()))
            }
            None if canonical.contains('*') => Err(
                "has a wildcard in an unsupported place: only a leading `*.` covering one label is allowed"
                    .into(),
            ),
            None => {
                validate_name(&canonical)?;
                Ok(DnsPattern::Exact(canonical))
            }
        }
    }

    /// Whether a canonical name (not itself a wildcard) matches this pattern.
    pub fn matches_name(&self, name: &str) -> bool {
        match self {
            DnsPattern::Exact(exact) => exact == name,
            DnsPattern::Wildcard(parent) => parent_of(name) == Some(parent.as_str()),
        }
    }
}

impl fmt::Display for DnsPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsPattern::Exact(name) => f.write_str(name),
            DnsPattern::Wildcard(parent) => write!(f, "*.{parent}"),
        }
    }
}

/// The name without its first label, when the first label is a non-empty, non-wildcard label.
pub fn parent_of(name: &str) -> Option<&str> {
    let (first, parent) = name.split_once('.')?;
    (!first.is_empty() && first != "*" && !parent.is_empty()).then_some(parent)
}

/// For a certificate's wildcard SAN `*.parent`, the parent; `None` for any other name.
pub fn wildcard_parent(name: &str) -> Option<&str> {
    name.strip_prefix("*.").filter(|parent| !parent.is_empty())
}

fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.len() > 253 {
        return Err(format!("is {} characters long, over DNS's 253", name.len()));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("has an empty label".into());
        }
        if label.len() > 63 {
            return Err(format!(
                "has a label of {} characters, over DNS's 63",
                label.len()
            ));
        }
        if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "has the character {bad:?}, not allowed in a DNS name"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "has the label {label:?} that starts or ends with '-'"
            ));
        }
    }
    Ok(())
}

/// The host part of an `:authority` value in canonical form: port removed, IPv6 brackets kept off.
pub(crate) fn authority_host(authority: &str) -> String {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(inside, _)| inside)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => authority,
        }
    };
    canonical_name(host)
}
