//! Envoy's `envoy.config.core.v3.Metadata` as a test provides it (filter namespace -> JSON object,
//! as in `filter_metadata` of a route or another filter's dynamic metadata) and as the guest reads
//! it through `get_property`: the whole message as binary protobuf, `filter_metadata` and each
//! namespace as a map in the pairs encoding, and a field by its CEL type as Envoy's
//! `serializeValue` (`source/extensions/common/wasm/context.cc`) writes it: strings raw, numbers
//! as an 8-byte little-endian double, bools one byte, objects as maps, lists in the pairs
//! encoding with each element as a key and an empty value; a null has no serialisation
//! (SERIALIZATION_FAILURE), and neither has a map or list holding one. A path goes into a list
//! by index (`"0"`), as Envoy's `getProperty` does.

use crate::abi::{encode_pairs, Status};
use crate::error::HarnessError;
use prost::Message;
use serde_json::Value;
use std::collections::BTreeMap;

/// `filter_metadata` by namespace; each namespace a JSON object (a `google.protobuf.Struct`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    namespaces: BTreeMap<String, Value>,
}

/// The wire form of `envoy.config.core.v3.Metadata` (its `typed_filter_metadata` stays empty).
#[derive(Clone, PartialEq, Message)]
struct MetadataMessage {
    #[prost(btree_map = "string, message", tag = "1")]
    filter_metadata: BTreeMap<String, prost_types::Struct>,
}

impl Metadata {
    /// Sets namespace `namespace` to `fields`, which must be a JSON object.
    pub fn insert(&mut self, namespace: &str, fields: Value) {
        self.namespaces.insert(namespace.to_string(), fields);
    }

    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
    }

    /// Checks that every namespace is a JSON object; `what` names the metadata in the error.
    pub(crate) fn check(&self, what: &str) -> Result<(), HarnessError> {
        match self
            .namespaces
            .iter()
            .find(|(_, fields)| !fields.is_object())
        {
            Some((namespace, fields)) => Err(HarnessError::usage(format!(
                "{what} `{namespace}`: expected a JSON object of fields, got {fields}"
            ))),
            None => Ok(()),
        }
    }

    /// The value of the property path `rest` below the metadata, as Envoy serialises it.
    pub(crate) fn property(&self, rest: &[&str]) -> Result<Vec<u8>, Status> {
        match rest {
            [] => Ok(self.to_protobuf()),
            ["filter_metadata"] => {
                let pairs = self
                    .namespaces
                    .iter()
                    .map(|(namespace, fields)| Ok((namespace.as_bytes(), cel_bytes(fields)?)))
                    .collect::<Result<Vec<_>, Status>>()?;
                Ok(encode_pairs(&pairs))
            }
            ["filter_metadata", namespace, path @ ..] => {
                let mut value = self.namespaces.get(*namespace).ok_or(Status::NotFound)?;
                for key in path {
                    value = field(value, key).ok_or(Status::NotFound)?;
                }
                cel_bytes(value)
            }
            ["typed_filter_metadata"] => Ok(encode_pairs::<&[u8], &[u8]>(&[])),
            _ => Err(Status::NotFound),
        }
    }

    fn to_protobuf(&self) -> Vec<u8> {
        let filter_metadata = self
            .namespaces
            .iter()
            .filter_map(|(namespace, fields)| match to_proto(fields).kind {
                Some(prost_types::value::Kind::StructValue(fields)) => {
                    Some((namespace.clone(), fields))
                }
                _ => None,
            })
            .collect();
        MetadataMessage { filter_metadata }.encode_to_vec()
    }
}

/// A `google.protobuf.Value` from JSON.
fn to_proto(value: &Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(to_proto).collect(),
        }),
        Value::Object(fields) => Kind::StructValue(prost_types::Struct {
            fields: fields
                .iter()
                .map(|(key, value)| (key.clone(), to_proto(value)))
                .collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

/// One step of a property path below a struct value: a field of an object, an element of a list
/// by its decimal index; anything else (a scalar, a null, an index out of range) has none.
fn field<'v>(value: &'v Value, key: &str) -> Option<&'v Value> {
    match value {
        Value::Object(fields) => fields.get(key),
        Value::Array(items) => items.get(usize::try_from(key.parse::<i64>().ok()?).ok()?),
        _ => None,
    }
}

