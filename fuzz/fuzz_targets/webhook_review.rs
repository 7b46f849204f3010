//! The sample webhook server's review handling (the properties:
//! `preflight::fuzz_checks::webhook_review`).
//!
//! The same check runs on every seed and kept regression on stable, in every test run
//! (`harness/tests/fuzz_seeds.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    preflight::fuzz_checks::check("webhook_review", data, &std::env::temp_dir());
});
