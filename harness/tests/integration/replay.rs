//! `preflight run TWIN` on real control planes, checked against the same failure done
//! by hand on the captured cluster.
//!
//! The "production" cluster (v1.30.14) has three releases (a CRD with a conversion
//! webhook and its custom resource; a StatefulSet with a pre-delete hook and a
//! subchart; one stored by the configmap driver), a fail-closed DELETE webhook backed by
//! a Service without endpoints, a webhook that a namespace selector keeps away from the
//! releases, and a ValidatingAdmissionPolicy. It is captured, the twin is replayed on
//! the default pair, and then the webhook's failure is lived through by hand on the
//! original: `helm uninstall` there must leave what the replay said it leaves.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::discovery::ApiResource;

use crate::common;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/capture")
}

fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: format!("{group}/{version}"),
        kind: kind.into(),
        plural: plural.into(),
    }
}

async fn create(client: &kube::Client, ar: &ApiResource, value: serde_json::Value) {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
    let obj: DynamicObject = serde_json::from_value(value).unwrap();
    api.create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("creating {}: {e}", ar.kind));
}

fn helm(helm: &Path, kubeconfig: &Path, home: &Path, driver: &str, args: &[&str]) -> i32 {
    let out = duct::cmd(helm, args)
        .env("KUBECONFIG", kubeconfig)
        .env("HELM_DRIVER", driver)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        args[0] != "install" || out.status.success(),
        "helm {args:?}: {text}"
    );
    out.status.code().unwrap_or(-1)
}

/// `(top owner, kind) -> count` of what stays in `ns` that a Deployment owned (through
/// its ReplicaSets), read from the cluster.
async fn by_hand_leftovers(client: &kube::Client, ns: &str) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    let rs_owner: BTreeMap<String, String> = Api::<ReplicaSet>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|rs| {
            let owner = rs.metadata.owner_references?.first()?.name.clone();
            Some((rs.metadata.name?, owner))
        })
        .collect();
    for owner in rs_owner.values() {
        *out.entry((format!("Deployment/{owner}"), "ReplicaSet".to_string()))
            .or_default() += 1;
    }
    for pod in Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
    {
        let Some(rs) = pod
            .metadata
            .owner_references
            .as_ref()
            .and_then(|o| o.first())
            .map(|o| o.name.clone())
        else {
            continue;
        };
        if let Some(owner) = rs_owner.get(&rs) {
            *out.entry((format!("Deployment/{owner}"), "Pod".to_string()))
                .or_default() += 1;
        }
    }
    out
}

