//! Loading a twin, as `preflight run TWIN` and `preflight validate` load it: the bytes
//! as `twin.yaml` (with every file it names), as `cluster/namespaces.yaml` and as each
//! kind of captured object (CRD, webhook configuration, admission policy, APIService).
//! No panic, no hang; every refusal names the file and a `line:column` inside the
//! text; every object that loads is one replay can write into (a mapping; webhook
//! entries and a CRD's conversion webhook mappings). The properties live in
//! `preflight::twin::load::check_every_loader`, which a stable unit test also runs on
//! the seeds in `fuzz/corpus/twin/`.

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
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    preflight::twin::load::check_every_loader(text, scratch());
});
