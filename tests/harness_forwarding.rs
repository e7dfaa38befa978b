//! certgate's forwarding headers and anti-spoofing on the real `certgate.wasm`, through the host
//! harness: the headers as the upstream receives them, spoofed copies removed whatever their
//! spelling or number, trusted proxies believed, and the spoofing metric and warning.

mod support;

use host_harness::{
    ClientCertDetails, Connection, ForwardClientCert, HttpConnectionManager, LogLevel,
    PluginSettings, Request,
};
use serde_json::{json, Value};
use support::{certificate, issue, plugin_with};
use testkit::CertSpec;

const CLIENT_URIS: [&str; 2] = [
    "spiffe://mesh.local/ns/shop/sa/orders",
    "spiffe://mesh.local/ns/shop/sa/orders-canary",
];
const PEER: &str = "203.0.113.7:41000";
const TRUSTED_PROXY: &str = "10.0.0.9:40000";

fn orders() -> CertSpec {
    CertSpec::client()
        .uri(CLIENT_URIS[0])
        .uri(CLIENT_URIS[1])
        .dns("orders.shop.svc")
        .cn("orders")
}

/// Envoy's HCM with the socket peer as `source.address` and no XFF append of its own, so that
/// certgate's `xff.append` is the only one (the setting docs/configuration.md recommends).
fn settings() -> PluginSettings {
    PluginSettings::new("certgate").http_connection_manager(
        HttpConnectionManager::default()
            .use_remote_address(true)
            .skip_xff_append(true),
    )
}

fn forwarding_policy() -> Value {
    json!({
        "trusted_proxies": {"cidrs": ["10.0.0.0/8"]},
        "forwarding": {
            "xff": {"append": true},
            "x_forwarded_proto": true,
            "x_forwarded_host": true,
            "forwarded": "append",
            "xfcc": {"mode": "sanitize_set", "details": ["uri", "dns"]},
            "client_cert": true,
            "identity_headers": {
                "x-client-spiffe-id": "uri",
                "x-client-dns": "dns",
                "x-client-route": "route",
                "x-client-decision": "decision"
            }
        },
        "routes": [{"name": "orders", "match": {"path_prefix": "/orders"}},
                   {"name": "open", "require_client_cert": false}]
    })
}

#[test]
fn allowed_requests_reach_the_upstream_with_the_forwarding_headers() {
    let mut plugin = plugin_with(settings(), &forwarding_policy());
    let issued = issue(&orders());
    let connection = Connection::mtls(certificate(&issued)).source(PEER.parse().unwrap());
    let request = Request::get("/orders/7")
        .authority("api.example.com")
        .header("x-forwarded-for", "198.51.100.1")
        .header("x-forwarded-proto", "http");
    let exchange = plugin.send(&connection, request).unwrap();
    let upstream = &exchange.request.upstream().expect("allowed").headers;
    let der_base64: String = issued
        .cert_pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let expected = [
        ("x-forwarded-for", "198.51.100.1, 203.0.113.7".to_string()),
        ("x-forwarded-proto", "https".to_string()),
        ("x-forwarded-host", "api.example.com".to_string()),
        ("x-forwarded-port", "443".to_string()),
        ("client-cert", format!(":{der_base64}:")),
        ("x-client-spiffe-id", CLIENT_URIS.join(",")),
        ("x-client-dns", "orders.shop.svc".to_string()),
        ("x-client-route", "orders".to_string()),
        ("x-client-decision", "allow".to_string()),
    ];
    for (name, value) in expected {
        assert_eq!(
            upstream.get_all(name),
            [value.as_str()],
            "{name} in {upstream:?}"
        );
    }
    let forwarded = upstream.get("forwarded").expect("Forwarded appended");
    assert!(
        forwarded.contains("for=203.0.113.7") && forwarded.contains("proto=https"),
        "{forwarded}"
    );
    assert!(forwarded.contains("host=api.example.com"), "{forwarded}");
    let xfcc = upstream.get("x-forwarded-client-cert").expect("XFCC set");
    for part in [
        format!("URI={}", CLIENT_URIS[0]),
        format!("URI={}", CLIENT_URIS[1]),
        "DNS=orders.shop.svc".to_string(),
    ] {
        assert!(xfcc.contains(&part), "{part} in {xfcc}");
    }
    assert!(
        !xfcc.contains("Hash="),
        "only the configured details: {xfcc}"
    );
    assert_eq!(exchange.response.unwrap().status, 200);
}

