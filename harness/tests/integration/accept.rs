//! `--accept` and `--baseline` through the real binary.
//!
//! * `preflight audit` of a local control plane with a webhook that fails closed on the
//!   garbage collector's DELETEs: accepted until tomorrow => exit 0; the same entry
//!   expired yesterday => exit 1 and the report says so; last run's audit.json as the
//!   baseline => exit 0; a bad accept file => exit 2 with `file:line:column` before any
//!   cluster is contacted.
//! * `preflight run` of the admission incident without its expectations (so its
//!   leftovers are findings): accepted => exit 0; the same runs merged with the entry
//!   expired => exit 1; merged with the first report as the baseline => exit 0.

use std::path::Path;
use std::process::{Command, Output};

use kube::api::{Api, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;

use crate::common;

fn audit(kubeconfig: &str, dir: &Path, extra: &[&str]) -> Output {
    Command::new(common::preflight_bin())
        .args(["audit", "--kubeconfig", kubeconfig, "--report-dir"])
        .arg(dir)
        .args(extra)
        .env("CI", "true")
        .output()
        .unwrap()
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn accept_file(dir: &Path, name: &str, expires: time::Date) -> String {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "accept:\n  - match: {{name: \"ValidatingWebhookConfiguration/risky*\"}}\n    reason: our guard, failurePolicy Ignore ships with chart 2.4\n    owner: platform-team\n    expires: {expires}\n  - match: {{check: no-such-check}}\n    reason: left from an old incident\n    owner: alice\n    expires: 2099-01-01\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn accepted_audit_findings_pass_until_they_expire_and_the_baseline_hides_known_ones() {
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let today = time::OffsetDateTime::now_utc().date();
    let tomorrow = today.next_day().unwrap();
    let yesterday = today.previous_day().unwrap();

    // A bad file stops the audit before it reads the (nonexistent) kubeconfig.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "accept:\n  - match: {kind: Job}\n    reason: r\n    owner: o\n    expires: soon\n",
    )
    .unwrap();
    let out = audit(
        "/nonexistent/kubeconfig",
        &dir.path().join("bad"),
        &["--accept", &bad.display().to_string()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    let want = format!("{}:5:14: accept[0].expires `soon`", bad.display());
    assert!(said(&out).contains(&want), "{}", said(&out));

    let version = &common::versions()[0];
    let cluster = common::cluster("accept-audit", version).await;
    let client = cluster.client();
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
        ),
        "validatingwebhookconfigurations",
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let risky: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "risky"},
        "webhooks": [{"name": "risky.example.com", "clientConfig": {"url": format!("https://127.0.0.1:{port}/validate")},
            "rules": [{"operations": ["DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"]}]
    }))
    .unwrap();
    Api::<DynamicObject>::all_with(client, &ar)
        .create(&PostParams::default(), &risky)
        .await
        .unwrap();
    let kc = cluster.kubeconfig().display().to_string();
    eprintln!("control plane up: {:.1} s", started.elapsed().as_secs_f64());

    let plain = dir.path().join("plain");
    let one = std::time::Instant::now();
    let out = audit(&kc, &plain, &[]);
    eprintln!("one audit: {:.1} s", one.elapsed().as_secs_f64());
    assert_eq!(
        out.status.code(),
        Some(1),
        "the risky webhook fails the gate: {}",
        said(&out)
    );

    let accepted = dir.path().join("accepted");
    let file = accept_file(dir.path(), "accept.yaml", tomorrow);
    let out = audit(&kc, &accepted, &["--accept", &file]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let doc: serde_json::Value =
        serde_json::from_str(&common::read(&accepted.join("audit.json"))).unwrap();
    assert_eq!(doc["verdict"], "pass");
    let findings = doc["findings"].as_array().unwrap();
    assert!(!findings.is_empty());
    for f in findings {
        assert_eq!(f["acceptance"]["status"], "accepted", "{f}");
        assert_eq!(f["acceptance"]["owner"], "platform-team", "{f}");
    }
    let entries = &doc["acceptance"]["entries"];
    assert_eq!(entries[0]["status"], "in-force");
    assert_eq!(
        entries[0]["matched"].as_array().unwrap().len(),
        findings.len()
    );
    assert_eq!(entries[1]["status"], "stale");
    assert!(
        common::read(&accepted.join("audit.md"))
            .contains("| stale | `check=no-such-check` | alice |")
    );

    let expired = dir.path().join("expired");
    let file = accept_file(dir.path(), "expired.yaml", yesterday);
    let out = audit(&kc, &expired, &["--accept", &file]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let md = common::read(&expired.join("audit.md"));
    assert!(
        md.contains(&format!("acceptance expired on {yesterday}")),
        "{md}"
    );
    assert!(common::read(&expired.join("junit.xml")).contains("type=\"acceptance-expired\""));

    let baseline = plain.join("audit.json").display().to_string();
    let out = audit(
        &kc,
        &dir.path().join("baseline"),
        &["--baseline", &baseline],
    );
    assert_eq!(out.status.code(), Some(0), "nothing new: {}", said(&out));
    assert!(
        said(&out).contains(&format!("in the baseline {baseline}")),
        "{}",
        said(&out)
    );
    eprintln!(
        "accept audit test: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn preflight(args: &[&str]) -> Output {
    Command::new(common::preflight_bin())
        .args(args)
        .env("CI", "true")
        .output()
        .unwrap()
}

#[test]
fn accepted_run_leftovers_pass_until_they_expire_and_merges_judge_again() {
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let today = time::OffsetDateTime::now_utc().date();
    let scenario = dir.path().join("blocked.yaml");
    std::fs::write(
        &scenario,
        format!(
            "name: accept-blocked\ndescription: the admission incident, its leftovers not expected\nchart:\n  path: {}\n  outsideScenarioDir: true\nwebhooks:\n  - name: delete-guard\n    kind: validating\n    behaviour: allow\n    failurePolicy: Fail\n    timeoutSeconds: 2\n    rules:\n      - operations: [DELETE]\n        apiGroups: [apps, \"\"]\n        apiVersions: [v1]\n        resources: [replicasets, pods]\nsteps:\n  - helm: {{action: install}}\n  - setWebhook: {{name: delete-guard, behaviour: unreachable}}\n  - helm: {{action: uninstall}}\n  - settle: {{timeoutSeconds: 30}}\n",
            common::test_chart().display()
        ),
    )
    .unwrap();
    let entry = |expires: time::Date| {
        format!(
            "accept:\n  - match: {{finding: leftover, scenario: accept-blocked, reason: webhook-blocked-delete}}\n    reason: the guard is down on purpose in this drill\n    owner: platform-team\n    expires: {expires}\n"
        )
    };
    let ok = dir.path().join("ok.yaml");
    std::fs::write(&ok, entry(today)).unwrap();
    let expired = dir.path().join("expired.yaml");
    std::fs::write(&expired, entry(today.previous_day().unwrap())).unwrap();
    let (ok, expired) = (ok.display().to_string(), expired.display().to_string());

    let first = dir.path().join("first");
    let out = preflight(&[
        "run",
        &scenario.display().to_string(),
        "--accept",
        &ok,
        "--report-dir",
        &first.display().to_string(),
    ]);
    eprintln!("run: {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let doc: serde_json::Value =
        serde_json::from_str(&common::read(&first.join("report.json"))).unwrap();
    let target = common::run_of(&doc, "accept-blocked", "target");
    let accepted = common::leftovers(target, "ReplicaSet");
    assert!(
        !accepted.is_empty(),
        "the incident left its ReplicaSet: {target}"
    );
    for l in &accepted {
        assert_eq!(l["acceptance"]["status"], "accepted", "{l}");
        assert_eq!(l["unexpected"], false, "{l}");
    }
    assert_eq!(doc["acceptance"]["entries"][0]["status"], "in-force");

    let shard = first.display().to_string();
    let merged = dir.path().join("expired-merge").display().to_string();
    let out = preflight(&[
        "merge-reports",
        &shard,
        "--accept",
        &expired,
        "--report-dir",
        &merged,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let md = common::read(&Path::new(&merged).join("report.md"));
    assert!(
        md.contains("| EXPIRED |") && md.contains("acceptance expired on"),
        "{md}"
    );

    let baseline = first.join("report.json").display().to_string();
    let merged = dir.path().join("baseline-merge").display().to_string();
    let out = preflight(&[
        "merge-reports",
        &shard,
        "--baseline",
        &baseline,
        "--report-dir",
        &merged,
    ]);
    assert_eq!(out.status.code(), Some(0), "nothing new: {}", said(&out));
    eprintln!("run and merges: {:.1} s", started.elapsed().as_secs_f64());
}
