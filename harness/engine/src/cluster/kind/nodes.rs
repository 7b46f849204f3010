//! Rolling a kind cluster's nodes the way AKS upgrades a cluster: the control plane is
//! upgraded in place first (`kubeadm upgrade apply` on its node, with the target's
//! kubeadm, images and kubelet), then each pool gets surge nodes at the target version,
//! its old nodes are cordoned, drained and removed.
//!
//! Everything works offline. A kind node holds only its own version's images and
//! nothing can be pulled, so every image a node is about to need is imported into its
//! containerd from the Docker engine's store first (`docker save | ctr import`): the
//! target's control-plane images into the control-plane node before the upgrade, the
//! target's kube-proxy, CoreDNS and pause into every other node (kubeadm moves the
//! kube-proxy DaemonSet and CoreDNS to them), and the images of kube-system's
//! DaemonSets and Deployments into a node before it joins.
//!
//! A surge node is a node container run with kind's own `docker run` settings and
//! labels (`io.x-k8s.kind.cluster`, `io.x-k8s.kind.role`), so `kind delete cluster`
//! (the handle's `Drop`, and the sentinel when the harness is killed) removes it with
//! the others; a node that fails to join is removed at once.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Node, Pod, PodSpec};
use kube::api::{Api, DeleteParams, ListParams};

use super::{DOCKER_QUERY_TIMEOUT, KindCluster, NodeSpec, docker_async, node_image, run_async};
use crate::components::{Components, Version};
use crate::errors::ClusterError;

/// The label kind puts on every container of a cluster, naming it; `kind delete
/// cluster` removes what carries it.
pub const CLUSTER_LABEL: &str = "io.x-k8s.kind.cluster";
/// The label kind puts on a node container, naming its role.
pub const ROLE_LABEL: &str = "io.x-k8s.kind.role";

