//! Decisions over real certificates: (certificate, route, expected verdict and reason), plus audit
//! mode, default action, require_client_cert and the deny response.

use crate::config;
use crate::decide::decision::{AllowReason, DenyReason, Reason, Verdict};
use crate::decide::route::RequestFacts;
use crate::identity::peer::Peer;
use crate::identity::{IdentityOrigin, PeerIdentity};
use crate::policy::Policy;
use crate::test_support;
use crate::test_support::San::{Dns, Email, Ip, Uri};

const POLICY: &str = r#"{
  "routes": [
    {"name": "admin", "match": {"route_name": "admin"},
     "allow": [{"uri": "spiffe://mesh.local/ns/ops/sa/*"}, {"dns": "*.yelb.svc.cluster.local"},
               {"trust_domain": "partner.example"}, {"ip": "10.1.0.0/16"}, {"email": "ops@example.com"},
               {"subject_cn": "orders"}],
     "deny": [{"dns": "legacy.yelb.svc.cluster.local"}]},
    {"name": "shadow", "match": {"path_prefix": "/shadow"}, "mode": "audit",
     "allow": [{"dns": "ui.yelb.svc.cluster.local"}]},
    {"name": "public", "match": {"path_exact": "/health", "methods": ["GET"]}, "require_client_cert": false},
    {"name": "any-cert", "match": {"hosts": ["*.internal.example"]}}
  ]
}"#;

fn policy(json: &str) -> Policy {
    config::compile(json.as_bytes()).unwrap_or_else(|errors| panic!("{errors:?}"))
}

fn request<'a>(route_name: &'a str, path: &'a str, host: &'a str) -> RequestFacts<'a> {
    RequestFacts {
        route_name: Some(route_name),
        path,
        authority: host,
        method: "GET",
    }
}

/// A row: certificate (None: none presented), request, expected verdict (its name), reason and
/// route name.
struct Row {
    cert: Option<PeerIdentity>,
    request: RequestFacts<'static>,
    verdict: &'static str,
    reason: Reason,
    route: Option<&'static str>,
}

fn row(
    cert: Option<PeerIdentity>,
    request: RequestFacts<'static>,
    verdict: &'static str,
    reason: Reason,
    route: Option<&'static str>,
) -> Row {
    Row {
        cert,
        request,
        verdict,
        reason,
        route,
    }
}

