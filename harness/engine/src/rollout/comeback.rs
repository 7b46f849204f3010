//! Whether the Pods a drain evicted came back: their controllers' Ready replicas, and
//! when they did not, why, from the cluster's own records.
//!
//! A drain that finishes is not an upgrade that works: the evicted Pods must be
//! created again and become Ready on the nodes that are left. Their controller
//! (ReplicaSet, StatefulSet, ReplicationController) says how many are Ready; when that
//! stays short, the reason is in what the control plane recorded: the scheduler's
//! `FailedScheduling` events on Pods it cannot place, the controller's `FailedCreate`
//! events when the API refused the Pods (an admission webhook, a quota), or the Pods'
//! own conditions. Nothing is inferred from how the workload was written.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Event, Pod, ReplicationController, Service};
use kube::api::{Api, ListParams};
use kube::core::{Selector, SelectorExt};
use preflight_core::rollout::{NotBack, NotBackCause};

/// How often the controllers are read while waiting.
const POLL: Duration = Duration::from_secs(2);
/// Per API request.
const REQUEST: Duration = Duration::from_secs(10);

/// The controller of evicted Pods.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Owner {
    namespace: String,
    kind: String,
    name: String,
    uid: String,
}

/// The evicted Pods grouped by their controller (Pods without one, and those of
/// DaemonSets and Jobs, are not expected back on another node).
fn owners(evicted: &[Pod]) -> BTreeMap<Owner, Vec<Pod>> {
    let mut out: BTreeMap<Owner, Vec<Pod>> = BTreeMap::new();
    for pod in evicted {
        let Some(owner) = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
        else {
            continue;
        };
        if !matches!(
            owner.kind.as_str(),
            "ReplicaSet" | "StatefulSet" | "ReplicationController"
        ) {
            continue;
        }
        out.entry(Owner {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            kind: owner.kind.clone(),
            name: owner.name.clone(),
            uid: owner.uid.clone(),
        })
        .or_default()
        .push(pod.clone());
    }
    out
}

/// A controller's Ready replicas over desired, and the workload's name to show
/// (a ReplicaSet's Deployment where it has one). `None` when it is gone (deleted: not
/// expected back).
async fn get<K>(
    fut: impl std::future::Future<Output = Result<Option<K>, kube::Error>>,
) -> Option<K> {
    tokio::time::timeout(REQUEST, fut).await.ok()?.ok()?
}

async fn readiness(client: &kube::Client, o: &Owner) -> Option<(i32, i32, String)> {
    match o.kind.as_str() {
        "ReplicaSet" => {
            let rs: ReplicaSet =
                get(Api::<ReplicaSet>::namespaced(client.clone(), &o.namespace).get_opt(&o.name))
                    .await?;
            let shown = rs
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|r| r.controller == Some(true))
                .map(|r| format!("{}/{}", r.kind, r.name))
                .unwrap_or_else(|| format!("ReplicaSet/{}", o.name));
            let desired = rs.spec.and_then(|s| s.replicas).unwrap_or(1);
            let ready = rs.status.and_then(|s| s.ready_replicas).unwrap_or(0);
            Some((ready, desired, shown))
        }
        "StatefulSet" => {
            let ss: StatefulSet =
                get(Api::<StatefulSet>::namespaced(client.clone(), &o.namespace).get_opt(&o.name))
                    .await?;
            let desired = ss.spec.and_then(|s| s.replicas).unwrap_or(1);
            let ready = ss.status.and_then(|s| s.ready_replicas).unwrap_or(0);
            Some((ready, desired, format!("StatefulSet/{}", o.name)))
        }
        _ => {
            let rc: ReplicationController = get(Api::<ReplicationController>::namespaced(
                client.clone(),
                &o.namespace,
            )
            .get_opt(&o.name))
            .await?;
            let desired = rc.spec.and_then(|s| s.replicas).unwrap_or(1);
            let ready = rc.status.and_then(|s| s.ready_replicas).unwrap_or(0);
            Some((ready, desired, format!("ReplicationController/{}", o.name)))
        }
    }
}

/// The Ready replicas of the controllers of every Pod on `node`, by controller uid,
/// read before its drain: a workload is expected back as Ready as it was then (one
/// whose Pods never became Ready, an image that cannot be pulled, say, is not the
/// drain's doing).
pub async fn ready_before(client: &kube::Client, node: &str) -> BTreeMap<String, i32> {
    let lp = ListParams::default().fields(&format!("spec.nodeName={node}"));
    let pods = match tokio::time::timeout(REQUEST, Api::<Pod>::all(client.clone()).list(&lp)).await
    {
        Ok(Ok(l)) => l.items,
        _ => return BTreeMap::new(),
    };
    let mut out = BTreeMap::new();
    for o in owners(&pods).keys() {
        if let Some((ready, ..)) = readiness(client, o).await {
            out.insert(o.uid.clone(), ready);
        }
    }
    out
}

