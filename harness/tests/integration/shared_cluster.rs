//! The `kubeconfig` provider, on a local control plane used as if it were a shared
//! staging cluster: other namespaces are never touched by the broken sample webhooks,
//! nothing preflight created remains, and an interrupted run's leftovers are swept.

use std::process::Command;
use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use preflight::scenario;
use preflight::webhook::{Behaviour, BehaviourSpec, Registration, WebhookServer};

use crate::common;

fn ar(group: &str, kind: &str, plural: &str) -> ApiResource {
    let version = "v1";
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

async fn owned(client: &kube::Client) -> Vec<String> {
    let mut out = Vec::new();
    for r in [
        ar("", "Namespace", "namespaces"),
        ar(
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
        ),
    ] {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &r);
        for o in api
            .list(&ListParams::default().labels("app.kubernetes.io/managed-by=preflight"))
            .await
            .unwrap()
            .items
        {
            out.push(format!(
                "{}/{}",
                r.kind,
                o.metadata.name.unwrap_or_default()
            ));
        }
    }
    out
}

// The "shared cluster" here is a local control plane: no kubelet runs the chart's hook
// Job, and preflight never fakes one on a cluster it does not own, so the hook is off.
const SCENARIO: &str = r#"name: shared-admission
description: the admission incident, on a shared cluster
chart:
  path: CHART
  values: {widget: {enabled: false}, hook: {enabled: false}}
webhooks:
  - name: delete-guard
    kind: validating
    failurePolicy: Fail
    timeoutSeconds: 2
    rules:
      - {operations: [DELETE], apiGroups: [apps, ""], apiVersions: [v1], resources: [replicasets, pods]}
steps:
  - helm: {action: install}
  - setWebhook: {name: delete-guard, behaviour: unreachable}
  - helm: {action: uninstall}
  - settle: {timeoutSeconds: 30}
