//! Each captured webhook's health *now*, from reads only, and the workload behind it.
//!
//! A twin must be the cluster as it is, not as it would be if everything were healthy:
//! a webhook whose Service is gone today fails every call the API server makes to it,
//! and a conversion webhook that cannot answer stalls the garbage collector of
//! Kubernetes <= 1.31 once the upgrade restarts the controller manager
//! (kubernetes/kubernetes#101078). So the capture records, per webhook:
//!
//! * its Service: present or not, with the webhook's port or not, and its ready
//!   endpoints from the EndpointSlices (a URL webhook is `unknown`: reads cannot tell);
//! * for a CRD's conversion webhook with stored objects, a one-object list at a served
//!   version that is not the storage version: the API server must call the webhook to
//!   answer it, so its answer is the webhook's health, with the API server's message;
//! * the workload behind the Service (Deployment or StatefulSet, replicas, the
//!   PodDisruptionBudgets that cover its Pods, node selector, affinity, tolerations):
//!   what a node drain will do to the webhook.
//!
//! Every request is a GET or a LIST; a read the credentials refuse makes the health
//! `unknown` with the refusal as evidence.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PodTemplateSpec, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::ApiResource;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::selection::{Labels, selector_matches};

/// A webhook's health when captured.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    /// Its Service has ready endpoints (and, for a conversion webhook with objects,
    /// the API server converted one through it).
    Healthy,
    /// The API server cannot reach it: no Service, no such port, or no ready endpoint
    /// (for a conversion webhook also: the conversion list failed to reach it).
    Unreachable,
    /// It is reached but answers with an error (a conversion list failed while its
    /// Service has ready endpoints).
    Failing,
    /// Reads cannot tell (a URL webhook, a read the credentials refuse).
    Unknown,
}

impl Health {
    pub fn word(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Unreachable => "unreachable",
            Health::Failing => "failing",
            Health::Unknown => "unknown",
        }
    }

    /// Whether the as-is pass makes it fail.
    pub fn is_failing(self) -> bool {
        matches!(self, Health::Unreachable | Health::Failing)
    }
}

/// Which kind of webhook a health entry is about.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum HookKind {
    Validating,
    Mutating,
    Conversion,
}

/// One webhook's health in `capture.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookHealth {
    pub kind: HookKind,
    /// Its name in the replay: `CONFIGURATION:WEBHOOK`, or `crd:CRD` for a conversion
    /// webhook.
    pub hook: String,
    pub health: Health,
    /// What was read and what it said, in order.
    pub evidence: Vec<String>,
    /// `namespace/name:port` of its Service, if it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The workload behind the Service, if one was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<Backend>,
}

/// The workload that serves a webhook's Service.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    /// `Deployment` or `StatefulSet`.
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub replicas: i32,
    pub ready_replicas: i32,
    /// The PodDisruptionBudgets whose selector covers its Pods.
    pub pod_disruption_budgets: Vec<Budget>,
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Value>,
    pub tolerations: Vec<Value>,
    /// The Pods' topology spread constraints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<Value>,
    /// The Pods' labels (its template's): affinity and spread rules often select the
    /// backend's own Pods, e.g. to keep its replicas on different nodes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
}

/// A PodDisruptionBudget as a drain sees it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_available: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<String>,
    /// `status.disruptionsAllowed` when read.
    pub disruptions_allowed: i32,
}

/// A webhook's `clientConfig.service`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
    pub port: i32,
}

impl ServiceRef {
    /// From a `clientConfig` object; `None` for a URL webhook.
    pub fn from_client_config(cc: &Value) -> Option<ServiceRef> {
        let s = cc.get("service")?;
        Some(ServiceRef {
            namespace: s.get("namespace")?.as_str()?.to_string(),
            name: s.get("name")?.as_str()?.to_string(),
            port: s
                .get("port")
                .and_then(Value::as_i64)
                .and_then(|p| i32::try_from(p).ok())
                .unwrap_or(443),
        })
    }

