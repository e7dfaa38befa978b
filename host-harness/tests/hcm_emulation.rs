//! Envoy's HttpConnectionManager mutation runs before the filter: XFF / source.address, XFP,
//! x-request-id and XFCC per `forward_client_cert_details`.

mod common;

use host_harness::{
    ClientCertDetails, Connection, ForwardClientCert, HttpConnectionManager, Plugin,
    PluginSettings, Request, Tls, UpstreamRequest,
};

const XFCC: &str = "x-forwarded-client-cert";

fn upstream(
    hcm: HttpConnectionManager,
    connection: &Connection,
    request: Request,
) -> UpstreamRequest {
    let settings = PluginSettings::new("gate")
        .configuration("on")
        .http_connection_manager(hcm);
    let mut plugin = Plugin::new(&common::header_gate(), settings).expect("gate starts");
    let exchange = plugin.send(connection, request).expect("exchange");
    exchange.request.upstream().expect("continued").clone()
}

fn mtls_with_local_certificate() -> (Connection, host_harness::Certificate) {
    let (_, client) = common::client_certificate();
    let tls = Tls::new()
        .peer_certificate(client.clone())
        .local_certificate(common::server_certificate());
    (Connection::tls(tls), client)
}

#[test]
fn source_address_comes_from_xff_unless_the_remote_address_is_used() {
    let request = || Request::get("/").header("x-forwarded-for", "1.2.3.4");
    let derived = upstream(
        HttpConnectionManager::default(),
        &Connection::plain(),
        request(),
    );
    assert_eq!(derived.headers.get("x-source"), Some("1.2.3.4:0"));
    assert_eq!(derived.headers.get("x-forwarded-for"), Some("1.2.3.4"));
    assert_eq!(derived.headers.get("x-forwarded-proto"), Some("http"));
    assert!(derived
        .headers
        .get("x-request-id")
        .is_some_and(|id| id.len() == 36));

    let remote = upstream(
        HttpConnectionManager::default().use_remote_address(true),
        &Connection::plain(),
        request(),
    );
    assert_eq!(remote.headers.get("x-source"), Some("127.0.0.1:50000"));
    assert_eq!(
        remote.headers.get("x-forwarded-for"),
        Some("1.2.3.4,127.0.0.1")
    );
    assert_eq!(
        remote.headers.get("x-envoy-external-address"),
        Some("127.0.0.1")
    );

    let raw = upstream(
        HttpConnectionManager::disabled(),
        &Connection::plain(),
        request(),
    );
    assert_eq!(raw.headers.get("x-source"), Some("127.0.0.1:50000"));
    assert!(raw.headers.get("x-request-id").is_none());
}

#[test]
fn sanitize_set_replaces_a_spoofed_xfcc_with_this_hops_element() {
    let (connection, client) = mtls_with_local_certificate();
    let hcm = HttpConnectionManager::default()
        .forward_client_cert(ForwardClientCert::SanitizeSet, ClientCertDetails::all());
    let request = Request::get("/").header(XFCC, "By=spiffe://evil;URI=spiffe://evil");
    let headers = upstream(hcm, &connection, request).headers;
    assert_eq!(headers.get_all(XFCC).len(), 1);
    let xfcc = headers.get(XFCC).expect("xfcc set");
    // Envoy percent-encodes the PEM; for base64 PEM text that touches exactly these bytes.
    let encoded = [
        ("\n", "%0A"),
        (" ", "%20"),
        ("+", "%2B"),
        ("/", "%2F"),
        ("=", "%3D"),
    ]
    .iter()
    .fold(client.pem(), |pem, (from, to)| pem.replace(from, to));
    let expected = [
        "By=spiffe://example.org/envoy".to_string(),
        format!("Hash={}", client.sha256_digest()),
        format!("Cert=\"{encoded}\""),
        format!("Chain=\"{encoded}\""),
        "Subject=\"C=US,O=Spike Org,OU=Team A,CN=client-one\"".to_string(),
        "URI=spiffe://example.org/ns/a/sa/one".to_string(),
        "URI=spiffe://example.org/ns/a/sa/two".to_string(),
        "DNS=one.example.org".to_string(),
        "DNS=two.example.org".to_string(),
    ]
    .join(";");
    assert_eq!(xfcc, expected);
    assert_eq!(headers.get("x-forwarded-proto"), Some("https"));
}

#[test]
fn append_forward_keeps_the_incoming_element_on_the_left() {
    let (connection, client) = mtls_with_local_certificate();
    let hcm = HttpConnectionManager::default().forward_client_cert(
        ForwardClientCert::AppendForward,
        ClientCertDetails::default(),
    );
    let request = Request::get("/").header(XFCC, "By=spiffe://prior;Hash=00");
    let headers = upstream(hcm, &connection, request).headers;
    assert_eq!(
        headers.get(XFCC),
        Some(
            format!(
                "By=spiffe://prior;Hash=00,By=spiffe://example.org/envoy;Hash={}",
                client.sha256_digest()
            )
            .as_str()
        )
    );
}

#[test]
fn default_sanitize_drops_xfcc_and_forward_only_keeps_it_on_mtls() {
    let (connection, _) = mtls_with_local_certificate();
    let request = || Request::get("/").header(XFCC, "By=spiffe://spoofed");
    let sanitized = upstream(HttpConnectionManager::default(), &connection, request());
    assert!(sanitized.headers.get(XFCC).is_none());
    let forwarded = upstream(
        HttpConnectionManager::default()
            .forward_client_cert(ForwardClientCert::ForwardOnly, ClientCertDetails::default()),
        &connection,
        request(),
    );
    assert_eq!(forwarded.headers.get(XFCC), Some("By=spiffe://spoofed"));
}

#[test]
fn a_local_reply_to_head_keeps_its_headers_and_drops_its_body() {
    let settings = PluginSettings::new("gate").configuration("on");
    let mut plugin = Plugin::new(&common::header_gate(), settings).expect("gate starts");
    for (method, body) in [("GET", &b"denied by raw guest"[..]), ("HEAD", &b""[..])] {
        let exchange = plugin
            .send(
                &Connection::plain(),
                Request::new(method, "/").header("x-deny", "1"),
            )
            .expect("exchange");
        let response = exchange.response.expect("answered");
        assert_eq!(
            (response.status, response.body.as_slice()),
            (418, body),
            "{method}"
        );
        assert_eq!(
            response.headers.get("content-length"),
            Some("19"),
            "{method}"
        );
    }
}
