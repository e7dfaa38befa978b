//! A trapped VM costs requests, not the service: the shipped configs in real Envoy running the
//! fault-injection build of certgate, whose VM traps on `x-certgate-fault: trap`, under a bounded
//! keep-alive load of requests the policy admits (200) and refuses (403).
//!
//! The shipped configs set `failure_policy: FAIL_RELOAD` with a 1 s reload backoff. The request that
//! traps the VM is answered 503 and never forwarded; the next request gets a fresh VM, unless the
//! trapped VM was loaded less than the backoff ago, in which case requests are answered 503 (never
//! forwarded) until the backoff has passed. No request is ever forwarded unchecked, and no request the
//! policy refuses is ever admitted.

use serde_json::json;
use std::time::{Duration, Instant};
use testkit::{
    envoy, fault_injection_wasm, CertSpec, Client, Drive, EchoServer, Envoy, Exchange, Pki,
    Request, FAULT_HEADER,
};

const SHOP_ORDERS: &str = "spiffe://mesh.local/ns/shop/sa/orders";

/// A header only refused requests carry: the app must never see it.
const REFUSED_MARK: &str = "x-test-refused";

/// The reload backoff of the shipped configs.
const BACKOFF: Duration = Duration::from_secs(1);

/// Keep-alive connections of the load.
const CONNECTIONS: usize = 4;

/// Every wait of a test is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(20);

/// Admits the orders service on `/orders` (the sidecar's `app` route, the gateway's `orders`); the
/// `admin` route admits nobody the load presents.
fn policy() -> serde_json::Value {
    json!({
        "mode": "enforce",
        "default_action": "deny",
        "routes": [
            {"name": "admin", "match": {"route_name": "admin"},
             "allow": [{"uri": "spiffe://mesh.local/ns/ops/sa/admin"}]},
            {"name": "app", "match": {"route_name": "app"}, "allow": [{"uri": SHOP_ORDERS}]},
            // The gateway's route for /orders.
            {"name": "orders", "match": {"route_name": "orders"}, "allow": [{"uri": SHOP_ORDERS}]},
        ],
    })
}

/// What a request of the load is, by its number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The policy admits it: 200.
    Allowed,
    /// The policy refuses it: 403.
    Refused,
    /// It carries the fault header: the VM traps on it, 503.
    Trapping,
}

impl Kind {
    /// Every `trap_every`-th request traps (0: none); of the others, every fourth is refused.
    fn of(seq: u64, trap_every: u64) -> Kind {
        if trap_every > 0 && seq % trap_every == trap_every - 1 {
            Kind::Trapping
        } else if seq % 4 == 3 {
            Kind::Refused
        } else {
            Kind::Allowed
        }
    }

    fn request(self) -> Request {
        match self {
            Kind::Allowed => Request::get("/orders/7", "app.mesh.local"),
            Kind::Refused => {
                Request::get("/admin/users", "app.mesh.local").header(REFUSED_MARK, "1")
            }
            Kind::Trapping => {
                Request::get("/orders/7", "app.mesh.local").header(FAULT_HEADER.0, FAULT_HEADER.1)
            }
        }
    }

    /// The status the policy decides, when the VM is alive.
    fn decided(self) -> u16 {
        match self {
            Kind::Allowed => 200,
            Kind::Refused => 403,
            Kind::Trapping => 503,
        }
    }
}

struct World {
    pki: Pki,
    app: EchoServer,
    envoy: Envoy,
    client: Client,
}

impl World {
    async fn start(config: &str) -> World {
        let wasm = fault_injection_wasm().unwrap();
        let pki = Pki::new().unwrap();
        let app = if config == "gateway.yaml" {
            EchoServer::tls(&pki.backend).unwrap()
        } else {
            EchoServer::plain().unwrap()
        };
        let envoy = envoy(config)
            .cert_dir(&pki.dir)
            .upstream_port(app.port())
            .plugin_config(&policy())
            .wasm(&wasm)
            .start()
            .await
            .unwrap();
        let cert = pki
            .client_cert(&CertSpec::client().uri(SHOP_ORDERS))
            .unwrap();
        let tls = testkit::ClientTls::builder(pki.mesh_ca.cert_pem())
            .sni(testkit::pki::ENVOY_SERVER_NAME)
            .client_cert(&cert)
            .build()
            .unwrap();
        let client = Client::tls(envoy.listener("ingress").unwrap(), tls);
        World {
            pki,
            app,
            envoy,
            client,
        }
    }

    /// Envoy's counter `wasm.certgate.<name>` (0 until Envoy defines it).
    async fn wasm_counter(&self, name: &str) -> u64 {
        let stats = self.envoy.stats().await.unwrap();
        stats.counter(&format!("wasm.certgate.{name}")).unwrap_or(0)
    }

    /// Sends one trapping request on a connection of its own: it must be answered 503. Returns when
    /// it was sent and when it was answered.
    async fn trap(&self) -> Trap {
        let connection = self.client.connect().await.unwrap();
        let sent = Instant::now();
        let response = { connection }
            .send(&Kind::Trapping.request())
            .await
            .unwrap_or_else(|error| panic!("the trapping request got no response: {error:#}"));
        assert_eq!(
            response.status,
            503,
            "the trapping request: {}",
            response.body_text()
        );
        Trap {
            sent,
            answered: Instant::now(),
        }
    }
}

