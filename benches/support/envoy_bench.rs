//! The Envoy of the load bench (`benches/envoy/bench.yaml`), shared by the bench (`envoy_load.rs`)
//! and its tests (`tests/envoy_bench_config.rs`, `tests/hostcall_budget.rs`): the variants and their
//! listeners, the Wasm modules and policies the config is rendered with, Envoy's native equivalent
//! of the typical policy, the client identity, the request the load sends, and the hostcalls
//! certgate makes for that request (counted by the harness).
// The bench and the tests each use part of this file.
#![allow(dead_code)]

use crate::policies::{
    allow_matcher, allowed_uri, deny_dns, policy_with_features_json, policy_with_json, MatcherKind,
};
use anyhow::{ensure, Context, Result};
use host_harness::{
    Certificate, ClientCertDetails, Connection, ForwardClientCert, GuestModule, HostcallCounts,
    HttpConnectionManager, Plugin, PluginSettings,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use testkit::{CertSpec, Client, EchoServer, Envoy, IssuedCert, Pki, Request};

/// Routes of both policies (`r0`..`r9`, Envoy routes on `/r0/`..`/r9/`).
pub const ROUTES: usize = 10;
/// The typical policy: 10 routes × 5 allow matchers.
pub const TYPICAL_MATCHERS_PER_ROUTE: usize = 5;
/// The large policy: 10 routes × 1,000 allow matchers.
pub const LARGE_MATCHERS_PER_ROUTE: usize = 1000;

/// What one listener of the bench Envoy runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    CertgateTypical,
    CertgateLarge,
    CertgateDecideOnly,
    CertgateDecideXfcc,
    CertgateOptZ,
    CertgateBaseline,
    WasmFloor,
    NoFilter,
    EnvoyNativeRbac,
    EnvoyNative,
}

impl Variant {
    pub const ALL: [Variant; 10] = [
        Variant::CertgateTypical,
        Variant::CertgateLarge,
        Variant::CertgateDecideOnly,
        Variant::CertgateDecideXfcc,
        Variant::CertgateOptZ,
        Variant::CertgateBaseline,
        Variant::WasmFloor,
        Variant::NoFilter,
        Variant::EnvoyNativeRbac,
        Variant::EnvoyNative,
    ];

    /// The variants whose hostcalls are counted and budgeted: certgate's policies on the shipped
    /// build (`certgate_opt_z` runs the typical policy on another build of the same code).
    pub const CERTGATE_POLICIES: [Variant; 4] = [
        Variant::CertgateTypical,
        Variant::CertgateLarge,
        Variant::CertgateDecideOnly,
        Variant::CertgateDecideXfcc,
    ];

    /// The listener's name in `bench.yaml`, also the variant's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Variant::CertgateTypical => "certgate_typical",
            Variant::CertgateLarge => "certgate_large",
            Variant::CertgateDecideOnly => "certgate_decide_only",
            Variant::CertgateDecideXfcc => "certgate_decide_xfcc",
            Variant::CertgateOptZ => "certgate_opt_z",
            Variant::CertgateBaseline => "certgate_baseline",
            Variant::WasmFloor => "wasm_floor",
            Variant::NoFilter => "no_filter",
            Variant::EnvoyNativeRbac => "envoy_native_rbac",
            Variant::EnvoyNative => "envoy_native",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Variant::CertgateTypical => {
                "certgate, 10 routes x 5 matchers, every forwarding header, record in filter state"
            }
            Variant::CertgateLarge => "certgate, 10,000 matchers, as typical",
            Variant::CertgateDecideOnly => {
                "certgate, typical routes and matchers, metrics only: no forwarding, no filter state"
            }
            Variant::CertgateDecideXfcc => "certgate, decide-only + XFCC sanitize_set",
            Variant::CertgateOptZ => "certgate built at opt-level z, typical policy",
            Variant::CertgateBaseline => {
                "the baseline .wasm (--baseline-wasm; else this build again), typical policy"
            }
            Variant::WasmFloor => "proxy-wasm filter that continues at once",
            Variant::NoFilter => "router only",
            Variant::EnvoyNativeRbac => "RBAC principal_name per route, no XFCC",
            Variant::EnvoyNative => "RBAC principal_name per route + HCM XFCC SANITIZE_SET",
        }
    }

    /// certgate's configuration for this variant's listener; `None` for the variants without
    /// certgate.
    pub fn certgate_policy(self) -> Option<String> {
        match self {
            Variant::CertgateTypical | Variant::CertgateOptZ | Variant::CertgateBaseline => {
                Some(typical_policy())
            }
            Variant::CertgateLarge => Some(large_policy()),
            Variant::CertgateDecideOnly => Some(decide_only_policy()),
            Variant::CertgateDecideXfcc => Some(decide_xfcc_policy()),
            Variant::WasmFloor
            | Variant::NoFilter
            | Variant::EnvoyNativeRbac
            | Variant::EnvoyNative => None,
        }
    }

    /// The most hostcalls a kept-alive request may cost certgate in this variant (the 10,000-matcher
    /// policy has the typical policy's budget: matchers are guest work, never hostcalls).
    pub fn hostcall_budget(self) -> Option<u64> {
        match self {
            Variant::CertgateDecideOnly => Some(3),
            Variant::CertgateDecideXfcc => Some(5),
            Variant::CertgateTypical | Variant::CertgateLarge | Variant::CertgateOptZ => Some(6),
            // Another build: its hostcalls are its own.
            Variant::CertgateBaseline
            | Variant::WasmFloor
            | Variant::NoFilter
            | Variant::EnvoyNativeRbac
            | Variant::EnvoyNative => None,
        }
    }
}

