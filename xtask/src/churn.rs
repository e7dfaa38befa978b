//! `cargo xtask churn [--connections N] [--routes R]`: hostile churn at a larger population than
//! the test suite's smoke. It builds `certgate.wasm`, installs Envoy if missing, and runs
//! `tests/envoy_churn.rs` with `N` connections per half, each with a new certificate (default
//! 5,000), and a policy of `R` routes (default 5,000: more series than certgate counts, so its
//! series capacity is exercised too), printing worker CPU per request and Envoy's resident memory
//! under the normal load, the certificate churn and the route churn.

use crate::{build, counts, envoy};
use anyhow::Result;

/// The options, the test's environment variable each sets, and its default here.
const OPTIONS: [(&str, &str, u64); 2] = [
    ("--connections", "CERTGATE_CHURN_CONNECTIONS", 5_000),
    ("--routes", "CERTGATE_CHURN_ROUTES", 5_000),
];

pub fn run(args: &[String]) -> Result<()> {
    let names = OPTIONS.map(|(option, _, _)| option);
    let given = counts::parse("churn", &names, args)?;
    let wasm = build::certgate_wasm()?;
    let envoy = envoy::ensure_installed()?;
    let mut env = vec![
        ("CERTGATE_WASM", wasm.to_string_lossy().into_owned()),
        ("ENVOY_BIN", envoy.to_string_lossy().into_owned()),
    ];
    for (option, variable, default) in OPTIONS {
        let count = given
            .iter()
            .rev()
            .find(|(name, _)| name == option)
            .map_or(default, |(_, count)| *count);
        env.push((variable, count.to_string()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    build::cargo_with_env(
        &[
            "test",
            "-p",
            "certgate-suite",
            "--test",
            "envoy_churn",
            "--",
            "--nocapture",
            "--test-threads",
            "1",
        ],
        &env,
    )
}