    fn display(&self) -> String {
        format!("{}/{}:{}", self.namespace, self.name, self.port)
    }
}

/// What reading a Service told.
struct ServiceHealth {
    health: Health,
    evidence: Vec<String>,
    backend: Option<Backend>,
}

/// A read the credentials refused or that failed otherwise, as evidence.
fn refused(what: &str, e: &kube::Error) -> String {
    format!(
        "{what}: not read: {}",
        crate::redact::redact(&e.to_string())
    )
}

/// Reads a webhook Service, its EndpointSlices and the workload behind it.
async fn service_health(client: &kube::Client, svc: &ServiceRef) -> ServiceHealth {
    let unknown = |evidence: String| ServiceHealth {
        health: Health::Unknown,
        evidence: vec![evidence],
        backend: None,
    };
    let what = format!("Service {}/{}", svc.namespace, svc.name);
    let service = match Api::<Service>::namespaced(client.clone(), &svc.namespace)
        .get_opt(&svc.name)
        .await
    {
        Ok(Some(s)) => s,
        Ok(None) => {
            return ServiceHealth {
                health: Health::Unreachable,
                evidence: vec![format!("{what}: not found")],
                backend: None,
            };
        }
        Err(e) => return unknown(refused(&what, &e)),
    };
    let spec = service.spec.unwrap_or_default();
    if spec.type_.as_deref() == Some("ExternalName") {
        return unknown(format!(
            "{what}: an ExternalName Service (reads cannot tell whether its target answers)"
        ));
    }
    let ports = spec.ports.unwrap_or_default();
    let Some(port) = ports.iter().find(|p| p.port == svc.port) else {
        return ServiceHealth {
            health: Health::Unreachable,
            evidence: vec![format!("{what}: has no port {}", svc.port)],
            backend: None,
        };
    };
    let backend = match &spec.selector {
        Some(sel) if !sel.is_empty() => backend(client, &svc.namespace, sel).await,
        _ => None,
    };
    let (health, line) = match ready_endpoints(client, svc, port.name.as_deref()).await {
        Ok((ready, total)) if ready > 0 => (
            Health::Healthy,
            format!("{what}: {ready} ready endpoint(s) of {total}"),
        ),
        Ok((_, total)) => (
            Health::Unreachable,
            format!("{what}: no ready endpoint ({total} endpoint(s) in its EndpointSlices)"),
        ),
        Err(e) => (Health::Unknown, refused(&format!("{what} endpoints"), &e)),
    };
    ServiceHealth {
        health,
        evidence: vec![line],
        backend,
    }
}

/// `(ready, all)` endpoints of the Service's EndpointSlices that serve the named port
/// (a slice without ports serves every port). An endpoint whose `ready` condition is
/// unset counts as ready, as the API says consumers should.
async fn ready_endpoints(
    client: &kube::Client,
    svc: &ServiceRef,
    port_name: Option<&str>,
) -> Result<(usize, usize), kube::Error> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), &svc.namespace);
    let selector = format!("kubernetes.io/service-name={}", svc.name);
    let slices =
        super::capture::list_all_with(&api, ListParams::default().labels(&selector)).await?;
    let (mut ready, mut all) = (0, 0);
    for s in slices {
        let serves = s.ports.as_ref().is_none_or(|ports| {
            ports.is_empty()
                || ports
                    .iter()
                    .any(|p| p.name.as_deref().unwrap_or_default() == port_name.unwrap_or_default())
        });
        if !serves {
            continue;
        }
        for e in &s.endpoints {
            all += 1;
            if e.conditions.as_ref().and_then(|c| c.ready) != Some(false) {
                ready += 1;
            }
        }
    }
    Ok((ready, all))
}

