//! The `kind` provider: a kind cluster per run (`kind create cluster`), deleted at
//! teardown: when the handle is dropped (errors and Ctrl-C included) and, through a
//! sentinel process, when the harness itself is killed.
//!
//! Unlike the local provider, kind nodes run real kubelets: Pods start, run, and take
//! their grace period to stop; hook Jobs really run (the test chart's image is loaded
//! into every node). Evidence comes from the cluster itself: the API server's audit log
//! (configured through kind's cluster config and written into the run's directory) and
//! the control-plane containers' logs, read from the node.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod nodes;
pub use nodes::{CLUSTER_LABEL, ROLE_LABEL};

use super::process::Sentinel;
use crate::command::{self, CommandError};
use crate::components::Version;
use crate::errors::ClusterError;

/// What to install when a tool is missing.
pub const INSTALL_HINT: &str = "the kind provider needs a running Docker engine: start Docker, or on a Debian machine run `sudo ci/docker-engine.sh` from preflight's repository (kind itself is built from its Go module by preflight); or use `--provider local`";

/// Where the audit log lives inside the control-plane node (a mount of the run's
/// directory on the host).
const AUDIT_DIR_IN_NODE: &str = "/var/log/preflight-audit";

/// A unique cluster name for a run: parallel runs never collide.
pub fn cluster_name(run_id: &str, role: &str) -> String {
    let mut name = format!("preflight-{run_id}-{role}");
    name.truncate(40);
    name
}

/// The node image for a version: the user's template (`--kind-image`, where
/// `{version}` stands for the version), else preflight's own `preflight/node:<version>`.
pub fn node_image(version: &Version, template: Option<&str>) -> String {
    template
        .unwrap_or("preflight/node:{version}")
        .replace("{version}", &version.to_string())
}

/// The label AKS puts on every node of a pool (beside the older, bare `agentpool`),
/// naming its pool; Deployments select a pool with it.
pub const AGENTPOOL_LABEL: &str = "kubernetes.azure.com/agentpool";
/// The bare pool label AKS nodes carry too.
pub const AGENTPOOL_LABEL_SHORT: &str = "agentpool";

/// A taint's effect (`NoSchedule`, `PreferNoSchedule`, `NoExecute`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl TaintEffect {
    pub fn as_str(self) -> &'static str {
        match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
    }
}

/// A taint a worker registers with (an AKS pool's `--node-taints`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    /// Empty: a taint without a value.
    pub value: String,
    pub effect: TaintEffect,
}

/// A worker node of a kind cluster: the pool it belongs to (as an AKS node pool's
/// node), its extra labels and its taints, all applied when it joins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeSpec {
    /// The pool's name (AKS: lowercase letters and digits, starting with a letter,
    /// at most 12 characters). Labelled [`AGENTPOOL_LABEL`] and [`AGENTPOOL_LABEL_SHORT`].
    pub pool: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// What the kubelet reserves (`--system-reserved`) and how many Pods it takes
    /// (`--max-pods`), so the node's allocatable is a captured pool's size scaled (see
    /// [`preflight_core::sizing`]). Carried as the node's labels too, so a surge node
    /// of the pool joins with the same.
    pub size: Option<NodeSize>,
}

/// A worker's size: see [`NodeSpec::size`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeSize {
    pub reserved: preflight_core::sizing::Resources,
    pub max_pods: Option<u32>,
}

/// What each kind node's kubelet reports as its capacity: the machine's CPUs and
/// memory (the node containers share them, unlimited). `None` if `/proc` cannot say.
pub fn node_capacity() -> Option<preflight_core::sizing::Resources> {
    let cpus = std::fs::read_to_string("/proc/cpuinfo")
        .ok()?
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count() as u64;
    let kib = crate::runner::total_memory_kib()?;
    (cpus > 0).then_some(preflight_core::sizing::Resources {
        cpu_millis: cpus * 1000,
        memory_bytes: kib * 1024,
    })
}

/// Whether kind writes kubeadm's v1beta4 configuration for `version`, whose extra
/// arguments are lists of `name`/`value` rather than maps: kind v0.33 keeps v1beta3 up
/// to 1.35 (`pkg/cluster/internal/kubeadm/config.go`), though kubeadm has offered
/// v1beta4 since 1.31, and a patch in the other shape is refused by kubeadm init.
pub fn kind_writes_v1beta4(version: &Version) -> bool {
    (version.major, version.minor) >= (1, 36)
}

/// The labels a sized node carries its size in.
pub const RESERVED_CPU_LABEL: &str = "preflight.dev/system-reserved-cpu";
pub const RESERVED_MEMORY_LABEL: &str = "preflight.dev/system-reserved-memory";
pub const MAX_PODS_LABEL: &str = "preflight.dev/max-pods";

