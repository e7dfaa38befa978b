//! The Envoy load bench: one Envoy (one worker) with an mTLS listener per variant (certgate with the
//! typical and the 10,000-matcher policy, deciding alone, deciding + XFCC, certgate built at
//! opt-level z, a baseline build of certgate, the Wasm floor, no filter, Envoy's native RBAC alone and RBAC + XFCC), driven by the
//! Rust load generator in interleaved rounds. Prints the medians over rounds (requests per second,
//! p50, p99, Envoy worker CPU per request) per mode, the ratios the performance targets are stated
//! in (certgate over its native equivalent, 10,000 matchers over typical), the hostcalls certgate
//! makes per request (counted by the harness), and writes every run to a JSON file.
//!
//! Run with `cargo xtask bench-envoy [options]`, which installs Envoy and builds `certgate.wasm`
//! first; or `cargo bench --bench envoy_load -- [options]` when they are in place
//! (`CERTGATE_WASM`, `ENVOY_BIN`). The Wasm floor and the opt-level z filter are built by the bench.
//!
//! Options: `--seconds S` (each run, default 5), `--rounds R` (default 5), `--connections N`
//! (default 16), `--mode keepalive|newconn|h2|both|all` (`both`: keepalive and newconn; default
//! all three; `h2`: keep-alive connections over HTTP/2), `--warmup S` (per variant, default 2),
//! `--json PATH` (default `<target>/bench-envoy/results.json`), `--baseline-wasm FILE` (the build
//! `certgate_baseline` runs with the typical policy, beside the current one: a change's cost measured
//! side by side in one run; without it the current build runs twice, which shows the bench's noise).

#[path = "support/envoy_bench.rs"]
mod envoy_bench;
#[path = "support/policies.rs"]
mod policies;

use anyhow::{bail, ensure, Context, Result};
use envoy_bench::{bench_request, BenchEnvoy, Hostcalls, Modules, Variant};
use host_harness::GuestModule;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use testkit::load::{self, LoadMode, LoadReport, LoadSpec};
use testkit::{Client, Request};

/// Every mode, in the order the bench runs and prints them.
const ALL_MODES: [LoadMode; 3] = [
    LoadMode::KeepAlive,
    LoadMode::NewConnection,
    LoadMode::H2KeepAlive,
];

/// The bench's options, from the command line.
#[derive(Clone, Debug)]
struct Options {
    run_time: Duration,
    rounds: usize,
    connections: usize,
    modes: Vec<LoadMode>,
    warmup: Duration,
    json: PathBuf,
    /// The build `certgate_baseline` runs; `None`: the current one again.
    baseline_wasm: Option<PathBuf>,
}

impl Options {
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Options> {
        let mut options = Options {
            run_time: Duration::from_secs(5),
            rounds: 5,
            connections: 16,
            modes: ALL_MODES.to_vec(),
            warmup: Duration::from_secs(2),
            json: target_dir().join("bench-envoy/results.json"),
            baseline_wasm: None,
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            // `cargo bench` passes `--bench` to every bench binary.
            if arg == "--bench" {
                continue;
            }
            let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--seconds" => options.run_time = seconds(&arg, &value()?)?,
                "--warmup" => options.warmup = seconds(&arg, &value()?)?,
                "--rounds" => options.rounds = count(&arg, &value()?)?,
                "--connections" => options.connections = count(&arg, &value()?)?,
                "--json" => options.json = PathBuf::from(value()?),
                "--baseline-wasm" => {
                    let path = PathBuf::from(value()?);
                    ensure!(
                        path.is_file(),
                        "--baseline-wasm {}: no such file",
                        path.display()
                    );
                    options.baseline_wasm = Some(path);
                }
                "--mode" => {
                    options.modes = match value()?.as_str() {
                        "keepalive" => vec![LoadMode::KeepAlive],
                        "newconn" => vec![LoadMode::NewConnection],
                        "h2" => vec![LoadMode::H2KeepAlive],
                        "both" => vec![LoadMode::KeepAlive, LoadMode::NewConnection],
                        "all" => ALL_MODES.to_vec(),
                        other => {
                            bail!("--mode {other:?}: expected keepalive, newconn, h2, both or all")
                        }
                    }
                }
                other => bail!(
                    "unknown option {other:?}; options: --seconds S, --rounds R, --connections N, \
                     --mode keepalive|newconn|h2|both|all, --warmup S, --json PATH, --baseline-wasm FILE"
                ),
            }
        }
        Ok(options)
    }
}

