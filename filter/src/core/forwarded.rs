//! RFC 7239 `Forwarded`: the element certgate writes (`for=`, `by=`, `proto=`, `host=`), with IPv6
//! nodes bracketed and any value that is not a token (a port, brackets, a colon) quoted.

use super::address::SocketAddress;
use super::ip::push_ip;
use std::fmt::Write as _;
use std::net::IpAddr;

/// What certgate does with `Forwarded`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForwardedMode {
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
    pub const NAMES: &'static [(&'static str, Self)] = &[
        ("off", ForwardedMode::Off),
        ("append", ForwardedMode::Append),
        ("set", ForwardedMode::Set),
    ];
}

/// A node (`for=` or `by=` value): `192.0.2.1`, `"192.0.2.1:8443"`, `"[2001:db8::1]"`,
/// `"[2001:db8::1]:8443"`.
pub fn node(ip: IpAddr, port: Option<u16>) -> String {
    let mut out = String::new();
    push_node(&mut out, ip, port);
    out
}

fn push_node(out: &mut String, ip: IpAddr, port: Option<u16>) {
    // Only a bare IPv4 address is a token; every other node is a quoted string of token bytes.
    let quoted = port.is_some() || ip.is_ipv6();
    if quoted {
        out.push('"');
    }
    if ip.is_ipv6() {
        out.push('[');
        push_ip(out, ip);
        out.push(']');
    } else {
        push_ip(out, ip);
    }
    if let Some(port) = port {
        let _ = write!(out, ":{port}");
    }
    if quoted {
        out.push('"');
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
        push_node(&mut out, ip, None);
        out.push(';');
    }
    if let Some(by) = by {
        out.push_str("by=");
        push_node(&mut out, by.ip, Some(by.port));
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

/// A value as a token when it is one, else as a quoted string (`"` and `\` backslash-escaped,
/// control characters dropped: they cannot be in a header value).
pub fn value(text: &str) -> String {
    let mut out = String::new();
    push_value(&mut out, text);
    out
}

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
