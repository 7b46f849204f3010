//! Paths of versions: real control planes at v1.29 to v1.32, the differences between
//! Kubernetes releases found by the ordinary comparison of what each cluster did.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common;

fn run(args: &[&str], dir: &Path) -> (Option<i32>, String, Value) {
    let args: Vec<&str> = std::iter::once("run").chain(args.iter().copied()).collect();
    let (code, doc, text) = common::run_preflight(&args, dir);
    (code, text, doc)
}

fn scenario<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no scenario {name} in {doc}"))
}

fn kinds(diffs: &Value) -> String {
    diffs
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["text"].as_str().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("; ")
}

/// kubernetes/kubernetes#101078 (the garbage collector waits for every informer) and
/// #125796 (from 1.32 it stops waiting after 30 s): v1.32 collects what v1.31 leaves,
/// and the report says so as an improvement, from the two clusters' own outcomes.
#[test]
fn from_1_31_to_1_32_the_garbage_collector_no_longer_stalls_on_an_unreachable_conversion_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let (code, text, doc) = run(
        &["--path", "v1.31,v1.32", "incident-conversion"],
        dir.path(),
    );
    // The scenario declares the v1.31 stall; on v1.32 it does not happen, which the
    // gate reports as `unreproduced` (exit 1).
    assert_eq!(code, Some(1), "{text}");
    let versions: Vec<&str> = common::strings(&doc["versions"], "version");
    assert_eq!(versions.len(), 2);
    assert!(versions[0].starts_with("v1.31.") && versions[1].starts_with("v1.32."));
    assert_eq!(doc["versions"][0]["requested"], "v1.31");

    let sc = scenario(&doc, "incident-conversion");
    let old = common::run_of(&doc, "incident-conversion", "source");
    let new = common::run_of(&doc, "incident-conversion", "target");
    let stalled: Vec<&Value> = old["leftovers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["reason"] == "garbage-collector-stalled")
        .collect();
    assert!(
        stalled.iter().any(|l| l["kind"] == "ReplicaSet")
            && stalled.iter().any(|l| l["kind"] == "Pod"),
        "v1.31 leaves the Deployment's dependents: {old}"
    );
    assert!(
        stalled.iter().all(|l| l["evidence"]
            .to_string()
            .contains("kube-controller-manager:")),
        "the stall is the controller manager's own account: {stalled:?}"
    );
    // The settle waited for the collector rather than calling the quiet namespace done.
    let settle = old["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|s| s.get("settle"))
        .unwrap();
    assert_eq!(settle["settledBy"], "garbage-collector-waiting", "{settle}");
    assert!(
        common::failures(new)
            .iter()
            .all(|(_, reason)| reason != "garbage-collector-stalled"),
        "v1.32 collects: {new}"
    );
    let improvements = kinds(&sc["improvements"]);
    assert!(
        improvements.contains("cleans up")
            && improvements.contains("ReplicaSet")
            && improvements.contains("Pod"),
        "{improvements}"
    );
    assert_eq!(sc["regressions"].as_array().unwrap().len(), 0, "{sc}");
    let md = common::read(&dir.path().join("report.md"));
    assert!(md.contains("improvement: the target cleans up"), "{md}");
}

/// ValidatingAdmissionPolicy is served by default from 1.30: a chart shipping one
/// cannot install on 1.29, and on 1.30 its policy refuses the garbage collector's
/// deletes. Both differences come from the clusters' answers (helm's exit codes, the
/// audit log's refused DELETEs).
#[test]
fn from_1_29_to_1_30_a_validating_admission_policy_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let (code, text, doc) = run(
        &["../scenarios/policy-default.yaml", "--path", "v1.29,v1.30"],
        dir.path(),
    );
    assert_eq!(code, Some(1), "{text}");
    let sc = scenario(&doc, "policy-default");
    let improvements = kinds(&sc["improvements"]);
    assert!(
        improvements.contains("`helm install` exits 0 on the target and 1 on the source")
            && improvements.contains("ValidatingAdmissionPolicy"),
        "{improvements}"
    );
    let regressions = kinds(&sc["regressions"]);
    assert!(
        regressions.contains("the target leaves") && regressions.contains("ReplicaSet"),
        "{regressions}\n{}",
        common::run_of(&doc, "policy-default", "target")
    );
    let new = common::run_of(&doc, "policy-default", "target");
    let rs = common::leftovers(new, "ReplicaSet");
    assert_eq!(rs.len(), 1, "{new}");
    assert_eq!(rs[0]["reason"], "webhook-blocked-delete");
    let evidence = rs[0]["evidence"].to_string();
    assert!(
        evidence.contains("kube-apiserver audit:")
            && evidence.contains("generic-garbage-collector")
            && evidence.contains("ValidatingAdmissionPolicy"),
        "{evidence}"
    );
}

