//! Checks an outcome against a scenario's expectations: one line per miss, naming the
//! expectation's field path (`expect.response.headers.x-a`) and both values.

use crate::outcome::Outcome;
use crate::scenario::{Body, Expectation, HeaderExpectation};
use std::collections::BTreeMap;

/// The expectations `outcome` misses; empty when it meets them all.
pub fn check(expect: &Expectation, outcome: &Outcome) -> Vec<String> {
    let mut misses = Vec::new();
    match (&outcome.error, &expect.error) {
        (Some(error), Some(wanted)) if !error.contains(wanted.as_str()) => misses.push(format!(
            "expect.error: wanted an error containing {wanted:?}, got {error:?}"
        )),
        (Some(error), None) => misses.push(format!("the scenario failed: {error}")),
        (None, Some(wanted)) => misses.push(format!(
            "expect.error: wanted an error containing {wanted:?}, the scenario ran to its end"
        )),
        _ => {}
    }
    if let Some(wanted) = &expect.response {
        match &outcome.response {
            None => misses.push("expect.response: the client received no response".into()),
            Some(response) => {
                if let Some(status) = wanted.status.filter(|status| *status != response.status) {
                    misses.push(format!(
                        "expect.response.status: wanted {status}, got {}",
                        response.status
                    ));
                }
                check_headers(
                    "expect.response.headers",
                    &wanted.headers,
                    |name| response.header(name),
                    &mut misses,
                );
                check_body(
                    "expect.response.body",
                    &wanted.body,
                    &response.body,
                    &mut misses,
                );
                if let Some(size) = wanted.body_size.filter(|size| *size != response.body.len()) {
                    misses.push(format!(
                        "expect.response.body_size: wanted {size} bytes, got {}",
                        response.body.len()
                    ));
                }
                if let Some(reset) = wanted.reset.filter(|reset| *reset != response.reset) {
                    misses.push(format!(
                        "expect.response.reset: wanted {reset}, got {}",
                        response.reset
                    ));
                }
            }
        }
    }
    if let Some(wanted) = &expect.upstream {
        match (&outcome.upstream, wanted.reached) {
            (None, true) => misses.push("expect.upstream: the request never reached it".into()),
            (Some(_), false) => misses.push(
                "expect.upstream.reached: wanted false, the request reached the upstream".into(),
            ),
            (Some(upstream), true) => {
                check_headers(
                    "expect.upstream.headers",
                    &wanted.headers,
                    |name| upstream.header(name),
                    &mut misses,
                );
                check_body(
                    "expect.upstream.body",
                    &wanted.body,
                    &upstream.body,
                    &mut misses,
                );
            }
            (None, false) => {}
        }
    }
    if let Some(clusters) = &expect.http_calls {
        let sent: Vec<&str> = outcome
            .http_calls
            .iter()
            .map(|call| call.cluster.as_str())
            .collect();
        if sent != *clusters {
            misses.push(format!(
                "expect.http_calls: wanted calls to {clusters:?}, got {sent:?}"
            ));
        }
    }
    if let Some(calls) = &expect.grpc_calls {
        misses.extend(crate::grpc::check_calls(calls, outcome));
    }
    for (index, text) in expect.logs.iter().enumerate() {
        if !outcome.logs.iter().any(|line| line.contains(text.as_str())) {
            misses.push(format!(
                "expect.logs[{index}]: no line logged during the scenario contains {text:?}"
            ));
        }
    }
    for (text, wanted) in &expect.log_counts {
        let got = outcome
            .logs
            .iter()
            .filter(|line| line.contains(text.as_str()))
            .count();
        if got != *wanted {
            misses.push(format!(
                "expect.log_counts.{text}: wanted {wanted} lines containing it, got {got}"
            ));
        }
    }
    misses
}

pub(crate) fn check_headers<'a>(
    path: &str,
    wanted: &BTreeMap<String, HeaderExpectation>,
    actual: impl Fn(&str) -> Option<&'a str>,
    misses: &mut Vec<String>,
) {
    for (name, expectation) in wanted {
        let got = actual(&name.to_ascii_lowercase());
        match (expectation, got) {
            (HeaderExpectation::Absent, Some(value)) => {
                misses.push(format!("{path}.{name}: wanted absent, got {value:?}"))
            }
            (HeaderExpectation::Value(value), None) => {
                misses.push(format!("{path}.{name}: wanted {value:?}, absent"))
            }
            (HeaderExpectation::Value(value), Some(got)) if value != got => {
                misses.push(format!("{path}.{name}: wanted {value:?}, got {got:?}"))
            }
            _ => {}
        }
    }
}

fn check_body(path: &str, wanted: &Option<Body>, got: &str, misses: &mut Vec<String>) {
    if let Some(wanted) = wanted.as_deref().filter(|wanted| *wanted != got) {
        misses.push(format!(
            "{path}: wanted {}, got {}",
            abbreviated(wanted),
            abbreviated(got)
        ));
    }
}

/// A body as a miss shows it: whole when short, else its size and its start.
fn abbreviated(body: &str) -> String {
    const SHOWN: usize = 64;
    match body.char_indices().nth(SHOWN) {
        None => format!("{body:?}"),
        Some((end, _)) => format!("{} bytes starting {:?}", body.len(), &body[..end]),
    }
}
