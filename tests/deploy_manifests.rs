//! The Kubernetes manifests of `deploy/istio/` and `deploy/envoy-gateway/` are what their API servers
//! accept and what certgate accepts: each document validates against the official CRD schema of its
//! kind (`tests/fixtures/crds/`, sources in its README) read as Kubernetes reads a structural schema,
//! every certgate policy embedded in them passes certgate's own check (`on_configure` of the real
//! `certgate.wasm`, what `certgate check` runs), and the metric labels they configure are the
//! shipped configs' ones, which the Prometheus suite proves end to end.

mod support;

use host_harness::{LogLevel, Plugin, PluginSettings};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use support::yaml;

/// The folders of manifests, relative to the workspace root.
const MANIFEST_DIRS: [&str; 2] = ["deploy/istio", "deploy/envoy-gateway"];

/// Core Kubernetes kinds the manifests use, which no CRD describes.
const CORE_KINDS: [(&str, &str); 1] = [("v1", "ConfigMap")];

/// The CRDs of `tests/fixtures/crds/` by (apiVersion, kind), each version's schema prepared for
/// validation.
fn schemas() -> BTreeMap<(String, String), jsonschema::Validator> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/crds");
    let mut schemas = BTreeMap::new();
    for file in yaml_files(&dir) {
        let path = format!("tests/fixtures/crds/{file}");
        let crd = yaml::document(&path);
        let group = crd["spec"]["group"].as_str().unwrap_or_default();
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap_or_default();
        assert!(
            !group.is_empty() && !kind.is_empty(),
            "{path}: no spec.group or spec.names.kind"
        );
        for version in crd["spec"]["versions"].as_array().into_iter().flatten() {
            let name = version["name"].as_str().unwrap_or_default();
            let api_version = format!("{group}/{name}");
            let mut schema = version["schema"]["openAPIV3Schema"].clone();
            assert!(schema.is_object(), "{path}: {name} has no openAPIV3Schema");
            add_object_envelope(&mut schema, &api_version, kind);
            structural(&mut schema);
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft4)
                .build(&schema)
                .unwrap_or_else(|error| panic!("{path}: the schema of {name}: {error}"));
            schemas.insert((api_version, kind.to_owned()), validator);
        }
    }
    schemas
}

/// The `.yaml` files of `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("reading {}: {error}", dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml"))
        .collect();
    files.sort();
    files
}

/// Kubernetes checks `apiVersion`, `kind` and `metadata` (an ObjectMeta) on every object; CRD schemas
/// leave them out. These are the ObjectMeta fields a manifest sets; anything else is refused.
fn add_object_envelope(schema: &mut Value, api_version: &str, kind: &str) {
    let string_map = json!({"type": "object", "additionalProperties": {"type": "string"}});
    let properties = schema
        .as_object_mut()
        .expect("an object schema")
        .entry("properties")
        .or_insert_with(|| json!({}));
    properties["apiVersion"] = json!({"enum": [api_version]});
    properties["kind"] = json!({"enum": [kind]});
    properties["metadata"] = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253},
            "namespace": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
            "labels": string_map,
            "annotations": string_map,
        },
        "required": ["name"],
    });
    schema["required"] = json!(["apiVersion", "kind", "metadata"]);
}

/// A CRD schema as Kubernetes applies it: an object schema with `properties` accepts no other
/// field (strict field validation, `kubectl apply`'s default) unless it says
/// `x-kubernetes-preserve-unknown-fields: true`; `nullable: true` admits `null`.
fn structural(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let preserves_unknown =
        object.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    if object.contains_key("properties")
        && !preserves_unknown
        && !object.contains_key("additionalProperties")
    {
        object.insert("additionalProperties".into(), json!(false));
    }
    if object.get("nullable") == Some(&json!(true)) {
        if let Some(Value::String(kind)) = object.get("type").cloned() {
            object.insert("type".into(), json!([kind, "null"]));
        }
    }
    for (key, child) in object.iter_mut() {
        match key.as_str() {
            "properties" | "patternProperties" | "definitions" => {
                for schema in child
                    .as_object_mut()
                    .into_iter()
                    .flat_map(|map| map.values_mut())
                {
                    structural(schema);
                }
            }
            "items" | "additionalProperties" | "not" => structural(child),
            "allOf" | "anyOf" | "oneOf" => {
                for schema in child.as_array_mut().into_iter().flatten() {
                    structural(schema);
                }
            }
            _ => {}
        }
    }
}

