//! The twin as the cluster is now, on real control planes.
//!
//! The "production" cluster (v1.30.14) is broken today in two ways nobody has noticed:
//! a fail-closed DELETE webhook whose Service does not exist, and a CRD whose
//! conversion webhook's Service has no ready endpoint (its Deployment's Pods never
//! become ready) while two objects of that CRD are stored at v1 and listed at v2, one
//! owned by the other and neither by a release. A release `gateway` runs beside them.
//! The capture must say both webhooks fail now, from reads only; the replay's as-is
//! pass must show what an upgrade now does: the control plane restarts, the garbage
//! collector waits for the gadgets informer (Kubernetes <= 1.31) and `helm uninstall
//! gateway` leaves its ReplicaSet and Pods. Marked healthy, the same twin replays clean.

use std::ffi::OsStr;
use std::time::Duration;

use kube::api::{Api, DynamicObject, PostParams};
use kube::discovery::ApiResource;
use preflight::snapshot::{self, SnapshotScope};
use serde_json::{Value, json};

use crate::capture::{all_files, identity, quiet_snapshot};
use crate::common;
use crate::production::{self, ar, create, preflight};

const CRD: &str = "gadgets.now.preflight.dev";
const TOKEN: &str = "tok-NOW-4242-secret";

/// A core (`v1`) type.
fn core(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: String::new(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

async fn create_in(client: &kube::Client, ns: &str, ar: &ApiResource, value: Value) -> String {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
    let obj: DynamicObject = serde_json::from_value(value).unwrap();
    api.create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("creating {} in {ns}: {e}", ar.kind))
        .metadata
        .uid
        .unwrap()
}

/// The broken-today cluster (see the module's doc).
async fn build(cluster: &preflight::cluster::LocalCluster, work: &std::path::Path) {
    let client = cluster.client();
    let helm = production::Helm {
        binary: common::components(cluster.version()).helm,
        kubeconfig: cluster.kubeconfig().to_path_buf(),
        home: work.join("helm"),
    };
    let chart = production::fixtures().join("../now/gateway");
    let os = OsStr::new;
    helm.ok(
        "secret",
        &[
            os("install"),
            os("gateway"),
            chart.as_os_str(),
            os("-n"),
            os("gw"),
            os("--create-namespace"),
        ],
    );
    let ns = core("Namespace", "namespaces");
    create(
        &client,
        &ns,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "guard"}}),
    )
    .await;
    // The converter: a Service, and a Deployment whose Pods never become ready.
    create_in(&client, "guard", &core("Service", "services"), json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "converter"},
        "spec": {"selector": {"app": "converter"}, "ports": [{"port": 443, "targetPort": 8443}]},
    })).await;
    create_in(
        &client,
        "guard",
        &ar("apps", "v1", "Deployment", "deployments"),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "converter"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "converter"}},
                "template": {
                    "metadata": {"labels": {"app": "converter"}},
                    "spec": {
                        "nodeSelector": {"kubernetes.azure.com/mode": "system"},
                        "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
                        "containers": [{"name": "c", "image": "corp/converter:1"}],
                    },
                },
            },
        }),
    )
    .await;
    create_in(&client, "guard", &ar("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets"), json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "converter"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "converter"}}},
    })).await;
    // A node of an AKS user pool (no kubelet behind it: only its object is captured).
    create(
        &client,
        &core("Node", "nodes"),
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "aks-apps-0", "labels": {
                "kubernetes.azure.com/agentpool": "apps", "kubernetes.azure.com/mode": "user"}},
            "spec": {"taints": [{"key": "workload", "value": "apps", "effect": "NoSchedule"}]},
        }),
    )
    .await;
    let crd_ar = ar(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
    );
    let schema = json!({"openAPIV3Schema": {"type": "object", "properties": {"spec": {
        "type": "object", "required": ["size"],
        "properties": {"size": {"type": "integer", "minimum": 1}}}}, "required": ["spec"]}});
    create(&client, &crd_ar, json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD},
        "spec": {
            "group": "now.preflight.dev", "scope": "Namespaced",
            "names": {"kind": "Gadget", "plural": "gadgets", "singular": "gadget", "listKind": "GadgetList"},
            "conversion": {"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v1"],
                "clientConfig": {"service": {"namespace": "guard", "name": "converter", "path": "/convert"}}}},
            "versions": [
                {"name": "v1", "served": true, "storage": true, "schema": schema},
                {"name": "v2", "served": true, "storage": false,
                 "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
            ],
        },
    })).await;
    let gadgets = ar("now.preflight.dev", "v1", "Gadget", "gadgets");
    // Stored at v1 (the storage version: no conversion needed to write them).
    let mut parent = None;
    for _ in 0..60 {
        let got = Api::<DynamicObject>::namespaced_with(client.clone(), "gw", &gadgets)
            .create(&PostParams::default(), &serde_json::from_value(json!({
                "apiVersion": "now.preflight.dev/v1", "kind": "Gadget",
                "metadata": {"name": "parent", "annotations": {"corp.example/api-token": TOKEN, "corp.example/team": "edge"}},
                "spec": {"size": 3},
            })).unwrap())
            .await;
        match got {
            Ok(o) => {
                parent = o.metadata.uid;
                break;
            }
            // The CRD is not served until it is established.
            Err(kube::Error::Api(e)) if e.code == 404 => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            Err(e) => panic!("creating gadget parent: {e}"),
        }
    }
    let parent = parent.expect("the CRD was established within 30 s");
    create_in(
        &client,
        "gw",
        &gadgets,
        json!({
            "apiVersion": "now.preflight.dev/v1", "kind": "Gadget",
            "metadata": {"name": "child", "ownerReferences": [{"apiVersion": "now.preflight.dev/v1",
                "kind": "Gadget", "name": "parent", "uid": parent}]},
            "spec": {"size": 1},
        }),
    )
    .await;
    // The admission webhook whose Service is gone.
    create(&client, &ar("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations"), json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "guard"},
        "webhooks": [{
            "name": "delete.guard.corp",
            "clientConfig": {"service": {"namespace": "guard", "name": "absent", "path": "/validate"}},
            "rules": [{"operations": ["DELETE"], "apiGroups": ["", "apps"], "apiVersions": ["v1"], "resources": ["pods", "replicasets"]}],
            "failurePolicy": "Fail", "sideEffects": "None", "timeoutSeconds": 5,
            "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["gw"]}]},
            "admissionReviewVersions": ["v1"],
        }],
    })).await;
}

