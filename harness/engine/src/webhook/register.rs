//! Registering the scenario's webhooks with a cluster, and removing them again.
//!
//! Admission webhooks become one `ValidatingWebhookConfiguration` or
//! `MutatingWebhookConfiguration` each, named `preflight-<namespace>-<webhook>` and
//! labelled as preflight's, scoped by default to the run's namespace (so a broken
//! sample webhook never touches anyone else's workloads). A conversion webhook is
//! patched into its CRD's `spec.conversion` once the CRD exists (the chart installs
//! it), and the CRD's conversion is set back to `None` at teardown.

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::{Value, json};

use super::{WebhookError, WebhookKind, WebhookServer};
use crate::scenario::{FailurePolicy, MatchPolicy, SideEffects, WebhookSpec};

/// The sample webhook that proves a configuration is live: every configuration
/// preflight registers carries, first, an entry that calls it for a dry-run CREATE of a
/// ConfigMap labelled `preflight.dev/barrier: <configuration>` in the run's namespace
/// (fail-open, no side effects). The API server loads configurations asynchronously;
/// once it calls the barrier entry it calls the whole configuration, so the next step
/// never races the registration. (A dot keeps the name apart from scenario webhooks.)
pub const BARRIER: &str = "barrier.preflight";

/// How long the API server may take to start calling a new configuration.
const BARRIER_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15);

/// The label every object preflight creates carries.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "preflight");

fn vwc() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
        ),
        "validatingwebhookconfigurations",
    )
}
fn mwc() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
        ),
        "mutatingwebhookconfigurations",
    )
}
fn crd() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
        "customresourcedefinitions",
    )
}

/// What was registered for one run, so it can be removed.
#[derive(Debug, Default)]
pub struct Registration {
    namespace: String,
    run_label: String,
    /// (resource, name) of created configurations.
    created: Vec<(ApiResource, String)>,
    /// Conversion webhooks waiting for their CRD: (webhook, crd).
    pending: Vec<(String, String)>,
    /// CRDs whose conversion we changed.
    patched_crds: Vec<String>,
}

impl Registration {
    /// Starts every webhook on `server` and registers the admission ones now, the
    /// conversion ones as soon as their CRD exists.
    pub async fn register(
        client: &kube::Client,
        server: &WebhookServer,
        specs: &[WebhookSpec],
        namespace: &str,
        run_label: &str,
    ) -> Result<Registration, WebhookError> {
        let mut reg = Registration {
            namespace: namespace.to_string(),
            run_label: run_label.to_string(),
            ..Default::default()
        };
        if specs.iter().any(|s| s.kind != WebhookKind::Conversion) {
            server
                .add(
                    BARRIER,
                    WebhookKind::Validating,
                    super::BehaviourSpec::new(super::Behaviour::Allow),
                )
                .await?;
        }
        for spec in specs {
            server
                .add(&spec.name, spec.kind, spec.initial.clone())
                .await?;
            match spec.kind {
                WebhookKind::Conversion => reg
                    .pending
                    .push((spec.name.clone(), spec.crd.clone().unwrap_or_default())),
                kind => {
                    let ar = if kind == WebhookKind::Validating {
                        vwc()
                    } else {
                        mwc()
                    };
                    let name = format!("preflight-{namespace}-{}", spec.name);
                    let obj = configuration(&ar, &name, spec, server, namespace, run_label)?;
                    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
                    api.create(&PostParams::default(), &obj)
                        .await
                        .map_err(|e| WebhookError::Register {
                            name: spec.name.clone(),
                            detail: e.to_string(),
                        })?;
                    reg.created.push((ar, name.clone()));
                    barrier(client, server, namespace, &name)
                        .await
                        .map_err(|detail| WebhookError::Register {
                            name: spec.name.clone(),
                            detail,
                        })?;
                }
            }
        }
        reg.register_pending(client, server).await?;
        Ok(reg)
    }