/// What certgate keeps per connection (the certificate's rendered header values among it) was
/// derived under a configuration: a new one applies to connections already seen.
#[test]
fn a_new_configuration_applies_to_a_connection_already_seen() {
    let mut plugin = plugin_with(settings(), &forwarding_policy());
    let connection = Connection::mtls(certificate(&issue(&orders()))).source(PEER.parse().unwrap());
    let send = |plugin: &mut host_harness::Plugin| {
        let exchange = plugin.send(&connection, Request::get("/orders/7")).unwrap();
        exchange
            .request
            .upstream()
            .expect("allowed")
            .headers
            .clone()
    };
    let before = send(&mut plugin);
    assert_eq!(before.get("x-client-dns"), Some("orders.shop.svc"));
    assert!(before.get("x-forwarded-client-cert").is_some());
    let mut changed = forwarding_policy();
    changed["forwarding"]["identity_headers"] = json!({"x-peer-cn": "subject_cn"});
    changed["forwarding"]["xfcc"] = json!({"mode": "sanitize"});
    let configured = plugin.configure(changed.to_string()).unwrap();
    assert!(configured.accepted, "{:?}", configured.logs);
    let after = send(&mut plugin);
    assert_eq!(after.get("x-peer-cn"), Some("orders"));
    assert_eq!(after.get("x-client-dns"), None);
    assert_eq!(after.get("x-forwarded-client-cert"), None);
}

#[test]
fn spoofed_identity_headers_are_removed_in_every_spelling_and_counted() {
    let mut plugin = plugin_with(settings(), &forwarding_policy());
    let connection = Connection::mtls(certificate(&issue(&orders()))).source(PEER.parse().unwrap());
    let spoofed = || {
        Request::get("/orders")
            .header("x-client-spiffe-id", "spiffe://mesh.local/ns/ops/sa/admin")
            .header("x-client-spiffe-id", "spiffe://evil")
            .header("X-Client-Spiffe-ID", "spiffe://evil-case")
            .header("Client-Cert", ":AAAA:")
            .header("x-client-decision", "audit_deny")
    };
    let exchange = plugin.send(&connection, spoofed()).unwrap();
    let upstream = &exchange.request.upstream().expect("allowed").headers;
    assert_eq!(
        upstream.get_all("x-client-spiffe-id"),
        [CLIENT_URIS.join(",").as_str()]
    );
    assert_eq!(upstream.get_all("x-client-decision"), ["allow"]);
    assert_eq!(upstream.get_all("client-cert").len(), 1);
    assert_ne!(upstream.get("client-cert"), Some(":AAAA:"));
    let spelled: Vec<&str> = upstream
        .iter()
        .map(|(name, _)| name)
        .filter(|name| name.eq_ignore_ascii_case("x-client-spiffe-id"))
        .collect();
    assert_eq!(spelled, ["x-client-spiffe-id"], "one spelling survives");
    let counts = [
        ("x-client-spiffe-id", 3),
        ("client-cert", 1),
        ("x-client-decision", 1),
    ];
    plugin.tick().unwrap();
    for (header, count) in counts {
        let name = format!("certgate_spoofed_headers_total.header.{header}");
        assert_eq!(plugin.metric_value(&name), Some(count), "{name}");
    }
    // The same connection again: counted again, warned about once.
    plugin.send(&connection, spoofed()).unwrap();
    plugin.tick().unwrap();
    assert_eq!(
        plugin.metric_value("certgate_spoofed_headers_total.header.x-client-spiffe-id"),
        Some(6)
    );
    let warnings: Vec<&str> = plugin
        .logs_at(LogLevel::Warn)
        .into_iter()
        .filter(|line| line.contains("sent headers certgate owns"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("x-client-spiffe-id"),
        "{}",
        warnings[0]
    );
}

#[test]
fn a_request_without_a_certificate_carries_no_identity_headers() {
    let mut plugin = plugin_with(settings(), &forwarding_policy());
    let connection = Connection::plain().source(PEER.parse().unwrap());
    let request = Request::get("/open")
        .header("x-client-spiffe-id", "spiffe://mesh.local/ns/ops/sa/admin")
        .header("x-client-dns", "admin.ops.svc");
    let exchange = plugin.send(&connection, request).unwrap();
    let upstream = &exchange
        .request
        .upstream()
        .expect("the open route allows")
        .headers;
    assert!(!upstream.contains("x-client-spiffe-id"), "{upstream:?}");
    assert!(!upstream.contains("x-client-dns"), "{upstream:?}");
    assert!(!upstream.contains("client-cert"), "{upstream:?}");
    assert_eq!(upstream.get("x-forwarded-proto"), Some("http"));
    assert_eq!(upstream.get("x-client-route"), Some("open"));
}

#[test]
fn only_a_trusted_proxy_keeps_its_forwarded_proto_and_host() {
    // Envoy's default HCM: an edge HCM (`use_remote_address`) would overwrite X-Forwarded-Proto
    // itself. Without X-Forwarded-For, `source.address` is still the socket peer.
    let mut plugin = plugin_with(PluginSettings::new("certgate"), &forwarding_policy());
    let request = || {
        Request::get("/open")
            .authority("internal:8080")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "shop.example.com")
    };
    // (peer, proto, host, port)
    let table = [
        (TRUSTED_PROXY, "https", "shop.example.com", None),
        (PEER, "http", "internal:8080", Some("8080")),
    ];
    for (peer, proto, host, port) in table {
        let connection = Connection::plain().source(peer.parse().unwrap());
        let exchange = plugin.send(&connection, request()).unwrap();
        let upstream = &exchange.request.upstream().unwrap().headers;
        assert_eq!(upstream.get_all("x-forwarded-proto"), [proto], "{peer}");
        assert_eq!(upstream.get_all("x-forwarded-host"), [host], "{peer}");
        assert_eq!(upstream.get("x-forwarded-port"), port, "{peer}");
    }
}

