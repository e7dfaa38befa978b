//! certgate's behaviour on the real `certgate.wasm`, through the host harness as Envoy runs it:
//! every decision reason, every matcher kind, wildcard certificates, audit mode, the deny reply,
//! configuration errors, metrics, the access record and filter state. Forwarding and spoofing
//! are in `harness_forwarding.rs`.

mod support;

use host_harness::{Connection, LogLevel, PluginSettings, Request, Tls};
use serde_json::{json, Value};
use std::net::IpAddr;
use support::{decision, issue, mtls, no_cert, plugin, state, status, untrusted};
use testkit::{CertSpec, Validity};

const ADMIN_URI: &str = "spiffe://mesh.local/ns/ops/sa/admin";

fn admin() -> CertSpec {
    CertSpec::client().uri(ADMIN_URI).cn("admin")
}

fn web() -> CertSpec {
    CertSpec::client().uri("spiffe://mesh.local/ns/web/sa/frontend")
}

/// Routes that between them reach every reason the connection identity can give.
fn decision_policy() -> Value {
    json!({"routes": [
        {"name": "admin", "match": {"route_name": "admin"},
         "allow": [{"uri": ADMIN_URI}], "deny": [{"dns": "banned.mesh.local"}]},
        {"name": "any-cert", "match": {"path_prefix": "/any/"}},
        {"name": "optional", "match": {"path_exact": "/optional"},
         "require_client_cert": false, "allow": [{"uri": ADMIN_URI}]}
    ]})
}

#[test]
fn each_connection_decision_reason() {
    // (case, connection, request, decision, reason, client status)
    let table: Vec<(&str, Connection, Request, &str, &str, u32)> = vec![
        (
            "allowlisted uri",
            mtls(&admin()),
            Request::get("/x").route_name("admin"),
            "allow",
            "allowlist_match",
            200,
        ),
        (
            "route without allow list",
            mtls(&web()),
            Request::get("/any/thing"),
            "allow",
            "validated_cert",
            200,
        ),
        (
            "optional cert, none given",
            no_cert(),
            Request::get("/optional"),
            "allow",
            "client_cert_optional",
            200,
        ),
        (
            "optional cert, plain http",
            Connection::plain(),
            Request::get("/optional"),
            "allow",
            "client_cert_optional",
            200,
        ),
        (
            "no route",
            mtls(&admin()),
            Request::get("/elsewhere"),
            "deny",
            "no_route",
            403,
        ),
        (
            "required cert missing",
            no_cert(),
            Request::get("/x").route_name("admin"),
            "deny",
            "no_client_cert",
            403,
        ),
        (
            "not validated",
            untrusted(&admin()),
            Request::get("/x").route_name("admin"),
            "deny",
            "cert_not_validated",
            403,
        ),
        (
            "not validated on an optional route",
            untrusted(&admin()),
            Request::get("/optional"),
            "deny",
            "cert_not_validated",
            403,
        ),
        (
            "deny rule before allow",
            mtls(&admin().dns("banned.mesh.local")),
            Request::get("/x").route_name("admin"),
            "deny",
            "denied_by_rule",
            403,
        ),
        (
            "not in allow list",
            mtls(&web()),
            Request::get("/x").route_name("admin"),
            "deny",
            "not_in_allowlist",
            403,
        ),
    ];
    let mut plugin = plugin(&decision_policy());
    for (case, connection, request, verdict, reason, client_status) in table {
        let exchange = plugin.send(&connection, request).expect(case);
        assert_eq!(
            decision(&exchange),
            (verdict.into(), reason.into()),
            "{case}"
        );
        assert_eq!(status(&exchange), client_status, "{case}");
        assert_eq!(
            exchange.request.is_continued(),
            verdict == "allow",
            "{case}: a denied request is never forwarded"
        );
    }
}

