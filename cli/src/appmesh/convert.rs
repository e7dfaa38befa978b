//! What App Mesh's settings become: for one virtual node or virtual gateway (with its gateway
//! routes), the certgate policy and the Envoy bootstrap template, and a note for each setting
//! saying what it became or what the operator must do.
//!
//! The rule that keeps the import faithful: App Mesh refused a client whose certificate did not
//! chain to `validation.trust` (TLS handshake) or whose SANs were not in
//! `subjectAlternativeNames.match.exact`; the imported Envoy still refuses the first in the
//! handshake, and certgate refuses the second with a 403 on every route (an allowlist of those exact
//! names), so the same clients get through. Envoy's own SAN matching is not used: certgate names
//! the refused identity in its metrics and access log, and the policy can then be narrowed per route.

use super::model::*;
use super::resolve::{Mesh, Resolved, Unresolved};
use super::yaml::{map, s, to_yaml, Y};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::path::Path;

/// Where App Mesh's Envoy found the SPIRE agent (`APPMESH_SDS_SOCKET_PATH`'s default), the value
/// the report suggests for `${SPIRE_AGENT_SOCKET}`.
pub const SPIRE_SOCKET: &str = "/run/spire/sockets/agent.sock";

/// The shipped sidecar config: its metric tags and access-log format are reused as they are.
const SHIPPED_SIDECAR: &str = include_str!("../../../envoy/sidecar.yaml");

/// The outputs for one virtual node or gateway.
pub struct Outputs {
    pub policy: Value,
    pub envoy_yaml: String,
    /// The SDS files the template names (`${SDS_DIR}/FILE`): (file name, contents).
    pub secret_files: Vec<(String, String)>,
    pub notes: Vec<Note>,
}

/// A certgate route and the Envoy route it guards.
struct RoutePlan {
    name: String,
    envoy_match: Y,
    action: Y,
}

struct Converter<'a> {
    files_root: Option<&'a Path>,
    /// Every input, to find where a backend's virtual service leads.
    mesh: &'a Mesh<'a>,
    /// The outputs' file stem: SDS files are named after it.
    stem: String,
    secret_files: Vec<(String, String)>,
    notes: Vec<Note>,
    uses_sds: bool,
    variables: Vec<(&'static str, &'static str)>,
    clusters: Vec<Y>,
}

/// The body of an SDS file (`resources:` with one Secret named `secret`): `kind` is
/// `tls_certificate` or `validation_context`, `body` its file data sources, and Envoy re-reads them
/// whenever an entry of `watched` is moved into place. The shipped configs' SDS files in
/// `envoy/sds/` are this function's output too (a test keeps them equal).
pub fn sds_file_resources(secret: &str, kind: &str, body: Y, watched: &str) -> String {
    let resource = Y::Map(vec![
        (
            "\"@type\"".into(),
            s("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"),
        ),
        ("name".into(), s(secret)),
        (
            kind.into(),
            body.with("watched_directory", map([("path", s(watched))])),
        ),
    ]);
    to_yaml(&map([("resources", Y::List(vec![resource]))]))
}

/// A certgate matcher for one exact SAN of App Mesh: what kind of SAN the name is.
pub fn san_matcher(san: &str) -> Value {
    if san.parse::<IpAddr>().is_ok() {
        json!({ "ip": san })
    } else if san.contains("://") {
        json!({ "uri": san })
    } else if san.contains('@') {
        json!({ "email": san })
    } else {
        json!({ "dns": san })
    }
}

fn san_type(san: &str) -> &'static str {
    match san_matcher(san)
        .as_object()
        .and_then(|m| m.keys().next().cloned())
        .as_deref()
    {
        Some("ip") => "IP_ADDRESS",
        Some("uri") => "URI",
        Some("email") => "EMAIL",
        _ => "DNS",
    }
}

/// An Envoy (and certgate) route name: `[A-Za-z0-9_-]{1,64}`.
pub fn route_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "route".into()
    } else {
        cleaned
    }
}

impl<'a> Converter<'a> {
    fn new(name: &str, files_root: Option<&'a Path>, mesh: &'a Mesh<'a>) -> Self {
        Converter {
            files_root,
            mesh,
            stem: super::file_stem(name),
            secret_files: Vec::new(),
            notes: Vec::new(),
            uses_sds: false,
            variables: vec![
                ("CERTGATE_WASM", "path of certgate.wasm"),
                ("PLUGIN_CONFIG", "certgate's configuration, JSON on ONE line (the policy file beside this one)"),
                ("LISTENER_ADDRESS", "address the listener binds (0.0.0.0 in a task or pod, 127.0.0.1 in tests)"),
                ("LISTENER_PORT", "the listener's port (App Mesh's portMapping.port keeps clients unchanged; 0 = ephemeral)"),
                ("ADMIN_PORT", "admin port on 127.0.0.1 (0 = ephemeral)"),
                ("ACCESS_LOG", "access-log file (/dev/stdout works)"),
            ],
            clusters: Vec::new(),
        }
    }

    fn note(&mut self, origin: &Origin, kind: NoteKind, text: impl Into<String>) {
        self.notes.push(Note {
            origin: origin.clone(),
            kind,
            text: text.into(),
        });
    }

    fn variable(&mut self, name: &'static str, meaning: &'static str) {
        if !self.variables.iter().any(|(known, _)| *known == name) {
            self.variables.push((name, meaning));
        }
    }

    /// A `file` path of the spec, under `--files-root` when given.
    fn file(&self, path: &str) -> String {
        match self.files_root {
            Some(root) => root
                .join(path.trim_start_matches('/'))
                .display()
                .to_string(),
            None => path.to_string(),
        }
    }

