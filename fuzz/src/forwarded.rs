//! Target `forwarded`: the RFC 7239 `Forwarded` element certgate writes, from arbitrary nodes,
//! protocols and hosts.
//!
//! Properties: the element is one `forwarded-element` of RFC 7239's grammar (pairs of a token and a
//! token or quoted-string, `;`-separated, no `,` outside quotes, no control character), and reading
//! it back gives exactly the pairs written: `for` and `by` nodes with IPv6 bracketed, `proto` and
//! `host` with their control characters dropped. Socket addresses also survive their own text form.

use arbitrary::{Arbitrary, Unstructured};
use certgate::facts::address::SocketAddress;
use certgate::names::ip::canonical_ip;
use certgate::rewrite::forwarded;
use std::net::IpAddr;

#[derive(Arbitrary, Debug)]
struct Element {
    for_node: Option<IpAddr>,
    by: Option<(IpAddr, u16)>,
    proto: String,
    host: String,
}

pub fn run(data: &[u8]) {
    let Ok(elements) = Vec::<Element>::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    for element in elements {
        check_element(&element);
        if let Some((ip, port)) = element.by {
            let address = SocketAddress { ip, port };
            let expected = SocketAddress {
                ip: canonical_ip(ip),
                port,
            };
            assert_eq!(
                SocketAddress::parse(&address.to_string()),
                Some(expected),
                "{address} does not read back"
            );
        }
    }
}

fn check_element(element: &Element) {
    let by = element.by.map(|(ip, port)| SocketAddress { ip, port });
    let text = forwarded::element(element.for_node, by, &element.proto, &element.host);
    let pairs = match parse_element(&text) {
        Ok(pairs) => pairs,
        Err(why) => panic!("{text:?} breaks RFC 7239's grammar: {why} (from {element:?})"),
    };
    let visible = |text: &str| -> String { text.chars().filter(|c| !c.is_control()).collect() };
    let mut expected = Vec::new();
    if let Some(ip) = element.for_node {
        expected.push(("for".to_owned(), node_text(ip, None)));
    }
    if let Some((ip, port)) = element.by {
        expected.push(("by".to_owned(), node_text(ip, Some(port))));
    }
    expected.push(("proto".to_owned(), visible(&element.proto)));
    if !element.host.is_empty() {
        expected.push(("host".to_owned(), visible(&element.host)));
    }
    assert_eq!(pairs, expected, "{text:?} does not read back");
}

/// RFC 7239 section 6: `nodename [ ":" node-port ]`, an IPv6 nodename in brackets.
fn node_text(ip: IpAddr, port: Option<u16>) -> String {
    let name = match ip {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    match port {
        Some(port) => format!("{name}:{port}"),
        None => name,
    }
}

/// Reads one `forwarded-element` strictly: `pair *( ";" pair )`, `pair = token "=" value`,
/// `value = token / quoted-string`. Returns the pairs with their values unquoted.
fn parse_element(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut rest = text.as_bytes();
    loop {
        let (name, after) = split_token(rest);
        if name.is_empty() {
            return Err(format!("expected a token at {:?}", lossy(rest)));
        }
        let after = after
            .strip_prefix(b"=")
            .ok_or_else(|| format!("expected '=' at {:?}", lossy(after)))?;
        let (value, after) = match after.strip_prefix(b"\"") {
            Some(quoted) => read_quoted(quoted)?,
            None => {
                let (token, after) = split_token(after);
                if token.is_empty() {
                    return Err(format!("expected a value at {:?}", lossy(after)));
                }
                (token.to_vec(), after)
            }
        };
        let value = String::from_utf8(value).map_err(|_| "a value is not UTF-8".to_owned())?;
        pairs.push((lossy(name), value));
        match after.split_first() {
            None => return Ok(pairs),
            Some((b';', more)) => rest = more,
            Some((other, _)) => {
                return Err(format!("unexpected {:?} after a pair", char::from(*other)))
            }
        }
    }
}

fn split_token(bytes: &[u8]) -> (&[u8], &[u8]) {
    let len = bytes.iter().take_while(|b| is_tchar(**b)).count();
    bytes.split_at(len)
}

/// RFC 7230 `quoted-string` after its opening quote: the unescaped value and what follows.
fn read_quoted(bytes: &[u8]) -> Result<(Vec<u8>, &[u8]), String> {
    let mut value = Vec::new();
    let mut rest = bytes;
    while let Some((&byte, after)) = rest.split_first() {
        rest = after;
        match byte {
            b'"' => return Ok((value, rest)),
            b'\\' => {
                let (&escaped, after) = rest.split_first().ok_or("a quoted-pair is cut short")?;
                if !(escaped == b'\t'
                    || escaped == b' '
                    || escaped.is_ascii_graphic()
                    || escaped >= 0x80)
                {
                    return Err(format!("quoted-pair of byte {escaped:#04x}"));
                }
                value.push(escaped);
                rest = after;
            }
            b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => value.push(byte),
            other => return Err(format!("byte {other:#04x} inside a quoted-string")),
        }
    }
    Err("a quoted-string is not closed".into())
}

/// RFC 7230 `tchar`.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
