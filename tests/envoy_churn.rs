//! Hostile churn stays bounded: the shipped sidecar in real Envoy under client populations that
//! defeat certgate's caches, beside a normal keep-alive load, with one policy of [`routes`] + 1
//! routes throughout:
//! - certificate churn: a new certificate on every connection, every tenth one with
//!   [`BULK_SANS`] DNS SANs over TLS 1.2 (60 KB: rustls presents at most 64 KiB, see
//!   [`a_certificate_over_64_kib_cannot_be_presented_by_rustls`]; over TLS 1.3 Envoy closes such a
//!   connection without an answer when it issues the session ticket after the handshake (a ticket,
//!   which holds the client's certificate, cannot exceed 64 KiB): the largest certificate a TLS
//!   1.3 client keeps its connection with measured 32,202 bytes, 32,802 did not);
//! - route churn: two identities on keep-alive connections, each sending one request to every
//!   policy route and as many to paths and hosts no request used before.
//!
//! Prints Envoy's worker CPU per request and resident memory for each load; asserts only what does
//! not depend on timing: every request decided as the policy says, certgate's series are exactly
//! one per (route, decision, reason) the requests met (paths, hosts and certificates add none), and
//! resident memory after 2N churned connections within a generous bound of that after N.
//!
//! `CERTGATE_CHURN_CONNECTIONS=N CERTGATE_CHURN_ROUTES=R cargo test -p certgate-suite --test
//! envoy_churn -- --nocapture` runs it at N churned connections per half (default 300) and R policy
//! routes (default 1,000); `cargo xtask churn` runs the larger population.

use certgate::record::metrics::METRIC_CAPACITY;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use testkit::pki::ENVOY_SERVER_NAME;
use testkit::{
    envoy, CertSpec, Client, ClientTls, Drive, EchoServer, Envoy, IssuedCert, Pki, Request,
};

const SHOP_ORDERS: &str = "spiffe://mesh.local/ns/shop/sa/orders";
const STRANGER: &str = "spiffe://mesh.local/ns/churn/sa/stranger";
/// Every this-many-th churned connection presents a certificate with [`BULK_SANS`] DNS SANs.
const BULK_EVERY: usize = 10;
/// 10,000 DNS SANs of four characters: 6 bytes each in DER, so the certificate stays under the
/// 65,535 bytes rustls can present.
const BULK_SANS: usize = 10_000;
/// What rustls (webpki) reads of a certificate: DER lengths of at most two bytes.
const RUSTLS_CERT_LIMIT: usize = 0xffff;
/// Resident memory may grow by this much from N to 2N churned connections.
const GROWTH_LIMIT: u64 = 32 << 20;
/// Keep-alive connections of the normal load and of each route-churn identity.
const KEEP_ALIVE_CONNECTIONS: usize = 4;
/// certgate's series besides `certgate_requests_total` in this test: two TLS versions, one identity
/// source, the SNI/host mismatch count and the expiry histogram.
const OTHER_SERIES: usize = 5;
/// How long certgate's counts may take to reach Envoy's stats (one flush interval and slack).
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|value| {
            value
                .replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("{name}={value:?} is not a count"))
        })
        .unwrap_or(default)
}

/// Churned connections per half.
fn connections() -> usize {
    env_count("CERTGATE_CHURN_CONNECTIONS", 300)
}

/// Policy routes besides `app`.
fn routes() -> usize {
    env_count("CERTGATE_CHURN_ROUTES", 1_000)
}

/// `routes` routes `r<i>` on `/r<i>/`, then `app` for the rest: the orders service is admitted on
/// every one, every other identity refused.
fn policy(routes: usize) -> serde_json::Value {
    let mut list: Vec<serde_json::Value> = (0..routes)
        .map(|i| {
            json!({"name": format!("r{i}"), "match": {"path_prefix": format!("/r{i}/")},
                   "allow": [{"uri": SHOP_ORDERS}]})
        })
        .collect();
    list.push(
        json!({"name": "app", "match": {"route_name": "app"}, "allow": [{"uri": SHOP_ORDERS}]}),
    );
    json!({ "routes": list })
}

