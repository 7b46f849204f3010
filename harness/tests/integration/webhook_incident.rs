//! The incident's mechanism, reproduced: a validating webhook that cannot be reached,
//! with `failurePolicy: Fail`, on DELETE of replicasets. Deleting the Deployment
//! succeeds, but the garbage collector's DELETE of its ReplicaSet is rejected, so the
//! ReplicaSet and its Pods stay, and the apiserver log says why.

use std::net::TcpListener;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams, PostParams};

use crate::common;

fn closed_port() -> u16 {
    // Bind and drop: nothing listens there afterwards.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn broken_webhook(port: u16) -> ValidatingWebhookConfiguration {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "broken-delete-guard"},
        "webhooks": [{
            "name": "delete-guard.preflight.test",
            "clientConfig": {"url": format!("https://127.0.0.1:{port}/validate")},
            "rules": [{"operations": ["DELETE"], "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["replicasets"]}],
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 2
        }]
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_delete_webhook_orphans_replicasets_and_pods() {
    for version in common::versions() {
        let cluster = common::cluster("incident", &version).await;
        let client = cluster.client();
        let ns = "incident";
        preflight::smoke::ensure_namespace(&client, ns)
            .await
            .unwrap();
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
        deployments
            .create(
                &PostParams::default(),
                &preflight::smoke::deployment("web", 2),
            )
            .await
            .unwrap();
        let created = preflight::smoke::poll(Duration::from_secs(60), || async {
            let (rs, pods) = preflight::smoke::dependents(&client, ns, "web")
                .await
                .ok()?;
            (rs.len() == 1 && pods.len() == 2).then_some(rs)
        })
        .await
        .unwrap_or_else(|| panic!("{version}: controllers never created the ReplicaSet and Pods"));

        let vwc: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
        vwc.create(&PostParams::default(), &broken_webhook(closed_port()))
            .await
            .unwrap();

        // The delete itself succeeds: this is what `helm delete` sees.
        deployments
            .delete("web", &DeleteParams::background())
            .await
            .unwrap();
        assert!(
            preflight::smoke::poll(Duration::from_secs(30), || async {
                deployments
                    .get_opt("web")
                    .await
                    .ok()
                    .flatten()
                    .is_none()
                    .then_some(())
            })
            .await
            .is_some(),
            "{version}: the Deployment itself should be deleted"
        );

        // The garbage collector tries and fails: the apiserver logs the failed call.
        let log = cluster.log_path("kube-apiserver");
        let logged = common::eventually(Duration::from_secs(60), || {
            common::read(&log).contains("failed calling webhook \"delete-guard.preflight.test\"")
        })
        .await;
        assert!(
            logged,
            "{version}: no failed webhook call in {}",
            log.display()
        );

        // ...and the dependents stay, however long we look.
        let (rs, pods) = preflight::smoke::dependents(&client, ns, "web")
            .await
            .unwrap();
        assert_eq!(rs, created, "{version}: the ReplicaSet must be orphaned");
        assert_eq!(pods.len(), 2, "{version}: the Pods must be orphaned");
        let kcm_log = common::read(&cluster.log_path("kube-controller-manager"));
        assert!(
            kcm_log.contains("delete-guard.preflight.test"),
            "{version}: the garbage collector's error names the webhook"
        );

        // Removing the broken webhook lets the cascade finish: the mechanism, not a bug
        // in the test, kept them.
        vwc.delete("broken-delete-guard", &DeleteParams::default())
            .await
            .unwrap();
        let cleaned = preflight::smoke::poll(Duration::from_secs(90), || async {
            let (rs, pods) = preflight::smoke::dependents(&client, ns, "web")
                .await
                .ok()?;
            (rs.is_empty() && pods.is_empty()).then_some(())
        })
        .await;
        assert!(
            cleaned.is_some(),
            "{version}: GC should recover once the webhook is gone"
        );
    }
}
