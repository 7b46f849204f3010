//! The captured webhooks' backends, as a rehearsal serves them inside the cluster
//! (see `webhook::in_cluster`): the workload behind each webhook's Service, read from
//! `capture.json`, and whether its Pods are Ready from `twin.yaml` (which a user may
//! edit to ask "what if this webhook were healthy").

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;

use super::health::{HookKind, WebhookHealth};
use super::manifest::{CaptureManifest, Twin};
use crate::webhook::WebhookKind;
use crate::webhook::in_cluster::{Backend, Budget};

/// The backends to serve inside the cluster, one per captured workload (a workload
/// serving several webhooks gets one stand-in relaying each), and a note for each
/// webhook that names a Service but whose workload was not captured (it stays served
/// from outside the nodes, and no drain evicts it).
pub fn in_cluster(twin: &Twin) -> anyhow::Result<(Vec<Backend>, Vec<String>)> {
    let health = captured_health(&twin.dir.join("capture.json"))?;
    Ok(group(twin, &health))
}

/// `capture.json`'s webhook health; none when the twin has no `capture.json`.
fn captured_health(path: &Path) -> anyhow::Result<Vec<WebhookHealth>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let m: CaptureManifest = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a capture manifest", path.display()))?;
    Ok(m.webhook_health)
}

fn group(twin: &Twin, health: &[WebhookHealth]) -> (Vec<Backend>, Vec<String>) {
    let mut by_workload: BTreeMap<(String, String, String), Backend> = BTreeMap::new();
    let mut notes = Vec::new();
    for h in health {
        let Some(svc) = &h.service else { continue };
        let Some(b) = &h.backend else {
            notes.push(format!(
                "webhook {}: its Service {svc} had no Deployment or StatefulSet behind it when captured; served from outside the nodes (no drain evicts it)",
                h.hook
            ));
            continue;
        };
        // twin.yaml says how it answers now; unreachable means no Pod Ready.
        let health = twin
            .webhooks
            .iter()
            .find(|w| w.hook == h.hook)
            .map_or(h.health, |w| w.health);
        let entry = by_workload
            .entry((b.namespace.clone(), b.kind.clone(), b.name.clone()))
            .or_insert_with(|| Backend {
                namespace: b.namespace.clone(),
                name: b.name.clone(),
                replicas: b.replicas,
                ready: false,
                budgets: b
                    .pod_disruption_budgets
                    .iter()
                    .map(|p| Budget {
                        name: p.name.clone(),
                        min_available: p.min_available.clone(),
                        max_unavailable: p.max_unavailable.clone(),
                    })
                    .collect(),
                node_selector: b.node_selector.clone(),
                affinity: b.affinity.clone(),
                tolerations: b.tolerations.clone(),
                topology_spread_constraints: b.topology_spread_constraints.clone(),
                pod_labels: b.pod_labels.clone(),
                hooks: Vec::new(),
            });
        entry.ready |= health != super::health::Health::Unreachable;
        entry.hooks.push((
            h.hook.clone(),
            match h.kind {
                HookKind::Validating => WebhookKind::Validating,
                HookKind::Mutating => WebhookKind::Mutating,
                HookKind::Conversion => WebhookKind::Conversion,
            },
        ));
    }
    (by_workload.into_values().collect(), notes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twin::health::{Backend as Captured, Budget as CapturedBudget, Health};
    use crate::twin::manifest::TwinWebhook;

    fn hook(name: &str, health: Health, backend: Option<Captured>) -> WebhookHealth {
        WebhookHealth {
            kind: HookKind::Validating,
            hook: name.into(),
            health,
            evidence: Vec::new(),
            service: Some("guards/guard:443".into()),
            backend,
        }
    }

    fn twin(webhooks: Vec<TwinWebhook>) -> Twin {
        Twin {
            name: "t".into(),
            dir: "/nonexistent".into(),
            kubernetes_version: "v1.29.15".into(),
            aks: false,
            namespaces: "/n".into(),
            surface: "/s".into(),
            releases: Vec::new(),
            webhooks,
            custom_resources: None,
            node_pools: None,
        }
    }

    #[test]
    fn one_stand_in_per_workload_ready_unless_the_twin_says_unreachable() {
        let captured = Captured {
            kind: "Deployment".into(),
            namespace: "guards".into(),
            name: "guard".into(),
            replicas: 2,
            ready_replicas: 0,
            pod_disruption_budgets: vec![CapturedBudget {
                name: "guard".into(),
                min_available: Some("2".into()),
                max_unavailable: None,
                disruptions_allowed: 0,
            }],
            ..Default::default()
        };
        let health = [
            hook("g:a", Health::Unreachable, Some(captured.clone())),
            hook("g:b", Health::Unreachable, Some(captured)),
            hook("g:c", Health::Healthy, None),
        ];
        // As captured: unreachable, so never Ready.
        let (backends, notes) = group(&twin(Vec::new()), &health);
        assert_eq!(backends.len(), 1);
        assert_eq!(backends[0].hooks.len(), 2);
        assert!(!backends[0].ready);
        assert_eq!(backends[0].budgets[0].min_available.as_deref(), Some("2"));
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("g:c"), "{notes:?}");
        // The user edited twin.yaml: what if `g:a` were healthy?
        let edited = twin(vec![TwinWebhook {
            hook: "g:a".into(),
            health: Health::Healthy,
            evidence: String::new(),
        }]);
        assert!(group(&edited, &health).0[0].ready);
    }

    #[test]
    fn a_twin_without_capture_json_has_no_backends_and_a_bad_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            captured_health(&dir.path().join("capture.json"))
                .unwrap()
                .is_empty()
        );
        std::fs::write(dir.path().join("capture.json"), "{").unwrap();
        let e = captured_health(&dir.path().join("capture.json")).unwrap_err();
        assert!(format!("{e:#}").contains("capture.json"), "{e:#}");
    }
}