/// Waits up to `timeout` for every controller of `evicted` to have its replicas Ready
/// again (all it wants, or as many as were Ready before the drain, per
/// [`ready_before`]); returns the workloads still short at the deadline, each with its
/// cause, and how long it waited.
pub async fn wait(
    client: &kube::Client,
    evicted: &[Pod],
    before: &BTreeMap<String, i32>,
    timeout: Duration,
) -> (Vec<NotBack>, Duration) {
    let start = Instant::now();
    let groups = owners(evicted);
    let mut short: Vec<(Owner, i32, i32, String)>;
    loop {
        short = Vec::new();
        for o in groups.keys() {
            if let Some((ready, desired, shown)) = readiness(client, o).await
                && ready < before.get(&o.uid).map_or(desired, |b| desired.min(*b))
            {
                short.push((o.clone(), ready, desired, shown));
            }
        }
        if short.is_empty() || start.elapsed() >= timeout || settled(client, &groups, &short).await
        {
            break;
        }
        tokio::time::sleep(POLL.min(timeout.saturating_sub(start.elapsed()))).await;
    }
    let down: Vec<Pod> = short
        .iter()
        .flat_map(|(o, ..)| groups[o].iter().cloned())
        .collect();
    let mut out = Vec::new();
    for (o, ready, desired, shown) in short {
        let cause = explain(client, &o).await;
        out.push(NotBack {
            namespace: o.namespace.clone(),
            owner: shown,
            evicted: groups[&o]
                .iter()
                .filter_map(|p| p.metadata.name.clone())
                .collect(),
            ready,
            desired,
            cause,
        });
    }
    mark_deadlocks(client, &mut out, &down).await;
    (out, start.elapsed())
}

/// The events about one object, newest last.
async fn events(client: &kube::Client, ns: &str, kind: &str, name: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().fields(&format!(
        "involvedObject.kind={kind},involvedObject.name={name}"
    ));
    let mut items = match tokio::time::timeout(REQUEST, api.list(&lp)).await {
        Ok(Ok(l)) => l.items,
        _ => Vec::new(),
    };
    items.sort_by_key(|e| {
        e.last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or(e.event_time.as_ref().map(|t| t.0))
    });
    items
}

fn latest(events: &[Event], reason: &str) -> Option<String> {
    events
        .iter()
        .rev()
        .find(|e| e.reason.as_deref() == Some(reason))
        .and_then(|e| e.message.clone())
}

fn condition(pod: &Pod, kind: &str) -> Option<(String, String)> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| {
            (
                c.status.clone(),
                format!(
                    "{}={} ({}): {}",
                    c.type_,
                    c.status,
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default()
                ),
            )
        })
}

/// Why a controller's replicas are not Ready: the scheduler's events on its pending
/// Pods, the controller's `FailedCreate` events, its Pods' conditions, in that order.
async fn explain(client: &kube::Client, o: &Owner) -> NotBackCause {
    let mut checked = Vec::new();
    let pods: Vec<Pod> = match tokio::time::timeout(
        REQUEST,
        Api::<Pod>::namespaced(client.clone(), &o.namespace).list(&ListParams::default()),
    )
    .await
    {
        Ok(Ok(l)) => l
            .items
            .into_iter()
            .filter(|p| {
                p.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|r| r.uid == o.uid)
                    && p.metadata.deletion_timestamp.is_none()
            })
            .collect(),
        Ok(Err(e)) => {
            checked.push(format!("listing the Pods of {}/{}: {e}", o.kind, o.name));
            Vec::new()
        }
        Err(_) => {
            checked.push(format!(
                "listing the Pods of {}/{}: no answer",
                o.kind, o.name
            ));
            Vec::new()
        }
    };
    let unscheduled: Vec<&Pod> = pods
        .iter()
        .filter(|p| condition(p, "PodScheduled").is_some_and(|(s, _)| s == "False"))
        .collect();
    if let Some(first) = unscheduled.first() {
        let name = first.metadata.name.clone().unwrap_or_default();
        let evs = events(client, &o.namespace, "Pod", &name).await;
        let message = latest(&evs, "FailedScheduling")
            .or_else(|| condition(first, "PodScheduled").map(|(_, c)| c))
            .unwrap_or_default();
        return NotBackCause::Unschedulable {
            pods: unscheduled
                .iter()
                .filter_map(|p| p.metadata.name.clone())
                .collect(),
            message,
        };
    }
    checked.push(format!(
        "{} Pod(s) of {}/{} exist, none unscheduled",
        pods.len(),
        o.kind,
        o.name
    ));
    let evs = events(client, &o.namespace, &o.kind, &o.name).await;
    if let Some(message) = latest(&evs, "FailedCreate") {
        return NotBackCause::CreateRefused {
            webhook: webhook_named(&message),
            message,
            deadlock: false,
        };
    }
    checked.push(format!("no FailedCreate event on {}/{}", o.kind, o.name));
    let not_ready: Vec<&Pod> = pods
        .iter()
        .filter(|p| condition(p, "Ready").is_none_or(|(s, _)| s != "True"))
        .collect();
    if !not_ready.is_empty() {
        return NotBackCause::NotReady {
            pods: not_ready
                .iter()
                .filter_map(|p| p.metadata.name.clone())
                .collect(),
            conditions: not_ready
                .iter()
                .flat_map(|p| {
                    ["PodScheduled", "Initialized", "ContainersReady", "Ready"]
                        .into_iter()
                        .filter_map(|k| condition(p, k))
                        .filter(|(s, _)| s != "True")
                        .map(|(_, c)| c)
                })
                .collect(),
        };
    }
    checked.push("every existing Pod is Ready: fewer exist than the controller wants".into());
    NotBackCause::Unknown { checked }
}

