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

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_cluster_is_left_as_it_was_found() {
    let version = &common::versions()[1];
    let cluster = common::cluster("shared", version).await;
    let client = cluster.client();
    let kc = cluster.kubeconfig().display().to_string();

    // Someone else's workload, in a namespace that is not preflight's.
    let nss: Api<DynamicObject> =
        Api::all_with(client.clone(), &common::ar("", "Namespace", "namespaces"));
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
        &common::ar(
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
    // Its heartbeat stopped an hour ago.
    Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client.clone(), "pf-old-abcde0")
        .create(
            &PostParams::default(),
            &common::lease("old", Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    // And another preflight's run that is going on right now, with a fresh Lease.
    let (live_ns, live_vwc) = common::fake_run(&client, "livey0").await;
    Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client.clone(), "pf-other-livey0")
        .create(
            &PostParams::default(),
            &common::lease("livey0", Duration::from_secs(1)),
        )
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = common::shared_admission_file(dir.path());
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
    assert!(
        !stderr.contains("pf-other-livey0")
            && stderr.contains("left another preflight's run livey0: its Lease is live"),
        "{stderr}"
    );
    assert_eq!(
        present(&client, &[&live_ns, &live_vwc]).await.len(),
        2,
        "the concurrent live run is untouched"
    );
    // It ends (its own teardown; here by hand).
    vwcs.delete(
        live_vwc.trim_start_matches("ValidatingWebhookConfiguration/"),
        &DeleteParams::default(),
    )
    .await
    .unwrap();
    nss.delete("pf-other-livey0", &DeleteParams::default())
        .await
        .unwrap();
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
        common::owned(&client).await.is_empty().then_some(())
    })
    .await;
    assert!(
        clean.is_some(),
        "left behind: {:?}",
        common::owned(&client).await
    );

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
    let file = common::shared_admission_file(dir.path());
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
        common::owned(&client)
            .await
            .iter()
            .any(|o| o.starts_with("ValidatingWebhookConfiguration/"))
            .then_some(())
    })
    .await;
    assert!(registered.is_some(), "the run never registered its webhook");
    // The run holds its heartbeat in its own namespace while it lives.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::all(client.clone());
    let held = leases
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=preflight"))
        .await
        .unwrap()
        .items;
    assert_eq!(held.len(), 1, "{held:?}");
    let l = &held[0];
    assert!(
        l.metadata
            .namespace
            .as_deref()
            .unwrap()
            .starts_with("pf-shared-admission-")
    );
    assert!(
        l.metadata
            .name
            .as_deref()
            .unwrap()
            .starts_with("preflight-run-")
    );
    let holder = l.spec.as_ref().unwrap().holder_identity.clone().unwrap();
    assert!(
        holder.contains(&format!("/pid-{}/run-", child.id())),
        "{holder}"
    );
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(2));
    let clean = preflight::smoke::poll(Duration::from_secs(60), || async {
        common::owned(&client).await.is_empty().then_some(())
    })
    .await;
    assert!(
        clean.is_some(),
        "left behind after SIGTERM: {:?}",
        common::owned(&client).await
    );
}