/// When a trapping request was sent and answered.
#[derive(Clone, Copy)]
struct Trap {
    sent: Instant,
    answered: Instant,
}

/// The app saw no trapping and no refused request, and every admitted one (200) but for those in
/// flight when a live VM trapped: admitted, forwarded, and their response replaced by 503 because
/// their response callbacks ran on the dead VM (at most one per connection per trap).
fn assert_upstream_saw_only_admitted_requests(world: &World, ok: usize, vm_deaths: u64) {
    assert_eq!(
        world.app.requests_with_header(FAULT_HEADER.0),
        0,
        "a trapping request reached the app"
    );
    assert_eq!(
        world.app.requests_with_header(REFUSED_MARK),
        0,
        "a refused request reached the app"
    );
    let served = world.app.requests_served();
    let in_flight = served.checked_sub(ok).unwrap_or_else(|| {
        panic!("the app served {served} requests, the clients got {ok} answers 200")
    });
    println!("  admitted requests in flight when the VM died, answered 503: {in_flight}");
    assert!(
        in_flight as u64 <= vm_deaths * CONNECTIONS as u64,
        "{in_flight} admitted requests lost their response to {vm_deaths} VM deaths"
    );
}

/// What the client saw of a request, checked against the policy: the decided status, or 503 (the VM
/// was dead), never anything else and never a missing response.
fn check(exchange: &Exchange, kind: Kind) -> Result<bool, String> {
    match exchange.status() {
        Some(status) if status == kind.decided() => Ok(true),
        Some(503) => Ok(false),
        Some(status) => Err(format!(
            "request {} ({kind:?}) got {status}, expected {} or 503",
            exchange.seq,
            kind.decided()
        )),
        None => Err(format!(
            "request {} ({kind:?}) got no response: {:?}",
            exchange.seq, exchange.outcome
        )),
    }
}

/// What a trap cost the load: the requests answered 503 from the trap on (before `until`), admitted
/// requests in flight included, and how long after the trap was sent the first request sent after
/// its answer was decided by the policy.
fn cost(exchanges: &[Exchange], trap: Trap, until: Instant) -> (usize, Option<Duration>) {
    let failed = exchanges
        .iter()
        .filter(|e| e.done >= trap.sent && e.done < until && e.status() == Some(503))
        .count();
    let recovered = exchanges
        .iter()
        .filter(|e| e.sent >= trap.answered && e.status() == Some(Kind::of(e.seq, 0).decided()))
        .map(|e| e.done.duration_since(trap.sent))
        .min();
    (failed, recovered)
}

#[test]
fn every_shipped_config_reloads_a_failed_vm_and_never_fails_open() {
    for name in testkit::envoy::SHIPPED_CONFIGS {
        let template = testkit::envoy::config_template(name).unwrap();
        assert!(
            template.contains("failure_policy: FAIL_RELOAD"),
            "envoy/{name} does not set failure_policy: FAIL_RELOAD"
        );
        assert!(
            template.contains("backoff: { base_interval: 1s }"),
            "envoy/{name} does not set the 1 s reload backoff"
        );
        assert!(
            !template.contains("failure_policy: FAIL_OPEN"),
            "envoy/{name} fails open"
        );
    }
}