/// The Deployment or StatefulSet in `namespace` whose Pod template the Service's
/// selector selects, with the budgets that cover it.
async fn backend(
    client: &kube::Client,
    namespace: &str,
    selector: &BTreeMap<String, String>,
) -> Option<Backend> {
    let selects = |t: &PodTemplateSpec| {
        let labels = t
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    };
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    let mut found = None;
    if let Ok(list) = super::capture::list_all(&deployments).await {
        found = list.into_iter().find_map(|d| {
            let spec = d.spec?;
            selects(&spec.template).then(|| {
                let status = d.status.unwrap_or_default();
                workload(
                    "Deployment",
                    namespace,
                    d.metadata.name.unwrap_or_default(),
                    spec.replicas.unwrap_or(1),
                    status.ready_replicas.unwrap_or(0),
                    spec.template,
                )
            })
        });
    }
    if found.is_none()
        && let Ok(list) = super::capture::list_all(&statefulsets).await
    {
        found = list.into_iter().find_map(|s| {
            let spec = s.spec?;
            selects(&spec.template).then(|| {
                let status = s.status.unwrap_or_default();
                workload(
                    "StatefulSet",
                    namespace,
                    s.metadata.name.unwrap_or_default(),
                    spec.replicas.unwrap_or(1),
                    status.ready_replicas.unwrap_or(0),
                    spec.template,
                )
            })
        });
    }
    let (mut backend, labels) = found?;
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), namespace);
    if let Ok(list) = super::capture::list_all(&budgets).await {
        backend.pod_disruption_budgets = covering(list, &labels);
    }
    Some(backend)
}

/// A workload's facts and its Pods' labels.
fn workload(
    kind: &str,
    namespace: &str,
    name: String,
    replicas: i32,
    ready: i32,
    template: PodTemplateSpec,
) -> (Backend, Labels) {
    let labels = template.metadata.and_then(|m| m.labels).unwrap_or_default();
    let pod = template.spec.unwrap_or_default();
    let backend = Backend {
        kind: kind.into(),
        namespace: namespace.into(),
        name,
        replicas,
        ready_replicas: ready,
        pod_disruption_budgets: Vec::new(),
        node_selector: pod.node_selector.unwrap_or_default(),
        affinity: pod.affinity.and_then(|a| serde_json::to_value(a).ok()),
        tolerations: pod
            .tolerations
            .unwrap_or_default()
            .into_iter()
            .filter_map(|t| serde_json::to_value(t).ok())
            .collect(),
        topology_spread_constraints: pod
            .topology_spread_constraints
            .unwrap_or_default()
            .into_iter()
            .filter_map(|t| serde_json::to_value(t).ok())
            .collect(),
        pod_labels: labels.clone(),
    };
    (backend, labels)
}

/// The budgets whose selector selects Pods with `labels` (policy/v1: a null selector
/// selects nothing, an empty one everything).
pub fn covering(budgets: Vec<PodDisruptionBudget>, labels: &Labels) -> Vec<Budget> {
    let show = |v: Option<k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>| {
        v.map(|v| match v {
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i) => i.to_string(),
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s,
        })
    };
    budgets
        .into_iter()
        .filter_map(|b| {
            let spec = b.spec?;
            let selector = spec.selector.as_ref()?;
            if !selector_matches(Some(selector), labels).unwrap_or(false) {
                return None;
            }
            Some(Budget {
                name: b.metadata.name.unwrap_or_default(),
                min_available: show(spec.min_available),
                max_unavailable: show(spec.max_unavailable),
                disruptions_allowed: b.status.map_or(0, |s| s.disruptions_allowed),
            })
        })
        .collect()
}

/// The health of every webhook of the captured admission configurations.
pub async fn admission(
    client: &kube::Client,
    configs: &[(HookKind, DynamicObject)],
) -> Vec<WebhookHealth> {
    let mut out = Vec::new();
    for (kind, c) in configs {
        let config = c.metadata.name.clone().unwrap_or_default();
        for w in c
            .data
            .get("webhooks")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = w.get("name").and_then(Value::as_str).unwrap_or_default();
            let hook = crate::webhook::captured_hook(&config, name);
            out.push(one(client, *kind, hook, w.get("clientConfig")).await);
        }
    }
    out
}

