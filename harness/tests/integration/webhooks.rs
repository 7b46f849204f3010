//! Each sample-webhook behaviour, seen through a real API server at both versions.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use preflight::scenario::{self, WebhookSpec};
use preflight::webhook::{Behaviour, BehaviourSpec, Registration, WebhookKind, WebhookServer};

use crate::common;

fn configmap(name: &str) -> ConfigMap {
    serde_json::from_value(
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}),
    )
    .unwrap()
}

fn spec(yaml: &str) -> Vec<WebhookSpec> {
    let text = format!(
        "name: t\nchart: {{path: charts/preflight-test}}\nsteps: [settle: {{}}]\nwebhooks:\n{yaml}"
    );
    scenario::parse(&text, "test.yaml", None).unwrap().webhooks
}

fn behaviour(b: Behaviour) -> BehaviourSpec {
    BehaviourSpec::new(b)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_behaviour_has_its_effect_on_the_api() {
    for version in common::versions() {
        let cluster = common::cluster("behaviours", &version).await;
        let client = cluster.client();
        let ns = "behaviours";
        preflight::smoke::ensure_namespace(&client, ns)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let server = WebhookServer::new(dir.path(), IpAddr::V4(Ipv4Addr::LOCALHOST), &[])
            .await
            .unwrap();
        let specs = spec(
            "  - {name: guard, kind: validating, failurePolicy: Fail, timeoutSeconds: 2,\n     rules: [{operations: [CREATE], apiGroups: [\"\"], apiVersions: [v1], resources: [configmaps]}]}\n  - {name: stamp, kind: mutating, failurePolicy: Fail,\n     rules: [{operations: [CREATE], apiGroups: [\"\"], apiVersions: [v1], resources: [secrets]}]}\n",
        );
        let mut reg = Registration::register(&client, &server, &specs, ns, "test")
            .await
            .unwrap();
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let create = |name: &'static str| {
            let cms = cms.clone();
            async move {
                cms.create(&PostParams::default(), &configmap(name))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        };

        // No waiting: registration returns once the API server calls the new
        // configurations (their barrier entries), so the very first request is judged.
        create("allowed")
            .await
            .unwrap_or_else(|e| panic!("{version}: allow: {e}"));
        let rec = server
            .records()
            .into_iter()
            .find(|r| r.name.as_deref() == Some("allowed"))
            .expect("recorded");
        assert_eq!(
            (
                rec.operation.as_str(),
                rec.resource.as_str(),
                rec.answer.to_string().as_str()
            ),
            ("CREATE", "core/v1/configmaps", "allowed")
        );
        // The API server says how long it waits: the configuration's timeoutSeconds: 2.
        assert_eq!(rec.caller_timeout_ms, Some(2_000), "{rec:?}");
        assert_eq!(rec.user.as_deref(), Some("preflight-admin"));
        assert!(!rec.dry_run);

        let mut deny = behaviour(Behaviour::Deny);
        deny.message = Some("no configmaps today".into());
        server.set("guard", deny).await.unwrap();
        let e = create("denied").await.unwrap_err();
        assert!(
            e.contains("denied the request") && e.contains("no configmaps today"),
            "{version}: deny: {e}"
        );

        let mut delay = behaviour(Behaviour::Delay);
        delay.delay = Some(Duration::from_secs(4));
        server.set("guard", delay).await.unwrap();
        let started = Instant::now();
        let e = create("delayed").await.unwrap_err();
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "{version}: the apiserver waited its timeout"
        );
        assert!(
            e.contains("failed calling webhook")
                && (e.contains("deadline exceeded") || e.contains("Timeout")),
            "{version}: delay: {e}"
        );
        // The record says the caller gave up: recorded even if the API server hung up
        // before the answer, and counted as a refusal only because it came too late.
        let rec = preflight::smoke::poll(Duration::from_secs(10), || async {
            server
                .records()
                .into_iter()
                .find(|r| r.name.as_deref() == Some("delayed"))
        })
        .await
        .unwrap_or_else(|| panic!("{version}: the delayed request was never recorded"));
        assert!(
            rec.refused(),
            "{version}: past the caller's timeout: {rec:?}"
        );

        server
            .set("guard", behaviour(Behaviour::Error))
            .await
            .unwrap();
        let e = create("errored").await.unwrap_err();
        assert!(
            e.contains("failed calling webhook"),
            "{version}: error: {e}"
        );

        server
            .set("guard", behaviour(Behaviour::Malformed))
            .await
            .unwrap();
        let e = create("malformed").await.unwrap_err();
        assert!(
            e.contains("failed calling webhook"),
            "{version}: malformed: {e}"
        );

        server
            .set("guard", behaviour(Behaviour::Unreachable))
            .await
            .unwrap();
        let e = create("unreachable").await.unwrap_err();
        assert!(
            e.contains("connection refused"),
            "{version}: unreachable: {e}"
        );

        server
            .set("guard", behaviour(Behaviour::Allow))
            .await
            .unwrap();
        create("healthy-again")
            .await
            .unwrap_or_else(|e| panic!("{version}: back to allow on the same address: {e}"));

        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        let secret: Secret = serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "annotations": {"keep": "me"}}})).unwrap();
        let made = secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
        let ann = made.metadata.annotations.unwrap();
        assert_eq!(
            ann.get("preflight.dev/mutated-by").map(String::as_str),
            Some("stamp"),
            "{version}"
        );
        assert_eq!(
            ann.get("keep").map(String::as_str),
            Some("me"),
            "{version}: existing annotations survive"
        );

        let log = common::read(server.log_path());
        assert!(
            log.lines().count() >= 6,
            "{version}: every request is in requests.jsonl"
        );

        assert!(reg.teardown(&client).await.is_empty());
        let vwcs: Api<DynamicObject> = Api::all_with(
            client.clone(),
            &ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(
                    "admissionregistration.k8s.io",
                    "v1",
                    "ValidatingWebhookConfiguration",
                ),
                "validatingwebhookconfigurations",
            ),
        );
        let left = vwcs
            .list(&ListParams::default().labels("app.kubernetes.io/managed-by=preflight"))
            .await
            .unwrap();
        assert!(
            left.items.is_empty(),
            "{version}: teardown removes every configuration"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn conversion_webhook_converts_stored_objects_read_at_the_other_version() {
    for version in common::versions() {
        let cluster = common::cluster("conversion", &version).await;
        let client = cluster.client();
        let ns = "conversion";
        preflight::smoke::ensure_namespace(&client, ns)
            .await
            .unwrap();
        let crd_yaml = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scenarios/charts/preflight-test/crds/widgets.yaml"
        ))
        .unwrap();
        let crd: DynamicObject = serde_saphyr::from_str(&crd_yaml).unwrap();
        let crds: Api<DynamicObject> = Api::all_with(
            client.clone(),
            &ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
                "customresourcedefinitions",
            ),
        );
        crds.create(&PostParams::default(), &crd).await.unwrap();
        let at = |v: &str| {
            Api::<DynamicObject>::namespaced_with(
                client.clone(),
                ns,
                &ApiResource::from_gvk_with_plural(
                    &GroupVersionKind::gvk("preflight.dev", v, "Widget"),
                    "widgets",
                ),
            )
        };
        let widget: DynamicObject = serde_json::from_value(serde_json::json!({"apiVersion": "preflight.dev/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": "small"}})).unwrap();
        let created = preflight::smoke::poll(Duration::from_secs(30), || async {
            at("v1").create(&PostParams::default(), &widget).await.ok()
        })
        .await;
        assert!(created.is_some(), "{version}: the CRD never became usable");

        let dir = tempfile::tempdir().unwrap();
        let server = WebhookServer::new(dir.path(), IpAddr::V4(Ipv4Addr::LOCALHOST), &[])
            .await
            .unwrap();
        let specs = spec("  - {name: widgets, kind: conversion, crd: widgets.preflight.dev}\n");
        let mut reg = Registration::register(&client, &server, &specs, ns, "test")
            .await
            .unwrap();

        let read = preflight::smoke::poll(Duration::from_secs(30), || async {
            let w = at("v2").get("w1").await.ok()?;
            (!server.records().is_empty()).then_some(w)
        })
        .await
        .unwrap_or_else(|| panic!("{version}: reading at v2 never went through the webhook"));
        assert_eq!(read.types.unwrap().api_version, "preflight.dev/v2");
        let rec = &server.records()[0];
        assert_eq!(
            (
                rec.kind,
                rec.operation.as_str(),
                rec.answer.to_string().as_str()
            ),
            (WebhookKind::Conversion, "CONVERT", "converted")
        );

        server
            .set("widgets", behaviour(Behaviour::Unreachable))
            .await
            .unwrap();
        let err = at("v2").get("w1").await.unwrap_err().to_string();
        assert!(
            err.contains("conversion webhook") && err.contains("connection refused"),
            "{version}: {err}"
        );
        at("v1")
            .get("w1")
            .await
            .unwrap_or_else(|e| panic!("{version}: the storage version needs no conversion: {e}"));
        assert!(reg.teardown(&client).await.is_empty());
        let restored = crds.get("widgets.preflight.dev").await.unwrap();
        assert_eq!(
            restored.data["spec"]["conversion"]["strategy"], "None",
            "{version}"
        );
    }
}

