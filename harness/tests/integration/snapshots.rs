//! Snapshots on real control planes: every kind of every served version (a kind served
//! only at a non-preferred version included), metadata-only paged lists that never
//! hold Secret data, discovery errors as findings, and such a kind's leftovers found
//! after a chart's uninstall.

use std::path::Path;
use std::time::Duration;

use kube::api::{Api, DynamicObject, PostParams};
use kube::discovery::ApiResource;
use preflight::cluster::{Cluster, LocalConfig};
use preflight::exercise;
use preflight::scenario;
use preflight::snapshot::{self, SnapshotScope};
use preflight::verdict::{self, Reason};

use crate::common;

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gadgets")
}

/// Creates `value` (JSON) through the dynamic API of `ar`.
async fn create(
    client: &kube::Client,
    ar: &ApiResource,
    ns: Option<&str>,
    value: serde_json::Value,
) {
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    };
    let obj: DynamicObject = serde_json::from_value(value).unwrap();
    api.create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("creating {}: {e}", ar.kind));
}

fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: if group.is_empty() {
            version.into()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.into(),
        plural: plural.into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kind_served_only_at_a_non_preferred_version_is_listed_as_metadata_without_secret_data() {
    let version = &common::versions()[1];
    let cluster = common::cluster("snap", version).await;
    let client = cluster.client();
    let crd = ar(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
    );
    for file in ["widgets.yaml", "gadgets.yaml"] {
        let text =
            std::fs::read_to_string(fixtures().join("charts/gadgets/crds").join(file)).unwrap();
        let value: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        create(&client, &crd, None, value).await;
    }
    preflight::smoke::ensure_namespace(&client, "snap")
        .await
        .unwrap();
    // Both CRDs served (the gadgets at v1alpha1 only, the group preferring v1).
    let served = preflight::smoke::poll(Duration::from_secs(30), || async {
        let s = snapshot::served(&client).await.ok()?;
        let found = |plural: &str| {
            s.types
                .iter()
                .find(|t| t.resource.plural == plural)
                .map(|t| t.resource.version.clone())
        };
        Some((found("widgets")?, found("gadgets")?))
    })
    .await;
    assert_eq!(
        served,
        Some(("v1".to_string(), "v1alpha1".to_string())),
        "discovery"
    );
    let gadgets = ar("x.example.com", "v1alpha1", "Gadget", "gadgets");
    create(
        &client,
        &gadgets,
        Some("snap"),
        serde_json::json!({"apiVersion": "x.example.com/v1alpha1", "kind": "Gadget",
            "metadata": {"name": "g1"}, "spec": {"size": "small"}}),
    )
    .await;
    let secrets = ar("", "v1", "Secret", "secrets");
    let secret_value = "preflight-secret-value-7f3a";
    create(
        &client,
        &secrets,
        Some("snap"),
        serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s1"}, "stringData": {"password": secret_value}}),
    )
    .await;
    let configmaps = ar("", "v1", "ConfigMap", "configmaps");
    for i in 0..7 {
        create(
            &client,
            &configmaps,
            Some("snap"),
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("cm{i}")}, "data": {"k": "v"}}),
        )
        .await;
    }

    // Pages of 2 objects: the 8 ConfigMaps (7 and kube-root-ca.crt) take 4 pages.
    let scope = SnapshotScope {
        namespace: Some("snap".into()),
        ..Default::default()
    };
    let snap = snapshot::take_paged(&client, &scope, 2).await.unwrap();
    let named = |kind: &str| -> Vec<&str> {
        snap.objects
            .iter()
            .filter(|o| o.kind == kind)
            .map(|o| o.name.as_str())
            .collect()
    };
    assert_eq!(named("Gadget"), ["g1"]);
    let g = snap.objects.iter().find(|o| o.kind == "Gadget").unwrap();
    assert_eq!(g.api_version, "x.example.com/v1alpha1");
    assert_eq!(g.resource, "x.example.com/gadgets");
    assert_eq!(named("ConfigMap").len(), 8, "{:?}", named("ConfigMap"));
    assert_eq!(named("Secret"), ["s1"]);
    let listed = |plural: &str| {
        snap.listed
            .iter()
            .find(|t| t.resource == plural)
            .map(|t| (t.version.as_str(), t.full_objects))
    };
    assert_eq!(listed("gadgets"), Some(("v1alpha1", false)));
    assert_eq!(listed("widgets"), Some(("v1", false)));
    assert_eq!(listed("secrets"), Some(("v1", false)));
    assert!(snap.unlistable.is_empty(), "{:?}", snap.unlistable);
    let json = serde_json::to_string(&snap).unwrap();
    let b64 = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        secret_value.as_bytes(),
    );
    assert!(
        !json.contains(secret_value) && !json.contains(&b64),
        "no Secret data in a snapshot"
    );

    // A whole-cluster snapshot: a healthy control plane has no discovery errors; an
    // APIService whose service does not exist is one.
    let whole = snapshot::take(&client, &SnapshotScope::default())
        .await
        .unwrap();
    assert!(
        whole.discovery_errors.is_empty(),
        "{:?}",
        whole.discovery_errors
    );
    let apiservices = ar("apiregistration.k8s.io", "v1", "APIService", "apiservices");
    create(
        &client,
        &apiservices,
        None,
        serde_json::json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": "v1beta1.broken.example.com"},
            "spec": {"group": "broken.example.com", "version": "v1beta1",
                "groupPriorityMinimum": 100, "versionPriority": 10,
                "insecureSkipTLSVerify": true,
                "service": {"namespace": "snap", "name": "nowhere", "port": 443}}}),
    )
    .await;
    let errors = preflight::smoke::poll(Duration::from_secs(30), || async {
        let s = snapshot::take(&client, &SnapshotScope::default())
            .await
            .ok()?;
        s.discovery_errors
            .iter()
            .any(|e| e.group_version == "broken.example.com/v1beta1")
            .then_some(s.discovery_errors)
    })
    .await;
    let errors = errors.expect("the unavailable APIService is a finding");
    let broken = errors
        .iter()
        .find(|e| e.group_version == "broken.example.com/v1beta1")
        .unwrap();
    assert!(!broken.error.trim().is_empty(), "{errors:#?}");
}