    /// A secret the SPIRE agent serves over gRPC SDS on `${SPIRE_AGENT_SOCKET}`.
    fn sds(&mut self, secret: &str) -> Y {
        self.uses_sds = true;
        self.variable("SPIRE_AGENT_SOCKET", "the SPIRE agent's socket, which serves SDS (App Mesh's APPMESH_SDS_SOCKET_PATH, by default /run/spire/sockets/agent.sock)");
        map([
            ("name", s(secret)),
            (
                "sds_config",
                map([
                    ("resource_api_version", s("V3")),
                    (
                        "api_config_source",
                        map([
                            ("api_type", s("GRPC")),
                            ("transport_api_version", s("V3")),
                            (
                                "grpc_services",
                                Y::List(vec![map([(
                                    "envoy_grpc",
                                    map([("cluster_name", s("sds-grpc"))]),
                                )])]),
                            ),
                        ]),
                    ),
                ]),
            ),
        ])
    }

    /// A secret Envoy reads through SDS from a file written beside the template
    /// (`${SDS_DIR}/STEM.SECRET.sds.yaml`): `kind` is `tls_certificate` or `validation_context`,
    /// `body` its file data sources. Envoy watches `watched` for moves, so a renewed certificate or
    /// bundle written there (cert-manager's and Kubernetes' `..data` symlink flip, a `mv` into
    /// place) is served from the next handshake on, without a restart. Returns the SDS config
    /// that names the secret.
    fn file_secret(&mut self, secret: &str, kind: &str, body: Y, watched: &str) -> Y {
        self.variable("SDS_DIR", "directory of the *.sds.yaml files written beside this template (render them too): Envoy reads its certificates and trust bundles through them and reloads them when their directory changes");
        let file_name = format!("{}.{secret}.sds.yaml", self.stem);
        let contents = format!(
            "# SDS secret `{secret}` of `{}`, written by `certgate import appmesh`. Envoy reloads it\n\
             # when an entry of {watched} is moved into place (a renewed certificate, Kubernetes'\n\
             # `..data` symlink flip), without a restart.\n\n{}",
            self.stem,
            sds_file_resources(secret, kind, body, watched)
        );
        self.secret_files.push((file_name.clone(), contents));
        map([
            ("name", s(secret)),
            (
                "sds_config",
                map([
                    ("resource_api_version", s("V3")),
                    (
                        "path_config_source",
                        map([
                            ("path", s(format!("${{SDS_DIR}}/{file_name}"))),
                            ("watched_directory", map([("path", s("${SDS_DIR}"))])),
                        ]),
                    ),
                ]),
            ),
        ])
    }

    /// Envoy's certificate, always through SDS (`tls_certificate_sds_secret_configs`): from a
    /// file Envoy watches, or from the SPIRE agent. `secret` names it (`ingress`, a cluster).
    fn certificate(
        &mut self,
        certificate: &Certificate,
        origin: &Origin,
        whose: &str,
        secret: &str,
    ) -> Y {
        let secret = format!("{secret}-cert");
        let (chain_file, key_file) = match certificate {
            Certificate::File { chain, key } => {
                let (chain_file, key_file) = (self.file(chain), self.file(key));
                self.note(origin, NoteKind::Became, format!("{whose} certificate file {chain} (key {key}) -> Envoy reads {chain_file} and {key_file} through SDS file {}.{secret}.sds.yaml, again whenever {} changes (no restart on renewal)", self.stem, parent_dir(&chain_file)));
                if parent_dir(&chain_file) != parent_dir(&key_file) {
                    self.note(origin, NoteKind::NeedsOperator, format!("{whose} certificate and key are in different directories: Envoy reloads both when {} changes; renew the key there too, or put both in one directory", parent_dir(&chain_file)));
                }
                (chain_file, key_file)
            }
            Certificate::Sds { secret: sds_secret } => {
                self.note(origin, NoteKind::NeedsOperator, format!(
                    "{whose} certificate from SDS secret `{sds_secret}` -> Envoy asks the SPIRE agent for `{sds_secret}` over the unix socket ${{SPIRE_AGENT_SOCKET}} (cluster sds-grpc): mount the agent's socket and set it ({SPIRE_SOCKET} under App Mesh)"));
                return self.sds(sds_secret);
            }
            Certificate::Acm { arn } => {
                self.variable(
                    "CERT_DIR",
                    "holds server.pem and server-key.pem: the ACM certificate, exported",
                );
                self.note(origin, NoteKind::NeedsOperator, format!(
                    "{whose} certificate from ACM {arn}: Envoy cannot read ACM. Export it (`aws acm export-certificate`, a private CA certificate) into ${{CERT_DIR}}/server.pem and ${{CERT_DIR}}/server-key.pem, or serve it by SDS; Envoy reloads them when ${{CERT_DIR}} changes (export a renewal next to them and move it into place)"));
                (
                    "${CERT_DIR}/server.pem".into(),
                    "${CERT_DIR}/server-key.pem".into(),
                )
            }
        };
        let watched = parent_dir(&chain_file);
        self.file_secret(
            &secret,
            "tls_certificate",
            map([
                ("certificate_chain", map([("filename", s(chain_file))])),
                ("private_key", map([("filename", s(key_file))])),
            ]),
            &watched,
        )
    }