/// Four versions in one report: one run per version, three hops and first against
/// last; the in-place upgrade scenario walks the same path one minor at a time.
#[test]
fn a_path_of_four_versions_is_one_report() {
    let dir = tempfile::tempdir().unwrap();
    let (code, text, doc) = run(
        &[
            "baseline",
            "incident-conversion-upgrade",
            "--path",
            "v1.29,v1.30,v1.31,v1.32",
        ],
        dir.path(),
    );
    assert!(matches!(code, Some(0 | 1)), "{text}");
    assert_eq!(doc["versions"].as_array().unwrap().len(), 4, "{doc}");
    let baseline = scenario(&doc, "baseline");
    let runs = baseline["runs"].as_array().unwrap();
    let roles: Vec<&str> = runs.iter().map(|r| r["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["source", "via", "via", "target"]);
    let hops = baseline["hops"].as_array().unwrap();
    let pairs: Vec<(String, String)> = hops
        .iter()
        .map(|h| (h["from"].to_string(), h["to"].to_string()))
        .collect();
    assert_eq!(pairs.len(), 3, "{pairs:?}");
    for (i, (from, to)) in pairs.iter().enumerate() {
        assert_eq!(*from, doc["versions"][i]["version"].to_string());
        assert_eq!(*to, doc["versions"][i + 1]["version"].to_string());
    }
    assert_eq!(baseline["verdict"], "pass", "{baseline}");
    let upgrade = common::run_of(&doc, "incident-conversion-upgrade", "upgrade");
    assert_eq!(
        upgrade["version"], doc["versions"][0]["version"],
        "{upgrade}"
    );
    assert_eq!(
        upgrade["endVersion"], doc["versions"][3]["version"],
        "{upgrade}"
    );
    let upgrades: Vec<String> = upgrade["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["version"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        upgrades.contains(&doc["versions"][3]["version"].as_str().unwrap().to_string()),
        "steps after the upgrade run on the last version: {upgrades:?}"
    );
    let md = common::read(&dir.path().join("report.md"));
    assert!(
        md.starts_with(&format!(
            "# preflight: {} -> {} -> {} -> {}",
            doc["versions"][0]["version"].as_str().unwrap(),
            doc["versions"][1]["version"].as_str().unwrap(),
            doc["versions"][2]["version"].as_str().unwrap(),
            doc["versions"][3]["version"].as_str().unwrap()
        )),
        "{md}"
    );
}

/// Three shards of the default run, merged, give the verdict one machine gives for the
/// same runs; merging in another order gives the same bytes. The shards run at once, as
/// a CI matrix runs them (together they start as many control planes as the whole run).
#[test]
fn three_shards_merged_give_the_unsharded_verdict() {
    let whole = common::default_run();
    assert_eq!(whole.code, Some(0), "{}\n{}", whole.stdout, whole.stderr);
    let single: Value =
        serde_json::from_str(&common::read(&whole.dir.join("report.json"))).unwrap();
    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (1..=3)
        .map(|i| root.path().join(format!("shard-{i}")))
        .collect();
    let shards: Vec<(Option<i32>, String, Value)> = std::thread::scope(|s| {
        let running: Vec<_> = dirs
            .iter()
            .enumerate()
            .map(|(i, d)| s.spawn(move || run(&["--shard", &format!("{}/3", i + 1)], d)))
            .collect();
        running.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut planned = 0;
    for (code, text, doc) in &shards {
        assert!(matches!(code, Some(0 | 1)), "{text}");
        planned += doc["summary"]["runs"].as_u64().unwrap();
    }
    assert_eq!(planned, single["summary"]["runs"].as_u64().unwrap());
    let merge = |order: &[usize], out: &Path| {
        let o = Command::new(common::preflight_bin())
            .arg("merge-reports")
            .args(order.iter().map(|i| &dirs[*i]))
            .arg("--report-dir")
            .arg(out)
            .env("CI", "true")
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let a = root.path().join("merged-a");
    let b = root.path().join("merged-b");
    let (code, err) = merge(&[0, 1, 2], &a);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(merge(&[2, 0, 1], &b).0, Some(0));
    let merged: Value = serde_json::from_str(&common::read(&a.join("report.json"))).unwrap();
    // The verdict, byte for byte: job, scenarios and runs.
    let verdict = |doc: &Value| {
        let mut v = serde_json::json!({
            "verdict": doc["verdict"], "exitCode": doc["exitCode"],
            "summary": doc["summary"], "regressions": doc["regressions"],
        });
        v["scenarios"] = doc["scenarios"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s["name"], "verdict": s["verdict"],
                    "regressions": s["regressions"], "improvements": s["improvements"],
                    "runs": s["runs"].as_array().unwrap().iter().map(|r| serde_json::json!({
                        "role": r["role"], "version": r["version"], "verdict": r["verdict"],
                        "failures": common::failures(r),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::to_string_pretty(&v).unwrap()
    };
    assert_eq!(verdict(&merged), verdict(&single));
    let strip = |p: &Path| {
        let mut v: Value = serde_json::from_str(&common::read(p)).unwrap();
        v["generatedAt"] = Value::Null;
        v.to_string()
    };
    assert_eq!(strip(&a.join("report.json")), strip(&b.join("report.json")));
    assert_eq!(
        common::read(&a.join("report.md")),
        common::read(&b.join("report.md"))
    );

    // Without one shard, no verdict.
    let (code, err) = merge(&[0, 2], &root.path().join("merged-c"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("shard 2 of 3 missing"), "{err}");
}

fn preflight(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(common::preflight_bin())
        .args(args)
        .env("CI", "true")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Bad paths, shards and AKS files are refused before anything starts, naming the
/// flag or file and the field.
#[test]
fn bad_paths_shards_and_aks_files_are_refused_with_what_is_wrong() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "--path", "v1.30"],
            "a path needs at least two versions",
        ),
        (&["run", "--path", "v1.30,v1.29"], "does not come after"),
        (
            &["run", "--path", "v1.29,v1.12"],
            "preflight knows Kubernetes v1.28 to v1.37",
        ),
        (
            &["run", "--path", "v1.29,latest"],
            "`latest` is not a Kubernetes version",
        ),
        (
            &["run", "--path", "v1.29,v1.30", "--source", "v1.29.15"],
            "cannot be used with",
        ),
        (&["run", "--shard", "0/3"], "expected I/N with 1 <= I <= N"),
        (&["run", "--shard", "4/3"], "expected I/N with 1 <= I <= N"),
        (&["run", "--shard", "x"], "expected I/N with 1 <= I <= N"),
        (
            &["run", "--aks-upgrades", "/nonexistent/upgrades.json"],
            "/nonexistent/upgrades.json: cannot read it",
        ),
        (
            &["merge-reports", "/nonexistent/shard-1"],
            "/nonexistent/shard-1/runs.json: cannot read it",
        ),
    ];
    for (args, expected) in cases {
        let (code, _, err) = preflight(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(
            err.contains(expected),
            "{args:?}: expected `{expected}` in:\n{err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("upgrades.json");
    std::fs::write(
        &file,
        "{\"controlPlaneProfile\": {\"kubernetesVersion\": \"1.29\"}}",
    )
    .unwrap();
    let (code, _, err) = preflight(&["run", "--aks-upgrades", file.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "{}: controlPlaneProfile.kubernetesVersion: `1.29`",
            file.display()
        )),
        "{err}"
    );
}

/// `preflight versions` lists every known minor, and what the cache holds.
#[test]
fn versions_lists_every_minor_and_the_cache() {
    let (code, out, err) = preflight(&["versions"]);
    assert_eq!(code, Some(0), "{err}");
    for minor in 28..=37 {
        assert!(
            out.contains(&format!("\nv1.{minor} ")),
            "v1.{minor} missing:\n{out}"
        );
    }
    // The pinned source and target are in the cache (ci/test.sh builds them first).
    let line = out.lines().find(|l| l.starts_with("v1.29 ")).unwrap();
    assert!(line.contains("v1.29.15") && line.contains("yes"), "{line}");
}