#[test]
fn default_action_allow_lets_unrouted_requests_through() {
    let mut plugin = plugin(&json!({"default_action": "allow", "routes": [
        {"name": "admin", "match": {"path_prefix": "/admin"}, "allow": [{"uri": ADMIN_URI}]}]}));
    let exchange = plugin
        .send(&Connection::plain(), Request::get("/public"))
        .unwrap();
    assert_eq!(decision(&exchange), ("allow".into(), "no_route".into()));
    assert!(exchange.request.is_continued());
    assert_eq!(state(&exchange, "route"), None, "no route matched");
}

#[test]
fn sni_host_mismatch_is_denied_when_configured_so() {
    let mut plugin = plugin(&json!({"sni_host_mismatch": "deny", "routes": [{"name": "any"}]}));
    let connection = |sni: &str| {
        Connection::tls(
            Tls::new()
                .sni(sni)
                .peer_certificate(support::certificate(&issue(&web()))),
        )
    };
    let request = || Request::get("/").authority("api.example.com");
    let mismatch = plugin
        .send(&connection("other.example.com"), request())
        .unwrap();
    assert_eq!(
        decision(&mismatch),
        ("deny".into(), "sni_host_mismatch".into())
    );
    plugin.tick().unwrap();
    assert_eq!(
        plugin.metric_value("certgate_sni_host_mismatch_total"),
        Some(1)
    );
    let matching = plugin
        .send(&connection("api.example.com"), request())
        .unwrap();
    assert_eq!(
        decision(&matching),
        ("allow".into(), "validated_cert".into())
    );
}

#[test]
fn certificates_from_a_trusted_alb_are_checked_for_their_validity_period() {
    let policy = json!({
        "identity_sources": ["alb"],
        "trusted_proxies": {"cidrs": ["10.0.0.0/8"]},
        "routes": [{"name": "any"}]
    });
    let settings = PluginSettings::new("certgate").http_connection_manager(
        host_harness::HttpConnectionManager::default().use_remote_address(true),
    );
    let mut plugin = support::plugin_with(settings, &policy);
    let from_alb = Connection::plain().source("10.0.0.9:40000".parse().unwrap());
    for (validity, reason) in [
        (Validity::Current, "validated_cert"),
        (Validity::Expired, "cert_expired"),
        (Validity::NotYetValid, "cert_not_yet_valid"),
    ] {
        let leaf = issue(&web().validity(validity));
        let request =
            Request::get("/").header("x-amzn-mtls-clientcert-leaf", &leaf.alb_leaf_header_value());
        let exchange = plugin.send(&from_alb, request).unwrap();
        assert_eq!(decision(&exchange).1, reason, "{validity:?}");
        assert_eq!(
            state(&exchange, "identity_source").as_deref(),
            Some("alb"),
            "{validity:?}"
        );
    }
}

