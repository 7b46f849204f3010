//! The readers of `preflight merge-reports` (`runs.json`, `preflight.runs/v1`) and
//! `preflight diff` (snapshot JSON), and everything they feed: the merge, the report
//! assembled from the runs, and its four formats. No panic, no hang; a rejection names
//! the file; every format of an accepted file renders, and the JSON one parses again.

#![no_main]

use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use preflight::report::{self, shard::ShardFile};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("shard-1/runs.json");
    match ShardFile::parse(path, text) {
        Err(e) => assert!(e.to_string().starts_with("shard-1/runs.json: "), "{e}"),
        Ok(file) => {
            // Alone, and beside a copy of itself (a shard given twice, or two halves).
            let _ = report::shard::merge_files(vec![(PathBuf::from("shard-1"), file.clone())]);
            let _ = report::shard::merge_files(vec![
                (PathBuf::from("shard-1"), file.clone()),
                (PathBuf::from("shard-2"), file.clone()),
            ]);
            let r = file.report();
            let json = report::render_json(&r);
            serde_json::from_str::<serde_json::Value>(&json).expect("report.json is JSON");
            let _ = report::markdown::render(&r);
            let _ = report::junit::render(&r);
            let _ = report::html::render(&r);
        }
    }
    if let Ok(snapshot) = serde_json::from_str::<preflight::snapshot::Snapshot>(text) {
        let empty = preflight::snapshot::Snapshot::default();
        let _ = preflight::snapshot_diff::diff(&empty, &snapshot).render();
        let _ = preflight::snapshot_diff::diff(&snapshot, &snapshot).render();
    }
});
