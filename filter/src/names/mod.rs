//! The grammar of names certificates, matchers, routes and headers share: IP addresses and blocks,
//! DNS names and their one wildcard form, URIs and SPIFFE IDs. Each name has one canonical form, so
//! a peer cannot step around a rule by changing notation.

pub mod dns;
pub mod ip;
pub mod uri;

#[cfg(test)]
mod tests {
    mod spiffe;
}