/// A certificate with [`BULK_SANS`] DNS SANs `h000`, `h001`, ... (base 36), one set per `set`.
fn bulk_cert(pki: &Pki, set: usize) -> IssuedCert {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut spec = CertSpec::client().cn(&format!("bulk-{set}"));
    for index in set..set + BULK_SANS {
        let name: String = [index / 1296, index / 36 % 36, index % 36]
            .iter()
            .map(|&digit| char::from(DIGITS[digit % 36]))
            .collect();
        spec = spec.dns(&format!("h{name}"));
    }
    pki.client_cert(&spec).unwrap()
}

/// A client presenting `cert`, over TLS 1.2 only when `tls12`.
fn tls_client(pki: &Pki, cert: &IssuedCert, tls12: bool) -> ClientTls {
    let builder = ClientTls::builder(pki.mesh_ca.cert_pem())
        .sni(ENVOY_SERVER_NAME)
        .client_cert(cert);
    if tls12 { builder.tls12_only() } else { builder }
        .build()
        .unwrap()
}

/// Connection `index` of the certificate churn: its own certificate (a bulk one over TLS 1.2),
/// admitted when even.
fn churn_client(pki: &Pki, index: usize, bulk: &[IssuedCert]) -> (ClientTls, u16) {
    if index % BULK_EVERY == BULK_EVERY - 1 {
        return (
            tls_client(pki, &bulk[(index / BULK_EVERY) % bulk.len()], true),
            403,
        );
    }
    let uri = if index.is_multiple_of(2) {
        SHOP_ORDERS.to_owned()
    } else {
        format!("spiffe://mesh.local/ns/churn/sa/client-{index}")
    };
    let cert = pki
        .client_cert(&CertSpec::client().uri(&uri).cn(&format!("churn-{index}")))
        .unwrap();
    let expected = if index.is_multiple_of(2) { 200 } else { 403 };
    (tls_client(pki, &cert, false), expected)
}

/// Request `number` of the route churn: one to each policy route, then as many to paths and hosts
/// seen once.
fn route_churn_request(routes: usize, number: u64) -> Request {
    let number = number as usize;
    if number < routes {
        Request::get(&format!("/r{number}/item"), "app.mesh.local")
    } else {
        Request::get(
            &format!("/unrouted/{number}"),
            &format!("h{number}.churn.example"),
        )
    }
}

/// Worker CPU per request, in µs.
fn per_request(cpu: Duration, requests: usize) -> f64 {
    cpu.as_secs_f64() * 1e6 / requests as f64
}

/// Drives `requests` requests of `make` as `cert` over keep-alive connections; returns the worker
/// CPU they cost and the statuses that were not `expected`.
async fn keep_alive_load(
    envoy: &Envoy,
    pki: &Pki,
    cert: &IssuedCert,
    requests: usize,
    expected: u16,
    make: impl Fn(u64) -> Request + Send + Sync + 'static,
) -> (Duration, Vec<String>) {
    let listener = envoy.listener("ingress").unwrap();
    let client = Client::tls(listener, pki.client_tls(Some(cert)).unwrap());
    let cpu_before = envoy.worker_cpu_time().unwrap();
    let exchanges = Drive::start(&client, KEEP_ALIVE_CONNECTIONS, requests as u64, make)
        .finish()
        .await
        .unwrap();
    let cpu = envoy.worker_cpu_time().unwrap() - cpu_before;
    assert_eq!(exchanges.len(), requests);
    let wrong = exchanges
        .iter()
        .filter(|exchange| exchange.status() != Some(expected))
        .map(|exchange| {
            format!(
                "{}: {:?}, expected {expected}",
                exchange.request.target(),
                exchange.status()
            )
        })
        .collect();
    (cpu, wrong)
}

