//! `preflight audit` on a real control plane: a clean cluster has no finding at all;
//! a cluster with risky and healthy webhooks, a broken conversion webhook, an orphan,
//! a stuck finalizer, a release with a removed API and a blocking PDB gets each finding
//! with its severity and evidence; missing rights degrade to the checks that can run.

use std::net::TcpListener;
use std::time::Duration;

use base64::Engine;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use preflight::audit::{self, AuditOptions, Finding, Severity};
use preflight::components::Version;

use crate::common;

fn api(
    client: &kube::Client,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    ns: Option<&str>,
) -> Api<DynamicObject> {
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

async fn create(api: &Api<DynamicObject>, v: serde_json::Value) -> DynamicObject {
    let obj: DynamicObject = serde_json::from_value(v).unwrap();
    api.create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("creating {:?}: {e}", obj.metadata.name))
}

fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A CA certificate (PEM, base64 for a caBundle) valid for `days` more days.
fn ca_bundle(days: i64) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("ca-{days}d"));
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    base64::engine::general_purpose::STANDARD.encode(params.self_signed(&key).unwrap().pem())
}

fn opts(target: &Version) -> AuditOptions {
    AuditOptions {
        target: Some(target.clone()),
        upgrade_window_days: 30,
        live: true,
    }
}

