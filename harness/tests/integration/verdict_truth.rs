//! Verdicts on a chart the harness was not tuned on (`tests/fixtures/charts/truth`),
//! on real control planes at both versions, through the CLI:
//!
//! * only Pod DELETEs blocked: the ReplicaSet is collected and its Pods stay; both
//!   versions leave the same objects, so there is no regression (the Pods' identity
//!   goes through the collected ReplicaSet to the Deployment, not the version-dependent
//!   pod-template-hash);
//! * a `deny` webhook seen only by a server-side dry run gives no webhook cause to a
//!   later finalizer leftover of the same object;
//! * a demonstration whose webhook stays healthy reproduces nothing: "not reproduced",
//!   and the job fails.

use std::process::Command;

use serde_json::Value;

use crate::common;

const PODS_ONLY: &str = r#"name: pods-only
description: a fail-closed webhook on Pod DELETEs only goes unreachable before uninstall
chart: {path: CHART, outsideScenarioDir: true}
webhooks:
  - name: pod-guard
    kind: validating
    failurePolicy: Fail
    timeoutSeconds: 2
    rules:
      - {operations: [DELETE], apiGroups: [""], apiVersions: [v1], resources: [pods]}
steps:
  - helm: {action: install}
  - setWebhook: {name: pod-guard, behaviour: unreachable}
  - helm: {action: uninstall}
  - settle: {timeoutSeconds: 30}
expect:
  leftovers:
    - {kind: Pod, reason: webhook-blocked-delete, count: 3, owner: Deployment/pods-only-api}
"#;

const DRY_RUN_DENY: &str = r#"name: dry-run-deny
description: a webhook denies the dry run's DELETEs only; later a finalizer holds the object
chart: {path: CHART, outsideScenarioDir: true, values: {held: {enabled: true}}}
webhooks:
  - name: cm-guard
    kind: validating
    failurePolicy: Fail
    rules:
      - {operations: [DELETE], apiGroups: [""], apiVersions: [v1], resources: [configmaps]}
steps:
  - helm: {action: install}
  - setWebhook: {name: cm-guard, behaviour: deny, message: no configmap deletes during the freeze}
  - serverDryRun: uninstall
  - setWebhook: {name: cm-guard, behaviour: allow}
  - helm: {action: uninstall}
  - settle: {timeoutSeconds: 20}
expect:
  leftovers:
    - {kind: ConfigMap, reason: blocked-by-finalizer, count: 1}
"#;

const HEALTHY_DEMO: &str = r#"name: healthy-demo
description: claims to demonstrate blocked deletes, but its webhook stays healthy
chart: {path: CHART, outsideScenarioDir: true}
webhooks:
  - name: pod-guard
    kind: validating
    failurePolicy: Fail
    rules:
      - {operations: [DELETE], apiGroups: [""], apiVersions: [v1], resources: [pods]}
steps:
  - helm: {action: install}
  - helm: {action: uninstall}
  - settle: {timeoutSeconds: 30}
expect:
  leftovers:
    - {kind: Pod, reason: webhook-blocked-delete}
"#;

const KEPT_API: &str = r#"name: kept-api
description: the Deployment is kept on purpose; its ReplicaSet and Pods stay with it
chart: {path: CHART, outsideScenarioDir: true, values: {api: {keep: true}}}
steps:
  - helm: {action: install}
  - helm: {action: uninstall}
  - settle: {timeoutSeconds: 30}
"#;

