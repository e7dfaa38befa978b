//! What the harness must be told to stand in for one shipped Envoy config: the listener's TLS
//! settings (is a client certificate required, does the TLS inspector record SNI), the
//! HttpConnectionManager settings, and the route table that names `xds.route_name`. Each value is
//! the one written in `envoy/<config>.yaml`; [`Profile::check_against_template`] keeps them from
//! drifting apart.

use crate::scenario::EnvoyConfig;
use anyhow::{ensure, Result};
use host_harness::{ClientCertDetails, ForwardClientCert, HttpConnectionManager, Request};

/// How an Envoy route matches the path.
#[derive(Clone, Copy, Debug)]
enum PathMatch {
    /// `path_separated_prefix`: the prefix itself, or the prefix followed by `/`.
    SeparatedPrefix(&'static str),
    /// `prefix`.
    Prefix(&'static str),
}

#[derive(Clone, Copy, Debug)]
struct RouteEntry {
    name: &'static str,
    path: PathMatch,
    cluster: &'static str,
}

pub struct Profile {
    pub config: EnvoyConfig,
    /// `require_client_certificate: true` (no `ACCEPT_UNTRUSTED`): the handshake refuses a client
    /// without a certificate that verifies.
    pub requires_verified_client_cert: bool,
    /// Whether the listener asks for a client certificate at all (the ALB config does not).
    pub requests_client_cert: bool,
    /// The `tls_inspector` listener filter: SNI is recorded.
    pub records_sni: bool,
    /// `forward_client_cert_details` as the YAML writes it.
    forward_client_cert: (&'static str, ForwardClientCert),
    virtual_host: &'static str,
    routes: &'static [RouteEntry],
}

const SIDECAR_ROUTES: &[RouteEntry] = &[
    RouteEntry {
        name: "admin",
        path: PathMatch::SeparatedPrefix("/admin"),
        cluster: "local_app",
    },
    RouteEntry {
        name: "app",
        path: PathMatch::Prefix("/"),
        cluster: "local_app",
    },
];

const GATEWAY_ROUTES: &[RouteEntry] = &[
    RouteEntry {
        name: "admin",
        path: PathMatch::SeparatedPrefix("/admin"),
        cluster: "admin_backend",
    },
    RouteEntry {
        name: "orders",
        path: PathMatch::SeparatedPrefix("/orders"),
        cluster: "orders_backend",
    },
    RouteEntry {
        name: "public",
        path: PathMatch::Prefix("/"),
        cluster: "orders_backend",
    },
];

const ALB_ROUTES: &[RouteEntry] = &[
    RouteEntry {
        name: "api",
        path: PathMatch::SeparatedPrefix("/api"),
        cluster: "app",
    },
    RouteEntry {
        name: "public",
        path: PathMatch::Prefix("/"),
        cluster: "app",
    },
];

impl Profile {
    pub fn of(config: EnvoyConfig) -> Profile {
        match config {
            EnvoyConfig::Sidecar => Profile {
                config,
                requires_verified_client_cert: true,
                requests_client_cert: true,
                records_sni: true,
                forward_client_cert: ("FORWARD_ONLY", ForwardClientCert::ForwardOnly),
                virtual_host: "app",
                routes: SIDECAR_ROUTES,
            },
            EnvoyConfig::Gateway => Profile {
                config,
                requires_verified_client_cert: false,
                requests_client_cert: true,
                records_sni: true,
                forward_client_cert: ("SANITIZE", ForwardClientCert::Sanitize),
                virtual_host: "gateway",
                routes: GATEWAY_ROUTES,
            },
            EnvoyConfig::AlbGateway => Profile {
                config,
                requires_verified_client_cert: false,
                requests_client_cert: false,
                records_sni: false,
                forward_client_cert: ("SANITIZE", ForwardClientCert::Sanitize),
                virtual_host: "app",
                routes: ALB_ROUTES,
            },
        }
    }

    /// The HCM settings every shipped config has (see the comments in `envoy/*.yaml`).
    pub fn http_connection_manager(&self) -> HttpConnectionManager {
        HttpConnectionManager::default()
            .use_remote_address(true)
            .xff_num_trusted_hops(0)
            .skip_xff_append(true)
            .forward_client_cert(self.forward_client_cert.1, ClientCertDetails::default())
            .drop_headers_with_underscores(true)
            .normalize_path(true)
            .merge_slashes(true)
    }

    /// Names the route Envoy's route table picks for `path` (`xds.*` properties).
    pub fn route(&self, request: Request, path: &str) -> Request {
        let path = self.http_connection_manager().request_path(path);
        let path = path.split('?').next().unwrap_or_default();
        let matched = self.routes.iter().find(|route| match route.path {
            PathMatch::SeparatedPrefix(prefix) => {
                path == prefix
                    || path
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.starts_with('/'))
            }
            PathMatch::Prefix(prefix) => path.starts_with(prefix),
        });
        match matched {
            Some(route) => request
                .route_name(route.name)
                .cluster_name(route.cluster)
                .virtual_host_name(self.virtual_host),
            None => request,
        }
    }

    /// Fails when the YAML no longer says what this profile assumes.
    pub fn check_against_template(&self) -> Result<()> {
        let yaml = testkit::envoy::config_template(self.config.template())?;
        let has = |text: &str| yaml.contains(text);
        let template = self.config.template();
        for setting in [
            "use_remote_address: true",
            "xff_num_trusted_hops: 0",
            "skip_xff_append: true",
            "normalize_path: true",
            "merge_slashes: true",
            "headers_with_underscores_action: DROP_HEADER",
        ] {
            ensure!(has(setting), "{template} no longer has `{setting}`");
        }
        let fcc = format!(
            "forward_client_cert_details: {}",
            self.forward_client_cert.0
        );
        ensure!(has(&fcc), "{template} no longer has `{fcc}`");
        ensure!(
            has("envoy.filters.listener.tls_inspector") == self.records_sni,
            "{template}: tls_inspector presence changed"
        );
        ensure!(
            has("require_client_certificate: true") == self.requires_verified_client_cert,
            "{template}: require_client_certificate changed"
        );
        ensure!(
            has("${SDS_DIR}/ca-trust.sds.yaml") == self.requests_client_cert,
            "{template}: whether client certificates are asked for changed"
        );
        ensure!(
            has("trust_chain_verification: ACCEPT_UNTRUSTED")
                == (self.requests_client_cert && !self.requires_verified_client_cert),
            "{template}: ACCEPT_UNTRUSTED changed"
        );
        for route in self.routes {
            ensure!(
                has(&format!("- name: {}", route.name)),
                "{template} has no route {:?}",
                route.name
            );
            let matcher = match route.path {
                PathMatch::SeparatedPrefix(prefix) => format!("path_separated_prefix: {prefix} }}"),
                PathMatch::Prefix(prefix) => format!("prefix: {prefix} }}"),
            };
            ensure!(
                has(&matcher),
                "{template} has no route matching `{matcher}`"
            );
            ensure!(
                has(&format!("cluster: {} }}", route.cluster)),
                "{template} has no cluster {:?}",
                route.cluster
            );
        }
        Ok(())
    }
}