fn seconds(option: &str, value: &str) -> Result<Duration> {
    let seconds: f64 = value
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s >= 0.0)
        .with_context(|| format!("{option} {value:?}: expected a number of seconds"))?;
    Ok(Duration::from_secs_f64(seconds))
}

fn count(option: &str, value: &str) -> Result<usize> {
    value
        .parse()
        .ok()
        .filter(|n: &usize| *n > 0)
        .with_context(|| format!("{option} {value:?}: expected a positive whole number"))
}

/// Cargo's target directory, where the JSON goes by default.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("envoy_load: some runs had errors (see the errors column and the JSON)");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("envoy_load: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the whole bench; `Ok(false)` when a run had errors.
fn run() -> Result<bool> {
    let options = Options::parse(std::env::args().skip(1))?;
    eprintln!("envoy_load: building the Wasm floor and certgate at opt-level z (once)");
    let certgate = testkit::certgate_wasm()?;
    let modules = Modules {
        certgate_baseline: options.baseline_wasm.clone().unwrap_or(certgate.clone()),
        certgate,
        certgate_opt_z: testkit::certgate_wasm_opt_z()?,
        wasm_floor: testkit::wasm_floor()?,
    };
    let certgate = GuestModule::load(&modules.certgate)
        .with_context(|| format!("loading {}", modules.certgate.display()))?;
    let hostcalls: Vec<(Variant, Hostcalls)> = Variant::CERTGATE_POLICIES
        .into_iter()
        .map(|variant| {
            let policy = variant.certgate_policy().context("a certgate variant")?;
            Ok((
                variant,
                envoy_bench::hostcalls_per_request(&certgate, &policy)?,
            ))
        })
        .collect::<Result<_>>()?;
    let load_before = load_average();
    // One thread for the load: the other core is Envoy's worker.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let measured = runtime.block_on(measure(&options, &modules))?;
    let load_after = load_average();

    println!();
    println!(
        "Envoy load bench: {} rounds x {:?} per variant, {} connections, load average {} before, {} after",
        options.rounds, options.run_time, options.connections, load_before, load_after
    );
    println!("\ncertgate hostcalls per request (harness, the bench request):\n");
    println!("| variant | kept-alive | budget | new connection | kept-alive by hostcall |");
    println!("|---|---|---|---|---|");
    for (variant, calls) in &hostcalls {
        println!(
            "| {} | {} | <= {} | {} | {} |",
            variant.name(),
            calls.kept_alive.total(),
            variant.hostcall_budget().unwrap_or_default(),
            calls.new_connection.total(),
            envoy_bench::breakdown(&calls.kept_alive)
        );
    }
    println!();
    println!(
        "load generator + upstream alone (no Envoy, plain HTTP, keep-alive): {:.0} rps",
        measured.upstream_alone.rps()
    );
    let summaries: Vec<Value> = options
        .modes
        .iter()
        .map(|mode| print_summary(*mode, &options, &measured.runs))
        .collect();

    let clean = measured.runs.iter().all(|run| run.errors == 0);
    let results = json!({
        "options": {
            "seconds": options.run_time.as_secs_f64(),
            "rounds": options.rounds,
            "connections": options.connections,
            "warmup_seconds": options.warmup.as_secs_f64(),
        },
        "machine": {
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "load_average_before": load_before,
            "load_average_after": load_after,
        },
        "modules": {
            "certgate": module_json(&modules.certgate),
            "certgate_opt_z": module_json(&modules.certgate_opt_z),
            "certgate_baseline": module_json(&modules.certgate_baseline),
            "wasm_floor": module_json(&modules.wasm_floor),
        },
        "hostcalls_per_request": hostcalls.iter().map(|(variant, calls)| (variant.name().to_string(), json!({
            "kept_alive": calls.kept_alive.total(),
            "budget": variant.hostcall_budget(),
            "new_connection": calls.new_connection.total(),
            "kept_alive_breakdown": envoy_bench::breakdown(&calls.kept_alive),
            "new_connection_breakdown": envoy_bench::breakdown(&calls.new_connection),
        }))).collect::<serde_json::Map<_, _>>(),
        "upstream_alone_rps": measured.upstream_alone.rps(),
        "summaries": summaries,
        "runs": measured.runs.iter().map(Run::to_json).collect::<Vec<_>>(),
        "clean": clean,
    });
    if let Some(dir) = options.json.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&options.json, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("writing {}", options.json.display()))?;
    println!("\nevery run: {}", options.json.display());
    Ok(clean)
}

