//! `forwarding`: the forwarding headers written for allowed requests (XFF, XFCC, `Forwarded`,
//! `Client-Cert`, identity headers), read and compiled.

use super::json::Json;
use super::read::*;
use crate::identity::alb;
use crate::identity::xfcc::{XfccDetail, XfccMode};
use crate::rewrite::forwarded::ForwardedMode;
use crate::rewrite::forwarding::{
    Forwarding, IdentityField, IdentityHeader, XfccForwarding, Xff, RESERVED_HEADERS,
};
use std::collections::HashSet;

#[derive(Default)]
pub(super) struct RawForwarding {
    pub(super) xff: Option<RawXff>,
    pub(super) x_forwarded_proto: bool,
    pub(super) x_forwarded_host: bool,
    pub(super) forwarded: ForwardedMode,
    pub(super) xfcc: Option<RawXfcc>,
    pub(super) client_cert: bool,
    /// Header name -> field, in the order written.
    pub(super) identity_headers: Vec<(String, IdentityField)>,
}

impl RawForwarding {
    pub(super) fn read(value: &Json, path: &str, problems: &mut Problems<'_>) -> Option<Self> {
        const KEYS: &[&str] = &[
            "xff",
            "x_forwarded_proto",
            "x_forwarded_host",
            "forwarded",
            "xfcc",
            "client_cert",
            "identity_headers",
        ];
        let fields = Fields::read(value, path, KEYS, problems)?;
        Some(RawForwarding {
            xff: fields.optional("xff", problems, RawXff::read),
            x_forwarded_proto: fields
                .get("x_forwarded_proto", problems, boolean)
                .unwrap_or_default(),
            x_forwarded_host: fields
                .get("x_forwarded_host", problems, boolean)
                .unwrap_or_default(),
            forwarded: fields
                .get("forwarded", problems, keyword(ForwardedMode::NAMES))
                .unwrap_or_default(),
            xfcc: fields.optional("xfcc", problems, RawXfcc::read),
            client_cert: fields
                .get("client_cert", problems, boolean)
                .unwrap_or_default(),
            identity_headers: fields
                .get("identity_headers", problems, identity_headers)
                .unwrap_or_default(),
        })
    }
}

/// `identity_headers`: a JSON object (header name -> field), kept in the order written.
pub(super) fn identity_headers(
    value: &Json,
    path: &str,
    problems: &mut Problems<'_>,
) -> Option<Vec<(String, IdentityField)>> {
    let Json::Object(members) = value else {
        return invalid_type(value, path, "a JSON object", problems);
    };
    let field = keyword(IdentityField::NAMES);
    let mut headers = Vec::with_capacity(members.len());
    let mut complete = true;
    for (name, value) in members {
        match field(value, &field_path(path, name), problems) {
            Some(field) => headers.push((name.clone(), field)),
            None => complete = false,
        }
    }
    complete.then_some(headers)
}

pub(super) struct RawXff {
    pub(super) append: bool,
    pub(super) trusted_hops: u32,
}

impl RawXff {
    pub(super) fn read(value: &Json, path: &str, problems: &mut Problems<'_>) -> Option<Self> {
        let fields = Fields::read(value, path, &["append", "trusted_hops"], problems)?;
        Some(RawXff {
            append: fields.get("append", problems, boolean).unwrap_or(true),
            trusted_hops: fields
                .get("trusted_hops", problems, integer(U32))
                .unwrap_or_default(),
        })
    }
}

pub(super) struct RawXfcc {
    pub(super) mode: Option<XfccMode>,
    pub(super) details: Vec<XfccDetail>,
}

impl RawXfcc {
    pub(super) fn read(value: &Json, path: &str, problems: &mut Problems<'_>) -> Option<Self> {
        let fields = Fields::read(value, path, &["mode", "details"], problems)?;
        Some(RawXfcc {
            mode: fields.optional("mode", problems, keyword(XfccMode::NAMES)),
            details: fields
                .get("details", problems, list(keyword(XfccDetail::NAMES)))
                .unwrap_or_else(|| {
                    vec![
                        XfccDetail::Hash,
                        XfccDetail::Subject,
                        XfccDetail::Uri,
                        XfccDetail::Dns,
                    ]
                }),
        })
    }
}

