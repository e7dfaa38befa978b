//! With `HOST_HARNESS_PERF_MAP` set, the engine writes `/tmp/perf-<pid>.map` naming each compiled
//! guest function, which is what lets `perf report` show a guest's own functions; unset, it
//! writes none. The map is per process, so the test runs itself again as a child with the
//! variable set.

use host_harness::{GuestModule, PERF_MAP_ENV};
use std::path::PathBuf;
use std::process::Command;

const TEST_NAME: &str = "the_engine_names_guest_functions_in_a_perf_map_only_when_asked";

const GUEST: &str = r#"(module
  (func $certgate_perf_map_probe (export "probe") (result i32) i32.const 7))"#;

fn perf_map(pid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/perf-{pid}.map"))
}

/// Removes the child's map however the test ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn the_engine_names_guest_functions_in_a_perf_map_only_when_asked() {
    GuestModule::from_wat("perf map probe", GUEST).expect("the probe compiles");
    if std::env::var_os(PERF_MAP_ENV).is_some() {
        // The child: the map is written as the module is compiled; say whose it is.
        println!("perf-map-pid={}", std::process::id());
        return;
    }
    assert!(
        !perf_map(std::process::id()).exists(),
        "without {PERF_MAP_ENV} the engine writes no perf map"
    );
    let output = Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(PERF_MAP_ENV, "1")
        .output()
        .expect("the test binary runs again");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "the child failed:\n{stdout}");
    let pid: u32 = stdout
        .lines()
        .find_map(|line| line.split_once("perf-map-pid=").map(|(_, pid)| pid))
        .and_then(|pid| pid.trim().parse().ok())
        .unwrap_or_else(|| panic!("the child printed no pid:\n{stdout}"));
    let map = RemoveOnDrop(perf_map(pid));
    let contents = std::fs::read_to_string(&map.0)
        .unwrap_or_else(|error| panic!("{}: {error}", map.0.display()));
    assert!(
        contents.contains("certgate_perf_map_probe"),
        "the map names the guest's function:\n{contents}"
    );
}
