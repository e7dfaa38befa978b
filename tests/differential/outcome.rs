//! What one side (harness or Envoy) made of a scenario, in a form both sides share: run-specific
//! values (certificate encodings, request ids, the listener port) replaced by placeholders, so an
//! outcome compares exactly with the other side's and with the scenario's expectation.

use crate::scenario::{CertDescription, Expectation, LocalReply, Scenario, Status};
use anyhow::{Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use testkit::IssuedCert;

/// Headers certgate owns or Envoy's HCM sets, and the path the upstream is asked for (after
/// Envoy's normalisation): always watched upstream.
const WATCHED_UPSTREAM: [&str; 17] = [
    ":path",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "forwarded",
    "x-forwarded-client-cert",
    "client-cert",
    "client-cert-chain",
    "x-envoy-external-address",
    "x-request-id",
    "x-amzn-mtls-clientcert",
    "x-amzn-mtls-clientcert-leaf",
    "x-amzn-mtls-clientcert-serial-number",
    "x-amzn-mtls-clientcert-issuer",
    "x-amzn-mtls-clientcert-subject",
    "x-amzn-mtls-clientcert-validity",
];

/// Response headers watched on a local reply (besides every `x-certgate-*`).
const WATCHED_REPLY: [&str; 1] = ["content-type"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub decision: Option<(String, String)>,
    /// The watched headers the upstream received; `None` when the request never reached it.
    pub upstream: Option<BTreeMap<String, Vec<String>>>,
    /// The local reply, when the request was answered without the upstream.
    pub response: Option<LocalReply>,
    /// Deltas of certgate's counters that moved.
    pub metrics: BTreeMap<String, i64>,
}

/// The certificates a scenario issued, and the placeholders their encodings stand for.
pub struct Materials {
    pub cert: Option<IssuedCert>,
    pub placeholders: Vec<(String, String)>,
}

impl Materials {
    /// Issues the scenario's certificates: `issue(description)` signs with the CA it names.
    pub fn issue(
        scenario: &Scenario,
        issue: impl Fn(&CertDescription) -> Result<IssuedCert>,
    ) -> Result<Self> {
        let cert = scenario.connection.cert.as_ref().map(&issue).transpose()?;
        let header_cert = scenario.header_cert.as_ref().map(&issue).transpose()?;
        let mut placeholders = Vec::new();
        for (prefix, issued) in [("cert", &cert), ("header_cert", &header_cert)] {
            if let Some(issued) = issued {
                placeholders.extend(
                    encodings(issued)
                        .into_iter()
                        .map(|(kind, value)| (format!("{{{prefix}.{kind}}}"), value)),
                );
            }
        }
        // The longest first: one encoding may contain another.
        placeholders.sort_by_key(|(_, value)| std::cmp::Reverse(value.len()));
        Ok(Materials { cert, placeholders })
    }

    /// A request header value with its placeholders filled in: certificate encodings, and
    /// `{repeat:N:text}` for long values.
    pub fn expand(&self, value: &str) -> Result<String> {
        let mut out = value.to_owned();
        for (token, encoding) in &self.placeholders {
            out = out.replace(token, encoding);
        }
        while let Some(start) = out.find("{repeat:") {
            let end = out[start..]
                .find('}')
                .map(|end| start + end)
                .with_context(|| format!("unclosed {{repeat:...}} in {value:?}"))?;
            let (count, text) = out[start + 8..end]
                .split_once(':')
                .with_context(|| format!("{{repeat:N:text}} expected in {value:?}"))?;
            let count: usize = count
                .parse()
                .with_context(|| format!("{{repeat:{count}:...}}: not a count"))?;
            out.replace_range(start..=end, &text.repeat(count));
        }
        Ok(out)
    }

    /// A value as one side saw it, with run-specific parts replaced by placeholders.
    pub fn normalize(&self, value: &str, local_port: u16) -> String {
        let mut out = value.to_owned();
        for (token, encoding) in &self.placeholders {
            out = out.replace(encoding, token);
        }
        out = out.replace(&format!("127.0.0.1:{local_port}"), "127.0.0.1:{local.port}");
        replace_uuids(&out)
    }
}

/// The encodings of a certificate scenarios refer to: `sha256` (hex), `der_b64` (base64 DER, as
/// RFC 9440 carries it), `pem_urlenc` (URL-encoded PEM, as XFCC `Cert=` carries it), `alb_leaf` (as
/// an ALB passes it).
fn encodings(issued: &IssuedCert) -> Vec<(&'static str, String)> {
    let der_b64: String = issued
        .cert_pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let pem_urlenc = issued
        .cert_pem
        .bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect();
    vec![
        ("sha256", issued.sha256_hex()),
        ("der_b64", der_b64),
        ("pem_urlenc", pem_urlenc),
        ("alb_leaf", issued.alb_leaf_header_value()),
    ]
}

/// Every `8-4-4-4-12` hex UUID becomes `{uuid}` (request ids differ per run and per side).
fn replace_uuids(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut index = 0;
    while index < bytes.len() {
        if index + 36 <= bytes.len() && is_uuid(&bytes[index..index + 36]) {
            out.push_str("{uuid}");
            index += 36;
        } else {
            let ch = text[index..].chars().next().unwrap_or_default();
            out.push(ch);
            index += ch.len_utf8().max(1);
        }
    }
    out
}

fn is_uuid(candidate: &[u8]) -> bool {
    candidate.iter().enumerate().all(|(i, byte)| match i {
        8 | 13 | 18 | 23 => *byte == b'-',
        _ => byte.is_ascii_hexdigit(),
    })
}

/// The upstream headers a scenario watches: the fixed set, the identity headers certgate's
/// configuration names, and every header the request itself sent.
pub fn watched_upstream(identity_headers: &[String], scenario: &Scenario) -> BTreeSet<String> {
    WATCHED_UPSTREAM
        .iter()
        .map(|name| name.to_string())
        .chain(identity_headers.iter().cloned())
        .chain(
            scenario
                .request
                .headers
                .iter()
                .map(|(name, _)| name.trim().to_ascii_lowercase()),
        )
        .filter(|name| name != "host")
        .collect()
}

/// Picks the watched headers out of `headers` (names lowercased, values normalized, order kept).
pub fn project<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    watched: impl Fn(&str) -> bool,
    materials: &Materials,
    local_port: u16,
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        if watched(&name) {
            out.entry(name)
                .or_default()
                .push(materials.normalize(value, local_port));
        }
    }
    out
}