impl NodeSize {
    /// The size as labels (values a label allows: `1310m`, bytes, a count).
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::from([
            (
                RESERVED_CPU_LABEL.to_string(),
                format!("{}m", self.reserved.cpu_millis),
            ),
            (
                RESERVED_MEMORY_LABEL.to_string(),
                self.reserved.memory_bytes.to_string(),
            ),
        ]);
        if let Some(p) = self.max_pods {
            out.insert(MAX_PODS_LABEL.to_string(), p.to_string());
        }
        out
    }

    /// The size a node's labels carry, if it has one.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Option<NodeSize> {
        let cpu = labels.get(RESERVED_CPU_LABEL)?;
        let memory = labels.get(RESERVED_MEMORY_LABEL)?;
        Some(NodeSize {
            reserved: preflight_core::sizing::Resources {
                cpu_millis: cpu.strip_suffix('m').unwrap_or(cpu).parse().ok()?,
                memory_bytes: memory.parse().ok()?,
            },
            max_pods: labels.get(MAX_PODS_LABEL).and_then(|p| p.parse().ok()),
        })
    }

    /// The kubelet's arguments for it.
    pub fn kubelet_args(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![(
            "system-reserved",
            format!(
                "cpu={}m,memory={}",
                self.reserved.cpu_millis, self.reserved.memory_bytes
            ),
        )];
        if let Some(p) = self.max_pods {
            out.push(("max-pods", p.to_string()));
        }
        out
    }
}

impl NodeSpec {
    /// A worker of `pool` with no other labels and no taints.
    pub fn pool(pool: &str) -> NodeSpec {
        NodeSpec {
            pool: pool.into(),
            ..NodeSpec::default()
        }
    }

    /// Every label the node gets: the pool's two, then the spec's own (which win).
    pub fn node_labels(&self) -> BTreeMap<String, String> {
        let mut all = BTreeMap::from([
            (AGENTPOOL_LABEL.to_string(), self.pool.clone()),
            (AGENTPOOL_LABEL_SHORT.to_string(), self.pool.clone()),
        ]);
        all.extend(self.labels.clone());
        all.extend(self.size.iter().flat_map(NodeSize::labels));
        all
    }

    /// Why kind or the kubelet would refuse this spec, checked before anything is
    /// created: AKS's pool-name rule; label keys and values, taint keys and values
    /// with only the characters Kubernetes allows (so they need no YAML escaping);
    /// no label in the `kubernetes.io`/`k8s.io` namespaces, which the kubelet refuses
    /// to register itself with (`--node-labels`) except for a few it owns.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let p = &self.pool;
        if p.is_empty()
            || p.len() > 12
            || !p.starts_with(|c: char| c.is_ascii_lowercase())
            || !p
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            out.push(format!(
                "pool name {p:?}: AKS pool names are 1-12 lowercase letters and digits, starting with a letter"
            ));
        }
        let plain = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        };
        for (k, v) in &self.labels {
            if k.is_empty() || !plain(k) || !plain(v) || v.contains('/') {
                out.push(format!("label {k}={v}: not a valid label"));
            }
            let domain = k.split_once('/').map(|(d, _)| d).unwrap_or("");
            if ["kubernetes.io", "k8s.io"]
                .iter()
                .any(|d| domain == *d || domain.ends_with(&format!(".{d}")))
            {
                out.push(format!(
                    "label {k}: the kubelet refuses to register with labels in the kubernetes.io and k8s.io namespaces; label the node through the API instead"
                ));
            }
        }
        for t in &self.taints {
            if t.key.is_empty() || !plain(&t.key) || !plain(&t.value) || t.value.contains('/') {
                out.push(format!("taint {}={}: not a valid taint", t.key, t.value));
            }
        }
        out
    }
}

/// kind's cluster configuration: one control-plane node whose API server writes an
/// audit log into `audit_dir` (on the host) and closes its watches when it stops, and
/// a controller manager that logs the garbage collector's work (`--v=2`, as on local
/// control planes), then one worker per entry of `workers`, in order (kind names them
/// `<cluster>-worker`, `-worker2`, ...). A worker's labels go through kind's `labels:`
/// (kubeadm's `node-labels` at join); its taints through a `JoinConfiguration` patch of
/// that node alone (`nodeRegistration.taints`: the kubelet registers with them, so
/// nothing is scheduled before they hold). The patches take the shape of the kubeadm
/// configuration kind writes ([`kind_writes_v1beta4`]): `extraArgs` are maps in v1beta3,
/// lists in v1beta4.
pub fn cluster_config(version: &Version, audit_dir: &Path, workers: &[NodeSpec]) -> String {
    let list_args = kind_writes_v1beta4(version);
    let args = |pairs: &[(&str, &str)]| -> String {
        if list_args {
            pairs
                .iter()
                .map(|(k, v)| format!("\n          - name: {k}\n            value: \"{v}\""))
                .collect()
        } else {
            pairs
                .iter()
                .map(|(k, v)| format!("\n          {k}: \"{v}\""))
                .collect()
        }
    };
    let apiserver = args(&[
        (
            "audit-policy-file",
            &format!("{AUDIT_DIR_IN_NODE}/policy.yaml"),
        ),
        ("audit-log-path", &format!("{AUDIT_DIR_IN_NODE}/audit.log")),
        ("audit-log-maxsize", "200"),
        // On SIGTERM the API server closes its watches within this time; without it
        // (the default, 0) it waits for them up to its 60 s request timeout, so the
        // kubelet kills it only after the static Pod's 30 s grace period, and every
        // in-place upgrade (`kubeadm upgrade apply` replaces the API server's Pod)
        // waits that long with no API server at all.
        ("shutdown-watch-termination-grace-period", "5s"),
    ]);
    let kcm = args(&[("v", "2")]);
    let mut nodes = String::new();
    for w in workers {
        nodes.push_str("  - role: worker\n    labels:\n");
        for (k, v) in w.node_labels() {
            nodes.push_str(&format!("      {k}: \"{v}\"\n"));
        }
        // kubeadm v1beta3's `kubeletExtraArgs` is a map a worker's strategic patch
        // merges into kind's own (node IP, labels, provider id); v1beta4's is a list
        // such a patch would replace, so each argument is appended with a JSON 6902
        // patch instead.
        let map_size = w.size.filter(|_| !list_args);
        if !w.taints.is_empty() || map_size.is_some() {
            nodes.push_str(
                "    kubeadmConfigPatches:\n      - |\n        kind: JoinConfiguration\n        nodeRegistration:\n",
            );
        }
        if let Some(size) = map_size {
            nodes.push_str("          kubeletExtraArgs:\n");
            for (k, v) in size.kubelet_args() {
                nodes.push_str(&format!("            {k}: \"{v}\"\n"));
            }
        }
        if !w.taints.is_empty() {
            nodes.push_str("          taints:\n");
            for t in &w.taints {
                nodes.push_str(&format!(
                    "            - key: \"{}\"\n              value: \"{}\"\n              effect: \"{}\"\n",
                    t.key,
                    t.value,
                    t.effect.as_str()
                ));
            }
        }
        if let Some(size) = w.size.filter(|_| list_args) {
            nodes.push_str(
                "    kubeadmConfigPatchesJSON6902:\n      - group: kubeadm.k8s.io\n        version: v1beta4\n        kind: JoinConfiguration\n        patch: |\n",
            );
            for (k, v) in size.kubelet_args() {
                nodes.push_str(&format!(
                    "          - op: add\n            path: /nodeRegistration/kubeletExtraArgs/-\n            value: {{name: \"{k}\", value: \"{v}\"}}\n"
                ));
            }
        }
    }
    format!(
        "kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
    extraMounts:
      - hostPath: {audit}
        containerPath: {AUDIT_DIR_IN_NODE}
{nodes}kubeadmConfigPatches:
  - |
    kind: ClusterConfiguration
    apiServer:
      extraArgs:{apiserver}
      extraVolumes:
        - name: preflight-audit
          hostPath: {AUDIT_DIR_IN_NODE}
          mountPath: {AUDIT_DIR_IN_NODE}
          readOnly: false
          pathType: DirectoryOrCreate
    controllerManager:
      extraArgs:{kcm}
",
        audit = audit_dir.display()
    )
}

