//! `cargo xtask package`: `certgate.wasm` as an OCI image that Istio's `WasmPlugin` and Envoy
//! Gateway's `EnvoyExtensionPolicy` pull, written as an OCI image layout archive.
//!
//! The image is the Wasm image spec's "compat" variant: one `application/vnd.oci.image.layer.v1.tar+gzip`
//! layer holding `plugin.wasm`, and the manifest annotation `module.wasm.image/variant: compat` (Istio
//! refuses a single `application/wasm` layer). It is reproducible: the tar entry has fixed owner,
//! mode and time, the gzip header no name or time, the JSON documents sorted keys, so the same
//! `.wasm` always gives the same manifest digest, the one `WasmPlugin.sha256` and Envoy Gateway's
//! `image.sha256` compare against.

use anyhow::{bail, Context, Result};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The layer's media type (the compat variant's).
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The manifest's media type.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// The file the fetchers look for in the layer.
pub const PLUGIN_FILE: &str = "plugin.wasm";

/// The image: its content-addressed blobs and the manifest's digest.
pub struct Image {
    /// `sha256:<hex>` of the manifest.
    pub digest: String,
    /// (digest hex, bytes) of the layer, the config and the manifest.
    blobs: Vec<(String, Vec<u8>)>,
    manifest_size: usize,
}

/// `cargo xtask package [--out PATH] [--tag TAG]`: builds `certgate.wasm`, writes the archive and
/// prints the digest.
pub fn run(args: &[String]) -> Result<()> {
    let mut out = crate::build::workspace_root().join("target/package/certgate-oci.tar");
    let mut tag = env!("CARGO_PKG_VERSION").to_owned();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => out = PathBuf::from(args.next().context("--out needs a path")?),
            "--tag" => tag = args.next().context("--tag needs a tag")?.clone(),
            other => bail!("package: unknown option {other:?} (options: --out PATH, --tag TAG)"),
        }
    }
    let wasm_path = crate::build::certgate_wasm()?;
    let wasm =
        std::fs::read(&wasm_path).with_context(|| format!("reading {}", wasm_path.display()))?;
    let image = Image::of(&wasm)?;
    image.write_archive(&out, &tag)?;
    println!("{}: {} (tag {tag})", out.display(), image.digest);
    println!(
        "push it: skopeo copy oci-archive:{}:{tag} docker://REGISTRY/certgate:{tag}",
        out.display()
    );
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn descriptor(media_type: &str, bytes: &[u8]) -> serde_json::Value {
    json!({
        "mediaType": media_type,
        "digest": format!("sha256:{}", sha256_hex(bytes)),
        "size": bytes.len(),
    })
}

/// A tar holding `entries` (path, bytes) with fixed owner, mode and time.
fn reproducible_tar(entries: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    for (path, bytes) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, path, *bytes)
            .with_context(|| format!("adding {path} to a tar"))?;
    }
    builder.into_inner().context("finishing a tar")
}