    /// A validation context, (key, value) for `common_tls_context`: the trust bundle through SDS
    /// (a file Envoy watches, or the SPIRE agent) and, for a backend, the SANs it must carry.
    fn trust(
        &mut self,
        trust: &Trust,
        origin: &Origin,
        whose: &str,
        secret: &str,
        sans: &[String],
    ) -> (String, Y) {
        let secret = format!("{secret}-trust");
        let bundle = match trust {
            Trust::File { chain } => {
                let file = self.file(chain);
                self.note(
                    origin,
                    NoteKind::Became,
                    format!("{whose} trust bundle file {chain} -> Envoy's trusted_ca {file} through SDS file {}.{secret}.sds.yaml, again whenever {} changes (a CA added or removed is honoured without a restart)", self.stem, parent_dir(&file)),
                );
                file
            }
            Trust::Sds { secret: sds_secret } => {
                self.note(origin, NoteKind::NeedsOperator, format!(
                    "{whose} trust bundle from SDS secret `{sds_secret}` -> Envoy asks the SPIRE agent for `{sds_secret}` over the unix socket ${{SPIRE_AGENT_SOCKET}} (cluster sds-grpc): mount the agent's socket and set it ({SPIRE_SOCKET} under App Mesh)"));
                String::new()
            }
            Trust::Acm { authority_arns } => {
                self.variable(
                    "CERT_DIR",
                    "holds upstream-ca.pem: the ACM Private CA certificates, exported",
                );
                self.note(origin, NoteKind::NeedsOperator, format!(
                    "{whose} trust from ACM Private CA {}: export each CA certificate (`aws acm-pca get-certificate-authority-certificate`) into ${{CERT_DIR}}/upstream-ca.pem",
                    authority_arns.join(", ")));
                "${CERT_DIR}/upstream-ca.pem".into()
            }
        };
        let sds = match trust {
            Trust::Sds { secret: sds_secret } => self.sds(sds_secret),
            Trust::File { .. } | Trust::Acm { .. } => {
                let watched = parent_dir(&bundle);
                self.file_secret(
                    &secret,
                    "validation_context",
                    map([("trusted_ca", map([("filename", s(bundle))]))]),
                    &watched,
                )
            }
        };
        if sans.is_empty() {
            return ("validation_context_sds_secret_config".into(), sds);
        }
        let san_matchers: Vec<Y> = sans
            .iter()
            .map(|san| {
                map([
                    ("san_type", s(san_type(san))),
                    ("matcher", map([("exact", s(san.clone()))])),
                ])
            })
            .collect();
        (
            "combined_validation_context".into(),
            map([
                (
                    "default_validation_context",
                    map([("match_typed_subject_alt_names", Y::List(san_matchers))]),
                ),
                ("validation_context_sds_secret_config", sds),
            ]),
        )
    }

    /// The listener's TLS: the policy route settings (require_client_cert, allow) and the
    /// filter chains' transport socket.
    fn downstream_tls(&mut self, listener: &Listener, name: &str) -> (Option<Y>, TlsMode, Value) {
        let origin = &listener.origin;
        let Some(tls) = &listener.tls else {
            self.note(origin, NoteKind::Became, format!("no tls -> listener `{name}` is plaintext; certgate admits every request (require_client_cert: false), as App Mesh did"));
            return (
                None,
                TlsMode::Disabled,
                json!({"require_client_cert": false}),
            );
        };
        let mode = tls.mode;
        if mode == TlsMode::Disabled {
            self.note(origin, NoteKind::Became, format!("tls.mode DISABLED -> listener `{name}` is plaintext; certgate admits every request (require_client_cert: false), as App Mesh did"));
            return (None, mode, json!({"require_client_cert": false}));
        }
        let mut common = Y::Map(vec![(
            "tls_params".into(),
            map([("tls_minimum_protocol_version", s("TLSv1_2"))]),
        )]);
        if matches!(listener.protocol.as_str(), "http2" | "grpc") {
            common = common.with("alpn_protocols", Y::List(vec![s("h2"), s("http/1.1")]));
        }
        if let Some(certificate) = &tls.certificate {
            let value = self.certificate(certificate, origin, "listener", name);
            common = common.with("tls_certificate_sds_secret_configs", Y::List(vec![value]));
        }
        let mut rule = json!({});
        let mut context = Y::Map(Vec::new());
        match &tls.trust {
            Some(trust) => {
                // SANs are certgate's to check (403 with a reason), not the handshake's.
                let (key, value) = self.trust(trust, origin, "client", name, &[]);
                common = common.with(&key, value);
                context = context.with("require_client_certificate", Y::Bool(true));
                if tls.sans.is_empty() {
                    self.note(origin, NoteKind::Became, "validation without subjectAlternativeNames -> every client whose certificate chains to the trust bundle passes (certgate: validated_cert)");
                } else {
                    let allow: Vec<Value> = tls.sans.iter().map(|san| san_matcher(san)).collect();
                    self.note(origin, NoteKind::Became, format!(
                        "validation.subjectAlternativeNames.match.exact {:?} -> certgate allowlist {} on every route of `{name}` (others get 403 not_in_allowlist); narrow it per route in the policy",
                        tls.sans, Value::Array(allow.clone())));
                    if tls.sans.iter().any(|san| san.starts_with("*.")) {
                        self.note(origin, NoteKind::NeedsOperator, "an exact SAN starting with `*.`: App Mesh compared it as a literal string, certgate reads it as a one-label wildcard (it admits a.example.com for *.example.com): write the names you mean");
                    }
                    rule["allow"] = Value::Array(allow);
                }
            }
            None => {
                self.note(origin, NoteKind::Became, format!("tls without validation -> listener `{name}` serves TLS without asking for client certificates; certgate admits every request (require_client_cert: false), as App Mesh did"));
                rule["require_client_cert"] = json!(false);
            }
        }
        if mode == TlsMode::Permissive {
            rule["require_client_cert"] = json!(false);
            self.note(origin, NoteKind::Became, format!(
                "tls.mode PERMISSIVE -> listener `{name}` takes TLS and plaintext on the same port (tls_inspector, two filter chains); plaintext requests pass without a certificate (require_client_cert: false), as in App Mesh"));
        } else {
            self.note(
                origin,
                NoteKind::Became,
                format!("tls.mode STRICT -> listener `{name}` takes TLS only"),
            );
        }
        let context = context.with("common_tls_context", common);
        let socket = map([
            ("name", s("envoy.transport_sockets.tls")),
            (
                "typed_config",
                Y::Map(vec![("\"@type\"".into(), s("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"))])
                    .merge(context),
            ),
        ]);
        (Some(socket), mode, rule)
    }