/// The webhook an API error names: `admission webhook "x" denied the request`,
/// `failed calling webhook "x"`.
pub fn webhook_named(message: &str) -> Option<String> {
    let i = message.find("webhook \"")? + "webhook \"".len();
    let rest = &message[i..];
    Some(rest[..rest.find('"')?].to_string())
}

/// A webhook's Service and whether the API refuses what it cannot get an answer for.
struct Hook {
    service: (String, String),
    /// `failurePolicy: Fail` (the default of admissionregistration.k8s.io/v1).
    fail_closed: bool,
}

/// The Service a webhook of that name calls, from the cluster's webhook
/// configurations.
async fn webhook_service(client: &kube::Client, webhook: &str) -> Option<Hook> {
    let lp = ListParams::default();
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    // Each configuration's webhooks as (name, Service, failure policy), validating
    // then mutating.
    let mut calls = Vec::new();
    if let Ok(Ok(list)) = tokio::time::timeout(REQUEST, validating.list(&lp)).await {
        calls.extend(
            list.items
                .into_iter()
                .flat_map(|c| c.webhooks.unwrap_or_default())
                .map(|w| (w.name, w.client_config.service, w.failure_policy)),
        );
    }
    if let Ok(Ok(list)) = tokio::time::timeout(REQUEST, mutating.list(&lp)).await {
        calls.extend(
            list.items
                .into_iter()
                .flat_map(|c| c.webhooks.unwrap_or_default())
                .map(|w| (w.name, w.client_config.service, w.failure_policy)),
        );
    }
    calls.into_iter().find_map(|(name, service, policy)| {
        let s = service.filter(|_| name == webhook)?;
        Some(Hook {
            service: (s.namespace, s.name),
            fail_closed: policy.as_deref().is_none_or(|p| p == "Fail"),
        })
    })
}

/// The selector of a Service, as kube's [`Selector`], when it has one (a Service
/// without one selects no Pod: its endpoints are written by hand).
async fn service_selector(
    client: &kube::Client,
    (ns, name): &(String, String),
) -> Option<Selector> {
    let svc = tokio::time::timeout(
        REQUEST,
        Api::<Service>::namespaced(client.clone(), ns).get_opt(name),
    )
    .await;
    let Ok(Ok(Some(svc))) = svc else { return None };
    let labels = svc
        .spec
        .and_then(|s| s.selector)
        .filter(|s| !s.is_empty())?;
    Some(labels.into_iter().collect())
}

/// Whether a Service in `ns` with `selector` selects `pod`.
fn selects(ns: &str, selector: &Selector, pod: &Pod) -> bool {
    pod.metadata.namespace.as_deref() == Some(ns)
        && selector.matches(pod.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()))
}

