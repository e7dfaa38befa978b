//! The bodies of certgate's fuzz targets, one module each, as plain functions of the fuzzer's bytes,
//! and [`replay`], which runs the committed inputs through them without libFuzzer.
//!
//! `fuzz_targets/<name>.rs` hands libFuzzer's input to `<name>::run`. The workspace's
//! `tests/fuzz_replay.rs` includes this file as a module and replays every seed and regression
//! input, so the default test run is the fuzz smoke. A body fails by panicking: each `assert!`
//! states a property of its target.

pub mod alb;
pub mod certificate;
pub mod config_json;
pub mod forwarded;
pub mod san_pattern;
pub mod seed;
pub mod whole_request;
pub mod xfcc;

use std::path::{Path, PathBuf};

/// A target's body: it panics when the input breaks one of the target's properties.
pub type Body = fn(&[u8]);

/// Every target: its name (the cargo-fuzz binary, its `seeds/` and `regressions/` folders) and body.
pub const TARGETS: [(&str, Body); 7] = [
    ("config_json", config_json::run),
    ("xfcc", xfcc::run),
    ("forwarded", forwarded::run),
    ("alb", alb::run),
    ("certificate", certificate::run),
    ("san_pattern", san_pattern::run),
    ("whole_request", whole_request::run),
];

/// The clock the targets decide at (2027-01-01, Unix seconds), inside the seed certificates'
/// validity: fixed, so an input replays the same way.
pub const NOW_SECONDS: i64 = 1_798_761_600;

/// The certgate workspace root, whether this file is built in the `fuzz` crate or in the workspace.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    if manifest.join("fuzz_targets").is_dir() {
        manifest.join("..")
    } else {
        manifest.to_path_buf()
    }
}

/// Runs every committed input of a target (`fuzz/seeds/<target>/`, then
/// `fuzz/regressions/<target>/`) through its body; panics naming the first input that fails.
/// Returns how many inputs passed.
pub fn replay(target: &str) -> usize {
    let Some((_, body)) = TARGETS.iter().find(|(name, _)| *name == target) else {
        panic!("no fuzz target {target}");
    };
    let fuzz = workspace_root().join("fuzz");
    let seeds = files(&fuzz.join("seeds").join(target));
    assert!(!seeds.is_empty(), "fuzz/seeds/{target}/ has no seed");
    let inputs: Vec<PathBuf> = seeds
        .into_iter()
        .chain(files(&fuzz.join("regressions").join(target)))
        .collect();
    for path in &inputs {
        replay_file(target, *body, path);
    }
    inputs.len()
}

fn replay_file(target: &str, body: Body, path: &Path) {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if let Err(panic) = std::panic::catch_unwind(|| body(&data)) {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        panic!(
            "fuzz target {target} fails on {}: {message}",
            path.display()
        );
    }
}

/// The files of a folder, sorted; none when it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}
