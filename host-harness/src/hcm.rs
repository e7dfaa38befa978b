//! Envoy's HttpConnectionManager request mutation, applied before the filter sees a request:
//! X-Forwarded-For / X-Forwarded-Proto / `:scheme`, x-request-id, X-Forwarded-Client-Cert per
//! `forward_client_cert_details`, the client address Envoy derives (`source.address`), headers
//! with underscores dropped, and `:path` normalisation (`normalize_path`, `merge_slashes`); and
//! the router's request header behind the filter (`x-envoy-expected-rq-timeout-ms` from the
//! route timeout).

use crate::connection::Connection;
use crate::headers::HeaderMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

const XFF: &str = "x-forwarded-for";
const XFP: &str = "x-forwarded-proto";
const XFCC: &str = "x-forwarded-client-cert";
const REQUEST_ID: &str = "x-request-id";
const EXTERNAL_ADDRESS: &str = "x-envoy-external-address";
const EXPECTED_TIMEOUT: &str = "x-envoy-expected-rq-timeout-ms";

/// A route's `timeout` when the route config sets none.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);

/// Envoy's inline ("O(1)") request headers: its header map keeps one entry for each and appends a
/// repeated one to it with `,` as the codec adds headers, so the filter sees them merged.
const INLINE_REQUEST_HEADERS: [&str; 45] = [
    ":authority",
    ":method",
    ":path",
    ":protocol",
    ":scheme",
    "connection",
    "content-length",
    "content-type",
    "expect",
    "grpc-timeout",
    "keep-alive",
    "proxy-connection",
    "proxy-status",
    "te",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "via",
    "x-client-trace-id",
    "x-envoy-decorator-operation",
    "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-external-address",
    "x-envoy-force-trace",
    "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-internal",
    "x-envoy-ip-tags",
    "x-envoy-is-timeout-retry",
    "x-envoy-max-retries",
    "x-envoy-original-path",
    "x-envoy-original-url",
    "x-envoy-retriable-header-names",
    "x-envoy-retriable-status-codes",
    "x-envoy-retry-grpc-on",
    "x-envoy-retry-on",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-upstream-rq-timeout-ms",
    "x-forwarded-client-cert",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-request-id",
];

/// Hop-by-hop headers the HCM always removes.
const HOP_BY_HOP: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "x-envoy-internal",
];

/// Envoy control headers the HCM removes from requests it does not consider internal (with
/// Envoy 1.40's empty default `internal_address_config`, none are).
const EXTERNAL_CONTROL: [&str; 9] = [
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-max-retries",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-force-trace",
];

/// Further headers removed from edge requests (`use_remote_address` and external).
const EDGE_ONLY: [&str; 3] = [
    "x-envoy-decorator-operation",
    "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node",
];

/// The HCM's `forward_client_cert_details` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardClientCert {
    /// Remove any incoming XFCC (Envoy's default).
    #[default]
    Sanitize,
    /// Pass an incoming XFCC through on mTLS connections, remove it otherwise.
    ForwardOnly,
    /// Append this hop's element to an incoming XFCC on mTLS connections.
    AppendForward,
    /// Replace any incoming XFCC with this hop's element on mTLS connections.
    SanitizeSet,
    /// Pass an incoming XFCC through on every connection.
    AlwaysForwardOnly,
}

/// `set_current_client_cert_details`: which fields this hop's XFCC element carries besides
/// `By` and `Hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientCertDetails {
    pub subject: bool,
    pub cert: bool,
    pub chain: bool,
    pub dns: bool,
    pub uri: bool,
}

impl ClientCertDetails {
    /// Every field set.
    pub fn all() -> ClientCertDetails {
        ClientCertDetails {
            subject: true,
            cert: true,
            chain: true,
            dns: true,
            uri: true,
        }
    }
}

