//! The Grafana dashboard (`deploy/grafana/certgate.json`) and the recording rules
//! (`deploy/prometheus/certgate.rules.yaml`) work on what Envoy really exports: a real Prometheus
//! (Debian's `prometheus`, installed by `cargo xtask test`) scrapes the shipped sidecar and gateway
//! configs' `/stats/prometheus` while requests of every kind the dashboard shows go through them,
//! with the rules loaded. Then every panel query (its variables as Grafana sends them for "All") and
//! every recording rule returns series, each carrying the labels it groups by, the variables list
//! the Envoys and routes, and every series any rule reads exists. A metric or label renamed in
//! certgate, in the configs' `stats_tags` or in the dashboard breaks this test.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testkit::{
    envoy, CertSpec, Client, ClientTls, EchoServer, Envoy, IssuedCert, Pki, Request, Validity,
};

/// How long Prometheus may take to start, and then to see every series the checks need.
const TIMEOUT: Duration = Duration::from_secs(30);

/// What Grafana substitutes for the dashboard's variables: "All" of a multi-value variable is its
/// `allValue`; `$__rate_interval` is at least four scrape intervals, `$__range` the time range.
const GRAFANA_SUBSTITUTIONS: [(&str, &str); 4] = [
    ("$__rate_interval", "1m"),
    ("$__range", "5m"),
    ("$instance", ".*"),
    ("$route", ".*"),
];

const OPS_ADMIN: &str = "spiffe://mesh.local/ns/ops/sa/admin";
const SHOP_ORDERS: &str = "spiffe://mesh.local/ns/shop/sa/orders";

/// A Prometheus server on loopback, scraping `targets` every second and evaluating the shipped
/// rules every second; killed and its data removed on drop.
struct PrometheusServer {
    child: Child,
    address: SocketAddr,
    dir: tempfile::TempDir,
}

