//! Clusters to exercise: a guard object per control plane, in the testcontainers
//! style. Creating one returns a handle with a client and a kubeconfig; dropping it
//! (or Ctrl-C, or an error) tears it down.
//!
//! * [`local`]: etcd + kube-apiserver + kube-controller-manager as child processes.

pub mod local;
pub mod pki;
pub mod process;
pub mod state;

pub use local::{LocalCluster, LocalConfig};