    /// Points pending conversion webhooks' CRDs at the server, for those CRDs that
    /// exist now. Returns how many are still pending.
    pub async fn register_pending(
        &mut self,
        client: &kube::Client,
        server: &WebhookServer,
    ) -> Result<usize, WebhookError> {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &crd());
        let mut still = Vec::new();
        for (webhook, crd_name) in std::mem::take(&mut self.pending) {
            let exists = api
                .get_opt(&crd_name)
                .await
                .map_err(|e| WebhookError::Register {
                    name: webhook.clone(),
                    detail: e.to_string(),
                })?;
            if exists.is_none() {
                still.push((webhook, crd_name));
                continue;
            }
            let patch = json!({"spec": {"conversion": {
                "strategy": "Webhook",
                "webhook": {
                    "clientConfig": {"url": server.url(&webhook)?, "caBundle": server.ca_bundle()},
                    "conversionReviewVersions": ["v1"]
                }
            }}});
            let patched = api
                .patch(&crd_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| WebhookError::Register {
                    name: webhook.clone(),
                    detail: format!("patching CRD {crd_name}: {e}"),
                })?;
            self.patched_crds.push(crd_name.clone());
            conversion_barrier(client, server, &webhook, &patched)
                .await
                .map_err(|detail| WebhookError::Register {
                    name: webhook.clone(),
                    detail,
                })?;
        }
        let n = still.len();
        self.pending = still;
        Ok(n)
    }

    /// Names of the configurations created (for reports and the kubeconfig provider).
    pub fn created(&self) -> Vec<String> {
        self.created.iter().map(|(_, n)| n.clone()).collect()
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn run_label(&self) -> &str {
        &self.run_label
    }

    /// Removes every configuration and restores patched CRDs. Best effort: every
    /// failure is returned, none stops the rest.
    pub async fn teardown(&mut self, client: &kube::Client) -> Vec<String> {
        let mut errors = Vec::new();
        for (ar, name) in self.created.drain(..) {
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => errors.push(format!("deleting {} {name}: {e}", ar.kind)),
            }
        }
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &crd());
        for crd_name in self.patched_crds.drain(..) {
            let patch = json!({"spec": {"conversion": {"strategy": "None", "webhook": null}}});
            match api
                .patch(&crd_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => errors.push(format!("restoring conversion of CRD {crd_name}: {e}")),
            }
        }
        errors
    }
}