#[tokio::test]
async fn churned_certificates_and_routes_keep_envoy_cost_and_series_bounded() {
    let (connections, routes) = (connections(), routes());
    let pki = Pki::new().unwrap();
    let app = EchoServer::plain().unwrap();
    let envoy = envoy("sidecar.yaml")
        .cert_dir(&pki.dir)
        .upstream_port(app.port())
        .plugin_config(&policy(routes))
        .start()
        .await
        .unwrap();
    let listener = envoy.listener("ingress").unwrap();
    let bulk: Vec<IssuedCert> = (0..4).map(|set| bulk_cert(&pki, set)).collect();
    assert!(bulk.iter().all(|cert| cert.der.len() <= RUSTLS_CERT_LIMIT));
    let orders = pki
        .client_cert(&CertSpec::client().uri(SHOP_ORDERS))
        .unwrap();
    let stranger = pki.client_cert(&CertSpec::client().uri(STRANGER)).unwrap();
    let request = Request::get("/orders", "app.mesh.local");
    let mut wrong = Vec::new();

    // The normal load: one identity on keep-alive connections.
    let normal_requests = connections * 2;
    let (normal_cpu, normal_wrong) =
        keep_alive_load(&envoy, &pki, &orders, normal_requests, 200, {
            let request = request.clone();
            move |_| request.clone()
        })
        .await;
    wrong.extend(normal_wrong);
    let normal_rss = envoy.resident_memory_bytes().unwrap();

    // The certificate churn: a new certificate on every connection, one request each.
    let mut churn_rss = Vec::new();
    let mut churn_cpu = Duration::ZERO;
    let closing = request.clone().header("connection", "close");
    let started = Instant::now();
    for half in 0..2 {
        for index in half * connections..(half + 1) * connections {
            let (tls, expected) = churn_client(&pki, index, &bulk);
            let client = Client::tls(listener, tls);
            let cpu = envoy.worker_cpu_time().unwrap();
            let status = client.send(&closing).await.map(|r| r.status);
            churn_cpu += envoy.worker_cpu_time().unwrap() - cpu;
            if status.as_ref().ok() != Some(&expected) {
                wrong.push(format!(
                    "connection {index}: {status:?}, expected {expected}"
                ));
            }
        }
        churn_rss.push(envoy.resident_memory_bytes().unwrap());
    }
    let churn_seconds = started.elapsed().as_secs_f64();

    // The route churn: each identity once on every policy route and on as many unseen paths.
    let route_requests = 2 * routes;
    let mut route_cpu = Duration::ZERO;
    for (cert, expected) in [(&orders, 200), (&stranger, 403)] {
        let (cpu, route_wrong) = keep_alive_load(&envoy, &pki, cert, route_requests, expected, {
            move |number| route_churn_request(routes, number)
        })
        .await;
        route_cpu += cpu;
        wrong.extend(route_wrong);
    }
    let route_rss = envoy.resident_memory_bytes().unwrap();

    println!(
        "policy: {} routes; worker CPU per request and Envoy's resident memory after each load",
        routes + 1
    );
    println!(
        "normal:            {normal_requests} keep-alive requests, one identity: {:.1} µs/request, {}",
        per_request(normal_cpu, normal_requests),
        mib(normal_rss)
    );
    println!(
        "certificate churn: {} connections, a new certificate each (every {BULK_EVERY}th with \
         {BULK_SANS} SANs, {} bytes), {:.0} connections/s: {:.1} µs/request (handshake included), \
         {} after {connections}, {} after {}",
        2 * connections,
        bulk[0].der.len(),
        2.0 * connections as f64 / churn_seconds,
        per_request(churn_cpu, 2 * connections),
        mib(churn_rss[0]),
        mib(churn_rss[1]),
        2 * connections
    );
    println!(
        "route churn:       {} keep-alive requests, 2 identities x ({routes} routes + {routes} \
         unseen paths and hosts): {:.1} µs/request, {}",
        2 * route_requests,
        per_request(route_cpu, 2 * route_requests),
        mib(route_rss)
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let growth = churn_rss[1].saturating_sub(churn_rss[0]);
    assert!(
        growth <= GROWTH_LIMIT,
        "resident memory grew by {} from {connections} to {} churned connections (limit {})",
        mib(growth),
        2 * connections,
        mib(GROWTH_LIMIT)
    );

    let total = normal_requests + 2 * connections + 2 * route_requests;
    if 2 * (routes + 1) + OTHER_SERIES <= METRIC_CAPACITY {
        assert_one_series_per_route_decision_reason(&envoy, routes, total).await;
    } else {
        assert_series_stop_at_the_capacity(&envoy, total).await;
    }

    // The same bulk certificate over TLS 1.3: Envoy closes the connection without an answer.
    let served = app.requests_served();
    let over_tls13 = Client::tls(listener, tls_client(&pki, &bulk[0], false))
        .send(&request)
        .await;
    assert!(
        over_tls13.is_err(),
        "Envoy closes a TLS 1.3 connection whose certificate its session ticket cannot hold: {over_tls13:?}"
    );
    assert_eq!(app.requests_served(), served, "no request went through");
}

/// Every request is counted, in one series per (route, decision, reason) met: routes `r<i>`
/// admitted and refused once each, `app` for everything else; certificates, paths and hosts add no
/// series of any kind.
async fn assert_one_series_per_route_decision_reason(envoy: &Envoy, routes: usize, total: usize) {
    let total = total as f64;
    let scrape = envoy
        .wait_for_prometheus(FLUSH_TIMEOUT, |scrape| {
            scrape.value("certgate_requests_total", &[]) == Some(total)
        })
        .await;
    let scrape = match scrape {
        Ok(scrape) => scrape,
        Err(error) => {
            let last = envoy.prometheus().await.unwrap();
            panic!(
                "{error}: {:?} of {total} requests counted in {} series",
                last.value("certgate_requests_total", &[]),
                last.matching("certgate_requests_total", &[]).count()
            );
        }
    };
    let series: BTreeSet<(String, String, String)> = scrape
        .matching("certgate_requests_total", &[])
        .map(|series| {
            let label = |key: &str| {
                series
                    .labels
                    .iter()
                    .find(|(name, _)| name == key)
                    .map(|(_, value)| value.clone())
                    .unwrap_or_default()
            };
            (label("route"), label("decision"), label("reason"))
        })
        .collect();
    let expected: BTreeSet<(String, String, String)> = (0..routes)
        .map(|i| format!("r{i}"))
        .chain(["app".to_owned()])
        .flat_map(|route| {
            [("allow", "allowlist_match"), ("deny", "not_in_allowlist")]
                .map(|(decision, reason)| (route.clone(), decision.into(), reason.into()))
        })
        .collect();
    assert_eq!(
        series.len(),
        2 * (routes + 1),
        "one series per (route, decision, reason)"
    );
    assert_eq!(series, expected);
    for (name, most) in [
        ("certgate_identity_source_total", 1),
        ("certgate_tls_version_total", 2),
        ("certgate_spoofed_headers_total", 0),
    ] {
        assert_eq!(
            scrape.matching(name, &[]).count(),
            most,
            "{name}: no series per certificate, path or host"
        );
    }
}

/// More routes than certgate counts series for: past [`METRIC_CAPACITY`] series certgate logs once
/// and records no newer series, so the scrape never holds more and some requests go uncounted.
async fn assert_series_stop_at_the_capacity(envoy: &Envoy, total: usize) {
    let deadline = Instant::now() + FLUSH_TIMEOUT;
    while !envoy.log().contains("metric series counted;") {
        assert!(
            Instant::now() < deadline,
            "certgate never said it reached its series capacity"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let scrape = envoy.prometheus().await.unwrap();
    let certgate_series = scrape
        .series
        .iter()
        .filter(|series| series.name.starts_with("certgate_"))
        .filter(|series| !series.name.starts_with("certgate_peer_cert_days_to_expiry"))
        .count();
    assert!(
        certgate_series <= METRIC_CAPACITY,
        "{certgate_series} certgate series, capacity {METRIC_CAPACITY}"
    );
    let counted = scrape.value("certgate_requests_total", &[]).unwrap_or(0.0);
    assert!(
        counted < total as f64,
        "{counted} of {total} requests counted"
    );
}

/// Why the churn's largest certificates carry 10,000 four-character names: rustls reads
/// certificates through webpki, whose DER lengths are at most two bytes, so a certificate of more
/// than 65,535 bytes (10,000 names of 23 characters make about 250 KB) cannot even be loaded as a client
/// certificate (`BadEncoding` when rustls checks it against its key).
#[test]
fn a_certificate_over_64_kib_cannot_be_presented_by_rustls() {
    let pki = Pki::new().unwrap();
    let mut spec = CertSpec::client().cn("too-big");
    for index in 0..BULK_SANS {
        spec = spec.dns(&format!("host-{index:05}.bulk.example"));
    }
    let too_big = pki.client_cert(&spec).unwrap();
    assert!(
        too_big.der.len() > RUSTLS_CERT_LIMIT,
        "{}",
        too_big.der.len()
    );
    let Err(refused) = pki.client_tls(Some(&too_big)) else {
        panic!("rustls loaded a {}-byte certificate", too_big.der.len());
    };
    assert!(
        format!("{refused:#}").contains("BadEncoding"),
        "{refused:#}"
    );
    let fits = bulk_cert(&pki, 0);
    assert!(fits.der.len() <= RUSTLS_CERT_LIMIT, "{}", fits.der.len());
    pki.client_tls(Some(&fits)).unwrap();
}
