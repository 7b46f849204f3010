//! The node operations an AKS-style node-pool roll needs, on one kind cluster at the
//! source version with one worker of pool `nodepool1`: the control plane upgraded in
//! place to the target (`kubeadm upgrade apply` on its node), a surge node at the
//! target joined into the pool with a taint, and the old worker removed; before that,
//! two joins that fail leave nothing behind. One cluster
//! (creating and upgrading it is the expensive part), so the steps run in sequence in
//! one test, and the cluster is deleted when the test ends, however it ends.

use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use preflight::cluster::{KindCluster, KindConfig, NodeSpec, Taint, TaintEffect, kind};
use preflight::components::{self, kind_image};
use preflight::progress::Progress;

use crate::common;
use crate::kind_clusters::{ONE_AT_A_TIME, docker_available};

const POOL: &str = "nodepool1";

/// The Node `name`, which must exist.
async fn node(client: &kube::Client, name: &str) -> Node {
    Api::<Node>::all(client.clone()).get(name).await.unwrap()
}

fn kubelet_version(n: &Node) -> String {
    n.status
        .as_ref()
        .and_then(|s| s.node_info.as_ref())
        .map(|i| i.kubelet_version.clone())
        .unwrap_or_default()
}

fn ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// kube-system's Pods that are not Running and Ready (completed ones aside), with
/// the reasons their containers wait.
async fn kube_system_unready(client: &kube::Client) -> Vec<String> {
    let pods = Api::<Pod>::namespaced(client.clone(), "kube-system")
        .list(&ListParams::default())
        .await
        .unwrap();
    pods.items
        .iter()
        .filter_map(|p| {
            let s = p.status.as_ref()?;
            let phase = s.phase.clone().unwrap_or_default();
            let ok = phase == "Succeeded"
                || (phase == "Running"
                    && s.conditions.as_ref().is_some_and(|c| {
                        c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                    }));
            (!ok).then(|| {
                let waiting: Vec<String> = s
                    .container_statuses
                    .iter()
                    .flatten()
                    .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
                    .collect();
                format!(
                    "{} {phase} {waiting:?}",
                    p.metadata.name.as_deref().unwrap_or("?")
                )
            })
        })
        .collect()
}

