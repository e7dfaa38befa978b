//! certgate's HTTP filter served by ECDS (extension config discovery) from a file, so its
//! configuration changes in a running Envoy without draining a listener or closing a connection.
//!
//! A shipped config of `envoy/` is split in two: the listener side, whose certgate entry becomes a
//! `config_discovery` naming a file (`path_config_source`), and the filter's own block, which becomes
//! the `TypedExtensionConfig` written to that file. Everything else is the shipped config as is, so
//! a reload test runs the same listener, TLS, HCM and filter settings as the shipped one.
//!
//! A swap writes the new resource next to the file and renames it over the old one: Envoy watches
//! for that move, and a rename is atomic, so Envoy never reads half a file. Envoy's stats under
//! `extension_config_discovery.http_filter.certgate.` say whether it took the new config
//! (`update_success`, and `version_text` names the file's version) or refused it and kept the old
//! one (`update_rejected`, `config_fail`). Envoy 1.40 counts `config_reload` for a refused config too
//! (measured: a refused swap adds 1 to `config_reload`, `config_fail` and `update_rejected`), so
//! `config_reload` alone does not tell.

use crate::envoy::{config_template, Envoy, EnvoyBuilder};
use crate::template;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The name of certgate's filter entry and of its ECDS resource.
pub const FILTER_NAME: &str = "certgate";

/// The filter entry of the shipped configs that is moved to ECDS.
const SHIPPED_FILTER_ENTRY: &str = "- name: envoy.filters.http.wasm";

/// The type of the filter's config, the only type the listener accepts from the file.
const WASM_FILTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

/// How long Envoy may take to notice a swapped file and count the update.
pub const SWAP_TIMEOUT: Duration = Duration::from_secs(15);

/// The prefix of Envoy's stats about certgate's filter config (`extension_config_discovery.*`).
pub const STATS_PREFIX: &str = "extension_config_discovery.http_filter.certgate.";

/// A shipped config split for ECDS: the listener side as a template, and the filter's block.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Split {
    /// The config with certgate's entry replaced by a `config_discovery` naming
    /// `${CERTGATE_FILTER_CONFIG}`.
    listener: String,
    /// The `typed_config` of certgate's entry, indented for the resource file; it still holds
    /// `${CERTGATE_WASM}` and `${PLUGIN_CONFIG}`.
    filter: String,
}

/// Cuts certgate's entry out of `config` (`envoy/<name>` text). The entry is the list item
/// `- name: envoy.filters.http.wasm` up to the next line indented as little or less; its first line
/// after the name must be `typed_config:`.
fn split(name: &str, config: &str) -> Result<Split> {
    let lines: Vec<&str> = config.lines().collect();
    let entry = lines
        .iter()
        .position(|line| line.trim() == SHIPPED_FILTER_ENTRY)
        .with_context(|| format!("envoy/{name} has no `{SHIPPED_FILTER_ENTRY}` filter entry"))?;
    let indent = indentation(lines[entry]);
    let end = lines[entry + 1..]
        .iter()
        .position(|line| !line.trim().is_empty() && indentation(line) <= indent)
        .map_or(lines.len(), |offset| entry + 1 + offset);
    let body = &lines[entry + 1..end];
    if body.first().map(|line| line.trim()) != Some("typed_config:") {
        bail!(
            "envoy/{name}, line {}: certgate's entry must go on with `typed_config:`",
            entry + 2
        );
    }
    // The typed_config's fields sit two columns right of `typed_config:`; in the resource file they
    // sit under `typed_config:` at column 2, so at column 4.
    let strip = indent + 4;
    let filter: Vec<String> = body[1..]
        .iter()
        .map(|line| match line.get(strip..) {
            Some(rest) if indentation(line) >= strip => format!("    {rest}"),
            _ => line.trim_start().to_owned(),
        })
        .collect();
    let pad = " ".repeat(indent);
    let discovery = [
        format!("{pad}# certgate's config comes from a file (ECDS): swapping the file reloads it."),
        format!("{pad}- name: {FILTER_NAME}"),
        format!("{pad}  config_discovery:"),
        format!("{pad}    config_source:"),
        format!("{pad}      resource_api_version: V3"),
        format!("{pad}      path_config_source: {{ path: ${{CERTGATE_FILTER_CONFIG}} }}"),
        format!("{pad}    type_urls: [{WASM_FILTER_TYPE}]"),
    ];
    // The shipped header documents the shipped variables; this variant documents its own.
    let body_start = lines
        .iter()
        .position(|line| !line.starts_with('#') && !line.trim().is_empty())
        .unwrap_or(0);
    let header = [
        format!("# envoy/{name} with certgate's filter served by ECDS from ${{CERTGATE_FILTER_CONFIG}}."),
        String::new(),
    ];
    let listener: Vec<String> = header
        .into_iter()
        .chain(lines[body_start..entry].iter().map(|line| line.to_string()))
        .chain(discovery)
        .chain(lines[end..].iter().map(|line| line.to_string()))
        .collect();
    Ok(Split {
        listener: listener.join("\n") + "\n",
        filter: filter.join("\n"),
    })
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// What Envoy made of a swapped file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Swap {
    /// The new config serves new requests.
    Accepted,
    /// Envoy refused the new config and the old one keeps serving.
    Rejected,
}

