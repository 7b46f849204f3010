//! Scenario files: the shipped ones validate, bad ones get `file:line:column` errors
//! that say what was expected, and the test chart passes `helm lint`.

use std::path::{Path, PathBuf};
use std::process::Command;

use preflight::scenario;

use crate::common;

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

#[test]
fn shipped_files_validate_and_match_the_embedded_copies() {
    for (file, text) in scenario::EMBEDDED {
        let path = scenarios_dir().join(file);
        assert_eq!(
            &std::fs::read_to_string(&path).unwrap(),
            text,
            "{file} is embedded as is"
        );
        let s = scenario::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(s.chart.source, scenario::ChartSource::Dir(_)));
    }
    // Shipped beside them, not embedded: it needs the kind provider.
    let pools = scenario::load_file(&scenarios_dir().join("node-pools.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pools.nodes.len(), 3);
    let names: Vec<_> = scenario::embedded().into_iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "baseline",
            "incident-admission",
            "incident-conversion",
            "incident-conversion-upgrade"
        ]
    );
}

fn error_of(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("charts/c")).unwrap();
    std::fs::write(
        dir.path().join("charts/c/Chart.yaml"),
        "apiVersion: v2\nname: c\nversion: 0.1.0\n",
    )
    .unwrap();
    let path = dir.path().join("s.yaml");
    std::fs::write(&path, text).unwrap();
    let err = scenario::load_file(&path).unwrap_err().to_string();
    err.replace(&path.display().to_string(), "s.yaml")
}

const GOOD_HEAD: &str = "name: s\nchart:\n  path: charts/c\n";

#[test]
fn bad_files_name_the_file_line_and_what_was_expected() {
    let cases = [
        (
            format!("{GOOD_HEAD}steps:\n  - helm: {{action: instal}}\n"),
            "s.yaml:5:",
            "instal",
        ),
        (format!("{GOOD_HEAD}stepz: []\n"), "s.yaml:4:", "stepz"),
        (
            format!("{GOOD_HEAD}steps:\n  - helm: {{action: install, timeoutSeconds: soon}}\n"),
            "s.yaml:5:",
            "soon",
        ),
        (
            format!("{GOOD_HEAD}steps:\n  - setWebhook: {{name: ghost, behaviour: deny}}\n"),
            "s.yaml:5:",
            "`ghost` is not a webhook of this scenario",
        ),
        (
            format!("{GOOD_HEAD}steps: []\n"),
            "s.yaml:4:",
            "expected at least one step",
        ),
        (
            "name: s\nchart:\n  path: charts/missing\nsteps: [upgrade]\n".to_string(),
            "s.yaml:3:",
            "no Chart.yaml",
        ),
        (
            "name: Bad_Name\nchart: {path: charts/c}\nsteps: [upgrade]\n".to_string(),
            "s.yaml:1:",
            "lowercase DNS label",
        ),
        (
            format!("{GOOD_HEAD}versions: {{source: latest}}\nsteps: [upgrade]\n"),
            "s.yaml:4:",
            "not a Kubernetes version",
        ),
        (
            format!("{GOOD_HEAD}steps: [upgrade, upgrade]\n"),
            "s.yaml:4:",
            "only once",
        ),
        (
            format!(
                "{GOOD_HEAD}webhooks:\n  - {{name: w, kind: validating, timeoutSeconds: 99, rules: [{{operations: [DELETE], apiGroups: [\"\"], apiVersions: [v1], resources: [pods]}}]}}\nsteps: [upgrade]\n"
            ),
            "s.yaml:5:",
            "timeoutSeconds 99 is out of range",
        ),
        (
            format!("{GOOD_HEAD}webhooks:\n  - {{name: w, kind: conversion}}\nsteps: [upgrade]\n"),
            "s.yaml:5:",
            "needs `crd`",
        ),
        (
            format!("{GOOD_HEAD}webhooks:\n  - {{name: w, kind: validating}}\nsteps: [upgrade]\n"),
            "s.yaml:5:",
            "at least one entry in `rules`",
        ),
        (
            format!("{GOOD_HEAD}steps: [upgrade]\nexpect:\n  leftovers: [{{kind: Pod}}]\n"),
            "s.yaml:",
            "reason",
        ),
        (
            format!(
                "{GOOD_HEAD}steps: [upgrade]\nexpect:\n  leftovers: [{{kind: Pod, reason: owner-gone, count: 0}}]\n"
            ),
            "s.yaml:6:",
            "expect.leftovers[0].count: 0 expects nothing",
        ),
        (
            format!("{GOOD_HEAD}steps: [upgrade]\nexpect:\n  unlistable: [widgets]\n"),
            "s.yaml:6:",
            "expect.unlistable `widgets`: expected group/resource",
        ),
        (
            format!("{GOOD_HEAD}steps: [upgrade, rollNodes: {{}}]\n"),
            "s.yaml:4:",
            "declares no node pools",
        ),
        (
            format!(
                "{GOOD_HEAD}nodes: [{{name: user, count: 2}}]\nsteps: [rollNodes: {{}}, upgrade]\n"
            ),
            "s.yaml:5:",
            "put an `upgrade` step before it",
        ),
        (
            format!(
                "{GOOD_HEAD}nodes: [{{name: user}}]\nsteps: [upgrade, rollNodes: {{maxSurge: 0%}}]\n"
            ),
            "s.yaml:5:",
            "rollNodes.maxSurge: `0%` is not a max surge",
        ),
        (
            format!(
                "{GOOD_HEAD}nodes: [{{name: user}}]\nsteps: [upgrade, rollNodes: {{undrainableNodeBehavior: wait}}]\n"
            ),
            "s.yaml:5:",
            "rollNodes.undrainableNodeBehavior: `wait`",
        ),
        (
            format!(
                "{GOOD_HEAD}nodes: [{{name: user, taints: [\"sku=gpu\"]}}]\nsteps: [upgrade]\n"
            ),
            "s.yaml:4:",
            "nodes[0].taints: taint `sku=gpu`",
        ),
        (
            format!("{GOOD_HEAD}nodes: [{{name: User_Pool}}]\nsteps: [upgrade]\n"),
            "s.yaml:4:",
            "AKS pool names",
        ),
        ("name: s\nchart: [\n".to_string(), "s.yaml:", ""),
    ];
    for (text, location, words) in cases {
        let err = error_of(&text);
        assert!(
            err.starts_with(location),
            "expected {location}... for\n{text}\ngot: {err}"
        );
        assert!(err.contains(words), "expected `{words}` in: {err}");
    }
}

#[test]
fn validate_command_exit_codes() {
    let good = Command::new(common::preflight_bin())
        .arg("validate")
        .args(
            scenario::EMBEDDED
                .iter()
                .map(|(f, _)| scenarios_dir().join(f)),
        )
        .output()
        .unwrap();
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "name: x\nchart: {path: nowhere}\nsteps: [upgrade]\n").unwrap();
    let out = Command::new(common::preflight_bin())
        .arg("validate")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:2:", bad.display())) && err.contains("chart.path `nowhere`"),
        "{err}"
    );
}

#[test]
fn the_test_charts_pass_helm_lint() {
    let helm = common::components(&common::versions()[1]).helm;
    for chart in ["preflight-test", "node-pools"] {
        let out = Command::new(&helm)
            .args(["lint", "--strict"])
            .arg(scenarios_dir().join("charts").join(chart))
            .env(
                "HELM_CACHE_HOME",
                std::env::temp_dir().join("preflight-helm-lint"),
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{chart}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
