//! IP addresses and CIDR blocks, IPv4 and IPv6, for `ip` matchers and trusted proxy ranges.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:10.1.2.3`) are treated as the IPv4 address they carry, so a
//! certificate or peer cannot step around an IPv4 rule by changing notation.

use rustc_hash::FxHashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Appends an address as `Display` writes it; IPv4, the common case, without the formatting
/// machinery (it runs several times per request).
pub(crate) fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(ip) => {
            for (index, octet) in ip.octets().into_iter().enumerate() {
                if index > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(ip) => {
            let _ = fmt::Write::write_fmt(out, format_args!("{ip}"));
        }
    }
}

/// An address as text (see [`push_ip`]).
pub(crate) fn ip_text(ip: IpAddr) -> String {
    let mut out = String::with_capacity(15);
    push_ip(&mut out, ip);
    out
}

/// An address block: the network address (host bits zero) and the prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    network: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `10.1.0.0/16`, `2001:db8::/32`, or a single address (a /32 or /128).
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let written: IpAddr = address
            .parse()
            .map_err(|_| format!("{address:?} is not an IPv4 or IPv6 address"))?;
        let max = max_prefix(written);
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("/{prefix} is not a prefix length from 0 to {max}"))?,
        };
        // An IPv4-mapped block is the IPv4 block it maps, so both spellings match the same peers.
        let address = canonical_ip(written);
        let prefix = match (written, address) {
            (IpAddr::V6(_), IpAddr::V4(_)) if prefix >= 96 => prefix - 96,
            (IpAddr::V6(_), IpAddr::V4(_)) => {
                return Err(
                    "is an IPv4-mapped block wider than /96: write it as an IPv4 block".into(),
                )
            }
            _ => prefix,
        };
        let net = IpNet {
            network: mask(address, prefix),
            prefix,
        };
        if net.network != address {
            return Err(format!("has host bits set: did you mean {net}?"));
        }
        Ok(net)
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical_ip(address);
        max_prefix(address) == max_prefix(self.network)
            && mask(address, self.prefix) == self.network
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The address with IPv4-mapped IPv6 turned into IPv4.
pub fn canonical_ip(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

fn max_prefix(address: IpAddr) -> u8 {
    if address.is_ipv4() {
        32
    } else {
        128
    }
}

fn mask(address: IpAddr, prefix: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let shift = 32 - u32::from(prefix);
            let kept = if prefix == 0 {
                0
            } else {
                (u32::from(v4) >> shift) << shift
            };
            IpAddr::V4(Ipv4Addr::from(kept))
        }
        IpAddr::V6(v6) => {
            let shift = 128 - u32::from(prefix);
            let kept = if prefix == 0 {
                0
            } else {
                (u128::from(v6) >> shift) << shift
            };
            IpAddr::V6(Ipv6Addr::from(kept))
        }
    }
}

/// A set of blocks answering "which block contains this address" with one hash lookup per distinct
/// prefix length, whatever the number of blocks.
#[derive(Debug, Clone, Default)]
pub(crate) struct IpNetIndex<T> {
    prefixes: Vec<u8>,
    blocks: FxHashMap<IpNet, T>,
}

impl<T: Copy + Ord> IpNetIndex<T> {
    /// Adds a block; when the block is already present the smaller value is kept.
    pub(crate) fn insert(&mut self, net: IpNet, value: T) {
        let kept = self.blocks.entry(net).or_insert(value);
        *kept = (*kept).min(value);
        if !self.prefixes.contains(&net.prefix) {
            self.prefixes.push(net.prefix);
            self.prefixes.sort_unstable();
        }
    }

    /// The smallest value among the blocks containing the address.
    pub(crate) fn lookup(&self, address: IpAddr) -> Option<T> {
        let address = canonical_ip(address);
        let max = max_prefix(address);
        self.prefixes
            .iter()
            .filter(|prefix| **prefix <= max)
            .filter_map(|prefix| {
                self.blocks.get(&IpNet {
                    network: mask(address, *prefix),
                    prefix: *prefix,
                })
            })
            .min()
            .copied()
    }
}