fn health<'a>(manifest: &'a Value, hook: &str) -> &'a Value {
    manifest["webhookHealth"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["hook"] == hook)
        .unwrap_or_else(|| panic!("no health for {hook}: {manifest:#}"))
}

/// `(kind, reason)` of every leftover of `run` in namespace `gw`.
fn in_gw(run: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = run["leftovers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["namespace"] == "gw")
        .map(|l| {
            (
                l["kind"].as_str().unwrap_or_default().to_string(),
                l["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_twin_of_a_cluster_broken_today_predicts_what_an_upgrade_now_leaves() {
    let version = &common::versions()[1];
    let cluster = common::cluster("twin-now", version).await;
    let client = cluster.client();
    let work = tempfile::tempdir().unwrap();
    build(&cluster, work.path()).await;

    // Capture: reads only.
    let before = quiet_snapshot(&client).await;
    let twin = work.path().join("twin");
    let kubeconfig = cluster.kubeconfig().to_path_buf();
    production::capture(&kubeconfig, &twin);
    let after = snapshot::take(&client, &SnapshotScope::default())
        .await
        .unwrap();
    let (b, a) = (identity(&before), identity(&after));
    assert!(
        b.symmetric_difference(&a).next().is_none(),
        "the capture changed the cluster: {:?}",
        b.symmetric_difference(&a).collect::<Vec<_>>()
    );

    // Both webhooks fail now, each with what was read.
    let manifest: Value = serde_json::from_str(&common::read(&twin.join("capture.json"))).unwrap();
    let admission = health(&manifest, "guard:delete.guard.corp");
    assert_eq!(admission["health"], "unreachable", "{admission:#}");
    assert!(
        admission["evidence"][0]
            .as_str()
            .unwrap()
            .contains("Service guard/absent: not found"),
        "{admission:#}"
    );
    let conversion = health(&manifest, &format!("crd:{CRD}"));
    assert_eq!(conversion["health"], "unreachable", "{conversion:#}");
    let said = conversion["evidence"].to_string();
    assert!(said.contains("no ready endpoint"), "{conversion:#}");
    assert!(
        said.contains("list gadgets at now.preflight.dev/v2 (limit 1): failed"),
        "{conversion:#}"
    );
    let backend = &conversion["backend"];
    assert_eq!(
        (&backend["kind"], &backend["name"], &backend["replicas"]),
        (&json!("Deployment"), &json!("converter"), &json!(2)),
        "{conversion:#}"
    );
    assert_eq!(backend["podDisruptionBudgets"][0]["minAvailable"], "2");
    assert_eq!(
        backend["nodeSelector"]["kubernetes.azure.com/mode"],
        "system"
    );
    // Its Pods' labels, which a rehearsal's stand-in carries for rules selecting them.
    assert_eq!(backend["podLabels"], json!({"app": "converter"}));
    // The stored objects, metadata only, and the node pool.
    assert_eq!(
        manifest["customResources"],
        json!([{"crd": CRD, "apiVersion": "now.preflight.dev/v1", "total": 2, "kept": 2,
                "file": format!("cluster/customresources/{CRD}.yaml")}])
    );
    let stored = common::read(&twin.join(format!("cluster/customresources/{CRD}.yaml")));
    assert!(
        stored.contains("corp.example/team") && !stored.contains("size"),
        "{stored}"
    );
    let pools = &manifest["nodePools"];
    assert_eq!(pools[0]["name"], "apps", "{pools:#}");
    assert_eq!(pools[0]["mode"], "user", "{pools:#}");
    assert_eq!(
        pools[0]["taints"][0], "workload=apps:NoSchedule",
        "{pools:#}"
    );
    let mut files = Vec::new();
    all_files(&twin, &mut files);
    for f in &files {
        let text = String::from_utf8_lossy(&std::fs::read(f).unwrap()).to_string();
        assert!(!text.contains(TOKEN), "{} holds the token", f.display());
    }
    let twin_file = twin.join("twin.yaml");
    let (code, text) = preflight(&[OsStr::new("validate"), twin_file.as_os_str()]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!("webhook crd:{CRD}: unreachable")),
        "{text}"
    );

    // The replay: as captured, the upgrade's restarts stall the garbage collector.
    let reports = work.path().join("reports");
    let (code, text) = preflight(&[
        "run".as_ref(),
        twin.as_os_str(),
        "--report-dir".as_ref(),
        reports.as_os_str(),
    ]);
    assert_eq!(code, Some(1), "{text}");
    let report: Value = serde_json::from_str(&common::read(&reports.join("report.json"))).unwrap();
    let names: Vec<&str> = common::strings(&report["scenarios"], "name");
    assert_eq!(names[..2], ["as-is", "healthy"], "{text}");
    for role in ["source", "target"] {
        let as_is = common::run_of(&report, "as-is", role);
        // The ReplicaSet and its Pods stay; the Pods because the collector waits for
        // the gadgets informer (its lines name the type). The ReplicaSet's DELETE, if
        // the collector sent one before it stalled, met the dead admission webhook:
        // both are what the cluster did, and neither is unknown.
        let left = in_gw(as_is);
        let kinds: Vec<&str> = left.iter().map(|(k, _)| k.as_str()).collect();
        assert!(
            kinds.contains(&"ReplicaSet") && kinds.iter().filter(|k| **k == "Pod").count() == 2,
            "{role}: {left:?}"
        );
        for (kind, reason) in &left {
            assert!(
                reason == "garbage-collector-stalled" || reason == "webhook-blocked-delete",
                "{role}: {kind} stays for {reason}: {as_is:#}"
            );
        }
        let pods = common::leftovers(as_is, "Pod");
        assert!(
            pods.iter()
                .any(|p| p["reason"] == "garbage-collector-stalled"
                    && p["evidence"].to_string().contains("Kind=Gadget")),
            "{role}: the controller manager's lines name the type: {pods:#?}"
        );
        let healthy = common::run_of(&report, "healthy", role);
        assert_eq!(in_gw(healthy), vec![], "{role}: {healthy:#}");
        // The stored gadgets were there before the release: never leftovers.
        assert!(
            common::leftovers(as_is, "Gadget").is_empty(),
            "{role}: {as_is:#}"
        );
    }
    let headline = text
        .lines()
        .find(|l| l.starts_with("if you upgrade now"))
        .unwrap_or_else(|| panic!("no as-is headline: {text}"));
    assert!(
        headline.contains("`helm uninstall gateway` exits 0 and leaves")
            && headline.contains("ReplicaSet"),
        "{headline}"
    );

    // The same twin with both webhooks marked healthy: the as-is pass is clean.
    let yaml = common::read(&twin_file).replace("health: unreachable", "health: healthy");
    std::fs::write(&twin_file, yaml).unwrap();
    let again = work.path().join("reports-fixed");
    let (_, text) = preflight(&[
        "run".as_ref(),
        twin.as_os_str(),
        "--report-dir".as_ref(),
        again.as_os_str(),
    ]);
    let report: Value = serde_json::from_str(&common::read(&again.join("report.json")))
        .unwrap_or_else(|e| panic!("{e}: {text}"));
    for role in ["source", "target"] {
        let as_is = common::run_of(&report, "as-is", role);
        assert_eq!(in_gw(as_is), vec![], "{role}: {as_is:#}");
        assert_eq!(as_is["verdict"], "pass", "{role}: {as_is:#}");
    }
}
