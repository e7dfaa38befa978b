//! The load generator of the Envoy load bench: drives one listener with the testkit [`Client`] for a
//! fixed time, over N keep-alive connections (HTTP/1.1 or HTTP/2) or with a new connection (a full
//! TLS handshake) per request, and records the latency of every request and every failure. A non-2xx status is a
//! failure too: a run with failures is reported as such, never averaged away.
//!
//! It is meant for a current-thread runtime, so that it takes one core at most from the Envoy it
//! measures.
//!
//! [`Drive`] is the suites' bounded load of varied requests: a fixed number of numbered requests,
//! each built from its number, every exchange kept for the test to judge (which request failed, which
//! version of the filter answered, when).

use crate::client::{Client, Connection, Request, Response};
use crate::http2::H2Connection;
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// How requests reach the listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadMode {
    /// Each of the N connections sends its requests one after another.
    KeepAlive,
    /// As [`LoadMode::KeepAlive`] over HTTP/2 (ALPN `h2`): each of the N connections sends its
    /// requests one stream after another, as a mesh sidecar or a gRPC client does.
    H2KeepAlive,
    /// Each of the N workers opens a connection, sends one request with `connection: close`, and
    /// starts over: every request pays a TCP connect and a full TLS handshake, and the filter sees
    /// a new connection each time (its per-connection caches never hit).
    NewConnection,
}

impl LoadMode {
    /// The name the bench's options and reports use.
    pub fn name(self) -> &'static str {
        match self {
            LoadMode::KeepAlive => "keepalive",
            LoadMode::H2KeepAlive => "h2",
            LoadMode::NewConnection => "newconn",
        }
    }
}

/// One run: how, how many at once, how long.
#[derive(Clone, Copy, Debug)]
pub struct LoadSpec {
    pub mode: LoadMode,
    /// Connections (keep-alive) or concurrent workers (new connection per request).
    pub connections: usize,
    pub duration: Duration,
}

/// Pause after a failed connect or request, so a listener that refuses everything is not hammered
/// by a tight loop of errors.
const FAILURE_BACKOFF: Duration = Duration::from_millis(10);

/// What one run measured.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    /// The latency of every request that got a response, in nanoseconds, sorted. In
    /// [`LoadMode::NewConnection`] it includes the connect and the handshake.
    pub latencies_ns: Vec<u64>,
    /// Responses by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Connects and requests that got no response (refused, reset, timed out).
    pub transport_failures: u64,
    /// The first failure, to tell what went wrong.
    pub first_failure: Option<String>,
    /// From the start until the last worker finished.
    pub elapsed: Duration,
}

impl LoadReport {
    /// Responses received, any status.
    pub fn responses(&self) -> u64 {
        self.latencies_ns.len() as u64
    }