/// Live objects (not being deleted) of the given `Kind/name`s.
async fn present(client: &kube::Client, names: &[&String]) -> Vec<String> {
    let mut out: Vec<String> = common::namespaces_and_webhooks(client, &ListParams::default())
        .await
        .into_iter()
        .filter(|(id, deleting)| !deleting && names.contains(&id))
        .map(|(id, _)| id)
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_runs_lease_protects_it_from_a_concurrent_sweep() {
    use k8s_openapi::api::coordination::v1::Lease;
    use kube::api::{Patch, PatchParams};
    use preflight::cluster::existing;
    use preflight::cluster::heartbeat::{Heartbeat, lease_name};

    let version = &common::versions()[0];
    let cluster = common::cluster("heartbeat", version).await;
    let client = cluster.client();

    // Another process's live run: its objects and a freshly renewed Lease.
    let (live_ns, live_vwc) = common::fake_run(&client, "livex0").await;
    let leases = Api::<Lease>::namespaced(client.clone(), "pf-other-livex0");
    leases
        .create(
            &PostParams::default(),
            &common::lease("livex0", Duration::from_secs(2)),
        )
        .await
        .unwrap();
    // A run that has created its objects but not yet its Lease (or an older preflight).
    let (young_ns, young_vwc) = common::fake_run(&client, "young0").await;
    let all = [&live_ns, &live_vwc, &young_ns, &young_vwc];

    let swept = existing::sweep(&client).await.unwrap();
    assert!(swept.removed.is_empty(), "{swept:?}");
    assert_eq!(present(&client, &all).await.len(), 4);
    let kept = swept.kept.join("\n");
    assert!(kept.contains("run livex0: its Lease is live"), "{kept}");
    assert!(kept.contains("run young0: no Lease, but created"), "{kept}");

    // The live run stops renewing: an hour later its Lease has expired.
    let stale = serde_json::json!({"spec": {"renewTime": common::lease("livex0", Duration::from_secs(3600)).spec.unwrap().renew_time}});
    leases
        .patch(
            "preflight-run-livex0",
            &PatchParams::default(),
            &Patch::Merge(&stale),
        )
        .await
        .unwrap();
    let swept = existing::sweep(&client).await.unwrap();
    let mut removed = swept.removed.clone();
    removed.sort();
    assert_eq!(
        removed,
        vec![live_ns.clone(), live_vwc.clone()],
        "only the expired run goes: {swept:?}"
    );
    assert_eq!(present(&client, &all).await, {
        let mut v = vec![young_ns.clone(), young_vwc.clone()];
        v.sort();
        v
    });

    // preflight's own heartbeat: created at once, renewed while the run lives, and
    // deleted at teardown. It protects the young run from here on.
    let heartbeat = Heartbeat::start(&client, "pf-other-young0", "young0")
        .await
        .unwrap();
    let young_leases = Api::<Lease>::namespaced(client.clone(), "pf-other-young0");
    let renew_time = |l: Lease| l.spec.unwrap().renew_time.unwrap().0;
    let first = renew_time(young_leases.get(&lease_name("young0")).await.unwrap());
    let spec = young_leases
        .get(&lease_name("young0"))
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(spec.lease_duration_seconds, Some(30));
    assert!(
        spec.holder_identity
            .unwrap()
            .ends_with(&format!("/pid-{}/run-young0", std::process::id()))
    );
    let renewed = preflight::smoke::poll(Duration::from_secs(25), || async {
        let now = renew_time(young_leases.get(&lease_name("young0")).await.ok()?);
        (now > first).then_some(now)
    })
    .await;
    assert!(renewed.is_some(), "the Lease is renewed within 25 s");
    let swept = existing::sweep(&client).await.unwrap();
    assert!(swept.removed.is_empty(), "{swept:?}");
    assert!(
        swept
            .kept
            .join("\n")
            .contains("run young0: its Lease is live"),
        "{swept:?}"
    );
    assert!(heartbeat.stop().await.is_empty());
    assert!(
        young_leases
            .get_opt(&lease_name("young0"))
            .await
            .unwrap()
            .is_none(),
        "the Lease is deleted at teardown"
    );
    // Without its Lease the young run is still within the grace period.
    assert!(existing::sweep(&client).await.unwrap().removed.is_empty());
    assert_eq!(present(&client, &all).await.len(), 2);
}

const WILD: &str = r#"name: shared-wild
description: a webhook whose rule reaches beyond the run's namespace
chart:
  path: CHART
  outsideScenarioDir: true
  values: {widget: {enabled: false}, hook: {enabled: false}}
webhooks:
  - name: catch-all
    kind: validating
    failurePolicy: Fail
    rules:
      - {operations: [DELETE], apiGroups: [apps], apiVersions: [v1], resources: [replicasets]}
      - RULE
steps:
  - helm: {action: install}
  - helm: {action: uninstall}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn webhook_rules_that_reach_beyond_the_run_are_refused_on_a_shared_cluster() {
    let version = &common::versions()[1];
    let cluster = common::cluster("wild", version).await;
    let client = cluster.client();
    // A cluster-scoped custom resource: only discovery knows its scope.
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    let crd: DynamicObject = serde_json::from_value(serde_json::json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {"group": "example.com", "scope": "Cluster", "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}}}]}})).unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let discovered = preflight::smoke::poll(Duration::from_secs(30), || async {
        client
            .list_api_group_resources("example.com/v1")
            .await
            .ok()
            .filter(|l| l.resources.iter().any(|r| r.name == "gadgets"))
    })
    .await;
    assert!(discovered.is_some(), "the CRD is served");

    let dir = tempfile::tempdir().unwrap();
    let chart = common::test_chart();
    let kc = cluster.kubeconfig().display().to_string();
    let vwcs: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &common::ar(
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
        ),
    );
    let nss: Api<DynamicObject> =
        Api::all_with(client.clone(), &common::ar("", "Namespace", "namespaces"));
    let namespaces = || async {
        let mut v: Vec<String> = nss
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect();
        v.sort();
        v
    };
    let before = namespaces().await;
    let cases = [
        (
            "{operations: [DELETE], apiGroups: [\"*\"], apiVersions: [v1], resources: [pods]}",
            "webhook `catch-all`, rule 2 (apiGroups: [*], resources: [pods], scope: *): `*` in apiGroups matches every API group",
        ),
        (
            "{operations: [DELETE], apiGroups: [\"\"], apiVersions: [v1], resources: [\"*\"], scope: Namespaced}",
            "webhook `catch-all`, rule 2 (apiGroups: [\"\"], resources: [*], scope: Namespaced): `*` in resources matches every resource",
        ),
        (
            "{operations: [DELETE], apiGroups: [\"\"], apiVersions: [v1], resources: [pods, namespaces]}",
            "webhook `catch-all`, rule 2 (apiGroups: [\"\"], resources: [pods, namespaces], scope: *): namespaces is cluster-scoped",
        ),
        (
            "{operations: [DELETE], apiGroups: [\"\"], apiVersions: [v1], resources: [pods], scope: Cluster}",
            "`scope: Cluster` matches only cluster-scoped resources",
        ),
        (
            "{operations: [DELETE], apiGroups: [example.com], apiVersions: [\"*\"], resources: [gadgets]}",
            "webhook `catch-all`, rule 2 (apiGroups: [example.com], resources: [gadgets], scope: *): gadgets.example.com is cluster-scoped",
        ),
    ];
    for (i, (rule, expected)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("wild-{i}.yaml"));
        std::fs::write(
            &file,
            WILD.replace("CHART", &chart.display().to_string())
                .replace("RULE", rule),
        )
        .unwrap();
        let out = Command::new(common::preflight_bin())
            .args([
                "run",
                &file.display().to_string(),
                "--provider",
                "kubeconfig",
                "--kubeconfig",
                &kc,
            ])
            .args(["--webhook-address", "127.0.0.1", "--report-dir"])
            .arg(dir.path().join(format!("reports-{i}")))
            .env("CI", "true")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{rule}\n{stdout}");
        let report = common::read(&dir.path().join(format!("reports-{i}/report.json")));
        let wanted = format!("scenario file {}, ", file.display());
        assert!(
            report.contains("cannot run on a shared cluster")
                && report.contains(&wanted)
                && report.contains(&expected.replace('"', "\\\"")),
            "{rule}: expected `{expected}` in\n{report}"
        );
        assert!(
            stdout.contains("cannot run on a shared cluster"),
            "{stdout}"
        );
        // Refused before anything was created.
        assert_eq!(namespaces().await, before, "{rule}");
        assert!(
            vwcs.list(&ListParams::default())
                .await
                .unwrap()
                .items
                .is_empty(),
            "{rule}"
        );
    }
}