    /// An upstream cluster to a virtual service, with App Mesh's client policy TLS.
    fn backend_cluster(
        &mut self,
        cluster: &str,
        service: &str,
        port: Option<u16>,
        tls: Option<&ClientTls>,
        origin: &Origin,
        http2: bool,
    ) -> Y {
        let tls = tls.filter(|tls| {
            if !tls.enforce {
                self.notes.push(Note {
                    origin: origin.clone(),
                    kind: NoteKind::Became,
                    text: format!("clientPolicy.tls.enforce false -> plaintext to `{service}`"),
                });
            }
            tls.enforce
        });
        let resolved = self.mesh.resolve(service);
        let port = match &resolved {
            Ok(Some(Resolved { endpoints, .. })) => endpoints.first().map(|e| e.port),
            _ => None,
        }
        .or(port)
        .or_else(|| tls.and_then(|tls| tls.ports.first().copied()))
        .unwrap_or(if tls.is_some() { 443 } else { 80 });
        // App Mesh enforces the client policy only on the ports it lists (all when none).
        let tls = tls.filter(|tls| {
            let on_port = tls.ports.is_empty() || tls.ports.contains(&port);
            if !on_port {
                self.notes.push(Note {
                    origin: origin.clone(),
                    kind: NoteKind::Became,
                    text: format!(
                        "clientPolicy.tls.ports {:?} do not include {port} -> plaintext to `{service}`, as in App Mesh",
                        tls.ports
                    ),
                });
            }
            on_port
        });
        let dialled = format!("cluster `{cluster}` dialling {service}:{port} (DNS)");
        let endpoints = match &resolved {
            Ok(Some(resolved)) => {
                self.note(
                    origin,
                    NoteKind::Became,
                    format!(
                        "backend `{service}` -> cluster `{cluster}`: {}",
                        resolved.via
                    ),
                );
                resolved
                    .endpoints
                    .iter()
                    .map(|endpoint| {
                        let at = lb_endpoint(&endpoint.host, endpoint.port);
                        if resolved.endpoints.len() > 1 {
                            at.with("load_balancing_weight", Y::Int(i64::from(endpoint.weight)))
                        } else {
                            at
                        }
                    })
                    .collect()
            }
            Ok(None) => {
                self.note(origin, NoteKind::NeedsOperator, format!(
                    "backend `{service}` -> {dialled}. App Mesh found the service through its virtual service and provider, which are not among the inputs (pass them to have the importer follow them); check the name resolves and the port is the service's"));
                vec![lb_endpoint(service, port)]
            }
            Err(Unresolved(why)) => {
                self.note(origin, NoteKind::NeedsOperator, format!(
                    "backend `{service}`: {why} -> {dialled}; check the name resolves and the port is the service's"));
                vec![lb_endpoint(service, port)]
            }
        };
        let server_name = match &resolved {
            Ok(Some(Resolved {
                dns_name: Some(dns_name),
                ..
            })) => dns_name.as_str(),
            _ => service,
        };
        let mut cluster_value = map([
            ("name", s(cluster)),
            ("type", s("STRICT_DNS")),
            ("dns_lookup_family", s("V4_ONLY")),
            ("connect_timeout", s("2s")),
            ("load_assignment", load_assignment(cluster, endpoints)),
        ]);
        if http2 {
            cluster_value = cluster_value.with("typed_extension_protocol_options", http2_options());
        }
        if let Some(tls) = tls {
            let mut common = Y::Map(Vec::new());
            if let Some(certificate) = &tls.certificate {
                let value = self.certificate(
                    certificate,
                    origin,
                    &format!("client (to `{service}`)"),
                    cluster,
                );
                common = common.with("tls_certificate_sds_secret_configs", Y::List(vec![value]));
            }
            if let Some(trust) = &tls.trust {
                let (key, value) = self.trust(
                    trust,
                    origin,
                    &format!("backend `{service}`"),
                    cluster,
                    &tls.sans,
                );
                common = common.with(&key, value);
            }
            if !tls.sans.is_empty() {
                self.note(origin, NoteKind::Became, format!("backend `{service}` SANs {:?} -> Envoy checks the backend's certificate (match_typed_subject_alt_names)", tls.sans));
            }
            if !tls.ports.is_empty() {
                self.note(
                    origin,
                    NoteKind::Became,
                    format!(
                        "clientPolicy.tls.ports {:?} -> TLS on this cluster, which dials {port}",
                        tls.ports
                    ),
                );
            }
            cluster_value = cluster_value.with(
                "transport_socket",
                map([
                    ("name", s("envoy.transport_sockets.tls")),
                    (
                        "typed_config",
                        map([
                            ("\"@type\"", s("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext")),
                            ("sni", s(server_name)),
                            ("common_tls_context", common),
                        ]),
                    ),
                ]),
            );
        }
        cluster_value
    }