/// The HttpConnectionManager settings that shape what a filter sees. The default is Envoy's
/// default configuration; [`HttpConnectionManager::disabled`] hands the filter the request
/// headers exactly as the test wrote them.
///
/// ```
/// use host_harness::{ClientCertDetails, ForwardClientCert, HttpConnectionManager};
/// let hcm = HttpConnectionManager::default()
///     .use_remote_address(true)
///     .forward_client_cert(ForwardClientCert::SanitizeSet, ClientCertDetails::all());
/// # let _ = hcm;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpConnectionManager {
    enabled: bool,
    use_remote_address: bool,
    xff_num_trusted_hops: u32,
    skip_xff_append: bool,
    preserve_external_request_id: bool,
    forward_client_cert: ForwardClientCert,
    client_cert_details: ClientCertDetails,
    drop_headers_with_underscores: bool,
    normalize_path: bool,
    merge_slashes: bool,
    route_timeout: Duration,
    suppress_envoy_headers: bool,
}

impl Default for HttpConnectionManager {
    fn default() -> HttpConnectionManager {
        HttpConnectionManager {
            enabled: true,
            use_remote_address: false,
            xff_num_trusted_hops: 0,
            skip_xff_append: false,
            preserve_external_request_id: false,
            forward_client_cert: ForwardClientCert::Sanitize,
            client_cert_details: ClientCertDetails::default(),
            drop_headers_with_underscores: false,
            normalize_path: false,
            merge_slashes: false,
            route_timeout: DEFAULT_ROUTE_TIMEOUT,
            suppress_envoy_headers: false,
        }
    }
}

impl HttpConnectionManager {
    /// No mutation at all: the filter sees the test's headers, `source.address` is the
    /// connection's source.
    pub fn disabled() -> HttpConnectionManager {
        HttpConnectionManager {
            enabled: false,
            ..HttpConnectionManager::default()
        }
    }

    pub fn use_remote_address(mut self, on: bool) -> HttpConnectionManager {
        self.use_remote_address = on;
        self
    }

    pub fn xff_num_trusted_hops(mut self, hops: u32) -> HttpConnectionManager {
        self.xff_num_trusted_hops = hops;
        self
    }

    pub fn skip_xff_append(mut self, skip: bool) -> HttpConnectionManager {
        self.skip_xff_append = skip;
        self
    }

    pub fn preserve_external_request_id(mut self, preserve: bool) -> HttpConnectionManager {
        self.preserve_external_request_id = preserve;
        self
    }

    pub fn forward_client_cert(
        mut self,
        mode: ForwardClientCert,
        details: ClientCertDetails,
    ) -> HttpConnectionManager {
        self.forward_client_cert = mode;
        self.client_cert_details = details;
        self
    }

    /// `common_http_protocol_options.headers_with_underscores_action: DROP_HEADER`: the codec drops
    /// every request header whose name has an `_` (Envoy's default, `ALLOW`, keeps them).
    pub fn drop_headers_with_underscores(mut self, drop: bool) -> HttpConnectionManager {
        self.drop_headers_with_underscores = drop;
        self
    }

    /// `normalize_path`: `.` and `..` segments (also as `%2e`) resolved and a backslash read as
    /// `/` in `:path`, before routing and before any filter.
    pub fn normalize_path(mut self, on: bool) -> HttpConnectionManager {
        self.normalize_path = on;
        self
    }

    /// `merge_slashes`: runs of `/` in `:path` become one.
    pub fn merge_slashes(mut self, on: bool) -> HttpConnectionManager {
        self.merge_slashes = on;
        self
    }

    /// The matched route's `timeout` (Envoy's default 15 s; zero: none). The router announces
    /// it to the upstream in `x-envoy-expected-rq-timeout-ms`.
    pub fn route_timeout(mut self, timeout: Duration) -> HttpConnectionManager {
        self.route_timeout = timeout;
        self
    }

    /// The router's `suppress_envoy_headers`: no `x-envoy-expected-rq-timeout-ms` upstream and
    /// no `x-envoy-upstream-service-time` on the response.
    pub fn suppress_envoy_headers(mut self, suppress: bool) -> HttpConnectionManager {
        self.suppress_envoy_headers = suppress;
        self
    }

    /// Whether the router adds its `x-envoy-*` headers (the emulation is on and they are not
    /// suppressed).
    pub(crate) fn router_headers(&self) -> bool {
        self.enabled && !self.suppress_envoy_headers
    }

