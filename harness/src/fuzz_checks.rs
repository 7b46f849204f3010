//! The properties the fuzz targets check, as library functions: `fuzz/fuzz_targets/*`
//! call them under libFuzzer (bounded, `ci/fuzz.sh` and the nightly template), and the
//! stable test `harness/tests/fuzz_seeds.rs` calls them on every seed in
//! `fuzz/corpus/<target>/` and every input kept in `fuzz/regressions/<target>/` on each
//! test run. A crash fuzzing once found is then checked forever, without nightly.
//!
//! Each function panics (an assertion) when the property does not hold.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::report;
use crate::report::shard::{ShardFile, ShardFiles};
use crate::scenario::{self, ScenarioError};
use crate::webhook::{WebhookKind, caller_timeout_ms, review_response};

/// The fuzz targets, by the names `cargo fuzz` knows them.
pub const TARGETS: [&str; 4] = ["scenario", "report", "webhook_review", "twin"];

/// Runs the named target's check on one input; `scratch` is a folder the twin check
/// may write into (the others do not use it).
pub fn check(target: &str, data: &[u8], scratch: &Path) {
    match target {
        "scenario" => scenario(data),
        "report" => report(data),
        "webhook_review" => webhook_review(data),
        "twin" => {
            if let Ok(text) = std::str::from_utf8(data) {
                crate::twin::load::check_every_loader(text, scratch);
            }
        }
        other => panic!("no fuzz target `{other}`; the targets are {TARGETS:?}"),
    }
}

const SCENARIO_FILE: &str = "fuzz.yaml";

/// A scenario folder with a chart and a values file, so that `chart.path` and
/// `chart.valuesFiles` reach their checks (made once per process, under TMPDIR).
fn scenario_folder() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("preflight-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("charts/c")).expect("a scratch folder");
        std::fs::write(
            dir.join("charts/c/Chart.yaml"),
            "apiVersion: v2\nname: c\nversion: 0.1.0\n",
        )
        .expect("a scratch chart");
        std::fs::write(dir.join("values.yaml"), "replicas: 2\n").expect("a scratch values file");
        dir
    })
}

fn scenario_refusal(e: &ScenarioError, text: &str) {
    let shown = e.to_string();
    assert_eq!(e.file, SCENARIO_FILE, "{shown}");
    assert!(
        shown.starts_with(&format!("{SCENARIO_FILE}:{}:{}: ", e.line, e.column)),
        "{shown}"
    );
    assert!(!e.message.is_empty(), "an empty message for {text:?}");
    // Only a file too large to parse has no position (the parser never saw it).
    if e.line == 0 || e.column == 0 {
        assert!(
            e.message.starts_with("the file is "),
            "no position: {shown}\nfor {text:?}"
        );
    } else {
        // YAML ends a line at \n, \r\n or a lone \r.
        let lines = text.replace("\r\n", "\n").split(['\n', '\r']).count() as u64;
        assert!(e.line <= lines + 1, "line {} of {lines}: {shown}", e.line);
    }
}

/// The scenario parser and validator, as `preflight run` and `preflight validate` call
/// it on a file's text: no panic, no hang, and every rejection names the file and a
/// `line:column` inside it.
pub fn scenario(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // As an embedded scenario (no files), and as a file in a folder with a chart.
    for base in [None, Some(scenario_folder())] {
        match scenario::parse(text, SCENARIO_FILE, base) {
            Err(e) => scenario_refusal(&e, text),
            Ok(s) => {
                // Two scenarios of one run naming one namespace are refused, with a place.
                let twice = [s.clone(), s];
                if let Err(e) = scenario::check_distinct_namespaces(&twice) {
                    scenario_refusal(&e, text);
                    assert!(e.message.contains("release.namespace"), "{e}");
                }
            }
        }
    }
}

/// The readers of `merge-reports` (`runs.json`) and `diff` (snapshot JSON), and all
/// they feed: a rejection names the file; every format of an accepted file renders,
/// and the JSON one parses again.
pub fn report(data: &[u8]) {
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
    if let Ok(snapshot) = serde_json::from_str::<crate::snapshot::Snapshot>(text) {
        let empty = crate::snapshot::Snapshot::default();
        let _ = crate::snapshot_diff::diff(&empty, &snapshot).render();
        let _ = crate::snapshot_diff::diff(&snapshot, &snapshot).render();
    }
}

/// The sample webhook server's review handling, for every kind of webhook, admitting
/// and refusing, and the API server's `?timeout=` parameter: an answer always echoes
/// the request's uid and says what it is.
pub fn webhook_review(data: &[u8]) {
    // The first line doubles as a query string (it is rarely JSON on its own).
    if let Ok(text) = std::str::from_utf8(data) {
        let query = text.split('\n').next().unwrap_or_default();
        let _ = caller_timeout_ms(Some(query));
    }
    let uid = serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v.pointer("/request/uid").cloned());
    for kind in [
        WebhookKind::Validating,
        WebhookKind::Mutating,
        WebhookKind::Conversion,
    ] {
        for patch in [false, true] {
            for verdict in [Ok("hook"), Err("refused <by> \"fuzz\"")] {
                let Some(answer) = review_response(kind, patch, data, verdict) else {
                    continue;
                };
                let expected = if kind == WebhookKind::Conversion {
                    "ConversionReview"
                } else {
                    "AdmissionReview"
                };
                assert_eq!(answer["kind"], expected, "{answer}");
                assert_eq!(Some(&answer["response"]["uid"]), uid.as_ref(), "{answer}");
                serde_json::to_vec(&answer).expect("the answer serialises");
            }
        }
    }
}
