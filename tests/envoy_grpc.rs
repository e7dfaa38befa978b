//! HTTP/2 and gRPC through the shipped configs in real Envoy: the listeners negotiate `h2` by ALPN,
//! certgate decides HTTP/2 requests as it decides HTTP/1.1 ones, and a refused gRPC call comes back
//! as a gRPC status (`PERMISSION_DENIED` for a refused identity, `UNAUTHENTICATED` without a
//! certificate) with certgate's `grpc-message`, in the caller's own protocol. Upstream, the gateway
//! speaks HTTP/2 to a backend that offers it by ALPN and HTTP/1.1 to one that does not; the sidecar
//! sends gRPC calls to the app over h2c and everything else over HTTP/1.1, on the same port.

use testkit::{envoy, CertSpec, Client, EchoServer, Envoy, Pki, Request};
use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

const SHOP_ORDERS: &str = "spiffe://mesh.local/ns/shop/sa/orders";

/// A shipped config of `envoy/` with its upstream at `upstream_port`, running `policy`.
async fn start(pki: &Pki, config: &str, upstream_port: u16, policy: &serde_json::Value) -> Envoy {
    envoy(config)
        .cert_dir(&pki.dir)
        .upstream_port(upstream_port)
        .plugin_config(policy)
        .start()
        .await
        .unwrap()
}

/// A client certificate of the mesh CA with this URI SAN.
fn uri_cert(pki: &Pki, uri: &str) -> testkit::IssuedCert {
    pki.client_cert(&CertSpec::client().uri(uri)).unwrap()
}

/// A gRPC call as a gRPC client sends it (the body is an empty length-prefixed message).
fn grpc_call(path: &str) -> Request {
    Request::new("POST", path)
        .header("host", "shop.example.com")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(vec![0, 0, 0, 0, 0])
}

#[tokio::test]
async fn http2_requests_are_decided_and_refused_grpc_calls_get_grpc_statuses() {
    let pki = Pki::new().unwrap();
    let backend = EchoServer::tls(&pki.backend).unwrap();
    let envoy = start(
        &pki,
        "gateway.yaml",
        backend.port(),
        &testkit::envoy::shipped_policy("gateway-policy.json").unwrap(),
    )
    .await;
    // The echo backend offers no ALPN: the gateway falls back to HTTP/1.1, the only protocol it speaks.
    let listener = envoy.listener("ingress").unwrap();
    let orders = uri_cert(&pki, SHOP_ORDERS);
    let as_orders = Client::tls(listener, pki.client_tls(Some(&orders)).unwrap());
    let anonymous = Client::tls(listener, pki.client_tls(None).unwrap());

    // Both on one HTTP/2 connection, as a keep-alive caller sends them.
    let mut connection = as_orders.connect_h2().await.unwrap();
    let allowed = connection
        .send(&Request::get("/orders/7", "shop.example.com"))
        .await
        .unwrap();
    assert_eq!(allowed.status, 200, "{}", allowed.body_text());
    let echoed = allowed.echoed().unwrap();
    assert_eq!(echoed.header("x-client-spiffe-id"), Some(SHOP_ORDERS));
    assert_eq!(backend.requests_served(), 1);

    let refused = connection.send(&grpc_call("/admin/users")).await.unwrap();
    assert_eq!(refused.status, 200, "a gRPC answer: {refused:?}");
    assert_eq!(refused.header("grpc-status"), Some("7"), "{refused:?}");
    let message = refused.header("grpc-message").unwrap_or_default();
    assert!(
        message.starts_with("certgate: permission denied: not_in_allowlist (request "),
        "{message}"
    );

    let unauthenticated = anonymous.send_h2(&grpc_call("/orders/7")).await.unwrap();
    assert_eq!(
        unauthenticated.header("grpc-status"),
        Some("16"),
        "{unauthenticated:?}"
    );
    assert!(unauthenticated
        .header("grpc-message")
        .is_some_and(|message| message.starts_with("certgate: unauthenticated: no_client_cert")));

    let http_refusal = anonymous
        .send_h2(&Request::get("/orders/7", "shop.example.com"))
        .await
        .unwrap();
    assert_eq!(http_refusal.status, 403, "not gRPC: the HTTP reply");
    assert_eq!(http_refusal.json().unwrap()["reason"], "no_client_cert");
    assert_eq!(
        backend.requests_served(),
        1,
        "no refusal reached the backend"
    );
}

/// The request of the `shop.Orders` calls.
#[derive(Clone, PartialEq, prost::Message)]
struct Query {
    #[prost(string, tag = "1")]
    id: String,
}

/// What the backend answers: the identity header it received.
#[derive(Clone, PartialEq, prost::Message)]
struct Reply {
    #[prost(string, tag = "1")]
    identity: String,
}

