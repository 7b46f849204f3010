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
use std::ffi::OsStr;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use crate::common;
use crate::production::{self, preflight};

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
    let work = tempfile::tempdir().unwrap();
    let helm = production::build(&cluster, work.path(), false).await;

    // Capture, replay on the default pair.
    let twin = work.path().join("twin");
    let reports = work.path().join("reports");
    crate::production::capture(&kubeconfig, &twin);
    let (code, text) = preflight(&[
        "run".as_ref(),
        twin.as_os_str(),
        "--report-dir".as_ref(),
        reports.as_os_str(),
    ]);
    assert_eq!(code, Some(1), "leftovers are findings: {text}");
    let report: serde_json::Value =
        serde_json::from_str(&common::read(&reports.join("report.json"))).unwrap();
    let names: Vec<&str> = common::strings(&report["scenarios"], "name");
    // The webhook that the selector keeps away is not a pass: it is never called.
    assert_eq!(
        names,
        vec![
            "as-is",
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
    let args = |name: &'static str| ["uninstall", name, "-n", "shop"].map(OsStr::new);
    helm.ok("secret", &args("shop"));
    helm.ok("configmap", &args("cache"));
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
    // The original's webhook is down now: the as-is pass predicted exactly this.
    for role in ["source", "target"] {
        assert_eq!(
            replay_leftovers(&pass("as-is", role), "shop"),
            by_hand,
            "{role}: as-is vs by hand"
        );
    }

    // Every pass started from the saved state after install, not from new installs.
    for name in &names {
        for role in ["source", "target"] {
            let run = pass(name, role);
            let titles: Vec<&str> = common::strings(&run["steps"], "title");
            let installs = titles
                .iter()
                .filter(|t| t.starts_with("helm install"))
                .count();
            let restore = titles
                .iter()
                .position(|t| t.starts_with("restore the state after install"));
            assert!(
                installs == 3 && restore.is_some_and(|r| titles[..r].len() >= 4),
                "{name} on {role}: installed once, then restored: {titles:#?}"
            );
        }
    }

    // The restore is faithful: a new control plane per pass, installed again, leaves
    // the same (namespace, kind, reason) counts in every pass on both versions.
    let again = work.path().join("reports-reinstall");
    let (code, text) = preflight(&[
        "run".as_ref(),
        twin.as_os_str(),
        "--reset".as_ref(),
        "reinstall".as_ref(),
        "--report-dir".as_ref(),
        again.as_os_str(),
    ]);
    assert_eq!(code, Some(1), "{text}");
    let reinstalled: serde_json::Value =
        serde_json::from_str(&common::read(&again.join("report.json"))).unwrap();
    let counts = |run: &serde_json::Value| {
        let mut out: BTreeMap<(String, String, String), usize> = BTreeMap::new();
        for l in run["leftovers"].as_array().unwrap() {
            let key = |k: &str| l[k].as_str().unwrap_or_default().to_string();
            *out.entry((key("namespace"), key("kind"), key("reason")))
                .or_default() += 1;
        }
        out
    };
    for name in &names {
        for role in ["source", "target"] {
            let fresh = common::run_of(&reinstalled, name, role);
            assert!(
                !fresh["steps"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["title"].as_str().unwrap().starts_with("restore")),
                "{name} on {role}: reinstalled, not restored"
            );
            assert_eq!(
                counts(&pass(name, role)),
                counts(fresh),
                "{name} on {role}: restored vs reinstalled"
            );
        }
    }
}

/// A twin captured as AKS (`--aks`) whose release `guard` ships its own fail-closed
/// DELETE webhook for every namespace: the replay installs that release (its webhook
/// is not pre-created, which Helm would refuse), points the chart's webhook at
/// preflight's server, and reproduces AKS's admissions enforcer: `tools`, in a
/// namespace labelled `control-plane: "true"`, is out of the webhook's reach on AKS
/// and within it otherwise. With the webhook down, nothing stays: Helm deletes the
/// configuration with `guard`, and the garbage collector's refused deletes then pass
/// (what the cluster did, said as such).
#[tokio::test(flavor = "multi_thread")]
async fn an_aks_twin_replays_a_release_owned_webhook_behind_the_enforcer() {
    let version = &common::versions()[1];
    let cluster = common::cluster("aks-production", version).await;
    let work = tempfile::tempdir().unwrap();
    let helm = production::Helm {
        binary: common::components(version).helm,
        kubeconfig: cluster.kubeconfig().to_path_buf(),
        home: work.path().join("helm"),
    };
    let ns_api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(cluster.client());
    let platform: k8s_openapi::api::core::v1::Namespace = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "platform", "labels": {"control-plane": "true"}}}),
    )
    .unwrap();
    ns_api
        .create(&kube::api::PostParams::default(), &platform)
        .await
        .unwrap();
    let chart = production::fixtures().join("guarded");
    let os = OsStr::new;
    for (name, ns, guard) in [
        ("tools", "platform", "false"),
        ("web", "shop", "false"),
        ("guard", "apps", "true"),
    ] {
        let set = format!("guard={guard}");
        helm.ok(
            "secret",
            &[
                os("install"),
                os(name),
                chart.as_os_str(),
                os("-n"),
                os(ns),
                os("--create-namespace"),
                os("--set"),
                os(&set),
            ],
        );
    }

    let twin = work.path().join("twin");
    let reports = work.path().join("reports");
    let kubeconfig = cluster.kubeconfig().to_path_buf();
    let (code, text) = preflight(&[
        "capture".as_ref(),
        "--kubeconfig".as_ref(),
        kubeconfig.as_os_str(),
        "--aks".as_ref(),
        "--out".as_ref(),
        twin.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = preflight(&[
        "run".as_ref(),
        twin.as_os_str(),
        "--report-dir".as_ref(),
        reports.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    let report: serde_json::Value =
        serde_json::from_str(&common::read(&reports.join("report.json"))).unwrap();
    let failing = "guard-guard-delete-guard-guard-corp-unreachable";
    let mut called = Vec::new();
    for role in ["source", "target"] {
        let healthy = common::run_of(&report, "healthy", role);
        let steps = healthy["steps"].as_array().unwrap();
        assert!(
            steps
                .iter()
                .filter_map(|s| s["helm"]["exitCode"].as_i64())
                .all(|c| c == 0),
            "{role}: every install and uninstall exits 0 when the webhooks allow: {healthy:#}"
        );
        assert!(
            steps.iter().any(
                |s| s["title"] == "point the webhooks of guard at preflight's server"
                    && s["error"].is_null()
            ),
            "{role}: {healthy:#}"
        );
        assert!(
            healthy["leftovers"].as_array().unwrap().is_empty(),
            "{role}: {healthy:#}"
        );
        called.push(healthy["webhookRequests"].as_u64().unwrap());
        // The webhook goes with its release: refused while `web` and `tools` are
        // uninstalled, the garbage collector's deletes pass once `guard` is.
        let down = common::run_of(&report, failing, role);
        assert!(
            down["leftovers"].as_array().unwrap().is_empty(),
            "{role}: {down:#}"
        );
    }
    assert!(
        called.iter().all(|n| *n > 0),
        "the chart's webhook, pointed at preflight, is called: {called:?}"
    );
    assert!(
        text.contains("if webhook `guard-guard:delete.guard.guard.corp` is unreachable during uninstall, `helm uninstall web` exits 0 and leaves nothing unexpected"),
        "{text}"
    );

    // The same twin as if it were not AKS: without the enforcer the webhook is also
    // called for `tools` in `platform`.
    let manifest = twin.join("twin.yaml");
    let yaml = common::read(&manifest).replace("aks: true", "aks: false");
    std::fs::write(&manifest, yaml).unwrap();
    let plain = work.path().join("reports-not-aks");
    let (code, text) = preflight(&[
        "run".as_ref(),
        twin.as_os_str(),
        "--report-dir".as_ref(),
        plain.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    let report: serde_json::Value =
        serde_json::from_str(&common::read(&plain.join("report.json"))).unwrap();
    for (i, role) in ["source", "target"].into_iter().enumerate() {
        let without = common::run_of(&report, "healthy", role)["webhookRequests"]
            .as_u64()
            .unwrap();
        assert!(
            without > called[i],
            "{role}: the enforcer keeps `platform` out: {} calls with it, {without} without",
            called[i]
        );
    }
}
