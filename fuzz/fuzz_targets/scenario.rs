//! The scenario parser and validator, as `preflight run` and `preflight validate` call
//! it on a file's text: no panic, no hang, and every rejection names the file and a
//! `line:column` inside it (validator errors point at the field they are about).

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use preflight::scenario::{self, ScenarioError};

const FILE: &str = "fuzz.yaml";

/// A scenario folder with a chart and a values file, so that `chart.path` and
/// `chart.valuesFiles` reach their checks (made once per process, left for the OS).
fn folder() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("preflight-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("charts/c")).unwrap();
        std::fs::write(
            dir.join("charts/c/Chart.yaml"),
            "apiVersion: v2\nname: c\nversion: 0.1.0\n",
        )
        .unwrap();
        std::fs::write(dir.join("values.yaml"), "replicas: 2\n").unwrap();
        dir
    })
}

fn check(e: &ScenarioError, text: &str) {
    let shown = e.to_string();
    assert_eq!(e.file, FILE, "{shown}");
    assert!(
        shown.starts_with(&format!("{FILE}:{}:{}: ", e.line, e.column)),
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

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // As an embedded scenario (no files), and as a file in a folder with a chart.
    for base in [None, Some(folder())] {
        match scenario::parse(text, FILE, base) {
            Err(e) => check(&e, text),
            Ok(s) => {
                // Two scenarios of one run naming one namespace are refused, with a place.
                let twice = [s.clone(), s];
                if let Err(e) = scenario::check_distinct_namespaces(&twice) {
                    check(&e, text);
                    assert!(e.message.contains("release.namespace"), "{e}");
                }
            }
        }
    }
});
