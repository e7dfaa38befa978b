//! The documents of one input file as a tree that remembers where each value is: its line, and the
//! YAML tag written on it (`!Ref`, `!GetAtt`). YAML and JSON go through the same reader (JSON is
//! YAML's flow style), so every later error can name the line of the value it is about; a JSON
//! file that the YAML reader refuses (tab indentation) is read by serde_json and has no lines.

use std::collections::HashMap;
use std::fmt;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One value and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// 1-based line; 0 when unknown.
    pub line: usize,
    /// The tag written on the value, `!` included (`!Ref`); `None` for untagged values.
    pub tag: Option<String>,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    /// A scalar's text; `plain` when it was written without quotes (so `8080` may be a number).
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Keys in the order written.
    Map(Vec<(String, Node)>),
}

impl Node {
    /// What the value is, for "expected a string, found a mapping".
    pub fn describe(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The value of `key` in a mapping, keys compared without case (App Mesh's API says
    /// `certificateArn`, CloudFormation `CertificateArn`, the Kubernetes CRDs `certificateARN`).
    pub fn get(&self, key: &str) -> Option<(&str, &Node)> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(key))
                .map(|(name, node)| (name.as_str(), node)),
            _ => None,
        }
    }

    pub fn entries(&self) -> Option<&[(String, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn scalar(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }
}

/// A document that is not YAML (or JSON): the message and its line.
#[derive(Debug)]
pub struct SyntaxError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

/// Every document of `text` (a YAML stream, or one JSON document). `json` says the file is JSON,
/// so its syntax errors are serde_json's (which name JSON's own problems).
pub fn parse(text: &str, json: bool) -> Result<Vec<Node>, SyntaxError> {
    if json {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|error| SyntaxError {
            line: error.line(),
            column: error.column(),
            message: strip_position(&error.to_string()),
        })?;
        return Ok(parse_yaml(text).unwrap_or_else(|_| vec![from_json(&value)]));
    }
    parse_yaml(text)
}

/// serde_json appends " at line L column C" to its messages; the error carries them already.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

fn parse_yaml(text: &str) -> Result<Vec<Node>, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser
        .load(&mut builder, true)
        .map_err(|error| SyntaxError {
            line: error.marker().line(),
            column: error.marker().col() + 1,
            message: error.info().to_string(),
        })?;
    if let Some(error) = builder.error {
        return Err(error);
    }
    Ok(builder.documents)
}

fn from_json(value: &serde_json::Value) -> Node {
    let value = match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Scalar {
            text: b.to_string(),
            plain: true,
        },
        serde_json::Value::Number(n) => Value::Scalar {
            text: n.to_string(),
            plain: true,
        },
        serde_json::Value::String(s) => Value::Scalar {
            text: s.clone(),
            plain: false,
        },
        serde_json::Value::Array(items) => Value::Seq(items.iter().map(from_json).collect()),
        serde_json::Value::Object(map) => Value::Map(
            map.iter()
                .map(|(key, value)| (key.clone(), from_json(value)))
                .collect(),
        ),
    };
    Node {
        line: 0,
        tag: None,
        value,
    }
}

/// Builds nodes from the parser's events.
#[derive(Default)]
struct Builder {
    documents: Vec<Node>,
    /// Open collections: the node being filled and, for a mapping, the key waiting for its value.
    stack: Vec<(Node, Option<String>)>,
    anchors: HashMap<usize, Node>,
    /// Anchor ids of the open collections, to register them when they close.
    open_anchors: Vec<usize>,
    error: Option<SyntaxError>,
}

impl Builder {
    fn push_value(&mut self, node: Node, mark: Marker) {
        let Some((parent, pending_key)) = self.stack.last_mut() else {
            self.documents.push(node);
            return;
        };
        match &mut parent.value {
            Value::Seq(items) => items.push(node),
            Value::Map(entries) => match pending_key.take() {
                Some(key) => entries.push((key, node)),
                None => match node.value {
                    Value::Scalar { text, .. } => *pending_key = Some(text),
                    Value::Null => *pending_key = Some(String::new()),
                    _ => {
                        if self.error.is_none() {
                            self.error = Some(SyntaxError {
                                line: mark.line(),
                                column: mark.col() + 1,
                                message: "a mapping key must be a scalar".into(),
                            });
                        }
                    }
                },
            },
            _ => {}
        }
    }
}

impl Builder {
    fn open(
        &mut self,
        value: Value,
        anchor: usize,
        tag: Option<yaml_rust2::parser::Tag>,
        mark: Marker,
    ) {
        let node = Node {
            line: mark.line(),
            tag: tag_text(tag),
            value,
        };
        self.stack.push((node, None));
        self.open_anchors.push(anchor);
    }
}

fn tag_text(tag: Option<yaml_rust2::parser::Tag>) -> Option<String> {
    tag.map(|tag| format!("{}{}", tag.handle, tag.suffix))
        // Standard tags (`!!str`, `tag:yaml.org,2002:`) are not intrinsics.
        .filter(|tag| tag.starts_with('!') && !tag.starts_with("!!"))
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let plain = style == TScalarStyle::Plain;
                let value = if plain && tag.is_none() && matches!(text.as_str(), "" | "~" | "null")
                {
                    Value::Null
                } else {
                    Value::Scalar { text, plain }
                };
                let node = Node {
                    line: mark.line(),
                    tag: tag_text(tag),
                    value,
                };
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push_value(node, mark);
            }
            Event::SequenceStart(anchor, tag) => {
                self.open(Value::Seq(Vec::new()), anchor, tag, mark)
            }
            Event::MappingStart(anchor, tag) => {
                self.open(Value::Map(Vec::new()), anchor, tag, mark)
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((node, _)) = self.stack.pop() {
                    if let Some(anchor) = self.open_anchors.pop() {
                        if anchor > 0 {
                            self.anchors.insert(anchor, node.clone());
                        }
                    }
                    self.push_value(node, mark);
                }
            }
            Event::Alias(anchor) => {
                let node = self.anchors.get(&anchor).cloned().unwrap_or(Node {
                    line: mark.line(),
                    tag: None,
                    value: Value::Null,
                });
                self.push_value(node, mark);
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}