    /// The HTTP connection manager of the ingress listener, with certgate and the routes.
    fn connection_manager(&self, routes: &[RoutePlan]) -> Y {
        let envoy_routes: Vec<Y> = routes
            .iter()
            .map(|route| {
                map([
                    ("name", s(route.name.clone())),
                    ("match", route.envoy_match.clone()),
                    ("route", route.action.clone()),
                ])
            })
            .collect();
        map([
            ("name", s("envoy.filters.network.http_connection_manager")),
            (
                "typed_config",
                map([
                    ("\"@type\"", s("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager")),
                    ("stat_prefix", s("ingress")),
                    ("codec_type", s("AUTO")),
                    ("use_remote_address", Y::Bool(true)),
                    ("xff_num_trusted_hops", Y::Int(0)),
                    ("forward_client_cert_details", s("SANITIZE")),
                    ("normalize_path", Y::Bool(true)),
                    ("merge_slashes", Y::Bool(true)),
                    ("path_with_escaped_slashes_action", s("UNESCAPE_AND_REDIRECT")),
                    ("common_http_protocol_options", map([("headers_with_underscores_action", s("DROP_HEADER"))])),
                    ("access_log", Y::Raw(shipped_access_log())),
                    (
                        "route_config",
                        map([
                            ("name", s("ingress")),
                            ("virtual_hosts", Y::List(vec![map([("name", s("ingress")), ("domains", Y::List(vec![s("*")])), ("routes", Y::List(envoy_routes))])])),
                        ]),
                    ),
                    (
                        "http_filters",
                        Y::List(vec![
                            map([
                                ("name", s("envoy.filters.http.wasm")),
                                (
                                    "typed_config",
                                    map([
                                        ("\"@type\"", s("type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm")),
                                        (
                                            "config",
                                            map([
                                                ("name", s("certgate")),
                                                ("root_id", s("certgate")),
                                                ("failure_policy", s("FAIL_CLOSED")),
                                                (
                                                    "vm_config",
                                                    map([
                                                        ("vm_id", s("certgate")),
                                                        ("runtime", s("envoy.wasm.runtime.v8")),
                                                        ("code", map([("local", map([("filename", Y::Var("CERTGATE_WASM"))]))])),
                                                    ]),
                                                ),
                                                (
                                                    "configuration",
                                                    map([("\"@type\"", s("type.googleapis.com/google.protobuf.StringValue")), ("value", Y::Block("PLUGIN_CONFIG"))]),
                                                ),
                                            ]),
                                        ),
                                    ]),
                                ),
                            ]),
                            map([
                                ("name", s("envoy.filters.http.router")),
                                ("typed_config", map([("\"@type\"", s("type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"))])),
                            ]),
                        ]),
                    ),
                ]),
            ),
        ])
    }

    /// The ingress listener `name` in the mode App Mesh's listener had.
    fn listener(
        &self,
        name: &str,
        port: Y,
        socket: Option<Y>,
        mode: TlsMode,
        routes: &[RoutePlan],
    ) -> Y {
        let hcm = self.connection_manager(routes);
        let address = map([(
            "socket_address",
            map([
                ("address", Y::Var("LISTENER_ADDRESS")),
                ("port_value", port),
            ]),
        )]);
        let inspector = Y::List(vec![map([
            ("name", s("envoy.filters.listener.tls_inspector")),
            ("typed_config", map([("\"@type\"", s("type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"))])),
        ])]);
        let listener = map([("name", s(name)), ("address", address)]);
        match (socket, mode) {
            (Some(socket), TlsMode::Permissive) => {
                listener.with("listener_filters", inspector).with(
                    "filter_chains",
                    Y::List(vec![
                        map([
                            (
                                "filter_chain_match",
                                map([("transport_protocol", s("tls"))]),
                            ),
                            ("transport_socket", socket),
                            ("filters", Y::List(vec![hcm.clone()])),
                        ]),
                        map([
                            (
                                "filter_chain_match",
                                map([("transport_protocol", s("raw_buffer"))]),
                            ),
                            ("filters", Y::List(vec![hcm])),
                        ]),
                    ]),
                )
            }
            (Some(socket), _) => listener.with("listener_filters", inspector).with(
                "filter_chains",
                Y::List(vec![map([
                    ("transport_socket", socket),
                    ("filters", Y::List(vec![hcm])),
                ])]),
            ),
            (None, _) => listener.with(
                "filter_chains",
                Y::List(vec![map([("filters", Y::List(vec![hcm]))])]),
            ),
        }
    }

    fn finish(
        mut self,
        name: &str,
        title: &str,
        listeners: Vec<Y>,
        policy_routes: Vec<Value>,
    ) -> Outputs {
        if self.uses_sds {
            self.clusters.push(map([
                ("name", s("sds-grpc")),
                ("type", s("STATIC")),
                ("connect_timeout", s("1s")),
                ("typed_extension_protocol_options", http2_options()),
                (
                    "load_assignment",
                    load_assignment(
                        "sds-grpc",
                        vec![endpoint_at(map([(
                            "pipe",
                            map([("path", s("${SPIRE_AGENT_SOCKET}"))]),
                        )]))],
                    ),
                ),
            ]));
        }
        let mut header = format!("# {title}\n#\n# Written by `certgate import appmesh`: the App Mesh settings and what each became are in the\n# importer's report. Template variables (render with `envsubst`, see docs/deploying.md):\n");
        let width = self
            .variables
            .iter()
            .map(|(name, _)| name.len())
            .max()
            .unwrap_or(0)
            + 3;
        for (name, meaning) in &self.variables {
            header.push_str(&format!(
                "#   {:<width$}{meaning}\n",
                format!("${{{name}}}")
            ));
        }
        header.push('\n');
        // SDS needs the node's identity; it also names this Envoy in the SPIRE agent's logs.
        let body = map([
            ("node", map([("id", s(name)), ("cluster", s(name))])),
            (
                "admin",
                map([(
                    "address",
                    map([(
                        "socket_address",
                        map([
                            ("address", s("127.0.0.1")),
                            ("port_value", Y::Var("ADMIN_PORT")),
                        ]),
                    )]),
                )]),
            ),
            ("stats_flush_interval", s("1s")),
            (
                "stats_config",
                Y::Raw(shipped_block("stats_config:", "static_resources:")),
            ),
            (
                "static_resources",
                map([
                    ("listeners", Y::List(listeners)),
                    ("clusters", Y::List(self.clusters)),
                ]),
            ),
        ]);
        let policy = json!({
            "routes": policy_routes,
            "deny_response": {"status": 403, "expose_reason": true},
        });
        Outputs {
            policy,
            envoy_yaml: header + &to_yaml(&body),
            secret_files: self.secret_files,
            notes: self.notes,
        }
    }
}

impl Y {
    /// The entries of `other` appended to this mapping.
    fn merge(mut self, other: Y) -> Y {
        if let (Y::Map(entries), Y::Map(more)) = (&mut self, other) {
            entries.extend(more);
        }
        self
    }
}

