//! The readers of `preflight merge-reports` (`runs.json`) and `preflight diff` (snapshot
//! JSON), and everything they feed (the properties: `preflight::fuzz_checks::report`).
//!
//! The same check runs on every seed and kept regression on stable, in every test run
//! (`harness/tests/fuzz_seeds.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    preflight::fuzz_checks::check("report", data, &std::env::temp_dir());
});
