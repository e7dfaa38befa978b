//! Plays scenarios through the host harness: the real `certgate.wasm` in a [`Plugin`] whose HCM,
//! listener and route table stand in for the shipped config the group names ([`Profile`]).

use crate::outcome::{project, watched_reply, Materials, Outcome};
use crate::profile::Profile;
use crate::scenario::{Group, Scenario, Status, TlsVersion};
use crate::support;
use anyhow::{bail, Context, Result};
use host_harness::{
    Certificate, Connection, LogLevel, MetricType, MetricsSnapshot, Plugin, PluginSettings,
    Request, Tls,
};
use std::collections::BTreeMap;
use testkit::pki::ENVOY_SERVER_NAME;

/// The listener address the harness connection arrives on (Envoy's is an ephemeral port).
const LOCAL_PORT: u16 = 10000;

pub struct HarnessSide {
    plugin: Plugin,
    profile: Profile,
    /// Envoy's listener certificate (its URI SANs would become XFCC `By=`).
    server_cert: Certificate,
    identity_headers: Vec<String>,
}

impl HarnessSide {
    pub fn start(
        group: &Group,
        plugin_config: &serde_json::Value,
        server_cert_pem: &str,
    ) -> Result<Self> {
        let profile = Profile::of(group.envoy);
        profile.check_against_template()?;
        let settings = PluginSettings::new("certgate")
            .root_id("certgate")
            .vm_id("certgate")
            .http_connection_manager(profile.http_connection_manager());
        let plugin = Plugin::new(
            support::certgate(),
            support::today(settings).configuration_json(plugin_config),
        )
        .context("starting certgate in the harness")?;
        if !plugin.configured().accepted {
            bail!(
                "certgate refused the group's configuration: {:?}",
                plugin.logs_at(LogLevel::Error)
            );
        }
        Ok(HarnessSide {
            plugin,
            profile,
            server_cert: Certificate::from_pem(server_cert_pem)?,
            identity_headers: group.identity_header_names(),
        })
    }

    pub fn play(&mut self, scenario: &Scenario, materials: &Materials) -> Result<Outcome> {
        let Some(connection) = self.connection(scenario, materials)? else {
            return Ok(Outcome {
                status: Status::TlsRejected,
                decision: None,
                upstream: None,
                response: None,
                metrics: BTreeMap::new(),
            });
        };
        let spec = &scenario.request;
        let mut request = Request::new(&spec.method, &spec.path).authority(&spec.authority);
        for (name, value) in &spec.headers {
            request = request.header(name.trim(), &materials.expand(value)?);
        }
        let request = self.profile.route(request, &spec.path);
        let before = self.plugin.metrics();
        let exchange = self.plugin.send(&connection, request)?;
        // certgate counts in the guest and hands the counts over on its tick.
        self.plugin.tick()?;
        let metrics = counter_deltas(&before, &self.plugin.metrics());
        let response = exchange
            .response
            .as_ref()
            .context("the harness gave the client no response")?;
        let record = exchange.filter_state_fields("wasm.certgate");
        let state = |name: &str| record.as_ref().and_then(|record| record.get(name).cloned());
        let decision = state("decision").zip(state("reason"));
        let watched = crate::outcome::watched_upstream(&self.identity_headers, scenario);
        let upstream = exchange.request.upstream().map(|upstream| {
            project(
                upstream.headers.iter(),
                |name| watched.contains(name),
                materials,
                LOCAL_PORT,
            )
        });
        let reply = response.local.then(|| crate::scenario::LocalReply {
            headers: project(
                response.headers.iter(),
                watched_reply,
                materials,
                LOCAL_PORT,
            ),
            body: materials.normalize(&String::from_utf8_lossy(&response.body), LOCAL_PORT),
        });
        Ok(Outcome {
            status: Status::Http(u16::try_from(response.status).unwrap_or(0)),
            decision,
            upstream,
            response: reply,
            metrics,
        })
    }

    /// The connection the client makes, or `None` when the listener would refuse the handshake.
    fn connection(&self, scenario: &Scenario, materials: &Materials) -> Result<Option<Connection>> {
        let mut tls = Tls::new()
            .version(match scenario.connection.tls {
                TlsVersion::Tls12 => host_harness::TlsVersion::Tls12,
                TlsVersion::Tls13 => host_harness::TlsVersion::Tls13,
            })
            .local_certificate(self.server_cert.clone());
        if self.profile.records_sni {
            tls = tls.sni(ENVOY_SERVER_NAME);
        }
        let presented = match (&scenario.connection.cert, &materials.cert) {
            (Some(description), Some(issued)) if self.profile.requests_client_cert => {
                Some((description, issued))
            }
            _ => None,
        };
        let verified = presented.is_some_and(|(description, _)| description.verifies());
        if self.profile.requires_verified_client_cert && !verified {
            return Ok(None);
        }
        if let Some((_, issued)) = presented {
            tls = tls
                .peer_certificate(Certificate::from_pem(&issued.cert_pem)?)
                .validated(verified);
        }
        let connection = Connection::tls(tls)
            .destination(std::net::SocketAddr::from(([127, 0, 0, 1], LOCAL_PORT)));
        Ok(Some(connection))
    }
}

/// How much each of certgate's counters moved.
fn counter_deltas(before: &MetricsSnapshot, after: &MetricsSnapshot) -> BTreeMap<String, i64> {
    after
        .changes_since(before)
        .into_iter()
        .filter(|change| change.kind == MetricType::Counter && change.name.starts_with("certgate_"))
        .filter(|change| change.after != change.before)
        .map(|change| (change.name, change.after - change.before))
        .collect()
}