impl RawForwarding {
    pub(super) fn compile(self, anyone_trusted: bool, problems: &mut Problems<'_>) -> Forwarding {
        let xff = self.xff.map(|xff| {
            if xff.trusted_hops > 0 && !anyone_trusted {
                problems.add(
                    "forwarding.xff.trusted_hops",
                    format!(
                        "{} hops are believed only from a trusted peer: list the proxy in trusted_proxies",
                        xff.trusted_hops
                    ),
                );
            }
            if xff.trusted_hops > 32 {
                problems.add(
                    "forwarding.xff.trusted_hops",
                    format!("{} is more hops than any real chain of proxies (at most 32)", xff.trusted_hops),
                );
            }
            Xff {
                append: xff.append,
                trusted_hops: xff.trusted_hops,
            }
        });
        let xfcc = self.xfcc.and_then(|xfcc| xfcc.compile(problems));
        let mut names = HashSet::new();
        let identity_headers = self
            .identity_headers
            .into_iter()
            .filter_map(|(name, field)| {
                let path = format!("forwarding.identity_headers.{name}");
                let lowercase = name.to_ascii_lowercase();
                if let Some(why) = identity_header_problem(&lowercase) {
                    problems.add(path, format!("{name:?} {why}"));
                    return None;
                }
                if !names.insert(lowercase.clone()) {
                    problems.add(
                        path,
                        format!("{name:?} is listed twice (header names ignore case)"),
                    );
                    return None;
                }
                Some(IdentityHeader {
                    name: lowercase,
                    field,
                })
            })
            .collect();
        Forwarding {
            xff,
            x_forwarded_proto: self.x_forwarded_proto,
            x_forwarded_host: self.x_forwarded_host,
            forwarded: self.forwarded,
            xfcc,
            client_cert: self.client_cert,
            identity_headers,
        }
    }
}

impl RawXfcc {
    pub(super) fn compile(self, problems: &mut Problems<'_>) -> Option<XfccForwarding> {
        let Some(mode) = self.mode else {
            problems.add(
                "forwarding.xfcc.mode",
                "is missing: one of sanitize, forward_only, append_forward, sanitize_set, always_forward_only",
            );
            return None;
        };
        if self.details.is_empty()
            && matches!(mode, XfccMode::AppendForward | XfccMode::SanitizeSet)
        {
            problems.add(
                "forwarding.xfcc.details",
                "is empty: list what the element says, e.g. [\"hash\", \"uri\"]",
            );
        }
        let mut seen = HashSet::new();
        for (index, detail) in self.details.iter().enumerate() {
            if !seen.insert(format!("{detail:?}")) {
                problems.add(
                    format!("forwarding.xfcc.details[{index}]"),
                    "is listed twice",
                );
            }
        }
        Some(XfccForwarding {
            mode,
            details: self.details,
        })
    }
}

/// Identity header names are lowercase tokens of `[a-z0-9-]` (they also become metric labels) and
/// may not take a header that another option, the ALB or HTTP itself owns.
pub(super) fn identity_header_problem(name: &str) -> Option<&'static str> {
    const PROTOCOL: [&str; 9] = [
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "te",
        "upgrade",
        "x-request-id",
        "authorization",
    ];
    if name.is_empty() || name.len() > 64 {
        Some("must be 1 to 64 characters long")
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        Some("may only use letters, digits and '-' (a header name that is also a metric label)")
    } else if RESERVED_HEADERS.contains(&name) || alb::HEADERS.contains(&name) {
        Some("is a forwarding header certgate owns through another option")
    } else if PROTOCOL.contains(&name) || name.starts_with("x-envoy-") {
        Some("is a header the protocol or Envoy owns")
    } else {
        None
    }
}