    /// What the router does to the request headers as the request goes upstream: it announces
    /// the route timeout (`FilterUtility::setTimeoutHeaders`; none for a zero timeout). It
    /// writes the downstream map itself, so the filter reads the header back in `proxy_on_log`.
    pub(crate) fn route_upstream(&self, headers: &mut HeaderMap) {
        let timeout_ms = self.route_timeout.as_millis();
        if self.router_headers() && timeout_ms > 0 {
            headers.set_owned(EXPECTED_TIMEOUT, timeout_ms.to_string());
        }
    }

    /// The `:path` Envoy routes on and the filter sees for a client's `path`: normalised and
    /// slash-merged as configured; the query is kept as sent.
    pub fn request_path(&self, path: &str) -> String {
        if !self.enabled {
            return path.to_string();
        }
        let (path_only, query) = match path.find('?') {
            Some(at) => path.split_at(at),
            None => (path, ""),
        };
        let mut out = if self.normalize_path {
            remove_dot_segments(&path_only.replace('\\', "/"))
        } else {
            path_only.to_string()
        };
        if self.merge_slashes {
            let mut merged = String::with_capacity(out.len());
            for ch in out.chars() {
                if !(ch == '/' && merged.ends_with('/')) {
                    merged.push(ch);
                }
            }
            out = merged;
        }
        out + query
    }

    /// Mutates `headers` as Envoy's HCM does and returns the client address Envoy records
    /// (`source.address`): the connection's peer with `use_remote_address`, else the address
    /// taken from X-Forwarded-For (port 0), else the peer.
    pub(crate) fn apply(
        &self,
        headers: &mut HeaderMap,
        connection: &Connection,
        new_request_id: &mut dyn FnMut() -> String,
    ) -> SocketAddr {
        if !self.enabled {
            return connection.source;
        }
        if self.drop_headers_with_underscores {
            headers.retain(|name| !name.contains('_'));
        }
        // Setting `:path` also keeps only the first of repeated values.
        let rewrites_path =
            self.normalize_path || self.merge_slashes || headers.has_repeated_names();
        if let Some(path) = headers.get(":path").filter(|_| rewrites_path) {
            let normalized = self.request_path(path);
            headers.set_owned(":path", normalized);
        }
        if headers.has_repeated_names() {
            for inline in INLINE_REQUEST_HEADERS {
                if headers.get_all(inline).len() > 1 {
                    if let Some(merged) = headers.get_joined(inline) {
                        headers.set_owned(inline, merged);
                    }
                }
            }
        }
        let is_tls = connection.tls.is_some();
        let edge_request = self.use_remote_address;
        headers.retain(|name| {
            !(HOP_BY_HOP.contains(&name)
                || EXTERNAL_CONTROL.contains(&name)
                || (edge_request && EDGE_ONLY.contains(&name)))
        });
        let mut remote = connection.source;
        if self.use_remote_address {
            if self.xff_num_trusted_hops > 0 {
                if let Some(ip) = xff_address(headers, self.xff_num_trusted_hops - 1) {
                    remote = SocketAddr::new(ip, 0);
                }
            }
            if !self.skip_xff_append {
                // Envoy appends its own address for a loopback peer.
                let appended = if connection.source.ip().is_loopback() {
                    connection.destination.ip()
                } else {
                    connection.source.ip()
                };
                append(headers, XFF, &appended.to_string());
            }
            if self.xff_num_trusted_hops == 0 || !headers.contains(XFP) {
                headers.set(XFP, scheme(is_tls));
            }
            // With Envoy 1.40's empty default internal_address_config every peer is external.
            headers.set_owned(EXTERNAL_ADDRESS, remote.ip().to_string());
        } else if let Some(ip) = xff_address(headers, self.xff_num_trusted_hops) {
            remote = SocketAddr::new(ip, 0);
        }
        if !headers.contains(XFP) {
            headers.set(XFP, scheme(is_tls));
        }
        // A missing :scheme comes from a valid XFP, else from the transport.
        if !headers.contains(":scheme") {
            let from_xfp = headers
                .get(XFP)
                .filter(|proto| {
                    proto.eq_ignore_ascii_case("http") || proto.eq_ignore_ascii_case("https")
                })
                .map(str::to_ascii_lowercase);
            headers.set_owned(
                ":scheme",
                from_xfp.unwrap_or_else(|| scheme(is_tls).to_string()),
            );
        }
        if !headers.contains(REQUEST_ID) || (edge_request && !self.preserve_external_request_id) {
            headers.set_owned(REQUEST_ID, new_request_id());
        }
        self.mutate_xfcc(headers, connection);
        remote
    }