impl PrometheusServer {
    fn start(targets: &[SocketAddr]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("certgate-prometheus-")
            .tempdir()
            .unwrap();
        let rules =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/certgate.rules.yaml");
        let targets: Vec<String> = targets.iter().map(|target| format!("'{target}'")).collect();
        let config = format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
             rule_files: ['{}']\n\
             scrape_configs:\n\
             - job_name: envoy\n  \
               metrics_path: /stats/prometheus\n  \
               static_configs: [{{ targets: [{}] }}]\n",
            rules.display(),
            targets.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        // A port free now; Prometheus binds it right away.
        let address = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus (cargo xtask test installs Debian's prometheus package)");
        PrometheusServer {
            child,
            address,
            dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    async fn get(&self, target: &str) -> Result<Value, String> {
        let response = Client::plain(self.address)
            .send(&Request::get(target, "prometheus"))
            .await
            .map_err(|error| format!("GET {target}: {error:#}"))?;
        let body: Value = response
            .json()
            .map_err(|error| format!("GET {target}: {error:#}"))?;
        if body["status"] != "success" {
            return Err(format!("GET {target}: status {}: {body}", response.status));
        }
        Ok(body["data"].clone())
    }

    async fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("prometheus exited with {status}:\n{}", self.log());
            }
            let ready = Client::plain(self.address)
                .with_timeout(Duration::from_secs(2))
                .send(&Request::get("/-/ready", "prometheus"))
                .await;
            if matches!(ready, Ok(response) if response.status == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The result of the instant query `expr`: one object a series (`metric`, `value`).
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self
            .get(&format!("/api/v1/query?query={}", url_encoded(expr)))
            .await?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// Runs `query` and checks its series: some, each with the labels `expr` (the query, or the
    /// rule it records) groups by.
    async fn check(&self, query: &str, expr: &str) -> Result<(), String> {
        let series = self.query(query).await?;
        result_problem(expr, &series).map_or(Ok(()), Err)
    }

    /// The values of `label` on the series `selector` selects.
    async fn label_values(&self, label: &str, selector: &str) -> Result<BTreeSet<String>, String> {
        let data = self
            .get(&format!(
                "/api/v1/label/{label}/values?match[]={}",
                url_encoded(selector)
            ))
            .await?;
        Ok(data
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|value| value.as_str().map(str::to_owned))
            .collect())
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            eprintln!("---- prometheus log tail ----");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn url_encoded(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// Every label a query groups by (`by (a, b)`): each series it returns must carry them all.
fn grouping_labels(expr: &str) -> BTreeSet<String> {
    expr.match_indices("by (")
        .filter_map(|(start, _)| {
            let rest = &expr[start + "by (".len()..];
            rest.find(')').map(|end| &rest[..end])
        })
        .flat_map(|labels| labels.split(','))
        .map(|label| label.trim().to_owned())
        .filter(|label| !label.is_empty())
        .collect()
}

/// What is wrong with the result of `expr`: no series, or a series without a label it groups by.
fn result_problem(expr: &str, series: &[Value]) -> Option<String> {
    if series.is_empty() {
        return Some("no series".to_owned());
    }
    for label in grouping_labels(expr) {
        if let Some(bare) = series.iter().find(|one| {
            one["metric"][&label]
                .as_str()
                .unwrap_or_default()
                .is_empty()
        }) {
            return Some(format!(
                "a series without label {label}: {}",
                bare["metric"]
            ));
        }
    }
    None
}

/// Every panel query of the dashboard: (panel title, expr with Grafana's substitutions).
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    let mut panels: Vec<&Value> = dashboard["panels"].as_array().unwrap().iter().collect();
    while let Some(panel) = panels.pop() {
        panels.extend(panel["panels"].as_array().into_iter().flatten());
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has an expr");
            let substituted = GRAFANA_SUBSTITUTIONS
                .iter()
                .fold(expr.to_owned(), |expr, (variable, value)| {
                    expr.replace(variable, value)
                });
            assert!(
                !substituted.contains('$'),
                "{}: a variable the test does not substitute: {expr}",
                panel["title"]
            );
            queries.push((
                panel["title"].as_str().unwrap_or("?").to_owned(),
                substituted,
            ));
        }
    }
    queries
}

/// The variables' queries (`label_values(selector, label)`), as (name, selector, label).
fn variable_queries(dashboard: &Value) -> Vec<(String, String, String)> {
    dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|variable| variable["type"] == "query")
        .map(|variable| {
            let query = variable["query"]["query"].as_str().unwrap();
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|rest| rest.strip_suffix(')'))
                .unwrap_or_else(|| panic!("variable query {query:?} is not label_values(...)"));
            let (selector, label) = inner.rsplit_once(',').unwrap();
            let selector = GRAFANA_SUBSTITUTIONS
                .iter()
                .fold(selector.trim().to_owned(), |text, (variable, value)| {
                    text.replace(variable, value)
                });
            (
                variable["name"].as_str().unwrap().to_owned(),
                selector,
                label.trim().to_owned(),
            )
        })
        .collect()
}

/// The shipped rules: (record names, every metric name any rule reads).
fn rules() -> (Vec<(String, String)>, BTreeSet<String>) {
    let rules = support::yaml::document("deploy/prometheus/certgate.rules.yaml");
    let mut records = Vec::new();
    let mut read = BTreeSet::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let expr = rule["expr"].as_str().unwrap();
            read.extend(metric_names(expr));
            if let Some(record) = rule["record"].as_str() {
                records.push((record.to_owned(), expr.to_owned()));
            }
        }
    }
    let recorded: BTreeSet<String> = records.iter().map(|(name, _)| name.clone()).collect();
    read.retain(|name| !recorded.contains(name));
    (records, read)
}

