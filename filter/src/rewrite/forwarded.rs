//! RFC 7239 `Forwarded`: the element certgate writes (`for=`, `by=`, `proto=`, `host=`), with IPv6
//! nodes bracketed and any value that is not a token (a port, brackets, a colon) quoted.

use crate::facts::address::SocketAddress;
use crate::names::ip::push_ip;
use std::fmt::Write as _;
use std::net::IpAddr;

/// What certgate does with `Forwarded`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum ForwardedMode {
    /// Leave the header alone.
    #[default]
    Off,
    /// Keep a trusted peer's elements and append certgate's.
    Append,
    /// Replace the header with certgate's element, naming the client address.
    Set,
}

impl ForwardedMode {
    /// The configuration names, the one source of truth for reading and writing them.
    pub(crate) const NAMES: &'static [(&'static str, Self)] = &[
        ("off", ForwardedMode::Off),
        ("append", ForwardedMode::Append),
        ("set", ForwardedMode::Set),
    ];
}

/// Appends the `for=` node: a bare IPv4 address is a token, an IPv6 one is quoted and bracketed
/// (`192.0.2.1`, `"[2001:db8::1]"`).
fn push_for_node(out: &mut String, ip: IpAddr) {
    if ip.is_ipv6() {
        let _ = write!(out, "\"[{ip}]\"");
    } else {
        push_ip(out, ip);
    }
}

/// One element: `for=<client>;by=<this proxy>;proto=<http|https>;host=<authority>`; absent parts
/// are left out.
pub fn element(
    for_node: Option<IpAddr>,
    by: Option<SocketAddress>,
    proto: &str,
    host: &str,
) -> String {
    let mut out = String::with_capacity(96);
    if let Some(ip) = for_node {
        out.push_str("for=");
        push_for_node(&mut out, ip);
        out.push(';');
    }
    if let Some(by) = by {
        // With its port the node is never a token: quoted, IPv6 bracketed (`"[::1]:8443"`).
        let _ = write!(out, "by=\"{by}\"");
        out.push(';');
    }
    out.push_str("proto=");
    push_value(&mut out, proto);
    if !host.is_empty() {
        out.push_str(";host=");
        push_value(&mut out, host);
    }
    out
}

/// Appends a value as a token when it is one, else as a quoted string (`"` and `\\` backslash-escaped,
/// control characters dropped: they cannot be in a header value).
fn push_value(out: &mut String, text: &str) {
    if !text.is_empty() && text.bytes().all(is_token_byte) {
        out.push_str(text);
        return;
    }
    out.reserve(text.len() + 2);
    out.push('"');
    for c in text.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// RFC 7230 `tchar`.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}