/// One trap long after the VM was loaded (a fresh VM at once), then one right after that reload
/// (503 until the backoff has passed), under a keep-alive load of admitted and refused requests.
#[tokio::test]
async fn a_trapped_vm_costs_requests_not_the_service() {
    /// A cap far above what the test waits for: it stops the load itself.
    const REQUESTS: u64 = 100_000;
    let world = World::start("sidecar.yaml").await;
    let started = Instant::now();
    let drive = Drive::start(&world.client, CONNECTIONS, REQUESTS, |seq| {
        Kind::of(seq, 0).request()
    });
    drive.wait_for(300, TIMEOUT).await.unwrap();
    // The VM was loaded when Envoy started: past the backoff, a trap is followed by a reload at once.
    tokio::time::sleep(BACKOFF.saturating_sub(started.elapsed()) + BACKOFF / 2).await;

    let first_trap = world.trap().await;
    let seen = drive.completed();
    drive.wait_for(seen + 300, TIMEOUT).await.unwrap();
    // Right after that reload, inside the backoff: the next reload waits for the backoff.
    let second_trap = world.trap().await;
    let seen = drive.completed();
    drive.wait_for(seen + 300, TIMEOUT).await.unwrap();
    // Well past the backoff: the requests after it are all decided.
    tokio::time::sleep(BACKOFF * 2).await;
    let seen = drive.completed();
    drive.wait_for(seen + 300, TIMEOUT).await.unwrap();
    drive.stop();
    let exchanges = drive.finish().await.unwrap();
    let finished = Instant::now();

    let mut problems = Vec::new();
    let mut decided = 0;
    for exchange in &exchanges {
        match check(exchange, Kind::of(exchange.seq, 0)) {
            Ok(true) => decided += 1,
            Ok(false) => {}
            Err(problem) => problems.push(problem),
        }
    }
    let (failed_first, recovery_first) = cost(&exchanges, first_trap, second_trap.sent);
    let (failed_second, recovery_second) = cost(&exchanges, second_trap, finished);
    let (recovery_first, recovery_second) = (recovery_first.unwrap(), recovery_second.unwrap());
    let before = exchanges
        .iter()
        .filter(|e| e.done < first_trap.sent && e.status() == Some(503))
        .count();
    let rate = |count: usize, window: Duration| count as f64 / window.as_secs_f64().max(1e-9);
    let ok = exchanges.iter().filter(|e| e.status() == Some(200)).count();
    let reloads = world.wasm_counter("vm_reload_success").await;
    let backoffs = world.wasm_counter("vm_reload_backoff").await;
    println!(
        "{} requests on {CONNECTIONS} keep-alive connections, {decided} decided by the policy ({ok} x 200)",
        exchanges.len()
    );
    println!(
        "trap 1.5 s after the VM was loaded: {failed_first} other requests answered 503 (in flight \
         at the trap), the first request after it decided {:.1} ms after the trap",
        recovery_first.as_secs_f64() * 1e3
    );
    println!(
        "trap right after a reload: {failed_second} other requests answered 503 ({:.0}/s), the \
         first request decided again {:.0} ms after the trap (backoff {BACKOFF:?})",
        rate(failed_second, recovery_second),
        recovery_second.as_secs_f64() * 1e3
    );
    println!("envoy: vm_reload_success {reloads}, vm_reload_backoff {backoffs}");

    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(before, 0, "requests failed before any trap");
    // The first trap's VM was older than the backoff: it was replaced at once.
    assert!(
        failed_first < CONNECTIONS,
        "{failed_first} requests failed after a trap of a VM older than the backoff: more than \
         those in flight on the other connections"
    );
    assert!(
        recovery_first < BACKOFF,
        "a VM older than the backoff was replaced only {recovery_first:?} after its trap"
    );
    assert!(
        failed_second > 0,
        "no request failed inside the backoff: the second trap did not happen within it"
    );
    assert!(
        recovery_second < BACKOFF * 2 + Duration::from_millis(500),
        "still failing {recovery_second:?} after a trap (backoff {BACKOFF:?})"
    );
    // Every request after the last failure was decided: the service came back.
    let last_failure = exchanges
        .iter()
        .filter(|e| e.status() != Some(Kind::of(e.seq, 0).decided()))
        .map(|e| e.sent)
        .max()
        .unwrap();
    let after = exchanges.iter().filter(|e| e.sent > last_failure).count();
    assert!(after >= 200, "only {after} requests after the last failure");
    assert_eq!(reloads, 2, "fresh VMs Envoy loaded");
    assert!(backoffs > 0, "no request saw the backoff");
    assert_upstream_saw_only_admitted_requests(&world, ok, 2);
    assert!(world.envoy.log().contains("unreachable"));
    drop(world.pki);
}

/// Every tenth request traps, 1,000 requests over 4 keep-alive connections, through each shipped
/// config: no trapping request reaches the upstream, no refused request is admitted.
#[tokio::test]
async fn a_trap_storm_never_lets_a_request_through_unchecked() {
    const REQUESTS: u64 = 1_000;
    const TRAP_EVERY: u64 = 10;
    for config in ["sidecar.yaml", "gateway.yaml"] {
        let world = World::start(config).await;
        // Past the backoff of the VM's first load: the storm's first trap is followed by a reload.
        tokio::time::sleep(BACKOFF + BACKOFF / 2).await;
        let drive = Drive::start(&world.client, CONNECTIONS, REQUESTS, |seq| {
            Kind::of(seq, TRAP_EVERY).request()
        });
        let exchanges = drive.finish().await.unwrap();
        let mut problems = Vec::new();
        let mut by_kind = std::collections::BTreeMap::new();
        for exchange in &exchanges {
            let kind = Kind::of(exchange.seq, TRAP_EVERY);
            let entry = by_kind.entry(format!("{kind:?}")).or_insert((0, 0));
            match check(exchange, kind) {
                Ok(true) => entry.0 += 1,
                Ok(false) => entry.1 += 1,
                Err(problem) => problems.push(problem),
            }
        }
        let ok = exchanges.iter().filter(|e| e.status() == Some(200)).count();
        let reloads = world.wasm_counter("vm_reload_success").await;
        let backoffs = world.wasm_counter("vm_reload_backoff").await;
        println!(
            "{config}: {} requests, every {TRAP_EVERY}th trapping; (decided, 503) by kind: \
             {by_kind:?}; envoy vm_reload_success {reloads}, vm_reload_backoff {backoffs}",
            exchanges.len()
        );
        assert!(problems.is_empty(), "{config}: {}", problems.join("\n"));
        assert_eq!(exchanges.len() as u64, REQUESTS);
        assert_upstream_saw_only_admitted_requests(&world, ok, reloads + 1);
        assert!(reloads > 0, "{config}: Envoy never replaced the VM");
    }
}