/// The node names kind gives `count` workers of cluster `name`, in the order of the
/// configuration's workers.
pub fn worker_names(name: &str, count: usize) -> Vec<String> {
    (1..=count)
        .map(|i| {
            if i == 1 {
                format!("{name}-worker")
            } else {
                format!("{name}-worker{i}")
            }
        })
        .collect()
}

pub fn create_args(name: &str, image: &str, kubeconfig: &Path, config: &Path) -> Vec<String> {
    vec![
        "create".into(),
        "cluster".into(),
        format!("--name={name}"),
        format!("--image={image}"),
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--config={}", config.display()),
        "--wait=180s".into(),
    ]
}

pub fn delete_args(name: &str) -> Vec<String> {
    vec!["delete".into(), "cluster".into(), format!("--name={name}")]
}

/// `docker exec` arguments that restart the controller manager's container (the
/// kubelet starts a new one from its static pod).
pub fn restart_controller_manager_args(name: &str) -> Vec<String> {
    vec![
        "exec".into(),
        format!("{name}-control-plane"),
        "sh".into(),
        "-c".into(),
        // crictl's own RPC deadline is 2 s, which a loaded node misses while the
        // container stops (`DeadlineExceeded`): give the stop 30 s.
        "crictl --timeout 30s stop $(crictl ps -q --name kube-controller-manager)".into(),
    ]
}

/// The bound on `kind create cluster`: its own `--wait=180s` for the control plane,
/// plus creating the node container and booting it.
const CREATE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// The bound on `kind delete cluster` (Docker stops and removes the node).
const DELETE_TIMEOUT: Duration = Duration::from_secs(2 * 60);
/// The bound on every node of a multi-node cluster being Ready after `kind create`
/// (whose `--wait` covers the control plane only): the workers' kubelets join and the
/// CNI writes their Pod network.
const NODES_READY_TIMEOUT: Duration = Duration::from_secs(300);
/// The bound on `kind load docker-image` (the image is copied into every node).
const LOAD_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// The bound on a `docker` query (`inspect`, `ps`, `logs`, `network inspect`,
/// `crictl ps` in the node): a Docker engine that does not answer in this time is hung.
const DOCKER_QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// The bound on a `docker exec` that stops a container in the node (`crictl stop`
/// waits out the container's grace period) or reads its logs.
const DOCKER_EXEC_TIMEOUT: Duration = Duration::from_secs(90);

/// A command's failure as the kind provider reports it: a program that cannot start
/// says what to install.
fn cluster_error(e: CommandError) -> ClusterError {
    match e {
        CommandError::Spawn { command, source } => {
            ClusterError::Unsupported(format!("cannot run `{command}` ({source}): {INSTALL_HINT}"))
        }
        CommandError::Failed {
            command,
            stderr_tail,
            ..
        } => ClusterError::Command {
            command,
            detail: stderr_tail.trim().to_string(),
        },
        other => ClusterError::External(other),
    }
}

/// Runs `program` with `args` within `timeout` from synchronous code (a `Drop`, a
/// blocking thread); its standard output.
fn run(
    program: impl AsRef<OsStr>,
    args: &[String],
    timeout: Duration,
) -> Result<String, ClusterError> {
    let out = command::blocking::run(command::std_command(program, args), timeout)
        .map_err(cluster_error)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// [`run`] for async code.
async fn run_async(
    program: impl AsRef<OsStr>,
    args: &[String],
    timeout: Duration,
) -> Result<String, ClusterError> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args);
    let out = command::run(cmd, timeout).await.map_err(cluster_error)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn docker(args: &[String], timeout: Duration) -> Result<String, ClusterError> {
    run("docker", args, timeout)
}

