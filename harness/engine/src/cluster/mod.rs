//! Clusters to exercise: a guard object per cluster, in the testcontainers style.
//! Creating one returns a handle with a client and a kubeconfig; dropping it (or
//! Ctrl-C, or an error) tears down what preflight created.
//!
//! * [`local`]: etcd + kube-apiserver + kube-controller-manager as child processes
//!   (the default, and what the tests use);
//! * [`kind`]: a kind cluster per run (needs Docker; exercised by the nightly workflow);
//! * [`existing`]: a cluster from a kubeconfig, shared with others, where preflight is
//!   a careful guest.

pub mod existing;
pub mod heartbeat;
pub mod kind;
pub mod local;
pub mod metrics;
/// Certificates (kept at the crate root: the webhook server signs with them too).
pub use crate::pki;
pub mod ports;
pub mod process;
pub mod state;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

pub use existing::ExistingCluster;
pub use kind::{KindCluster, KindConfig, NodeSize, NodeSpec, Taint, TaintEffect};
pub use local::{LocalCluster, LocalConfig};

use crate::components::{Components, Version};

/// The audit policy of the clusters preflight starts (local and kind): every DELETE
/// with who sent it, its DeleteOptions (`Request` level: a dry run says so only there
/// when the client sends it in the body, as kube-rs does) and the API server's answer,
/// which names a refusing webhook. This is how a leftover's cause is read from the
/// cluster rather than guessed.
pub const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Request
    verbs: [delete, deletecollection]
  - level: None
";
use crate::errors::ClusterError;

/// Which provider runs the clusters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    #[default]
    Local,
    Kind,
    Kubeconfig,
}

/// A cluster of any provider.
#[derive(Debug)]
pub enum Cluster {
    /// Boxed: a local cluster holds its processes and certificates inline.
    Local(Box<LocalCluster>),
    Kind(KindCluster),
    Existing(ExistingCluster),
}

impl Cluster {
    pub fn client(&self) -> kube::Client {
        match self {
            Cluster::Local(c) => c.client(),
            Cluster::Kind(c) => c.client(),
            Cluster::Existing(c) => c.client(),
        }
    }

    /// The Kubernetes version running now.
    pub fn version(&self) -> &Version {
        match self {
            Cluster::Local(c) => c.version(),
            Cluster::Kind(c) => c.version(),
            Cluster::Existing(c) => c.version(),
        }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        match self {
            Cluster::Local(c) => c.kubeconfig().to_path_buf(),
            Cluster::Kind(c) => c.kubeconfig(),
            Cluster::Existing(c) => c.kubeconfig().to_path_buf(),
        }
    }

    /// The kubeconfig context helm should use (existing clusters only).
    pub fn context(&self) -> Option<String> {
        match self {
            Cluster::Existing(c) => c.context().map(String::from),
            _ => None,
        }
    }

    pub fn helm(&self) -> PathBuf {
        match self {
            Cluster::Local(c) => c.components().helm.clone(),
            Cluster::Kind(c) => c.helm().to_path_buf(),
            Cluster::Existing(c) => c.helm().to_path_buf(),
        }
    }

    /// A directory for the run's files, removed with the cluster.
    pub fn dir(&self) -> PathBuf {
        match self {
            Cluster::Local(c) => c.dir().to_path_buf(),
            Cluster::Kind(c) => c.dir().to_path_buf(),
            Cluster::Existing(c) => c.dir().to_path_buf(),
        }
    }

    /// Whether others use the cluster too (preflight then scopes and refuses).
    pub fn shared(&self) -> bool {
        matches!(self, Cluster::Existing(_))
    }

    pub async fn impersonating(&self, user: &str) -> Result<kube::Client, ClusterError> {
        match self {
            Cluster::Local(c) => c.impersonating(user).await,
            Cluster::Kind(c) => c.impersonating(user).await,
            Cluster::Existing(c) => c.impersonating(user).await,
        }
    }

    /// Restarts kube-apiserver (local: the process; kind: its static pod's container).
    pub async fn restart_apiserver(&mut self) -> Result<(), ClusterError> {
        match self {
            Cluster::Local(c) => c.restart_apiserver().await,
            Cluster::Kind(c) => c.restart_apiserver().await,
            Cluster::Existing(_) => Err(ClusterError::Unsupported(
                "restarting kube-apiserver affects the whole cluster: it needs the local or kind provider".into(),
            )),
        }
    }

    pub async fn restart_controller_manager(&mut self) -> Result<(), ClusterError> {
        match self {
            Cluster::Local(c) => c.restart_controller_manager().await,
            Cluster::Kind(c) => c.restart_controller_manager().await,
            Cluster::Existing(_) => Err(ClusterError::Unsupported(
                "restarting the controller manager affects the whole cluster: it needs the local or kind provider".into(),
            )),
        }
    }

    /// Saves the whole state (local control planes only: see
    /// [`LocalCluster::save_state`]); the components stay stopped until a restore.
    pub fn save_state(&mut self, name: &str) -> Result<local::SavedState, ClusterError> {
        match self {
            Cluster::Local(c) => c.save_state(name),
            _ => Err(ClusterError::Unsupported(
                "saving and restoring a cluster's state needs the local provider".into(),
            )),
        }
    }

