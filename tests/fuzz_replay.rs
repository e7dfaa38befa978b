//! The fuzz smoke of the default test run: every committed seed and regression input of each
//! fuzz target (`fuzz/seeds/<target>/`, `fuzz/regressions/<target>/`) through the target's body,
//! without libFuzzer. The bodies are `fuzz/src/`, included here as a module so they build with
//! the workspace's dependencies; `cargo xtask fuzz` runs them under libFuzzer.

#[path = "../fuzz/src/lib.rs"]
mod certgate_fuzz;

use certgate_fuzz::{replay, TARGETS};

/// `TARGETS` (what the replay tests below replay, one `#[test]` each) lists every libFuzzer target
/// `cargo xtask fuzz` runs (`fuzz/fuzz_targets/*.rs`), and nothing else.
#[test]
fn each_target_has_a_replay_test() {
    let mut listed: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets");
    let mut built: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            (path.extension()? == "rs").then(|| path.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    listed.sort_unstable();
    built.sort_unstable();
    assert_eq!(listed, built);
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