/// Whether a local reply's header is watched.
pub fn watched_reply(name: &str) -> bool {
    WATCHED_REPLY.contains(&name) || name.starts_with("x-certgate-")
}

/// The differences between an outcome and the expectation, one readable line each.
pub fn against_expectation(outcome: &Outcome, expect: &Expectation) -> Vec<String> {
    let mut diffs = Vec::new();
    if outcome.status != expect.status {
        diffs.push(format!(
            "status: expected {:?}, got {:?}",
            expect.status, outcome.status
        ));
    }
    if outcome.decision != expect.decision {
        diffs.push(format!(
            "decision: expected {}, got {}",
            show_decision(&expect.decision),
            show_decision(&outcome.decision)
        ));
    }
    match (&expect.upstream, &outcome.upstream) {
        (None, Some(_)) => diffs.push("upstream: the request reached the upstream".into()),
        (Some(_), None) => diffs.push("upstream: the request never reached the upstream".into()),
        (Some(expected), Some(got)) => header_diffs("upstream", expected, got, true, &mut diffs),
        (None, None) => {}
    }
    if let Some(expected) = &expect.response {
        match &outcome.response {
            None => diffs.push("response: no local reply".into()),
            Some(got) => {
                header_diffs(
                    "response",
                    &expected.headers,
                    &got.headers,
                    true,
                    &mut diffs,
                );
                if !matches_pattern(&expected.body, &got.body) {
                    diffs.push(format!(
                        "response body: expected {:?}, got {:?}",
                        expected.body, got.body
                    ));
                }
            }
        }
    }
    if let Some(expected) = &expect.metrics {
        metric_diffs(expected, &outcome.metrics, &mut diffs);
    }
    diffs
}

/// The differences between two runs of a scenario, each named by its label (`harness`, `envoy`,
/// `h2`, …).
pub fn between(
    (left_label, left): (&str, &Outcome),
    (right_label, right): (&str, &Outcome),
) -> Vec<String> {
    let mut diffs = Vec::new();
    if left.status != right.status {
        diffs.push(format!(
            "status: {left_label} {:?}, {right_label} {:?}",
            left.status, right.status
        ));
    }
    if left.decision != right.decision {
        diffs.push(format!(
            "decision: {left_label} {}, {right_label} {}",
            show_decision(&left.decision),
            show_decision(&right.decision)
        ));
    }
    let versus = format!("({left_label} vs {right_label})");
    match (&left.upstream, &right.upstream) {
        (Some(l), Some(r)) => header_diffs(&format!("upstream {versus}"), l, r, false, &mut diffs),
        (None, None) => {}
        (l, r) => diffs.push(format!(
            "upstream reached: {left_label} {}, {right_label} {}",
            l.is_some(),
            r.is_some()
        )),
    }
    match (&left.response, &right.response) {
        (Some(l), Some(r)) => {
            header_diffs(
                &format!("response {versus}"),
                &l.headers,
                &r.headers,
                false,
                &mut diffs,
            );
            if l.body != r.body {
                diffs.push(format!(
                    "response body: {left_label} {:?}, {right_label} {:?}",
                    l.body, r.body
                ));
            }
        }
        (None, None) => {}
        (l, r) => diffs.push(format!(
            "local reply: {left_label} {}, {right_label} {}",
            l.is_some(),
            r.is_some()
        )),
    }
    let names: BTreeSet<&String> = left.metrics.keys().chain(right.metrics.keys()).collect();
    for name in names {
        let (l, r) = (left.metrics.get(name), right.metrics.get(name));
        if l != r {
            diffs.push(format!(
                "metric {name}: {left_label} {:+}, {right_label} {:+}",
                l.copied().unwrap_or(0),
                r.copied().unwrap_or(0)
            ));
        }
    }
    diffs
}