/// A chart whose CRD group prefers v1 (widgets) and serves gadgets only at v1alpha1:
/// the Gadgets it leaves behind are found, with their reasons, at both versions.
#[tokio::test(flavor = "multi_thread")]
async fn leftovers_of_a_kind_served_only_at_a_non_preferred_version_are_found() {
    preflight::init_crypto();
    let s = scenario::load_file(&fixtures().join("scenario.yaml")).unwrap();
    for version in common::versions() {
        let mut config = LocalConfig::new("gadgets", common::components(&version));
        config.ready_timeout = Duration::from_secs(90);
        let mut cluster = Cluster::Local(Box::new(
            preflight::cluster::LocalCluster::start(config)
                .await
                .unwrap(),
        ));
        let opts = exercise::Options {
            dir: cluster.dir().join("run"),
            upgrade_to: Vec::new(),
            progress: preflight::progress::Progress::quiet(),
            run_id: "t".into(),
            noise: Default::default(),
        };
        let o = exercise::run(&mut cluster, &s, &opts).await.unwrap();
        assert!(
            o.steps.iter().all(|s| s.error.is_none()),
            "{version}: {:#?}",
            o.steps
        );
        let listed: Vec<_> = o
            .after
            .listed
            .iter()
            .filter(|t| t.group == "x.example.com")
            .map(|t| (t.resource.as_str(), t.version.as_str()))
            .collect();
        assert_eq!(
            listed,
            [("widgets", "v1"), ("gadgets", "v1alpha1")],
            "{version}"
        );
        let left = verdict::leftovers(&o);
        let gadgets: Vec<_> = left
            .iter()
            .filter(|l| l.kind == "Gadget")
            .map(|l| {
                (
                    l.name.trim_start_matches(&o.release),
                    l.reason,
                    l.api_version.as_str(),
                )
            })
            .collect();
        assert_eq!(
            gadgets,
            [
                (
                    "-held",
                    Reason::BlockedByFinalizer,
                    "x.example.com/v1alpha1"
                ),
                ("-kept", Reason::KeptByPolicy, "x.example.com/v1alpha1"),
            ],
            "{version}: {left:#?}"
        );
        assert!(
            !left.iter().any(|l| l.kind == "Widget"),
            "{version}: the Widget was deleted: {left:#?}"
        );
    }
}