/// One webhook's Service health (URL webhooks are `unknown`).
async fn one(
    client: &kube::Client,
    kind: HookKind,
    hook: String,
    client_config: Option<&Value>,
) -> WebhookHealth {
    let Some(svc) = client_config.and_then(ServiceRef::from_client_config) else {
        let url = client_config
            .and_then(|c| c.get("url"))
            .and_then(Value::as_str)
            .map(crate::redact::redact)
            .unwrap_or_else(|| "no clientConfig".into());
        return WebhookHealth {
            kind,
            hook,
            health: Health::Unknown,
            evidence: vec![format!(
                "URL webhook ({url}): reads cannot tell whether it answers"
            )],
            service: None,
            backend: None,
        };
    };
    let s = service_health(client, &svc).await;
    WebhookHealth {
        kind,
        hook,
        health: s.health,
        evidence: s.evidence,
        service: Some(svc.display()),
        backend: s.backend,
    }
}

/// The health of every CRD's conversion webhook: its Service, then (when the CRD has
/// stored objects and serves a version other than its storage version) a one-object
/// list at that version, which the API server answers only through the webhook.
/// `stored` counts each CRD's objects (from [`super::stored`]).
pub async fn conversion(
    client: &kube::Client,
    crds: &[DynamicObject],
    stored: &BTreeMap<String, usize>,
) -> Vec<WebhookHealth> {
    let mut out = Vec::new();
    for crd in crds {
        if crd.data.pointer("/spec/conversion/strategy") != Some(&Value::from("Webhook")) {
            continue;
        }
        let name = crd.metadata.name.clone().unwrap_or_default();
        let cc = crd.data.pointer("/spec/conversion/webhook/clientConfig");
        let mut h = one(client, HookKind::Conversion, format!("crd:{name}"), cc).await;
        let objects = stored.get(&name).copied().unwrap_or(0);
        match (objects, non_storage_version(crd)) {
            (0, _) => h.evidence.push(
                "no stored objects: nothing to convert, so no list could make the API server call it"
                    .into(),
            ),
            (_, None) => h.evidence.push(
                "serves no version other than its storage version: the API server has nothing to convert"
                    .into(),
            ),
            (_, Some(ar)) => probe_conversion(client, &ar, &mut h).await,
        }
        out.push(h);
    }
    out
}

/// Lists one object at `ar` (a version that needs conversion) and folds the answer
/// into `h`.
async fn probe_conversion(client: &kube::Client, ar: &ApiResource, h: &mut WebhookHealth) {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
    let what = format!("list {} at {} (limit 1)", ar.plural, ar.api_version);
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => {
            h.evidence.push(format!("{what}: answered (converted)"));
            if h.health == Health::Unknown && h.service.is_none() {
                // A URL webhook that converted: it answers now.
                h.health = Health::Healthy;
            }
        }
        Err(kube::Error::Api(e)) if crate::api_error::is_denial(e.code) => {
            h.evidence.push(format!(
                "{what}: not allowed ({}), health from the Service only",
                crate::redact::redact(&e.message)
            ));
        }
        Err(e) => {
            let message = match &e {
                kube::Error::Api(s) => s.message.clone(),
                other => other.to_string(),
            };
            h.evidence.push(format!(
                "{what}: failed: {}",
                crate::redact::redact(&message)
            ));
            h.health = match h.health {
                Health::Unreachable => Health::Unreachable,
                _ if crate::api_error::webhook_unreachable(&message) => Health::Unreachable,
                _ => Health::Failing,
            };
        }
    }
}

