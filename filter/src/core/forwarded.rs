//! RFC 7239 `Forwarded`: the element certgate writes (`for=`, `by=`, `proto=`, `host=`), with IPv6
//! nodes bracketed and any value that is not a token (a port, brackets, a colon) quoted.

use super::address::SocketAddress;
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
    let text = match (ip, port) {
        (IpAddr::V4(ip), None) => ip.to_string(),
        (IpAddr::V4(ip), Some(port)) => format!("{ip}:{port}"),
        (IpAddr::V6(ip), None) => format!("[{ip}]"),
        (IpAddr::V6(ip), Some(port)) => format!("[{ip}]:{port}"),
    };
    value(&text)
}

/// One element: `for=<client>;by=<this proxy>;proto=<http|https>;host=<authority>`; absent parts
/// are left out.
pub fn element(
    for_node: Option<IpAddr>,
    by: Option<SocketAddress>,
    proto: &str,
    host: &str,
) -> String {
    let mut pairs = Vec::with_capacity(4);
    if let Some(ip) = for_node {
        pairs.push(format!("for={}", node(ip, None)));
    }
    if let Some(by) = by {
        pairs.push(format!("by={}", node(by.ip, Some(by.port))));
    }
    pairs.push(format!("proto={}", value(proto)));
    if !host.is_empty() {
        pairs.push(format!("host={}", value(host)));
    }
    pairs.join(";")
}

/// A value as a token when it is one, else as a quoted string (`"` and `\` backslash-escaped,
/// control characters dropped: they cannot be in a header value).
pub fn value(text: &str) -> String {
    if !text.is_empty() && text.bytes().all(is_token_byte) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// RFC 7230 `tchar`.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}
