//! The scenario parser and validator, as `preflight run` and `preflight validate` call
//! it on a file's text (the properties: `preflight::fuzz_checks::scenario`).
//!
//! The same check runs on every seed and kept regression on stable, in every test run
//! (`harness/tests/fuzz_seeds.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    preflight::fuzz_checks::check("scenario", data, &std::env::temp_dir());
});
