//! YAML files of the repository as JSON values: the Kubernetes manifests of `deploy/`, the CRDs they
//! are checked against and the Prometheus rules, read the way Kubernetes and Prometheus read them
//! (YAML 1.2 core schema: `on` and `yes` stay strings), one value per document.

use serde_json::{Map, Number, Value};
use std::path::Path;
use yaml_rust2::{Yaml, YamlLoader};

/// Every document of the YAML file at `path` (relative to the workspace root), in order.
pub fn documents(path: &str) -> Vec<Value> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|error| panic!("reading {}: {error}", file.display()));
    parse(&text).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// The only document of the YAML file at `path`.
pub fn document(path: &str) -> Value {
    let mut documents = documents(path);
    assert_eq!(documents.len(), 1, "{path} must hold one YAML document");
    documents.remove(0)
}

/// Every document of `text`; an error names what could not be read.
pub fn parse(text: &str) -> Result<Vec<Value>, String> {
    let documents = YamlLoader::load_from_str(text).map_err(|error| error.to_string())?;
    documents
        .iter()
        .filter(|document| !document.is_null())
        .map(|document| to_json(document, "$"))
        .collect()
}

fn to_json(yaml: &Yaml, path: &str) -> Result<Value, String> {
    Ok(match yaml {
        Yaml::Null => Value::Null,
        Yaml::Boolean(value) => Value::Bool(*value),
        Yaml::Integer(value) => Value::Number(Number::from(*value)),
        Yaml::Real(text) => text
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("{path}: {text:?} is not a finite number"))?,
        Yaml::String(text) => Value::String(text.clone()),
        Yaml::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(index, item)| to_json(item, &format!("{path}[{index}]")))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Hash(entries) => {
            let mut object = Map::new();
            for (key, value) in entries {
                let key = match key {
                    Yaml::String(key) => key.clone(),
                    Yaml::Integer(key) => key.to_string(),
                    Yaml::Boolean(key) => key.to_string(),
                    other => return Err(format!("{path}: the key {other:?} is not a string")),
                };
                let value = to_json(value, &format!("{path}.{key}"))?;
                object.insert(key, value);
            }
            Value::Object(object)
        }
        Yaml::Alias(_) | Yaml::BadValue => {
            return Err(format!("{path}: an alias or a value YAML cannot read"))
        }
    })
}