/// Envoy's ECDS stats for certgate's filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigUpdates {
    /// Configs taken (`update_success`; the first load from the file counts).
    pub accepted: u64,
    /// Configs refused (`update_rejected`).
    pub rejected: u64,
    /// `config_reload`: configs applied, and in Envoy 1.40 refused ones too.
    pub reloads: u64,
    /// `config_fail`: configs whose filter could not be created.
    pub failures: u64,
    /// The `version_info` of the config serving now (`version_text`).
    pub version: String,
}

impl ConfigUpdates {
    /// The stats now (absent counters are 0: Envoy defines them on the first update).
    pub async fn of(envoy: &Envoy) -> Result<Self> {
        let stats = envoy.stats().await?;
        let counter = |name: &str| stats.counter(&format!("{STATS_PREFIX}{name}")).unwrap_or(0);
        Ok(ConfigUpdates {
            accepted: counter("update_success"),
            rejected: counter("update_rejected"),
            reloads: counter("config_reload"),
            failures: counter("config_fail"),
            version: stats
                .get(&format!("{STATS_PREFIX}version_text"))
                .unwrap_or_default()
                .trim_matches('"')
                .to_owned(),
        })
    }
}

/// The file certgate's config is served from, in its own temporary directory with the listener
/// template; removed on drop.
pub struct FilterConfigFile {
    dir: tempfile::TempDir,
    path: PathBuf,
    filter: String,
    wasm: PathBuf,
    version: u64,
}

/// The shipped config `template_name` with certgate's filter served by ECDS, running `wasm` with
/// `policy`: returns the builder of its Envoy (give it the usual variables: certificates,
/// upstream, ...) and the file to swap configs into.
pub fn certgate_from_file(
    template_name: &str,
    wasm: &Path,
    policy: &serde_json::Value,
) -> Result<(EnvoyBuilder, FilterConfigFile)> {
    let Split { listener, filter } = split(template_name, &config_template(template_name)?)?;
    let dir = tempfile::Builder::new()
        .prefix("certgate-ecds-")
        .tempdir()
        .context("creating the ECDS directory")?;
    std::fs::write(dir.path().join(template_name), listener)
        .with_context(|| format!("writing the ECDS variant of envoy/{template_name}"))?;
    let mut file = FilterConfigFile {
        path: dir.path().join("certgate-filter.yaml"),
        dir,
        filter,
        wasm: wasm.to_owned(),
        version: 0,
    };
    file.write(policy)?;
    let builder = crate::envoy(template_name)
        .template_dir(file.dir.path())
        .wasm(wasm)
        .var("CERTGATE_FILTER_CONFIG", file.path.display());
    Ok((builder, file))
}

impl FilterConfigFile {
    /// The resource file Envoy watches.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves `wasm` from the next write on: the module itself is swapped (`vm_config.code`), and
    /// Envoy starts a new VM for it, as for any change of code under the same `vm_id`.
    pub fn set_wasm(&mut self, wasm: &Path) {
        self.wasm = wasm.to_owned();
    }