async fn docker_async(args: &[String], timeout: Duration) -> Result<String, ClusterError> {
    run_async("docker", args, timeout).await
}

/// Checks that a Docker engine answers, with an actionable message if not (the same
/// check the node-image build makes).
pub async fn check_docker() -> Result<(), ClusterError> {
    let args = crate::components::kind_image::DOCKER_INFO_ARGS.map(String::from);
    run_async("docker", &args, DOCKER_QUERY_TIMEOUT)
        .await
        .map(drop)
        .map_err(|e| {
            ClusterError::Unsupported(
                crate::errors::ComponentsError::Docker(e.to_string()).to_string(),
            )
        })
}

/// [`KindCluster::dead_components`] of the node container `node`.
pub async fn node_dead(node: &str) -> Vec<String> {
    let state = docker_async(
        &[
            "inspect".into(),
            "-f".into(),
            "{{.State.Status}} {{.State.ExitCode}}".into(),
            node.to_string(),
        ],
        DOCKER_QUERY_TIMEOUT,
    )
    .await;
    let (status, code) = match &state {
        Ok(s) => {
            let mut w = s.split_whitespace();
            (
                w.next().unwrap_or("").to_string(),
                w.next().unwrap_or("?").to_string(),
            )
        }
        Err(e) => (
            format!("gone ({})", crate::errors::summary_line(&e.to_string())),
            "?".into(),
        ),
    };
    if status == "running" {
        return Vec::new();
    }
    let logs = docker_async(
        &[
            "logs".into(),
            "--tail".into(),
            "20".into(),
            node.to_string(),
        ],
        DOCKER_QUERY_TIMEOUT,
    )
    .await
    .unwrap_or_default();
    let last = crate::errors::first_meaningful_line(&logs).unwrap_or_default();
    vec![format!(
        "the kind node container {node} is {status} (exit code {code}) during the run: {last}"
    )]
}

/// Strips the CRI log prefix (`2026-11-30T02:00:00.1Z stderr F `) from a container log line.
pub fn cri_log_line(line: &str) -> &str {
    let mut parts = line.splitn(4, ' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(_time), Some("stdout" | "stderr"), Some("F" | "P"), Some(rest)) => rest,
        _ => line,
    }
}

/// A kind cluster, deleted when dropped.
pub struct KindCluster {
    name: String,
    kind: PathBuf,
    version: Version,
    helm: PathBuf,
    dir: tempfile::TempDir,
    client: kube::Client,
    gateway: IpAddr,
    sentinel: Option<Sentinel>,
    keep: bool,
    /// The worker nodes' names: kind's, then surge nodes added, less those removed.
    workers: Vec<String>,
    /// The node image the control plane runs now (the target's after an upgrade); it
    /// names the image of another version (see [`KindCluster::node_image_for`]).
    image: String,
    /// Images loaded into the nodes after creation, imported into added nodes too.
    load_images: Vec<String>,
}

impl std::fmt::Debug for KindCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KindCluster")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish()
    }
}

/// How to create a kind cluster.
#[derive(Clone, Debug)]
pub struct KindConfig {
    pub name: String,
    pub version: Version,
    pub image: String,
    /// The kind CLI.
    pub kind: PathBuf,
    pub helm: PathBuf,
    /// Images to load into the node after creation (`kind load docker-image`), e.g. the
    /// workload image when the node image is not preflight's (which has it preloaded).
    pub load_images: Vec<String>,
    /// Keep the run's directory (audit log, control-plane logs, webhook records).
    pub keep: bool,
    /// Worker nodes beside the control plane, from the same node image (none: one
    /// node, which runs every Pod, as before).
    pub workers: Vec<NodeSpec>,
}

impl KindConfig {
    /// The configuration of cluster `name` running `start`'s version, from preflight's
    /// node image (or `image_template`, with the workload image loaded into it).
    pub fn for_components(
        name: String,
        start: &crate::components::Components,
        image_template: Option<&str>,
        kind: PathBuf,
        keep: bool,
    ) -> KindConfig {
        let image = node_image(&start.version, image_template);
        KindConfig {
            name,
            version: start.version.clone(),
            load_images: if image.starts_with("preflight/node:") {
                Vec::new()
            } else {
                vec![crate::components::kind_image::WORKLOAD_IMAGE.to_string()]
            },
            image,
            kind,
            helm: start.helm.clone(),
            keep,
            workers: Vec::new(),
        }
    }
}

impl KindCluster {
    /// [`KindCluster::start`], shown as a step of `progress`.
    pub async fn create(
        config: KindConfig,
        progress: &crate::progress::Progress,
    ) -> Result<KindCluster, ClusterError> {
        let step = progress.step(format!(
            "creating kind cluster {} ({})",
            config.name, config.image
        ));
        let c = KindCluster::start(config).await;
        match &c {
            Ok(_) => step.done(""),
            Err(_) => step.fail(""),
        };
        c
    }
}

