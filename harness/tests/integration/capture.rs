//! `preflight capture` on a real control plane: a "production" cluster with three
//! releases (a CRD with a conversion webhook and a custom resource; a StatefulSet, a
//! pre-delete hook and a subchart; one stored by Helm's configmap driver), a fail-closed
//! DELETE webhook backed by nothing, a webhook excluded from the releases' namespaces by
//! a label selector, a ValidatingAdmissionPolicy and its binding. The twin must hold the
//! deployed charts and the admission surface as they were, no credential, and capturing
//! must not write to the cluster.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use kube::api::{Api, PostParams};
use preflight::snapshot::{self, SnapshotScope};

use crate::common;
use crate::production::{self, SECRETS, ar, create, preflight};

/// `(resource, namespace, name, uid, resourceVersion)` of every listed object.
pub(crate) fn identity(
    s: &snapshot::Snapshot,
) -> BTreeSet<(String, String, String, String, String)> {
    s.objects
        .iter()
        .map(|o| {
            (
                o.resource.clone(),
                o.namespace.clone().unwrap_or_default(),
                o.name.clone(),
                o.uid.clone(),
                o.resource_version.clone(),
            )
        })
        .collect()
}

/// Polls until two snapshots a second apart are the same (controllers have finished
/// reacting to the installs); returns the last one.
pub(crate) async fn quiet_snapshot(client: &kube::Client) -> snapshot::Snapshot {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut last = snapshot::take(client, &SnapshotScope::default())
        .await
        .unwrap();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = snapshot::take(client, &SnapshotScope::default())
            .await
            .unwrap();
        if identity(&now) == identity(&last) {
            return now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cluster did not become quiet within 60 s"
        );
        last = now;
    }
}

pub(crate) fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            all_files(&e.path(), out);
        } else {
            out.push(e.path());
        }
    }
}

/// Kind/name of every non-hook object `helm template` renders for a chart.
fn rendered_kinds(
    helm_bin: &Path,
    home: &Path,
    release: &str,
    chart: &Path,
    values: &Path,
) -> Vec<String> {
    let out = duct::cmd!(
        helm_bin,
        "template",
        release,
        chart,
        "--values",
        values,
        "--namespace",
        "ns"
    )
    .env("HELM_CACHE_HOME", home.join("cache"))
    .env("HELM_CONFIG_HOME", home.join("config"))
    .env("HELM_DATA_HOME", home.join("data"))
    .stderr_to_stdout()
    .stdout_capture()
    .unchecked()
    .run()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "helm template {}: {text}",
        chart.display()
    );
    let mut kinds: Vec<String> = preflight::helm::split_manifest(&text)
        .unwrap()
        .into_iter()
        .filter(|d| d.pointer("/metadata/annotations/helm.sh~1hook").is_none())
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap_or_default(),
                d["metadata"]["name"].as_str().unwrap_or_default()
            )
        })
        .collect();
    kinds.sort();
    kinds
}

