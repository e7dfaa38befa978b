//! The soak and reload runs of certgate, one implementation for two callers: the smoke in
//! the default test run (`tests/soak_smoke.rs`, small sizes) and `cargo xtask soak` (`tests/soak.rs`,
//! full sizes).
//!
//! - [`harness`]: the real `certgate.wasm` in the host harness with the 10,000-matcher policy, the
//!   guest's linear memory sampled as it serves a mix of identities.
//! - [`envoy`]: real Envoy (the shipped sidecar, certgate's config served by ECDS) under keep-alive
//!   mTLS load, its memory and certgate's counters sampled, and configs swapped in mid-run: a valid
//!   one that changes a decision, and an invalid one Envoy must refuse while the old one serves.
//!
//! Each run returns a report that prints itself and lists its problems; an empty list is a pass.
#![allow(dead_code)]

pub mod envoy;
pub mod harness;

/// How many memory samples a run takes after its start: one every tenth of the run.
pub const SAMPLES: u64 = 10;

/// The first tenth of a run is its warm-up: caches fill, the allocator reaches its working size.
/// The sample at its end is the baseline the rest of the run is held to.
pub const WARM_UP_SAMPLES: usize = 1;

/// The sizes of a soak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    pub harness_requests: u64,
    pub envoy_requests: u64,
}

impl Sizes {
    /// The full sizes: 1,000,000 requests through the harness, 200,000 through Envoy.
    pub const FULL: Sizes = Sizes {
        harness_requests: 1_000_000,
        envoy_requests: 200_000,
    };

    /// The default test run's smoke: the same code, seconds instead of minutes.
    pub const SMOKE: Sizes = Sizes {
        harness_requests: 20_000,
        envoy_requests: 2_000,
    };
}

/// A memory figure taken after `requests` requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub requests: u64,
    pub bytes: u64,
}

/// The request counts after which a run of `requests` takes its samples: every tenth of the run,
/// the last one at its end.
pub fn sample_points(requests: u64) -> Vec<u64> {
    (1..=SAMPLES)
        .map(|tenth| requests * tenth / SAMPLES)
        .filter(|&point| point > 0)
        .collect()
}

/// How much a figure grew after warm-up. `samples[0]` is taken before the first request and
/// `samples[WARM_UP_SAMPLES]` at the end of the warm-up: the baseline. The growth is the largest
/// later sample minus the baseline, 0 when none is larger; `None` when there are not enough samples
/// to tell.
pub fn growth_after_warm_up(samples: &[Sample]) -> Option<u64> {
    let baseline = samples.get(WARM_UP_SAMPLES)?.bytes;
    let peak = samples[WARM_UP_SAMPLES + 1..]
        .iter()
        .map(|sample| sample.bytes)
        .max()?;
    Some(peak.saturating_sub(baseline))
}

/// `bytes` in MiB with two decimals.
pub fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(bytes: &[u64]) -> Vec<Sample> {
        bytes
            .iter()
            .enumerate()
            .map(|(index, &bytes)| Sample {
                requests: index as u64,
                bytes,
            })
            .collect()
    }

    #[test]
    fn samples_fall_on_every_tenth_and_the_end() {
        assert_eq!(sample_points(1_000_000)[..2], [100_000, 200_000]);
        assert_eq!(sample_points(1_000_000).last(), Some(&1_000_000));
        assert_eq!(sample_points(25).len(), 10);
    }

    #[test]
    fn growth_counts_only_after_the_warm_up() {
        assert_eq!(growth_after_warm_up(&samples(&[1, 5, 5, 5])), Some(0));
        assert_eq!(growth_after_warm_up(&samples(&[1, 5, 7, 6])), Some(2));
        assert_eq!(growth_after_warm_up(&samples(&[1, 9, 5, 5])), Some(0));
        assert_eq!(growth_after_warm_up(&samples(&[1, 5])), None);
    }
}