/// A captured mutating configuration is registered as captured (rules, selectors,
/// failure policy, timeout), with only its clientConfig pointed at preflight's server,
/// and replayed as healthy it admits objects unchanged.
#[tokio::test(flavor = "multi_thread")]
async fn a_captured_configuration_keeps_its_rules_and_a_healthy_mutating_hook_does_not_patch() {
    let version = &common::versions()[1];
    let cluster = common::cluster("captured-hook", version).await;
    let client = cluster.client();
    let dir = tempfile::tempdir().unwrap();
    let server = WebhookServer::new(dir.path(), IpAddr::V4(Ipv4Addr::LOCALHOST), &[])
        .await
        .unwrap();
    let captured = serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "stamps", "labels": {"team": "platform"}},
        "webhooks": [{
            "name": "stamp.corp.example",
            "clientConfig": {"service": {"namespace": "corp", "name": "stamper"}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
            "failurePolicy": "Ignore",
            "timeoutSeconds": 7,
            "sideEffects": "None",
            "objectSelector": {"matchLabels": {"stamp": "yes"}},
            "admissionReviewVersions": ["v1"],
        }],
    });
    let hooks = preflight::webhook::register_captured(
        &client,
        &server,
        WebhookKind::Mutating,
        &captured,
        "default",
    )
    .await
    .unwrap();
    assert_eq!(hooks, vec!["stamps:stamp.corp.example"]);

    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
        ),
        "mutatingwebhookconfigurations",
    );
    let live = Api::<DynamicObject>::all_with(client.clone(), &ar)
        .get("stamps")
        .await
        .unwrap();
    let entry = live.data["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "stamp.corp.example")
        .unwrap()
        .clone();
    assert_eq!(entry["failurePolicy"], "Ignore");
    assert_eq!(entry["timeoutSeconds"], 7);
    assert_eq!(entry["objectSelector"]["matchLabels"]["stamp"], "yes");
    assert!(
        entry["clientConfig"]["url"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1:"),
        "{entry:#}"
    );
    assert_eq!(live.metadata.labels.unwrap()["team"], "platform");

    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "stamped", "labels": {"stamp": "yes"}},
    }))
    .unwrap();
    let made = maps.create(&PostParams::default(), &cm).await.unwrap();
    assert_eq!(
        made.metadata.annotations, None,
        "no patch from a captured hook"
    );
    assert!(
        server
            .records()
            .iter()
            .any(|r| r.webhook == "stamps:stamp.corp.example"
                && r.name.as_deref() == Some("stamped")),
        "the API server called the captured hook"
    );
    server.shutdown();
}