fn find<'a>(findings: &'a [Finding], check: &str, object_part: &str) -> Option<&'a Finding> {
    findings
        .iter()
        .find(|f| f.check == check && f.object.contains(object_part))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_cluster_has_no_finding() {
    let version = &common::versions()[0];
    let cluster = common::cluster("audit-clean", version).await;
    let gc = cluster
        .impersonating(preflight::exercise::dry_run::GC_USER)
        .await
        .unwrap();
    let report = audit::run(
        &cluster.client(),
        Some(&gc),
        &opts(&common::versions()[1]),
        Severity::Info,
    )
    .await
    .unwrap();
    assert_eq!(report.findings, Vec::<Finding>::new());
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(report.exit_code, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_risk_is_found_with_its_severity_and_evidence() {
    let [source, target] = common::versions();
    let cluster = common::cluster("audit-risky", &source).await;
    let client = cluster.client();
    for ns in ["apps", "hooks"] {
        preflight::smoke::ensure_namespace(&client, ns)
            .await
            .unwrap();
    }
    let url = format!("https://127.0.0.1:{}/validate", closed_port());
    let vwcs = api(
        &client,
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        None,
    );
    // A pod to be the live sample, created before the risky webhook.
    let pods = api(&client, "", "v1", "Pod", "pods", Some("apps"));
    create(&pods, serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sample"}, "spec": {"containers": [{"name": "c", "image": "x"}]}})).await;

    create(&vwcs, serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "risky"},
        "webhooks": [{"name": "risky.example.com", "clientConfig": {"url": url, "caBundle": ca_bundle(10)},
            "rules": [{"operations": ["DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"]}]
    })).await;
    // Healthy: fails open, short time-out, spares kube-system, a Service with a ready endpoint.
    let svcs = api(&client, "", "v1", "Service", "services", Some("hooks"));
    create(&svcs, serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "healthy"}, "spec": {"ports": [{"port": 443}]}})).await;
    let slices = api(
        &client,
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        Some("hooks"),
    );
    create(&slices, serde_json::json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "healthy-1", "labels": {"kubernetes.io/service-name": "healthy"}}, "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.5"], "conditions": {"ready": true}}], "ports": [{"port": 443}]})).await;
    create(&vwcs, serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "healthy"},
        "webhooks": [{"name": "healthy.example.com", "clientConfig": {"service": {"namespace": "hooks", "name": "healthy"}, "caBundle": ca_bundle(365)},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
            "failurePolicy": "Ignore", "timeoutSeconds": 3, "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}]}}]
    })).await;

    // A broken conversion webhook with a stored object that needs it.
    let crd_yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/charts/preflight-test/crds/widgets.yaml"
    ))
    .unwrap();
    let crds = api(
        &client,
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        None,
    );
    crds.create(
        &PostParams::default(),
        &serde_saphyr::from_str::<DynamicObject>(&crd_yaml).unwrap(),
    )
    .await
    .unwrap();
    let widgets = api(
        &client,
        "preflight.dev",
        "v1",
        "Widget",
        "widgets",
        Some("apps"),
    );
    let w: DynamicObject = serde_json::from_value(serde_json::json!({"apiVersion": "preflight.dev/v1", "kind": "Widget", "metadata": {"name": "w"}})).unwrap();
    assert!(
        preflight::smoke::poll(Duration::from_secs(30), || async {
            widgets.create(&PostParams::default(), &w).await.ok()
        })
        .await
        .is_some()
    );
    let patch = serde_json::json!({"spec": {"conversion": {"strategy": "Webhook", "webhook": {"clientConfig": {"url": format!("https://127.0.0.1:{}/convert", closed_port())}, "conversionReviewVersions": ["v1"]}}}});
    crds.patch(
        "widgets.preflight.dev",
        &Default::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .unwrap();

    // An orphan: its owner never existed, and the risky webhook keeps the GC from deleting it.
    create(&pods, serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orphan",
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "gone", "uid": "00000000-0000-0000-0000-000000000001"}]},
        "spec": {"containers": [{"name": "c", "image": "x"}]}})).await;
    // A stuck finalizer.
    let cms = api(&client, "", "v1", "ConfigMap", "configmaps", Some("apps"));
    create(&cms, serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "held", "finalizers": ["example.com/hold"]}})).await;
    cms.delete("held", &DeleteParams::default()).await.unwrap();
    // A Helm release (in Helm's own storage format) whose manifest uses a removed API.
    let release = serde_json::json!({"name": "legacy", "namespace": "apps", "version": 1, "info": {"status": "deployed"},
        "manifest": "---\napiVersion: batch/v1beta1\nkind: CronJob\nmetadata:\n  name: nightly\n"});
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, release.to_string().as_bytes()).unwrap();
    let helm_value = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
    let secrets = api(&client, "", "v1", "Secret", "secrets", Some("apps"));
    create(&secrets, serde_json::json!({"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
        "metadata": {"name": "sh.helm.release.v1.legacy.v1", "labels": {"owner": "helm", "status": "deployed", "name": "legacy", "version": "1"}},
        "data": {"release": base64::engine::general_purpose::STANDARD.encode(helm_value)}})).await;
    // A PodDisruptionBudget that allows no disruption.
    create(&pods, serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "guarded", "labels": {"app": "guarded"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}})).await;
    let pdbs = api(
        &client,
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        Some("apps"),
    );
    create(&pdbs, serde_json::json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "strict"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}}})).await;
    assert!(
        preflight::smoke::poll(Duration::from_secs(60), || async {
            let p = pdbs.get("strict").await.ok()?;
            (p.data
                .pointer("/status/expectedPods")
                .and_then(|v| v.as_i64())
                == Some(1))
            .then_some(())
        })
        .await
        .is_some(),
        "the disruption controller never computed the PDB's status"
    );

    let gc = cluster
        .impersonating(preflight::exercise::dry_run::GC_USER)
        .await
        .unwrap();
    let report = audit::run(&client, Some(&gc), &opts(&target), Severity::High)
        .await
        .unwrap();
    let f = &report.findings;
    let expect = |check: &str, object: &str, severity: Severity| {
        let found =
            find(f, check, object).unwrap_or_else(|| panic!("no {check} on {object}: {f:#?}"));
        assert_eq!(found.severity, severity, "{found:#?}");
        found.clone()
    };
    let risky = expect("webhook-fail-closed-on-gc-delete", "risky", Severity::High);
    assert!(
        risky.fix.contains("failurePolicy to Ignore")
            && risky.fix.contains("helm delete --no-hooks")
    );
    expect("webhook-timeout", "risky", Severity::Medium);
    expect("webhook-selects-kube-system", "risky", Severity::Medium);
    expect("webhook-no-control-plane-exemption", "risky", Severity::Low);
    expect("webhook-url-target", "risky", Severity::Low);
    expect("webhook-ca-expiring", "risky", Severity::High);
    let live = expect("gc-delete-refused-now", "risky", Severity::Critical);
    assert!(
        live.evidence[0].contains(
            "as system:serviceaccount:kube-system:generic-garbage-collector: webhook-failed"
        ),
        "{live:#?}"
    );
    let conv = expect(
        "crd-conversion-failing",
        "widgets.preflight.dev",
        Severity::Critical,
    );
    assert!(conv.title.contains("up to Kubernetes 1.31"), "{conv:#?}");
    expect(
        "resource-type-unlistable",
        "preflight.dev/widgets",
        Severity::High,
    );
    expect("orphaned-object", "Pod/apps/orphan", Severity::Medium);
    expect("stuck-in-deletion", "ConfigMap/apps/held", Severity::High);
    let removed = expect("helm-release-removed-api", "apps/legacy", Severity::High);
    assert!(
        removed
            .title
            .contains("batch/v1beta1, removed in Kubernetes 1.25"),
        "{removed:#?}"
    );
    expect("pdb-blocks-drain", "apps/strict", Severity::Medium);
    assert!(
        f.iter().all(|x| !x.object.contains("healthy")),
        "no false positive on the healthy webhook: {f:#?}"
    );
    assert_eq!(report.exit_code, 1);

    // Rendered in every format.
    let dir = tempfile::tempdir().unwrap();
    audit::render::write_all(&report, dir.path()).unwrap();
    let md = common::read(&dir.path().join("audit.md"));
    assert!(
        md.contains("gc-delete-refused-now") && md.contains("## What to do"),
        "{md}"
    );

    // Insufficient rights: a user who may only `view` and not impersonate.
    let crbs = api(
        &client,
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        None,
    );
    create(&crbs, serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "auditor-view"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "auditor"}]})).await;
    let limited = cluster.impersonating("auditor").await.unwrap();
    let degraded = audit::run(&limited, None, &opts(&target), Severity::High)
        .await
        .unwrap();
    let skipped = degraded.skipped.join("\n");
    assert!(
        skipped.contains("Helm releases not checked (cannot read Secrets)"),
        "{skipped}"
    );
    assert!(
        skipped.contains("ValidatingWebhookConfigurations not checked"),
        "{skipped}"
    );
    assert!(
        find(&degraded.findings, "orphaned-object", "Pod/apps/orphan").is_some(),
        "what can run still runs: {skipped}\n{:#?}",
        degraded.findings
    );
}