/// Every document of every manifest file: (where, document), where is `file#index kind/name`.
fn manifests() -> Vec<(String, Value)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut all = Vec::new();
    for dir in MANIFEST_DIRS {
        let files = yaml_files(&root.join(dir));
        assert!(!files.is_empty(), "{dir} has no manifests");
        for file in files {
            let path = format!("{dir}/{file}");
            for (index, document) in yaml::documents(&path).into_iter().enumerate() {
                let place = format!(
                    "{path}, document {}: {}/{}",
                    index + 1,
                    document["kind"].as_str().unwrap_or("?"),
                    document["metadata"]["name"].as_str().unwrap_or("?")
                );
                all.push((place, document));
            }
        }
    }
    all
}

/// The schema problems of `manifest`, each with its field path.
fn problems(
    schemas: &BTreeMap<(String, String), jsonschema::Validator>,
    manifest: &Value,
) -> Vec<String> {
    let api_version = manifest["apiVersion"].as_str().unwrap_or_default();
    let kind = manifest["kind"].as_str().unwrap_or_default();
    if CORE_KINDS.contains(&(api_version, kind)) {
        return Vec::new();
    }
    let Some(validator) = schemas.get(&(api_version.to_owned(), kind.to_owned())) else {
        return vec![format!(
            "no CRD in tests/fixtures/crds describes {api_version} {kind}"
        )];
    };
    validator
        .iter_errors(manifest)
        .map(|error| format!("{}: {error}", error.instance_path()))
        .collect()
}