fn show_decision(decision: &Option<(String, String)>) -> String {
    match decision {
        Some((decision, reason)) => format!("{decision}/{reason}"),
        None => "none".into(),
    }
}

/// Header maps compared name by name; `patterns`: `expected` values may hold `{*}`.
fn header_diffs(
    what: &str,
    expected: &BTreeMap<String, Vec<String>>,
    got: &BTreeMap<String, Vec<String>>,
    patterns: bool,
    diffs: &mut Vec<String>,
) {
    let names: BTreeSet<&String> = expected.keys().chain(got.keys()).collect();
    for name in names {
        let empty = Vec::new();
        let want = expected.get(name).unwrap_or(&empty);
        let have = got.get(name).unwrap_or(&empty);
        let same = want.len() == have.len()
            && want.iter().zip(have).all(|(w, h)| {
                if patterns {
                    matches_pattern(w, h)
                } else {
                    w == h
                }
            });
        if !same {
            let (left, right) = if patterns {
                ("expected", "got")
            } else {
                ("harness", "envoy")
            };
            diffs.push(format!(
                "{what} {name}: {left} {}, {right} {}",
                show_values(want),
                show_values(have)
            ));
        }
    }
}

fn show_values(values: &[String]) -> String {
    if values.is_empty() {
        return "(absent)".into();
    }
    let mut out = String::new();
    for (index, value) in values.iter().enumerate() {
        if index > 0 {
            out.push_str(" + ");
        }
        if value.len() > 160 {
            let _ = write!(
                out,
                "{:?}…({} bytes)",
                &value[..value.floor_char_boundary(160)],
                value.len()
            );
        } else {
            let _ = write!(out, "{value:?}");
        }
    }
    out
}

fn metric_diffs(
    expected: &BTreeMap<String, i64>,
    got: &BTreeMap<String, i64>,
    diffs: &mut Vec<String>,
) {
    for name in expected.keys().chain(got.keys()).collect::<BTreeSet<_>>() {
        let (want, have) = (expected.get(name), got.get(name));
        if want != have {
            diffs.push(format!(
                "metric {name}: expected {:+}, got {:+}",
                want.copied().unwrap_or(0),
                have.copied().unwrap_or(0)
            ));
        }
    }
}

/// Whether `actual` matches `pattern`, in which `{*}` stands for any text.
pub fn matches_pattern(pattern: &str, actual: &str) -> bool {
    let mut parts = pattern.split("{*}");
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = actual.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The outcome written as a scenario's `expect` (printed with `DIFF_PRINT_ACTUAL=1` to help write
/// a new scenario; every line of it must be checked by hand before it goes into the corpus).
pub fn as_expectation_json(outcome: &Outcome) -> serde_json::Value {
    let status = match outcome.status {
        Status::Http(code) => serde_json::json!(code),
        Status::TlsRejected => serde_json::json!("tls_rejected"),
    };
    let mut expect = serde_json::json!({"status": status});
    if let Some((decision, reason)) = &outcome.decision {
        expect["decision"] = format!("{decision}/{reason}").into();
    }
    if let Some(upstream) = &outcome.upstream {
        expect["upstream"] = serde_json::json!(upstream);
    }
    if let Some(reply) = &outcome.response {
        expect["response"] = serde_json::json!({"headers": reply.headers, "body": reply.body});
    }
    expect["metrics"] = serde_json::json!(outcome.metrics);
    expect
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_and_uuids() {
        assert!(matches_pattern("a{*}c", "abbbc"));
        assert!(matches_pattern("{*}", ""));
        assert!(!matches_pattern("a{*}c", "abd"));
        assert!(matches_pattern("exact", "exact"));
        assert!(!matches_pattern("exact", "exactly"));
        assert_eq!(
            replace_uuids("{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\"}"),
            "{\"id\":\"{uuid}\"}"
        );
    }
}