/// The bound on `kubeadm upgrade apply` (it waits for every static pod itself, up to
/// five minutes each by its own timeouts; 93 s on two idle cores).
const UPGRADE_APPLY_TIMEOUT: Duration = Duration::from_secs(12 * 60);
/// The bound on copying a set of images into one node (`docker save | ctr import`):
/// the control plane's are about 500 MB.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(6 * 60);
/// The bound on `docker cp` of a binary (kubeadm, kubelet: 50-120 MB) or a file.
const COPY_TIMEOUT: Duration = Duration::from_secs(2 * 60);
/// The bound on `docker run` of a node container (the image is local).
const RUN_TIMEOUT: Duration = Duration::from_secs(2 * 60);
/// The bound on `docker rm -f` of a node container (its systemd stops everything).
const REMOVE_TIMEOUT: Duration = Duration::from_secs(2 * 60);
/// How long a fresh node container may take until systemd is up and containerd
/// answers (kind allows 30 s for systemd alone).
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
/// The bound on `kubeadm join` (it waits for the kubelet's TLS bootstrap itself; about
/// 5 s on an idle machine).
const JOIN_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How long a joined node may take to be Ready (its CNI configuration is written by
/// the CNI DaemonSet's Pod on it).
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How long the control plane may take, after its kubelet restarted at the target
/// version, to answer at the target version with its Node Ready.
const CONTROL_PLANE_BACK_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How long kube-system's Pods may take to be Running and Ready again after an
/// upgrade (kube-proxy's DaemonSet and CoreDNS roll to the target's images).
const KUBE_SYSTEM_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How long a removed node's Node object may take to disappear.
const NODE_GONE_TIMEOUT: Duration = Duration::from_secs(60);

/// `docker exec <node> <args...>` arguments.
fn exec_args(node: &str, args: &[&str]) -> Vec<String> {
    let mut all = vec!["exec".to_string(), node.to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    all
}

pub use preflight_core::images::full_image_ref;

/// The version in an image tag such as etcd's `3.5.16-0` (the part before `-`).
fn tag_version(image: &str) -> Option<Version> {
    let tag = image.rsplit_once(':')?.1;
    tag.split('-').next()?.parse().ok()
}

/// Whether `kubeadm upgrade apply` should leave etcd alone: the target's kubeadm
/// names an etcd no newer than the one running (preflight's 1.29 node runs etcd
/// 3.5.16, 1.30's kubeadm asks for 3.5.15; kubeadm never downgrades etcd, and saying
/// so up front keeps its output free of a failed etcd step).
pub fn keep_etcd(running: Option<&str>, target: Option<&str>) -> bool {
    match (running.and_then(tag_version), target.and_then(tag_version)) {
        (Some(r), Some(t)) => t <= r,
        _ => false,
    }
}

/// Whether the Docker engine's store holds `image` (nothing can be pulled here).
async fn engine_holds(image: &str) -> bool {
    let args = [
        "image".into(),
        "inspect".into(),
        "--format".into(),
        "{{.Id}}".into(),
        image.to_string(),
    ];
    docker_async(&args, DOCKER_QUERY_TIMEOUT).await.is_ok()
}

/// The node image of `version`, from `image`, the one of version `running`: its
/// version replaced. None when `image` does not name `running`.
pub fn image_of_version(image: &str, running: &Version, version: &Version) -> Option<String> {
    let running = running.to_string();
    let template = image
        .contains(&running)
        .then(|| image.replace(&running, "{version}"))?;
    Some(node_image(version, Some(&template)))
}

/// A node container's name: `<cluster>-<suffix>`, refused unless it is a DNS label
/// (it becomes the node's hostname and its Node object's name).
pub fn surge_node_name(cluster: &str, suffix: &str) -> Result<String, ClusterError> {
    let name = format!("{cluster}-{suffix}");
    let ok = !suffix.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !ok {
        return Err(ClusterError::Unsupported(format!(
            "node name {name:?}: a node's name must be a DNS label (lowercase letters, digits and '-', at most 63 characters); choose another suffix than {suffix:?}"
        )));
    }
    Ok(name)
}

/// The `docker run` arguments kind v0.33 uses for a worker node container of
/// `cluster` (`pkg/cluster/internal/providers/docker/provision.go`: `commonArgs` and
/// `runArgsForNode`), so the node behaves as kind's own and `kind delete cluster`
/// finds it by its labels.
pub fn run_node_args(cluster: &str, name: &str, image: &str) -> Vec<String> {
    [
        "run",
        "--name",
        name,
        "--detach",
        "--tty",
        "--label",
        &format!("{CLUSTER_LABEL}={cluster}"),
        "--net",
        "kind",
        "--restart=on-failure:1",
        "--init=false",
        "--cgroupns=private",
        "--hostname",
        name,
        "--label",
        &format!("{ROLE_LABEL}=worker"),
        "--privileged",
        "--security-opt",
        "seccomp=unconfined",
        "--security-opt",
        "apparmor=unconfined",
        "--tmpfs",
        "/tmp",
        "--tmpfs",
        "/run",
        "--volume",
        "/var",
        "--volume",
        "/lib/modules:/lib/modules:ro",
        "-e",
        "KIND_EXPERIMENTAL_CONTAINERD_SNAPSHOTTER",
        image,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The kubeadm configuration a surge node joins with: kind's own `JoinConfiguration`
/// for a worker (its node IP, provider id and labels as kubelet arguments), the spec's
/// taints (the kubelet registers with them, so nothing lands on the node before they
/// hold), and a bootstrap token made for this join. kubeadm's v1beta4 (1.31+) turned
/// `kubeletExtraArgs` into a list.
pub fn join_config(
    version: &Version,
    cluster: &str,
    node: &str,
    node_ip: &str,
    token: &str,
    spec: &NodeSpec,
) -> String {
    let labels = spec
        .node_labels()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut kubelet = vec![
        ("node-ip", node_ip.to_string()),
        ("node-labels", labels),
        ("provider-id", format!("kind://docker/{cluster}/{node}")),
    ];
    kubelet.extend(spec.size.iter().flat_map(|s| s.kubelet_args()));
    let (api, args) = if version.minor >= 31 {
        let args: String = kubelet
            .iter()
            .map(|(k, v)| format!("\n    - name: \"{k}\"\n      value: \"{v}\""))
            .collect();
        ("v1beta4", args)
    } else {
        let args: String = kubelet
            .iter()
            .map(|(k, v)| format!("\n    {k}: \"{v}\""))
            .collect();
        ("v1beta3", args)
    };
    let taints = if spec.taints.is_empty() {
        " []\n".to_string()
    } else {
        let mut t = String::from("\n");
        for taint in &spec.taints {
            t.push_str(&format!(
                "  - key: \"{}\"\n    value: \"{}\"\n    effect: \"{}\"\n",
                taint.key,
                taint.value,
                taint.effect.as_str()
            ));
        }
        t
    };
    format!(
        "apiVersion: kubeadm.k8s.io/{api}
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: \"{cluster}-control-plane:6443\"
    token: \"{token}\"
    unsafeSkipCAVerification: true
nodeRegistration:
  name: \"{node}\"
  criSocket: \"unix:///run/containerd/containerd.sock\"
  kubeletExtraArgs:{args}
  taints:{taints}"
    )
}

/// Every image a Pod spec runs (init containers included).
fn pod_images(spec: Option<&PodSpec>) -> Vec<String> {
    let Some(spec) = spec else {
        return Vec::new();
    };
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .filter_map(|c| c.image.clone())
        .collect()
}

/// Whether a Node reports Ready.
fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The kubelet version a Node reports.
fn kubelet_version(node: &Node) -> Option<String> {
    node.status
        .as_ref()
        .and_then(|s| s.node_info.as_ref())
        .map(|i| i.kubelet_version.clone())
}

/// Why a Pod is not Running and Ready yet (None: it is, or it has completed).
fn pod_unready(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.clone()).unwrap_or_default();
    if phase == "Succeeded" {
        return None;
    }
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    if phase == "Running" && ready {
        return None;
    }
    let waiting: Vec<String> = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
        .collect();
    Some(format!(
        "{} on {}: {phase}{}",
        pod.metadata.name.as_deref().unwrap_or("?"),
        pod.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or("no node"),
        if waiting.is_empty() {
            String::new()
        } else {
            format!(" ({})", waiting.join(", "))
        }
    ))
}

/// Waits (polling, with a deadline) until every Pod in kube-system is Running and
/// Ready (or has completed); the error lists those that are not, with why they wait
/// (an `ImagePullBackOff` names an image a node lacks).
pub async fn wait_kube_system_ready(
    client: &kube::Client,
    timeout: Duration,
) -> Result<(), ClusterError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let deadline = Instant::now() + timeout;
    let mut seen = String::from("no answer yet");
    while Instant::now() < deadline {
        match tokio::time::timeout(DOCKER_QUERY_TIMEOUT, pods.list(&ListParams::default())).await {
            Ok(Ok(list)) => {
                let waiting: Vec<String> = list.items.iter().filter_map(pod_unready).collect();
                if waiting.is_empty() && !list.items.is_empty() {
                    return Ok(());
                }
                seen = waiting.join("; ");
            }
            Ok(Err(e)) => seen = format!("listing Pods: {e}"),
            Err(_) => seen = "listing Pods: no answer".into(),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(ClusterError::Unsupported(format!(
        "kube-system's Pods were not all Running and Ready within {timeout:?}: {seen}"
    )))
}

impl KindCluster {
    /// The node image of `version` for this cluster: the image it was created from,
    /// with its version replaced (`preflight/node:v1.29.15` -> `preflight/node:v1.30.14`,
    /// and the same for a `--kind-image` template). None when the image does not name
    /// its version (a digest), so the target's image cannot be told.
    pub fn node_image_for(&self, version: &Version) -> Option<String> {
        image_of_version(&self.image, &self.version, version)
    }

    /// [`Cluster::upgrade`](super::super::Cluster::upgrade) on kind: the control plane
    /// in place to `target`'s version from that version's node image (the one this
    /// cluster's image names for it); helm becomes the target's, as on a local control
    /// plane.
    pub async fn upgrade(&mut self, target: Components) -> Result<(), ClusterError> {
        let image = self.node_image_for(&target.version).ok_or_else(|| {
            ClusterError::Unsupported(format!(
                "kind cluster {}: its node image {} does not name its version {}, so the node image of {} cannot be told for an in-place upgrade",
                self.name, self.image, self.version, target.version
            ))
        })?;
        self.upgrade_control_plane(&target.version, &image).await?;
        self.helm = target.helm;
        Ok(())
    }

    /// Upgrades the control plane in place to `target` (kubeadm upgrade apply on the control-plane node with the target's kubeadm and images, then the control-plane node's kubelet). Workers keep their version (AKS upgrades the control plane first, then rolls the pools). Afterwards `self.version()` is the target.
    ///
    /// In order: the target's kubeadm and kubelet are copied out of `target_image`
    /// (a node image holds them at `/usr/bin`); the images the target's kubeadm names
    /// (`kubeadm config images list`) are imported from the Docker engine's store into
    /// the control-plane node, and the target's kube-proxy, CoreDNS and pause into every
    /// other node (nothing can be pulled); `kubeadm upgrade apply` (keeping etcd when
    /// the running one is newer, and the certificates, which the handed-out kubeconfig
    /// uses) rewrites the static pods from the ClusterConfiguration stored in the
    /// cluster, so the API server's audit flags and the controller manager's `--v=2`
    /// survive; then the node's kubelet is replaced and restarted. Returns once the
    /// API server answers at the target version, the control-plane Node reports the
    /// target's kubelet and is Ready, and every kube-system Pod is Running and Ready.
    pub async fn upgrade_control_plane(
        &mut self,
        target: &Version,
        target_image: &str,
    ) -> Result<(), ClusterError> {
        let from = self.version.clone();
        if *target <= from || target.major != from.major || target.minor > from.minor + 1 {
            return Err(ClusterError::Unsupported(format!(
                "kind cluster {}: kubeadm upgrades a control plane one minor version forward at a time, not {from} -> {target}",
                self.name
            )));
        }
        let node = self.node();
        let binaries = self
            .binaries_of(target_image, &["kubeadm", "kubelet"])
            .await?;
        self.copy_into(&node, &binaries[0], "/usr/bin/kubeadm")
            .await?;
        let listed = docker_async(
            &exec_args(
                &node,
                &[
                    "kubeadm",
                    "config",
                    "images",
                    "list",
                    "--kubernetes-version",
                    &target.to_string(),
                ],
            ),
            DOCKER_QUERY_TIMEOUT,
        )
        .await?;
        let images: Vec<String> = listed.split_whitespace().map(str::to_string).collect();
        let target_etcd = images.iter().find(|i| i.contains("/etcd:")).cloned();
        let running_etcd = docker_async(
            &exec_args(
                &node,
                &[
                    "sh",
                    "-c",
                    "sed -n 's/^ *image: *//p' /etc/kubernetes/manifests/etcd.yaml",
                ],
            ),
            DOCKER_QUERY_TIMEOUT,
        )
        .await?;
        let keep = keep_etcd(Some(running_etcd.trim()), target_etcd.as_deref());
        let mut control_plane: Vec<String> = images
            .iter()
            .filter(|i| !(keep && i.contains("/etcd:")))
            .cloned()
            .collect();
        // kubeadm's prepull asks for every image it lists, the kept etcd's too: one the
        // node lacks costs a pull that cannot succeed offline (containerd gives up after
        // about 50 s, measured). So the target's etcd image goes in as well when the
        // engine holds it (`components kind-image` builds it); without it the upgrade
        // still works, only slower.
        if let Some(etcd) = target_etcd.filter(|_| keep)
            && engine_holds(&etcd).await
        {
            control_plane.push(etcd);
        }
        let addons: Vec<String> = images
            .iter()
            .filter(|i| {
                ["/kube-proxy:", "/coredns:", "/pause:"]
                    .iter()
                    .any(|n| i.contains(n))
            })
            .cloned()
            .collect();
        // Every node at once: the copies wait mostly on the Docker engine's disk.
        let mut imports = vec![self.import_missing(&node, &control_plane)];
        imports.extend(self.workers.iter().map(|w| self.import_missing(w, &addons)));
        futures::future::try_join_all(imports).await?;
        let version = target.to_string();
        // kind's nodes fail several of kubeadm's preflight checks (swap, kernel
        // configuration, the system verification), as at `kind create`, where kind
        // skips the preflight phase altogether.
        let mut apply = vec![
            "kubeadm",
            "upgrade",
            "apply",
            &version,
            "--yes",
            "--ignore-preflight-errors=all",
            "--certificate-renewal=false",
        ];
        if keep {
            apply.push("--etcd-upgrade=false");
        }
        docker_async(&exec_args(&node, &apply), UPGRADE_APPLY_TIMEOUT).await?;
        // The API server now runs the target; the kubelet follows (kubeadm leaves it).
        self.version = target.clone();
        self.copy_into(&node, &binaries[1], "/usr/bin/kubelet")
            .await?;
        docker_async(
            &exec_args(
                &node,
                &[
                    "sh",
                    "-c",
                    &format!("printf %s {version} >/kind/version && systemctl restart kubelet"),
                ],
            ),
            DOCKER_QUERY_TIMEOUT,
        )
        .await?;
        self.image = target_image.to_string();
        self.wait_control_plane_at(target).await?;
        wait_kube_system_ready(&self.client, KUBE_SYSTEM_TIMEOUT).await
    }

    /// Joins a new worker node at `version` from `image` (a preflight node image), named `<cluster>-<suffix>`, with `spec`'s pool labels and taints, and waits until it is Ready. Returns the node name.
    ///
    /// The version is the image's (`/kind/version` in it). Before the node joins, the
    /// images of kube-system's DaemonSets and Deployments it does not hold are
    /// imported into it (a source-version pool's kube-proxy on a target-version node,
    /// or the other way round). A node that fails to boot or join is removed (its
    /// container and any Node object it registered) before the error is returned.
    pub async fn add_node(
        &mut self,
        spec: &NodeSpec,
        image: &str,
        suffix: &str,
    ) -> Result<String, ClusterError> {
        let problems = spec.problems();
        if !problems.is_empty() {
            return Err(ClusterError::Unsupported(format!(
                "kind cluster {}: {}",
                self.name,
                problems.join("; ")
            )));
        }
        let name = surge_node_name(&self.name, suffix)?;
        let version = self.image_version(image).await?;
        if version > self.version {
            return Err(ClusterError::Unsupported(format!(
                "node {name} from {image} would run kubelet {version}, newer than the control plane's {}: a kubelet may not be newer than its API server (upgrade the control plane first, as AKS does)",
                self.version
            )));
        }
        docker_async(&run_node_args(&self.name, &name, image), RUN_TIMEOUT).await?;
        match self.join(&name, &version, spec).await {
            Ok(()) => {
                self.workers.push(name.clone());
                Ok(name)
            }
            Err(e) => {
                // Nothing of a failed node stays: neither its container nor its Node.
                let _ = self.remove_container(&name).await;
                let _ = self.delete_node_object(&name).await;
                Err(e)
            }
        }
    }

    /// Deletes a node from the cluster (the Node object) and removes its container.
    ///
    /// The container goes first, so its kubelet cannot register the Node again; then
    /// the Node object, waiting (with a deadline) until the API no longer has it. Only
    /// a container labelled as this cluster's is removed; the control-plane node is
    /// refused.
    pub async fn remove_node(&mut self, node: &str) -> Result<(), ClusterError> {
        if node == self.node() {
            return Err(ClusterError::Unsupported(format!(
                "{node} is the control plane of kind cluster {}: only workers can be removed",
                self.name
            )));
        }
        let names = |filter: Option<String>| {
            let mut args = vec![
                "ps".to_string(),
                "-a".into(),
                "--format".into(),
                "{{.Names}}".into(),
            ];
            if let Some(f) = filter {
                args.extend(["--filter".to_string(), f]);
            }
            async move {
                docker_async(&args, DOCKER_QUERY_TIMEOUT)
                    .await
                    .map(|out| out.lines().any(|l| l.trim() == node))
            }
        };
        if names(Some(format!("label={CLUSTER_LABEL}={}", self.name))).await? {
            self.remove_container(node).await?;
        } else if names(None).await? {
            return Err(ClusterError::Unsupported(format!(
                "container {node} is not a node of kind cluster {}: left alone",
                self.name
            )));
        }
        self.delete_node_object(node).await?;
        self.workers.retain(|w| w != node);
        Ok(())
    }

    /// The Kubernetes version of a node image (`/kind/version` in it, as kind reads
    /// it), from a container that only prints it: known before a node boots. The
    /// container carries the cluster's label, so a teardown removes it if this is
    /// interrupted.
    async fn image_version(&self, image: &str) -> Result<Version, ClusterError> {
        let args = vec![
            "run".to_string(),
            "--rm".into(),
            "--label".into(),
            format!("{CLUSTER_LABEL}={}", self.name),
            "--entrypoint".into(),
            "cat".into(),
            image.to_string(),
            "/kind/version".into(),
        ];
        docker_async(&args, RUN_TIMEOUT)
            .await?
            .trim()
            .parse()
            .map_err(|e| {
                ClusterError::Unsupported(format!(
                    "{image}: its /kind/version does not name a Kubernetes version, so it is not a kind node image: {e}"
                ))
            })
    }

    /// Boots, prepares and joins the node container `name` (already running).
    async fn join(
        &self,
        name: &str,
        version: &Version,
        spec: &NodeSpec,
    ) -> Result<(), ClusterError> {
        self.wait_booted(name).await?;
        let mut needed = self.kube_system_images().await?;
        needed.extend(self.load_images.iter().cloned());
        self.import_missing(name, &needed).await?;
        let ip = docker_async(
            &[
                "inspect".into(),
                "-f".into(),
                "{{with index .NetworkSettings.Networks \"kind\"}}{{.IPAddress}}{{end}}".into(),
                name.to_string(),
            ],
            DOCKER_QUERY_TIMEOUT,
        )
        .await?
        .trim()
        .to_string();
        if ip.is_empty() {
            return Err(ClusterError::Unsupported(format!(
                "node {name} has no address on the kind network"
            )));
        }
        // A token of its own, short-lived: kind's fixed token expires a day after the
        // cluster was created.
        let token = docker_async(
            &exec_args(
                &self.node(),
                &["kubeadm", "token", "create", "--ttl", "15m"],
            ),
            DOCKER_QUERY_TIMEOUT,
        )
        .await?
        .trim()
        .to_string();
        let config = self.dir.path().join(format!("{name}-kubeadm.conf"));
        std::fs::write(
            &config,
            join_config(version, &self.name, name, &ip, &token, spec),
        )
        .map_err(|e| ClusterError::io("writing", &config, e))?;
        self.copy_into(name, &config, "/kind/kubeadm.conf").await?;
        docker_async(
            &exec_args(
                name,
                &[
                    "kubeadm",
                    "join",
                    "--config",
                    "/kind/kubeadm.conf",
                    "--skip-phases=preflight",
                ],
            ),
            JOIN_TIMEOUT,
        )
        .await?;
        self.wait_node(name, version, NODE_READY_TIMEOUT).await
    }

    /// Waits (polling, with a deadline) until a fresh node container's systemd is up
    /// (what kind waits for in its log) and its containerd answers.
    async fn wait_booted(&self, name: &str) -> Result<(), ClusterError> {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let logs = vec!["logs".to_string(), name.to_string()];
        let ctr = exec_args(name, &["ctr", "--namespace=k8s.io", "version"]);
        let mut seen = String::new();
        while Instant::now() < deadline {
            let up = docker_async(&logs, DOCKER_QUERY_TIMEOUT)
                .await
                .is_ok_and(|l| {
                    l.contains("detected cgroup v1")
                        || (l.contains("Reached target") && l.contains("Multi-User System"))
                });
            if up {
                match docker_async(&ctr, DOCKER_QUERY_TIMEOUT).await {
                    Ok(_) => return Ok(()),
                    Err(e) => seen = format!(": containerd: {e}"),
                }
            }
            if let Some(dead) = super::node_dead(name).await.into_iter().next() {
                return Err(ClusterError::Unsupported(dead));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(ClusterError::Unsupported(format!(
            "node container {name} did not boot (systemd up, containerd answering) within {BOOT_TIMEOUT:?}{seen}"
        )))
    }

    /// The images kube-system's DaemonSets and Deployments run: what a node may be
    /// asked to run as soon as it joins.
    async fn kube_system_images(&self) -> Result<Vec<String>, ClusterError> {
        let api_err = |action: &str| {
            let action = action.to_string();
            move |source| ClusterError::Api { action, source }
        };
        let lp = ListParams::default();
        let ds = Api::<DaemonSet>::namespaced(self.client.clone(), "kube-system")
            .list(&lp)
            .await
            .map_err(api_err("listing kube-system's DaemonSets"))?;
        let deploy = Api::<Deployment>::namespaced(self.client.clone(), "kube-system")
            .list(&lp)
            .await
            .map_err(api_err("listing kube-system's Deployments"))?;
        let mut all = BTreeSet::new();
        for d in &ds.items {
            let spec = d.spec.as_ref().and_then(|s| s.template.spec.as_ref());
            all.extend(pod_images(spec));
        }
        for d in &deploy.items {
            let spec = d.spec.as_ref().and_then(|s| s.template.spec.as_ref());
            all.extend(pod_images(spec));
        }
        Ok(all.into_iter().collect())
    }

    /// Imports into `node`'s containerd those of `images` it does not hold, from the
    /// Docker engine's store (`docker save | ctr import`, as kind_node.sh preloads a
    /// node image: unpacked by the CRI when a container first uses one).
    async fn import_missing(&self, node: &str, images: &[String]) -> Result<(), ClusterError> {
        let held: BTreeSet<String> = docker_async(
            &exec_args(node, &["ctr", "--namespace=k8s.io", "images", "ls", "-q"]),
            DOCKER_QUERY_TIMEOUT,
        )
        .await?
        .lines()
        .map(str::to_string)
        .collect();
        let missing: Vec<String> = images
            .iter()
            .filter(|i| !held.contains(&full_image_ref(i)))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        // Said up front: `docker save` of an image the engine lacks fails with a bare
        // "No such image".
        for image in &missing {
            if !engine_holds(image).await {
                return Err(ClusterError::Unsupported(format!(
                    "node {node} needs image {image}, which the Docker engine does not hold and nothing can pull: `preflight components kind-image --version V` builds a version's images"
                )));
            }
        }
        let mut args = vec![
            "-c".to_string(),
            "set -o pipefail; n=$1; shift; docker save \"$@\" | docker exec -i \"$n\" ctr --namespace=k8s.io images import --all-platforms --no-unpack --digests -".into(),
            "import".into(),
            node.to_string(),
        ];
        args.extend(missing);
        run_async("bash", &args, IMPORT_TIMEOUT).await.map(drop)
    }

    /// Copies binaries out of `image` (at `/usr/bin/<name>`) into the cluster's
    /// directory, through a created (never started) container labelled as the
    /// cluster's, so a teardown removes it too if this is interrupted.
    async fn binaries_of(
        &self,
        image: &str,
        names: &[&str],
    ) -> Result<Vec<std::path::PathBuf>, ClusterError> {
        let id = docker_async(
            &[
                "create".into(),
                "--label".into(),
                format!("{CLUSTER_LABEL}={}", self.name),
                image.to_string(),
            ],
            DOCKER_QUERY_TIMEOUT,
        )
        .await?
        .trim()
        .to_string();
        let dir = self.dir.path().join(format!(
            "binaries-{}",
            image.rsplit(':').next().unwrap_or("image")
        ));
        let copied = async {
            std::fs::create_dir_all(&dir).map_err(|e| ClusterError::io("creating", &dir, e))?;
            let mut out = Vec::new();
            for name in names {
                let to = dir.join(name);
                docker_async(
                    &[
                        "cp".into(),
                        "-L".into(),
                        format!("{id}:/usr/bin/{name}"),
                        to.display().to_string(),
                    ],
                    COPY_TIMEOUT,
                )
                .await?;
                out.push(to);
            }
            Ok(out)
        }
        .await;
        docker_async(&["rm".into(), "-v".into(), id], REMOVE_TIMEOUT).await?;
        copied
    }

    /// Copies a file into a node at `path`, replacing what is there at once (a
    /// rename: a running binary stays intact for the process that runs it).
    async fn copy_into(
        &self,
        node: &str,
        from: &std::path::Path,
        path: &str,
    ) -> Result<(), ClusterError> {
        let staged = format!("{path}.preflight-new");
        docker_async(
            &[
                "cp".into(),
                from.display().to_string(),
                format!("{node}:{staged}"),
            ],
            COPY_TIMEOUT,
        )
        .await?;
        docker_async(
            &exec_args(node, &["mv", "-f", &staged, path]),
            DOCKER_QUERY_TIMEOUT,
        )
        .await
        .map(drop)
    }

    /// Waits (polling, with a deadline) until the API server answers `/version` at
    /// `target` and the control-plane Node reports the target's kubelet, Ready.
    async fn wait_control_plane_at(&self, target: &Version) -> Result<(), ClusterError> {
        let deadline = Instant::now() + CONTROL_PLANE_BACK_TIMEOUT;
        let want = target.to_string();
        let mut seen = String::from("no answer yet");
        while Instant::now() < deadline {
            match tokio::time::timeout(DOCKER_QUERY_TIMEOUT, self.client.apiserver_version()).await
            {
                Ok(Ok(v)) if v.git_version == want => match self.node_state(&self.node()).await {
                    Ok(Some((kubelet, true))) if kubelet == want => return Ok(()),
                    Ok(state) => seen = format!("API server {want}; control-plane Node: {state:?}"),
                    Err(e) => seen = e.to_string(),
                },
                Ok(Ok(v)) => seen = format!("API server answers {}", v.git_version),
                Ok(Err(e)) => seen = format!("API server: {e}"),
                Err(_) => seen = "API server: no answer".into(),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Err(ClusterError::Unsupported(format!(
            "the control plane of kind cluster {} was not back at {want} within {CONTROL_PLANE_BACK_TIMEOUT:?}: {seen}",
            self.name
        )))
    }

    /// Waits (polling, with a deadline) until Node `name` is Ready with the kubelet of
    /// `version`.
    async fn wait_node(
        &self,
        name: &str,
        version: &Version,
        timeout: Duration,
    ) -> Result<(), ClusterError> {
        let deadline = Instant::now() + timeout;
        let want = version.to_string();
        let mut seen = String::from("not registered");
        while Instant::now() < deadline {
            match self.node_state(name).await {
                Ok(Some((kubelet, true))) if kubelet == want => return Ok(()),
                Ok(Some((kubelet, true))) => {
                    return Err(ClusterError::Unsupported(format!(
                        "node {name} joined with kubelet {kubelet}, not {want}"
                    )));
                }
                Ok(Some((kubelet, false))) => seen = format!("NotReady (kubelet {kubelet})"),
                Ok(None) => seen = "not registered".into(),
                Err(e) => seen = e.to_string(),
            }
            if let Some(dead) = super::node_dead(name).await.into_iter().next() {
                return Err(ClusterError::Unsupported(dead));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Err(ClusterError::Unsupported(format!(
            "node {name} was not Ready within {timeout:?}: {seen}"
        )))
    }

    /// A Node's kubelet version and readiness; None if there is no such Node.
    async fn node_state(&self, name: &str) -> Result<Option<(String, bool)>, ClusterError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        match tokio::time::timeout(DOCKER_QUERY_TIMEOUT, nodes.get_opt(name)).await {
            Ok(Ok(n)) => Ok(n.map(|n| (kubelet_version(&n).unwrap_or_default(), node_ready(&n)))),
            Ok(Err(source)) => Err(ClusterError::Api {
                action: format!("reading Node {name}"),
                source,
            }),
            Err(_) => Err(ClusterError::Unsupported(format!(
                "reading Node {name}: no answer within {DOCKER_QUERY_TIMEOUT:?}"
            ))),
        }
    }

    /// `docker rm -f -v` of a node container (its anonymous `/var` volume with it).
    async fn remove_container(&self, name: &str) -> Result<(), ClusterError> {
        docker_async(
            &["rm".into(), "-f".into(), "-v".into(), name.to_string()],
            REMOVE_TIMEOUT,
        )
        .await
        .map(drop)
    }

    /// Deletes Node `name` (a missing one is fine) and waits (polling, with a
    /// deadline) until the API no longer has it.
    async fn delete_node_object(&self, name: &str) -> Result<(), ClusterError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        match nodes.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(source) => {
                return Err(ClusterError::Api {
                    action: format!("deleting Node {name}"),
                    source,
                });
            }
        }
        let deadline = Instant::now() + NODE_GONE_TIMEOUT;
        while Instant::now() < deadline {
            if matches!(self.node_state(name).await, Ok(None)) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(ClusterError::Unsupported(format!(
            "Node {name} was still there {NODE_GONE_TIMEOUT:?} after it was deleted"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Taint, TaintEffect};

    #[test]
    fn etcd_is_kept_when_the_running_one_is_newer() {
        let (r, t) = (
            "registry.k8s.io/etcd:3.5.16-0",
            "registry.k8s.io/etcd:3.5.15-0",
        );
        assert!(keep_etcd(Some(r), Some(t)));
        assert!(keep_etcd(Some(r), Some(r)));
        assert!(!keep_etcd(Some(t), Some(r)));
        assert!(!keep_etcd(None, Some(r)));
    }

    #[test]
    fn the_targets_node_image_is_the_clusters_with_its_version() {
        let (s, t) = (Version::new(1, 29, 15), Version::new(1, 30, 14));
        assert_eq!(
            image_of_version("preflight/node:v1.29.15", &s, &t).as_deref(),
            Some("preflight/node:v1.30.14")
        );
        assert_eq!(
            image_of_version("kindest/node:v1.29.15", &s, &t).as_deref(),
            Some("kindest/node:v1.30.14")
        );
        assert_eq!(image_of_version("kindest/node@sha256:abc", &s, &t), None);
    }

    #[test]
    fn surge_nodes_are_named_as_dns_labels() {
        assert_eq!(surge_node_name("c", "surge1").unwrap(), "c-surge1");
        for bad in ["", "Surge", "a_b", "x-", &"y".repeat(70)] {
            assert!(surge_node_name("c", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn surge_nodes_run_with_kinds_settings_and_labels() {
        let a = run_node_args("c", "c-surge1", "preflight/node:v1.30.14");
        let text = a.join(" ");
        assert!(text.starts_with("run --name c-surge1 "), "{text}");
        assert!(text.contains("--label io.x-k8s.kind.cluster=c "), "{text}");
        assert!(
            text.contains("--label io.x-k8s.kind.role=worker "),
            "{text}"
        );
        assert!(text.contains("--hostname c-surge1 "), "{text}");
        assert_eq!(a.last().unwrap(), "preflight/node:v1.30.14");
    }

    #[test]
    fn join_config_carries_the_pool_and_taints() {
        let mut spec = NodeSpec::pool("nodepool1");
        spec.taints.push(Taint {
            key: "surge".into(),
            value: "true".into(),
            effect: TaintEffect::NoSchedule,
        });
        let v = Version::new(1, 30, 14);
        let c = join_config(&v, "c", "c-surge1", "172.18.0.9", "abc.def", &spec);
        assert!(c.contains("apiVersion: kubeadm.k8s.io/v1beta3"), "{c}");
        assert!(
            c.contains("apiServerEndpoint: \"c-control-plane:6443\""),
            "{c}"
        );
        assert!(
            c.contains(
                "node-labels: \"agentpool=nodepool1,kubernetes.azure.com/agentpool=nodepool1\""
            ),
            "{c}"
        );
        assert!(
            c.contains("provider-id: \"kind://docker/c/c-surge1\""),
            "{c}"
        );
        assert!(
            c.contains("- key: \"surge\"\n    value: \"true\"\n    effect: \"NoSchedule\""),
            "{c}"
        );
        let none = join_config(&v, "c", "n", "ip", "t", &NodeSpec::pool("p"));
        assert!(none.ends_with("taints: []\n"), "{none}");
        let new = join_config(&Version::new(1, 31, 0), "c", "n", "ip", "t", &spec);
        assert!(
            new.contains("v1beta4") && new.contains("- name: \"node-ip\""),
            "{new}"
        );
    }

    #[test]
    fn a_sized_node_joins_with_its_reservation_and_carries_it_in_labels() {
        let mut spec = NodeSpec::pool("user");
        spec.size = Some(crate::cluster::NodeSize {
            reserved: preflight_core::sizing::Resources {
                cpu_millis: 1310,
                memory_bytes: 1 << 30,
            },
            max_pods: Some(30),
        });
        let c = join_config(&Version::new(1, 30, 14), "c", "n", "ip", "t", &spec);
        assert!(
            c.contains("system-reserved: \"cpu=1310m,memory=1073741824\"")
                && c.contains("max-pods: \"30\""),
            "{c}"
        );
        let new = join_config(&Version::new(1, 31, 0), "c", "n", "ip", "t", &spec);
        assert!(new.contains("- name: \"system-reserved\""), "{new}");
        // A surge node of the pool reads its size back from an old node's labels.
        let labels = spec.node_labels();
        assert_eq!(crate::cluster::NodeSize::from_labels(&labels), spec.size);
        let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "n", "labels": labels}}),
        )
        .unwrap();
        let back = crate::rollout::spec_of(&node);
        assert_eq!(back.size, spec.size);
        assert!(back.labels.is_empty(), "{:?}", back.labels);
        // In kind's configuration, a patch of that worker's kubelet arguments: merged
        // into kind's map while kind writes v1beta3 (to 1.35), appended to its list
        // after (a strategic patch would replace the list: node IP, labels and
        // provider id lost).
        let config = |v: Version| {
            crate::cluster::kind::cluster_config(
                &v,
                std::path::Path::new("/a"),
                std::slice::from_ref(&spec),
            )
        };
        let old = config(Version::new(1, 30, 14));
        assert!(
            old.contains("kubeletExtraArgs:\n            system-reserved: \"cpu=1310m,memory=1073741824\"\n            max-pods: \"30\""),
            "{old}"
        );
        let v135 = config(Version::new(1, 35, 0));
        assert!(
            v135.contains("kubeletExtraArgs:\n            system-reserved:"),
            "{v135}"
        );
        let new = config(Version::new(1, 36, 0));
        assert!(!new.contains("          kubeletExtraArgs:"), "{new}");
        assert!(
            new.contains("kubeadmConfigPatchesJSON6902:\n      - group: kubeadm.k8s.io\n        version: v1beta4\n        kind: JoinConfiguration")
                && new.contains("path: /nodeRegistration/kubeletExtraArgs/-\n            value: {name: \"system-reserved\", value: \"cpu=1310m,memory=1073741824\"}")
                && new.contains("value: {name: \"max-pods\", value: \"30\"}"),
            "{new}"
        );
        // The config is YAML kind reads: the patch is a list of operations.
        let doc: serde_json::Value = serde_saphyr::from_str(&new).unwrap();
        let patch = &doc["nodes"][1]["kubeadmConfigPatchesJSON6902"][0];
        let ops: serde_json::Value =
            serde_saphyr::from_str(patch["patch"].as_str().unwrap()).unwrap();
        assert_eq!(ops.as_array().map(Vec::len), Some(2), "{ops:#}");
        assert_eq!(ops[1]["value"]["name"], "max-pods", "{ops:#}");
    }
}