fn http2_options() -> Y {
    map([(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        map([
            (
                "\"@type\"",
                s("type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"),
            ),
            (
                "explicit_http_config",
                map([("http2_protocol_options", Y::Map(Vec::new()))]),
            ),
        ]),
    )])
}

/// The lines of the shipped sidecar config after the line starting with `first` up to the next
/// line starting with `until` (both trimmed), dedented: one source for the metric tags and the
/// access-log format.
fn shipped_block(first: &str, until: &str) -> String {
    let lines: Vec<&str> = SHIPPED_SIDECAR.lines().collect();
    let start = lines
        .iter()
        .position(|line| line.trim_start().starts_with(first))
        .map_or(lines.len(), |at| at + 1);
    let end = lines[start..]
        .iter()
        .position(|line| line.trim_start().starts_with(until))
        .map_or(lines.len(), |offset| start + offset);
    let block: Vec<&str> = lines[start..end]
        .iter()
        .copied()
        .filter(|line| !line.trim().is_empty())
        .collect();
    let indent = block
        .iter()
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
    block
        .iter()
        .map(|line| format!("{}\n", &line[indent.min(line.len())..]))
        .collect()
}

fn shipped_access_log() -> String {
    shipped_block("access_log:", "route_config:")
}

/// A virtual node: an ingress listener per App Mesh listener in front of the local app, and
/// (when it has backends) an egress listener whose clusters carry the client policy.
pub fn virtual_node<'a>(
    name: &str,
    node: &VirtualNode,
    files_root: Option<&'a Path>,
    mesh: &'a Mesh<'a>,
) -> Outputs {
    let mut converter = Converter::new(name, files_root, mesh);
    converter.variable(
        "UPSTREAM_PORT",
        "port of the local app on 127.0.0.1 (App Mesh sent to the app on the listener's port)",
    );
    let mut listeners = Vec::new();
    let mut policy_routes = Vec::new();
    let http_listeners: Vec<&Listener> = node
        .listeners
        .iter()
        .filter(|listener| {
            let tcp = listener.protocol == "tcp";
            if tcp {
                converter.note(&listener.origin, NoteKind::NotImported, "a tcp listener: certgate is an HTTP filter; put a tcp_proxy listener in front of the app by hand");
            }
            !tcp
        })
        .collect();
    let mut local_http2 = false;
    for (index, listener) in http_listeners.iter().enumerate() {
        let (listener_name, route, port) = if index == 0 {
            (
                "ingress".to_string(),
                "app".to_string(),
                Y::Var("LISTENER_PORT"),
            )
        } else {
            let port = listener.port.unwrap_or(0);
            (
                format!("ingress-{port}"),
                format!("app-{port}"),
                Y::Int(i64::from(port)),
            )
        };
        if let Some(app_port) = listener.port {
            let text = if index == 0 {
                format!("portMapping {app_port}/{} -> listener `{listener_name}` on ${{LISTENER_PORT}} (set {app_port} to keep clients unchanged), forwarding to the app on 127.0.0.1:${{UPSTREAM_PORT}} (App Mesh: {app_port})", listener.protocol)
            } else {
                format!("portMapping {app_port}/{} -> listener `{listener_name}` on {app_port}, forwarding to the app on 127.0.0.1:${{UPSTREAM_PORT}}", listener.protocol)
            };
            converter.note(&listener.origin, NoteKind::Became, text);
        }
        local_http2 |= matches!(listener.protocol.as_str(), "http2" | "grpc");
        let (socket, mode, mut rule) = converter.downstream_tls(listener, &listener_name);
        rule["name"] = json!(route);
        rule["match"] = json!({"route_name": route});
        policy_routes.push(rule);
        let plan = RoutePlan {
            name: route.clone(),
            envoy_match: map([("prefix", s("/"))]),
            action: map([("cluster", s("local_app"))]),
        };
        listeners.push(converter.listener(
            &listener_name,
            port,
            socket,
            mode,
            std::slice::from_ref(&plan),
        ));
    }
    let mut local = map([
        ("name", s("local_app")),
        ("type", s("STATIC")),
        ("connect_timeout", s("2s")),
        (
            "load_assignment",
            load_assignment(
                "local_app",
                vec![endpoint_at(map([(
                    "socket_address",
                    map([
                        ("address", s("127.0.0.1")),
                        ("port_value", Y::Var("UPSTREAM_PORT")),
                    ]),
                )]))],
            ),
        ),
    ]);
    if local_http2 {
        local = local.with("typed_extension_protocol_options", http2_options());
    }
    converter.clusters.push(local);
    if !node.backends.is_empty() {
        converter.variable("EGRESS_PORT", "the egress listener's port on 127.0.0.1: the app calls its backends through it (http://SERVICE/ with Host SERVICE)");
        let mut hosts = Vec::new();
        for backend in &node.backends {
            let cluster = format!("backend-{}", route_name(&backend.service));
            let tls = backend.tls.as_ref().or(node.backend_defaults.as_ref());
            let value = converter.backend_cluster(
                &cluster,
                &backend.service,
                None,
                tls,
                &backend.origin,
                false,
            );
            converter.clusters.push(value);
            // The app calls the service by its DNS name: the resource's name, or its awsName.
            let mut names = vec![backend.service.clone()];
            if let Ok(Some(Resolved {
                dns_name: Some(dns_name),
                ..
            })) = converter.mesh.resolve(&backend.service)
            {
                names.push(dns_name);
            }
            let domains = names
                .iter()
                .flat_map(|name| [s(name.clone()), s(format!("{name}:*"))])
                .collect();
            hosts.push(map([
                ("name", s(cluster.clone())),
                ("domains", Y::List(domains)),
                (
                    "routes",
                    Y::List(vec![map([
                        ("match", map([("prefix", s("/"))])),
                        ("route", map([("cluster", s(cluster))])),
                    ])]),
                ),
            ]));
        }
        converter.note(&node.backends[0].origin, NoteKind::NeedsOperator, "backends -> an egress listener on 127.0.0.1:${EGRESS_PORT}: App Mesh captured the app's outbound traffic with iptables; point the app's calls at this listener (HTTP proxy or the service's URL on this port)");
        listeners.push(map([
            ("name", s("egress")),
            ("address", map([("socket_address", map([("address", s("127.0.0.1")), ("port_value", Y::Var("EGRESS_PORT"))]))])),
            (
                "filter_chains",
                Y::List(vec![map([(
                    "filters",
                    Y::List(vec![map([
                        ("name", s("envoy.filters.network.http_connection_manager")),
                        (
                            "typed_config",
                            map([
                                ("\"@type\"", s("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager")),
                                ("stat_prefix", s("egress")),
                                ("route_config", map([("name", s("egress")), ("virtual_hosts", Y::List(hosts))])),
                                ("http_filters", Y::List(vec![map([("name", s("envoy.filters.http.router")), ("typed_config", map([("\"@type\"", s("type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"))]))])])),
                            ]),
                        ),
                    ])]),
                )])]),
            ),
        ]));
    } else if node.backend_defaults.is_some() {
        converter.note(
            &Origin {
                file: String::new(),
                line: 0,
                path: "spec.backendDefaults".into(),
            },
            NoteKind::NotImported,
            "backendDefaults without backends: no backend to apply them to",
        );
    }
    converter.finish(
        name,
        &format!("certgate in front of App Mesh virtual node `{name}`."),
        listeners,
        policy_routes,
    )
}

