//! Certificate rotation as Kubernetes performs it and the load that proves it costs no request: a
//! directory laid out as the kubelet mounts a Secret (and cert-manager renews it), and clients that
//! keep making requests, each a full handshake, recording which server certificate they saw and
//! whether they were answered.
//!
//! A mounted Secret's files are symlinks into `..data`, itself a symlink to the current
//! generation's directory; a renewal writes a new generation and moves a new `..data` over the old
//! one in one rename, the move Envoy's `watched_directory` reacts to.

use crate::certs::{CertSpec, IssuedCert, TestCa, Validity};
use crate::client::{Client, ClientTls, Request};
use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long [`wait_until`] polls: a bound on a wait, not a speed target.
const WAIT_BOUND: Duration = Duration::from_secs(30);

/// A directory laid out as the kubelet mounts a Secret volume.
pub struct SecretMount {
    dir: PathBuf,
    generation: usize,
}

impl SecretMount {
    /// An empty mount at `dir` (created); [`SecretMount::publish`] fills it.
    pub fn new(dir: &Path) -> Result<SecretMount> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(SecretMount {
            dir: dir.to_owned(),
            generation: 0,
        })
    }

    /// The mounted directory (what a config's `${CERT_DIR}` names).
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes `files`, (name, contents) each, as the next generation, the way the kubelet updates
    /// a Secret volume: a new `..<generation>` directory, a `..data_tmp` symlink to it renamed over
    /// `..data`, then the old generation removed.
    pub fn publish(&mut self, files: &[(&str, &str)]) -> Result<()> {
        self.generation += 1;
        let generation = format!("..{}", self.generation);
        let generation_dir = self.dir.join(&generation);
        std::fs::create_dir_all(&generation_dir)
            .with_context(|| format!("creating {}", generation_dir.display()))?;
        for (file, contents) in files {
            std::fs::write(generation_dir.join(file), contents)
                .with_context(|| format!("writing {file} in {}", generation_dir.display()))?;
        }
        let previous = std::fs::read_link(self.dir.join("..data")).ok();
        std::os::unix::fs::symlink(&generation, self.dir.join("..data_tmp"))
            .context("linking ..data_tmp")?;
        std::fs::rename(self.dir.join("..data_tmp"), self.dir.join("..data"))
            .context("moving ..data_tmp over ..data")?;
        for (file, _) in files {
            let link = self.dir.join(file);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(Path::new("..data").join(file), &link)
                    .with_context(|| format!("linking {}", link.display()))?;
            }
        }
        if let Some(previous) = previous {
            std::fs::remove_dir_all(self.dir.join(&previous))
                .with_context(|| format!("removing the generation {}", previous.display()))?;
        }
        Ok(())
    }
}

/// Where the load's requests go: the listener, the CA its certificate must chain to, the server
/// name asked for, and the path prefix (`PREFIX/LABEL/N`, LABEL the client certificate's).
#[derive(Clone, Debug)]
pub struct Target {
    pub address: SocketAddr,
    pub server_ca: String,
    pub sni: String,
    pub path_prefix: String,
}

/// One request of [`RotationLoad`]: the client certificate it presented (its label), the server
/// certificate its handshake saw, when it started, and its status or why it had none.
#[derive(Clone, Debug)]
pub struct Sent {
    pub client: &'static str,
    pub server: Option<Vec<u8>>,
    pub started: Instant,
    pub outcome: std::result::Result<u16, String>,
}

/// One mTLS request on a new connection with a fresh TLS configuration, so every request is a full
/// handshake (no session to resume): the server certificate it saw and its status.
pub async fn handshake_and_get(
    target: &Target,
    client: &IssuedCert,
    path: &str,
) -> (Option<Vec<u8>>, std::result::Result<u16, String>) {
    let tls = match ClientTls::builder(&target.server_ca)
        .sni(&target.sni)
        .client_cert(client)
        .build()
    {
        Ok(tls) => tls,
        Err(error) => return (None, Err(format!("{error:#}"))),
    };
    let mut connection = match Client::tls(target.address, tls).connect().await {
        Ok(connection) => connection,
        Err(error) => return (None, Err(format!("{error:#}"))),
    };
    let server = connection.server_certificate();
    let request = Request::get(path, &target.sni).header("connection", "close");
    let outcome = connection
        .send(&request)
        .await
        .map(|response| response.status)
        .map_err(|error| format!("{error:#}"));
    (server, outcome)
}

/// Clients that keep making requests, each on a new connection, presenting whichever client
/// certificate `current` holds when the request starts, until stopped.
pub struct RotationLoad {
    current: Arc<Mutex<(&'static str, IssuedCert)>>,
    completed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    workers: tokio::task::JoinSet<Vec<Sent>>,
}

impl RotationLoad {
    /// Starts two clients against `target`, presenting `client` (label, certificate).
    pub fn start(target: &Target, client: (&'static str, IssuedCert)) -> Self {
        let current = Arc::new(Mutex::new(client));
        let completed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = tokio::task::JoinSet::new();
        for worker in 0..2 {
            let (current, completed, stop) = (current.clone(), completed.clone(), stop.clone());
            let target = target.clone();
            workers.spawn(async move {
                let mut sent = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let (label, cert) = match current.lock() {
                        Ok(current) => current.clone(),
                        Err(poisoned) => poisoned.into_inner().clone(),
                    };
                    let started = Instant::now();
                    let path = format!("{}/{label}/{worker}-{}", target.path_prefix, sent.len());
                    let (server, outcome) = handshake_and_get(&target, &cert, &path).await;
                    sent.push(Sent {
                        client: label,
                        server,
                        started,
                        outcome,
                    });
                    completed.fetch_add(1, Ordering::SeqCst);
                }
                sent
            });
        }
        RotationLoad {
            current,
            completed,
            stop,
            workers,
        }
    }