    /// Starts again on a copy of a saved state (see [`LocalCluster::restore_state`]).
    pub async fn restore_state(
        &mut self,
        state: &local::SavedState,
        label: &str,
    ) -> Result<(), ClusterError> {
        match self {
            Cluster::Local(c) => c.restore_state(state, label).await,
            _ => Err(ClusterError::Unsupported(
                "saving and restoring a cluster's state needs the local provider".into(),
            )),
        }
    }

    /// Upgrades the control plane in place to `target`'s version (local: the API
    /// server and controller manager restart on the target's binaries; kind: `kubeadm
    /// upgrade apply` on the control-plane node, see [`KindCluster::upgrade_control_plane`]).
    pub async fn upgrade(&mut self, target: Components) -> Result<(), ClusterError> {
        match self {
            Cluster::Local(c) => c.upgrade(target).await,
            Cluster::Kind(c) => c.upgrade(target).await,
            Cluster::Existing(_) => Err(ClusterError::Unsupported(
                "an in-place upgrade affects the whole cluster: it needs the local or kind provider".into(),
            )),
        }
    }

    /// Everything a control-plane component (`kube-apiserver`,
    /// `kube-controller-manager`) logged, where preflight can read it: the local
    /// provider's log files, the kind node's container logs. `None` on a shared cluster.
    pub async fn component_log(&self, component: &str) -> Option<String> {
        match self {
            Cluster::Local(c) => tokio::fs::read_to_string(c.log_path(component)).await.ok(),
            Cluster::Kind(c) => c.component_log(component).await.ok(),
            Cluster::Existing(_) => None,
        }
    }

    /// The API server's audit log (JSON lines), where preflight configured one (local
    /// control planes and kind; a shared cluster's audit log is not preflight's).
    pub fn audit_log(&self) -> Option<PathBuf> {
        match self {
            Cluster::Local(c) => Some(c.audit_log()),
            Cluster::Kind(c) => Some(c.audit_log()),
            Cluster::Existing(_) => None,
        }
    }

    /// Where the garbage collector's work queues can be read (the local controller
    /// manager's `/metrics` on loopback); `None` elsewhere.
    pub fn gc_metrics(&self) -> Option<metrics::GcMetrics> {
        match self {
            Cluster::Local(c) => Some(metrics::GcMetrics::Url(c.controller_manager_metrics_url())),
            Cluster::Kind(c) => Some(metrics::GcMetrics::Node(c.node())),
            Cluster::Existing(_) => None,
        }
    }

    /// Whether the control plane's logs live in a container (kind), so a run keeps a
    /// copy of what it read beside its other records.
    pub fn logs_in_container(&self) -> bool {
        matches!(self, Cluster::Kind(_))
    }

    /// Whether a real kubelet runs Pods (kind) or nothing does (local control planes).
    pub fn has_kubelet(&self) -> bool {
        !matches!(self, Cluster::Local(_))
    }

    /// Where the sample webhook server listens, and the addresses its certificate
    /// must name.
    pub fn webhook_bind(&self) -> IpAddr {
        match self {
            Cluster::Local(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Cluster::Kind(c) => c.gateway(),
            Cluster::Existing(c) => c
                .webhook_address()
                .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        }
    }

    /// Control-plane components that died during the run: a local control plane's
    /// processes, a kind cluster's node container (a shared cluster's components are
    /// not preflight's to watch).
    pub async fn dead_components(&mut self) -> Vec<String> {
        match self {
            Cluster::Local(c) => c.dead_components(),
            Cluster::Kind(c) => c.dead_components().await,
            Cluster::Existing(_) => Vec::new(),
        }
    }

    /// What tells whether the control plane still runs, without holding the cluster:
    /// a step that waits on a dead API server (requests to an API server whose etcd
    /// died hang for minutes) is cut short by [`Liveness::until_dead`].
    pub fn liveness(&self) -> Liveness {
        match self {
            Cluster::Local(c) => Liveness::Processes(c.component_pids()),
            Cluster::Kind(c) => Liveness::KindNode(c.node()),
            Cluster::Existing(_) => Liveness::Unwatched,
        }
    }

    /// Tears down (same as dropping, but says so for local clusters).
    pub fn stop(self) {
        match self {
            Cluster::Local(c) => (*c).stop(),
            other => drop(other),
        }
    }
}

/// See [`Cluster::liveness`].
#[derive(Clone, Debug)]
pub enum Liveness {
    /// A local control plane's component processes.
    Processes(Vec<(&'static str, u32)>),
    /// A kind cluster's node container.
    KindNode(String),
    /// Nothing to watch (a shared cluster; a step that restarts components itself).
    Unwatched,
}

impl Liveness {
    /// Returns, with what died, once a watched component is gone; never returns for
    /// [`Liveness::Unwatched`]. Checks at once, then every half second (two seconds
    /// for a kind node, which costs a `docker inspect`).
    pub async fn until_dead(&self) -> String {
        loop {
            match self {
                Liveness::Processes(pids) => {
                    if let Some((name, pid)) = pids.iter().find(|(_, pid)| !process_alive(*pid)) {
                        return format!("{name} (pid {pid}) exited during the step");
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                Liveness::KindNode(node) => {
                    let dead = kind::node_dead(node).await;
                    if let Some(first) = dead.into_iter().next() {
                        return first;
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                }
                Liveness::Unwatched => std::future::pending::<()>().await,
            }
        }
    }
}

/// Whether `pid` runs (a zombie, exited but not yet reaped, does not).
fn process_alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    matches!(state, Some(s) if s != "Z" && s != "X")
}