/// A virtual gateway and its gateway routes, in App Mesh's priority order.
pub fn virtual_gateway<'a>(
    name: &str,
    gateway: &VirtualGateway,
    routes: &[(&str, &GatewayRoute, &Origin)],
    files_root: Option<&'a Path>,
    mesh: &'a Mesh<'a>,
) -> Outputs {
    let mut converter = Converter::new(name, files_root, mesh);
    let Some(listener) = gateway.listeners.first() else {
        return converter.finish(
            name,
            &format!("App Mesh virtual gateway `{name}` (no listener)."),
            Vec::new(),
            Vec::new(),
        );
    };
    for extra in &gateway.listeners[1..] {
        converter.note(
            &extra.origin,
            NoteKind::NotImported,
            "a virtual gateway has one listener in App Mesh; only the first is imported",
        );
    }
    if let Some(port) = listener.port {
        converter.note(&listener.origin, NoteKind::Became, format!("portMapping {port}/{} -> listener `ingress` on ${{LISTENER_PORT}} (set {port} to keep clients unchanged)", listener.protocol));
    }
    let (socket, mode, rule) = converter.downstream_tls(listener, "ingress");
    let mut ordered: Vec<&(&str, &GatewayRoute, &Origin)> = routes.iter().collect();
    // App Mesh tries the highest priority (0) first; routes without one after, in input order.
    ordered.sort_by_key(|(_, route, _)| route.priority.unwrap_or(u32::MAX));
    let mut plans = Vec::new();
    let mut policy_routes = Vec::new();
    let mut clusters: Vec<String> = Vec::new();
    for (route_text, route, origin) in ordered {
        let mut envoy_name = route_name(route_text);
        while plans.iter().any(|plan: &RoutePlan| plan.name == envoy_name) {
            envoy_name.push('_');
        }
        if envoy_name != *route_text {
            converter.note(origin, NoteKind::Became, format!("gateway route name `{route_text}` -> route name `{envoy_name}` (Envoy and certgate names are [A-Za-z0-9_-], 64 at most)"));
        }
        let http2 = route.protocol != "httpRoute";
        // One cluster per virtual service and target port: routes to other ports of a service
        // dial those ports.
        let cluster = match route.target_port {
            Some(port) => format!("service-{}-{port}", route_name(&route.service)),
            None => format!("service-{}", route_name(&route.service)),
        };
        if !clusters.contains(&cluster) {
            clusters.push(cluster.clone());
            let value = converter.backend_cluster(
                &cluster,
                &route.service,
                route.target_port,
                gateway.backend_defaults.as_ref(),
                origin,
                http2,
            );
            converter.clusters.push(value);
        }
        let (envoy_match, described) = route_match(route);
        let mut action = map([("cluster", s(cluster.clone()))]);
        let mut rewrites = Vec::new();
        if route.rewrite_host {
            action = action.with("host_rewrite_literal", s(route.service.clone()));
            rewrites.push(format!("Host rewritten to `{}`", route.service));
        }
        if let Some(prefix) = &route.prefix_rewrite {
            action = action.with("prefix_rewrite", s(prefix.clone()));
            rewrites.push(format!("matched prefix rewritten to `{prefix}`"));
        }
        if let Some(path) = &route.path_rewrite {
            action = action.with("prefix_rewrite", s(path.clone()));
            rewrites.push(format!("path rewritten to `{path}`"));
        }
        if let Some(port) = route.matcher.port {
            if Some(port) != listener.port {
                converter.note(origin, NoteKind::NotImported, format!("match.port {port}: not the listener's port; the route never matched in App Mesh either"));
            }
        }
        converter.note(origin, NoteKind::Became, format!(
            "{} {}{} -> Envoy route `{envoy_name}` ({described}) to cluster `{cluster}`{}; certgate route `{envoy_name}` (match route_name) with the listener's allowlist",
            route.protocol,
            route.priority.map_or("without priority".to_string(), |p| format!("priority {p}")),
            route.gateway.as_ref().map_or(String::new(), |g| format!(" on `{g}`")),
            if rewrites.is_empty() { String::new() } else { format!(", {}", rewrites.join(", ")) }
        ));
        let mut certgate_rule = rule.clone();
        certgate_rule["name"] = json!(envoy_name);
        certgate_rule["match"] = json!({"route_name": envoy_name});
        policy_routes.push(certgate_rule);
        plans.push(RoutePlan {
            name: envoy_name,
            envoy_match,
            action,
        });
    }
    if plans.is_empty() {
        converter.note(&listener.origin, NoteKind::NeedsOperator, "no gateway route attached to this gateway among the inputs: Envoy answers 404 to everything; pass the GatewayRoute files too");
    } else {
        converter.note(&listener.origin, NoteKind::Became, "a request no gateway route matches: App Mesh answered 404; certgate answers 403 (no_route, its default_action deny) before Envoy's router would");
    }
    let listeners =
        vec![converter.listener("ingress", Y::Var("LISTENER_PORT"), socket, mode, &plans)];
    converter.finish(
        name,
        &format!("certgate as App Mesh virtual gateway `{name}`."),
        listeners,
        policy_routes,
    )
}