#[test]
fn denied_requests_are_not_rewritten_or_forwarded() {
    let mut plugin = plugin_with(settings(), &forwarding_policy());
    let connection = Connection::plain().source(PEER.parse().unwrap());
    let exchange = plugin
        .send(
            &connection,
            Request::get("/orders").header("x-client-spiffe-id", "spoof"),
        )
        .unwrap();
    assert!(exchange.request.upstream().is_none());
    let response = exchange.response.unwrap();
    assert_eq!(response.status, 403);
    assert!(!response.headers.contains("x-client-spiffe-id"));
}

#[test]
fn an_xfcc_identity_counts_only_from_a_trusted_proxy() {
    let policy = json!({
        "identity_sources": ["xfcc"],
        "trusted_proxies": {"cidrs": ["10.0.0.0/8"]},
        "routes": [{"name": "orders", "allow": [{"uri": CLIENT_URIS[0]}]}]
    });
    // The front proxy's XFCC reaches certgate only if Envoy passes it through.
    let hcm = HttpConnectionManager::default()
        .use_remote_address(true)
        .forward_client_cert(
            ForwardClientCert::AlwaysForwardOnly,
            ClientCertDetails::default(),
        );
    let mut plugin = plugin_with(
        PluginSettings::new("certgate").http_connection_manager(hcm),
        &policy,
    );
    let xfcc = format!(
        "By=spiffe://mesh.local/ns/edge/sa/gateway;URI={}",
        CLIENT_URIS[0]
    );
    let request = || Request::get("/orders").header("x-forwarded-client-cert", &xfcc);

    let from_proxy = Connection::plain().source(TRUSTED_PROXY.parse().unwrap());
    let trusted = plugin.send(&from_proxy, request()).unwrap();
    assert_eq!(
        support::decision(&trusted),
        ("allow".into(), "allowlist_match".into())
    );
    assert_eq!(
        support::state(&trusted, "identity_source").as_deref(),
        Some("xfcc")
    );
    assert_eq!(
        support::state(&trusted, "identity").as_deref(),
        Some(CLIENT_URIS[0])
    );

    let from_client = Connection::plain().source(PEER.parse().unwrap());
    let spoofed = plugin.send(&from_client, request()).unwrap();
    assert_eq!(
        support::decision(&spoofed),
        ("deny".into(), "no_client_cert".into())
    );
    plugin.tick().unwrap();
    assert_eq!(
        plugin.metric_value("certgate_spoofed_headers_total.header.x-forwarded-client-cert"),
        Some(1)
    );
}