#[test]
fn decision_table() {
    use Reason::*;
    let (allow, deny, audit_deny) = ("allow", "deny", "audit_deny");
    let id = |sans: &[test_support::San<'_>], cn| Some(test_support::identity(sans, cn));
    let admin = request("admin", "/admin/users?x=1", "admin.example");
    let shadow = request("other", "/shadow/x", "h");
    let health = request("other", "/health", "h");
    let internal = request("other", "/x", "svc.internal.example:8443");
    let nowhere = request("other", "/x", "elsewhere.example");
    let many: Vec<String> = (0..300).map(|i| format!("n{i}.example")).collect();
    let many_sans: Vec<test_support::San<'_>> = many
        .iter()
        .map(|n| Dns(n))
        .chain([Dns("ui.yelb.svc.cluster.local")])
        .collect();
    let rows = vec![
        row(
            id(&[Uri("spiffe://mesh.local/ns/ops/sa/admin")], None),
            admin,
            allow,
            AllowlistMatch,
            Some("admin"),
        ),
        row(
            id(&[Dns("ui.yelb.svc.cluster.local")], None),
            admin,
            allow,
            AllowlistMatch,
            Some("admin"),
        ),
        row(
            id(&[Uri("spiffe://partner.example/x")], None),
            admin,
            allow,
            AllowlistMatch,
            Some("admin"),
        ),
        row(
            id(&[Ip("10.1.4.4")], None),
            admin,
            allow,
            AllowlistMatch,
            Some("admin"),
        ),
        row(
            id(&[Email("ops@example.com")], None),
            admin,
            allow,
            AllowlistMatch,
            Some("admin"),
        ),
        row(
            id(&[], Some("orders")),
            admin,
            allow,
            AllowlistMatch,
            Some("admin"),
        ),
        row(
            id(&[Dns("legacy.yelb.svc.cluster.local")], None),
            admin,
            deny,
            DeniedByRule,
            Some("admin"),
        ),
        // deny wins even when another SAN is allowed
        row(
            id(
                &[
                    Uri("spiffe://mesh.local/ns/ops/sa/admin"),
                    Dns("legacy.yelb.svc.cluster.local"),
                ],
                None,
            ),
            admin,
            deny,
            DeniedByRule,
            Some("admin"),
        ),
        row(
            id(&[Uri("spiffe://mesh.local/ns/dev/sa/admin")], None),
            admin,
            deny,
            NotInAllowlist,
            Some("admin"),
        ),
        row(id(&[], None), admin, deny, NotInAllowlist, Some("admin")),
        row(
            id(&[Dns("*.yelb.svc.cluster.local")], None),
            admin,
            allow,
            AllowlistMatch,
            Some("admin"),
        ),
        row(
            id(&many_sans, Some("big")),
            admin,
            allow,
            AllowlistMatch,
            Some("admin"),
        ),
        row(None, admin, deny, NoClientCert, Some("admin")),
        // audit: would-be denials pass and are recorded
        row(
            id(&[Dns("db.yelb.svc.cluster.local")], None),
            shadow,
            audit_deny,
            NotInAllowlist,
            Some("shadow"),
        ),
        row(None, shadow, audit_deny, NoClientCert, Some("shadow")),
        row(
            id(&[Dns("ui.yelb.svc.cluster.local")], None),
            shadow,
            allow,
            AllowlistMatch,
            Some("shadow"),
        ),
        // optional client certificate; a presented one is still checked
        row(None, health, allow, ClientCertOptional, Some("public")),
        row(
            id(&[Dns("anything.example")], None),
            health,
            allow,
            ValidatedCert,
            Some("public"),
        ),
        // no allow list: any validated certificate
        row(
            id(&[Dns("x.example")], None),
            internal,
            allow,
            ValidatedCert,
            Some("any-cert"),
        ),
        row(id(&[Dns("x.example")], None), nowhere, deny, NoRoute, None),
        row(None, nowhere, deny, NoRoute, None),
    ];
    let policy = policy(POLICY);
    for (index, row) in rows.iter().enumerate() {
        let route = policy.access.select_route(&row.request);
        let peer = row
            .cert
            .as_ref()
            .map_or(Peer::NoCertificate, Peer::Identified);
        let decision = policy.access.decide(route, peer);
        let route_name = decision
            .route
            .map(|i| policy.access.routes[i].name.as_str());
        assert_eq!(
            (decision.verdict.as_str(), decision.reason(), route_name),
            (row.verdict, row.reason, row.route),
            "row {index}: {:?} on {:?}",
            row.cert.as_ref().map(|c| (&c.dns, &c.uris, &c.subject_cns)),
            row.request
        );
    }
}

#[test]
fn path_conditions_compare_the_path_without_query_or_fragment() {
    let policy = policy(
        r#"{"routes": [
            {"name": "exact", "match": {"path_exact": "/health"}},
            {"name": "prefix", "match": {"path_prefix": "/api/"}}
        ]}"#,
    );
    for (path, route) in [
        ("/health", Some(0)),
        ("/health?deep=1", Some(0)),
        ("/health#top", Some(0)),
        ("/health#a?b", Some(0)),
        ("/healthz", None),
        ("/api/v1?x=/health", Some(1)),
        ("/api?x=/api/", None),
        ("?/api/", None),
    ] {
        assert_eq!(
            policy.access.select_route(&request("r", path, "h")),
            route,
            "{path}"
        );
    }
}

#[test]
fn unvalidated_and_unreadable_certificates_are_denied_even_on_open_routes() {
    let policy = policy(POLICY);
    for path in ["/health", "/admin"] {
        let route = policy.access.select_route(&request("admin", path, "h"));
        assert_eq!(
            policy.access.decide(route, Peer::NotValidated).verdict,
            Verdict::Deny(DenyReason::CertNotValidated)
        );
        assert_eq!(
            policy.access.decide(route, Peer::Unreadable).verdict,
            Verdict::Deny(DenyReason::CertUnreadable)
        );
    }
}