/// Envoy's route match for a gateway route, and its description for the report.
fn route_match(route: &GatewayRoute) -> (Y, String) {
    let m = &route.matcher;
    let mut out = Y::Map(Vec::new());
    let mut described = Vec::new();
    if let Some(service) = &m.grpc_service {
        out = out.with("prefix", s(format!("/{service}/")));
        described.push(format!("gRPC service {service}"));
    } else if let Some(exact) = &m.path_exact {
        out = out.with("path", s(exact.clone()));
        described.push(format!("path {exact}"));
    } else if let Some(regex) = &m.path_regex {
        out = out.with("safe_regex", map([("regex", s(regex.clone()))]));
        described.push(format!("path regex {regex}"));
    } else {
        let prefix = m.prefix.clone().unwrap_or_else(|| "/".into());
        described.push(format!("prefix {prefix}"));
        out = out.with("prefix", s(prefix));
    }
    let mut headers = Vec::new();
    if let Some(host) = &m.hostname_exact {
        headers.push(authority_matching(&format!("^{}", regex_escape(host))));
        described.push(format!("host {host}"));
    }
    if let Some(suffix) = &m.hostname_suffix {
        headers.push(authority_matching(&format!("^.+{}", regex_escape(suffix))));
        described.push(format!("host ending {suffix}"));
    }
    if let Some(method) = &m.method {
        headers.push(map([
            ("name", s(":method")),
            ("string_match", map([("exact", s(method.clone()))])),
        ]));
        described.push(format!("method {method}"));
    }
    for header in &m.headers {
        let mut entry = map([("name", s(header.name.to_ascii_lowercase()))]);
        entry = match &header.matcher {
            StringMatch::Exact(v) => entry.with("string_match", map([("exact", s(v.clone()))])),
            StringMatch::Prefix(v) => entry.with("string_match", map([("prefix", s(v.clone()))])),
            StringMatch::Suffix(v) => entry.with("string_match", map([("suffix", s(v.clone()))])),
            StringMatch::Regex(v) => entry.with(
                "string_match",
                map([("safe_regex", map([("regex", s(v.clone()))]))]),
            ),
            StringMatch::Range { start, end } => entry.with(
                "range_match",
                map([("start", Y::Int(*start)), ("end", Y::Int(*end))]),
            ),
            StringMatch::Present => entry.with("present_match", Y::Bool(true)),
        };
        if header.invert {
            entry = entry.with("invert_match", Y::Bool(true));
        }
        headers.push(entry);
        described.push(format!(
            "header {}{}",
            if header.invert { "not " } else { "" },
            header.name
        ));
    }
    if !headers.is_empty() {
        out = out.with("headers", Y::List(headers));
    }
    if !m.query.is_empty() {
        let params: Vec<Y> = m
            .query
            .iter()
            .map(|(name, exact)| match exact {
                Some(value) => map([
                    ("name", s(name.clone())),
                    ("string_match", map([("exact", s(value.clone()))])),
                ]),
                None => map([("name", s(name.clone())), ("present_match", Y::Bool(true))]),
            })
            .collect();
        out = out.with("query_parameters", Y::List(params));
        described.push(format!(
            "query {}",
            m.query
                .iter()
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if route.protocol == "grpcRoute" {
        out = out.with("grpc", Y::Map(Vec::new()));
    }
    (out, described.join(", "))
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escape = "\\.+*?()|[]{}^$".contains(c);
            (escape.then_some('\\'))
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

/// An Envoy header matcher on `:authority` by `host_pattern` (a regex anchored at the start), any
/// case, with or without a port: App Mesh matches hostnames without regard to either.
fn authority_matching(host_pattern: &str) -> Y {
    map([
        ("name", s(":authority")),
        (
            "string_match",
            map([(
                "safe_regex",
                map([("regex", s(format!("(?i){host_pattern}(:[0-9]+)?$")))]),
            )]),
        ),
    ])
}

/// The directory a file is in, as Envoy watches it (`.` for a bare file name).
fn parent_dir(file: &str) -> String {
    match Path::new(file).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.display().to_string(),
        _ => ".".into(),
    }
}

/// A cluster's `load_assignment` of these `lb_endpoints`.
fn load_assignment(cluster: &str, endpoints: Vec<Y>) -> Y {
    map([
        ("cluster_name", s(cluster)),
        (
            "endpoints",
            Y::List(vec![map([("lb_endpoints", Y::List(endpoints))])]),
        ),
    ])
}

/// One of a cluster's `lb_endpoints` at `address` (a `socket_address` or a `pipe`).
fn endpoint_at(address: Y) -> Y {
    map([("endpoint", map([("address", address)]))])
}

/// One of a cluster's `lb_endpoints` at `host:port`.
fn lb_endpoint(host: &str, port: u16) -> Y {
    endpoint_at(map([(
        "socket_address",
        map([
            ("address", s(host)),
            ("port_value", Y::Int(i64::from(port))),
        ]),
    )]))
}