/// A served version other than the storage version, as an API resource (the newest by
/// Kubernetes' version priority, so the list is the one most clients make).
pub fn non_storage_version(crd: &DynamicObject) -> Option<ApiResource> {
    let spec = crd.data.get("spec")?;
    let group = spec.get("group")?.as_str()?;
    let kind = spec.pointer("/names/kind")?.as_str()?;
    let plural = spec.pointer("/names/plural")?.as_str()?;
    let mut versions: Vec<&str> = spec
        .get("versions")?
        .as_array()?
        .iter()
        .filter(|v| v.get("served") == Some(&Value::Bool(true)))
        .filter(|v| v.get("storage") != Some(&Value::Bool(true)))
        .filter_map(|v| v.get("name")?.as_str())
        .collect();
    versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
    let version = versions.first()?;
    Some(ApiResource {
        group: group.into(),
        version: (*version).into(),
        api_version: format!("{group}/{version}"),
        kind: kind.into(),
        plural: plural.into(),
    })
}

/// Kubernetes' version ordering key: GA > beta > alpha > other, higher numbers first.
fn version_priority(v: &str) -> (u8, u32, u32) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let Ok(major) = digits.parse::<u32>() else {
        return (0, 0, 0);
    };
    let tail = &rest[digits.len()..];
    let minor = |t: &str| t.parse::<u32>().ok();
    if tail.is_empty() {
        (3, major, 0)
    } else if let Some(n) = tail.strip_prefix("beta").and_then(minor) {
        (2, major, n)
    } else if let Some(n) = tail.strip_prefix("alpha").and_then(minor) {
        (1, major, n)
    } else {
        (0, 0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_served_version_that_needs_conversion_is_probed() {
        let crd: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.x.dev"},
            "spec": {
                "group": "x.dev",
                "names": {"kind": "Widget", "plural": "widgets"},
                "versions": [
                    {"name": "v1", "served": true, "storage": true},
                    {"name": "v1alpha1", "served": true, "storage": false},
                    {"name": "v2beta1", "served": true, "storage": false},
                    {"name": "v2", "served": false, "storage": false},
                ],
            },
        }))
        .unwrap();
        let ar = non_storage_version(&crd).unwrap();
        assert_eq!(ar.api_version, "x.dev/v2beta1");
        let mut only_storage = crd.clone();
        only_storage.data["spec"]["versions"] =
            serde_json::json!([{"name": "v1", "served": true, "storage": true}]);
        assert!(non_storage_version(&only_storage).is_none());
    }

    #[test]
    fn service_refs_default_to_port_443_and_urls_have_none() {
        let r = ServiceRef::from_client_config(
            &serde_json::json!({"service": {"namespace": "a", "name": "b"}}),
        )
        .unwrap();
        assert_eq!(r.display(), "a/b:443");
        assert!(ServiceRef::from_client_config(&serde_json::json!({"url": "https://x"})).is_none());
    }

    #[test]
    fn budgets_cover_by_selector_and_a_null_selector_covers_nothing() {
        let pdb = |name: &str, selector: Value| -> PodDisruptionBudget {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "spec": {"minAvailable": 1, "selector": selector},
                "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1},
            }))
            .unwrap()
        };
        let labels: Labels = [("app".to_string(), "guard".to_string())].into();
        let got = covering(
            vec![
                pdb("mine", serde_json::json!({"matchLabels": {"app": "guard"}})),
                pdb("other", serde_json::json!({"matchLabels": {"app": "web"}})),
                pdb("all", serde_json::json!({})),
                pdb("none", Value::Null),
            ],
            &labels,
        );
        let names: Vec<&str> = got.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["mine", "all"]);
        assert_eq!(got[0].min_available.as_deref(), Some("1"));
        assert_eq!(got[0].disruptions_allowed, 0);
    }

    #[test]
    fn only_unreachable_and_failing_fail_in_the_as_is_pass() {
        assert!(Health::Unreachable.is_failing() && Health::Failing.is_failing());
        assert!(!Health::Healthy.is_failing() && !Health::Unknown.is_failing());
    }
}
