//! Envoy's `declare_property` foreign function: a root context declares the type of a property its
//! streams will set, and Envoy keeps it as typed filter state. A `google.protobuf.Struct` declared
//! this way is what Envoy's access log reads field by field (`%CEL(filter_state['wasm.x'].f)%`); the
//! harness decodes it into the same text
//! ([`Exchange::filter_state_fields`](crate::Exchange::filter_state_fields)).

use crate::abi::Status;
use prost::Message;
use std::collections::BTreeMap;

/// The foreign function's name.
pub(crate) const DECLARE_PROPERTY: &str = "declare_property";

/// The type URL whose values the harness decodes as a struct.
const STRUCT_TYPE: &str = "type.googleapis.com/google.protobuf.Struct";

/// Envoy's `envoy.source.extensions.common.wasm.DeclarePropertyArguments`.
#[derive(Clone, PartialEq, Message)]
struct DeclarePropertyArguments {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(bool, tag = "2")]
    readonly: bool,
    /// WasmType: BYTES = 0, STRING = 1, FLATBUFFERS = 2, PROTOBUF = 3.
    #[prost(int32, tag = "3")]
    r#type: i32,
    #[prost(bytes = "vec", tag = "4")]
    schema: Vec<u8>,
    /// LifeSpan: FILTER_CHAIN = 0, DOWNSTREAM_REQUEST = 1, DOWNSTREAM_CONNECTION = 2.
    #[prost(int32, tag = "5")]
    span: i32,
}

/// What a root context declared about a property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeclaredProperty {
    pub readonly: bool,
    /// A protobuf `google.protobuf.Struct`, readable field by field.
    pub is_struct: bool,
}

/// Declares a property for a root context, as Envoy does: a name declared twice on the same root
/// context, or arguments that do not decode, are refused with BAD_ARGUMENT.
pub(crate) fn declare(
    declared: &mut BTreeMap<String, DeclaredProperty>,
    arguments: &[u8],
) -> Result<Vec<u8>, Status> {
    let arguments = DeclarePropertyArguments::decode(arguments).map_err(|_| Status::BadArgument)?;
    if arguments.name.is_empty() || declared.contains_key(&arguments.name) {
        return Err(Status::BadArgument);
    }
    let is_struct = arguments.r#type == 3 && arguments.schema == STRUCT_TYPE.as_bytes();
    declared.insert(
        arguments.name,
        DeclaredProperty {
            readonly: arguments.readonly,
            is_struct,
        },
    );
    Ok(Vec::new())
}

/// A `google.protobuf.Struct`'s fields as Envoy's `%CEL(...)%` access-log operator prints them:
/// strings as they are, whole numbers without a fraction, booleans as `true`/`false`; nested
/// lists and structs as `-`. `None` when the bytes are not a struct.
pub fn struct_fields(bytes: &[u8]) -> Option<BTreeMap<String, String>> {
    use prost_types::value::Kind;
    let decoded = prost_types::Struct::decode(bytes).ok()?;
    Some(
        decoded
            .fields
            .into_iter()
            .map(|(name, value)| {
                let text = match value.kind {
                    Some(Kind::StringValue(text)) => text,
                    Some(Kind::NumberValue(number))
                        if number.fract() == 0.0 && number.abs() < 1e15 =>
                    {
                        format!("{}", number as i64)
                    }
                    Some(Kind::NumberValue(number)) => number.to_string(),
                    Some(Kind::BoolValue(flag)) => flag.to_string(),
                    Some(Kind::NullValue(_)) => "null".to_owned(),
                    Some(Kind::ListValue(_) | Kind::StructValue(_)) | None => "-".to_owned(),
                };
                (name, text)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arguments(name: &str, r#type: i32, schema: &str) -> Vec<u8> {
        DeclarePropertyArguments {
            name: name.into(),
            readonly: false,
            r#type,
            schema: schema.as_bytes().to_vec(),
            span: 1,
        }
        .encode_to_vec()
    }

    #[test]
    fn a_name_is_declared_once_per_root_context() {
        let mut declared = BTreeMap::new();
        assert_eq!(
            declare(&mut declared, &arguments("r", 3, STRUCT_TYPE)),
            Ok(vec![])
        );
        assert_eq!(
            declare(&mut declared, &arguments("r", 3, STRUCT_TYPE)),
            Err(Status::BadArgument)
        );
        assert!(declared["r"].is_struct);
        assert_eq!(declare(&mut declared, &arguments("b", 0, "")), Ok(vec![]));
        assert!(!declared["b"].is_struct);
        assert_eq!(declare(&mut declared, &[0xff]), Err(Status::BadArgument));
    }

    #[test]
    fn struct_fields_print_as_envoy_cel_does() {
        use prost_types::{value::Kind, Struct, Value};
        let value = |kind| Value { kind: Some(kind) };
        let record = Struct {
            fields: [
                (
                    "decision".to_owned(),
                    value(Kind::StringValue("allow".into())),
                ),
                ("days".to_owned(), value(Kind::NumberValue(30.0))),
                ("ratio".to_owned(), value(Kind::NumberValue(0.5))),
                ("flag".to_owned(), value(Kind::BoolValue(true))),
            ]
            .into_iter()
            .collect(),
        };
        let fields = struct_fields(&record.encode_to_vec()).unwrap();
        assert_eq!(fields["decision"], "allow");
        assert_eq!(fields["days"], "30");
        assert_eq!(fields["ratio"], "0.5");
        assert_eq!(fields["flag"], "true");
        assert_eq!(struct_fields(&[0x0a, 0x05]), None, "truncated");
    }
}