/// Polls [`kube_system_unready`] until it is empty or `limit` passes; what it read last.
async fn kube_system_settled(client: &kube::Client, limit: Duration) -> Vec<String> {
    let end = Instant::now() + limit;
    loop {
        let unready = kube_system_unready(client).await;
        if unready.is_empty() || Instant::now() >= end {
            return unready;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The names of the containers labelled as cluster `name`'s.
fn cluster_containers(name: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Names}}", "--filter"])
        .arg(format!("label={}={name}", kind::CLUSTER_LABEL))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Whether `grep` finds `pattern` in a file of the control-plane node.
fn node_file_has(node: &str, file: &str, pattern: &str) -> bool {
    Command::new("docker")
        .args(["exec", node, "grep", "-q", "--", pattern, file])
        .status()
        .unwrap()
        .success()
}

#[tokio::test(flavor = "multi_thread")]
async fn kind_nodes_upgrade_the_control_plane_then_surge_and_remove() {
    if !docker_available() {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().await;
    let t0 = Instant::now();
    let [source, target] = common::versions();
    let (kind_bin, source_image, target_image) = {
        let (s, t) = (source.clone(), target.clone());
        tokio::task::spawn_blocking(move || {
            let opts = components::Options::from_env(Progress::quiet());
            let kind = kind_image::ensure_kind(&opts).unwrap();
            let a = kind_image::ensure(&s, &opts).unwrap().image;
            let b = kind_image::ensure(&t, &opts).unwrap().image;
            (kind, a, b)
        })
        .await
        .unwrap()
    };
    let name = kind::cluster_name(&format!("kn{}", std::process::id()), "nodes");
    let config = KindConfig {
        name: name.clone(),
        version: source.clone(),
        image: source_image.clone(),
        kind: kind_bin,
        helm: common::components(&source).helm,
        load_images: Vec::new(),
        keep: false,
        workers: vec![NodeSpec::pool(POOL)],
    };
    let mut cluster = KindCluster::start(config).await.unwrap();
    let created = t0.elapsed();
    let client = cluster.client();
    let old_worker = cluster.workers()[0].clone();
    assert_eq!(
        cluster.node_image_for(&target).as_deref(),
        Some(target_image.as_str())
    );

    // A node that cannot join leaves nothing behind. A target-version kubelet before
    // the control plane is upgraded is refused before anything runs. A node that
    // would need an image nothing can provide (a kube-system DaemonSet's, which no
    // node runs: its selector matches none) fails after its container booted, and
    // the container is removed. A name already taken touches nothing.
    let early = cluster
        .add_node(&NodeSpec::pool(POOL), &target_image, "early")
        .await
        .unwrap_err()
        .to_string();
    assert!(early.contains("newer than the control plane"), "{early}");
    let daemonsets = Api::<DaemonSet>::namespaced(client.clone(), "kube-system");
    let absent: DaemonSet = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "preflight-absent"},
        "spec": {
            "selector": {"matchLabels": {"app": "preflight-absent"}},
            "template": {
                "metadata": {"labels": {"app": "preflight-absent"}},
                "spec": {
                    "nodeSelector": {"preflight.dev/none": "true"},
                    "containers": [{"name": "c", "image": "preflight/absent:r0"}]
                }
            }
        }
    }))
    .unwrap();
    daemonsets
        .create(&Default::default(), &absent)
        .await
        .unwrap();
    let bad = cluster
        .add_node(&NodeSpec::pool(POOL), &source_image, "bad")
        .await
        .unwrap_err()
        .to_string();
    assert!(bad.contains("preflight/absent:r0"), "{bad}");
    for n in [format!("{name}-early"), format!("{name}-bad")] {
        assert!(!cluster_containers(&name).contains(&n), "{n}");
        assert!(
            Api::<Node>::all(client.clone())
                .get_opt(&n)
                .await
                .unwrap()
                .is_none()
        );
    }
    daemonsets
        .delete("preflight-absent", &Default::default())
        .await
        .unwrap();
    assert!(
        cluster
            .add_node(&NodeSpec::pool(POOL), &source_image, "worker")
            .await
            .is_err()
    );
    assert_eq!(cluster.workers(), std::slice::from_ref(&old_worker));
    assert!(cluster_containers(&name).contains(&old_worker));

    // The control plane in place; the worker keeps the source's kubelet.
    let t = Instant::now();
    cluster
        .upgrade_control_plane(&target, &target_image)
        .await
        .unwrap();
    let upgraded = t.elapsed();
    assert_eq!(cluster.version(), &target);
    assert_eq!(
        client.apiserver_version().await.unwrap().git_version,
        target.to_string()
    );
    let cp = node(&client, &cluster.node()).await;
    assert_eq!(kubelet_version(&cp), target.to_string());
    assert!(ready(&cp));
    let w = node(&client, &old_worker).await;
    assert_eq!(kubelet_version(&w), source.to_string());
    assert!(ready(&w));
    // What the harness reads as evidence survives kubeadm's rewrite of the static pods.
    let manifests = "/etc/kubernetes/manifests";
    assert!(node_file_has(
        &cluster.node(),
        &format!("{manifests}/kube-apiserver.yaml"),
        "--audit-log-path=/var/log/preflight-audit/audit.log"
    ));
    assert!(node_file_has(
        &cluster.node(),
        &format!("{manifests}/kube-apiserver.yaml"),
        &format!("kube-apiserver:{target}")
    ));
    assert!(node_file_has(
        &cluster.node(),
        &format!("{manifests}/kube-controller-manager.yaml"),
        "--v=2"
    ));
    // So does the watch drain that lets the next upgrade's API server stop at once.
    assert!(node_file_has(
        &cluster.node(),
        &format!("{manifests}/kube-apiserver.yaml"),
        "--shutdown-watch-termination-grace-period=5s"
    ));
    // Nothing in kube-system is stuck (kube-proxy and CoreDNS rolled to the target's
    // images, which no node could pull).
    let unready = kube_system_settled(&client, Duration::from_secs(120)).await;
    assert!(
        unready.is_empty(),
        "kube-system after the upgrade: {unready:?}"
    );

    // A surge node at the target in the pool, tainted.
    let mut spec = NodeSpec::pool(POOL);
    spec.taints.push(Taint {
        key: "preflight.dev/surge".into(),
        value: "true".into(),
        effect: TaintEffect::NoSchedule,
    });
    let t = Instant::now();
    let surge = cluster
        .add_node(&spec, &target_image, "surge1")
        .await
        .unwrap();
    let joined = t.elapsed();
    assert_eq!(surge, format!("{name}-surge1"));
    assert_eq!(cluster.workers(), [old_worker.clone(), surge.clone()]);
    let s = node(&client, &surge).await;
    assert!(ready(&s));
    assert_eq!(kubelet_version(&s), target.to_string());
    let labels = s.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get(kind::AGENTPOOL_LABEL).map(String::as_str),
        Some(POOL)
    );
    assert_eq!(
        labels.get(kind::AGENTPOOL_LABEL_SHORT).map(String::as_str),
        Some(POOL)
    );
    let taints = s.spec.as_ref().and_then(|s| s.taints.clone()).unwrap();
    assert!(
        taints.iter().any(|t| t.key == "preflight.dev/surge"
            && t.value.as_deref() == Some("true")
            && t.effect == "NoSchedule"),
        "{taints:?}"
    );
    assert!(cluster_containers(&name).contains(&surge));
    // The DaemonSets run on it too (their images imported before it joined).
    let unready = kube_system_settled(&client, Duration::from_secs(120)).await;
    assert!(
        unready.is_empty(),
        "kube-system with the surge node: {unready:?}"
    );

    // The old worker goes: its Node and its container.
    let t = Instant::now();
    cluster.remove_node(&old_worker).await.unwrap();
    let removed = t.elapsed();
    assert!(
        Api::<Node>::all(client.clone())
            .get_opt(&old_worker)
            .await
            .unwrap()
            .is_none()
    );
    assert!(!cluster_containers(&name).contains(&old_worker));
    assert_eq!(cluster.workers(), std::slice::from_ref(&surge));
    assert!(cluster.remove_node(&cluster.node()).await.is_err());

    drop(cluster);
    assert!(
        cluster_containers(&name).is_empty(),
        "{:?}",
        cluster_containers(&name)
    );
    eprintln!(
        "kind nodes: created {created:?}, control plane upgraded {upgraded:?}, surge node joined {joined:?}, old worker removed {removed:?}, total {:?}",
        t0.elapsed()
    );
}

