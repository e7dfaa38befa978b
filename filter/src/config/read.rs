//! Reading a JSON tree against the configuration's schema: typed readers for booleans, strings,
//! integers, keywords and lists, and [`Fields`], the members of one object checked against the keys
//! its section knows. Every problem is collected with its field path, so an operator sees them all
//! at once; messages use serde's words, which operators already know.

use super::json::Json;
use super::ConfigError;

/// How a value of the wrong type is named, in serde's words, which operators already know.
pub(super) fn unexpected(value: &Json) -> String {
    match value {
        Json::Null => "null".into(),
        Json::Bool(value) => format!("boolean `{value}`"),
        Json::Number(text) if is_integer(text) => format!("integer `{text}`"),
        Json::Number(text) => format!("floating point `{text}`"),
        Json::String(text) => format!("string {text:?}"),
        Json::Array(_) => "sequence".into(),
        Json::Object(_) => "map".into(),
    }
}

pub(super) fn is_integer(number: &str) -> bool {
    !number.contains(['.', 'e', 'E'])
}

pub(super) fn invalid_type<T>(
    value: &Json,
    path: &str,
    expected: &str,
    problems: &mut Problems<'_>,
) -> Option<T> {
    problems.add(
        path,
        format!("invalid type: {}, expected {expected}", unexpected(value)),
    );
    None
}

/// "`a`", "`a` or `b`", "one of `a`, `b`, `c`".
pub(super) fn alternatives<'n>(names: impl Iterator<Item = &'n str>) -> String {
    let names: Vec<String> = names.map(|name| format!("`{name}`")).collect();
    match names.as_slice() {
        [one] => one.clone(),
        [first, second] => format!("{first} or {second}"),
        all => format!("one of {}", all.join(", ")),
    }
}

pub(super) fn field_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The fields of one JSON object, whose keys were checked against those its schema knows.
pub(super) struct Fields<'j> {
    pub(super) path: &'j str,
    pub(super) members: &'j [(String, Json)],
}

impl<'j> Fields<'j> {
    /// Takes `value` as an object of `known` keys, reporting a value of another type and every
    /// unknown key.
    pub(super) fn read(
        value: &'j Json,
        path: &'j str,
        known: &[&str],
        problems: &mut Problems<'_>,
    ) -> Option<Self> {
        let Json::Object(members) = value else {
            return invalid_type(value, path, "a JSON object", problems);
        };
        for (key, _) in members {
            if !known.contains(&key.as_str()) {
                problems.add(
                    field_path(path, key),
                    format!(
                        "unknown field `{key}`, expected {}",
                        alternatives(known.iter().copied())
                    ),
                );
            }
        }
        Some(Fields { path, members })
    }

    /// The field read by `read`; `None` when it is absent or wrong (then reported).
    pub(super) fn get<T>(
        &self,
        key: &str,
        problems: &mut Problems<'_>,
        read: impl Reader<T>,
    ) -> Option<T> {
        let (_, value) = self.members.iter().find(|(name, _)| name == key)?;
        read(value, &field_path(self.path, key), problems)
    }

    /// Like [`Fields::get`], with `null` standing for an absent field.
    pub(super) fn optional<T>(
        &self,
        key: &str,
        problems: &mut Problems<'_>,
        read: impl Reader<T>,
    ) -> Option<T> {
        self.get(
            key,
            problems,
            |value: &Json, path: &str, problems: &mut Problems<'_>| match value {
                Json::Null => None,
                _ => read(value, path, problems),
            },
        )
    }

    /// Like [`Fields::get`], reporting an absent field.
    pub(super) fn required<T>(
        &self,
        key: &str,
        problems: &mut Problems<'_>,
        read: impl Reader<T>,
    ) -> Option<T> {
        if !self.members.iter().any(|(name, _)| name == key) {
            problems.add(self.path, format!("missing field `{key}`"));
            return None;
        }
        self.get(key, problems, read)
    }
}

/// Reads a value at a path, reporting what is wrong with it.
pub(super) trait Reader<T>: Fn(&Json, &str, &mut Problems<'_>) -> Option<T> {}

impl<T, F: Fn(&Json, &str, &mut Problems<'_>) -> Option<T>> Reader<T> for F {}

pub(super) fn boolean(value: &Json, path: &str, problems: &mut Problems<'_>) -> Option<bool> {
    match value {
        Json::Bool(value) => Some(*value),
        _ => invalid_type(value, path, "a boolean", problems),
    }
}

pub(super) fn string(value: &Json, path: &str, problems: &mut Problems<'_>) -> Option<String> {
    match value {
        Json::String(text) => Some(text.clone()),
        _ => invalid_type(value, path, "a string", problems),
    }
}

/// A whole number that fits `T`, described to the operator as `expected`.
pub(super) fn integer<T: TryFrom<u64>>(expected: &'static str) -> impl Reader<T> {
    move |value: &Json, path: &str, problems: &mut Problems<'_>| match value {
        Json::Number(text) if is_integer(text) => {
            let number = text.parse::<u64>().ok().and_then(|n| T::try_from(n).ok());
            if number.is_none() {
                problems.add(
                    path,
                    format!("invalid value: integer `{text}`, expected {expected}"),
                );
            }
            number
        }
        _ => invalid_type(value, path, expected, problems),
    }
}

/// One of an enum's configuration names.
pub(super) fn keyword<T: Copy + 'static>(names: &'static [(&'static str, T)]) -> impl Reader<T> {
    move |value: &Json, path: &str, problems: &mut Problems<'_>| {
        let Json::String(text) = value else {
            return invalid_type(value, path, "a string", problems);
        };
        let found = names
            .iter()
            .find(|(name, _)| *name == text.as_str())
            .map(|&(_, value)| value);
        if found.is_none() {
            problems.add(
                path,
                format!(
                    "unknown variant `{text}`, expected {}",
                    alternatives(names.iter().map(|(name, _)| *name))
                ),
            );
        }
        found
    }
}

/// An array whose every item `item` reads.
pub(super) fn list<T>(item: impl Reader<T>) -> impl Reader<Vec<T>> {
    move |value: &Json, path: &str, problems: &mut Problems<'_>| {
        let Json::Array(items) = value else {
            return invalid_type(value, path, "a sequence", problems);
        };
        let mut read = Vec::with_capacity(items.len());
        let mut complete = true;
        for (index, value) in items.iter().enumerate() {
            match item(value, &format!("{path}[{index}]"), problems) {
                Some(value) => read.push(value),
                None => complete = false,
            }
        }
        complete.then_some(read)
    }
}

/// What [`integer`] tells an operator who wrote something else for a `u32`.
pub(super) const U32: &str = "an integer from 0 to 4294967295";

/// Collects problems with their paths while compiling.
pub(super) struct Problems<'a>(pub(super) &'a mut Vec<ConfigError>);

impl Problems<'_> {
    pub(super) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }
}
