//! Writing the Envoy templates as block-style YAML, keys in the order built: strings are
//! double-quoted (JSON escaping is valid YAML), a template variable (`${NAME}`) is written bare so
//! a number field renders as a number, `${PLUGIN_CONFIG}` as a `|` block (as in `envoy/*.yaml`, so
//! the one-line JSON policy stays a string), and a raw block verbatim under its key.

/// A YAML value as the templates need it.
#[derive(Clone, Debug, PartialEq)]
pub enum Y {
    Str(String),
    Int(i64),
    Bool(bool),
    /// `${NAME}`, written bare.
    Var(&'static str),
    /// `key: |` and the variable on the next line.
    Block(&'static str),
    /// Lines written as they are, re-indented under their key.
    Raw(String),
    List(Vec<Y>),
    Map(Vec<(String, Y)>),
}

pub fn s(text: impl Into<String>) -> Y {
    Y::Str(text.into())
}

pub fn map<const N: usize>(entries: [(&str, Y); N]) -> Y {
    Y::Map(
        entries
            .into_iter()
            .map(|(key, value)| (key.to_string(), value))
            .collect(),
    )
}

impl Y {
    /// Adds `key: value` to a mapping (nothing on other values).
    pub fn with(mut self, key: &str, value: Y) -> Y {
        if let Y::Map(entries) = &mut self {
            entries.push((key.to_string(), value));
        }
        self
    }
}

pub fn to_yaml(value: &Y) -> String {
    let mut out = String::new();
    write_value(&mut out, value, 0);
    out
}

fn scalar(value: &Y) -> Option<String> {
    match value {
        Y::Str(text) => Some(serde_json::Value::String(text.clone()).to_string()),
        Y::Int(n) => Some(n.to_string()),
        Y::Bool(b) => Some(b.to_string()),
        Y::Var(name) => Some(format!("${{{name}}}")),
        Y::List(items) if items.is_empty() => Some("[]".into()),
        Y::Map(entries) if entries.is_empty() => Some("{}".into()),
        _ => None,
    }
}

fn write_value(out: &mut String, value: &Y, indent: usize) {
    let pad = " ".repeat(indent);
    match value {
        Y::Map(entries) if !entries.is_empty() => {
            for (key, value) in entries {
                out.push_str(&pad);
                out.push_str(key);
                out.push(':');
                write_after_key(out, value, indent);
            }
        }
        Y::List(items) if !items.is_empty() => {
            for item in items {
                out.push_str(&pad);
                out.push_str("- ");
                match (item, scalar(item)) {
                    (_, Some(text)) => {
                        out.push_str(&text);
                        out.push('\n');
                    }
                    (Y::Map(_), None) => {
                        // The first key on the dash's line, the others under it.
                        let mut nested = String::new();
                        write_value(&mut nested, item, indent + 2);
                        out.push_str(nested.trim_start());
                    }
                    (_, None) => {
                        out.push('\n');
                        write_value(out, item, indent + 2);
                    }
                }
            }
        }
        other => {
            out.push_str(&pad);
            out.push_str(&scalar(other).unwrap_or_default());
            out.push('\n');
        }
    }
}

fn write_after_key(out: &mut String, value: &Y, indent: usize) {
    match value {
        Y::Block(name) => {
            out.push_str(" |\n");
            out.push_str(&" ".repeat(indent + 2));
            out.push_str(&format!("${{{name}}}\n"));
        }
        Y::Raw(block) => {
            out.push('\n');
            for line in block.lines() {
                if !line.trim().is_empty() {
                    out.push_str(&" ".repeat(indent + 2));
                    out.push_str(line);
                }
                out.push('\n');
            }
        }
        _ => match scalar(value) {
            Some(text) => {
                out.push(' ');
                out.push_str(&text);
                out.push('\n');
            }
            None => {
                out.push('\n');
                write_value(out, value, indent + 2);
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_block_yaml_with_bare_variables_and_quoted_strings() {
        let yaml = to_yaml(&map([
            (
                "address",
                map([(
                    "socket_address",
                    map([
                        ("address", Y::Var("LISTENER_ADDRESS")),
                        ("port_value", Y::Var("LISTENER_PORT")),
                    ]),
                )]),
            ),
            (
                "routes",
                Y::List(vec![
                    map([("name", s("a:b")), ("match", map([("prefix", s("/"))]))]),
                    map([("name", s("c"))]),
                ]),
            ),
            ("empty", Y::List(vec![])),
            ("value", Y::Block("PLUGIN_CONFIG")),
            ("log", Y::Raw("- name: x\n  path: y\n".into())),
        ]));
        assert_eq!(
            yaml,
            "address:\n  socket_address:\n    address: ${LISTENER_ADDRESS}\n    port_value: ${LISTENER_PORT}\n\
             routes:\n  - name: \"a:b\"\n    match:\n      prefix: \"/\"\n  - name: \"c\"\n\
             empty: []\nvalue: |\n  ${PLUGIN_CONFIG}\nlog:\n  - name: x\n    path: y\n"
        );
    }
}