/// Whether waiting longer can change what is short: true only when every workload
/// still short has its Pods refused by a fail-closed webhook (the controller's latest
/// `FailedCreate` names it) whose Service selects no Pod that exists, and whose own
/// backend is among the workloads that webhook refuses. The backend's Pods can only be
/// created through the webhook, and the webhook answers only through them: no wait
/// ends that, so the verdict is given now instead of at the deadline.
async fn settled(
    client: &kube::Client,
    groups: &BTreeMap<Owner, Vec<Pod>>,
    short: &[(Owner, i32, i32, String)],
) -> bool {
    let mut refused: Vec<(&Owner, String)> = Vec::new();
    for (o, ..) in short {
        let evs = events(client, &o.namespace, &o.kind, &o.name).await;
        let Some(w) = latest(&evs, "FailedCreate").and_then(|m| webhook_named(&m)) else {
            return false;
        };
        refused.push((o, w));
    }
    let hooks: std::collections::BTreeSet<&String> = refused.iter().map(|(_, w)| w).collect();
    for w in hooks {
        let Some(hook) = webhook_service(client, w).await.filter(|h| h.fail_closed) else {
            return false;
        };
        let Some(selector) = service_selector(client, &hook.service).await else {
            return false;
        };
        let ns = &hook.service.0;
        let backend_refused = refused
            .iter()
            .any(|(o, by)| by == w && groups[*o].iter().any(|p| selects(ns, &selector, p)));
        if !backend_refused {
            return false;
        }
        let lp = ListParams::default().labels(&selector.to_string());
        let pods = tokio::time::timeout(
            REQUEST,
            Api::<Pod>::namespaced(client.clone(), ns).list(&lp),
        )
        .await;
        match pods {
            Ok(Ok(l))
                if l.items
                    .iter()
                    .all(|p| p.metadata.deletion_timestamp.is_some()) => {}
            _ => return false,
        }
    }
    true
}

/// A refused creation is a deadlock when the refusing webhook's own backend (the Pods
/// its Service selects) is among the workloads not back: it cannot return while the
/// webhook refuses, and the webhook refuses while it is not back.
async fn mark_deadlocks(client: &kube::Client, out: &mut [NotBack], not_back_pods: &[Pod]) {
    for b in out.iter_mut() {
        let NotBackCause::CreateRefused {
            webhook: Some(w),
            deadlock,
            ..
        } = &mut b.cause
        else {
            continue;
        };
        let Some(hook) = webhook_service(client, w).await else {
            continue;
        };
        let Some(selector) = service_selector(client, &hook.service).await else {
            continue;
        };
        *deadlock = not_back_pods
            .iter()
            .any(|p| selects(&hook.service.0, &selector, p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_webhook_is_read_from_the_apis_message() {
        assert_eq!(
            webhook_named(
                "Error creating: Internal error occurred: failed calling webhook \"pods.guard.corp\": failed to call webhook: Post \"https://guard.guard-system.svc:443/?timeout=3s\": no endpoints available for service \"guard\""
            )
            .as_deref(),
            Some("pods.guard.corp")
        );
        assert_eq!(
            webhook_named("admission webhook \"deny.x\" denied the request: no").as_deref(),
            Some("deny.x")
        );
        assert_eq!(
            webhook_named("pods \"x\" is forbidden: exceeded quota"),
            None
        );
    }

    #[test]
    fn a_service_selects_pods_of_its_namespace_with_all_its_labels() {
        let pod = |ns: &str, labels: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p", "namespace": ns, "labels": labels}
            }))
            .unwrap()
        };
        let selector: Selector = [("app", "guard"), ("tier", "hook")].into_iter().collect();
        let backend = pod(
            "guards",
            serde_json::json!({"app": "guard", "tier": "hook", "x": "y"}),
        );
        assert!(selects("guards", &selector, &backend));
        assert!(!selects("shop", &selector, &backend));
        assert!(!selects(
            "guards",
            &selector,
            &pod("guards", serde_json::json!({"app": "guard"}))
        ));
        assert!(!selects(
            "guards",
            &selector,
            &pod("guards", serde_json::json!({"app": "guard", "tier": "web"}))
        ));
    }

    #[test]
    fn evicted_pods_group_by_their_controller() {
        let pod = |name: &str, kind: &str, owner: &str| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "ns", "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": kind, "name": owner, "uid": owner, "controller": true}
                ]}
            }))
            .unwrap()
        };
        let groups = owners(&[
            pod("a", "ReplicaSet", "web"),
            pod("b", "ReplicaSet", "web"),
            pod("c", "StatefulSet", "db"),
            pod("d", "DaemonSet", "agent"),
            pod("e", "Job", "once"),
        ]);
        let names: Vec<(String, usize)> = groups
            .iter()
            .map(|(o, p)| (format!("{}/{}", o.kind, o.name), p.len()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("ReplicaSet/web".to_string(), 2),
                ("StatefulSet/db".into(), 1)
            ]
        );
    }
}
