//! The shipped Prometheus rules (`deploy/prometheus/`) are valid and do what they say: `promtool check
//! rules` accepts them and `promtool test rules` makes each alert fire on the series that should fire
//! it and stay quiet otherwise. `cargo xtask test` installs `promtool` (Debian's `prometheus`).

use std::path::Path;
use std::process::Command;

fn promtool(args: &[&str]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus");
    let output = Command::new("promtool")
        .args(args)
        .current_dir(&dir)
        .output()
        .expect("promtool (cargo xtask test installs Debian's prometheus package)");
    assert!(
        output.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_rules_are_valid() {
    promtool(&["check", "rules", "certgate.rules.yaml"]);
}

#[test]
fn every_alert_fires_when_it_should_and_stays_quiet_otherwise() {
    promtool(&["test", "rules", "certgate.rules.test.yaml"]);
}
