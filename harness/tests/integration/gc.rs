//! The garbage collector works on a healthy local control plane, at both versions.

use std::time::Duration;

use crate::common;

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_deployment_cascades_to_replicasets_and_pods() {
    for version in common::versions() {
        let cluster = common::cluster("gc", &version).await;
        assert_eq!(cluster.version(), &version);
        let outcome =
            preflight::smoke::run(&cluster.client(), "gc", "web", Duration::from_secs(60))
                .await
                .unwrap();
        assert_eq!(outcome.replicasets_created, 1, "{version}: {outcome:?}");
        assert_eq!(outcome.pods_created, 2, "{version}: {outcome:?}");
        assert!(
            outcome.clean(),
            "{version}: the garbage collector left {:?}",
            outcome.leftovers
        );
        assert!(outcome.cascade_seconds.is_some());
    }
}