#[test]
fn each_matcher_kind_hits_and_misses() {
    let ip = |text: &str| text.parse::<IpAddr>().unwrap();
    // (matcher, certificate, hit?)
    let table: Vec<(Value, CertSpec, bool)> = vec![
        (
            json!({"dns": "orders.svc.local"}),
            CertSpec::client()
                .dns("other.svc.local")
                .dns("orders.svc.local"),
            true,
        ),
        (
            json!({"dns": "Orders.SVC.local."}),
            CertSpec::client().dns("orders.svc.local"),
            true,
        ),
        (
            json!({"dns": "orders.svc.local"}),
            CertSpec::client().dns("orders.svc.local.evil"),
            false,
        ),
        (
            json!({"dns": "*.yelb.svc"}),
            CertSpec::client().dns("ui.yelb.svc"),
            true,
        ),
        (
            json!({"dns": "*.yelb.svc"}),
            CertSpec::client().dns("a.ui.yelb.svc"),
            false,
        ),
        (
            json!({"dns": "*.yelb.svc"}),
            CertSpec::client().dns("yelb.svc"),
            false,
        ),
        (json!({"uri": ADMIN_URI}), admin(), true),
        (
            json!({"uri": ADMIN_URI}),
            CertSpec::client().uri("spiffe://mesh.local/ns/ops/sa/admin2"),
            false,
        ),
        (
            json!({"uri": "spiffe://mesh.local/ns/ops/*"}),
            admin(),
            true,
        ),
        (
            json!({"uri": "spiffe://mesh.local/ns/ops/*"}),
            CertSpec::client().uri("spiffe://mesh.local/ns/opsx/sa/a"),
            false,
        ),
        (
            json!({"uri": "spiffe://mesh.local/ns/*/sa/admin"}),
            admin(),
            true,
        ),
        (
            json!({"uri": "spiffe://mesh.local/ns/*/sa/admin"}),
            CertSpec::client().uri("spiffe://mesh.local/ns/a/b/sa/admin"),
            false,
        ),
        (
            json!({"uri": "spiffe://mesh.local/ns/*/sa/admin"}),
            CertSpec::client().uri("spiffe://mesh.local/ns/../sa/admin"),
            false,
        ),
        (json!({"trust_domain": "mesh.local"}), web(), true),
        (json!({"trust_domain": "partner.example"}), web(), false),
        (
            json!({"ip": "10.1.0.0/16"}),
            CertSpec::client().ip(ip("10.1.2.3")),
            true,
        ),
        (
            json!({"ip": "10.1.0.0/16"}),
            CertSpec::client().ip(ip("10.2.0.1")),
            false,
        ),
        (
            json!({"ip": "2001:db8::1"}),
            CertSpec::client().ip(ip("2001:db8::1")),
            true,
        ),
        (
            json!({"ip": "10.1.2.3"}),
            CertSpec::client().ip(ip("::ffff:10.1.2.3")),
            true,
        ),
        (
            json!({"email": "ops@Example.com"}),
            CertSpec::client().email("ops@example.com"),
            true,
        ),
        (
            json!({"email": "ops@example.com"}),
            CertSpec::client().email("Ops@example.com"),
            false,
        ),
        (
            json!({"dns": "example.com"}),
            CertSpec::client().email("ops@example.com"),
            false,
        ),
        (
            json!({"subject_cn": "orders"}),
            CertSpec::client().cn("orders").org("Shop"),
            true,
        ),
        (
            json!({"subject_cn": "orders"}),
            CertSpec::client().cn("Orders"),
            false,
        ),
    ];
    for (matcher, spec, hit) in table {
        let mut plugin = plugin(&json!({"routes": [{"name": "r", "allow": [matcher]}]}));
        let exchange = plugin.send(&mtls(&spec), Request::get("/")).unwrap();
        let expected = if hit {
            "allowlist_match"
        } else {
            "not_in_allowlist"
        };
        assert_eq!(
            decision(&exchange).1,
            expected,
            "{matcher} against {spec:?}"
        );
    }
}

#[test]
fn sha256_matcher_takes_any_case_and_colons() {
    let issued = issue(&web());
    let digest = issued.sha256_hex();
    let colons: Vec<String> = digest
        .as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).to_uppercase())
        .collect();
    let connection = Connection::mtls(support::certificate(&issued));
    for pattern in [digest.clone(), colons.join(":")] {
        let mut plugin =
            plugin(&json!({"routes": [{"name": "r", "allow": [{"sha256": pattern}]}]}));
        let exchange = plugin.send(&connection, Request::get("/")).unwrap();
        assert_eq!(decision(&exchange).1, "allowlist_match", "{pattern}");
    }
    let mut other =
        plugin(&json!({"routes": [{"name": "r", "allow": [{"sha256": "0".repeat(64)}]}]}));
    let exchange = other.send(&connection, Request::get("/")).unwrap();
    assert_eq!(decision(&exchange).1, "not_in_allowlist");
}

