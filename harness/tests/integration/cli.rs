//! The binary's commands, as a user runs them.

use std::process::Command;
use std::time::Duration;

use crate::common;

#[test]
fn a_bad_version_flag_exits_2_and_names_the_flag() {
    let out = Command::new(common::preflight_bin())
        .args(["run", "--source", "1.30.x"])
        .env("CI", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid value for --source"), "{err}");
    assert!(
        err.contains("`1.30.x` is not a Kubernetes version"),
        "{err}"
    );
    assert!(
        err.contains("expected a minor (v1.30) or a patch (v1.30.14)"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_up_leaves_a_usable_cluster_and_down_removes_it() {
    preflight::init_crypto();
    let version = &common::versions()[1];
    common::components(version);
    let state = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(common::preflight_bin())
            .args(args)
            .env("CI", "true")
            .env("PREFLIGHT_STATE_DIR", state.path())
            .output()
            .unwrap()
    };
    let up = run(&[
        "cluster",
        "up",
        "--version",
        &version.to_string(),
        "--name",
        "itest",
    ]);
    let stdout = String::from_utf8_lossy(&up.stdout).to_string();
    assert!(
        up.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let (client, kubeconfig) = common::cluster_up_client(&stdout).await;
    assert_eq!(
        client.apiserver_version().await.unwrap().git_version,
        version.to_string()
    );

    let again = run(&[
        "cluster",
        "up",
        "--version",
        &version.to_string(),
        "--name",
        "itest",
    ]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "a second `up` with the same name is refused"
    );

    let down = run(&["cluster", "down", "--name", "itest"]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    let needle = state.path().display().to_string();
    let gone = common::eventually(Duration::from_secs(20), || {
        common::processes_mentioning(&needle).is_empty()
    })
    .await;
    assert!(
        gone,
        "processes remain: {:?}",
        common::processes_mentioning(&needle)
    );
    assert!(!std::path::Path::new(&kubeconfig).exists());

    let twice = run(&["cluster", "down", "--name", "itest"]);
    assert_eq!(twice.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&twice.stderr).contains("no cluster named `itest` is running"));
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_snapshot_and_diff_commands() {
    let version = &common::versions()[1];
    let cluster = common::cluster("cli-audit", version).await;
    let kc = cluster.kubeconfig().display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(common::preflight_bin())
            .args(args)
            .env("CI", "true")
            .output()
            .unwrap()
    };

    let out = run(&[
        "audit",
        "--kubeconfig",
        &kc,
        "--target",
        "v1.31.0",
        "--report-dir",
        &dir.path().join("audit").display().to_string(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a clean cluster passes: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["audit.json", "audit.md", "junit.xml", "audit.html"] {
        assert!(dir.path().join("audit").join(f).is_file(), "{f}");
    }

    let before = dir.path().join("before.json");
    assert!(
        run(&[
            "snapshot",
            "--kubeconfig",
            &kc,
            "--out",
            &before.display().to_string()
        ])
        .status
        .success()
    );
    // Something becomes stuck in deletion between the two snapshots.
    let client = cluster.client();
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client, "default");
    let cm: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "held", "finalizers": ["example.com/hold"]}})).unwrap();
    cms.create(&Default::default(), &cm).await.unwrap();
    cms.delete("held", &Default::default()).await.unwrap();
    let after = dir.path().join("after.json");
    assert!(
        run(&[
            "snapshot",
            "--kubeconfig",
            &kc,
            "--out",
            &after.display().to_string()
        ])
        .status
        .success()
    );
    let diff = run(&[
        "diff",
        &before.display().to_string(),
        &after.display().to_string(),
    ]);
    let text = String::from_utf8_lossy(&diff.stdout);
    assert_eq!(diff.status.code(), Some(1), "{text}");
    assert!(
        text.contains("newly stuck in deletion: 1") && text.contains("ConfigMap/default/held"),
        "{text}"
    );

    let bad = run(&["audit", "--kubeconfig", "/nonexistent/kubeconfig"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .contains("kubeconfig /nonexistent/kubeconfig: no such file")
    );
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, "this: [is not a kubeconfig").unwrap();
    let bad = run(&["audit", "--kubeconfig", &garbage.display().to_string()]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains(&format!("kubeconfig {}", garbage.display())),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn the_kind_provider_says_what_to_do_when_no_docker_engine_answers() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(common::preflight_bin())
        .args(["run", "baseline", "--provider", "kind", "--report-dir"])
        .arg(dir.path())
        .env("CI", "true")
        .env("DOCKER_HOST", "unix:///nonexistent/preflight-test.sock")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no Docker engine answers") && stderr.contains("ci/docker-engine.sh"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("report.json").exists(),
        "nothing ran, so no report claims anything"
    );
}

/// A machine whose proxy settings are for the way out (a corporate `HTTPS_PROXY`
/// without a `NO_PROXY` for loopback): preflight reaches its own local control planes
/// directly (etcd's health, the controller manager's metrics, the API server through
/// kube and helm), so the run is the same as without a proxy. The proxy named here is a
/// closed port: anything sent through it would fail the run.
#[test]
fn a_proxy_for_the_way_out_does_not_stand_between_preflight_and_its_clusters() {
    common::components(&common::versions()[0]);
    common::components(&common::versions()[1]);
    let reports = tempfile::tempdir().unwrap();
    let closed = "http://127.0.0.1:9";
    let out = Command::new(common::preflight_bin())
        .args(["run", "baseline", "--report-dir"])
        .arg(reports.path())
        .env("CI", "true")
        .env("HTTP_PROXY", closed)
        .env("HTTPS_PROXY", closed)
        .env("http_proxy", closed)
        .env("https_proxy", closed)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("verdict: PASS"), "{text}");
}
