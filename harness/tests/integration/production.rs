//! The "production" cluster that `capture` and the twin replay are tested on, built on
//! a local control plane: three releases of different charts (a CRD with a conversion
//! webhook and its custom resource, a Secret from values and a PodDisruptionBudget; a
//! StatefulSet with a pre-delete hook and a subchart Helm does not store; one stored by
//! Helm's configmap driver), a fail-closed DELETE webhook for the `shop` namespace
//! backed by a Service without endpoints, a webhook that a namespace selector keeps
//! away from every release, and a ValidatingAdmissionPolicy with its binding.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use kube::api::{Api, DynamicObject, PostParams};
use kube::discovery::ApiResource;
use preflight::cluster::LocalCluster;

use crate::common;

/// Credentials the production cluster's releases hold: none may reach a twin.
pub const SECRETS: &[&str] = &[
    "s3cr3t-Hunter2",
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCTESTONLY",
    "tok-XYZZY-777",
    "changeme",
];

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/capture")
}

pub fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: format!("{group}/{version}"),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// Creates a cluster-scoped object from JSON.
pub async fn create(client: &kube::Client, ar: &ApiResource, value: serde_json::Value) {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
    let obj: DynamicObject = serde_json::from_value(value).unwrap();
    api.create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("creating {}: {e}", ar.kind));
}

/// Runs the preflight binary; `(exit code, stdout and stderr)`.
/// `preflight capture --kubeconfig KUBECONFIG --out OUT`, which must succeed.
pub fn capture(kubeconfig: &std::path::Path, out: &std::path::Path) {
    let (code, text) = preflight(&[
        "capture".as_ref(),
        "--kubeconfig".as_ref(),
        kubeconfig.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{text}");
}

pub fn preflight(args: &[&OsStr]) -> (Option<i32>, String) {
    let out = std::process::Command::new(common::preflight_bin())
        .args(args)
        .env("CI", "true")
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The helm CLI against the production cluster.
pub struct Helm {
    pub binary: PathBuf,
    pub kubeconfig: PathBuf,
    pub home: PathBuf,
}

impl Helm {
    /// Runs helm with Helm's storage `driver`; `(exit code, output)`.
    pub fn run(&self, driver: &str, args: &[&OsStr]) -> (i32, String) {
        let out = duct::cmd(&self.binary, args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_DRIVER", driver)
            .env("HELM_CACHE_HOME", self.home.join("cache"))
            .env("HELM_CONFIG_HOME", self.home.join("config"))
            .env("HELM_DATA_HOME", self.home.join("data"))
            .stderr_to_stdout()
            .stdout_capture()
            .unchecked()
            .run()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    }

    /// Like [`Helm::run`], panicking with helm's output unless it exits 0.
    pub fn ok(&self, driver: &str, args: &[&OsStr]) {
        let (code, text) = self.run(driver, args);
        assert_eq!(code, 0, "helm {args:?}: {text}");
    }
}

/// Builds the production cluster on `cluster`; `with_unavailable_api` adds an
/// aggregated APIService whose backend does not exist.
pub async fn build(cluster: &LocalCluster, work: &Path, with_unavailable_api: bool) -> Helm {
    let client = cluster.client();
    let helm = Helm {
        binary: common::components(cluster.version()).helm,
        kubeconfig: cluster.kubeconfig().to_path_buf(),
        home: work.join("helm"),
    };
    let fx = fixtures();
    let os = |s: &'static str| OsStr::new(s);
    let (shop, ledger, cache, secrets) = (
        fx.join("shop"),
        fx.join("ledger"),
        fx.join("cache"),
        fx.join("secret-values.yaml"),
    );
    let install = [
        os("install"),
        os("shop"),
        shop.as_os_str(),
        os("-n"),
        os("shop"),
    ];
    let new_ns = [
        os("--create-namespace"),
        os("--values"),
        secrets.as_os_str(),
    ];
    helm.ok("secret", &[&install[..], &new_ns[..]].concat());
    // A second revision: a capture must take the deployed one (2), not the first.
    helm.ok(
        "secret",
        &[
            os("upgrade"),
            os("shop"),
            shop.as_os_str(),
            os("-n"),
            os("shop"),
            os("--reuse-values"),
        ],
    );
    helm.ok(
        "secret",
        &[
            os("install"),
            os("ledger"),
            ledger.as_os_str(),
            os("-n"),
            os("ledger"),
            os("--create-namespace"),
            os("--set"),
            os("common.token=tok-XYZZY-777"),
        ],
    );
    helm.ok(
        "configmap",
        &[
            os("install"),
            os("cache"),
            cache.as_os_str(),
            os("-n"),
            os("shop"),
        ],
    );

    let vwc = ar(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
    );
    let delete_rule = serde_json::json!([{"operations": ["DELETE"], "apiGroups": ["", "apps"], "apiVersions": ["v1"], "resources": ["pods", "replicasets"]}]);
    create(
        &client,
        &vwc,
        serde_json::json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "policy-corp"},
            "webhooks": [{
                "name": "delete-guard.policy.corp",
                "clientConfig": {"service": {"namespace": "guard", "name": "no-endpoints", "path": "/validate"}, "caBundle": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="},
                "rules": delete_rule,
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "timeoutSeconds": 5,
                "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["shop"]}]},
                "admissionReviewVersions": ["v1"],
            }],
        }),
    )
    .await;
    create(
        &client,
        &vwc,
        serde_json::json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "payments-only"},
            "webhooks": [{
                "name": "audit.payments.corp",
                "clientConfig": {"url": "https://127.0.0.1:1/validate"},
                "rules": delete_rule,
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "namespaceSelector": {"matchLabels": {"team": "payments"}},
                "admissionReviewVersions": ["v1"],
            }],
        }),
    )
    .await;
    let policy = |kind: &str, plural: &str| ar("admissionregistration.k8s.io", "v1", kind, plural);
    create(
        &client,
        &policy("ValidatingAdmissionPolicy", "validatingadmissionpolicies"),
        serde_json::json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": "replicas-limit"},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}]},
                "validations": [{"expression": "object.spec.replicas <= 5"}],
            },
        }),
    )
    .await;
    create(
        &client,
        &policy(
            "ValidatingAdmissionPolicyBinding",
            "validatingadmissionpolicybindings",
        ),
        serde_json::json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": "replicas-limit"},
            "spec": {"policyName": "replicas-limit", "validationActions": ["Deny"]},
        }),
    )
    .await;
    if with_unavailable_api {
        create(
            &client,
            &ar("apiregistration.k8s.io", "v1", "APIService", "apiservices"),
            serde_json::json!({
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": "v1alpha1.metrics.corp.example"},
                "spec": {
                    "group": "metrics.corp.example",
                    "version": "v1alpha1",
                    "service": {"namespace": "guard", "name": "no-endpoints"},
                    "insecureSkipTLSVerify": true,
                    "groupPriorityMinimum": 100,
                    "versionPriority": 10,
                },
            }),
        )
        .await;
    }
    helm
}
