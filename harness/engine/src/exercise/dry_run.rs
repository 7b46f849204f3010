//! A true server-side dry run of the lifecycle.
//!
//! Helm's own `--dry-run` never sends objects through admission, so webhooks never
//! judge it. Here every object goes to the API server with `dryRun=All`: the install
//! creates each rendered manifest; the uninstall deletes each object of the release
//! as Helm would (background propagation) and each of their dependents as the garbage
//! collector would, impersonating its service account
//! (`system:serviceaccount:kube-system:generic-garbage-collector`). Admission webhooks
//! (with `sideEffects: None`) answer for real, and nothing changes.

use std::collections::{BTreeMap, BTreeSet};

use kube::api::{Api, DeleteParams, DynamicObject, PostParams, PropagationPolicy};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiResource, Scope};

use crate::evidence::{Evidence, ObjectRef};
use crate::snapshot::Snapshot;

pub use preflight_core::dry_run::{DryRunObject, DryRunOutcome, DryRunReport, GC_USER};

/// Sorts an API answer by what the API server's message says (`crate::refusal`): the
/// outcome, the webhook it names, and the message.
pub fn classify(result: Result<(), kube::Error>) -> (DryRunOutcome, Option<String>, String) {
    use crate::refusal::{RefusalKind, parse_refusal};
    match result {
        Ok(()) => (DryRunOutcome::Admitted, None, String::new()),
        Err(kube::Error::Api(e)) => match parse_refusal(&e.message) {
            Some(r) => (
                match r.kind {
                    RefusalKind::Denied => DryRunOutcome::Denied,
                    RefusalKind::WebhookFailed => DryRunOutcome::WebhookFailed,
                    RefusalKind::TimedOut => DryRunOutcome::TimedOut,
                    RefusalKind::DryRunUnsupported => DryRunOutcome::DryRunUnsupported,
                },
                Some(r.webhook),
                e.message.clone(),
            ),
            None => (DryRunOutcome::Error, None, e.message.clone()),
        },
        Err(e) => (DryRunOutcome::Error, None, e.to_string()),
    }
}

fn gvk_of(obj: &serde_json::Value) -> Option<GroupVersionKind> {
    let api_version = obj.get("apiVersion")?.as_str()?;
    let kind = obj.get("kind")?.as_str()?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    Some(GroupVersionKind::gvk(group, version, kind))
}

fn api_for(
    client: &kube::Client,
    ar: &ApiResource,
    scope: &Scope,
    namespace: &str,
) -> Api<DynamicObject> {
    match scope {
        Scope::Namespaced => Api::namespaced_with(client.clone(), namespace, ar),
        Scope::Cluster => Api::all_with(client.clone(), ar),
    }
}

/// Dry-run creates every rendered manifest in `namespace`.
pub async fn install(
    client: &kube::Client,
    namespace: &str,
    manifests: &[serde_json::Value],
) -> Result<DryRunReport, kube::Error> {
    let disc = crate::snapshot::discover(client).await?;
    let mut objects = Vec::new();
    for m in manifests {
        let Some(gvk) = gvk_of(m) else { continue };
        let name = m
            .pointer("/metadata/name")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        let mut rec = DryRunObject {
            api_version: m["apiVersion"].as_str().unwrap_or_default().into(),
            kind: gvk.kind.clone(),
            namespace: None,
            name: name.clone(),
            operation: "CREATE".into(),
            as_user: "helm".into(),
            outcome: DryRunOutcome::Admitted,
            webhook: None,
            message: String::new(),
        };
        let Some((ar, caps)) = disc.resolve_gvk(&gvk) else {
            rec.outcome = DryRunOutcome::Skipped;
            rec.message = format!(
                "{} is not served yet (its CRD is installed by the chart first)",
                gvk.kind
            );
            objects.push(rec);
            continue;
        };
        let mut obj: DynamicObject = match serde_json::from_value(m.clone()) {
            Ok(o) => o,
            Err(e) => {
                rec.outcome = DryRunOutcome::Error;
                rec.message = e.to_string();
                objects.push(rec);
                continue;
            }
        };
        if caps.scope == Scope::Namespaced {
            obj.metadata.namespace = Some(namespace.to_string());
            rec.namespace = Some(namespace.to_string());
        }
        let api = api_for(client, &ar, &caps.scope, namespace);
        let pp = PostParams {
            dry_run: true,
            ..Default::default()
        };
        let (outcome, webhook, message) = classify(api.create(&pp, &obj).await.map(|_| ()));
        rec.outcome = outcome;
        rec.webhook = webhook;
        rec.message = message;
        objects.push(rec);
    }
    Ok(DryRunReport {
        action: "install".into(),
        objects,
    })
}