    fn mutate_xfcc(&self, headers: &mut HeaderMap, connection: &Connection) {
        use ForwardClientCert::*;
        if self.forward_client_cert == AlwaysForwardOnly {
            return;
        }
        let tls = connection.tls.as_ref();
        let peer = tls.and_then(|tls| tls.peer.as_ref());
        let (Some(tls), Some(peer)) = (tls, peer) else {
            headers.remove(XFCC);
            return;
        };
        match self.forward_client_cert {
            Sanitize => headers.remove(XFCC),
            ForwardOnly | AlwaysForwardOnly => {}
            AppendForward | SanitizeSet => {
                let mut element: Vec<String> = Vec::new();
                if let Some(local) = &tls.local {
                    element.extend(local.uri_sans().iter().map(|uri| format!("By={uri}")));
                }
                element.push(format!("Hash={}", peer.sha256_digest()));
                let details = self.client_cert_details;
                if details.cert {
                    element.push(format!("Cert=\"{}\"", peer.url_encoded_pem()));
                }
                if details.chain {
                    let chain: String = std::iter::once(peer)
                        .chain(tls.peer_chain.iter())
                        .map(|certificate| certificate.url_encoded_pem())
                        .collect();
                    element.push(format!("Chain=\"{chain}\""));
                }
                if details.subject {
                    element.push(format!("Subject=\"{}\"", peer.subject()));
                }
                if details.uri {
                    if peer.uri_sans().is_empty() {
                        element.push("URI=".to_string());
                    }
                    element.extend(peer.uri_sans().iter().map(|uri| format!("URI={uri}")));
                }
                if details.dns {
                    element.extend(peer.dns_sans().iter().map(|dns| format!("DNS={dns}")));
                }
                let element = element.join(";");
                if self.forward_client_cert == AppendForward {
                    append(headers, XFCC, &element);
                } else {
                    headers.set(XFCC, &element);
                }
            }
        }
    }
}

fn scheme(is_tls: bool) -> &'static str {
    if is_tls {
        "https"
    } else {
        "http"
    }
}

/// Appends to a comma-separated header as Envoy does for its inline headers.
fn append(headers: &mut HeaderMap, key: &str, value: &str) {
    let joined = match headers.get_joined(key) {
        Some(existing) if !existing.is_empty() => format!("{existing},{value}"),
        _ => value.to_string(),
    };
    headers.set_owned(key, joined);
}

/// RFC 3986 section 5.2.4 on a path, with `%2e` read as `.` as Envoy's canonicaliser does; `..`
/// never climbs above the root.
fn remove_dot_segments(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (index, segment) in segments.iter().enumerate() {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        match decoded.as_str() {
            "." | ".." => {
                if decoded == ".." {
                    kept.pop();
                }
                if index == last {
                    // `/a/..` and `/a/.` end in a directory: keep the trailing slash.
                    kept.push("");
                }
            }
            _ => kept.push(segment),
        }
    }
    format!("/{}", kept.join("/"))
}