/// The cluster: two fail-closed DELETE webhooks on Pods, one unreachable and
/// unscoped, one scoped by `namespaceSelector: {matchLabels: {team: platform}}` (served,
/// and allowing). The probe used to delete a Pod outside the platform namespaces, be
/// refused by the unreachable webhook, and blame both; and it said the scoped webhook
/// does not spare kube-system. Now each webhook is probed on an object it selects and
/// credited only with an answer that names it. Two more webhooks: one whose selector
/// matches no namespace (nothing to probe) and one with matchConditions that exempt
/// the control plane (its admission proves nothing about it).
#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_is_credited_only_to_the_webhook_the_answer_names() {
    use std::collections::BTreeSet;
    use std::net::{IpAddr, Ipv4Addr};

    use preflight::webhook::WebhookServer;
    use preflight::webhook::{Behaviour, BehaviourSpec, WebhookKind};

    const GC: &str = preflight::exercise::dry_run::GC_USER;
    let [source, target] = common::versions();
    for version in [&source, &target] {
        let cluster = common::cluster("audit-scoped", version).await;
        let client = cluster.client();
        let namespaces = api(&client, "", "v1", "Namespace", "namespaces", None);
        create(
            &namespaces,
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "platform-a", "labels": {"team": "platform"}}}),
        )
        .await;
        create(&namespaces, serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}})).await;
        for (ns, name) in [("platform-a", "p"), ("apps", "a")] {
            let pods = api(&client, "", "v1", "Pod", "pods", Some(ns));
            create(
                &pods,
                serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"containers": [{"name": "c", "image": "x"}]}}),
            )
            .await;
        }
        let dir = tempfile::tempdir().unwrap();
        let server = WebhookServer::new(dir.path(), IpAddr::V4(Ipv4Addr::LOCALHOST), &[])
            .await
            .unwrap();
        server
            .add(
                "platform",
                WebhookKind::Validating,
                BehaviourSpec::new(Behaviour::Allow),
            )
            .await
            .unwrap();
        let vwcs = api(
            &client,
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            None,
        );
        let closed =
            || serde_json::json!({"url": format!("https://127.0.0.1:{}/validate", closed_port())});
        let pods_rule = serde_json::json!([{"operations": ["DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]);
        let hook = |name: &str,
                    client_config: serde_json::Value,
                    rules: &serde_json::Value,
                    extra: serde_json::Value| {
            let mut w = serde_json::json!({"name": format!("{name}.example.com"), "clientConfig": client_config, "rules": rules,
                "failurePolicy": "Fail", "timeoutSeconds": 2, "sideEffects": "None", "admissionReviewVersions": ["v1"]});
            w.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            serde_json::json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": name}, "webhooks": [w]})
        };
        create(
            &vwcs,
            hook("unreachable", closed(), &pods_rule, serde_json::json!({})),
        )
        .await;
        create(
            &vwcs,
            hook(
                "platform",
                serde_json::json!({"url": server.url("platform").unwrap(), "caBundle": server.ca_bundle()}),
                &pods_rule,
                serde_json::json!({"namespaceSelector": {"matchLabels": {"team": "platform"}}}),
            ),
        )
        .await;
        create(
            &vwcs,
            hook(
                "nobody",
                closed(),
                &pods_rule,
                serde_json::json!({"namespaceSelector": {"matchLabels": {"team": "nobody"}}}),
            ),
        )
        .await;
        create(
            &vwcs,
            hook(
                "conditional",
                closed(),
                &serde_json::json!([{"operations": ["DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}]),
                serde_json::json!({"matchConditions": [{"name": "not-the-control-plane",
                    "expression": "!request.userInfo.username.startsWith('system:serviceaccount:kube-system:')"}]}),
            ),
        )
        .await;
        // Every namespace has the root CA ConfigMap the conditional webhook selects.
        let cms = api(&client, "", "v1", "ConfigMap", "configmaps", Some("apps"));
        assert!(
            preflight::smoke::poll(Duration::from_secs(30), || async {
                cms.get("kube-root-ca.crt").await.ok()
            })
            .await
            .is_some(),
            "{version}: no kube-root-ca.crt"
        );

        let gc = cluster.impersonating(GC).await.unwrap();
        let report = audit::run(&client, Some(&gc), &opts(&target), Severity::High)
            .await
            .unwrap();
        let f = &report.findings;
        let webhook_findings: BTreeSet<(String, String)> = f
            .iter()
            .filter(|x| x.object.contains(" webhook "))
            .map(|x| {
                (
                    x.object.rsplit(' ').next().unwrap().to_string(),
                    x.check.clone(),
                )
            })
            .collect();
        let want: BTreeSet<(String, String)> = [
            ("unreachable", "webhook-fail-closed-on-gc-delete"),
            ("unreachable", "webhook-selects-kube-system"),
            ("unreachable", "webhook-no-control-plane-exemption"),
            ("unreachable", "webhook-url-target"),
            ("unreachable", "gc-delete-refused-now"),
            ("platform", "webhook-fail-closed-on-gc-delete"),
            ("platform", "webhook-no-control-plane-exemption"),
            ("platform", "webhook-url-target"),
            ("platform", "gc-delete-probe-unknown"),
            ("nobody", "webhook-fail-closed-on-gc-delete"),
            ("nobody", "webhook-no-control-plane-exemption"),
            ("nobody", "webhook-url-target"),
            ("nobody", "gc-delete-probe-no-object"),
            ("conditional", "webhook-fail-closed-on-gc-delete"),
            ("conditional", "webhook-selects-kube-system"),
            ("conditional", "webhook-url-target"),
            ("conditional", "gc-delete-probe-unknown"),
        ]
        .into_iter()
        .map(|(w, c)| (format!("{w}.example.com"), c.to_string()))
        .collect();
        assert_eq!(webhook_findings, want, "{version}: {f:#?}");

        let one = |webhook: &str, check: &str| {
            f.iter()
                .find(|x| {
                    x.check == check && x.object.ends_with(&format!(" {webhook}.example.com"))
                })
                .unwrap_or_else(|| panic!("{version}: no {check} on {webhook}: {f:#?}"))
        };
        // The unreachable webhook is probed on the Pod only it selects, and named.
        let refused = one("unreachable", "gc-delete-refused-now");
        assert_eq!(refused.severity, Severity::Critical);
        assert!(
            refused.evidence[0].starts_with(&format!(
                "dry-run DELETE of Pod apps/a as {GC}: webhook-failed"
            )) && refused.evidence[0]
                .contains("failed calling webhook \"unreachable.example.com\""),
            "{version}: {refused:#?}"
        );
        // The scoped webhook is probed only on the platform Pod; the answer names the
        // other webhook, so nothing is claimed about it.
        let unknown = one("platform", "gc-delete-probe-unknown");
        assert_eq!(unknown.severity, Severity::Info);
        let evidence = unknown.evidence.join("\n");
        assert!(
            evidence.contains("dry-run DELETE of Pod platform-a/p")
                && evidence.contains("names another webhook, unreachable.example.com")
                && !evidence.contains("apps/a"),
            "{version}: {unknown:#?}"
        );
        let calls: Vec<_> = server
            .records()
            .into_iter()
            .filter(|r| r.webhook == "platform")
            .collect();
        assert!(
            !calls.is_empty(),
            "{version}: the scoped webhook was never called"
        );
        for r in &calls {
            assert_eq!(
                (
                    r.operation.as_str(),
                    r.namespace.as_deref(),
                    r.name.as_deref(),
                    r.dry_run,
                    r.user.as_deref()
                ),
                ("DELETE", Some("platform-a"), Some("p"), true, Some(GC)),
                "{version}: only an object it selects is probed"
            );
        }
        let none = one("nobody", "gc-delete-probe-no-object");
        assert!(
            none.title.contains("no object this webhook selects exists")
                && none
                    .evidence
                    .join("\n")
                    .contains("pods: 2 objects, 0 selected"),
            "{version}: {none:#?}"
        );
        let conditional = one("conditional", "gc-delete-probe-unknown");
        let evidence = conditional.evidence.join("\n");
        assert!(
            conditional.title.contains("matchConditions")
                && evidence.contains("ConfigMap ")
                && evidence
                    .contains(": admitted (for this webhook: admitted, but its matchConditions"),
            "{version}: {conditional:#?}"
        );
        assert!(
            f.iter()
                .filter(|x| x.severity == Severity::Critical)
                .count()
                == 1,
            "{version}: exactly one critical finding: {f:#?}"
        );
        server.shutdown();
    }
}