/// Dry-run deletes the release's objects (as Helm) and, transitively, their
/// dependents found in `current` (as the garbage collector).
pub async fn uninstall(
    client: &kube::Client,
    gc_client: &kube::Client,
    namespace: &str,
    manifests: &[serde_json::Value],
    current: &Snapshot,
) -> Result<DryRunReport, kube::Error> {
    let disc = crate::snapshot::discover(client).await?;
    let background = DeleteParams {
        dry_run: true,
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    let mut objects = Vec::new();
    let mut release_uids = BTreeSet::new();
    for m in manifests {
        let Some(gvk) = gvk_of(m) else { continue };
        let Some((ar, caps)) = disc.resolve_gvk(&gvk) else {
            continue;
        };
        let name = m
            .pointer("/metadata/name")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        let ns = (caps.scope == Scope::Namespaced).then(|| namespace.to_string());
        if let Some(found) = current
            .objects
            .iter()
            .find(|o| o.kind == gvk.kind && o.name == name && o.namespace == ns)
        {
            release_uids.insert(found.uid.clone());
        }
        let api = api_for(client, &ar, &caps.scope, namespace);
        let (outcome, webhook, message) =
            classify(api.delete(&name, &background).await.map(|_| ()));
        objects.push(DryRunObject {
            api_version: ar.api_version.clone(),
            kind: gvk.kind.clone(),
            namespace: ns,
            name,
            operation: "DELETE".into(),
            as_user: "helm".into(),
            outcome,
            webhook,
            message,
        });
    }
    // Dependents, breadth-first down the ownership graph.
    let mut children: BTreeMap<&str, Vec<&crate::snapshot::ObjectRecord>> = BTreeMap::new();
    for o in &current.objects {
        for r in &o.owners {
            children.entry(r.uid.as_str()).or_default().push(o);
        }
    }
    let mut queue: Vec<String> = release_uids.into_iter().collect();
    let mut seen = BTreeSet::new();
    while let Some(uid) = queue.pop() {
        for child in children.get(uid.as_str()).cloned().unwrap_or_default() {
            if !seen.insert(child.uid.clone()) {
                continue;
            }
            queue.push(child.uid.clone());
            let (group, version) = child
                .api_version
                .split_once('/')
                .unwrap_or(("", &child.api_version));
            let Some((ar, caps)) =
                disc.resolve_gvk(&GroupVersionKind::gvk(group, version, &child.kind))
            else {
                continue;
            };
            let api = api_for(
                gc_client,
                &ar,
                &caps.scope,
                child.namespace.as_deref().unwrap_or(namespace),
            );
            let (outcome, webhook, message) =
                classify(api.delete(&child.name, &background).await.map(|_| ()));
            objects.push(DryRunObject {
                api_version: child.api_version.clone(),
                kind: child.kind.clone(),
                namespace: child.namespace.clone(),
                name: child.name.clone(),
                operation: "DELETE".into(),
                as_user: GC_USER.into(),
                outcome,
                webhook,
                message,
            });
        }
    }
    Ok(DryRunReport {
        action: "uninstall".into(),
        objects,
    })
}

/// The verification probe at verdict time: a dry-run DELETE of each object in
/// `namespace` whose owner is gone (what the garbage collector should be deleting),
/// sent as the garbage collector's service account. A refusal names the webhook that
/// refuses *now*, as [`Evidence::ProbeRefusal`] of the object (rendered `kube-apiserver
/// probe: USER DELETE resource namespace/name: outcome message`). Answers that are not
/// refusals (admitted, or no right to impersonate) give no evidence.
pub async fn probe_orphans(
    client: &kube::Client,
    gc_client: &kube::Client,
    namespace: &str,
    after: &Snapshot,
) -> Vec<Evidence> {
    let Ok(disc) = crate::snapshot::discover(client).await else {
        return Vec::new();
    };
    let params = DeleteParams {
        dry_run: true,
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    let mut lines = Vec::new();
    for (o, _) in crate::ownership::orphans(after) {
        if o.namespace.as_deref() != Some(namespace) {
            continue;
        }
        let (group, version) = o
            .api_version
            .split_once('/')
            .unwrap_or(("", &o.api_version));
        let Some((ar, caps)) = disc.resolve_gvk(&GroupVersionKind::gvk(group, version, &o.kind))
        else {
            continue;
        };
        let api = api_for(gc_client, &ar, &caps.scope, namespace);
        let (outcome, _, message) = classify(api.delete(&o.name, &params).await.map(|_| ()));
        if outcome.is_refusal() {
            lines.push(Evidence::ProbeRefusal {
                object: ObjectRef {
                    kind: Some(o.kind.clone()),
                    resource: Some(ar.plural.clone()),
                    namespace: Some(namespace.to_string()),
                    name: o.name.clone(),
                },
                user: GC_USER.to_string(),
                outcome: outcome.to_string(),
                message: message.chars().take(300).collect(),
            });
        }
    }
    lines
}
