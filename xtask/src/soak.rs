//! `cargo xtask soak [--harness-requests N] [--envoy-requests N]`: certgate's soak and reload runs
//! at full size (1,000,000 requests through the harness, 200,000 through Envoy with a valid and an
//! invalid config swapped in under load). It builds `certgate.wasm`, installs Envoy if missing, and
//! runs the `soak` target of `tests/` (`tests/soak.rs`), which prints the samples and a verdict.

use crate::{build, envoy};
use anyhow::{bail, Result};

/// The options the command passes on to `tests/soak.rs`.
const OPTIONS: [&str; 2] = ["--harness-requests", "--envoy-requests"];

pub fn run(args: &[String]) -> Result<()> {
    check(args)?;
    let wasm = build::certgate_wasm()?;
    let envoy = envoy::ensure_installed()?;
    let mut cargo_args = vec!["test", "--test", "soak", "--"];
    cargo_args.extend(args.iter().map(String::as_str));
    build::cargo_with_env(
        &cargo_args,
        &[
            ("CERTGATE_WASM", wasm.to_string_lossy().as_ref()),
            ("ENVOY_BIN", envoy.to_string_lossy().as_ref()),
        ],
    )
}

/// Refuses a wrong argument before anything is built.
fn check(args: &[String]) -> Result<()> {
    let mut args = args.iter();
    while let Some(option) = args.next() {
        if !OPTIONS.contains(&option.as_str()) {
            bail!(
                "soak: unknown argument {option:?}; options: {}",
                OPTIONS.join(", ")
            );
        }
        match args.next() {
            Some(value) if value.replace('_', "").parse::<u64>().is_ok() => {}
            Some(value) => bail!("soak: {option} {value:?} is not a number of requests"),
            None => bail!("soak: {option} needs a number of requests"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| arg.to_string()).collect()
    }

    #[test]
    fn sizes_are_checked_before_building() {
        assert!(check(&args(&[])).is_ok());
        assert!(check(&args(&[
            "--harness-requests",
            "1_000",
            "--envoy-requests",
            "0"
        ]))
        .is_ok());
        let unknown = check(&args(&["--seconds", "3"])).unwrap_err();
        assert!(
            unknown.to_string().contains("unknown argument"),
            "{unknown}"
        );
        let missing = check(&args(&["--envoy-requests"])).unwrap_err();
        assert!(missing.to_string().contains("needs a number"), "{missing}");
        let bad = check(&args(&["--envoy-requests", "lots"])).unwrap_err();
        assert!(bad.to_string().contains("not a number"), "{bad}");
    }
}