/// A gRPC channel to `port` presenting `cert` (none when `None`), trusting Envoy's certificate.
async fn channel(pki: &Pki, port: u16, cert: Option<&testkit::IssuedCert>) -> Channel {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pki.mesh_ca.cert_pem()))
        .domain_name(testkit::pki::ENVOY_SERVER_NAME);
    if let Some(cert) = cert {
        tls = tls.identity(Identity::from_pem(&cert.cert_pem, &cert.key_pem));
    }
    Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn get(channel: Channel) -> Result<Reply, Status> {
    let mut grpc = Grpc::new(channel);
    grpc.ready().await.unwrap();
    let query = Query { id: "7".into() };
    grpc.unary(
        tonic::Request::new(query),
        PathAndQuery::from_static("/shop.Orders/Get"),
        ProstCodec::<Query, Reply>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

/// A server-streaming call's messages, or its status.
async fn watch(channel: Channel) -> Result<Vec<String>, Status> {
    let mut grpc = Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut stream = grpc
        .server_streaming(
            tonic::Request::new(Query { id: "7".into() }),
            PathAndQuery::from_static("/shop.Orders/Watch"),
            ProstCodec::<Query, Reply>::default(),
        )
        .await?
        .into_inner();
    let mut received = Vec::new();
    while let Some(reply) = stream.message().await? {
        received.push(reply.identity);
    }
    Ok(received)
}

/// A real gRPC client (tonic over rustls) through the shipped gateway to a gRPC backend that offers
/// `h2` by ALPN (the backend speaks nothing else, so every answered call went upstream over
/// HTTP/2): an allowed identity's unary and server-streaming calls succeed and the backend sees the
/// identity header; a refused identity and a caller without a certificate get their gRPC status in
/// tonic's `Status`.
#[tokio::test]
async fn the_gateway_reaches_a_grpc_backend_over_http2_and_refuses_in_grpc_terms() {
    let pki = Pki::new().unwrap();
    let grpc_backend = testkit::GrpcBackend::tls(&pki.backend).unwrap();
    let mut policy = testkit::envoy::shipped_policy("gateway-policy.json").unwrap();
    policy["routes"].as_array_mut().unwrap().insert(
        0,
        serde_json::json!({"name": "orders_grpc", "match": {"path_prefix": "/shop.Orders/"},
                           "allow": [{"uri": SHOP_ORDERS}]}),
    );
    let envoy = start(&pki, "gateway.yaml", grpc_backend.port(), &policy).await;
    let port = envoy.listener("ingress").unwrap().port();
    let orders = uri_cert(&pki, SHOP_ORDERS);
    let stranger = uri_cert(&pki, "spiffe://mesh.local/ns/web/sa/frontend");

    let reply = get(channel(&pki, port, Some(&orders)).await).await.unwrap();
    assert_eq!(reply.identity, SHOP_ORDERS, "the backend saw the identity");
    let streamed = watch(channel(&pki, port, Some(&orders)).await)
        .await
        .unwrap();
    assert_eq!(
        streamed,
        vec![SHOP_ORDERS; testkit::grpc::STREAMED_MESSAGES]
    );
    assert_eq!(grpc_backend.calls(), 2);

    let refused = get(channel(&pki, port, Some(&stranger)).await)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused
            .message()
            .starts_with("certgate: permission denied: not_in_allowlist (request "),
        "{refused:?}"
    );
    let anonymous = get(channel(&pki, port, None).await).await.unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated, "{anonymous:?}");
    assert_eq!(
        grpc_backend.calls(),
        2,
        "no refused call reached the backend"
    );
}

/// The shipped sidecar in front of an app serving HTTP/1.1 and gRPC (h2c) on one port: gRPC calls
/// reach it over HTTP/2 on the same certgate route as its HTTP/1.1 requests, which still arrive
/// over HTTP/1.1; a refused identity's call never reaches it.
#[tokio::test]
async fn the_sidecar_sends_grpc_calls_to_the_app_over_h2c_and_the_rest_over_http1() {
    let pki = Pki::new().unwrap();
    let app = EchoServer::plain().unwrap();
    let envoy = start(
        &pki,
        "sidecar.yaml",
        app.port(),
        &testkit::envoy::shipped_policy("sidecar-policy.json").unwrap(),
    )
    .await;
    let listener = envoy.listener("ingress").unwrap();
    let orders = uri_cert(&pki, SHOP_ORDERS);
    let stranger = uri_cert(&pki, "spiffe://mesh.local/ns/web/sa/frontend");

    let reply = get(channel(&pki, listener.port(), Some(&orders)).await)
        .await
        .unwrap();
    assert_eq!(reply.identity, SHOP_ORDERS, "the app saw the identity");
    let streamed = watch(channel(&pki, listener.port(), Some(&orders)).await)
        .await
        .unwrap();
    assert_eq!(streamed.len(), testkit::grpc::STREAMED_MESSAGES);
    assert_eq!(app.requests_served(), 2);

    let as_orders = Client::tls(listener, pki.client_tls(Some(&orders)).unwrap());
    for response in [
        as_orders
            .send(&Request::get("/orders/7", "app.mesh.local"))
            .await
            .unwrap(),
        as_orders
            .send_h2(&Request::get("/orders/7", "app.mesh.local"))
            .await
            .unwrap(),
    ] {
        assert_eq!(response.status, 200, "{}", response.body_text());
        let echoed = response.echoed().unwrap();
        assert_eq!(echoed.header("x-client-spiffe-id"), Some(SHOP_ORDERS));
    }
    assert_eq!(app.requests_served(), 4, "HTTP/1.1 upstream for both");

    let refused = get(channel(&pki, listener.port(), Some(&stranger)).await)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let denied = [
        ("route", "app"),
        ("decision", "deny"),
        ("reason", "not_in_allowlist"),
    ];
    envoy
        .wait_for_prometheus(std::time::Duration::from_secs(5), |scrape| {
            scrape.value("certgate_requests_total", &denied).is_some()
        })
        .await
        .expect("the gRPC route is certgate's `app` route");
    assert_eq!(
        app.requests_served(),
        4,
        "the refused call never reached the app"
    );
}