/// The metric names an expression reads: the identifiers followed by `{` or `[` (a selector).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut start = None;
    for (index, &byte) in bytes.iter().enumerate() {
        let word = byte.is_ascii_alphanumeric() || byte == b'_' || byte == b':';
        match (word, start) {
            (true, None) => start = Some(index),
            (false, Some(from)) => {
                if byte == b'{' || byte == b'[' {
                    names.insert(expr[from..index].to_owned());
                }
                start = None;
            }
            _ => {}
        }
    }
    names
}

/// Requests of every kind the dashboard shows. Sidecar: allowed and denied, a certificate about to
/// expire, forged identity headers, TLS 1.2, a Host the SNI does not cover, no certificate (refused
/// in the handshake). Gateway: an allowed certificate, no certificate on the public and a private
/// route, an untrusted certificate.
async fn send_traffic(pki: &Pki, sidecar: &Envoy, gateway: &Envoy) {
    let host = testkit::pki::ENVOY_SERVER_NAME;
    let orders = pki
        .client_cert(&CertSpec::client().uri(SHOP_ORDERS))
        .unwrap();
    let expiring = pki
        .client_cert(
            &CertSpec::client()
                .uri(SHOP_ORDERS)
                .validity(Validity::ExpiresInDays(3)),
        )
        .unwrap();
    let admin = pki.client_cert(&CertSpec::client().uri(OPS_ADMIN)).unwrap();
    let untrusted = pki
        .untrusted_ca
        .issue(&CertSpec::client().uri(OPS_ADMIN))
        .unwrap();
    let tls = |cert: Option<&IssuedCert>| pki.client_tls(cert).unwrap();
    let tls12 = ClientTls::builder(pki.mesh_ca.cert_pem())
        .sni(host)
        .client_cert(&orders)
        .tls12_only()
        .build()
        .unwrap();
    let sidecar_at = sidecar.listener("ingress").unwrap();
    let gateway_at = gateway.listener("ingress").unwrap();
    // The clients send SNI envoy.mesh.local: this Host is not covered by it.
    let mismatched = Request::get("/orders/7", "elsewhere.example");
    let forged = Request::get("/orders/7", host)
        .header("x-client-spiffe-id", OPS_ADMIN)
        .header(
            "x-forwarded-client-cert",
            "URI=spiffe://mesh.local/ns/ops/sa/admin",
        );
    let get = |path: &str| Request::get(path, host);
    let expected: [(SocketAddr, ClientTls, Request, u16); 11] = [
        (sidecar_at, tls(Some(&orders)), get("/orders/7"), 200),
        (sidecar_at, tls(Some(&orders)), get("/admin/users"), 403),
        (sidecar_at, tls(Some(&admin)), get("/admin/users"), 200),
        (sidecar_at, tls(Some(&expiring)), get("/orders/7"), 200),
        (sidecar_at, tls(Some(&orders)), forged, 200),
        (sidecar_at, tls12, get("/orders/7"), 200),
        (sidecar_at, tls(Some(&orders)), mismatched, 200),
        (gateway_at, tls(Some(&orders)), get("/orders/7"), 200),
        (gateway_at, tls(None), get("/docs"), 200),
        (gateway_at, tls(None), get("/admin/users"), 403),
        (gateway_at, tls(Some(&untrusted)), get("/admin/users"), 403),
    ];
    for (at, tls, request, status) in expected {
        let response = Client::tls(at, tls).send(&request).await.unwrap();
        assert_eq!(
            response.status,
            status,
            "{} {}: {}",
            request.method(),
            request.target(),
            response.body_text()
        );
    }
    let refused = Client::tls(sidecar_at, tls(None))
        .send(&Request::get("/orders/7", host))
        .await;
    assert!(
        refused.is_err(),
        "the sidecar admitted a client without a certificate"
    );
}

