//! The `--name N` options of the long-run commands (`soak`, `churn`): each takes a count, written
//! with or without `_` separators, and a wrong one is refused before anything is built.

use anyhow::{bail, Result};

/// Checks that `args` are pairs of one of `options` and a count; returns them in order, the
/// counts without separators. `command` names the command in the errors.
pub fn parse(command: &str, options: &[&str], args: &[String]) -> Result<Vec<(String, u64)>> {
    let mut parsed = Vec::new();
    let mut args = args.iter();
    while let Some(option) = args.next() {
        if !options.contains(&option.as_str()) {
            bail!(
                "{command}: unknown argument {option:?}; options: {}",
                options.join(", ")
            );
        }
        match args.next() {
            Some(value) => match value.replace('_', "").parse::<u64>() {
                Ok(count) => parsed.push((option.clone(), count)),
                Err(_) => bail!("{command}: {option} {value:?} is not a count"),
            },
            None => bail!("{command}: {option} needs a count"),
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: [&str; 2] = ["--harness-requests", "--envoy-requests"];

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| arg.to_string()).collect()
    }

    #[test]
    fn counts_are_checked_before_building() {
        assert!(parse("soak", &OPTIONS, &args(&[])).unwrap().is_empty());
        assert_eq!(
            parse(
                "soak",
                &OPTIONS,
                &args(&["--harness-requests", "1_000", "--envoy-requests", "0"])
            )
            .unwrap(),
            vec![
                ("--harness-requests".to_owned(), 1_000),
                ("--envoy-requests".to_owned(), 0)
            ]
        );
        let unknown = parse("soak", &OPTIONS, &args(&["--seconds", "3"])).unwrap_err();
        assert!(
            unknown.to_string().starts_with("soak: unknown argument"),
            "{unknown}"
        );
        let missing = parse("soak", &OPTIONS, &args(&["--envoy-requests"])).unwrap_err();
        assert!(missing.to_string().contains("needs a count"), "{missing}");
        let bad = parse("soak", &OPTIONS, &args(&["--envoy-requests", "lots"])).unwrap_err();
        assert!(bad.to_string().contains("not a count"), "{bad}");
    }
}