#[test]
fn wildcard_certificates_both_ways() {
    let shared_cert = mtls(&CertSpec::client().dns("*.svc.local"));
    // (wildcard_certs, list, pattern, reason)
    let table = [
        (false, "allow", "orders.svc.local", "not_in_allowlist"),
        (true, "allow", "orders.svc.local", "allowlist_match"),
        (false, "allow", "*.svc.local", "allowlist_match"),
        (true, "allow", "a.orders.svc.local", "not_in_allowlist"),
        (true, "deny", "orders.svc.local", "denied_by_rule"),
        (false, "deny", "orders.svc.local", "validated_cert"),
    ];
    for (wildcard_certs, list, pattern, reason) in table {
        let mut plugin = plugin(&json!({"wildcard_certs": wildcard_certs,
            "routes": [{"name": "r", list: [{"dns": pattern}]}]}));
        let exchange = plugin.send(&shared_cert, Request::get("/")).unwrap();
        assert_eq!(
            decision(&exchange).1,
            reason,
            "wildcard_certs {wildcard_certs}, {list} {pattern}"
        );
    }
}

#[test]
fn audit_mode_forwards_would_be_denials_and_counts_them() {
    let mut plugin = plugin(&json!({"mode": "audit", "routes": [
        {"name": "audited", "match": {"path_prefix": "/a"}, "allow": [{"uri": ADMIN_URI}]},
        {"name": "enforced", "match": {"path_prefix": "/e"}, "allow": [{"uri": ADMIN_URI}], "mode": "enforce"}
    ]}));
    let audited = plugin.send(&mtls(&web()), Request::get("/a")).unwrap();
    assert_eq!(
        decision(&audited),
        ("audit_deny".into(), "not_in_allowlist".into())
    );
    assert!(audited.request.is_continued(), "audit mode forwards");
    plugin.tick().unwrap();
    assert_eq!(
        plugin.metric_value(
            "certgate_requests_total.route.audited.decision.audit_deny.reason.not_in_allowlist"
        ),
        Some(1)
    );
    let enforced = plugin.send(&mtls(&web()), Request::get("/e")).unwrap();
    assert_eq!(
        decision(&enforced),
        ("deny".into(), "not_in_allowlist".into())
    );
    assert_eq!(
        status(&enforced),
        403,
        "a route's own mode overrides the policy's"
    );
}

#[test]
fn default_deny_reply_is_json_with_the_request_id() {
    let mut plugin = plugin(&decision_policy());
    let exchange = plugin
        .send(&mtls(&web()), Request::get("/x").route_name("admin"))
        .unwrap();
    let response = exchange.response.as_ref().unwrap();
    assert!(response.local);
    assert_eq!(response.status, 403);
    assert_eq!(
        response.headers.get("content-type"),
        Some("application/json")
    );
    assert!(
        !response.headers.contains("x-certgate-reason"),
        "the reason is hidden by default"
    );
    let body: Value = serde_json::from_slice(&response.body).unwrap();
    let request_id = state(&exchange, "request_id").expect("the HCM gives every request an id");
    assert_eq!(
        body,
        json!({"error": "forbidden", "request_id": request_id})
    );
}

#[test]
fn exposed_reason_and_custom_replies() {
    let deny = |response: Value| {
        let mut plugin = plugin(
            &json!({"deny_response": response, "routes": [{"name": "r", "allow": [{"uri": ADMIN_URI}]}]}),
        );
        let exchange = plugin.send(&mtls(&web()), Request::get("/")).unwrap();
        exchange.response.unwrap()
    };
    let exposed = deny(json!({"expose_reason": true}));
    assert_eq!(
        exposed.headers.get("x-certgate-reason"),
        Some("not_in_allowlist")
    );
    let body: Value = serde_json::from_slice(&exposed.body).unwrap();
    assert_eq!(body["reason"], "not_in_allowlist");
    assert_eq!(body["error"], "forbidden");

    let custom = deny(json!({"status": 401, "body": "go away"}));
    assert_eq!(custom.status, 401);
    assert_eq!(custom.body, b"go away");
    assert_eq!(custom.headers.get("content-type"), Some("text/plain"));

    let typed = deny(json!({"status": 451, "body": "<p>no</p>", "content_type": "text/html"}));
    assert_eq!(
        (typed.status, typed.headers.get("content-type")),
        (451, Some("text/html"))
    );
}

