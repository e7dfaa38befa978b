//! TLS session resumption in real Envoy with the shipped configs, which keep Envoy's default
//! (resumption on): rustls clients that resume a TLS 1.3 or TLS 1.2 session are admitted on the
//! sidecar, a resumed session of an untrusted certificate is still refused on the gateway's
//! `ACCEPT_UNTRUSTED` listener, and a churning client load sees no refusal, from rustls clients and
//! from a second Envoy as the client sidecar (Envoy's default upstream TLS, so it resumes).

use rustls::HandshakeKind;
use serde_json::json;
use testkit::{
    envoy, CertSpec, Client, ClientTls, Drive, EchoServer, Envoy, IssuedCert, Pki, Request,
};

const SHOP_ORDERS: &str = "spiffe://mesh.local/ns/shop/sa/orders";

fn sidecar_policy(session_resumption: serde_json::Value) -> serde_json::Value {
    json!({
        "routes": [{"name": "app", "match": {"route_name": "app"}, "allow": [{"uri": SHOP_ORDERS}]}],
        "deny_response": {"status": 403, "expose_reason": true},
        "session_resumption": session_resumption,
    })
}

struct World {
    pki: Pki,
    _app: EchoServer,
    envoy: Envoy,
}

impl World {
    async fn start(config: &str, policy: &serde_json::Value) -> Self {
        let pki = Pki::new().unwrap();
        let app = if config == "gateway.yaml" {
            EchoServer::tls(&pki.backend).unwrap()
        } else {
            EchoServer::plain().unwrap()
        };
        let envoy = envoy(config)
            .cert_dir(&pki.dir)
            .upstream_port(app.port())
            .plugin_config(policy)
            .start()
            .await
            .unwrap();
        World {
            pki,
            _app: app,
            envoy,
        }
    }

    fn client(&self, tls: ClientTls) -> Client {
        Client::tls(self.envoy.listener("ingress").unwrap(), tls)
    }

    fn tls(&self, cert: &IssuedCert, tls12_only: bool) -> ClientTls {
        let builder = ClientTls::builder(self.pki.mesh_ca.cert_pem())
            .sni(testkit::pki::ENVOY_SERVER_NAME)
            .client_cert(cert);
        if tls12_only {
            builder.tls12_only()
        } else {
            builder
        }
        .build()
        .unwrap()
    }
}

/// A new connection of `client`: its handshake kind and the answer to one request.
async fn connect_and_send(client: &Client, path: &str) -> (HandshakeKind, u16, String) {
    let mut connection = client.connect().await.unwrap();
    let kind = connection.handshake_kind().unwrap();
    let response = connection
        .send(&Request::get(path, "app.mesh.local"))
        .await
        .unwrap();
    let reason = response
        .header("x-certgate-reason")
        .unwrap_or("")
        .to_owned();
    (kind, response.status, reason)
}

#[tokio::test]
async fn resumed_sessions_are_admitted_on_the_sidecar() {
    let world = World::start("sidecar.yaml", &sidecar_policy(json!({}))).await;
    let orders = world
        .pki
        .client_cert(&CertSpec::client().uri(SHOP_ORDERS))
        .unwrap();
    for (version, tls12_only) in [("TLS 1.3", false), ("TLS 1.2", true)] {
        // One configuration, so one session store, for every connection of the client.
        let client = world.client(world.tls(&orders, tls12_only));
        let (kind, status, _) = connect_and_send(&client, "/orders").await;
        assert_eq!((kind, status), (HandshakeKind::Full, 200), "{version}");
        for _ in 0..3 {
            let (kind, status, reason) = connect_and_send(&client, "/orders").await;
            assert_eq!(
                kind,
                HandshakeKind::Resumed,
                "{version}: the client resumed"
            );
            assert_eq!(status, 200, "{version}: resumed session refused ({reason})");
        }
    }
}

/// Shows what certgate corrects: Envoy reports a resumed session's certificate not validated.
#[tokio::test]
async fn refuse_mode_refuses_resumed_sessions() {
    let world = World::start("sidecar.yaml", &sidecar_policy(json!({"mode": "refuse"}))).await;
    let orders = world
        .pki
        .client_cert(&CertSpec::client().uri(SHOP_ORDERS))
        .unwrap();
    let client = world.client(world.tls(&orders, false));
    assert_eq!(
        connect_and_send(&client, "/orders").await,
        (HandshakeKind::Full, 200, String::new())
    );
    assert_eq!(
        connect_and_send(&client, "/orders").await,
        (HandshakeKind::Resumed, 403, "cert_not_validated".to_owned())
    );
}