/// kind writes kubeadm's v1beta3 configuration up to 1.35 although kubeadm offers
/// v1beta4 from 1.31: a node pool's size (the kubelet's `--system-reserved` and
/// `--max-pods`) and the API server's audit flags reach a 1.31 cluster, and kind's own
/// kubelet arguments (node IP, provider id, labels) stay. Until this was so, no kind
/// cluster from 1.31 on started at all.
#[tokio::test(flavor = "multi_thread")]
async fn a_sized_worker_at_1_31_keeps_kinds_kubelet_arguments() {
    if !docker_available() {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().await;
    let (version, kind_bin, image) = tokio::task::spawn_blocking(|| {
        let opts = components::Options::from_env(Progress::quiet());
        let version = components::releases::resolve("v1.31", true, &opts)
            .unwrap()
            .version;
        let kind = kind_image::ensure_kind(&opts).unwrap();
        let image = kind_image::ensure(&version, &opts).unwrap().image;
        (version, kind, image)
    })
    .await
    .unwrap();
    let name = kind::cluster_name(&format!("ks{}", std::process::id()), "sized");
    let mut spec = NodeSpec::pool(POOL);
    spec.taints.push(Taint {
        key: "dedicated".into(),
        value: "web".into(),
        effect: TaintEffect::NoSchedule,
    });
    spec.size = Some(preflight::cluster::NodeSize {
        reserved: preflight_core::sizing::Resources {
            cpu_millis: 1200,
            memory_bytes: 1 << 30,
        },
        max_pods: Some(30),
    });
    let config = KindConfig {
        name: name.clone(),
        version: version.clone(),
        image,
        kind: kind_bin,
        helm: common::components(&version).helm,
        load_images: Vec::new(),
        keep: false,
        workers: vec![spec],
    };
    let cluster = KindCluster::start(config).await.unwrap();
    let client = cluster.client();
    let worker = cluster.workers()[0].clone();
    let n = node(&client, &worker).await;
    assert!(ready(&n), "{n:?}");
    assert_eq!(kubelet_version(&n), version.to_string());
    let status = n.status.clone().unwrap();
    let quantity =
        |m: &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
         k: &str| { m.get(k).map(|q| q.0.clone()).unwrap_or_default() };
    let capacity = status.capacity.clone().unwrap();
    let allocatable = status.allocatable.clone().unwrap();
    let cores: u64 = quantity(&capacity, "cpu").parse().unwrap();
    assert_eq!(
        quantity(&allocatable, "cpu"),
        format!("{}m", cores * 1000 - 1200),
        "{allocatable:?}"
    );
    assert_eq!(quantity(&allocatable, "pods"), "30");
    // kind's own arguments survived the pool's: the node's address is its
    // container's, its provider id kind's, its labels the pool's.
    let ip = Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &worker,
        ])
        .output()
        .unwrap();
    let ip = String::from_utf8_lossy(&ip.stdout).trim().to_string();
    assert!(
        status
            .addresses
            .iter()
            .flatten()
            .any(|a| a.type_ == "InternalIP" && a.address == ip),
        "{:?} vs {ip}",
        status.addresses
    );
    let spec = n.spec.clone().unwrap();
    assert_eq!(
        spec.provider_id.as_deref(),
        Some(format!("kind://docker/{name}/{worker}").as_str())
    );
    assert!(
        spec.taints
            .iter()
            .flatten()
            .any(|t| t.key == "dedicated" && t.effect == "NoSchedule"),
        "{:?}",
        spec.taints
    );
    let labels = n.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get(kind::AGENTPOOL_LABEL).map(String::as_str),
        Some(POOL)
    );
    // The control plane's flags from kind's ClusterConfiguration patch.
    let cp = cluster.node();
    assert!(node_file_has(
        &cp,
        "/etc/kubernetes/manifests/kube-apiserver.yaml",
        "--audit-log-path="
    ));
    assert!(node_file_has(
        &cp,
        "/etc/kubernetes/manifests/kube-controller-manager.yaml",
        "--v=2"
    ));
    drop(cluster);
    assert!(
        cluster_containers(&name).is_empty(),
        "{:?}",
        cluster_containers(&name)
    );
}