/// A gRPC caller gets a gRPC answer: a trailers-only `200` whose `grpc-status` says why
/// (`UNAUTHENTICATED` without a usable certificate, `PERMISSION_DENIED` for a refused identity) and
/// whose `grpc-message` names the request; the record says which status it got. An HTTP caller on
/// the same route keeps the HTTP reply.
#[test]
fn a_denied_grpc_call_gets_a_grpc_status() {
    let policy = |deny_response: Value| {
        json!({"deny_response": deny_response, "routes": [
            {"name": "r", "allow": [{"uri": ADMIN_URI}]}
        ]})
    };
    let grpc_call = || {
        Request::post("/shop.Orders/Get")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
    };
    let mut default = plugin(&policy(json!({})));
    let refused = default.send(&mtls(&web()), grpc_call()).unwrap();
    let reply = refused.response.as_ref().unwrap();
    let request_id = state(&refused, "request_id").unwrap();
    assert_eq!(reply.status, 200, "a trailers-only gRPC answer");
    assert_eq!(reply.headers.get("content-type"), Some("application/grpc"));
    assert_eq!(reply.headers.get("grpc-status"), Some("7"));
    assert_eq!(
        reply.headers.get("grpc-message").map(str::to_owned),
        Some(format!(
            "certgate: permission denied (request {request_id})"
        ))
    );
    assert_eq!(state(&refused, "grpc_status").as_deref(), Some("7"));
    assert!(!refused.request.is_continued());

    let anonymous = default.send(&no_cert(), grpc_call()).unwrap();
    let reply = anonymous.response.as_ref().unwrap();
    assert_eq!(reply.headers.get("grpc-status"), Some("16"));
    assert!(reply
        .headers
        .get("grpc-message")
        .is_some_and(|message| message.starts_with("certgate: unauthenticated (request ")));

    let allowed = default.send(&mtls(&admin()), grpc_call()).unwrap();
    assert!(allowed.request.is_continued());
    assert_eq!(state(&allowed, "grpc_status"), None);

    let http = default.send(&mtls(&web()), Request::get("/")).unwrap();
    assert_eq!(status(&http), 403);
    assert_eq!(state(&http, "grpc_status"), None, "not a gRPC call");

    let mut exposing = plugin(&policy(json!({"expose_reason": true})));
    let reply = exposing
        .send(&mtls(&web()), grpc_call())
        .unwrap()
        .response
        .unwrap();
    assert!(reply
        .headers
        .get("grpc-message")
        .is_some_and(|message| message
            .starts_with("certgate: permission denied: not_in_allowlist (request ")));
    assert_eq!(
        reply.headers.get("x-certgate-reason"),
        Some("not_in_allowlist")
    );

    let mut fixed = plugin(&policy(
        json!({"grpc_status": 14, "grpc_message": "try another region"}),
    ));
    let reply = fixed
        .send(&mtls(&web()), grpc_call())
        .unwrap()
        .response
        .unwrap();
    assert_eq!(reply.headers.get("grpc-status"), Some("14"));
    assert_eq!(
        reply.headers.get("grpc-message"),
        Some("try another region")
    );
}

