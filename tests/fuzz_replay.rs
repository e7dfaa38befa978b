//! The fuzz smoke of the default test run: every committed seed and regression input of each
//! fuzz target (`fuzz/seeds/<target>/`, `fuzz/regressions/<target>/`) through the target's body,
//! without libFuzzer. The bodies are `fuzz/src/`, included here as a module so they build with
//! the workspace's dependencies; `cargo xtask fuzz` runs them under libFuzzer.

#[path = "../fuzz/src/lib.rs"]
mod certgate_fuzz;

use certgate_fuzz::{replay, TARGETS};

#[test]
fn each_target_has_a_replay_test() {
    let names: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        [
            "config_json",
            "xfcc",
            "forwarded",
            "alb",
            "certificate",
            "san_pattern",
            "whole_request"
        ]
    );
}

#[test]
fn config_json() {
    assert!(replay("config_json") > 0);
}

#[test]
fn xfcc() {
    assert!(replay("xfcc") > 0);
}

#[test]
fn forwarded() {
    assert!(replay("forwarded") > 0);
}

#[test]
fn alb() {
    assert!(replay("alb") > 0);
}

#[test]
fn certificate() {
    assert!(replay("certificate") > 0);
}

#[test]
fn san_pattern() {
    assert!(replay("san_pattern") > 0);
}

#[test]
fn whole_request() {
    assert!(replay("whole_request") > 0);
}