#[test]
fn wildcard_certificates_cover_allowlist_names_only_when_enabled() {
    let json = |enabled: bool| {
        format!(
            r#"{{"wildcard_certs": {enabled}, "routes": [{{"name": "r", "allow": [{{"dns": "orders.svc.local"}}],
               "deny": [{{"dns": "vault.secure.local"}}]}}]}}"#
        )
    };
    let shared = test_support::identity(&[Dns("*.svc.local")], None);
    let secure = test_support::identity(&[Dns("*.secure.local")], None);
    let facts = request("r", "/", "h");
    let off = policy(&json(false));
    let on = policy(&json(true));
    let decide = |p: &Policy, id| {
        p.access
            .decide(p.access.select_route(&facts), Peer::Identified(id))
    };
    assert_eq!(decide(&off, &shared).reason(), Reason::NotInAllowlist);
    assert_eq!(decide(&on, &shared).reason(), Reason::AllowlistMatch);
    // a wildcard certificate that covers a denied name is denied once wildcard certificates count
    assert_eq!(decide(&on, &secure).reason(), Reason::DeniedByRule);
}

#[test]
fn audit_policy_mode_is_inherited_and_overridable() {
    let p = policy(
        r#"{"mode": "audit", "routes": [
            {"name": "inherits", "match": {"path_prefix": "/a"}, "allow": [{"dns": "x.example"}]},
            {"name": "enforces", "match": {"path_prefix": "/e"}, "mode": "enforce", "allow": [{"dns": "x.example"}]}
        ]}"#,
    );
    let other = test_support::identity(&[Dns("y.example")], None);
    let decide = |path| {
        p.access.decide(
            p.access.select_route(&request("-", path, "h")),
            Peer::Identified(&other),
        )
    };
    assert_eq!(
        decide("/a").verdict,
        Verdict::AuditDeny(DenyReason::NotInAllowlist)
    );
    assert_eq!(
        decide("/e").verdict,
        Verdict::Deny(DenyReason::NotInAllowlist)
    );
    assert_eq!(
        decide("/none").verdict,
        Verdict::AuditDeny(DenyReason::NoRoute),
        "default action deny, audited"
    );
}

#[test]
fn default_action_allow_admits_unrouted_requests() {
    let p = policy(r#"{"default_action": "allow", "routes": []}"#);
    let decision = p.access.decide(
        p.access.select_route(&request("x", "/", "h")),
        Peer::NoCertificate,
    );
    assert_eq!(decision.verdict, Verdict::Allow(AllowReason::NoRoute));
}

#[test]
fn the_deciding_rule_is_reported() {
    let p = policy(POLICY);
    let legacy = test_support::identity(&[Dns("legacy.yelb.svc.cluster.local")], None);
    let decision = p.access.decide(
        p.access.select_route(&request("admin", "/", "h")),
        Peer::Identified(&legacy),
    );
    assert_eq!(
        decision.verdict,
        Verdict::Deny(DenyReason::DeniedByRule { rule: 0 })
    );
    let ip = test_support::identity(&[Ip("10.1.0.9")], None);
    let decision = p.access.decide(
        p.access.select_route(&request("admin", "/", "h")),
        Peer::Identified(&ip),
    );
    assert_eq!(
        decision.verdict,
        Verdict::Allow(AllowReason::AllowlistMatch { rule: 3 })
    );
}

#[test]
fn routes_match_on_every_condition() {
    let p = policy(
        r#"{"routes": [
            {"name": "exact", "match": {"path_exact": "/v1/items", "methods": ["post"], "hosts": ["API.example.com"]}},
            {"name": "wild", "match": {"hosts": ["*.example.com"], "path_prefix": "/v1/"}}
        ]}"#,
    );
    let name = |method, path, host| {
        let facts = RequestFacts {
            route_name: None,
            path,
            authority: host,
            method,
        };
        p.access
            .select_route(&facts)
            .map(|i| p.access.routes[i].name.as_str())
    };
    assert_eq!(
        name("POST", "/v1/items?page=2", "api.example.com:443"),
        Some("exact")
    );
    assert_eq!(name("POST", "/v1/items", "api.example.com."), Some("exact"));
    assert_eq!(name("GET", "/v1/items", "api.example.com"), Some("wild"));
    assert_eq!(name("POST", "/v1/items/1", "api.example.com"), Some("wild"));
    assert_eq!(name("POST", "/v1/items", "a.b.example.com"), None);
    assert_eq!(name("POST", "/v2/items", "web.example.com"), None);
}