impl Image {
    /// The image of one `.wasm`.
    pub fn of(wasm: &[u8]) -> Result<Image> {
        let layer_tar = reproducible_tar(&[(PLUGIN_FILE, wasm)])?;
        let mut gzip = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::best());
        gzip.write_all(&layer_tar)?;
        let layer = gzip.finish().context("compressing the layer")?;
        let config = serde_json::to_vec(&json!({
            "architecture": "wasm",
            "os": "wasip1",
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha256_hex(&layer_tar))]},
            "config": {},
        }))?;
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": descriptor(CONFIG_MEDIA_TYPE, &config),
            "layers": [descriptor(LAYER_MEDIA_TYPE, &layer)],
            "annotations": {"module.wasm.image/variant": "compat"},
        }))?;
        let digest = format!("sha256:{}", sha256_hex(&manifest));
        let manifest_size = manifest.len();
        let blobs = [layer, config, manifest]
            .into_iter()
            .map(|blob| (sha256_hex(&blob), blob))
            .collect();
        Ok(Image {
            digest,
            blobs,
            manifest_size,
        })
    }

    /// Writes the OCI image layout (`oci-layout`, `index.json` naming the manifest `tag`,
    /// `blobs/sha256/…`) as one tar at `out`, through a temporary file: never half-written.
    pub fn write_archive(&self, out: &Path, tag: &str) -> Result<()> {
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": MANIFEST_MEDIA_TYPE,
                "digest": self.digest,
                "size": self.manifest_size,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }],
        }))?;
        let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
        let blob_paths: Vec<String> = self
            .blobs
            .iter()
            .map(|(hex, _)| format!("blobs/sha256/{hex}"))
            .collect();
        let mut entries: Vec<(&str, &[u8])> = vec![("oci-layout", layout), ("index.json", &index)];
        for (path, (_, bytes)) in blob_paths.iter().zip(&self.blobs) {
            entries.push((path, bytes));
        }
        let archive = reproducible_tar(&entries)?;
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let partial = out.with_extension("tar.partial");
        std::fs::write(&partial, archive)
            .with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, out).with_context(|| format!("writing {}", out.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// A module-shaped payload: the test is about the packaging, not the filter.
    fn wasm() -> Vec<u8> {
        let mut bytes = b"\0asm\x01\0\0\0".to_vec();
        bytes.extend((0..20_000u32).map(|i| (i % 251) as u8));
        bytes
    }

    #[test]
    fn the_same_wasm_gives_the_same_image_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
        let image = Image::of(&wasm()).unwrap();
        image.write_archive(&first, "v1").unwrap();
        let again = Image::of(&wasm()).unwrap();
        again.write_archive(&second, "v1").unwrap();
        assert_eq!(image.digest, again.digest);
        assert_eq!(
            std::fs::read(&first).unwrap(),
            std::fs::read(&second).unwrap()
        );
        let mut other = wasm();
        other.push(0);
        assert_ne!(Image::of(&other).unwrap().digest, image.digest);
    }

    /// The registry, killed on drop (also when the test fails).
    struct Registry {
        child: Child,
        port: u16,
        _storage: tempfile::TempDir,
    }

    impl Registry {
        fn start() -> Registry {
            let storage = tempfile::tempdir().unwrap();
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let config = storage.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                    storage.path().join("data").display()
                ),
            )
            .unwrap();
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("docker-registry (cargo xtask test installs it)");
            let registry = Registry {
                child,
                port,
                _storage: storage,
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "the registry never listened");
                std::thread::sleep(Duration::from_millis(50));
            }
            registry
        }
    }

    impl Drop for Registry {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn skopeo(args: &[&str]) -> String {
        let output = Command::new("skopeo")
            .args(args)
            .output()
            .expect("skopeo (cargo xtask test installs it)");
        assert!(
            output.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn blob(layout: &Path, digest: &str) -> Vec<u8> {
        let hex = digest.strip_prefix("sha256:").unwrap();
        std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()
    }

    /// Pushed with skopeo to a real registry and pulled back, the image is what the fetchers
    /// accept (media types, compat annotation, one layer) and carries the `.wasm` byte for byte.
    #[test]
    fn the_image_round_trips_through_a_registry() {
        let work = tempfile::tempdir().unwrap();
        let archive = work.path().join("certgate-oci.tar");
        let image = Image::of(&wasm()).unwrap();
        image.write_archive(&archive, "v1").unwrap();
        let registry = Registry::start();
        let reference = format!("docker://127.0.0.1:{}/certgate:v1", registry.port);
        skopeo(&[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &format!("oci-archive:{}:v1", archive.display()),
            &reference,
        ]);
        let remote_digest = skopeo(&[
            "inspect",
            "--tls-verify=false",
            "--format",
            "{{.Digest}}",
            &reference,
        ]);
        assert_eq!(remote_digest.trim(), image.digest, "the digest to pin");
        let manifest: serde_json::Value = serde_json::from_str(&skopeo(&[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &reference,
        ]))
        .unwrap();
        assert_eq!(manifest["mediaType"], MANIFEST_MEDIA_TYPE);
        assert_eq!(
            manifest["annotations"]["module.wasm.image/variant"],
            "compat"
        );
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1, "the compat variant has one layer");
        assert_eq!(layers[0]["mediaType"], LAYER_MEDIA_TYPE);

        let pulled = work.path().join("pulled");
        skopeo(&[
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &reference,
            &format!("oci:{}:v1", pulled.display()),
        ]);
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(pulled.join("index.json")).unwrap()).unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&blob(
            &pulled,
            index["manifests"][0]["digest"].as_str().unwrap(),
        ))
        .unwrap();
        let layer = blob(&pulled, manifest["layers"][0]["digest"].as_str().unwrap());
        let mut layer_tar = tar::Archive::new(flate2::read::GzDecoder::new(layer.as_slice()));
        let mut files = Vec::new();
        for entry in layer_tar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            files.push((path, bytes));
        }
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].0, PLUGIN_FILE);
        assert!(
            files[0].1 == wasm(),
            "plugin.wasm is the .wasm byte for byte"
        );
    }
}
