//! The strict JSON reader under the configuration: what it accepts, and every rejection with its
//! position.

use crate::config::json::{parse, Json, MAX_DEPTH};

fn string(text: &str) -> Json {
    Json::String(text.to_owned())
}

fn number(text: &str) -> Json {
    Json::Number(text.to_owned())
}

#[test]
fn valid_documents_become_trees() {
    for (document, expected) in [
        ("null", Json::Null),
        (" true ", Json::Bool(true)),
        ("\n\tfalse\r\n", Json::Bool(false)),
        ("0", number("0")),
        ("-0", number("-0")),
        ("42", number("42")),
        ("-17", number("-17")),
        ("3.25", number("3.25")),
        ("1e10", number("1e10")),
        ("-2.5E-3", number("-2.5E-3")),
        ("6.02e+23", number("6.02e+23")),
        ("99999999999999999999999", number("99999999999999999999999")),
        (r#""""#, string("")),
        (r#""plain""#, string("plain")),
        (
            r#""\" \\ \/ \b \f \n \r \t""#,
            string("\" \\ / \u{8} \u{c} \n \r \t"),
        ),
        (r#""\u00e9\u00E9""#, string("éé")),
        (r#""\u0000""#, string("\0")),
        (r#""\uD83D\uDE00""#, string("😀")),
        (r#""bücher 😀""#, string("bücher 😀")),
        ("[]", Json::Array(vec![])),
        (
            "[ 1 , [ ] , { } ]",
            Json::Array(vec![number("1"), Json::Array(vec![]), Json::Object(vec![])]),
        ),
        ("{}", Json::Object(vec![])),
        (
            r#"{"b": 1, "a": [true, null], "c": {"d": "e"}}"#,
            Json::Object(vec![
                ("b".to_owned(), number("1")),
                (
                    "a".to_owned(),
                    Json::Array(vec![Json::Bool(true), Json::Null]),
                ),
                (
                    "c".to_owned(),
                    Json::Object(vec![("d".to_owned(), string("e"))]),
                ),
            ]),
        ),
        // Keys are compared after unescaping, and distinct keys stay distinct.
        (
            r#"{"a": 1, "A": 2}"#,
            Json::Object(vec![
                ("a".to_owned(), number("1")),
                ("A".to_owned(), number("2")),
            ]),
        ),
    ] {
        assert_eq!(parse(document.as_bytes()), Ok(expected), "{document:?}");
    }
}

#[test]
fn every_rejection_says_what_and_where() {
    for (document, expected) in [
        (
            "",
            "line 1 column 1: expected a value, found the end of the input",
        ),
        ("   ", "line 1 column 4: expected a value"),
        (
            "{",
            "line 1 column 2: expected a string key, found the end of the input",
        ),
        (
            "[1",
            "line 1 column 3: expected ',' or ']', found the end of the input",
        ),
        ("[1,]", "line 1 column 4: expected a value, found ']'"),
        (
            r#"{"a": 1,}"#,
            "line 1 column 9: expected a string key, found '}'",
        ),
        (r#"{"a" 1}"#, "line 1 column 6: expected ':', found '1'"),
        (
            "{a: 1}",
            "line 1 column 2: expected a string key, found 'a'",
        ),
        (
            "{\n  \"a\": 1\n  \"b\": 2\n}",
            "line 3 column 3: expected ',' or '}', found '\"'",
        ),
        ("[1 2]", "line 1 column 4: expected ',' or ']', found '2'"),
        (
            "01",
            "line 1 column 2: a number may not have a leading zero",
        ),
        (
            "-01",
            "line 1 column 3: a number may not have a leading zero",
        ),
        (
            "-",
            "line 1 column 2: expected a digit, found the end of the input",
        ),
        ("1.", "line 1 column 3: expected a digit"),
        (".5", "line 1 column 1: expected a value, found '.'"),
        ("1e", "line 1 column 3: expected a digit"),
        ("1e+", "line 1 column 4: expected a digit"),
        ("+1", "line 1 column 1: expected a value, found '+'"),
        ("NaN", "line 1 column 1: expected a value, found 'N'"),
        ("tru", "line 1 column 1: expected a value, found 't'"),
        ("nul", "line 1 column 1: expected a value"),
        ("True", "line 1 column 1: expected a value, found 'T'"),
        ("'a'", "line 1 column 1: expected a value, found '\\''"),
        (
            "{} {}",
            "line 1 column 4: trailing characters after the JSON value, found '{'",
        ),
        (
            "1 2",
            "line 1 column 3: trailing characters after the JSON value, found '2'",
        ),
        ("\"abc", "line 1 column 5: the input ends inside a string"),
        (
            "\"a\tb\"",
            "line 1 column 3: control character U+0009 in a string",
        ),
        (
            "\"a\nb\"",
            "line 1 column 3: control character U+000A in a string",
        ),
        (r#""\x""#, "line 1 column 3: unknown escape, found 'x'"),
        (
            r#""\u12""#,
            "line 1 column 6: expected 4 hex digits after \\u, found '\"'",
        ),
        (
            r#""\uZZZZ""#,
            "line 1 column 4: expected 4 hex digits after \\u, found 'Z'",
        ),
        (
            r#""\uD83D""#,
            "line 1 column 2: a high surrogate escape is not followed by a low one",
        ),
        (
            r#""\uD83D\u0041""#,
            "line 1 column 2: a high surrogate escape is not followed by a low one",
        ),
        (
            r#""\uDE00""#,
            "line 1 column 2: a low surrogate escape without a high one before it",
        ),
        (
            r#"{"a": 1, "a": 2}"#,
            r#"line 1 column 10: duplicate key "a""#,
        ),
        (
            r#"{"a": 1, "\u0061": 2}"#,
            r#"line 1 column 10: duplicate key "a""#,
        ),
        (
            "\u{feff}{}",
            "line 1 column 1: expected a value, found '\\u{feff}'",
        ),
        ("[\"é\", x]", "line 1 column 7: expected a value, found 'x'"),
    ] {
        match parse(document.as_bytes()) {
            Ok(json) => panic!("{document:?} accepted as {json:?}"),
            Err(error) => assert!(
                error.to_string().starts_with(expected),
                "{document:?}: expected {expected:?}, got {error}"
            ),
        }
    }
}

#[test]
fn invalid_utf8_is_rejected_where_it_starts() {
    let error = parse(b"{\"a\":\n \"\xff\"}").unwrap_err();
    assert_eq!(
        error.to_string(),
        "line 2 column 3: the document is not valid UTF-8"
    );
}

#[test]
fn nesting_is_bounded() {
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    assert!(parse(nested(MAX_DEPTH).as_bytes()).is_ok());
    let error = parse(nested(MAX_DEPTH + 1).as_bytes()).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "line 1 column {}: arrays and objects nest deeper than {MAX_DEPTH} levels",
            MAX_DEPTH + 1
        )
    );
    let objects = format!(
        "{}1{}",
        r#"{"a":"#.repeat(MAX_DEPTH + 1),
        "}".repeat(MAX_DEPTH + 1)
    );
    assert!(parse(objects.as_bytes()).is_err());
    // Far deeper input is refused at the limit, not by exhausting the stack.
    assert!(parse(nested(1_000_000).as_bytes()).is_err());
}