    /// How many configs were written (the first is version 1).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Writes `policy` as certgate's configuration: to a new file first, then renamed over the
    /// watched one.
    pub fn write(&mut self, policy: &serde_json::Value) -> Result<()> {
        self.version += 1;
        let vars = BTreeMap::from([
            ("CERTGATE_WASM".to_owned(), self.wasm.display().to_string()),
            ("PLUGIN_CONFIG".to_owned(), policy.to_string()),
        ]);
        let typed_config =
            template::render(&self.filter, &vars).context("rendering certgate's ECDS resource")?;
        let resource = format!(
            "version_info: \"{version}\"\n\
             resources:\n\
             - \"@type\": type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig\n  \
             name: {FILTER_NAME}\n  \
             typed_config:\n{typed_config}\n",
            version = self.version
        );
        let staged = self
            .dir
            .path()
            .join(format!(".certgate-filter-{}.yaml", self.version));
        std::fs::write(&staged, resource)
            .with_context(|| format!("writing {}", staged.display()))?;
        std::fs::rename(&staged, &self.path)
            .with_context(|| format!("renaming {} over {}", staged.display(), self.path.display()))
    }

    /// Writes `policy` and waits (at most [`SWAP_TIMEOUT`]) until Envoy counts the update as
    /// accepted (and serves this version) or refused.
    pub async fn swap(&mut self, envoy: &Envoy, policy: &serde_json::Value) -> Result<Swap> {
        let before = ConfigUpdates::of(envoy).await?;
        self.write(policy)?;
        let deadline = Instant::now() + SWAP_TIMEOUT;
        loop {
            let now = ConfigUpdates::of(envoy).await?;
            if now.accepted > before.accepted && now.version == self.version.to_string() {
                return Ok(Swap::Accepted);
            }
            if now.rejected > before.rejected {
                return Ok(Swap::Rejected);
            }
            if Instant::now() > deadline {
                bail!(
                    "envoy counted no update of {} (version {}) within {SWAP_TIMEOUT:?}: {now:?}",
                    self.path.display(),
                    self.version
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "# header ${OLD}\n\
                          admin: {}\n\
                          \x20         http_filters:\n\
                          \x20         - name: envoy.filters.http.wasm\n\
                          \x20           typed_config:\n\
                          \x20             \"@type\": wasm\n\
                          \x20             config:\n\
                          \x20               # why\n\
                          \x20               value: ${PLUGIN_CONFIG}\n\
                          \n\
                          \x20         - name: envoy.filters.http.router\n\
                          \x20           typed_config: {}\n";

    #[test]
    fn the_filter_entry_moves_to_the_resource_and_the_rest_stays() {
        let split = split("x.yaml", CONFIG).unwrap();
        assert_eq!(
            split.filter,
            "    \"@type\": wasm\n    config:\n      # why\n      value: ${PLUGIN_CONFIG}\n"
        );
        assert!(!split.listener.contains("${OLD}"), "{}", split.listener);
        assert!(split
            .listener
            .contains("          - name: certgate\n            config_discovery:\n"));
        assert!(split
            .listener
            .contains("path_config_source: { path: ${CERTGATE_FILTER_CONFIG} }"));
        assert!(split.listener.contains(
            "          - name: envoy.filters.http.router\n            typed_config: {}\n"
        ));
        assert!(!split.listener.contains("envoy.filters.http.wasm"));
    }

    #[test]
    fn a_config_without_the_entry_is_named() {
        let err = split("y.yaml", "admin: {}\n").unwrap_err();
        assert!(err.to_string().contains("envoy/y.yaml has no"), "{err}");
    }

    #[test]
    fn every_shipped_config_splits() {
        for name in crate::envoy::SHIPPED_CONFIGS {
            let split = split(name, &config_template(name).unwrap()).unwrap();
            let used = template::variables(&split.filter);
            assert_eq!(
                used.into_iter().collect::<Vec<_>>(),
                ["CERTGATE_WASM", "PLUGIN_CONFIG"],
                "envoy/{name}"
            );
        }
    }
}
