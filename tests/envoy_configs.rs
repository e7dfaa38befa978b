//! The configs shipped in `envoy/`: each renders and passes `envoy --mode validate` with certgate
//! loaded, documents every variable it uses, and carries the same metric tags and access-log format;
//! a configuration certgate refuses keeps Envoy from starting, with certgate's reason in its log.

use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;
use testkit::envoy::{config_template, shipped_policy, SHIPPED_CONFIGS, SHIPPED_POLICIES};
use testkit::{envoy, template, Pki};

/// A policy every shipped config runs with: one route per config's route names.
fn minimal_policy() -> serde_json::Value {
    json!({
        "routes": [{"name": "admin", "match": {"route_name": "admin"},
                    "allow": [{"uri": "spiffe://mesh.local/ns/ops/sa/*"}]}],
    })
}

#[test]
fn every_shipped_config_passes_envoy_validate_with_certgate_loaded() {
    let pki = Pki::new().unwrap();
    let failures: Vec<String> = SHIPPED_CONFIGS
        .iter()
        .filter_map(|name| {
            envoy(name)
                .cert_dir(&pki.dir)
                .upstream_port(8080)
                .plugin_config(&minimal_policy())
                .validate()
                .err()
                .map(|e| format!("{name}: {e:#}"))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_shipped_policies_load_in_their_configs() {
    let pki = Pki::new().unwrap();
    for (policy, config) in SHIPPED_POLICIES
        .iter()
        .zip(["sidecar.yaml", "gateway.yaml"])
    {
        let loaded = envoy(config)
            .cert_dir(&pki.dir)
            .upstream_port(8080)
            .plugin_config(&shipped_policy(policy).unwrap())
            .validate();
        if let Err(error) = loaded {
            panic!("{policy} in {config}: {error:#}");
        }
    }
}

/// `#   ${NAME}` lines in a config's opening comment.
fn documented_variables(config: &str) -> BTreeSet<String> {
    config
        .lines()
        .take_while(|line| line.starts_with('#') || line.is_empty())
        .filter_map(|line| line.trim_start_matches('#').trim_start().strip_prefix("${"))
        .filter_map(|rest| rest.split_once('}'))
        .map(|(name, _)| name.to_owned())
        .collect()
}

#[test]
fn every_variable_a_config_uses_is_documented_in_its_header() {
    for name in SHIPPED_CONFIGS {
        let config = config_template(name).unwrap();
        let used = template::variables(config.split_once("\nadmin:").unwrap().1);
        assert_eq!(documented_variables(&config), used, "envoy/{name}");
        // envsubst would also replace a bare `$NAME`; testkit only renders `${NAME}`.
        let bare = config
            .match_indices('$')
            .filter(|(at, _)| {
                config[at + 1..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            })
            .count();
        assert_eq!(bare, 0, "envoy/{name} has a bare $NAME variable");
    }
}

/// The lines of `config` from the one starting with `first` up to (not including) the first line
/// after it that starts with `until`.
fn block<'a>(config: &'a str, first: &str, until: &str) -> Vec<&'a str> {
    let lines: Vec<&str> = config.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_start().starts_with(first))
        .unwrap_or_else(|| panic!("no line starting with {first:?}"));
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.trim_start().starts_with(until))
        .map_or(lines.len(), |offset| start + 1 + offset);
    lines[start..end].to_vec()
}

#[test]
fn every_config_has_the_same_metric_tags_and_access_log_format() {
    let configs: Vec<(&str, String)> = SHIPPED_CONFIGS
        .iter()
        .map(|name| (*name, config_template(name).unwrap()))
        .collect();
    let (first_name, first) = &configs[0];
    for (name, config) in &configs[1..] {
        assert_eq!(
            block(config, "stats_config:", "static_resources:"),
            block(first, "stats_config:", "static_resources:"),
            "stats_config of envoy/{name} differs from envoy/{first_name}"
        );
        assert_eq!(
            block(config, "access_log:", "route_config:"),
            block(first, "access_log:", "route_config:"),
            "access_log of envoy/{name} differs from envoy/{first_name}"
        );
    }
}

#[test]
fn envoy_refuses_an_invalid_certgate_config_and_logs_why() {
    let pki = Pki::new().unwrap();
    let invalid = json!({"routes": [{"name": "admin", "allow": [{"dns": "a*.b"}]}]});
    let (status, log) = envoy("sidecar.yaml")
        .cert_dir(&pki.dir)
        .upstream_port(8080)
        .plugin_config(&invalid)
        .run_expecting_exit(Duration::from_secs(30))
        .unwrap();
    assert!(
        !status.success(),
        "envoy accepted an invalid certgate config"
    );
    assert!(
        log.contains("routes[0].allow[0].dns"),
        "certgate's error does not name the field:\n{log}"
    );
    assert!(
        log.contains("Unable to create Wasm plugin certgate"),
        "envoy did not refuse the plugin:\n{log}"
    );
}