/// The same, from a run of the report: leftovers in `ns` whose cause is the webhook.
fn replay_leftovers(run: &serde_json::Value, ns: &str) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for l in run["leftovers"].as_array().unwrap() {
        if l["namespace"] != ns {
            continue;
        }
        assert_eq!(
            l["reason"], "webhook-blocked-delete",
            "every leftover in {ns} is the webhook's: {l:#}"
        );
        let top = l["ownerChain"]
            .as_array()
            .and_then(|c| c.last())
            .and_then(|o| o.as_str())
            .unwrap_or_default()
            .split(" (")
            .next()
            .unwrap_or_default()
            .to_string();
        *out.entry((top, l["kind"].as_str().unwrap().to_string()))
            .or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_twin_predicts_what_the_failure_leaves_on_the_original() {
    let version = &common::versions()[1];
    let cluster = common::cluster("production", version).await;
    let client = cluster.client();
    let kubeconfig = cluster.kubeconfig().to_path_buf();
    let comps = common::components(version);
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("helm");
    let fx = fixtures();
    let h = |driver: &str, args: &[&str]| helm(&comps.helm, &kubeconfig, &home, driver, args);
    let (shop, ledger, cache, secrets) = (
        fx.join("shop"),
        fx.join("ledger"),
        fx.join("cache"),
        fx.join("secret-values.yaml"),
    );
    h(
        "secret",
        &[
            "install",
            "shop",
            shop.to_str().unwrap(),
            "-n",
            "shop",
            "--create-namespace",
            "--values",
            secrets.to_str().unwrap(),
        ],
    );
    h(
        "secret",
        &[
            "install",
            "ledger",
            ledger.to_str().unwrap(),
            "-n",
            "ledger",
            "--create-namespace",
        ],
    );
    h(
        "configmap",
        &["install", "cache", cache.to_str().unwrap(), "-n", "shop"],
    );
    let vwc = ar(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
    );
    let delete_rule = serde_json::json!([{"operations": ["DELETE"], "apiGroups": ["", "apps"], "apiVersions": ["v1"], "resources": ["pods", "replicasets"]}]);
    create(
        &client,
        &vwc,
        serde_json::json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "policy-corp"},
            "webhooks": [{
                "name": "delete-guard.policy.corp",
                "clientConfig": {"service": {"namespace": "guard", "name": "no-endpoints", "path": "/validate"}},
                "rules": delete_rule,
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "timeoutSeconds": 5,
                "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["shop"]}]},
                "admissionReviewVersions": ["v1"],
            }],
        }),
    )
    .await;
    create(
        &client,
        &vwc,
        serde_json::json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "payments-only"},
            "webhooks": [{
                "name": "audit.payments.corp",
                "clientConfig": {"url": "https://127.0.0.1:1/validate"},
                "rules": delete_rule,
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "namespaceSelector": {"matchLabels": {"team": "payments"}},
                "admissionReviewVersions": ["v1"],
            }],
        }),
    )
    .await;
    create(
        &client,
        &ar(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingAdmissionPolicy",
            "validatingadmissionpolicies",
        ),
        serde_json::json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": "replicas-limit"},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}]},
                "validations": [{"expression": "object.spec.replicas <= 5"}],
            },
        }),
    )
    .await;

    // Capture, replay on the default pair.
    let twin = work.path().join("twin");
    let reports = work.path().join("reports");
    let run = |args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new(common::preflight_bin())
            .args(args)
            .env("CI", "true")
            .output()
            .unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, text) = run(&[
        "capture".as_ref(),
        "--kubeconfig".as_ref(),
        kubeconfig.as_os_str(),
        "--out".as_ref(),
        twin.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = run(&[
        "run".as_ref(),
        twin.as_os_str(),
        "--report-dir".as_ref(),
        reports.as_os_str(),
    ]);
    assert_eq!(code, Some(1), "leftovers are findings: {text}");
    let report: serde_json::Value =
        serde_json::from_str(&common::read(&reports.join("report.json"))).unwrap();
    let names: Vec<&str> = report["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    // The webhook that the selector keeps away is not a pass: it is never called.
    assert_eq!(
        names,
        vec![
            "healthy",
            "crd-widgets-capture-preflight-dev-unreachable",
            "policy-corp-delete-guard-policy-corp-unreachable"
        ],
        "{text}"
    );
    let pass = |name: &str, role: &str| common::run_of(&report, name, role).clone();

    // Healthy: the shop namespace's releases leave nothing on either version; the
    // policy is enforced only where the API serves it.
    for role in ["source", "target"] {
        let run = pass("healthy", role);
        let in_shop: Vec<_> = run["leftovers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["namespace"] == "shop")
            .collect();
        assert!(in_shop.is_empty(), "{role}: {in_shop:#?}");
        let setup = &run["steps"][0];
        let says = setup["error"].as_str().unwrap_or_default();
        assert_eq!(
            says.contains("ValidatingAdmissionPolicy replicas-limit"),
            role == "source",
            "{role}: {setup:#}"
        );
    }
    assert!(
        text.contains(
            "if webhook `policy-corp:delete-guard.policy.corp` is unreachable during uninstall, `helm uninstall shop` exits 0 and leaves 2 Pods, 1 ReplicaSet on v1.29.15 (the same on v1.30.14)"
        ),
        "{text}"
    );
    let predicted = replay_leftovers(
        &pass("policy-corp-delete-guard-policy-corp-unreachable", "target"),
        "shop",
    );
    assert_eq!(
        predicted,
        replay_leftovers(
            &pass("policy-corp-delete-guard-policy-corp-unreachable", "source"),
            "shop"
        )
    );

    // The same failure by hand on the original: its webhook has no endpoints.
    assert_eq!(h("secret", &["uninstall", "shop", "-n", "shop"]), 0);
    assert_eq!(h("configmap", &["uninstall", "cache", "-n", "shop"]), 0);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    let kcm_log = cluster.log_path("kube-controller-manager");
    let settled = common::eventually(Duration::from_secs(90), || {
        let log = std::fs::read_to_string(&kcm_log).unwrap_or_default();
        let refused: Vec<String> = log
            .lines()
            .filter_map(preflight::exercise::gc_error)
            .filter(|l| l.contains("failed calling webhook"))
            .collect();
        ["shop-web", "cache-cache"].iter().all(|d| {
            refused
                .iter()
                .any(|l| l.contains(&format!("could not delete ReplicaSet shop/{d}-")))
        })
    })
    .await;
    assert!(
        settled,
        "the garbage collector never met the webhook by hand"
    );
    assert!(
        deployments
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let by_hand = by_hand_leftovers(&client, "shop").await;
    assert_eq!(predicted, by_hand, "replay vs by hand");
}