#[test]
fn invalid_configurations_are_rejected_with_the_field_path() {
    let table = [
        (
            json!({"routes": [{"name": "r", "allow": [{"dns": "a*.b"}]}]}),
            "routes[0].allow[0].dns: \"a*.b\" is not a valid pattern",
        ),
        (
            json!({"routes": [{"name": "r", "allow": []}]}),
            "routes[0].allow: is empty",
        ),
        (
            json!({"routes": [{"name": "r"}, {"name": "r"}]}),
            "routes[1].name: \"r\" names another route too",
        ),
        (
            json!({"routes": [{"name": "r", "allow": [{"ip": "10.1.0.5/16"}]}]}),
            "routes[0].allow[0].ip",
        ),
        (
            json!({"routes": [{"name": "r", "match": {"path_prefix": "admin"}}]}),
            "routes[0].match.path_prefix: \"admin\" does not start with '/'",
        ),
        (
            json!({"routes": [{"name": "r", "alow": []}]}),
            "routes[0].alow: unknown field `alow`",
        ),
        (
            json!({"mode": "observe"}),
            "mode: unknown variant `observe`",
        ),
        (json!([1, 2]), "a JSON object"),
    ];
    for (policy, expected) in table {
        let plugin = host_harness::Plugin::new(
            support::certgate(),
            PluginSettings::new("certgate").configuration_json(&policy),
        )
        .unwrap();
        assert!(!plugin.configured().accepted, "{policy} was accepted");
        let errors = plugin.logs_at(LogLevel::Error);
        assert!(
            errors
                .iter()
                .any(|line| line.starts_with("certgate: invalid configuration: ")
                    && line.contains(expected)),
            "{policy}: expected {expected:?} in {errors:?}"
        );
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let policy = json!({"routes": [
        {"name": "bad name!", "allow": [{"dns": "*.*.b"}]},
        {"name": "r", "deny": [{"uri": ""}], "match": {"methods": ["G T"]}}
    ]});
    let plugin = host_harness::Plugin::new(
        support::certgate(),
        PluginSettings::new("certgate").configuration_json(&policy),
    )
    .unwrap();
    let errors = plugin.logs_at(LogLevel::Error);
    for path in [
        "routes[0].name",
        "routes[0].allow[0].dns",
        "routes[1].match.methods[0]",
    ] {
        assert!(
            errors
                .iter()
                .any(|line| line.contains(&format!("{path}: "))),
            "{path} in {errors:?}"
        );
    }
}

#[test]
fn metrics_by_name_and_value() {
    let mut plugin = plugin(&decision_policy());
    let admin_conn = mtls(&admin());
    for _ in 0..2 {
        plugin
            .send(&admin_conn, Request::get("/").route_name("admin"))
            .unwrap();
    }
    plugin
        .send(&mtls(&web()), Request::get("/").route_name("admin"))
        .unwrap();
    plugin
        .send(&Connection::plain(), Request::get("/elsewhere"))
        .unwrap();
    assert!(
        plugin.metrics().iter().next().is_none(),
        "requests are counted in the guest until its tick"
    );
    plugin.tick().unwrap();
    let metrics = plugin.metrics();
    let expected = [
        (
            "certgate_requests_total.route.admin.decision.allow.reason.allowlist_match",
            2,
        ),
        (
            "certgate_requests_total.route.admin.decision.deny.reason.not_in_allowlist",
            1,
        ),
        (
            "certgate_requests_total.route._none.decision.deny.reason.no_route",
            1,
        ),
        ("certgate_tls_version_total.version.TLSv1.3", 3),
        ("certgate_tls_version_total.version.none", 1),
        ("certgate_identity_source_total.source.connection", 3),
    ];
    for (name, value) in expected {
        assert_eq!(
            metrics.value(name),
            Some(value),
            "{name} in {:?}",
            metrics.iter().map(|m| &m.name).collect::<Vec<_>>()
        );
    }
    let days = metrics
        .get("certgate_peer_cert_days_to_expiry")
        .expect("the expiry histogram");
    assert_eq!(
        days.samples.len(),
        2,
        "one observation per certificate (admin, web), not per request"
    );
    assert!(
        days.samples.iter().all(|days| (360..=365).contains(days)),
        "{:?}",
        days.samples
    );
}

#[test]
fn expiring_certificates_are_counted_and_warned_once() {
    let mut plugin = plugin(&json!({"routes": [{"name": "r"}]}));
    let connection = mtls(&web().validity(Validity::ExpiresInDays(5)));
    for _ in 0..2 {
        plugin.send(&connection, Request::get("/")).unwrap();
    }
    plugin.tick().unwrap();
    assert_eq!(
        plugin.metric_value("certgate_cert_expiring_total.route.r"),
        Some(2)
    );
    let warnings: Vec<&str> = plugin
        .logs_at(LogLevel::Warn)
        .into_iter()
        .filter(|line| line.contains("expires in 5 days"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
}

#[test]
fn access_record_and_filter_state_carry_the_same_facts() {
    let mut policy = decision_policy();
    policy["telemetry"] = json!({"access_record": "info"});
    let mut plugin = plugin(&policy);
    let connection = Connection::tls(Tls::new().sni("admin.example.com").peer_certificate(
        support::certificate(&issue(&admin().dns("admin.mesh.local"))),
    ));
    let exchange = plugin
        .send(
            &connection,
            Request::get("/")
                .authority("admin.example.com")
                .route_name("admin"),
        )
        .unwrap();
    let record = support::access_record(&exchange);
    assert_eq!(record["route"], "admin");
    assert_eq!(record["decision"], "allow");
    assert_eq!(record["reason"], "allowlist_match");
    assert_eq!(record["identity"], ADMIN_URI, "the first URI SAN");
    assert_eq!(record["san_count"], 2);
    assert_eq!(record["tls_version"], "TLSv1.3");
    assert_eq!(record["sni"], "admin.example.com");
    assert_eq!(record["identity_source"], "connection");
    assert!(record["days_to_expiry"]
        .as_i64()
        .is_some_and(|days| days > 300));
    assert!(record["request_id"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));
    for (field, value) in record.as_object().unwrap() {
        let expected = match value {
            Value::Null => None,
            Value::String(text) => Some(text.clone()),
            other => Some(other.to_string()),
        };
        assert_eq!(
            state(&exchange, field),
            expected,
            "field {field} of filter state wasm.certgate"
        );
    }
    assert_eq!(
        exchange.hostcalls.get("proxy_set_property"),
        1,
        "the whole record in one write"
    );
    let info = exchange
        .logs
        .iter()
        .find(|line| line.message.starts_with('{'))
        .unwrap();
    assert_eq!(
        info.level,
        LogLevel::Info,
        "the access record's level when turned on"
    );
}

#[test]
fn the_access_record_line_is_off_by_default() {
    let mut plugin = plugin(&decision_policy());
    let exchange = plugin
        .send(&mtls(&admin()), Request::get("/").route_name("admin"))
        .unwrap();
    assert_eq!(state(&exchange, "decision").as_deref(), Some("allow"));
    assert!(
        exchange
            .logs
            .iter()
            .all(|line| !line.message.starts_with('{')),
        "{:?}",
        exchange.logs
    );
    assert_eq!(exchange.hostcalls.get("proxy_log"), 0);
}

#[test]
fn access_record_and_filter_state_can_be_switched_off() {
    let mut plugin = plugin(
        &json!({"telemetry": {"access_record": "off", "filter_state": false}, "routes": [{"name": "r"}]}),
    );
    let exchange = plugin.send(&mtls(&web()), Request::get("/")).unwrap();
    assert!(
        exchange.filter_state.is_empty(),
        "{:?}",
        exchange.filter_state
    );
    assert_eq!(exchange.hostcalls.get("proxy_set_property"), 0);
    assert!(
        exchange
            .logs
            .iter()
            .all(|line| !line.message.starts_with('{')),
        "{:?}",
        exchange.logs
    );
    plugin.tick().unwrap();
    assert_eq!(
        plugin.metric_value("certgate_requests_total.route.r.decision.allow.reason.validated_cert"),
        Some(1)
    );
}

/// A connection's facts (certificate, TLS version, SNI, peer address) cannot change while it lives:
/// certgate reads them on its first request and, on every later one, only `connection.id` (and
/// `xds.route_name`, which this policy routes on). Two
/// connections never share facts, even with the same certificate.
#[test]
fn connection_facts_are_read_once_per_connection() {
    let mut plugin = plugin(&decision_policy());
    let admin_connection = mtls(&admin());
    let request = || Request::get("/").route_name("admin");
    let first = plugin.send(&admin_connection, request()).unwrap();
    let second = plugin.send(&admin_connection, request()).unwrap();
    assert_eq!(decision(&first), decision(&second));
    let reads = |exchange: &host_harness::Exchange| exchange.hostcalls.get("proxy_get_property");
    assert!(
        reads(&first) > reads(&second),
        "the first request reads the connection's facts"
    );
    assert_eq!(reads(&second), 2);

    let web_connection = mtls(&web());
    let other = plugin.send(&web_connection, request()).unwrap();
    assert_eq!(
        decision(&other),
        ("deny".to_owned(), "not_in_allowlist".to_owned())
    );
    assert_eq!(
        reads(&other),
        reads(&first),
        "a new connection reads its own facts"
    );
    let again = plugin.send(&admin_connection, request()).unwrap();
    assert_eq!(decision(&again), decision(&first));
    assert_eq!(
        reads(&again),
        2,
        "the first connection's facts are still cached"
    );
}

/// Counts reach the host on certgate's tick, not per request: nothing before the interval, every
/// request's count after it, and the interval is the configured one.
#[test]
fn metrics_reach_the_host_on_the_tick_of_the_configured_interval() {
    let mut plugin = plugin(&json!({
        "routes": [{"name": "r"}],
        "telemetry": {"metrics_flush_ms": 250},
    }));
    let allowed = "certgate_requests_total.route.r.decision.allow.reason.validated_cert";
    let connection = mtls(&web());
    for _ in 0..3 {
        let exchange = plugin.send(&connection, Request::get("/")).unwrap();
        assert_eq!(
            exchange.hostcalls.get("proxy_increment_metric")
                + exchange.hostcalls.get("proxy_record_metric")
                + exchange.hostcalls.get("proxy_define_metric"),
            0,
            "a request makes no metric hostcall"
        );
    }
    plugin
        .advance_time(std::time::Duration::from_millis(249))
        .unwrap();
    assert_eq!(plugin.metric_value(allowed), None, "before the first tick");
    plugin
        .advance_time(std::time::Duration::from_millis(1))
        .unwrap();
    assert_eq!(plugin.metric_value(allowed), Some(3), "one delta for three");
    plugin.send(&connection, Request::get("/")).unwrap();
    plugin
        .advance_time(std::time::Duration::from_millis(250))
        .unwrap();
    assert_eq!(plugin.metric_value(allowed), Some(4));
    let days = plugin
        .metrics()
        .get("certgate_peer_cert_days_to_expiry")
        .map(|metric| metric.samples.len());
    assert_eq!(days, Some(1), "one certificate, four requests");
}

/// A new configuration hands over what the old one counted before it replaces it: nothing counted
/// under a policy is lost with it.
#[test]
fn a_new_configuration_hands_over_the_old_counts_first() {
    let mut plugin = plugin(&json!({"routes": [{"name": "old"}]}));
    plugin.send(&mtls(&web()), Request::get("/")).unwrap();
    let new_policy = json!({"routes": [{"name": "new"}]}).to_string();
    assert!(plugin.configure(new_policy).unwrap().accepted);
    assert_eq!(
        plugin
            .metric_value("certgate_requests_total.route.old.decision.allow.reason.validated_cert"),
        Some(1),
        "flushed by the reconfiguration, before any tick"
    );
}

/// A VM that goes away hands over what it counted since its last tick.
#[test]
fn a_vm_shutting_down_hands_over_its_counts() {
    let mut plugin = plugin(&json!({"routes": [{"name": "r"}]}));
    plugin.send(&mtls(&web()), Request::get("/")).unwrap();
    assert!(plugin.shutdown().unwrap());
    assert_eq!(
        plugin.metric_value("certgate_requests_total.route.r.decision.allow.reason.validated_cert"),
        Some(1)
    );
}
