//! `${NAME}` substitution in the Envoy configs of `envoy/`: the same result as `envsubst` restricted
//! to the configs' variables, but a variable without a value is an error instead of an empty string.

use anyhow::{bail, Result};
use std::collections::{BTreeMap, BTreeSet};

/// Replaces every `${NAME}` of `template` with its value; fails on the first variable without one,
/// naming it and its line.
pub fn render(template: &str, vars: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            bail!(
                "line {}: `${{` without a closing `}}`",
                line_of(template, rest, start)
            );
        };
        let name = &after[..end];
        if !is_variable_name(name) {
            bail!(
                "line {}: `${{{name}}}` is not a variable name (A-Z, 0-9, _)",
                line_of(template, rest, start)
            );
        }
        match vars.get(name) {
            Some(value) => out.push_str(value),
            None => bail!(
                "line {}: ${{{name}}} has no value",
                line_of(template, rest, start)
            ),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The names of every `${NAME}` in `template`.
pub fn variables(template: &str) -> BTreeSet<String> {
    template
        .split("${")
        .skip(1)
        .filter_map(|piece| piece.split_once('}'))
        .map(|(name, _)| name.to_owned())
        .filter(|name| is_variable_name(name))
        .collect()
}

fn is_variable_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// The 1-based line of the `${` found at `offset` in `rest`, a suffix of `template`.
fn line_of(template: &str, rest: &str, offset: usize) -> usize {
    let consumed = template.len() - rest.len() + offset;
    template[..consumed].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn substitutes_every_occurrence_and_leaves_other_dollars() {
        let rendered = render(
            "port: ${PORT}\nregex: '^a(\\.b)$'\nagain: ${PORT}",
            &vars(&[("PORT", "0")]),
        )
        .unwrap();
        assert_eq!(rendered, "port: 0\nregex: '^a(\\.b)$'\nagain: 0");
    }

    #[test]
    fn a_missing_variable_is_named_with_its_line() {
        let err = render("a: 1\nb: ${WASM}\n", &vars(&[])).unwrap_err();
        assert_eq!(err.to_string(), "line 2: ${WASM} has no value");
    }

    #[test]
    fn an_unclosed_or_odd_variable_is_an_error() {
        assert!(render("x: ${OPEN", &vars(&[]))
            .unwrap_err()
            .to_string()
            .contains("without a closing"));
        assert!(render("x: ${lower}", &vars(&[]))
            .unwrap_err()
            .to_string()
            .contains("not a variable name"));
    }

    #[test]
    fn lists_the_variables() {
        let names = variables("${A} ${B_2} ${A} ${no} $C");
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            vec!["A".to_string(), "B_2".to_string()]
        );
    }
}