/// The address `skip` entries from the right of X-Forwarded-For, if it parses as an IP.
fn xff_address(headers: &HeaderMap, skip: u32) -> Option<IpAddr> {
    let joined = headers.get_joined(XFF)?;
    let entries: Vec<&str> = joined.split(',').map(str::trim).collect();
    let index = entries.len().checked_sub(1 + skip as usize)?;
    entries[index].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("id-{n}")
        }
    }

    #[test]
    fn default_hcm_takes_the_client_address_from_xff_and_keeps_xff() {
        let mut headers = HeaderMap::from([("x-forwarded-for", "1.2.3.4")]);
        let remote =
            HttpConnectionManager::default().apply(&mut headers, &Connection::plain(), &mut ids());
        assert_eq!(remote, "1.2.3.4:0".parse().unwrap());
        assert_eq!(headers.get(XFF), Some("1.2.3.4"));
        assert_eq!(headers.get(XFP), Some("http"));
        assert_eq!(headers.get(REQUEST_ID), Some("id-1"));
        assert!(!headers.contains(EXTERNAL_ADDRESS));
    }

    #[test]
    fn use_remote_address_appends_envoys_own_address_for_a_loopback_peer() {
        let mut headers = HeaderMap::from([("x-forwarded-for", "1.2.3.4")]);
        let connection = Connection::plain().destination("10.0.0.1:8443".parse().unwrap());
        let remote = HttpConnectionManager::default()
            .use_remote_address(true)
            .apply(&mut headers, &connection, &mut ids());
        assert_eq!(remote, connection.source);
        assert_eq!(headers.get(XFF), Some("1.2.3.4,10.0.0.1"));
        assert_eq!(headers.get(EXTERNAL_ADDRESS), Some("127.0.0.1"));
    }

    #[test]
    fn repeated_inline_headers_are_merged_and_others_kept_apart() {
        let mut headers = HeaderMap::from_pairs(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-custom", "a"),
            ("x-forwarded-for", "2.2.2.2"),
            ("x-custom", "b"),
        ]);
        let remote =
            HttpConnectionManager::default().apply(&mut headers, &Connection::plain(), &mut ids());
        assert_eq!(headers.get_all(XFF), ["1.1.1.1,2.2.2.2"]);
        assert_eq!(headers.get_all("x-custom"), ["a", "b"]);
        assert_eq!(remote, "2.2.2.2:0".parse().unwrap());
    }

    #[test]
    fn hop_by_hop_and_envoy_control_headers_from_clients_are_removed() {
        let mut headers = HeaderMap::from([
            ("connection", "close"),
            ("x-envoy-retry-on", "5xx"),
            ("x-envoy-internal", "true"),
            ("x-envoy-downstream-service-node", "spoofed"),
            ("x-app", "kept"),
        ]);
        HttpConnectionManager::default()
            .use_remote_address(true)
            .apply(&mut headers, &Connection::plain(), &mut ids());
        let names: Vec<&str> = headers.iter().map(|(name, _)| name).collect();
        assert!(names.contains(&"x-app"));
        for removed in [
            "connection",
            "x-envoy-retry-on",
            "x-envoy-internal",
            "x-envoy-downstream-service-node",
        ] {
            assert!(!names.contains(&removed), "{removed}");
        }
    }

    #[test]
    fn underscore_headers_are_dropped_and_the_path_normalised_when_configured() {
        let hcm = HttpConnectionManager::default()
            .drop_headers_with_underscores(true)
            .normalize_path(true)
            .merge_slashes(true);
        let mut headers = HeaderMap::from([
            (":path", "//admin/./x/../%2E%2e/orders//7?q=a/../b"),
            ("x_client_dns", "spoofed"),
            ("x-client-dns", "kept"),
        ]);
        hcm.apply(&mut headers, &Connection::plain(), &mut ids());
        assert_eq!(headers.get(":path"), Some("/orders/7?q=a/../b"));
        assert_eq!(headers.get_all("x-client-dns"), ["kept"]);
        assert!(!headers.contains("x_client_dns"));
        assert_eq!(hcm.request_path("/a/b/.."), "/a/");
        assert_eq!(hcm.request_path("/../.."), "/");
        assert_eq!(hcm.request_path("/a\\b"), "/a/b");
        assert_eq!(
            HttpConnectionManager::default().request_path("//a/../b"),
            "//a/../b"
        );
    }

    #[test]
    fn plain_connections_lose_any_incoming_xfcc_unless_always_forwarded() {
        for (mode, kept) in [
            (ForwardClientCert::Sanitize, false),
            (ForwardClientCert::ForwardOnly, false),
            (ForwardClientCert::SanitizeSet, false),
            (ForwardClientCert::AlwaysForwardOnly, true),
        ] {
            let mut headers = HeaderMap::from([(XFCC, "By=spoofed")]);
            HttpConnectionManager::default()
                .forward_client_cert(mode, ClientCertDetails::all())
                .apply(&mut headers, &Connection::plain(), &mut ids());
            assert_eq!(headers.contains(XFCC), kept, "{mode:?}");
        }
    }
}
