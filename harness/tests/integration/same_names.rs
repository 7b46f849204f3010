//! The same release name in two namespaces of one cluster, as a twin replays them:
//! one release's ReplicaSet and Pods stay because a fail-closed webhook refuses the
//! garbage collector's DELETEs there, the other's stay because its Deployment is kept
//! (`helm.sh/resource-policy: keep`). The Deployments, ReplicaSets and Pods have the
//! same names in both namespaces (the same chart, release name and pod template); each
//! namespace's leftovers keep their own cause and evidence.
//!
//! One version only (the rule under test does not depend on it), on a local control
//! plane: two runs of the embedded lifecycle on one cluster, read as one run over both
//! namespaces (what a twin's replay produces), then one verdict.

use std::path::Path;
use std::time::Instant;

use preflight::cluster::{Cluster, LocalCluster, LocalConfig};
use preflight::evidence::Evidence;
use preflight::exercise::{self, Outcome};
use preflight::verdict::{self, Reason};

use crate::common;

const BLOCKED: &str = r#"name: same-blocked
description: a fail-closed webhook on ReplicaSet and Pod DELETEs goes unreachable before uninstall
chart: {path: CHART, outsideScenarioDir: true, values: {api: {replicas: 2}}}
release: {name: web, namespace: pf-same-a}
webhooks:
  - name: delete-guard
    kind: validating
    failurePolicy: Fail
    timeoutSeconds: 2
    rules:
      - {operations: [DELETE], apiGroups: [apps], apiVersions: [v1], resources: [replicasets]}
      - {operations: [DELETE], apiGroups: [""], apiVersions: [v1], resources: [pods]}
steps:
  - helm: {action: install}
  - setWebhook: {name: delete-guard, behaviour: unreachable}
  - helm: {action: uninstall}
  - settle: {timeoutSeconds: 30}
"#;

const KEPT: &str = r#"name: same-kept
description: the same release, its Deployment kept on purpose, no webhook
chart: {path: CHART, outsideScenarioDir: true, values: {api: {replicas: 2, keep: true}}}
release: {name: web, namespace: pf-same-b}
steps:
  - helm: {action: install}
  - helm: {action: uninstall}
  - settle: {timeoutSeconds: 30}
"#;

fn scenario(dir: &Path, name: &str, text: &str) -> preflight::scenario::Scenario {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/charts/truth");
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, text.replace("CHART", &chart.display().to_string())).unwrap();
    preflight::scenario::load_file(&file).unwrap()
}

/// Two runs on one cluster as one run over both namespaces: the first run's
/// namespace, the second's as another, the objects each left, every record of both.
fn as_one_run(mut a: Outcome, b: Outcome) -> Outcome {
    a.other_namespaces.push(b.namespace.clone());
    let theirs = |o: &preflight::snapshot::ObjectRecord| o.namespace == Some(b.namespace.clone());
    a.after
        .objects
        .extend(b.after.objects.iter().filter(|o| theirs(o)).cloned());
    a.seen.extend(b.seen);
    a.webhook_requests.extend(b.webhook_requests);
    a.log_evidence.extend(b.log_evidence.iter().cloned());
    a
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_names_in_two_namespaces_keep_their_own_causes() {
    let started = Instant::now();
    preflight::init_crypto();
    let dir = tempfile::tempdir().unwrap();
    let version = &common::versions()[0];
    let mut config = LocalConfig::new("same-names", common::components(version));
    config.ready_timeout = std::time::Duration::from_secs(90);
    let mut cluster = Cluster::Local(Box::new(LocalCluster::start(config).await.unwrap()));
    let mut outcomes = Vec::new();
    for (i, (name, text)) in [("blocked", BLOCKED), ("kept", KEPT)]
        .into_iter()
        .enumerate()
    {
        let opts = exercise::Options {
            dir: cluster.dir().join(name),
            upgrade_to: Vec::new(),
            progress: preflight::progress::Progress::quiet(),
            run_id: format!("s{i}"),
            noise: Default::default(),
        };
        let s = scenario(dir.path(), name, text);
        outcomes.push(exercise::run(&mut cluster, &s, &opts).await.unwrap());
    }
    let kept = outcomes.pop().unwrap();
    let blocked = outcomes.pop().unwrap();
    // Both runs really made the same names (Pods have random suffixes).
    let names = |o: &Outcome, kind: &str| -> Vec<String> {
        let mut n: Vec<String> = o
            .after
            .objects
            .iter()
            .filter(|x| x.kind == kind && x.namespace.as_deref() == Some(o.namespace.as_str()))
            .map(|x| x.name.clone())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(&blocked, "Pod").len(), 2);
    assert_eq!(names(&kept, "Pod").len(), 2);
    assert_eq!(names(&blocked, "ReplicaSet").len(), 1);
    assert_eq!(names(&blocked, "ReplicaSet"), names(&kept, "ReplicaSet"));

    let left = verdict::leftovers(&as_one_run(blocked, kept));
    let of = |ns: &str| -> Vec<&verdict::Leftover> {
        left.iter()
            .filter(|l| l.namespace.as_deref() == Some(ns))
            .filter(|l| matches!(l.kind.as_str(), "Deployment" | "ReplicaSet" | "Pod"))
            .collect()
    };
    let (a, b) = (of("pf-same-a"), of("pf-same-b"));
    assert_eq!(a.len(), 3, "1 ReplicaSet and 2 Pods: {a:#?}");
    assert_eq!(b.len(), 4, "1 Deployment, 1 ReplicaSet and 2 Pods: {b:#?}");
    for l in &a {
        assert_eq!(l.reason, Reason::WebhookBlockedDelete, "{l:#?}");
        let text: Vec<String> = l.evidence.iter().map(ToString::to_string).collect();
        assert!(
            text.iter().any(|t| t.contains("pf-same-a/web-api-")),
            "the refusal names this namespace's object: {text:#?}"
        );
        assert!(text.iter().all(|t| !t.contains("pf-same-b")), "{text:#?}");
    }
    for l in &b {
        assert_eq!(l.reason, Reason::KeptByPolicy, "{l:#?}");
        let blocked_cause = l.evidence.iter().any(|e| {
            matches!(
                e,
                Evidence::OwnerBlocked { .. }
                    | Evidence::WebhookRecord { .. }
                    | Evidence::GcCouldNotDelete { .. }
            )
        });
        let text: Vec<String> = l.evidence.iter().map(ToString::to_string).collect();
        assert!(!blocked_cause, "pf-same-a's cause in pf-same-b: {text:#?}");
        assert!(text.iter().all(|t| !t.contains("pf-same-a")), "{text:#?}");
    }
    eprintln!(
        "same names in two namespaces: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