#[test]
fn deny_response_body_exposes_the_reason_only_when_asked() {
    let hidden = policy(r#"{"routes": []}"#);
    let body = hidden
        .deny_response
        .body(DenyReason::NotInAllowlist, "req-\"1\"");
    let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        parsed,
        serde_json::json!({"error": "forbidden", "request_id": "req-\"1\""})
    );
    assert_eq!(
        (
            hidden.deny_response.status,
            hidden.deny_response.content_type.as_str()
        ),
        (403, "application/json")
    );

    let exposed = policy(r#"{"deny_response": {"status": 401, "expose_reason": true}}"#);
    let parsed: serde_json::Value =
        serde_json::from_str(&exposed.deny_response.body(DenyReason::NoClientCert, "r")).unwrap();
    assert_eq!(parsed["reason"], "no_client_cert");
    assert_eq!(exposed.deny_response.status, 401);

    let fixed = policy(r#"{"deny_response": {"body": "go away"}}"#);
    assert_eq!(
        fixed.deny_response.body(DenyReason::NoRoute, "r"),
        "go away"
    );
    assert_eq!(fixed.deny_response.content_type, "text/plain");
}

#[test]
fn identity_extraction_reads_every_field() {
    let pem = test_support::cert_pem(
        &[
            Dns("A.Example.COM."),
            Uri("spiffe://td/x"),
            Ip("::ffff:192.0.2.1"),
            Ip("2001:db8::1"),
            Email("Ops@EXAMPLE.com"),
        ],
        Some("client, one"),
    );
    let id = PeerIdentity::from_pem(pem.as_bytes()).unwrap();
    assert_eq!(id.dns, ["a.example.com"]);
    assert_eq!(id.uris, ["spiffe://td/x"]);
    assert_eq!(
        id.ips,
        [
            "192.0.2.1".parse::<std::net::IpAddr>().unwrap(),
            "2001:db8::1".parse().unwrap()
        ]
    );
    assert_eq!(id.emails, ["Ops@example.com"]);
    assert_eq!(id.subject_cns, ["client, one"]);
    assert_eq!(id.subject, r"CN=client\, one,O=Certgate Tests,C=US");
    assert_eq!(id.sha256.len(), 64);
    assert!(id.not_before.unwrap() < id.not_after.unwrap());
    assert_eq!(id.principal(), Some("spiffe://td/x"));
    assert_eq!(id.san_count(), 5);
    assert!(PeerIdentity::from_pem(
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    )
    .is_err());
    assert!(PeerIdentity::from_pem(b"not pem").is_err());
}

#[test]
fn degraded_identity_from_envoy_attributes() {
    let id = PeerIdentity::from_envoy_attributes(
        r"C=US,O=Org\, Inc,CN=client-one",
        "spiffe://td/sa/x",
        "API.example.com",
        "ABCD",
    );
    assert_eq!(id.subject_cns, ["client-one"]);
    assert_eq!(id.dns, ["api.example.com"]);
    assert_eq!(id.uris, ["spiffe://td/sa/x"]);
    assert_eq!(id.sha256, "abcd");
    assert_eq!(id.origin, IdentityOrigin::EnvoyAttributes);
}

#[test]
fn subjects_are_printed_and_read_back_as_envoy_prints_them() {
    let id = test_support::identity(&[], Some("Zoë #1, \"ops\""));
    assert_eq!(
        id.subject,
        r#"CN=Zo\C3\AB #1\, \"ops\",O=Certgate Tests,C=US"#
    );
    assert_eq!(id.subject_cns, ["Zoë #1, \"ops\""]);
    let degraded = PeerIdentity::from_envoy_attributes(&id.subject, "", "", "00");
    assert_eq!(
        degraded.subject_cns, id.subject_cns,
        "Envoy's subject string reads back to the same CN"
    );
}
