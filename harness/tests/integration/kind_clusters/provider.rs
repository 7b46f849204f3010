//! The kind provider on real kind clusters (real kubelets) at both pinned versions,
//! from preflight's own offline node images (`preflight components kind-image`, which
//! `ci/test.sh` runs first).
//!
//! The embedded scenarios must give the verdicts the README promises on kind too, with
//! causes from what the cluster recorded (audit log, control-plane logs, webhook
//! records), and agree with the local provider except where a kubelet explains the
//! difference. Nothing may be left behind: no kind cluster, no container.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::common;
use crate::common::run_preflight;
use crate::kind_clusters::{ONE_AT_A_TIME, docker_available, preflight_containers};

const SCENARIOS: [&str; 3] = ["baseline", "incident-admission", "incident-conversion"];

#[test]
fn kind_gives_the_promised_verdicts_from_cluster_evidence_and_agrees_with_local() {
    if !docker_available() {
        return;
    }
    let _serial = ONE_AT_A_TIME.blocking_lock();
    let kind_dir = tempfile::tempdir().unwrap();
    // `helm install --wait` needs Pods that become Ready: only a kubelet gives that.
    let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios/charts/preflight-test")
        .canonicalize()
        .unwrap();
    let wait = kind_dir.path().join("wait-ready.yaml");
    std::fs::write(
        &wait,
        format!(
            "name: wait-ready\ndescription: helm install --wait on real kubelets\nchart:\n  path: {}\n  outsideScenarioDir: true\nsteps:\n  - helm: {{action: install, wait: true, timeoutSeconds: 240}}\n  - helm: {{action: uninstall, wait: true, timeoutSeconds: 120}}\n  - settle: {{timeoutSeconds: 60}}\n",
            chart.display()
        ),
    )
    .unwrap();
    let reports = kind_dir.path().join("reports");
    let mut args = vec!["run", "--provider", "kind"];
    args.extend(SCENARIOS);
    args.push(wait.to_str().unwrap());
    let (code, kind, text) = run_preflight(&args, &reports);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(kind["provider"], "kind");
    // This run's clusters only (`preflight-<run id><n>-<role>`): other processes on
    // the machine may run kind clusters of their own at the same time.
    let ids: BTreeSet<String> = kind["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["runs"].as_array().unwrap().iter())
        .filter_map(|r| {
            let ns = r["namespace"].as_str()?;
            let id = ns.rsplit('-').next()?;
            Some(id[..id.len() - 1].to_string())
        })
        .collect();
    assert!(!ids.is_empty(), "{kind}");
    let left: Vec<String> = preflight_containers()
        .into_iter()
        .filter(|c| {
            ids.iter()
                .any(|id| c.starts_with(&format!("preflight-{id}")))
        })
        .collect();
    assert_eq!(left, Vec::<String>::new(), "kind clusters left behind");

    for role in ["source", "target"] {
        let waited = common::run_of(&kind, "wait-ready", role);
        let install = &waited["steps"][0]["helm"];
        assert_eq!(install["exitCode"], 0, "{role}: {install}");
        assert!(
            install["command"].as_str().unwrap().contains("--wait"),
            "{install}"
        );
        assert_eq!(
            common::failures(waited),
            BTreeSet::new(),
            "{role}: {waited}"
        );

        let base = common::run_of(&kind, "baseline", role);
        assert_eq!(
            common::failures(base),
            BTreeSet::new(),
            "{role}: baseline is clean on kind: {base}"
        );
        // Real kubelets ran the hook Job (no stand-in on kind): install succeeded.
        for step in base["steps"].as_array().unwrap() {
            if let Some(c) = step["helm"]["exitCode"].as_i64() {
                assert_eq!(c, 0, "{role}: {step}");
            }
        }
        // Settled on the evidence, as on local control planes: the controller
        // manager's garbage-collector queues, read inside the node, were empty (and
        // nothing was left without its owner, nothing was being deleted).
        let settled: Vec<&serde_json::Value> = base["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["settle"]["settledBy"].as_str().map(|_| &s["settle"]))
            .collect();
        assert!(
            !settled.is_empty()
                && settled
                    .iter()
                    .all(|s| s["settledBy"] == "garbage-collector-idle"),
            "{role}: {settled:?}"
        );

        let adm = common::run_of(&kind, "incident-admission", role);
        let rs = common::leftovers(adm, "ReplicaSet");
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
        assert!(!common::leftovers(adm, "Pod").is_empty(), "{role}: {adm}");

        let conv = common::run_of(&kind, "incident-conversion", role);
        let rs = common::leftovers(conv, "ReplicaSet");
        assert_eq!(rs.len(), 1, "{role}: {conv}");
        assert_eq!(
            rs[0]["reason"], "garbage-collector-stalled",
            "{role}: {}",
            rs[0]
        );
    }

    // The local provider's fidelity check: the same scenarios, the same leftovers and
    // causes (docs/providers.md, "Where local and kind differ").
    let local_dir = tempfile::tempdir().unwrap();
    let mut args = vec!["run", "--provider", "local"];
    args.extend(SCENARIOS);
    let (code, local, text) = run_preflight(&args, local_dir.path());
    assert_eq!(code, Some(0), "{text}");
    for scenario in SCENARIOS {
        for role in ["source", "target"] {
            assert_eq!(
                common::failures(common::run_of(&kind, scenario, role)),
                common::failures(common::run_of(&local, scenario, role)),
                "{scenario} {role}: kind and local disagree"
            );
        }
    }
}

/// Starts `preflight run --provider kind`, waits until its `kind create` has made the
/// node containers, sends `signal`, and checks that every container and kind cluster
/// of the run disappears.
async fn signal_mid_kind_run_leaves_nothing(signal: nix::sys::signal::Signal) {
    use std::time::Duration;
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut child = Command::new(common::preflight_bin())
        .args(["run", "--provider", "kind", "baseline"])
        .env("CI", "true")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let harness = child.id();
    let mut names: Vec<String> = Vec::new();
    let creating = common::eventually(Duration::from_secs(300), || {
        names = common::processes_mentioning("create cluster --name=preflight-")
            .into_iter()
            .filter(|(pid, _)| common::parent_of(*pid) == Some(harness))
            .filter_map(|(_, cmd)| {
                let arg = cmd.split(' ').find(|a| a.starts_with("--name="))?;
                Some(arg.trim_start_matches("--name=").to_string())
            })
            .collect();
        names.len() == 2
            && names.iter().all(|n| {
                preflight_containers()
                    .iter()
                    .any(|c| *c == format!("{n}-control-plane"))
            })
    })
    .await;
    assert!(creating, "the harness never created two kind nodes");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(harness as i32), signal).unwrap();
    let _ = child.wait();
    // A deadline, not a wait: two `kind delete`s on a loaded 2-core machine.
    let gone = common::eventually(Duration::from_secs(240), || {
        let left = preflight_containers();
        names
            .iter()
            .all(|n| !left.iter().any(|c| c.starts_with(n.as_str())))
    })
    .await;
    assert!(
        gone,
        "after {signal}: containers of {names:?} remain: {:?}",
        preflight_containers()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_harness_with_sigkill_mid_kind_create_deletes_its_clusters() {
    if docker_available() {
        signal_mid_kind_run_leaves_nothing(nix::sys::signal::Signal::SIGKILL).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_kind_create_deletes_its_clusters() {
    if docker_available() {
        signal_mid_kind_run_leaves_nothing(nix::sys::signal::Signal::SIGTERM).await;
    }
}

/// Every `preflight-*` container that was not there `before` is gone.
fn assert_none_left_since(before: &BTreeSet<String>) {
    let left: Vec<String> = preflight_containers()
        .into_iter()
        .filter(|c| !before.contains(c))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "kind clusters left behind");
}

/// A twin replayed on kind clusters (`--provider kind`, a new cluster per pass): a
/// release whose Pods run on real kubelets, and a fail-closed DELETE webhook for its
/// namespace captured as a standalone configuration. With the webhook down during
/// uninstall the garbage collector's deletes are refused on kind as on local control
/// planes, and the replay leaves no cluster behind.
#[test]
fn a_twin_replays_on_kind() {
    if !docker_available() {
        return;
    }
    let _serial = ONE_AT_A_TIME.blocking_lock();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let version = &common::versions()[1];
    let work = tempfile::tempdir().unwrap();
    let twin = work.path().join("twin");
    let healthy_twin = work.path().join("healthy-twin");
    let deadlock_twin = work.path().join("deadlock-twin");
    rt.block_on(async {
        let cluster = common::cluster("kind-production", version).await;
        let helm = crate::production::Helm {
            binary: common::components(version).helm,
            kubeconfig: cluster.kubeconfig().to_path_buf(),
            home: work.path().join("helm"),
        };
        let chart = crate::production::fixtures().join("guarded");
        let os = std::ffi::OsStr::new;
        helm.ok(
            "secret",
            &[
                os("install"),
                os("web"),
                chart.as_os_str(),
                os("-n"),
                os("shop"),
                os("--create-namespace"),
                os("--set"),
                os("guard=false,image=preflight/workload:r1"),
            ],
        );
        // A service whose images live in a private registry no kind node reaches:
        // probes of every kind, an init container, a budget, a post-install smoke Job
        // (not run here: this control plane has no kubelet; the capture keeps it).
        helm.ok(
            "secret",
            &[
                os("install"),
                os("storefront"),
                crate::production::fixtures().join("storefront").as_os_str(),
                os("-n"),
                os("store"),
                os("--create-namespace"),
                os("--no-hooks"),
            ],
        );
        // Nodes as an AKS cluster's two pools (Node objects: the capture reads what the
        // API says of them), captured before anything is wrong: the twin to rehearse.
        for (name, pool, taint) in [
            ("aks-system-0", "system", Some("CriticalAddonsOnly")),
            ("aks-user-0", "user", None),
            ("aks-user-1", "user", None),
        ] {
            let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "labels": {
                    "kubernetes.azure.com/agentpool": pool, "agentpool": pool,
                    "kubernetes.azure.com/mode": if taint.is_some() { "system" } else { "user" }}},
                "spec": {"taints": taint.map(|k| vec![serde_json::json!({"key": k, "value": "true", "effect": "NoSchedule"})]).unwrap_or_default()}
            }))
            .unwrap();
            let nodes = kube::Api::<k8s_openapi::api::core::v1::Node>::all(cluster.client());
            nodes.create(&Default::default(), &node).await.unwrap();
            // Production's sizes, larger than this machine's kind nodes: the rehearsal
            // scales nodes and requests alike (the storefront's API asks 1200m, twice:
            // unscaled, one replica would not fit a 2-CPU kind node).
            let (cpu, memory) = if taint.is_some() { ("1900m", "5Gi") } else { ("7820m", "28Gi") };
            let size = serde_json::json!({"cpu": cpu, "memory": memory, "pods": "30"});
            nodes
                .patch_status(
                    name,
                    &Default::default(),
                    &kube::api::Patch::Merge(serde_json::json!({"status": {"capacity": size, "allocatable": size}})),
                )
                .await
                .unwrap();
        }
        // A fail-closed webhook on the shop's Pod creations, healthy, its backend two
        // Pods on the user pool with a budget of one disruption: the rehearsal serves
        // it inside the cluster, so the drain evicts its backend too, one at a time.
        guard_backend(&cluster.client()).await;
        let kubeconfig = cluster.kubeconfig().to_path_buf();
        crate::production::capture(&kubeconfig, &healthy_twin);
        // The same guard as many clusters run it: one replica, its rules covering its
        // own namespace too. Still healthy when captured; a drain of its node evicts
        // it, and nothing it guards can be created again, its own Pod included.
        kube::Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(cluster.client(), "guards")
            .patch(
                "guard",
                &Default::default(),
                &kube::api::Patch::Merge(serde_json::json!({"spec": {"replicas": 1}})),
            )
            .await
            .unwrap();
        let configs = kube::Api::<
            k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration,
        >::all(cluster.client());
        let mut guard = configs.get("pod-guard").await.unwrap();
        guard.webhooks.as_mut().unwrap()[0].namespace_selector = Some(
            serde_json::from_value(serde_json::json!({"matchExpressions": [{
                "key": "kubernetes.io/metadata.name",
                "operator": "In", "values": ["shop", "guards"]}]}))
            .unwrap(),
        );
        configs
            .replace("pod-guard", &Default::default(), &guard)
            .await
            .unwrap();
        crate::production::capture(&kubeconfig, &deadlock_twin);
        // The replayed twin below is about another webhook.
        kube::Api::<k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration>::all(cluster.client())
            .delete("pod-guard", &Default::default())
            .await
            .unwrap();
        crate::production::create(
            &cluster.client(),
            &crate::production::ar(
                "admissionregistration.k8s.io",
                "v1",
                "ValidatingWebhookConfiguration",
                "validatingwebhookconfigurations",
            ),
            serde_json::json!({
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": "shop-guard"},
                "webhooks": [{
                    "name": "delete.shop-guard.corp",
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "None",
                    "failurePolicy": "Fail",
                    "timeoutSeconds": 3,
                    "clientConfig": {"service": {"namespace": "guards", "name": "shop-guard"}},
                    "rules": [{"operations": ["DELETE"], "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["replicasets"]}],
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}
                }]
            }),
        )
        .await;
        crate::production::capture(&kubeconfig, &twin);
    });

    let (code, text) = crate::production::preflight(&[
        "run".as_ref(),
        twin.as_os_str(),
        "--provider".as_ref(),
        "kind".as_ref(),
        "--reset".as_ref(),
        "restore".as_ref(),
    ]);
    assert_ne!(code, Some(0), "{text}");
    assert!(
        text.contains("--reset restore needs the local provider"),
        "{text}"
    );

    let before: BTreeSet<String> = preflight_containers().into_iter().collect();

    let reports = work.path().join("reports");
    let (code, report, text) = run_preflight(
        &["run", twin.to_str().unwrap(), "--provider", "kind"],
        &reports,
    );
    assert_eq!(code, Some(1), "leftovers are findings: {text}");
    assert_eq!(report["provider"], "kind");
    let failing = "shop-guard-delete-shop-guard-corp-unreachable";
    for role in ["source", "target"] {
        let healthy = common::run_of(&report, "healthy", role);
        assert!(
            healthy["leftovers"].as_array().unwrap().is_empty(),
            "{role}: {healthy:#}"
        );
        let down = common::run_of(&report, failing, role);
        let kinds: Vec<&str> = down["leftovers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["namespace"] == "shop" && l["reason"] == "webhook-blocked-delete")
            .map(|l| l["kind"].as_str().unwrap())
            .collect();
        assert!(
            kinds.contains(&"ReplicaSet"),
            "{role}: the ReplicaSet stays while its webhook is down: {down:#}"
        );
    }
    assert_none_left_since(&before);

    // The whole AKS upgrade of the healthy twin: two pools (one node each here), the
    // release installed and Ready, the control plane upgraded, both pools rolled. Nothing
    // in it blocks a drain or keeps a Pod from coming back: it passes.
    let (code, run, text) = rehearse(&healthy_twin, &work.path().join("rehearsed"), &[]);
    assert_eq!(code, Some(0), "{text}\n{run:#}");
    let rollout = roll(&run);
    let pools: Vec<(&str, &str)> = rollout["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["pool"].as_str().unwrap(),
                p["prediction"]["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        pools,
        [("system", "succeeds"), ("user", "succeeds")],
        "{rollout:#}"
    );
    // The user pool's node held the releases' Pods: they were evicted and are back,
    // the storefront's (private images, readiness over HTTP, a budget of one) on the
    // stand-in: Ready before the drain, evicted one at a time, Ready again.
    let user = &rollout["pools"][1]["nodes"][0];
    for ns in ["shop", "store"] {
        assert!(
            user["drain"]["evictions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["pod"]["namespace"] == ns),
            "{ns}: {user:#}"
        );
    }
    // Every container of the storefront named an image no node holds; each is listed,
    // and the release's own (workload) image ran as it is.
    let substituted: BTreeSet<(&str, &str)> = run["substitutions"]
        .as_array()
        .unwrap_or_else(|| panic!("no substitutions: {run:#}"))
        .iter()
        .map(|s| {
            (
                s["container"].as_str().unwrap(),
                s["image"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        substituted,
        BTreeSet::from([
            ("api", "registry.corp.example/storefront/api:2.4.1"),
            ("migrate", "registry.corp.example/storefront/migrate:2.4.1"),
            ("smoke", "registry.corp.example/storefront/smoke:2.4.1"),
        ]),
        "{run:#}"
    );
    let api_pods = run["substitutions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["container"] == "api")
        .and_then(|s| s["pods"].as_u64())
        .unwrap();
    assert!(
        api_pods >= 4,
        "two replicas, then two more after the drain: {run:#}"
    );
    // Scaled to the kind nodes' size, both API replicas ran on the user pool's node
    // and were evicted from it.
    let api_evictions = user["drain"]["evictions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["pod"]["namespace"] == "store"
                && e["pod"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("storefront-api-")
        })
        .map(|e| e["pod"]["name"].as_str().unwrap())
        .collect::<BTreeSet<_>>();
    assert_eq!(api_evictions.len(), 2, "{user:#}");
    let api = run["substitutions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["container"] == "api")
        .unwrap();
    assert!(
        api["changes"].as_array().unwrap().iter().any(|c| c
            .as_str()
            .unwrap()
            .starts_with("requests scaled to the kind nodes' size: cpu 1200m")),
        "{api:#}"
    );
    // The guard's backend ran on the user pool's node (the stand-in, as captured:
    // two replicas, one disruption at a time) and was evicted with it; the shop's Pods
    // came back through the guard (fail-closed: only its in-cluster backend answers).
    assert!(
        user["drain"]["evictions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["pod"]["namespace"] == "guards"
                && e["pod"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("preflight-guard-")),
        "{user:#}"
    );

    // The one-replica guard whose rules cover its own Pods: the drain of the user
    // pool's node evicts its backend, and the API refuses the replacement through the
    // webhook that replacement would serve. The report names the deadlock from the
    // controller's FailedCreate event and the webhook's Service. Rehearsed as AKS's
    // node-image upgrade (the target is the source: the pools roll, the control plane
    // stays), and without waiting out the 10 minutes given for the Pods to come back:
    // the deadlock settles it.
    let source = common::versions()[0].to_string();
    let (code, run, text) = rehearse(
        &deadlock_twin,
        &work.path().join("deadlocked"),
        &["--target", &source, "--comeback-seconds", "600"],
    );
    assert_eq!(code, Some(1), "{text}\n{run:#}");
    let titles: Vec<&str> = common::strings(&run["steps"], "title");
    assert!(
        !titles
            .iter()
            .any(|t| t.contains("upgrade the control plane")),
        "a node-image upgrade keeps the control plane: {titles:?}"
    );
    let rollout = roll(&run);
    assert_eq!(
        (&rollout["from"], &rollout["to"]),
        (&rollout["to"], &serde_json::json!(source))
    );
    let user = rollout["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pool"] == "user")
        .unwrap_or_else(|| panic!("no user pool: {rollout:#}"));
    assert_ne!(user["prediction"]["outcome"], "succeeds", "{user:#}");
    let guard = user["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|n| n["notBack"].as_array().into_iter().flatten())
        .find(|b| b["namespace"] == "guards" && b["owner"] == "Deployment/preflight-guard")
        .unwrap_or_else(|| panic!("the guard's backend is not back: {user:#}"));
    assert_eq!(guard["cause"]["kind"], "create-refused", "{guard:#}");
    assert_eq!(guard["cause"]["webhook"], "pods.guard.corp", "{guard:#}");
    assert_eq!(guard["cause"]["deadlock"], true, "{guard:#}");
    let waited = user["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["waited"].as_f64())
        .fold(0.0, f64::max);
    assert!(waited < 300.0, "the deadlock ends the wait: {user:#}");
    // Said where the user reads it, the pool's line included.
    assert!(
        text.contains("pool user: rolls, but workloads are not back: guards/Deployment/preflight-guard: deadlock: webhook pods.guard.corp"),
        "{text}"
    );
    assert_none_left_since(&before);
}

/// `preflight rehearse TWIN --nodes 2 --max-surge 1` (two pools of one node, one surge
/// node at a time) and `extra`, reporting to `dir`: its exit code, the rehearsal's run in
/// report.json, and its output.
fn rehearse(twin: &Path, dir: &Path, extra: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let mut args = vec![
        "rehearse",
        twin.to_str().unwrap(),
        "--nodes",
        "2",
        "--max-surge",
        "1",
    ];
    args.extend_from_slice(extra);
    let (code, report, text) = run_preflight(&args, dir);
    let run = common::run_of(&report, "rehearsal", "upgrade").clone();
    (code, run, text)
}

/// The roll in a rehearsal's run.
fn roll(run: &serde_json::Value) -> &serde_json::Value {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|s| s.get("rollout"))
        .unwrap_or_else(|| panic!("no roll: {run:#}"))
}

/// A healthy fail-closed webhook on Pod creations in `shop`, behind Service
/// `guards/guard`: a Deployment of two on the user pool, a budget of one disruption, and
/// (this control plane has no kubelet) an EndpointSlice saying one endpoint is Ready.
async fn guard_backend(client: &kube::Client) {
    use kube::api::{Api, DynamicObject, PostParams};
    let p = |group: &str, version: &str, kind: &str, plural: &str| {
        let mut ar = crate::production::ar(group, version, kind, plural);
        if group.is_empty() {
            ar.api_version = version.into();
        }
        ar
    };
    let docs = [
        (
            p("", "v1", "Namespace", "namespaces"),
            serde_json::json!({"metadata": {"name": "guards"}}),
        ),
        (
            p("apps", "v1", "Deployment", "deployments"),
            serde_json::json!({
            "metadata": {"name": "guard", "namespace": "guards"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "guard"}},
                "template": {"metadata": {"labels": {"app": "guard"}}, "spec": {
                    "nodeSelector": {"kubernetes.azure.com/agentpool": "user"},
                    "containers": [{"name": "guard", "image": "registry.corp.example/guard:1.0"}]}}}}),
        ),
        (
            p("", "v1", "Service", "services"),
            serde_json::json!({
            "metadata": {"name": "guard", "namespace": "guards"},
            "spec": {"selector": {"app": "guard"}, "ports": [{"port": 443, "targetPort": 8443}]}}),
        ),
        (
            p("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
            serde_json::json!({
            "metadata": {"name": "guard-ready", "namespace": "guards",
                "labels": {"kubernetes.io/service-name": "guard"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.1.9"], "conditions": {"ready": true}}],
            "ports": [{"port": 8443}]}),
        ),
        (
            p(
                "policy",
                "v1",
                "PodDisruptionBudget",
                "poddisruptionbudgets",
            ),
            serde_json::json!({
            "metadata": {"name": "guard", "namespace": "guards"},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "guard"}}}}),
        ),
    ];
    for (ar, mut doc) in docs {
        doc["apiVersion"] = ar.api_version.clone().into();
        doc["kind"] = ar.kind.clone().into();
        let obj: DynamicObject = serde_json::from_value(doc).unwrap();
        let api: Api<DynamicObject> = match obj.metadata.namespace.as_deref() {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        api.create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("creating {}: {e}", ar.kind));
    }
    crate::production::create(
        client,
        &crate::production::ar(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
        ),
        serde_json::json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "pod-guard"},
            "webhooks": [{
                "name": "pods.guard.corp",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 5,
                "clientConfig": {"service": {"namespace": "guards", "name": "guard"}},
                "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}
            }]
        }),
    )
    .await;
}