/// Waits until the API server converts through the newly patched conversion webhook:
/// lists the CRD's objects at a served version other than the storage version until
/// the webhook records a conversion (or the list fails calling it, when it is broken).
/// Where no object exists nothing is converted, so nothing can race: no wait.
async fn conversion_barrier(
    client: &kube::Client,
    server: &WebhookServer,
    webhook: &str,
    crd: &DynamicObject,
) -> Result<(), String> {
    let spec = &crd.data["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default();
    let kind = spec["names"]["kind"].as_str().unwrap_or_default();
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    let Some(other) = versions
        .iter()
        .find(|v| v["served"] == true && v["storage"] != true)
        .and_then(|v| v["name"].as_str())
    else {
        return Ok(());
    };
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, other, kind), plural);
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let before = server
        .records()
        .iter()
        .filter(|r| r.webhook == webhook)
        .count();
    let started = std::time::Instant::now();
    loop {
        match api.list(&kube::api::ListParams::default().limit(1)).await {
            Ok(list) if list.items.is_empty() => return Ok(()),
            Ok(_) => {}
            Err(e) if crate::api_error::conversion_webhook_failed(&e) => return Ok(()),
            Err(_) => {}
        }
        if server
            .records()
            .iter()
            .filter(|r| r.webhook == webhook)
            .count()
            > before
        {
            return Ok(());
        }
        if started.elapsed() >= BARRIER_DEADLINE {
            return Err(format!(
                "the API server did not start calling the conversion webhook of {plural}.{group} within {} s",
                BARRIER_DEADLINE.as_secs()
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A label value (at most 63 characters) for configuration `name`.
fn barrier_token(name: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(name.as_bytes())[..8])
}

/// Waits until the API server calls configuration `name` (its barrier entry), sending a
/// dry-run ConfigMap CREATE until it does.
async fn barrier(
    client: &kube::Client,
    server: &WebhookServer,
    namespace: &str,
    name: &str,
) -> Result<(), String> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        namespace,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("", "v1", "ConfigMap"),
            "configmaps",
        ),
    );
    let probe: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"preflight.dev/barrier": barrier_token(name)}},
    }))
    .map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    let mut last = String::new();
    loop {
        // The answer does not matter (another webhook may refuse it): only whether
        // the barrier entry was called.
        if let Err(e) = api
            .create(
                &PostParams {
                    dry_run: true,
                    ..Default::default()
                },
                &probe,
            )
            .await
        {
            last = e.to_string();
        }
        if server.barrier_seen(name) {
            return Ok(());
        }
        if started.elapsed() >= BARRIER_DEADLINE {
            return Err(format!(
                "the API server did not start calling configuration {name} within {} s{}",
                BARRIER_DEADLINE.as_secs(),
                if last.is_empty() {
                    String::new()
                } else {
                    format!(" (last probe: {last})")
                }
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn configuration(
    ar: &ApiResource,
    name: &str,
    spec: &WebhookSpec,
    server: &WebhookServer,
    namespace: &str,
    run_label: &str,
) -> Result<DynamicObject, WebhookError> {
    let namespace_selector = spec
        .namespace_selector
        .clone()
        .unwrap_or_else(|| json!({"matchLabels": {"kubernetes.io/metadata.name": namespace}}));
    let mut hook = json!({
        "name": format!("{}.{namespace}.preflight.dev", spec.name),
        "clientConfig": {"url": server.url(&spec.name)?, "caBundle": server.ca_bundle()},
        "rules": spec.rules,
        "failurePolicy": match spec.failure_policy { FailurePolicy::Fail => "Fail", FailurePolicy::Ignore => "Ignore" },
        "sideEffects": match spec.side_effects {
            SideEffects::None => "None", SideEffects::NoneOnDryRun => "NoneOnDryRun",
            SideEffects::Some => "Some", SideEffects::Unknown => "Unknown",
        },
        "admissionReviewVersions": ["v1"],
        "namespaceSelector": namespace_selector,
    });
    if let Some(t) = spec.timeout_seconds {
        hook["timeoutSeconds"] = json!(t);
    }
    if let Some(m) = spec.match_policy {
        hook["matchPolicy"] = json!(match m {
            MatchPolicy::Exact => "Exact",
            MatchPolicy::Equivalent => "Equivalent",
        });
    }
    if let Some(sel) = &spec.object_selector {
        hook["objectSelector"] = sel.clone();
    }
    if ar.kind == "MutatingWebhookConfiguration" {
        hook["reinvocationPolicy"] = Value::String("Never".into());
    }
    let barrier = barrier_entry(
        server,
        &format!("barrier-{}.{namespace}.preflight.dev", spec.name),
        name,
        namespace,
    )?;
    let obj = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": ar.kind,
        "metadata": {"name": name, "labels": {MANAGED_BY.0: MANAGED_BY.1, "preflight.dev/run": run_label}},
        "webhooks": [barrier, hook],
    });
    serde_json::from_value(obj).map_err(|e| WebhookError::Register {
        name: spec.name.clone(),
        detail: e.to_string(),
    })
}

/// The fail-open entry that proves configuration `config` is live (see [`BARRIER`]).
fn barrier_entry(
    server: &WebhookServer,
    entry: &str,
    config: &str,
    namespace: &str,
) -> Result<Value, WebhookError> {
    Ok(json!({
        "name": entry,
        "clientConfig": {"url": server.url(BARRIER)?, "caBundle": server.ca_bundle()},
        "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"], "scope": "Namespaced"}],
        "failurePolicy": "Ignore",
        "sideEffects": "None",
        "timeoutSeconds": 5,
        "admissionReviewVersions": ["v1"],
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        "objectSelector": {"matchLabels": {"preflight.dev/barrier": barrier_token(config)}},
    }))
}

/// The server's name for webhook `webhook` of captured configuration `config`.
pub fn captured_hook(config: &str, webhook: &str) -> String {
    format!("{config}:{webhook}")
}

