//! A small strict JSON reader (RFC 8259) for the plugin configuration: a document becomes a [`Json`]
//! tree, or one error saying what is wrong and where (`line 3 column 14: expected ',' or '}'`).
//!
//! Numbers keep their text: the configuration reads integers only, and never parsing floats keeps
//! float code out of the wasm. Nesting is bounded by [`MAX_DEPTH`] so the recursion is too.
//!
//! Why not `serde_json`: parsing the configuration into a `serde_json::Value` as well as through
//! this reader took the `.wasm` from 430,168 to 461,735 bytes (+31,567, `cargo xtask build-wasm`
//! sizes at `bf99342` and a throwaway build of it with `serde_json` linked), several times this
//! reader's own code; and its `Value` keeps the last of two equal keys and does not keep the order
//! written, where a policy with a key given twice must be refused (`duplicate key`) rather than
//! half-read. Every error of the compile step carries its field path, which the tree here feeds.

use std::fmt;

/// How deeply arrays and objects may nest.
pub(crate) const MAX_DEPTH: usize = 64;

/// A JSON value. Objects keep their members in the order written; a key appears at most once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    /// The number as written (`-12`, `1.5e3`): readers parse what they accept.
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// Why a document is not JSON, with the 1-based line and column (in characters) of the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub(crate) line: usize,
    pub(crate) column: usize,
    pub(crate) message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {} column {}: {}",
            self.line, self.column, self.message
        )
    }
}

/// Parses one JSON document (surrounding whitespace allowed, nothing else).
pub(crate) fn parse(document: &[u8]) -> Result<Json, SyntaxError> {
    let text = std::str::from_utf8(document).map_err(|error| {
        Parser::at(document, error.valid_up_to()).error("the document is not valid UTF-8")
    })?;
    let mut parser = Parser {
        text,
        bytes: document,
        pos: 0,
    };
    let value = parser.value(0)?;
    parser.skip_whitespace();
    if parser.peek().is_some() {
        return Err(parser.error_found("trailing characters after the JSON value"));
    }
    Ok(value)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    /// A parser positioned only to report an error at `pos`.
    fn at(bytes: &'a [u8], pos: usize) -> Self {
        Parser {
            text: "",
            bytes,
            pos,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn error(&self, message: impl Into<String>) -> SyntaxError {
        let before = self.bytes.get(..self.pos).unwrap_or(self.bytes);
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |newline| newline + 1);
        let line_text = before.get(line_start..).unwrap_or_default();
        SyntaxError {
            line: 1 + before.iter().filter(|&&b| b == b'\n').count(),
            // UTF-8 continuation bytes do not start a character.
            column: 1 + line_text.iter().filter(|&&b| b & 0xC0 != 0x80).count(),
            message: message.into(),
        }
    }

    /// An error that also names what was found instead (or the end of the input).
    fn error_found(&self, expected: &str) -> SyntaxError {
        match self
            .text
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
        {
            Some(found) => self.error(format!("{expected}, found {found:?}")),
            None => self.error(format!("{expected}, found the end of the input")),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, SyntaxError> {
        self.skip_whitespace();
        match self.peek() {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(Json::String),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.error_found("expected a value")),
        }
    }

    fn enter(&self, depth: usize) -> Result<(), SyntaxError> {
        if depth > MAX_DEPTH {
            Err(self.error(format!(
                "arrays and objects nest deeper than {MAX_DEPTH} levels"
            )))
        } else {
            Ok(())
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, SyntaxError> {
        self.enter(depth)?;
        self.pos += 1;
        let mut members: Vec<(String, Json)> = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Json::Object(members));
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err(self.error_found("expected a string key"));
            }
            let key_pos = self.pos;
            let key = self.string()?;
            if members.iter().any(|(seen, _)| *seen == key) {
                self.pos = key_pos;
                return Err(self.error(format!("duplicate key {key:?}")));
            }
            self.skip_whitespace();
            if self.peek() != Some(b':') {
                return Err(self.error_found("expected ':'"));
            }
            self.pos += 1;
            let value = self.value(depth)?;
            members.push((key, value));
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Json::Object(members));
                }
                _ => return Err(self.error_found("expected ',' or '}'")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json, SyntaxError> {
        self.enter(depth)?;
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Json::Array(items));
                }
                _ => return Err(self.error_found("expected ',' or ']'")),
            }
        }
    }

    fn literal(&mut self, word: &str, value: Json) -> Result<Json, SyntaxError> {
        let end = self.pos + word.len();
        if self.bytes.get(self.pos..end) == Some(word.as_bytes()) {
            self.pos = end;
            Ok(value)
        } else {
            Err(self.error_found("expected a value"))
        }
    }

    fn number(&mut self) -> Result<Json, SyntaxError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if matches!(self.peek(), Some(b'0'..=b'9')) {
                    return Err(self.error("a number may not have a leading zero"));
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error_found("expected a digit")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.required_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.required_digits()?;
        }
        let text = self.text.get(start..self.pos).unwrap_or_default();
        Ok(Json::Number(text.to_owned()))
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    fn required_digits(&mut self) -> Result<(), SyntaxError> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(self.error_found("expected a digit"));
        }
        self.digits();
        Ok(())
    }

    /// A string starting at the opening quote.
    fn string(&mut self) -> Result<String, SyntaxError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let start = self.pos;
            while matches!(self.peek(), Some(b) if b != b'"' && b != b'\\' && b >= 0x20) {
                self.pos += 1;
            }
            // The run ends at an ASCII byte or the end, so it is whole characters.
            out.push_str(self.text.get(start..self.pos).unwrap_or_default());
            match self.peek() {
                None => return Err(self.error("the input ends inside a string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    out.push(self.escape()?);
                }
                Some(control) => {
                    return Err(self.error(format!(
                        "control character U+{control:04X} in a string: write it as an escape"
                    )))
                }
            }
        }
    }

    /// The character of an escape, after its backslash.
    fn escape(&mut self) -> Result<char, SyntaxError> {
        let escaped = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => return self.unicode_escape(),
            _ => return Err(self.error_found("unknown escape")),
        };
        self.pos += 1;
        Ok(escaped)
    }

    /// `\uXXXX`, or a surrogate pair `\uD83D\uDE00`, after the backslash.
    fn unicode_escape(&mut self) -> Result<char, SyntaxError> {
        let start = self.pos.saturating_sub(1);
        self.pos += 1;
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                    self.pos = start;
                    return Err(self.error("a high surrogate escape is not followed by a low one"));
                }
                self.pos += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    self.pos = start;
                    return Err(self.error("a high surrogate escape is not followed by a low one"));
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => {
                self.pos = start;
                return Err(self.error("a low surrogate escape without a high one before it"));
            }
            _ => first,
        };
        char::from_u32(code).ok_or_else(|| self.error("the escape is not a character"))
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let mut code = 0;
        for _ in 0..4 {
            let digit = self
                .peek()
                .and_then(|b| char::from(b).to_digit(16))
                .ok_or_else(|| self.error_found("expected 4 hex digits after \\u"))?;
            code = code * 16 + digit;
            self.pos += 1;
        }
        Ok(code)
    }
}
