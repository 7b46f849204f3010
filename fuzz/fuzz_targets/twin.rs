//! Loading a twin, as `preflight run TWIN` and `preflight validate` load it (the
//! properties: `preflight::twin::load::check_every_loader`).
//!
//! The same check runs on every seed and kept regression on stable, in every test run
//! (`harness/tests/fuzz_seeds.rs`).

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// A scratch twin folder, made once per process (under TMPDIR, which ci/fuzz.sh
/// removes).
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("preflight-fuzz-twin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    preflight::fuzz_checks::check("twin", data, scratch());
});