/// Registers a captured admission configuration as it was (rules, selectors, match
/// conditions, failure policy, timeouts), with only each webhook's `clientConfig`
/// pointed at `server` (one hook per webhook, answering `allow`), plus the fail-open
/// barrier entry probed in `barrier_namespace`. Returns once the API server calls it.
pub async fn register_captured(
    client: &kube::Client,
    server: &WebhookServer,
    kind: WebhookKind,
    captured: &Value,
    barrier_namespace: &str,
) -> Result<Vec<String>, WebhookError> {
    let name = captured["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let failed = register_error(&name);
    if server.kind(BARRIER).is_none() {
        server
            .add(
                BARRIER,
                WebhookKind::Validating,
                super::BehaviourSpec::new(super::Behaviour::Allow),
            )
            .await?;
    }
    let mut obj = captured.clone();
    let mut hooks = Vec::new();
    for w in obj["webhooks"].as_array_mut().into_iter().flatten() {
        let hook = captured_hook(&name, w["name"].as_str().unwrap_or_default());
        server.allow_captured(&hook, kind).await?;
        w["clientConfig"] = server.client_config(&hook)?;
        hooks.push(hook);
    }
    let entry = barrier_entry(
        server,
        &format!("barrier.{name}.preflight.dev"),
        &name,
        barrier_namespace,
    )?;
    if let Some(list) = obj["webhooks"].as_array_mut() {
        list.insert(0, entry);
    }
    let ar = match kind {
        WebhookKind::Mutating => mwc(),
        _ => vwc(),
    };
    let obj: DynamicObject =
        serde_json::from_value(obj).map_err(|e| failed(format!("not a configuration: {e}")))?;
    create_or_replace(&Api::<DynamicObject>::all_with(client.clone(), &ar), obj)
        .await
        .map_err(|e| failed(e.to_string()))?;
    barrier(client, server, barrier_namespace, &name)
        .await
        .map_err(failed)?;
    Ok(hooks)
}

/// Creates a captured CRD; a conversion webhook's `clientConfig` is pointed at
/// `server` (hook `crd:<name>`, converting). Returns the hook, if it has one, once the
/// CRD is established.
pub async fn register_captured_crd(
    client: &kube::Client,
    server: &WebhookServer,
    captured: &Value,
) -> Result<Option<String>, WebhookError> {
    let name = captured["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let failed = register_error(&name);
    let mut obj = captured.clone();
    let mut hook = None;
    if obj["spec"]["conversion"]["strategy"] == "Webhook" {
        let h = format!("crd:{name}");
        server.allow_captured(&h, WebhookKind::Conversion).await?;
        obj["spec"]["conversion"]["webhook"]["clientConfig"] = server.client_config(&h)?;
        hook = Some(h);
    }
    let obj: DynamicObject =
        serde_json::from_value(obj).map_err(|e| failed(format!("not a CRD: {e}")))?;
    let api = Api::<DynamicObject>::all_with(client.clone(), &crd());
    create_or_replace(&api, obj)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let started = std::time::Instant::now();
    loop {
        let got = api.get(&name).await.map_err(|e| failed(e.to_string()))?;
        let established = got.data["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Established" && c["status"] == "True");
        if established {
            return Ok(hook);
        }
        if started.elapsed() >= BARRIER_DEADLINE {
            return Err(failed(format!(
                "not established within {} s",
                BARRIER_DEADLINE.as_secs()
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Creates `obj`, or replaces the object of its name where one exists (a release
/// created it with its own `clientConfig`, which replay points at its server).
async fn create_or_replace(
    api: &Api<DynamicObject>,
    mut obj: DynamicObject,
) -> Result<(), kube::Error> {
    match api.create(&PostParams::default(), &obj).await {
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let name = obj.metadata.name.clone().unwrap_or_default();
            let current = api.get(&name).await?;
            obj.metadata.resource_version = current.metadata.resource_version;
            api.replace(&name, &PostParams::default(), &obj).await?;
            Ok(())
        }
        other => other.map(|_| ()),
    }
}

/// A registration error of the captured object `name`.
fn register_error(name: &str) -> impl Fn(String) -> WebhookError + '_ {
    move |detail| WebhookError::Register {
        name: name.to_string(),
        detail,
    }
}