#[tokio::test(flavor = "multi_thread")]
async fn capture_writes_the_releases_and_admission_surface_without_credentials_or_writes() {
    let version = &common::versions()[1];
    let cluster = common::cluster("capture", version).await;
    let client = cluster.client();
    let kubeconfig = cluster.kubeconfig().to_path_buf();
    let work = tempfile::tempdir().unwrap();
    let helm = production::build(&cluster, work.path(), true).await;
    let home = helm.home.clone();

    // Capture, with the cluster quiet before and compared after.
    let before = quiet_snapshot(&client).await;
    let twin = work.path().join("twin");
    let (code, text) = preflight(&[
        OsStr::new("capture"),
        OsStr::new("--kubeconfig"),
        kubeconfig.as_os_str(),
        OsStr::new("--out"),
        twin.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    let after = snapshot::take(&client, &SnapshotScope::default())
        .await
        .unwrap();
    let (b, a) = (identity(&before), identity(&after));
    assert_eq!(
        b.symmetric_difference(&a).collect::<Vec<_>>(),
        Vec::<&(String, String, String, String, String)>::new(),
        "the capture changed the cluster"
    );

    // What it says it read.
    let manifest: serde_json::Value =
        serde_json::from_str(&common::read(&twin.join("capture.json"))).unwrap();
    assert_eq!(manifest["kubernetesVersion"], version.to_string());
    assert_eq!(manifest["lacked"], serde_json::json!([]), "{manifest:#}");
    let releases = manifest["releases"].as_array().unwrap();
    let by_name = |n: &str| {
        releases
            .iter()
            .find(|r| r["name"] == n)
            .unwrap_or_else(|| panic!("release {n} not captured: {manifest:#}"))
    };
    assert_eq!(releases.len(), 3, "{manifest:#}");
    assert_eq!(by_name("shop")["revision"], 2);
    assert_eq!(by_name("shop")["status"], "deployed");
    assert!(by_name("shop")["rendered"].is_null(), "{manifest:#}");
    assert_eq!(by_name("cache")["driver"], "configmap");
    let ledger_why = by_name("ledger")["rendered"].as_str().unwrap_or_default();
    assert!(ledger_why.contains("common"), "{manifest:#}");
    let configs: Vec<&str> = common::strings(&manifest["configurations"], "name");
    assert!(configs.contains(&"policy-corp") && configs.contains(&"payments-only"));

    // The admission surface, as the API server holds it, CA bundles removed.
    let guard =
        common::read(&twin.join("cluster/validatingwebhookconfigurations/policy-corp.yaml"));
    assert!(guard.contains("failurePolicy: Fail"), "{guard}");
    assert!(guard.contains("no-endpoints"), "{guard}");
    assert!(!guard.contains("caBundle"), "{guard}");
    let payments =
        common::read(&twin.join("cluster/validatingwebhookconfigurations/payments-only.yaml"));
    assert!(payments.contains("team: payments"), "{payments}");
    let crd = common::read(
        &twin.join("cluster/customresourcedefinitions/widgets.capture.preflight.dev.yaml"),
    );
    assert!(
        crd.contains("strategy: Webhook") && crd.contains("v1beta1"),
        "{crd}"
    );
    assert!(
        twin.join("cluster/validatingadmissionpolicies/replicas-limit.yaml")
            .is_file()
    );
    assert!(
        twin.join("cluster/validatingadmissionpolicybindings/replicas-limit.yaml")
            .is_file()
    );
    assert!(
        twin.join("cluster/poddisruptionbudgets/shop/shop-web.yaml")
            .is_file()
    );
    assert!(
        twin.join("cluster/apiservices/v1alpha1.metrics.corp.example.yaml")
            .is_file()
    );
    assert!(
        !twin.join("cluster/apiservices/v1.apps.yaml").exists(),
        "the API server's own APIServices are not part of the surface"
    );
    let namespaces = common::read(&twin.join("cluster/namespaces.yaml"));
    assert!(namespaces.contains("ledger"), "{namespaces}");

    // No credential anywhere in the twin, plain or base64-encoded.
    let mut files = Vec::new();
    all_files(&twin, &mut files);
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for s in SECRETS {
            let b64 = base64::engine::general_purpose::STANDARD.encode(s);
            assert!(
                !text.contains(s) && !text.contains(&b64),
                "{} holds the credential `{s}`",
                f.display()
            );
        }
    }

    // The twin validates, and each captured chart renders what the release installed.
    let twin_file = twin.join("twin.yaml");
    let (code, text) = preflight(&[OsStr::new("validate"), twin_file.as_os_str()]);
    assert_eq!(code, Some(0), "{text}");
    for r in releases {
        let name = r["name"].as_str().unwrap();
        let got = rendered_kinds(
            &helm.binary,
            &home,
            name,
            &twin.join(r["chartDir"].as_str().unwrap()),
            &twin.join(r["values"].as_str().unwrap()),
        );
        let want: Vec<String> = r["manifestKinds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, want, "release {name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn capture_without_a_right_says_what_it_could_not_read_and_goes_on() {
    let version = &common::versions()[1];
    let cluster = common::cluster("capture-rbac", version).await;
    let client = cluster.client();
    // A reader who may not list APIServices (nor anything not named here).
    create(
        &client,
        &ar(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
        ),
        serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "twin-reader"},
            "rules": [
                {"apiGroups": [""], "resources": ["namespaces", "secrets", "configmaps"], "verbs": ["get", "list"]},
                {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": ["get", "list"]},
                {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["get", "list"]},
                {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["*"], "verbs": ["get", "list"]},
            ],
        }),
    )
    .await;
    create(
        &client,
        &ar(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
        ),
        serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "twin-reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "twin-reader"},
            "subjects": [{"kind": "User", "name": "twin-reader", "apiGroup": "rbac.authorization.k8s.io"}],
        }),
    )
    .await;
    // A Helm record that Helm itself could not read back.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), "default");
    let broken: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": "sh.helm.release.v1.broken.v1",
            "labels": {"owner": "helm", "name": "broken", "version": "1", "status": "deployed"},
        },
        "type": "helm.sh/release.v1",
        "stringData": {"release": "this is not base64!"},
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &broken)
        .await
        .unwrap();
    // The same kubeconfig, impersonating the reader.
    let mut kc: serde_json::Value =
        serde_json::from_str(&common::read(cluster.kubeconfig())).unwrap();
    kc["users"][0]["user"]["as"] = "twin-reader".into();
    let work = tempfile::tempdir().unwrap();
    let reader = work.path().join("reader.kubeconfig");
    std::fs::write(&reader, kc.to_string()).unwrap();

    let twin = work.path().join("twin");
    let capture = [
        OsStr::new("capture"),
        OsStr::new("--kubeconfig"),
        reader.as_os_str(),
        OsStr::new("--out"),
        twin.as_os_str(),
    ];
    let (code, text) = preflight(&capture);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("not read: list apiservices"), "{text}");
    let manifest: serde_json::Value =
        serde_json::from_str(&common::read(&twin.join("capture.json"))).unwrap();
    let lacked: Vec<&str> = common::strings(&manifest["lacked"], "what");
    assert_eq!(
        lacked,
        vec![
            "list apiservices",
            "release default/broken (Secret default/sh.helm.release.v1.broken.v1)",
            "list nodes"
        ],
        "{manifest:#}"
    );
    assert_eq!(manifest["releases"], serde_json::json!([]));
    assert!(twin.join("cluster/namespaces.yaml").is_file());

    // A second capture into the same directory is refused, naming it.
    let (code, text) = preflight(&capture);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("not an empty directory"), "{text}");
}