fn finding_texts(run: &Value) -> Vec<String> {
    run["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["text"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn verdicts_on_an_unseen_chart_come_from_what_the_cluster_did() {
    let dir = tempfile::tempdir().unwrap();
    let chart =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/charts/truth");
    let mut files = Vec::new();
    for (name, text) in [
        ("pods-only", PODS_ONLY),
        ("dry-run-deny", DRY_RUN_DENY),
        ("healthy-demo", HEALTHY_DEMO),
        ("kept-api", KEPT_API),
    ] {
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, text.replace("CHART", &chart.display().to_string())).unwrap();
        files.push(file);
    }
    let reports = dir.path().join("reports");
    let out = Command::new(common::preflight_bin())
        .arg("run")
        .args(&files)
        .arg("--report-dir")
        .arg(&reports)
        .env("CI", "true")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let doc: Value = serde_json::from_str(&common::read(&reports.join("report.json")))
        .unwrap_or_else(|e| panic!("report.json: {e}\n{stderr}"));
    let scenario = |name: &str| {
        doc["scenarios"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()
            .clone()
    };

    // Only Pod DELETEs blocked: the same leftovers on both versions, no regression.
    let pods_only = scenario("pods-only");
    let (source, target) = (
        common::run_of(&doc, "pods-only", "source"),
        common::run_of(&doc, "pods-only", "target"),
    );
    for run in [source, target] {
        let pods = common::leftovers(run, "Pod");
        assert_eq!(pods.len(), 3, "{run:#}");
        for pod in &pods {
            assert_eq!(pod["reason"], "webhook-blocked-delete", "{pod:#}");
            assert_eq!(
                pod["normalized"],
                "Pod of ReplicaSet of Deployment pods-only-api"
            );
            let evidence = pod["evidence"].to_string();
            assert!(
                evidence.contains("pod-guard"),
                "the refusal names the webhook: {evidence}"
            );
        }
        assert!(
            common::leftovers(run, "ReplicaSet").is_empty(),
            "the ReplicaSet's DELETE was allowed: {run:#}"
        );
    }
    assert_eq!(common::failures(source), common::failures(target));
    assert_eq!(
        pods_only["regressions"],
        serde_json::json!([]),
        "{pods_only:#}"
    );
    assert_eq!(
        pods_only["improvements"],
        serde_json::json!([]),
        "{pods_only:#}"
    );
    assert_eq!(pods_only["verdict"], "pass", "{pods_only:#}");

    // A dry run's refusal is not the cause of a later finalizer leftover.
    for role in ["source", "target"] {
        let run = common::run_of(&doc, "dry-run-deny", role);
        let held = common::leftovers(run, "ConfigMap");
        let held: Vec<_> = held
            .iter()
            .filter(|l| l["name"] == "dry-run-deny-held")
            .collect();
        assert_eq!(held.len(), 1, "{run:#}");
        assert_eq!(held[0]["reason"], "blocked-by-finalizer", "{:#}", held[0]);
        assert!(
            !held[0]["evidence"].to_string().contains("cm-guard"),
            "no webhook cause from the dry run: {:#}",
            held[0]
        );
        // The dry run itself saw the refusal.
        let refused = run["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s.get("dryRun"))
            .any(|d| {
                d.to_string()
                    .contains("no configmap deletes during the freeze")
            });
        assert!(
            refused,
            "the server-side dry run recorded the denial: {run:#}"
        );
    }
    assert_eq!(scenario("dry-run-deny")["verdict"], "pass");

    // Dependents of an owner kept on purpose stay for that reason, not "cause unknown".
    for role in ["source", "target"] {
        let run = common::run_of(&doc, "kept-api", role);
        let kinds: Vec<(String, String)> = run["leftovers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["kind"].as_str().unwrap().to_string(),
                    l["reason"].as_str().unwrap().to_string(),
                )
            })
            .filter(|(k, _)| matches!(k.as_str(), "Deployment" | "ReplicaSet" | "Pod"))
            .collect();
        assert_eq!(
            kinds.len(),
            5,
            "1 Deployment, 1 ReplicaSet, 3 Pods: {run:#}"
        );
        assert!(
            kinds.iter().all(|(_, r)| r == "kept-by-policy"),
            "{kinds:?}"
        );
        let pod = &common::leftovers(run, "Pod")[0];
        assert!(
            pod["evidence"][0]
                .as_str()
                .unwrap()
                .contains("still exists and stays (kept-by-policy)"),
            "{pod:#}"
        );
        assert_eq!(pod["evidence"].as_array().unwrap().len(), 1, "{pod:#}");
        assert_eq!(run["verdict"], "pass", "{run:#}");
    }

    // A demonstration that reproduces nothing fails, and says so.
    let healthy = scenario("healthy-demo");
    assert_eq!(healthy["verdict"], "fail", "{healthy:#}");
    for role in ["source", "target"] {
        let run = common::run_of(&doc, "healthy-demo", role);
        assert_eq!(run["verdict"], "fail");
        assert!(common::failures(run).is_empty(), "{run:#}");
        assert_eq!(
            finding_texts(run),
            ["not reproduced: expected Pod (webhook-blocked-delete) left behind, found 0 matching"]
        );
    }
    assert_eq!(doc["verdict"], "fail");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
}
