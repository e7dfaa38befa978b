//! JSON string literals, for the access record and the default body of a denial: certgate writes
//! JSON but never needs a JSON library to do it.

use std::fmt::Write as _;

/// A JSON string literal (quotes included) for any text.
pub(crate) fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    push_json_string(&mut out, text);
    out
}

/// Appends `text` as a JSON string literal (quotes included).
pub(crate) fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    let mut plain_from = 0;
    // Only ASCII needs escaping: copy the runs between escapes whole.
    for (index, byte) in text.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(text.get(plain_from..index).unwrap_or_default());
        if escape.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escape);
        }
        plain_from = index + 1;
    }
    out.push_str(text.get(plain_from..).unwrap_or_default());
    out.push('"');
}