impl KindCluster {
    pub async fn start(config: KindConfig) -> Result<KindCluster, ClusterError> {
        crate::init_crypto();
        let problems: Vec<String> = config.workers.iter().flat_map(NodeSpec::problems).collect();
        if !problems.is_empty() {
            return Err(ClusterError::Unsupported(format!(
                "kind cluster {}: {}",
                config.name,
                problems.join("; ")
            )));
        }
        check_docker().await?;
        let name = config.name.clone();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir()
            .map_err(|e| {
                ClusterError::io("creating a temporary directory", std::env::temp_dir(), e)
            })?;
        let audit = dir.path().join("audit");
        std::fs::create_dir_all(&audit).map_err(|e| ClusterError::io("creating", &audit, e))?;
        let policy = audit.join("policy.yaml");
        std::fs::write(&policy, super::AUDIT_POLICY)
            .map_err(|e| ClusterError::io("writing", &policy, e))?;
        let kind_config = dir.path().join("kind.yaml");
        std::fs::write(
            &kind_config,
            cluster_config(&config.version, &audit, &config.workers),
        )
        .map_err(|e| ClusterError::io("writing", &kind_config, e))?;
        // If the harness dies (SIGKILL) the sentinel deletes the cluster, twice: the
        // Docker daemon may still be creating a node that a killed `kind create` asked for.
        let on_death = vec![
            "sh".to_string(),
            "-c".into(),
            SENTINEL_DELETE.into(),
            config.kind.display().to_string(),
            name.clone(),
        ];
        let sentinel =
            Sentinel::start_with(&dir.path().join(".pgids"), Some(dir.path()), &on_death)?;
        let kubeconfig = dir.path().join("kubeconfig");
        // From here on, dropping the guard (an error, Ctrl-C, SIGTERM: the future is
        // dropped) stops a `kind create` still running and deletes what it made.
        let mut cluster_guard = KindDelete {
            kind: config.kind.clone(),
            name: name.clone(),
            create: None,
        };
        let create = create_args(&name, &config.image, &kubeconfig, &kind_config);
        let pgids = dir.path().join(".pgids");
        let mut cmd = tokio::process::Command::new(&config.kind);
        cmd.args(&create);
        let out = command::output_reporting_group(cmd, CREATE_TIMEOUT, |pgid| {
            cluster_guard.create = Some(pgid as i32);
            // The sentinel stops it too if the harness is killed outright.
            let _ = std::fs::write(&pgids, format!("{pgid}\n"));
        })
        .await;
        // The create has ended (or was stopped): its process group id may be reused,
        // so the sentinel must not signal it any more.
        let _ = std::fs::write(&pgids, "");
        let out = match out {
            Ok(out) => {
                cluster_guard.create = None;
                out
            }
            // Stopped at its timeout: the guard deletes what it made, as after Ctrl-C.
            Err(e) => return Err(cluster_error(e)),
        };
        if !out.status.success() {
            return Err(ClusterError::Command {
                command: format!("kind {}", create.join(" ")),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        for image in &config.load_images {
            let args = vec![
                "load".into(),
                "docker-image".into(),
                image.clone(),
                format!("--name={name}"),
            ];
            run_async(&config.kind, &args, LOAD_TIMEOUT).await?;
        }
        let client = super::local::client_from_kubeconfig(&kubeconfig, None).await?;
        let workers = worker_names(&name, config.workers.len());
        if !workers.is_empty() {
            // kind's `--wait` covers the control-plane node only.
            wait_nodes_ready(&client, 1 + workers.len(), NODES_READY_TIMEOUT).await?;
        }
        // The sample webhook server listens on the kind network's gateway, which the
        // nodes (and so the API server) reach.
        let gateway = docker_async(
            &[
                "network".into(),
                "inspect".into(),
                "kind".into(),
                "--format".into(),
                "{{range .IPAM.Config}}{{.Gateway}} {{end}}".into(),
            ],
            DOCKER_QUERY_TIMEOUT,
        )
        .await?
        .split_whitespace()
        .find_map(|g| g.parse::<IpAddr>().ok().filter(IpAddr::is_ipv4))
        .ok_or_else(|| {
            ClusterError::Unsupported(
                "the kind network has no IPv4 gateway for the webhook server to listen on".into(),
            )
        })?;
        cluster_guard.name.clear();
        Ok(KindCluster {
            name,
            kind: config.kind,
            version: config.version,
            helm: config.helm,
            dir,
            client,
            gateway,
            sentinel: Some(sentinel),
            keep: config.keep,
            workers,
            image: config.image,
            load_images: config.load_images,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }
    pub fn version(&self) -> &Version {
        &self.version
    }
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }
    pub fn helm(&self) -> &Path {
        &self.helm
    }
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn gateway(&self) -> IpAddr {
        self.gateway
    }
    /// The API server's audit log (JSON lines), on the host.
    pub fn audit_log(&self) -> PathBuf {
        self.dir.path().join("audit/audit.log")
    }

    pub fn node(&self) -> String {
        format!("{}-control-plane", self.name)
    }

    /// The worker nodes' names: in the order of [`KindConfig::workers`], then those
    /// [`KindCluster::add_node`] added, less those [`KindCluster::remove_node`] removed.
    pub fn workers(&self) -> &[String] {
        &self.workers
    }

    pub async fn impersonating(&self, user: &str) -> Result<kube::Client, ClusterError> {
        super::local::client_from_kubeconfig_as(&self.kubeconfig(), None, Some(user)).await
    }

    /// The node container, when it is no longer running (stopped, killed, removed):
    /// its state, exit code and last log line. Everything of the cluster ran in it.
    /// Synchronous (two `docker` queries under their timeouts, through
    /// [`command::blocking`], which hands a runtime worker's other tasks on meanwhile).
    pub async fn dead_components(&self) -> Vec<String> {
        node_dead(&self.node()).await
    }

    /// Every log line a control-plane component's containers wrote on the node
    /// (restarts included), without the CRI prefix.
    pub async fn component_log(&self, component: &str) -> Result<String, ClusterError> {
        let text = docker_async(
            &[
                "exec".into(),
                self.node(),
                "sh".into(),
                "-c".into(),
                format!("cat /var/log/pods/kube-system_{component}-*/{component}/*.log"),
            ],
            DOCKER_EXEC_TIMEOUT,
        )
        .await?;
        Ok(text
            .lines()
            .map(cri_log_line)
            .collect::<Vec<_>>()
            .join("\n"))
    }

    /// Stops the API server's container; the kubelet starts a fresh one from its static
    /// pod. Waits (polling, with a deadline) until a new container runs and the API
    /// answers again.
    pub async fn restart_apiserver(&mut self) -> Result<(), ClusterError> {
        let node = self.node();
        let running = vec![
            "exec".to_string(),
            node.clone(),
            "crictl".into(),
            "ps".into(),
            "-q".into(),
            "--state".into(),
            "running".into(),
            "--name".into(),
            "kube-apiserver".into(),
        ];
        let before = docker_async(&running, DOCKER_QUERY_TIMEOUT)
            .await?
            .trim()
            .to_string();
        docker_async(
            &[
                "exec".to_string(),
                node.clone(),
                "crictl".into(),
                // See `restart_controller_manager_args`: crictl's 2 s RPC deadline.
                "--timeout".into(),
                "30s".into(),
                "stop".into(),
                before.clone(),
            ],
            DOCKER_EXEC_TIMEOUT,
        )
        .await?;
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
            kube::Api::all(self.client.clone());
        while std::time::Instant::now() < deadline {
            let now = docker_async(&running, DOCKER_QUERY_TIMEOUT)
                .await
                .map(|o| o.trim().to_string())
                .unwrap_or_default();
            if !now.is_empty()
                && now != before
                && namespaces
                    .list(&kube::api::ListParams::default().limit(1))
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(ClusterError::Unsupported(format!(
            "kube-apiserver on {node} did not come back within 120 s after its container {before} was stopped"
        )))
    }

    /// Stops the controller manager's container; the kubelet starts a fresh one. Waits
    /// (polling, with a deadline) until the new one leads and its garbage collector has
    /// started: kind's controller manager uses leader election, and a fresh one starts
    /// no controller until it holds the `kube-controller-manager` Lease.
    pub async fn restart_controller_manager(&mut self) -> Result<(), ClusterError> {
        let node = self.node();
        let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
            kube::Api::namespaced(self.client.clone(), "kube-system");
        let holder = || async {
            leases
                .get_opt("kube-controller-manager")
                .await
                .ok()
                .flatten()
                .and_then(|l| l.spec)
                .and_then(|s| s.holder_identity)
        };
        let before = holder().await;
        docker_async(
            &restart_controller_manager_args(&self.name),
            DOCKER_EXEC_TIMEOUT,
        )
        .await?;
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        let mut leading = false;
        // The new garbage collector has started once it waits for its informers (a few
        // seconds after taking the lead, after discovery).
        let started = vec![
            "exec".to_string(),
            node.clone(),
            "sh".into(),
            "-c".into(),
            format!(
                "crictl logs $(crictl ps -q --state running --name kube-controller-manager) 2>&1 | grep -c '{}'",
                super::metrics::GC_WAITING
            ),
        ];
        while std::time::Instant::now() < deadline {
            if !leading {
                let now = holder().await;
                leading = now.is_some() && now != before;
            }
            if leading
                && docker_async(&started, DOCKER_QUERY_TIMEOUT)
                    .await
                    .is_ok_and(|n| n.trim().parse::<u32>().unwrap_or(0) > 0)
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(ClusterError::Unsupported(format!(
            "kube-controller-manager on {node} did not restart its garbage collector within 120 s (leading again: {leading}; Lease kube-system/kube-controller-manager was held by {before:?})"
        )))
    }
}

/// Waits (polling, with a deadline) until `count` Nodes exist and every one is Ready.
async fn wait_nodes_ready(
    client: &kube::Client,
    count: usize,
    timeout: Duration,
) -> Result<(), ClusterError> {
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let deadline = std::time::Instant::now() + timeout;
    let mut seen = String::from("no answer yet");
    while std::time::Instant::now() < deadline {
        match tokio::time::timeout(
            DOCKER_QUERY_TIMEOUT,
            nodes.list(&kube::api::ListParams::default()),
        )
        .await
        {
            Ok(Ok(list)) => {
                let ready: Vec<String> = list
                    .items
                    .iter()
                    .map(|n| {
                        let ok = n
                            .status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|c| {
                                c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                            });
                        format!(
                            "{} {}",
                            n.metadata.name.as_deref().unwrap_or("?"),
                            if ok { "Ready" } else { "NotReady" }
                        )
                    })
                    .collect();
                if list.items.len() >= count && ready.iter().all(|r| r.ends_with(" Ready")) {
                    return Ok(());
                }
                seen = ready.join(", ");
            }
            Ok(Err(e)) => seen = format!("listing nodes: {e}"),
            Err(_) => seen = "listing nodes: no answer".into(),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(ClusterError::Unsupported(format!(
        "not all {count} nodes of the kind cluster were Ready within {timeout:?}: {seen}"
    )))
}

/// Deletes a half-created cluster unless its name was cleared (handed to a
/// KindCluster), first stopping a `kind create` that still runs (its process group).
struct KindDelete {
    kind: PathBuf,
    name: String,
    create: Option<i32>,
}

impl Drop for KindDelete {
    fn drop(&mut self) {
        if self.name.is_empty() {
            return;
        }
        // A create still registered was interrupted (dropped or timed out); its group
        // is stopped already when its future was dropped, this only makes sure.
        let interrupted = self.create.take().inspect(|pgid| {
            use nix::sys::signal::{Signal, killpg};
            let _ = killpg(nix::unistd::Pid::from_raw(*pgid), Signal::SIGKILL);
        });
        let (kind, name) = (&self.kind, &self.name);
        command::blocking::unblocked(|| delete_leaving_nothing(kind, name, interrupted.is_some()));
    }
}

/// [`delete_cluster`]; after an interrupted `kind create`, again until nothing of the
/// cluster has appeared for a few seconds.
fn delete_leaving_nothing(kind: &Path, name: &str, interrupted: bool) {
    delete_cluster(kind, name);
    if !interrupted {
        return;
    }
    // The Docker daemon may still be creating a node that the killed `kind create`
    // asked for: delete again once nothing of the cluster is left, watching for a
    // few seconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut quiet_since = std::time::Instant::now();
    while std::time::Instant::now() < deadline && quiet_since.elapsed() < Duration::from_secs(5) {
        if !node_containers(name).is_empty() {
            delete_cluster(kind, name);
            quiet_since = std::time::Instant::now();
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `kind delete cluster`, checked: while node containers remain (up to three tries),
/// thaw what keeps them alive and delete again. On cgroup v1 hosts a runc inside the
/// node can leave a Pod's freezer cgroup FROZEN; its tasks then never receive SIGKILL,
/// and Docker answers "did not receive an exit event" for ever.
/// What the sentinel runs when the harness died without tearing down (`$0` is kind,
/// `$1` the cluster): `kind delete`, then, polling for at most 120 s, removes every
/// container labelled as the cluster's node until none has appeared for three checks
/// in a row. The Docker engine may finish creating a node container that a killed
/// `kind create` asked for after the first delete ran ("Created" containers).
const SENTINEL_DELETE: &str = r#"k="$0"; n="$1"; end=$(( $(date +%s) + 120 )); clean=0
while [ "$(date +%s)" -lt "$end" ]; do
  "$k" delete cluster --name="$n" >/dev/null 2>&1
  ids=$(docker ps -aq --filter "label=io.x-k8s.kind.cluster=$n")
  if [ -z "$ids" ]; then
    clean=$((clean + 1)); [ "$clean" -ge 3 ] && exit 0
  else
    clean=0; docker rm -f -v $ids >/dev/null 2>&1
  fi
  sleep 2
done"#;

pub fn delete_cluster(kind: &Path, name: &str) {
    for _ in 0..3 {
        let _ = run(kind, &delete_args(name), DELETE_TIMEOUT);
        let left = node_containers(name);
        if left.is_empty() {
            return;
        }
        for id in &left {
            thaw(&Path::new("/sys/fs/cgroup/freezer/docker").join(id));
        }
    }
}

/// Writes THAWED into every FROZEN `freezer.state` under `dir` (cgroup v1).
fn thaw(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let state = dir.join("freezer.state");
    if std::fs::read_to_string(&state).is_ok_and(|s| s.trim() == "FROZEN") {
        let _ = std::fs::write(&state, "THAWED");
    }
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            thaw(&e.path());
        }
    }
}

/// The containers of a kind cluster (kind labels its nodes with the cluster's name),
/// by full id.
fn node_containers(name: &str) -> Vec<String> {
    docker(
        &[
            "ps".into(),
            "-aq".into(),
            "--no-trunc".into(),
            "--filter".into(),
            format!("label=io.x-k8s.kind.cluster={name}"),
        ],
        DOCKER_QUERY_TIMEOUT,
    )
    .map(|out| out.split_whitespace().map(str::to_string).collect())
    .unwrap_or_default()
}

impl Drop for KindCluster {
    fn drop(&mut self) {
        // On a thread of its own: the drop may happen on a runtime worker thread.
        let (kind, name) = (&self.kind, &self.name);
        command::blocking::unblocked(|| delete_cluster(kind, name));
        if let Some(mut s) = self.sentinel.take() {
            s.disarm();
        }
        if self.keep {
            // Swap in an empty directory so the real one outlives the handle.
            if let Ok(empty) = tempfile::tempdir() {
                let _ = std::mem::replace(&mut self.dir, empty).keep();
            }
        }
    }
}

/// kind clusters of preflight (named `preflight-...`) that are still there.
pub fn leftover_clusters(kind: &Path) -> Vec<String> {
    run(
        kind,
        &["get".into(), "clusters".into()],
        DOCKER_QUERY_TIMEOUT,
    )
    .map(|out| {
        out.lines()
            .filter(|l| l.starts_with("preflight-"))
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_names() {
        let v = Version::new(1, 30, 14);
        assert_eq!(node_image(&v, None), "preflight/node:v1.30.14");
        assert_eq!(
            node_image(&v, Some("kindest/node:{version}")),
            "kindest/node:v1.30.14"
        );
        let a = cluster_name("abcde1", "source");
        assert_eq!(a, "preflight-abcde1-source");
        assert_ne!(
            a,
            cluster_name("abcde2", "source"),
            "runs never share a name"
        );
        assert!(cluster_name(&"x".repeat(80), "target").len() <= 40);
        assert_eq!(
            create_args(
                "n",
                "preflight/node:v1.30.14",
                Path::new("/run/kc"),
                Path::new("/run/kind.yaml")
            ),
            [
                "create",
                "cluster",
                "--name=n",
                "--image=preflight/node:v1.30.14",
                "--kubeconfig=/run/kc",
                "--config=/run/kind.yaml",
                "--wait=180s"
            ]
        );
        assert_eq!(delete_args("n"), ["delete", "cluster", "--name=n"]);
        assert_eq!(restart_controller_manager_args("n")[1], "n-control-plane");
    }

    #[test]
    fn cluster_config_follows_kubeadm_api_versions() {
        let old = cluster_config(&Version::new(1, 30, 14), Path::new("/run/audit"), &[]);
        assert!(old.contains("hostPath: /run/audit"), "{old}");
        assert!(
            old.contains("audit-log-path: \"/var/log/preflight-audit/audit.log\""),
            "{old}"
        );
        assert!(old.contains("v: \"2\""), "{old}");
        assert!(
            old.contains("shutdown-watch-termination-grace-period: \"5s\""),
            "{old}"
        );
        // Kind writes v1beta3 up to 1.35, kubeadm's v1beta4 after.
        let v135 = cluster_config(&Version::new(1, 35, 0), Path::new("/run/audit"), &[]);
        assert!(v135.contains("v: \"2\""), "{v135}");
        let new = cluster_config(&Version::new(1, 36, 0), Path::new("/run/audit"), &[]);
        assert!(new.contains("- name: audit-log-path"), "{new}");
        assert!(
            new.contains(
                "- name: shutdown-watch-termination-grace-period\n            value: \"5s\""
            ),
            "{new}"
        );
        assert!(new.contains("- name: v\n            value: \"2\""), "{new}");
    }

    #[test]
    fn no_workers_keeps_the_single_node_cluster() {
        let one = cluster_config(&Version::new(1, 30, 14), Path::new("/run/audit"), &[]);
        assert_eq!(one.matches("- role:").count(), 1, "{one}");
        assert!(!one.contains("worker"), "{one}");
        assert!(!one.contains("JoinConfiguration"), "{one}");
        assert!(worker_names("c", 0).is_empty());
    }

    #[test]
    fn workers_join_with_their_pool_labels_and_taints() {
        let mut b = NodeSpec::pool("nodepool2");
        b.labels.insert("team".into(), "web".into());
        b.taints.push(Taint {
            key: "dedicated".into(),
            value: "web".into(),
            effect: TaintEffect::NoSchedule,
        });
        let workers = [NodeSpec::pool("nodepool1"), b];
        assert!(workers.iter().all(|w| w.problems().is_empty()));
        let text = cluster_config(&Version::new(1, 30, 14), Path::new("/run/audit"), &workers);
        insta::assert_snapshot!(text);
        assert_eq!(text.matches("- role: worker").count(), 2, "{text}");
        // The taint patch belongs to the second worker alone, and the cluster-wide
        // patch list still follows the nodes.
        let second = text.rfind("- role: worker").unwrap();
        assert!(text.find("JoinConfiguration").unwrap() > second, "{text}");
        assert!(
            text.contains("\nkubeadmConfigPatches:")
                || text.contains(
                    "
kubeadmConfigPatches:
  - |
    kind: ClusterConfiguration"
                ),
            "{text}"
        );
        assert_eq!(
            worker_names("preflight-x", 2),
            ["preflight-x-worker", "preflight-x-worker2"]
        );
        // The same shape at v1beta4 (1.31+): only extraArgs differ.
        let new = cluster_config(&Version::new(1, 31, 0), Path::new("/run/audit"), &workers);
        assert_eq!(new.matches("- role: worker").count(), 2, "{new}");
        assert!(new.contains("effect: \"NoSchedule\""), "{new}");
    }

    #[test]
    fn node_specs_that_kind_or_the_kubelet_would_refuse_are_caught() {
        assert!(NodeSpec::pool("nodepool1").problems().is_empty());
        for bad in ["", "Pool", "1pool", "pool-a", "averyveryverylongpool"] {
            assert_eq!(NodeSpec::pool(bad).problems().len(), 1, "{bad:?}");
        }
        let mut s = NodeSpec::pool("web");
        s.labels
            .insert("node-role.kubernetes.io/worker".into(), "".into());
        s.labels.insert("ok".into(), "a b".into());
        s.taints.push(Taint {
            key: "k\"".into(),
            value: String::new(),
            effect: TaintEffect::NoExecute,
        });
        let p = s.problems();
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].contains("kubelet refuses"), "{p:?}");
        // The spec's own labels win over the pool's.
        let mut o = NodeSpec::pool("web");
        o.labels.insert("agentpool".into(), "other".into());
        assert_eq!(o.node_labels()["agentpool"], "other");
        assert_eq!(o.node_labels()[AGENTPOOL_LABEL], "web");
    }

    #[test]
    fn cri_prefix_is_stripped() {
        assert_eq!(
            cri_log_line("2026-11-30T02:00:00.123Z stderr F E1130 02:00:00 gc error"),
            "E1130 02:00:00 gc error"
        );
        assert_eq!(cri_log_line("plain line"), "plain line");
    }
}