/// The Wasm modules the config loads.
#[derive(Clone, Debug)]
pub struct Modules {
    pub certgate: PathBuf,
    pub certgate_opt_z: PathBuf,
    /// The build the current one is compared with, side by side (`--baseline-wasm`).
    pub certgate_baseline: PathBuf,
    pub wasm_floor: PathBuf,
}

/// certgate's typical policy in the bench.
pub fn typical_policy() -> String {
    policy_with_features_json(ROUTES, TYPICAL_MATCHERS_PER_ROUTE)
}

/// The typical policy's routes (matched on `xds.route_name`) and matchers and nothing else
/// (metrics are always on): what deciding alone costs, beside native RBAC alone.
pub fn decide_only_policy() -> String {
    policy_with_json(ROUTES, TYPICAL_MATCHERS_PER_ROUTE, DECIDE_ONLY_TELEMETRY)
}

/// Deciding plus the one header Envoy's native RBAC + XFCC sets: XFCC `sanitize_set` with the
/// details `envoy_native`'s connection manager sets.
pub fn decide_xfcc_policy() -> String {
    policy_with_json(
        ROUTES,
        TYPICAL_MATCHERS_PER_ROUTE,
        &format!(
            r#""forwarding": {{"xfcc": {{"mode": "sanitize_set", "details": ["hash", "subject", "uri", "dns"]}}}}, {DECIDE_ONLY_TELEMETRY}"#
        ),
    )
}

/// Metrics (always on) and nothing else: no access record, no filter state.
const DECIDE_ONLY_TELEMETRY: &str =
    r#""telemetry": {"access_record": "off", "filter_state": false}"#;

/// certgate's 10,000-matcher policy in the bench.
pub fn large_policy() -> String {
    policy_with_features_json(ROUTES, LARGE_MATCHERS_PER_ROUTE)
}

/// The Envoy route table every listener shares: `r<n>` on `/r<n>/`. With `native`, each route carries
/// the RBAC rules equivalent to certgate's typical policy for that route (both native listeners
/// share that table).
pub fn routes_json(native: bool) -> String {
    let routes: Vec<Value> = (0..ROUTES)
        .map(|r| {
            let mut route = json!({
                "name": format!("r{r}"),
                "match": {"prefix": format!("/r{r}/")},
                "route": {"cluster": "upstream"},
            });
            if native {
                route["typed_per_filter_config"] = json!({
                    "rbac_deny": rbac_per_route("DENY", vec![principal(MatcherKind::Dns, &deny_dns(r))]),
                    "rbac_allow": rbac_per_route("ALLOW", native_allow_principals(r)),
                });
            }
            route
        })
        .collect();
    Value::Array(routes).to_string()
}

/// The allow matchers of route `r` as RBAC principals. `principal_name` matches the URI SAN, else
/// the DNS SAN, else the subject: IP SANs have no RBAC principal, so the CIDR matchers are left out.
fn native_allow_principals(r: usize) -> Vec<Value> {
    (0..TYPICAL_MATCHERS_PER_ROUTE)
        .map(|m| allow_matcher(r, m))
        .filter(|(kind, _)| *kind != MatcherKind::Ip)
        .map(|(kind, value)| principal(kind, &value))
        .collect()
}

fn principal(kind: MatcherKind, value: &str) -> Value {
    let name = match kind {
        // certgate compares DNS names case-insensitively.
        MatcherKind::Dns => json!({"exact": value, "ignore_case": true}),
        MatcherKind::UriPrefix => json!({"prefix": value.trim_end_matches('*')}),
        MatcherKind::Uri | MatcherKind::Ip => json!({"exact": value}),
    };
    json!({"authenticated": {"principal_name": name}})
}

fn rbac_per_route(action: &str, principals: Vec<Value>) -> Value {
    json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute",
        "rbac": {"rules": {"action": action, "policies": {"route": {
            "permissions": [{"any": true}],
            "principals": principals,
        }}}},
    })
}

/// The request the load sends: to the last route, the worst case of certgate's route search.
pub fn bench_request() -> Request {
    Request::get(&format!("/r{}/items?page=1", ROUTES - 1), "app.mesh.local")
}

/// The bench client's certificate: allowed by the last route of both policies (URI SAN), with a DNS
/// SAN and a subject so every XFCC detail and identity header has something to carry.
pub fn bench_client_spec() -> CertSpec {
    CertSpec::client()
        .uri(&allowed_uri(ROUTES))
        .dns("client.bench.svc.cluster.local")
        .cn("bench-client")
        .org("certgate bench")
}