#[tokio::test]
async fn an_untrusted_certificate_stays_refused_on_its_resumed_sessions() {
    let policy = testkit::envoy::shipped_policy("gateway-policy.json").unwrap();
    let world = World::start("gateway.yaml", &policy).await;
    let untrusted = world
        .pki
        .untrusted_ca
        .issue(&CertSpec::client().uri("spiffe://mesh.local/ns/ops/sa/admin"))
        .unwrap();
    let trusted = world
        .pki
        .client_cert(&CertSpec::client().uri(SHOP_ORDERS))
        .unwrap();
    for tls12_only in [false, true] {
        let client = world.client(world.tls(&untrusted, tls12_only));
        let first = connect_and_send(&client, "/admin/users").await;
        assert_eq!(
            first,
            (HandshakeKind::Full, 403, "cert_not_validated".to_owned())
        );
        for _ in 0..2 {
            let again = connect_and_send(&client, "/admin/users").await;
            assert_eq!(
                again,
                (HandshakeKind::Resumed, 403, "cert_not_validated".to_owned()),
                "TLS 1.2 only: {tls12_only}"
            );
        }
        // A trusted client on the same listener still resumes and is admitted.
        let client = world.client(world.tls(&trusted, tls12_only));
        assert_eq!(connect_and_send(&client, "/orders/7").await.1, 200);
        assert_eq!(
            connect_and_send(&client, "/orders/7").await,
            (HandshakeKind::Resumed, 200, String::new())
        );
    }
}

/// 2,000 requests from one client over 200 connections opened one after another (10 requests
/// each): every connection after the first resumes, and none is refused.
#[tokio::test]
async fn a_churning_client_is_never_refused() {
    const CONNECTIONS: usize = 200;
    const REQUESTS_PER_CONNECTION: usize = 10;
    let world = World::start("sidecar.yaml", &sidecar_policy(json!({}))).await;
    let orders = world
        .pki
        .client_cert(&CertSpec::client().uri(SHOP_ORDERS))
        .unwrap();
    let client = world.client(world.tls(&orders, false));
    let request = Request::get("/orders", "app.mesh.local");
    let (mut resumed, mut statuses) = (0, std::collections::BTreeMap::new());
    for _ in 0..CONNECTIONS {
        let mut connection = client.connect().await.unwrap();
        if connection.handshake_kind() == Some(HandshakeKind::Resumed) {
            resumed += 1;
        }
        for _ in 0..REQUESTS_PER_CONNECTION {
            let status = connection.send(&request).await.unwrap().status;
            *statuses.entry(status).or_insert(0) += 1;
        }
    }
    assert_eq!(
        statuses,
        [(200, CONNECTIONS * REQUESTS_PER_CONNECTION)].into(),
        "statuses of {} requests",
        CONNECTIONS * REQUESTS_PER_CONNECTION
    );
    assert!(
        resumed >= CONNECTIONS - 1,
        "only {resumed} of {CONNECTIONS} connections resumed"
    );
}

/// 2,000 requests through a second Envoy, the client's sidecar, over 4 keep-alive connections; it
/// opens a new upstream connection to certgate's sidecar every 10 requests and, with Envoy's default
/// upstream TLS settings, resumes the session on nearly every one: none is refused.
#[tokio::test]
async fn an_envoy_client_churning_upstream_connections_is_never_refused() {
    const REQUESTS: u64 = 2_000;
    const REQUESTS_PER_CONNECTION: u64 = 10;
    let world = World::start("sidecar.yaml", &sidecar_policy(json!({}))).await;
    let orders = world
        .pki
        .client_cert(&CertSpec::client().uri(SHOP_ORDERS))
        .unwrap();
    world.pki.dir.write("client.pem", &orders.cert_pem).unwrap();
    world
        .pki
        .dir
        .write("client-key.pem", &orders.key_pem)
        .unwrap();
    let sidecar = world.envoy.listener("ingress").unwrap();
    let support = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/envoy");
    let client_sidecar = envoy("client-sidecar.yaml")
        .template_dir(&support)
        .cert_dir(&world.pki.dir)
        .var("UPSTREAM_HOST", sidecar.ip())
        .upstream_port(sidecar.port())
        .var("SERVER_NAME", testkit::pki::ENVOY_SERVER_NAME)
        .var("REQUESTS_PER_CONNECTION", REQUESTS_PER_CONNECTION)
        .start()
        .await
        .unwrap();
    let client = Client::plain(client_sidecar.listener("egress").unwrap());
    let exchanges = Drive::start(&client, 4, REQUESTS, |_| {
        Request::get("/orders", "app.mesh.local")
    })
    .finish()
    .await
    .unwrap();
    let mut statuses = std::collections::BTreeMap::new();
    for exchange in &exchanges {
        let outcome = match &exchange.outcome {
            Ok(response) => format!(
                "{} {}",
                response.status,
                response.header("x-certgate-reason").unwrap_or("")
            ),
            Err(error) => format!("no response: {error}"),
        };
        *statuses.entry(outcome).or_insert(0) += 1;
    }
    let stats = client_sidecar.stats().await.unwrap();
    let counter = |name: &str| stats.counter(name).unwrap_or(0);
    let connections = counter("cluster.sidecar.upstream_cx_total");
    let resumed = counter("cluster.sidecar.ssl.session_reused");
    println!(
        "{REQUESTS} requests through an Envoy client: {statuses:?}; {connections} upstream \
         connections, {resumed} resumed"
    );
    assert_eq!(
        statuses,
        [("200 ".to_owned(), REQUESTS as usize)].into(),
        "outcomes of {REQUESTS} requests"
    );
    assert!(
        connections >= REQUESTS / REQUESTS_PER_CONNECTION,
        "only {connections} upstream connections"
    );
    assert!(
        resumed * 10 >= connections * 9,
        "only {resumed} of {connections} upstream connections resumed"
    );
}
