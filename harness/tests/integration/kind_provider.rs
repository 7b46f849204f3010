//! The kind provider on real kind clusters (real kubelets) at both pinned versions,
//! from preflight's own offline node images (`preflight components kind-image`, which
//! `ci/test.sh` runs first).
//!
//! The embedded scenarios must give the verdicts the README promises on kind too, with
//! causes from what the cluster recorded (audit log, control-plane logs, webhook
//! records), and agree with the local provider except where a kubelet explains the
//! difference. Nothing may be left behind: no kind cluster, no container.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

use crate::common;

/// Whether a Docker engine answers. CI must have one (`ci/test.sh` starts it).
fn docker_available() -> bool {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have a Docker engine (ci/test.sh starts one with ci/docker-engine.sh)"
        );
        eprintln!("SKIPPED: no Docker engine answers; run `sudo ci/docker-engine.sh`");
    }
    ok
}

fn preflight_containers() -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Names}}"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|n| n.starts_with("preflight-") && !n.starts_with("preflight-node-build"))
        .map(str::to_string)
        .collect()
}

fn run_of<'a>(doc: &'a Value, scenario: &str, role: &str) -> &'a Value {
    doc["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == scenario)
        .and_then(|s| {
            s["runs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["role"] == role)
        })
        .unwrap_or_else(|| panic!("no {role} run of {scenario}: {doc}"))
}

fn leftovers<'a>(run: &'a Value, kind: &str) -> Vec<&'a Value> {
    run["leftovers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] == kind)
        .collect()
}

/// What a run left that counts as a failure: (normalised identity, reason).
fn failures(run: &Value) -> BTreeSet<(String, String)> {
    run["leftovers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| {
            !matches!(
                l["reason"].as_str(),
                Some("kept-by-policy" | "kept-by-design")
            )
        })
        .map(|l| {
            (
                l["normalized"].as_str().unwrap_or_default().to_string(),
                l["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn run_preflight(args: &[&str], dir: &std::path::Path) -> (Option<i32>, Value, String) {
    let out = Command::new(common::preflight_bin())
        .args(args)
        .arg("--report-dir")
        .arg(dir)
        .env("CI", "true")
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = serde_json::from_str(&common::read(&dir.join("report.json")))
        .unwrap_or_else(|e| panic!("no report.json ({e}): {text}"));
    (out.status.code(), doc, text)
}

const SCENARIOS: [&str; 3] = ["baseline", "incident-admission", "incident-conversion"];

#[test]
fn kind_gives_the_promised_verdicts_from_cluster_evidence_and_agrees_with_local() {
    if !docker_available() {
        return;
    }
    let kind_dir = tempfile::tempdir().unwrap();
    let mut args = vec!["run", "--provider", "kind"];
    args.extend(SCENARIOS);
    let (code, kind, text) = run_preflight(&args, kind_dir.path());
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(kind["provider"], "kind");
    assert_eq!(
        preflight_containers(),
        Vec::<String>::new(),
        "kind clusters left behind"
    );

    for role in ["source", "target"] {
        let base = run_of(&kind, "baseline", role);
        assert_eq!(
            failures(base),
            BTreeSet::new(),
            "{role}: baseline is clean on kind: {base}"
        );
        // Real kubelets ran the hook Job (no stand-in on kind): install succeeded.
        for step in base["steps"].as_array().unwrap() {
            if let Some(c) = step["helm"]["exitCode"].as_i64() {
                assert_eq!(c, 0, "{role}: {step}");
            }
        }

        let adm = run_of(&kind, "incident-admission", role);
        let rs = leftovers(adm, "ReplicaSet");
        assert_eq!(rs.len(), 1, "{role}: {adm}");
        assert_eq!(
            rs[0]["reason"], "webhook-blocked-delete",
            "{role}: {}",
            rs[0]
        );
        let evidence = rs[0]["evidence"].to_string();
        assert!(
            evidence.contains("kube-apiserver audit:")
                || evidence.contains("garbage collector could not delete"),
            "{role}: the cause comes from the cluster's own records: {evidence}"
        );
        assert!(evidence.contains("delete-guard"), "{role}: {evidence}");
        assert!(!leftovers(adm, "Pod").is_empty(), "{role}: {adm}");

        let conv = run_of(&kind, "incident-conversion", role);
        let rs = leftovers(conv, "ReplicaSet");
        assert_eq!(rs.len(), 1, "{role}: {conv}");
        assert_eq!(
            rs[0]["reason"], "garbage-collector-stalled",
            "{role}: {}",
            rs[0]
        );
    }

    // The local provider's fidelity check: the same scenarios, the same leftovers and
    // causes (README, "Where local and kind differ").
    let local_dir = tempfile::tempdir().unwrap();
    let mut args = vec!["run", "--provider", "local"];
    args.extend(SCENARIOS);
    let (code, local, text) = run_preflight(&args, local_dir.path());
    assert_eq!(code, Some(0), "{text}");
    for scenario in SCENARIOS {
        for role in ["source", "target"] {
            assert_eq!(
                failures(run_of(&kind, scenario, role)),
                failures(run_of(&local, scenario, role)),
                "{scenario} {role}: kind and local disagree"
            );
        }
    }
}