    /// Responses with a 2xx status.
    pub fn successes(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(status, _)| (200..300).contains(*status))
            .map(|(_, count)| count)
            .sum()
    }

    /// Non-2xx responses plus requests without a response.
    pub fn errors(&self) -> u64 {
        self.responses() - self.successes() + self.transport_failures
    }

    /// Responses per second.
    pub fn rps(&self) -> f64 {
        self.responses() as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// The latency below which `fraction` (0..=1) of the requests completed (nearest rank).
    pub fn latency_quantile(&self, fraction: f64) -> Duration {
        if self.latencies_ns.is_empty() {
            return Duration::ZERO;
        }
        let rank = (fraction.clamp(0.0, 1.0) * self.latencies_ns.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.latencies_ns.len()) - 1;
        self.latencies_ns
            .get(index)
            .copied()
            .map_or(Duration::ZERO, Duration::from_nanos)
    }

    /// A one-line account of the failures, or `None` when there were none.
    pub fn error_summary(&self) -> Option<String> {
        if self.errors() == 0 {
            return None;
        }
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .filter(|(status, _)| !(200..300).contains(*status))
            .map(|(status, count)| format!("{count}x {status}"))
            .collect();
        let mut summary = format!(
            "{} errors of {} requests",
            self.errors(),
            self.responses() + self.transport_failures
        );
        if !statuses.is_empty() {
            summary.push_str(&format!(" (status {})", statuses.join(", ")));
        }
        if self.transport_failures > 0 {
            summary.push_str(&format!(
                "; {} without a response, first: {}",
                self.transport_failures,
                self.first_failure.as_deref().unwrap_or("?")
            ));
        }
        Some(summary)
    }

    fn merge(&mut self, other: LoadReport) {
        self.latencies_ns.extend(other.latencies_ns);
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.transport_failures += other.transport_failures;
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
    }

    fn record_response(&mut self, started: Instant, status: u16) {
        self.latencies_ns
            .push(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
        *self.statuses.entry(status).or_default() += 1;
    }

    fn record_failure(&mut self, error: anyhow::Error) {
        self.transport_failures += 1;
        if self.first_failure.is_none() {
            self.first_failure = Some(format!("{error:#}"));
        }
    }
}

/// Sends `request` through `client` as `spec` says, until its duration is over, and reports every
/// request. Call it on the runtime the load should run on; it spawns its workers there.
pub async fn run(client: &Client, request: &Request, spec: LoadSpec) -> LoadReport {
    let request = match spec.mode {
        LoadMode::KeepAlive | LoadMode::H2KeepAlive => request.clone(),
        LoadMode::NewConnection => request.clone().header("connection", "close"),
    };
    let started = Instant::now();
    let deadline = started + spec.duration;
    let mut workers = JoinSet::new();
    for _ in 0..spec.connections.max(1) {
        let client = client.clone();
        let request = request.clone();
        workers.spawn(async move {
            match spec.mode {
                LoadMode::KeepAlive => keep_alive(&client, &request, false, deadline).await,
                LoadMode::H2KeepAlive => keep_alive(&client, &request, true, deadline).await,
                LoadMode::NewConnection => new_connection_each(&client, &request, deadline).await,
            }
        });
    }
    let mut report = LoadReport::default();
    while let Some(worker) = workers.join_next().await {
        match worker {
            Ok(worker_report) => report.merge(worker_report),
            Err(error) => report.record_failure(anyhow::anyhow!("a load worker died: {error}")),
        }
    }
    report.elapsed = started.elapsed();
    report.latencies_ns.sort_unstable();
    report
}

/// A keep-alive connection of either protocol.
enum KeptAlive {
    Http1(Connection),
    Http2(H2Connection),
}

impl KeptAlive {
    async fn open(client: &Client, h2: bool) -> Result<KeptAlive> {
        Ok(if h2 {
            KeptAlive::Http2(client.connect_h2().await?)
        } else {
            KeptAlive::Http1(client.connect().await?)
        })
    }

    async fn send(&mut self, request: &Request) -> Result<Response> {
        match self {
            KeptAlive::Http1(connection) => connection.send(request).await,
            KeptAlive::Http2(connection) => connection.send(request).await,
        }
    }
}

async fn keep_alive(client: &Client, request: &Request, h2: bool, deadline: Instant) -> LoadReport {
    let mut report = LoadReport::default();
    let mut open: Option<KeptAlive> = None;
    while Instant::now() < deadline {
        let connection = match open.as_mut() {
            Some(connection) => connection,
            None => match KeptAlive::open(client, h2).await {
                Ok(connection) => open.insert(connection),
                Err(error) => {
                    report.record_failure(error);
                    tokio::time::sleep(FAILURE_BACKOFF).await;
                    continue;
                }
            },
        };
        let started = Instant::now();
        match connection.send(request).await {
            Ok(response) => {
                report.record_response(started, response.status);
                let closing = response
                    .header("connection")
                    .is_some_and(|value| value.eq_ignore_ascii_case("close"));
                if closing {
                    open = None;
                }
            }
            Err(error) => {
                report.record_failure(error);
                open = None;
                tokio::time::sleep(FAILURE_BACKOFF).await;
            }
        }
    }
    report
}

async fn new_connection_each(client: &Client, request: &Request, deadline: Instant) -> LoadReport {
    let mut report = LoadReport::default();
    while Instant::now() < deadline {
        let started = Instant::now();
        let response = match client.connect().await {
            Ok(mut connection) => connection.send(request).await,
            Err(error) => Err(error),
        };
        match response {
            Ok(response) => report.record_response(started, response.status),
            Err(error) => {
                report.record_failure(error);
                tokio::time::sleep(FAILURE_BACKOFF).await;
            }
        }
    }
    report
}

/// One request of a [`Drive`] and what came back.
#[derive(Debug)]
pub struct Exchange {
    /// Its number: requests are numbered from 0 in the order they are started.
    pub seq: u64,
    /// The request as sent.
    pub request: Request,
    /// When it was sent, and when its response (or its failure) came.
    pub sent: Instant,
    pub done: Instant,
    /// The response, or why there was none (a reset, a closed connection, a timeout).
    pub outcome: Result<Response, String>,
}

impl Exchange {
    /// The response status, `None` when there was no response.
    pub fn status(&self) -> Option<u16> {
        self.outcome.as_ref().ok().map(|response| response.status)
    }
}

/// A bounded keep-alive load of varied requests, running in the background on the caller's runtime:
/// `connections` workers take the numbers 0, 1, 2, ... up to `requests`, send the request
/// `make(number)` on their keep-alive connection, and keep every exchange. A worker whose connection
/// fails or is closed opens a new one. [`Drive::stop`] ends it early.
pub struct Drive {
    completed: Arc<AtomicU64>,
    stopped: Arc<AtomicBool>,
    workers: JoinSet<Vec<Exchange>>,
}

impl Drive {
    pub fn start<F>(client: &Client, connections: usize, requests: u64, make: F) -> Drive
    where
        F: Fn(u64) -> Request + Send + Sync + 'static,
    {
        let next = Arc::new(AtomicU64::new(0));
        let completed = Arc::new(AtomicU64::new(0));
        let stopped = Arc::new(AtomicBool::new(false));
        let make = Arc::new(make);
        let mut workers = JoinSet::new();
        for _ in 0..connections.max(1) {
            let (client, next, completed, stopped, make) = (
                client.clone(),
                next.clone(),
                completed.clone(),
                stopped.clone(),
                make.clone(),
            );
            workers.spawn(async move {
                let mut exchanges = Vec::new();
                let mut open: Option<Connection> = None;
                loop {
                    if stopped.load(Ordering::SeqCst) {
                        return exchanges;
                    }
                    let seq = next.fetch_add(1, Ordering::SeqCst);
                    if seq >= requests {
                        return exchanges;
                    }
                    let request = make(seq);
                    let sent = Instant::now();
                    let outcome = match open.as_mut() {
                        Some(connection) => connection.send(&request).await,
                        None => match client.connect().await {
                            Ok(connection) => open.insert(connection).send(&request).await,
                            Err(error) => Err(error),
                        },
                    };
                    let done = Instant::now();
                    let outcome = outcome.map_err(|error| format!("{error:#}"));
                    let closing = match &outcome {
                        Ok(response) => response
                            .header("connection")
                            .is_some_and(|value| value.eq_ignore_ascii_case("close")),
                        Err(_) => true,
                    };
                    if closing {
                        open = None;
                    }
                    let failed = outcome.is_err();
                    exchanges.push(Exchange {
                        seq,
                        request,
                        sent,
                        done,
                        outcome,
                    });
                    completed.fetch_add(1, Ordering::SeqCst);
                    if failed {
                        tokio::time::sleep(FAILURE_BACKOFF).await;
                    }
                }
            });
        }
        Drive {
            completed,
            stopped,
            workers,
        }
    }

    /// Lets each worker finish the request it is sending, then stop.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    /// Exchanges completed so far.
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::SeqCst)
    }

    /// Waits until at least `count` exchanges are complete, at most `timeout`.
    pub async fn wait_for(&self, count: u64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.completed() < count {
            if Instant::now() > deadline {
                bail!(
                    "{} exchanges of {count} completed after {timeout:?}",
                    self.completed()
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// Waits for every worker and returns every exchange in request-number order (numbers taken
    /// after [`Drive::stop`] are never sent, so the last numbers may be missing).
    pub async fn finish(mut self) -> Result<Vec<Exchange>> {
        let mut all = Vec::new();
        while let Some(worker) = self.workers.join_next().await {
            match worker {
                Ok(exchanges) => all.extend(exchanges),
                Err(error) => bail!("a load worker died: {error}"),
            }
        }
        all.sort_by_key(|exchange| exchange.seq);
        Ok(all)
    }
}

/// The CPU time this process (load generator and in-process upstream) has used so far.
pub fn own_cpu_time() -> Duration {
    // SAFETY: getrusage writes only into the struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let micros = |time: libc::timeval| {
        Duration::from_secs(u64::try_from(time.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(time.tv_usec).unwrap_or(0))
    };
    micros(usage.ru_utime) + micros(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::echo::EchoServer;

    #[test]
    fn quantiles_are_nearest_rank() {
        let report = LoadReport {
            latencies_ns: (1..=100).collect(),
            ..LoadReport::default()
        };
        assert_eq!(report.latency_quantile(0.5), Duration::from_nanos(50));
        assert_eq!(report.latency_quantile(0.99), Duration::from_nanos(99));
        assert_eq!(report.latency_quantile(1.0), Duration::from_nanos(100));
        assert_eq!(report.latency_quantile(0.0), Duration::from_nanos(1));
        assert_eq!(LoadReport::default().latency_quantile(0.5), Duration::ZERO);
    }

    #[test]
    fn non_2xx_responses_are_errors() {
        let report = LoadReport {
            latencies_ns: vec![1, 2, 3, 4],
            statuses: BTreeMap::from([(200, 2), (204, 1), (403, 1)]),
            ..LoadReport::default()
        };
        assert_eq!(report.successes(), 3);
        assert_eq!(report.errors(), 1);
        assert_eq!(
            report.error_summary().as_deref(),
            Some("1 errors of 4 requests (status 1x 403)")
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_drive_sends_each_numbered_request_once() {
        let upstream = EchoServer::plain().unwrap();
        let client = Client::plain(upstream.addr());
        let drive = Drive::start(&client, 3, 50, |seq| {
            Request::get(&format!("/{seq}"), "upstream")
        });
        drive.wait_for(10, Duration::from_secs(10)).await.unwrap();
        let exchanges = drive.finish().await.unwrap();
        assert_eq!(exchanges.len(), 50);
        for (index, exchange) in exchanges.iter().enumerate() {
            assert_eq!(exchange.seq, index as u64);
            let echoed = exchange.outcome.as_ref().unwrap().echoed().unwrap();
            assert_eq!(echoed.path, format!("/{index}"));
            assert!(exchange.done >= exchange.sent);
        }
        assert_eq!(upstream.requests_served(), 50);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn both_modes_count_every_response_and_a_closed_port_is_an_error() {
        let upstream = EchoServer::plain_ok().unwrap();
        let client = Client::plain(upstream.addr());
        for mode in [LoadMode::KeepAlive, LoadMode::NewConnection] {
            let spec = LoadSpec {
                mode,
                connections: 2,
                duration: Duration::from_millis(200),
            };
            let report = run(&client, &Request::get("/", "upstream"), spec).await;
            assert!(report.responses() > 0, "{mode:?}: {report:?}");
            assert_eq!(report.errors(), 0, "{mode:?}: {:?}", report.error_summary());
            assert_eq!(report.successes(), report.responses());
        }
        let refused = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            drop(listener);
            addr
        };
        let spec = LoadSpec {
            mode: LoadMode::KeepAlive,
            connections: 1,
            duration: Duration::from_millis(50),
        };
        let report = run(&Client::plain(refused), &Request::get("/", "x"), spec).await;
        assert_eq!(report.responses(), 0);
        assert!(report.transport_failures > 0);
        assert!(report
            .error_summary()
            .unwrap()
            .contains("without a response"));
    }
}
