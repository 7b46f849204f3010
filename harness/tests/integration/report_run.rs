//! The complete product: `preflight run` with no scenario argument runs the embedded
//! scenarios on source and target local clusters and writes all four reports with the
//! verdicts the scenarios describe. The HTML page is rendered in headless Chromium.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common;

/// Headless Chromium's DOM of a file (the page is self-contained: no network needed).
fn chromium_dom(page: &Path) -> Option<String> {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })?;
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn default_run_writes_four_reports_with_the_expected_verdicts() {
    let run = common::default_run();
    let dir = run.dir.as_path();
    let stdout = &run.stdout;
    assert_eq!(run.code, Some(0), "{stdout}\n{}", run.stderr);
    assert!(stdout.contains("verdict: PASS"), "{stdout}");
    for f in ["report.json", "report.md", "junit.xml", "report.html"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }

    let doc: Value = serde_json::from_str(&common::read(&dir.join("report.json"))).unwrap();
    assert_eq!(common::schema_errors(&doc), Vec::<String>::new());
    assert_eq!(doc["schema"], "preflight.report/v1");
    assert_eq!(doc["verdict"], "pass");
    assert_eq!(doc["source"]["version"], "v1.29.15");
    assert_eq!(doc["target"]["version"], "v1.30.14");

    // Every incident leftover's cause is backed by what the cluster recorded: an audit
    // event, a control-plane log line or the verification probe's answer.
    for scenario in ["incident-admission", "incident-conversion"] {
        for role in ["source", "target"] {
            let run = common::run_of(&doc, scenario, role);
            assert!(run["findings"].as_array().unwrap().is_empty(), "{run}");
            for l in run["leftovers"].as_array().unwrap() {
                if matches!(
                    l["reason"].as_str(),
                    Some("kept-by-policy" | "kept-by-design")
                ) {
                    continue;
                }
                let evidence = l["evidence"].to_string();
                assert!(
                    [
                        "kube-apiserver audit:",
                        "kube-apiserver probe:",
                        "kube-apiserver:",
                        "kube-controller-manager:",
                    ]
                    .iter()
                    .any(|source| evidence.contains(source)),
                    "{scenario} {role}: {} {} has no cluster record as evidence: {evidence}",
                    l["kind"],
                    l["name"]
                );
            }
        }
    }

    for role in ["source", "target"] {
        let base = common::run_of(&doc, "baseline", role);
        assert!(
            base["leftovers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|l| l["unexpected"] == false),
            "{role}: {base}"
        );
        assert!(
            base["steps"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|s| s["helm"]["exitCode"].as_i64())
                .all(|c| c == 0)
        );

        let adm = common::run_of(&doc, "incident-admission", role);
        let uninstall = adm["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["title"] == "helm uninstall")
            .unwrap();
        assert_eq!(
            uninstall["helm"]["exitCode"], 0,
            "{role}: helm says success"
        );
        assert!(
            adm["headline"]
                .as_str()
                .unwrap()
                .starts_with("helm said success (exit 0)")
        );
        let rs = common::leftovers(adm, "ReplicaSet");
        assert_eq!(rs.len(), 1, "{role}");
        assert_eq!(rs[0]["reason"], "webhook-blocked-delete");
        let evidence = rs[0]["evidence"].to_string();
        assert!(
            evidence.contains("garbage collector could not delete")
                && evidence.contains("delete-guard"),
            "{evidence}"
        );
        assert!(common::leftovers(adm, "Pod").len() >= 2);
        let dry = adm["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|s| s.get("dryRun"))
            .unwrap();
        assert!(
            dry["objects"]
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o["asUser"]
                    == "system:serviceaccount:kube-system:generic-garbage-collector"
                    && o["outcome"] == "webhook-failed")
        );

        let conv = common::run_of(&doc, "incident-conversion", role);
        let rs = common::leftovers(conv, "ReplicaSet");
        assert_eq!(rs.len(), 1, "{role}");
        assert_eq!(rs[0]["reason"], "garbage-collector-stalled");
        assert!(
            conv["unlistable"]
                .to_string()
                .contains("preflight.dev/widgets")
        );
    }
    let up = common::run_of(&doc, "incident-conversion-upgrade", "upgrade");
    assert_eq!(up["endVersion"], "v1.30.14");
    assert_eq!(
        common::leftovers(up, "ReplicaSet")[0]["reason"],
        "garbage-collector-stalled"
    );

    let md = common::read(&dir.join("report.md"));
    assert!(md.starts_with("# preflight: v1.29.15 -> v1.30.14"), "{md}");
    let junit = common::read(&dir.join("junit.xml"));
    assert_eq!(
        junit.matches("<testcase ").count(),
        7,
        "one test case per scenario and version: {junit}"
    );

    let html = common::read(&dir.join("report.html"));
    for external in ["<script", "src=\"http", "href=\"http", "url(http", "<link"] {
        assert!(!html.contains(external), "self-contained: found {external}");
    }
    match chromium_dom(&dir.join("report.html")) {
        Some(dom) => {
            assert!(
                dom.contains("id=\"matrix\""),
                "Chromium rendered the matrix: {}",
                &dom[..dom.len().min(500)]
            );
            assert!(
                dom.contains("PASS") && dom.matches("<svg").count() >= 7,
                "verdict and pictures rendered"
            );
        }
        None => assert!(
            std::env::var_os("CI").is_none(),
            "CI must have Chromium (ci/test.sh installs it)"
        ),
    }
}