#[test]
fn every_manifest_matches_the_crd_schema_of_its_kind() {
    let schemas = schemas();
    let manifests = manifests();
    let mut failures = Vec::new();
    let mut validated = 0;
    for (place, manifest) in &manifests {
        let found = problems(&schemas, manifest);
        if !found.is_empty() {
            failures.push(format!("{place}:\n  {}", found.join("\n  ")));
        }
        let kind = (
            manifest["apiVersion"].as_str().unwrap_or_default(),
            manifest["kind"].as_str().unwrap_or_default(),
        );
        if !CORE_KINDS.contains(&kind) {
            validated += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Istio: Gateway, 2 WasmPlugins, PeerAuthentication; Envoy Gateway: Gateway, 2 HTTPRoutes,
    // ClientTrafficPolicy, 2 EnvoyExtensionPolicies, EnvoyProxy.
    assert_eq!(validated, 11, "manifests checked against a CRD");
}

/// The validator refuses what the API server refuses, and keeps what it keeps: otherwise the test
/// above would pass on anything.
#[test]
fn the_schemas_refuse_unknown_fields_wrong_enums_and_missing_required_fields() {
    let schemas = schemas();
    let (_, plugin) = manifests()
        .into_iter()
        .find(|(_, manifest)| manifest["kind"] == "WasmPlugin")
        .expect("a WasmPlugin in deploy/istio");
    assert_eq!(problems(&schemas, &plugin), Vec::<String>::new());

    let refused = |edit: &dyn Fn(&mut Value), expected: &str| {
        let mut manifest = plugin.clone();
        edit(&mut manifest);
        let found = problems(&schemas, &manifest);
        assert!(
            found.iter().any(|problem| problem.contains(expected)),
            "expected a problem mentioning {expected:?}, got {found:?}"
        );
    };
    refused(
        &|m| m["spec"]["failStrategy"] = json!("FAIL_CLOSED"),
        "/spec/failStrategy",
    );
    refused(&|m| m["spec"]["phaze"] = json!("AUTHZ"), "phaze");
    refused(
        &|m| m["spec"]["sha256"] = json!("sha256:abc"),
        "/spec/sha256",
    );
    refused(&|m| m["metadata"]["nmae"] = json!("x"), "nmae");
    refused(
        &|m| {
            m["spec"].as_object_mut().unwrap().remove("url");
        },
        "url",
    );
    refused(
        &|m| m["kind"] = json!("WasmPlugins"),
        "no CRD in tests/fixtures/crds describes",
    );

    // pluginConfig preserves unknown fields: any policy shape is Istio's to pass on.
    let mut manifest = plugin.clone();
    manifest["spec"]["pluginConfig"]["anything"] = json!({"nested": [1, 2]});
    assert_eq!(problems(&schemas, &manifest), Vec::<String>::new());
}

/// The certgate policies inside the manifests: (where, policy).
fn embedded_policies() -> Vec<(String, Value)> {
    let mut policies = Vec::new();
    for (place, manifest) in manifests() {
        match manifest["kind"].as_str() {
            Some("WasmPlugin") => {
                policies.push((place, manifest["spec"]["pluginConfig"].clone()));
            }
            Some("EnvoyExtensionPolicy") => {
                for (index, wasm) in manifest["spec"]["wasm"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    policies.push((format!("{place}, wasm[{index}]"), wasm["config"].clone()));
                }
            }
            _ => {}
        }
    }
    policies
}

#[test]
fn every_embedded_policy_passes_certgates_own_check() {
    let policies = embedded_policies();
    assert_eq!(policies.len(), 4, "{policies:?}");
    let mut refused = Vec::new();
    for (place, policy) in &policies {
        let settings = support::today(PluginSettings::new("certgate")).configuration_json(policy);
        let plugin = Plugin::new(support::certgate(), settings).expect("certgate starts");
        let configured = plugin.configured();
        if !configured.accepted {
            let errors: Vec<&str> = configured
                .logs
                .iter()
                .filter(|record| record.level >= LogLevel::Error)
                .map(|record| record.message.as_str())
                .collect();
            refused.push(format!("{place}:\n  {}", errors.join("\n  ")));
        }
    }
    assert!(refused.is_empty(), "{}", refused.join("\n"));
}

/// `stats_config` of the shipped sidecar config (the one the Prometheus suite scrapes).
fn shipped_stats_config() -> Value {
    let template = testkit::envoy::config_template("sidecar.yaml").unwrap();
    let placeholders = testkit::template::variables(&template)
        .into_iter()
        .map(|name| (name, "0".to_owned()))
        .collect();
    let rendered = testkit::template::render(&template, &placeholders).unwrap();
    let config = yaml::parse(&rendered).unwrap().remove(0);
    json!({
        "stats_flush_interval": config["stats_flush_interval"],
        "stats_config": config["stats_config"],
    })
}

#[test]
fn istio_and_envoy_gateway_proxies_get_the_shipped_metric_labels() {
    let shipped = shipped_stats_config();
    assert!(shipped["stats_config"]["stats_tags"]
        .as_array()
        .is_some_and(|tags| tags.len() == 6));

    let config_map = yaml::document("deploy/istio/telemetry.yaml");
    let istio: Value = serde_json::from_str(
        config_map["data"]["custom_bootstrap.json"]
            .as_str()
            .expect("deploy/istio/telemetry.yaml: data.custom_bootstrap.json"),
    )
    .expect("custom_bootstrap.json is JSON");
    assert_eq!(istio, shipped, "deploy/istio/telemetry.yaml");

    let envoy_proxy = yaml::document("deploy/envoy-gateway/envoy-proxy.yaml");
    assert_eq!(envoy_proxy["spec"]["bootstrap"]["type"], "Merge");
    let merged = yaml::parse(
        envoy_proxy["spec"]["bootstrap"]["value"]
            .as_str()
            .expect("deploy/envoy-gateway/envoy-proxy.yaml: spec.bootstrap.value"),
    )
    .unwrap()
    .remove(0);
    assert_eq!(merged, shipped, "deploy/envoy-gateway/envoy-proxy.yaml");
}
