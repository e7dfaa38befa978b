//! Plays scenarios through real Envoy: the group's shipped config with its plugin configuration,
//! an echo upstream that reports what it received, a rustls client presenting the scenario's
//! certificate, `/stats` before and after for certgate's counters, and Envoy's access log for
//! certgate's decision.

use crate::outcome::{project, watched_reply, watched_upstream, Materials, Outcome};
use crate::scenario::{EnvoyConfig, Group, LocalReply, Scenario, Status, TlsVersion};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::time::Duration;
use testkit::pki::ENVOY_SERVER_NAME;
use testkit::{envoy, Client, ClientTls, EchoServer, Envoy, Pki, Request, Stats};

/// How long a request, and the wait for its access-log line, may take.
/// The protocol the client speaks to Envoy (chosen by ALPN on the shipped listeners).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long certgate's counters may take to reach `/stats` (the suite's flush interval is 100 ms).
const METRICS_DEADLINE: Duration = Duration::from_secs(5);

pub struct EnvoySide {
    envoy: Envoy,
    echo: EchoServer,
    identity_headers: Vec<String>,
    local_port: u16,
    access_log_lines: usize,
}

impl EnvoySide {
    pub async fn start(
        group: &Group,
        plugin_config: &serde_json::Value,
        pki: &Pki,
    ) -> Result<Self> {
        let echo = match group.envoy {
            EnvoyConfig::Gateway => EchoServer::tls(&pki.backend)?,
            EnvoyConfig::Sidecar | EnvoyConfig::AlbGateway => EchoServer::plain()?,
        };
        let envoy = envoy(group.envoy.template())
            .cert_dir(&pki.dir)
            .upstream_port(echo.port())
            .plugin_config(plugin_config)
            .start()
            .await
            .with_context(|| format!("starting envoy for {}", group.file))?;
        let local_port = envoy.listener("ingress")?.port();
        Ok(EnvoySide {
            envoy,
            echo,
            identity_headers: group.identity_header_names(),
            local_port,
            access_log_lines: 0,
        })
    }

    pub async fn play(
        &mut self,
        scenario: &Scenario,
        materials: &Materials,
        pki: &Pki,
        protocol: Protocol,
    ) -> Result<Outcome> {
        let mut tls = ClientTls::builder(pki.mesh_ca.cert_pem()).sni(ENVOY_SERVER_NAME);
        if let Some(cert) = &materials.cert {
            tls = tls.client_cert(cert);
        }
        if scenario.connection.tls == TlsVersion::Tls12 {
            tls = tls.tls12_only();
        }
        let client = Client::tls(self.envoy.listener("ingress")?, tls.build()?)
            .with_timeout(REQUEST_TIMEOUT);
        let spec = &scenario.request;
        let mut request = Request::new(&spec.method, &spec.path).header("host", &spec.authority);
        for (name, value) in &spec.headers {
            request = request.header(name, &materials.expand(value)?);
        }
        let served_before = self.echo.requests_served();
        let before = self.counters().await?;
        let sent = match protocol {
            Protocol::Http1 => client.send(&request).await,
            Protocol::Http2 => client.send_h2(&request).await,
        };
        let response = match sent {
            Ok(response) => response,
            // The listener refused the handshake: with TLS 1.3 the client learns it on its
            // first read, so the request fails rather than the connect.
            Err(_) if self.echo.requests_served() == served_before => {
                return Ok(Outcome {
                    status: Status::TlsRejected,
                    decision: None,
                    upstream: None,
                    response: None,
                    metrics: self.deltas_since(&before).await?,
                })
            }
            Err(error) => return Err(error),
        };
        let reached = self.echo.requests_served() > served_before;
        let watched = watched_upstream(&self.identity_headers, scenario);
        let upstream = if reached {
            let echoed = response.echoed()?;
            let path = (":path", echoed.path.as_str());
            Some(project(
                std::iter::once(path)
                    .chain(echoed.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))),
                |name| watched.contains(name),
                materials,
                self.local_port,
            ))
        } else {
            None
        };
        let reply = (!reached).then(|| LocalReply {
            headers: project(
                response
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str())),
                watched_reply,
                materials,
                self.local_port,
            ),
            body: materials.normalize(&response.body_text(), self.local_port),
        });
        let decision = self.next_decision().await?;
        let metrics = if decision.is_some() {
            self.counted_since(&before).await?
        } else {
            // certgate never saw the request (Envoy's codec answered): nothing to wait for.
            self.deltas_since(&before).await?
        };
        Ok(Outcome {
            status: Status::Http(response.status),
            decision,
            upstream,
            response: reply,
            metrics,
        })
    }

    /// certgate's counters on `/stats` (Envoy names them `wasmcustom.<name>`).
    async fn counters(&self) -> Result<BTreeMap<String, i64>> {
        let page = self.envoy.admin_get("/stats?filter=certgate_").await?;
        Ok(Stats::parse(&page)
            .lines
            .iter()
            .filter_map(|(name, value)| {
                let name = name.strip_prefix("wasmcustom.")?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect())
    }

    /// The counter deltas once certgate's tick has handed over the request's counts. It flushes
    /// `certgate_requests_total` after every other series, so once a page shows that moved, the
    /// flush is over; the next page (one the flush cannot overlap) shows every series, including
    /// those the flush defined while the earlier page was being gathered.
    async fn counted_since(&self, before: &BTreeMap<String, i64>) -> Result<BTreeMap<String, i64>> {
        let deadline = tokio::time::Instant::now() + METRICS_DEADLINE;
        loop {
            let deltas = self.deltas_since(before).await?;
            if deltas
                .keys()
                .any(|name| name.starts_with("certgate_requests_total."))
            {
                return self.deltas_since(before).await;
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("certgate's counters did not move within {METRICS_DEADLINE:?}: {deltas:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn deltas_since(&self, before: &BTreeMap<String, i64>) -> Result<BTreeMap<String, i64>> {
        let after = self.counters().await?;
        Ok(after
            .into_iter()
            .filter_map(|(name, value)| {
                let delta = value - before.get(&name).copied().unwrap_or(0);
                (delta != 0).then_some((name, delta))
            })
            .collect())
    }

    /// certgate's decision from the access-log line of the request just answered.
    async fn next_decision(&mut self) -> Result<Option<(String, String)>> {
        self.access_log_lines += 1;
        let entries = self
            .envoy
            .access_log_entries(self.access_log_lines, REQUEST_TIMEOUT)
            .await?;
        let entry = entries
            .get(self.access_log_lines - 1)
            .context("the access log lost a line")?;
        let field = |name: &str| {
            entry[name]
                .as_str()
                .filter(|value| !value.is_empty() && *value != "-")
                .map(str::to_owned)
        };
        Ok(field("certgate_decision").zip(field("certgate_reason")))
    }
}