expect:
  leftovers:
    - {kind: ReplicaSet, reason: webhook-blocked-delete}
    - {kind: Pod, reason: webhook-blocked-delete}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_cluster_is_left_as_it_was_found() {
    let version = &common::versions()[1];
    let cluster = common::cluster("shared", version).await;
    let client = cluster.client();
    let kc = cluster.kubeconfig().display().to_string();

    // Someone else's workload, in a namespace that is not preflight's.
    let nss: Api<DynamicObject> = Api::all_with(client.clone(), &ar("", "Namespace", "namespaces"));
    let team: DynamicObject = serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})).unwrap();
    nss.create(&PostParams::default(), &team).await.unwrap();
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), "team-a");
    deployments
        .create(
            &PostParams::default(),
            &preflight::smoke::deployment("api", 2),
        )
        .await
        .unwrap();

    // What an interrupted run left: a labelled namespace and a webhook configuration.
    let old: DynamicObject = serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "pf-old-abcde0", "labels": {"app.kubernetes.io/managed-by": "preflight", "preflight.dev/run": "old"}}})).unwrap();
    nss.create(&PostParams::default(), &old).await.unwrap();
    let vwcs: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ar(
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
        ),
    );
    let stale: DynamicObject = serde_json::from_value(serde_json::json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "preflight-pf-old-abcde0-guard", "labels": {"app.kubernetes.io/managed-by": "preflight", "preflight.dev/run": "old"}},
        "webhooks": [{"name": "guard.pf-old.preflight.dev", "clientConfig": {"url": "https://127.0.0.1:9/x"}, "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "rules": [{"operations": ["DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "pf-old-abcde0"}}}]})).unwrap();
    vwcs.create(&PostParams::default(), &stale).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let chart =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/charts/preflight-test");
    let file = dir.path().join("shared.yaml");
    std::fs::write(
        &file,
        SCENARIO.replace("CHART", &chart.display().to_string()),
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(common::preflight_bin())
            .args(args)
            .env("CI", "true")
            .output()
            .unwrap()
    };
    let reports = dir.path().join("reports").display().to_string();
    let out = run(&[
        "run",
        &file.display().to_string(),
        "--provider",
        "kubeconfig",
        "--kubeconfig",
        &kc,
        "--webhook-address",
        "127.0.0.1",
        "--report-dir",
        &reports,
    ]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{stderr}\n{}",
        common::read(&dir.path().join("reports/report.json"))
    );
    assert!(
        stderr.contains("removed what an interrupted earlier run left")
            && stderr.contains("ValidatingWebhookConfiguration/preflight-pf-old-abcde0-guard"),
        "{stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&common::read(&dir.path().join("reports/report.json"))).unwrap();
    assert_eq!(report["provider"], "kubeconfig");
    let leftovers = report["scenarios"][0]["runs"][0]["leftovers"].to_string();
    assert!(
        leftovers.contains("webhook-blocked-delete"),
        "the incident is reproduced on the shared cluster: {leftovers}"
    );

    // Nothing preflight created remains (namespaces may take a moment to terminate).
    let clean = preflight::smoke::poll(Duration::from_secs(60), || async {
        owned(&client).await.is_empty().then_some(())
    })
    .await;
    assert!(clean.is_some(), "left behind: {:?}", owned(&client).await);

    // team-a's workload was never touched and its cascade still works.
    let (rs, pods) = preflight::smoke::dependents(&client, "team-a", "api")
        .await
        .unwrap();
    assert_eq!((rs.len(), pods.len()), (1, 2));
    deployments
        .delete("api", &DeleteParams::background())
        .await
        .unwrap();
    let gone = preflight::smoke::poll(Duration::from_secs(60), || async {
        let (rs, pods) = preflight::smoke::dependents(&client, "team-a", "api")
            .await
            .ok()?;
        (rs.is_empty() && pods.is_empty()).then_some(())
    })
    .await;
    assert!(gone.is_some(), "team-a's cascade works after the run");

    // Steps that would affect everyone are refused, with the reason.
    let refused = run(&[
        "run",
        "incident-conversion",
        "--provider",
        "kubeconfig",
        "--kubeconfig",
        &kc,
        "--webhook-address",
        "127.0.0.1",
        "--report-dir",
        &reports,
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stdout).contains("cannot run on a shared cluster"),
        "{}",
        String::from_utf8_lossy(&refused.stdout)
    );
    let no_address = run(&[
        "run",
        &file.display().to_string(),
        "--provider",
        "kubeconfig",
        "--kubeconfig",
        &kc,
        "--report-dir",
        &reports,
    ]);
    assert_eq!(no_address.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_address.stdout).contains("--webhook-address"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_sample_webhook_never_touches_other_namespaces() {
    let version = &common::versions()[0];
    let cluster = common::cluster("scoped", version).await;
    let client = cluster.client();
    for ns in ["team-b", "pf-mine-abcde0"] {
        preflight::smoke::ensure_namespace(&client, ns)
            .await
            .unwrap();
    }
    let pods = |ns: &str| Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), ns);
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}})).unwrap();
    for ns in ["team-b", "pf-mine-abcde0"] {
        pods(ns).create(&PostParams::default(), &pod).await.unwrap();
    }
    let s = scenario::embedded_named("incident-admission").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = WebhookServer::new(dir.path(), "127.0.0.1".parse().unwrap(), &[])
        .await
        .unwrap();
    let mut reg = Registration::register(&client, &server, &s.webhooks, "pf-mine-abcde0", "mine")
        .await
        .unwrap();
    server
        .set("delete-guard", BehaviourSpec::new(Behaviour::Unreachable))
        .await
        .unwrap();
    pods("team-b")
        .delete("p", &DeleteParams::default())
        .await
        .expect("another namespace's delete is not intercepted");
    let mine = pods("pf-mine-abcde0")
        .delete("p", &DeleteParams::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(mine.contains("failed calling webhook"), "{mine}");
    assert!(reg.teardown(&client).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_run_on_a_shared_cluster_cleans_up_after_itself() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let version = &common::versions()[1];
    let cluster = common::cluster("interrupted", version).await;
    let client = cluster.client();
    let dir = tempfile::tempdir().unwrap();
    let chart =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/charts/preflight-test");
    let file = dir.path().join("shared.yaml");
    std::fs::write(
        &file,
        SCENARIO.replace("CHART", &chart.display().to_string()),
    )
    .unwrap();
    let mut child = Command::new(common::preflight_bin())
        .args([
            "run",
            &file.display().to_string(),
            "--provider",
            "kubeconfig",
            "--webhook-address",
            "127.0.0.1",
            "--kubeconfig",
        ])
        .arg(cluster.kubeconfig())
        .arg("--report-dir")
        .arg(dir.path().join("reports"))
        .env("CI", "true")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Interrupt once its webhook is registered: the cluster then holds its namespace and configuration.
    let registered = preflight::smoke::poll(Duration::from_secs(60), || async {
        owned(&client)
            .await
            .iter()
            .any(|o| o.starts_with("ValidatingWebhookConfiguration/"))
            .then_some(())
    })
    .await;
    assert!(registered.is_some(), "the run never registered its webhook");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(2));
    let clean = preflight::smoke::poll(Duration::from_secs(60), || async {
        owned(&client).await.is_empty().then_some(())
    })
    .await;
    assert!(
        clean.is_some(),
        "left behind after SIGTERM: {:?}",
        owned(&client).await
    );
}