#[tokio::test]
async fn every_dashboard_panel_and_recording_rule_returns_series_from_real_envoys() {
    let pki = Pki::new().unwrap();
    let app = EchoServer::plain().unwrap();
    let backend = EchoServer::tls(&pki.backend).unwrap();
    let sidecar = envoy("sidecar.yaml")
        .cert_dir(&pki.dir)
        .upstream_port(app.port())
        .plugin_config(&testkit::envoy::shipped_policy("sidecar-policy.json").unwrap())
        .start()
        .await
        .unwrap();
    let gateway = envoy("gateway.yaml")
        .cert_dir(&pki.dir)
        .upstream_port(backend.port())
        .plugin_config(&testkit::envoy::shipped_policy("gateway-policy.json").unwrap())
        .start()
        .await
        .unwrap();
    let targets = [
        sidecar.admin_address().unwrap(),
        gateway.admin_address().unwrap(),
    ];
    let mut prometheus = PrometheusServer::start(&targets);
    prometheus.wait_until_ready().await;
    send_traffic(&pki, &sidecar, &gateway).await;

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/certgate.json"),
        )
        .unwrap(),
    )
    .expect("deploy/grafana/certgate.json is JSON");
    let panels = dashboard_queries(&dashboard);
    // 11 panels, the handshake failures panel with three queries.
    assert_eq!(panels.len(), 13, "{panels:?}");
    let (records, read_by_rules) = rules();
    assert_eq!(records.len(), 2, "{records:?}");

    // Scrapes run every second and certgate hands its counts over every second: poll until every
    // check passes, and report what still fails at the deadline.
    let deadline = Instant::now() + TIMEOUT;
    let mut checks = 0;
    loop {
        checks += 1;
        let mut problems = Vec::new();
        for (title, expr) in &panels {
            if let Err(problem) = prometheus.check(expr, expr).await {
                problems.push(format!("panel {title:?}: {problem}: {expr}"));
            }
        }
        for (record, expr) in &records {
            if let Err(problem) = prometheus.check(record, expr).await {
                problems.push(format!("recording rule {record}: {problem}"));
            }
        }
        for name in &read_by_rules {
            match prometheus.query(&format!("count({name})")).await {
                Ok(series) if !series.is_empty() => {}
                Ok(_) => problems.push(format!(
                    "the rules read {name}, which Envoy does not export"
                )),
                Err(error) => problems.push(format!("{name}: {error}")),
            }
        }
        for (name, selector, label) in variable_queries(&dashboard) {
            let expected: BTreeSet<String> = match name.as_str() {
                "instance" => targets.iter().map(SocketAddr::to_string).collect(),
                "route" => ["admin", "app", "orders", "public"]
                    .map(str::to_owned)
                    .into(),
                other => panic!("a dashboard variable the test does not know: {other}"),
            };
            match prometheus.label_values(&label, &selector).await {
                Ok(values) if values == expected => {}
                Ok(values) => problems.push(format!(
                    "variable {name}: {values:?}, expected {expected:?}"
                )),
                Err(error) => problems.push(format!("variable {name}: {error}")),
            }
        }
        if problems.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {checks} rounds of queries:\n{}",
            problems.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "{} panel queries, {} recording rules, {} metrics the rules read, and the variables: all \
         answered ({checks} rounds of queries)",
        panels.len(),
        records.len(),
        read_by_rules.len()
    );
}

#[test]
fn the_query_checks_see_what_they_must() {
    let expr = "sum by (route) (rate(x[1m])) / sum by (route, reason) (rate(y{a=\"b\"}[1m]))";
    assert_eq!(
        grouping_labels(expr),
        ["reason", "route"].map(str::to_owned).into()
    );
    assert_eq!(metric_names(expr), ["x", "y"].map(str::to_owned).into());
    let bare = serde_json::json!([{"metric": {"route": "admin"}}, {"metric": {}}]);
    assert!(result_problem(expr, bare.as_array().unwrap())
        .unwrap()
        .contains("without label"));
    assert_eq!(result_problem(expr, &[]).as_deref(), Some("no series"));
}