/// One variant driven for one run.
struct Run {
    mode: LoadMode,
    round: usize,
    variant: Variant,
    report: LoadReport,
    errors: u64,
    /// Envoy's worker CPU time per response.
    worker_us_per_request: f64,
    /// The worker's CPU time over the run's wall time: near 1 when Envoy is the bottleneck.
    worker_busy: f64,
    /// The load generator's and upstream's CPU time per response.
    loadgen_us_per_request: f64,
}

impl Run {
    fn rps(&self) -> f64 {
        self.report.rps()
    }

    fn p50_us(&self) -> f64 {
        micros(self.report.latency_quantile(0.50))
    }

    fn p99_us(&self) -> f64 {
        micros(self.report.latency_quantile(0.99))
    }

    fn to_json(&self) -> Value {
        json!({
            "mode": self.mode.name(),
            "round": self.round,
            "variant": self.variant.name(),
            "responses": self.report.responses(),
            "rps": self.rps(),
            "p50_us": self.p50_us(),
            "p99_us": self.p99_us(),
            "errors": self.errors,
            "error_summary": self.report.error_summary(),
            "worker_us_per_request": self.worker_us_per_request,
            "worker_busy": self.worker_busy,
            "loadgen_us_per_request": self.loadgen_us_per_request,
        })
    }
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

struct Measured {
    upstream_alone: LoadReport,
    runs: Vec<Run>,
}

async fn measure(options: &Options, modules: &Modules) -> Result<Measured> {
    eprintln!("envoy_load: starting Envoy");
    let bench = BenchEnvoy::start(modules).await?;
    for variant in Variant::ALL {
        let response = bench.client(variant)?.send(&bench_request()).await?;
        ensure!(
            response.status == 200,
            "{} answered the bench request with {}: {}",
            variant.name(),
            response.status,
            response.body_text()
        );
    }
    let keep_alive = |duration| LoadSpec {
        mode: LoadMode::KeepAlive,
        connections: options.connections,
        duration,
    };
    let upstream_alone = load::run(
        &Client::plain(bench.upstream.addr()),
        &Request::get("/", "upstream"),
        keep_alive(options.run_time),
    )
    .await;
    eprintln!(
        "envoy_load: load generator + upstream alone: {:.0} rps",
        upstream_alone.rps()
    );
    // V8 compiles in tiers: let every VM reach its optimised code before anything is measured.
    for variant in Variant::ALL {
        let warm = load::run(
            &bench.client(variant)?,
            &bench_request(),
            keep_alive(options.warmup),
        )
        .await;
        if let Some(errors) = warm.error_summary() {
            bail!("warming up {}: {errors}", variant.name());
        }
    }
    let mut runs = Vec::new();
    for &mode in &options.modes {
        let spec = LoadSpec {
            mode,
            connections: options.connections,
            duration: options.run_time,
        };
        for round in 0..options.rounds {
            // Each round starts with the next variant, so no variant always runs first or last.
            for offset in 0..Variant::ALL.len() {
                let variant = Variant::ALL[(round + offset) % Variant::ALL.len()];
                let run = measure_one(&bench, variant, spec, round).await?;
                eprintln!(
                    "envoy_load: {} round {} {:<17} {:>8.0} rps  p50 {:>7.0} us  p99 {:>7.0} us  worker {:>5.1} us/rq ({:>3.0}% busy){}",
                    mode.name(),
                    round + 1,
                    variant.name(),
                    run.rps(),
                    run.p50_us(),
                    run.p99_us(),
                    run.worker_us_per_request,
                    run.worker_busy * 100.0,
                    run.report
                        .error_summary()
                        .map(|errors| format!("  ERRORS: {errors}"))
                        .unwrap_or_default()
                );
                runs.push(run);
            }
        }
    }
    Ok(Measured {
        upstream_alone,
        runs,
    })
}

async fn measure_one(
    bench: &BenchEnvoy,
    variant: Variant,
    spec: LoadSpec,
    round: usize,
) -> Result<Run> {
    let client = bench.client(variant)?;
    let worker_before = bench.envoy.worker_cpu_time()?;
    let own_before = load::own_cpu_time();
    let started = Instant::now();
    let report = load::run(&client, &bench_request(), spec).await;
    let wall = started.elapsed();
    let worker = bench.envoy.worker_cpu_time()? - worker_before;
    let own = load::own_cpu_time() - own_before;
    let responses = report.responses().max(1) as f64;
    Ok(Run {
        mode: spec.mode,
        round,
        variant,
        errors: report.errors(),
        worker_us_per_request: micros(worker) / responses,
        worker_busy: worker.as_secs_f64() / wall.as_secs_f64(),
        loadgen_us_per_request: micros(own) / responses,
        report,
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The medians of one variant in one mode.
struct Summary {
    variant: Variant,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    worker_us: f64,
    worker_busy: f64,
    loadgen_us: f64,
    errors: u64,
}

/// A comparison the targets are stated in: `variant` over `baseline`, same mode, same run.
struct Ratio {
    variant: Variant,
    baseline: Variant,
    /// The target on worker CPU per request (`variant` / `baseline` at most this).
    max_cpu: Option<f64>,
    /// The target on throughput (`variant` / `baseline` rps at least this).
    min_rps: Option<f64>,
}

/// A [`Ratio`] as one run measured it.
struct MeasuredRatio {
    cpu: f64,
    rps: f64,
    p99_us: f64,
    baseline_p99_us: f64,
}

impl Ratio {
    /// The targets' comparisons, then the informative ones.
    const ALL: [Ratio; 7] = [
        Ratio::new(
            Variant::CertgateDecideOnly,
            Variant::EnvoyNativeRbac,
            Some(1.15),
            None,
        ),
        Ratio::new(
            Variant::CertgateDecideXfcc,
            Variant::EnvoyNative,
            Some(1.10),
            None,
        ),
        Ratio::new(
            Variant::CertgateTypical,
            Variant::EnvoyNative,
            Some(1.25),
            None,
        ),
        Ratio::new(
            Variant::CertgateLarge,
            Variant::CertgateTypical,
            None,
            Some(0.97),
        ),
        Ratio::new(Variant::CertgateTypical, Variant::WasmFloor, None, None),
        Ratio::new(Variant::CertgateOptZ, Variant::CertgateTypical, None, None),
        Ratio::new(
            Variant::CertgateTypical,
            Variant::CertgateBaseline,
            None,
            None,
        ),
    ];

    const fn new(
        variant: Variant,
        baseline: Variant,
        max_cpu: Option<f64>,
        min_rps: Option<f64>,
    ) -> Ratio {
        Ratio {
            variant,
            baseline,
            max_cpu,
            min_rps,
        }
    }

    fn measure(&self, variant: &Summary, baseline: &Summary) -> MeasuredRatio {
        MeasuredRatio {
            cpu: variant.worker_us / baseline.worker_us,
            rps: variant.rps / baseline.rps,
            p99_us: variant.p99_us,
            baseline_p99_us: baseline.p99_us,
        }
    }

    fn label(&self) -> String {
        format!("{} / {}", self.variant.name(), self.baseline.name())
    }

    fn cpu_met(&self, measured: &MeasuredRatio) -> Option<bool> {
        self.max_cpu.map(|max| measured.cpu <= max)
    }

    fn rps_met(&self, measured: &MeasuredRatio) -> Option<bool> {
        self.min_rps.map(|min| measured.rps >= min)
    }

    fn line(&self, measured: &MeasuredRatio) -> String {
        let verdict = |met: bool| if met { "met" } else { "MISSED" };
        let cpu_target = self
            .max_cpu
            .zip(self.cpu_met(measured))
            .map(|(max, met)| format!(" (target <= {max:.2}: {})", verdict(met)))
            .unwrap_or_default();
        let rps_target = self
            .min_rps
            .zip(self.rps_met(measured))
            .map(|(min, met)| format!(" (target >= {min:.2}: {})", verdict(met)))
            .unwrap_or_default();
        format!(
            "{}: worker CPU per request {:.3}{cpu_target}, rps {:.3}{rps_target}, p99 {:.0} us vs {:.0} us",
            self.label(),
            measured.cpu,
            measured.rps,
            measured.p99_us,
            measured.baseline_p99_us
        )
    }

    fn to_json(&self, measured: &MeasuredRatio) -> Value {
        json!({
            "ratio": self.label(),
            "worker_cpu": measured.cpu,
            "max_worker_cpu": self.max_cpu,
            "worker_cpu_met": self.cpu_met(measured),
            "rps": measured.rps,
            "min_rps": self.min_rps,
            "rps_met": self.rps_met(measured),
            "p99_us": measured.p99_us,
            "baseline_p99_us": measured.baseline_p99_us,
        })
    }
}

/// Prints the table of one mode and returns it as JSON.
fn print_summary(mode: LoadMode, options: &Options, runs: &[Run]) -> Value {
    let summaries: Vec<Summary> = Variant::ALL
        .iter()
        .map(|&variant| {
            let of_variant: Vec<&Run> = runs
                .iter()
                .filter(|run| run.mode == mode && run.variant == variant)
                .collect();
            let med =
                |value: fn(&Run) -> f64| median(of_variant.iter().map(|r| value(r)).collect());
            Summary {
                variant,
                rps: med(Run::rps),
                p50_us: med(Run::p50_us),
                p99_us: med(Run::p99_us),
                worker_us: med(|run| run.worker_us_per_request),
                worker_busy: med(|run| run.worker_busy),
                loadgen_us: med(|run| run.loadgen_us_per_request),
                errors: of_variant.iter().map(|run| run.errors).sum(),
            }
        })
        .collect();
    let of = |variant: Variant| {
        summaries
            .iter()
            .find(|summary| summary.variant == variant)
            .expect("every variant has a summary")
    };
    let floor = of(Variant::WasmFloor);
    let none = of(Variant::NoFilter);
    println!(
        "\n## {} ({} {}, medians of {} rounds x {:?})\n",
        mode.name(),
        options.connections,
        match mode {
            LoadMode::KeepAlive => "keep-alive connections",
            LoadMode::H2KeepAlive => "keep-alive HTTP/2 connections",
            LoadMode::NewConnection => "workers, a new connection and TLS handshake per request",
        },
        options.rounds,
        options.run_time
    );
    println!("| variant | rps | p50 µs | p99 µs | vs floor | vs no filter | worker µs/req | worker busy | loadgen µs/req | errors |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for summary in &summaries {
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.3} | {:.3} | {:.1} | {:.0}% | {:.1} | {} |",
            summary.variant.name(),
            summary.rps,
            summary.p50_us,
            summary.p99_us,
            summary.rps / floor.rps,
            summary.rps / none.rps,
            summary.worker_us,
            summary.worker_busy * 100.0,
            summary.loadgen_us,
            summary.errors
        );
    }
    let ratios = Ratio::ALL.map(|ratio| ratio.measure(of(ratio.variant), of(ratio.baseline)));
    println!();
    for (ratio, measured) in Ratio::ALL.iter().zip(&ratios) {
        println!("{}", ratio.line(measured));
    }
    let over_none = |variant: Variant| of(variant).worker_us - none.worker_us;
    println!(
        "worker CPU per request over no filter: {}",
        Variant::ALL
            .iter()
            .filter(|&&variant| variant != Variant::NoFilter)
            .map(|&variant| format!("{} {:+.1} us", variant.name(), over_none(variant)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    json!({
        "mode": mode.name(),
        "ratios": Ratio::ALL.iter().zip(&ratios).map(|(ratio, measured)| ratio.to_json(measured)).collect::<Vec<_>>(),
        "variants": summaries.iter().map(|s| json!({
            "variant": s.variant.name(),
            "description": s.variant.description(),
            "rps": s.rps,
            "p50_us": s.p50_us,
            "p99_us": s.p99_us,
            "rps_vs_floor": s.rps / floor.rps,
            "rps_vs_no_filter": s.rps / none.rps,
            "worker_us_per_request": s.worker_us,
            "worker_busy": s.worker_busy,
            "loadgen_us_per_request": s.loadgen_us,
            "errors": s.errors,
        })).collect::<Vec<_>>(),
    })
}

fn module_json(path: &Path) -> Value {
    json!({
        "path": path.display().to_string(),
        "bytes": std::fs::metadata(path).map(|m| m.len()).ok(),
    })
}

/// `/proc/loadavg`'s three averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".into())
}