    /// Waits until `more` requests have completed after this call.
    pub async fn run_for(&self, more: u64) -> Result<()> {
        let target = self.completed.load(Ordering::SeqCst) + more;
        wait_until(&format!("{more} more load requests"), || async {
            self.completed.load(Ordering::SeqCst) >= target
        })
        .await
    }

    /// From the next request on, the clients present `client` (label, certificate).
    pub fn present(&self, client: (&'static str, IssuedCert)) {
        match self.current.lock() {
            Ok(mut current) => *current = client,
            Err(poisoned) => *poisoned.into_inner() = client,
        }
    }

    /// Stops the clients; every request they made.
    pub async fn stop(mut self) -> Result<Vec<Sent>> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Vec::new();
        while let Some(worker) = self.workers.join_next().await {
            all.extend(worker.context("a load client panicked")?);
        }
        Ok(all)
    }
}

/// Polls `check` until it holds; an error naming `what` when it still does not after a bound.
pub async fn wait_until<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT_BOUND;
    while !check().await {
        if Instant::now() > deadline {
            bail!("still waiting for {what} after {WAIT_BOUND:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The certificates of a rotation: the CA in the bundle at first, the server certificate Envoy
/// serves at first (DER) and the spec of its renewal, the load's client and a client of the next
/// CA, which joins the bundle.
pub struct Rotation<'a> {
    pub first_ca: &'a TestCa,
    pub original_server: &'a [u8],
    pub server: CertSpec,
    pub client: CertSpec,
    pub newcomer: CertSpec,
}

/// Rotates the way cert-manager renews a Secret while [`RotationLoad`] runs against `target`,
/// `publish(server certificate, client CA bundle)` writing each renewal: the server certificate
/// renewed, the next CA added to the bundle, the load's client renewed by it, the first CA removed.
/// An error unless every request succeeded, every handshake after the renewal saw the new server
/// certificate, the next CA's client was admitted once added (and not before), and the first CA's
/// client was refused once removed. The load's requests are labelled `first` (a certificate of the
/// first CA, 10 days to expiry) and `renewed` (of the next CA, 90 days); returns them.
pub async fn rotate_under_load(
    target: &Target,
    rotation: Rotation<'_>,
    mut publish: impl FnMut(&IssuedCert, &str) -> Result<()>,
) -> Result<Vec<Sent>> {
    let next_ca = TestCa::new("certgate rotation, next CA")?;
    let first = rotation.first_ca.issue(
        &rotation
            .client
            .clone()
            .validity(Validity::ExpiresInDays(10)),
    )?;
    let renewed = next_ca.issue(&rotation.client.validity(Validity::ExpiresInDays(90)))?;
    let newcomer = next_ca.issue(&rotation.newcomer)?;
    let probe = |client: &IssuedCert| {
        let (target, client) = (target.clone(), client.clone());
        async move { handshake_and_get(&target, &client, "/probe").await }
    };
    let load = RotationLoad::start(target, ("first", first.clone()));
    load.run_for(20).await?;

    // The server certificate is renewed: new handshakes see the new one.
    let next_server = rotation.first_ca.issue(&rotation.server)?;
    let first_bundle = rotation.first_ca.cert_pem().to_string();
    publish(&next_server, &first_bundle)?;
    wait_until("the renewed server certificate", || async {
        probe(&first).await.0.as_deref() == Some(next_server.der.as_slice())
    })
    .await?;
    let server_renewed = Instant::now();
    load.run_for(20).await?;

    // The bundle gains the next CA: its clients are admitted from then on.
    if let (_, Ok(status)) = probe(&newcomer).await {
        bail!("a client of a CA not yet in the bundle got {status}");
    }
    publish(
        &next_server,
        &format!("{first_bundle}{}", next_ca.cert_pem()),
    )?;
    wait_until("the next CA's client admitted", || async {
        probe(&newcomer).await.1 == Ok(200)
    })
    .await?;
    load.run_for(20).await?;

    // The load's client presents its renewed certificate, then the bundle drops the first CA:
    // its certificates are refused in the handshake, the renewed client carries on.
    load.present(("renewed", renewed));
    load.run_for(20).await?;
    publish(&next_server, next_ca.cert_pem())?;
    wait_until("the first CA's client refused", || async {
        probe(&first).await.1.is_err()
    })
    .await?;
    let dropped = Instant::now();
    load.run_for(20).await?;
    let sent = load.stop().await?;

    let failed: Vec<String> = sent
        .iter()
        .filter(|s| s.outcome != Ok(200))
        .map(|s| format!("{}: {:?}", s.client, s.outcome))
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} of {} requests failed during the rotations: {failed:?}",
            failed.len(),
            sent.len()
        );
    }
    let served = |s: &Sent, cert: &[u8]| s.server.as_deref() == Some(cert);
    if !sent.iter().any(|s| served(s, rotation.original_server)) {
        bail!("no request saw the original server certificate");
    }
    if !sent
        .iter()
        .filter(|s| s.started > server_renewed)
        .all(|s| served(s, &next_server.der))
    {
        bail!("a handshake after the renewal was served the old certificate");
    }
    if !sent
        .iter()
        .any(|s| s.started > dropped && s.client == "renewed")
    {
        bail!("no request of the renewed client after the first CA was removed");
    }
    Ok(sent)
}