/// A struct value as Envoy's `serializeValue` writes the CEL value it becomes.
fn cel_bytes(value: &Value) -> Result<Vec<u8>, Status> {
    match value {
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        Value::Number(n) => Ok(n.as_f64().unwrap_or_default().to_le_bytes().to_vec()),
        Value::Bool(b) => Ok(vec![u8::from(*b)]),
        Value::Object(fields) => {
            let pairs = fields
                .iter()
                .map(|(key, value)| Ok((key.as_bytes(), cel_bytes(value)?)))
                .collect::<Result<Vec<_>, Status>>()?;
            Ok(encode_pairs(&pairs))
        }
        Value::Array(items) => {
            let keys = items.iter().map(cel_bytes).collect::<Result<Vec<_>, _>>()?;
            let pairs: Vec<(&[u8], &[u8])> = keys.iter().map(|key| (&key[..], &[][..])).collect();
            Ok(encode_pairs(&pairs))
        }
        Value::Null => Err(Status::SerializationFailure),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_whole_message_is_protobuf_and_fields_have_their_cel_encoding() {
        let mut metadata = Metadata::default();
        metadata.insert(
            "envoy.filters.http.jwt_authn",
            json!({"sub": "alice", "n": 2, "ok": true}),
        );
        let decoded = MetadataMessage::decode(metadata.property(&[]).unwrap().as_slice()).unwrap();
        let fields = &decoded.filter_metadata["envoy.filters.http.jwt_authn"].fields;
        assert_eq!(fields.len(), 3);
        let field = |key: &str| {
            metadata.property(&["filter_metadata", "envoy.filters.http.jwt_authn", key])
        };
        assert_eq!(field("sub"), Ok(b"alice".to_vec()));
        assert_eq!(field("n"), Ok(2.0f64.to_le_bytes().to_vec()));
        assert_eq!(field("ok"), Ok(vec![1]));
        assert_eq!(field("missing"), Err(Status::NotFound));
        let namespace = metadata
            .property(&["filter_metadata", "envoy.filters.http.jwt_authn"])
            .unwrap();
        let pairs = crate::abi::decode_pairs(&namespace);
        assert_eq!(pairs.len(), 3);
        assert!(metadata.check("dynamic metadata").is_ok());
        metadata.insert("bad", json!([1]));
        let error = metadata.check("dynamic metadata").unwrap_err().to_string();
        assert!(
            error.contains("dynamic metadata `bad`: expected a JSON object"),
            "{error}"
        );
    }

    #[test]
    fn lists_are_pairs_of_their_elements_and_nulls_have_no_serialisation() {
        let mut metadata = Metadata::default();
        metadata.insert(
            "ns",
            json!({"roles": ["admin", "ops"], "empty": [], "mixed": [true, 2, {"a": "b"}],
                   "none": null, "with_null": [null]}),
        );
        let field = |path: &[&str]| {
            let full: Vec<&str> = ["filter_metadata", "ns"]
                .iter()
                .chain(path)
                .copied()
                .collect();
            metadata.property(&full)
        };
        let roles = field(&["roles"]).unwrap();
        let mut expected = vec![2, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0];
        expected.extend_from_slice(b"admin\0\0ops\0\0");
        assert_eq!(roles, expected);
        assert_eq!(
            crate::abi::decode_pairs(&roles),
            [(b"admin".to_vec(), vec![]), (b"ops".to_vec(), vec![])]
        );
        assert_eq!(field(&["empty"]), Ok(vec![0, 0, 0, 0]));
        let mixed = crate::abi::decode_pairs(&field(&["mixed"]).unwrap());
        assert_eq!(mixed.len(), 3);
        assert_eq!(mixed[0], (vec![1], vec![]));
        // Into a list by index, as Envoy's getProperty walks a CEL list.
        assert_eq!(field(&["roles", "1"]), Ok(b"ops".to_vec()));
        assert_eq!(field(&["mixed", "2", "a"]), Ok(b"b".to_vec()));
        assert_eq!(field(&["roles", "2"]), Err(Status::NotFound));
        assert_eq!(field(&["roles", "-1"]), Err(Status::NotFound));
        assert_eq!(field(&["roles", "x"]), Err(Status::NotFound));
        assert_eq!(field(&["none"]), Err(Status::SerializationFailure));
        assert_eq!(field(&["none", "x"]), Err(Status::NotFound));
        assert_eq!(field(&["with_null"]), Err(Status::SerializationFailure));
        // The namespace holds a null, so the namespace as a map has no serialisation either.
        assert_eq!(field(&[]), Err(Status::SerializationFailure));
        // The whole message is protobuf, where lists and nulls have their own encoding.
        let decoded = MetadataMessage::decode(metadata.property(&[]).unwrap().as_slice()).unwrap();
        assert_eq!(decoded.filter_metadata["ns"].fields.len(), 5);
    }
}