/// The bench Envoy, its upstream and certificates; Envoy is killed on drop.
pub struct BenchEnvoy {
    pub pki: Pki,
    /// The cheap upstream: an empty 200 for every request.
    pub upstream: EchoServer,
    pub envoy: Envoy,
    pub client_cert: IssuedCert,
}

impl BenchEnvoy {
    /// Renders `bench.yaml` with `modules` and starts Envoy (one worker), waiting until it is live.
    pub async fn start(modules: &Modules) -> Result<BenchEnvoy> {
        let pki = Pki::new()?;
        let client_cert = pki.client_cert(&bench_client_spec())?;
        let upstream = EchoServer::plain_ok()?;
        let envoy = testkit::envoy("bench.yaml")
            .template_dir(&template_dir())
            .cert_dir(&pki.dir)
            .upstream_port(upstream.port())
            .wasm(&modules.certgate)
            .var("CERTGATE_WASM_OPT_Z", modules.certgate_opt_z.display())
            .var(
                "CERTGATE_WASM_BASELINE",
                modules.certgate_baseline.display(),
            )
            .var("WASM_FLOOR", modules.wasm_floor.display())
            .var("TYPICAL_POLICY", typical_policy())
            .var("LARGE_POLICY", large_policy())
            .var("DECIDE_ONLY_POLICY", decide_only_policy())
            .var("DECIDE_XFCC_POLICY", decide_xfcc_policy())
            .var("ROUTES", routes_json(false))
            .var("NATIVE_ROUTES", routes_json(true))
            .start()
            .await
            .context("starting the bench Envoy")?;
        Ok(BenchEnvoy {
            pki,
            upstream,
            envoy,
            client_cert,
        })
    }

    /// A client of `variant`'s listener presenting the bench certificate.
    pub fn client(&self, variant: Variant) -> Result<Client> {
        self.client_with(variant, &self.client_cert)
    }

    /// A client of `variant`'s listener presenting `cert`.
    pub fn client_with(&self, variant: Variant, cert: &IssuedCert) -> Result<Client> {
        Ok(Client::tls(
            self.envoy.listener(variant.name())?,
            self.pki.client_tls(Some(cert))?,
        ))
    }
}

/// `benches/envoy/`, where `bench.yaml` is.
fn template_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/envoy")
}

/// The hostcalls certgate makes for the bench request, counted by the harness.
#[derive(Clone, Debug)]
pub struct Hostcalls {
    /// A request on a connection certgate has seen before (keep-alive).
    pub kept_alive: HostcallCounts,
    /// The first request of a new connection from a certificate certgate has seen before (what
    /// every request is in the new-connection mode).
    pub new_connection: HostcallCounts,
}

/// `counts` by hostcall, in name order: `proxy_get_header_map_pairs 1, proxy_get_property 2`.
pub fn breakdown(counts: &HostcallCounts) -> String {
    counts
        .iter()
        .map(|(name, count)| format!("{name} {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The hostcalls `module` (certgate) makes for the bench request under `policy`, with the bench
/// listeners' connection manager and the bench client's certificate.
pub fn hostcalls_per_request(module: &GuestModule, policy: &str) -> Result<Hostcalls> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    // The bench listeners' connection manager.
    let hcm = HttpConnectionManager::default()
        .use_remote_address(true)
        .skip_xff_append(true)
        .forward_client_cert(ForwardClientCert::ForwardOnly, ClientCertDetails::default());
    let settings = PluginSettings::new("certgate")
        .configuration(policy.as_bytes().to_vec())
        .start_time_ns(u64::try_from(now.as_nanos())?)
        .http_connection_manager(hcm);
    let mut plugin = Plugin::new(module, settings)?;
    ensure!(
        plugin.configured().accepted,
        "certgate refused the bench policy: {:?}",
        plugin.logs()
    );
    let ca = testkit::TestCa::new("certgate bench hostcalls CA")?;
    let cert = Certificate::from_pem(&ca.issue(&bench_client_spec())?.cert_pem)?;
    let route = format!("r{}", ROUTES - 1);
    let mut send = |connection: &Connection| -> Result<host_harness::Exchange> {
        let request = host_harness::Request::get(&format!("/{route}/items?page=1"))
            .authority("app.mesh.local")
            .route_name(&route);
        let exchange = plugin.send(connection, request)?;
        plugin.take_logs();
        ensure!(
            exchange.request.is_continued(),
            "certgate did not allow the bench request in the harness: {:?}",
            exchange.request
        );
        Ok(exchange)
    };
    let kept = Connection::mtls(cert.clone());
    // The first request of the first connection parses the certificate: not what the load repeats.
    send(&kept)?;
    let kept_alive = send(&kept)?.hostcalls;
    let new_connection = send(&Connection::mtls(cert))?.hostcalls;
    Ok(Hostcalls {
        kept_alive,
        new_connection,
    })
}
