//! The kind provider's node operations for a roll: a node container from the target's
//! node image joined with `kubeadm join`, and a node removed with its container.

use crate::cluster::KindCluster;
use crate::cluster::kind::NodeSpec;
use crate::errors::ClusterError;

/// A kind cluster whose new nodes join from `image` (the target's node image).
pub struct KindNodes<'a> {
    pub cluster: &'a mut KindCluster,
    pub image: String,
}

impl super::Nodes for KindNodes<'_> {
    async fn add_node(&mut self, spec: &NodeSpec, suffix: &str) -> Result<String, ClusterError> {
        self.cluster.add_node(spec, &self.image, suffix).await
    }

    async fn remove_node(&mut self, node: &str) -> Result<(), ClusterError> {
        self.cluster.remove_node(node).await
    }
}