#[test]
fn bad_capture_flags_are_named_and_nothing_is_written() {
    let work = tempfile::tempdir().unwrap();
    let out_dir = work.path().join("twin");
    let run = |args: &[&str]| {
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        preflight(&args)
    };
    let out = out_dir.to_str().unwrap();
    let missing = work.path().join("nope.kubeconfig");
    let (code, err) = run(&[
        "capture",
        "--kubeconfig",
        missing.to_str().unwrap(),
        "--out",
        out,
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("nope.kubeconfig: no such file"), "{err}");
    let kc = work.path().join("kc");
    std::fs::write(&kc, "apiVersion: v1\nkind: Config\n").unwrap();
    let (code, err) = run(&[
        "capture",
        "--kubeconfig",
        kc.to_str().unwrap(),
        "--out",
        out,
        "--release",
        "only-a-name",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("invalid value for --release: `only-a-name`"),
        "{err}"
    );
    assert!(!out_dir.exists(), "nothing is written on bad input");

    // A twin whose release points outside it: validate names file, line and field.
    std::fs::create_dir_all(work.path().join("t/cluster")).unwrap();
    std::fs::write(work.path().join("t/cluster/namespaces.yaml"), "[]").unwrap();
    let twin = work.path().join("t/twin.yaml");
    std::fs::write(
        &twin,
        "name: twin\ntwin:\n  kubernetesVersion: v1.30.7\n  namespaces: cluster/namespaces.yaml\n  surface: cluster\n  releases:\n    - name: shop\n      namespace: shop\n      chart: /etc\n      values: v.yaml\n",
    )
    .unwrap();
    let (code, err) = run(&["validate", twin.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(
            "twin.yaml:9:14: releases.chart `/etc`: must be a path inside the twin's directory"
        ),
        "{err}"
    );

    // A valid twin whose captured CRD file is not YAML: named before any cluster starts.
    std::fs::write(
        &twin,
        "name: twin\ntwin:\n  kubernetesVersion: v1.30.7\n  namespaces: cluster/namespaces.yaml\n  surface: cluster\n  releases: []\n",
    )
    .unwrap();
    let crds = work.path().join("t/cluster/customresourcedefinitions");
    std::fs::create_dir_all(&crds).unwrap();
    std::fs::write(crds.join("broken.yaml"), "a: [unclosed\n").unwrap();
    let (code, err) = run(&["run", twin.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("customresourcedefinitions/broken.yaml:1:4: "),
        "{err}"
    );
    // validate reads the captured files as replay does, and says the same.
    let (code, err) = run(&["validate", twin.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("customresourcedefinitions/broken.yaml:1:4: "),
        "{err}"
    );
    // A webhook entry that is not a mapping: refused with its place, not a panic later.
    std::fs::remove_file(crds.join("broken.yaml")).unwrap();
    let vwc = work
        .path()
        .join("t/cluster/validatingwebhookconfigurations");
    std::fs::create_dir_all(&vwc).unwrap();
    std::fs::write(
        vwc.join("guard.yaml"),
        "metadata:\n  name: guard\nwebhooks:\n- delete-guard.policy.corp\n",
    )
    .unwrap();
    let (code, err) = run(&["run", twin.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(
            "validatingwebhookconfigurations/guard.yaml:4:3: webhooks[0]: expected a mapping"
        ),
        "{err}"
    );
}
