//! The whole AKS upgrade rehearsed on a multi-node kind cluster, through the command
//! line and a scenario file users can copy (`scenarios/node-pools.yaml`): three pools of
//! one node at the source version, the chart's workloads installed and Ready on real
//! kubelets, the control plane upgraded in place to the target, then every pool rolled
//! as AKS does (`maxSurge: 1`, undrainable nodes quarantined): a surge node joined at
//! the target, the old node cordoned and drained through the Eviction API, drained
//! nodes replaced, the surge node drained and removed at the end.
//!
//! Each pool shows one failure class, from the cluster's answers:
//! * budget: a PodDisruptionBudget of `minAvailable` = replicas blocks the drain (its
//!   readings are the evidence; the drain timeout AKS would wait is stated); the node is
//!   quarantined;
//! * guard: the drain finishes, and what ran there does not all come back: a fail-closed
//!   webhook's backend and the Pods it guards are refused (the deadlock is named), a Pod
//!   needing the backend beside it is not scheduled (the scheduler's event), while a
//!   Deployment allowing one disruption at a time is Ready again on the new nodes;
//! * noevict: a fail-closed webhook on `pods/eviction` refuses the drain at once, named.
//!
//! One cluster for all of it (creating it and upgrading its control plane are the
//! expensive parts). The drain itself is tested case by case on a local control plane
//! in `drain.rs`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use preflight_core::drain::{Answer, BlockedBy, DrainOutcome, PodEnd};
use preflight_core::rollout::{NotBackCause, Prediction, RolloutRecord, Undrainable};

use crate::common;
use crate::common::run_preflight;
use crate::kind_clusters::{ONE_AT_A_TIME, docker_available, preflight_containers};

#[test]
fn node_pools_roll_as_aks_rolls_them_on_kind() {
    if !docker_available() {
        return;
    }
    let _serial = ONE_AT_A_TIME.blocking_lock();
    let t0 = Instant::now();
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/node-pools.yaml");
    let work = tempfile::tempdir().unwrap();
    let before: BTreeSet<String> = preflight_containers().into_iter().collect();
    let (code, report, text) = run_preflight(
        &["run", "--provider", "kind", scenario.to_str().unwrap()],
        &work.path().join("reports"),
    );
    eprintln!("the rehearsal took {:?}", t0.elapsed());
    // Quarantined nodes and workloads not back are findings: the gate fails.
    assert_eq!(code, Some(1), "{text}");
    let run = common::run_of(&report, "node-pools", "upgrade");
    let steps = run["steps"].as_array().unwrap();
    assert_eq!(
        steps[0]["helm"]["exitCode"], 0,
        "installed and Ready: {:#}",
        steps[0]
    );
    assert!(
        steps[1]["error"].is_null(),
        "the control plane upgraded: {:#}",
        steps[1]
    );
    let record: RolloutRecord = serde_json::from_value(steps[2]["rollout"].clone())
        .unwrap_or_else(|e| panic!("{e}: {:#}", steps[2]));
    let [source, target] = common::versions().map(|v| v.to_string());
    assert_eq!((&record.from, &record.to), (&source, &target));
    assert_eq!(record.undrainable, Undrainable::Cordon);
    let pools: Vec<&str> = record.pools.iter().map(|p| p.pool.as_str()).collect();
    assert_eq!(pools, ["budget", "guard", "noevict"], "{record:#?}");
    for p in &record.pools {
        assert!(!p.surge.is_empty(), "{p:#?}");
        for s in &p.surge {
            assert_eq!(s.error, None, "{s:?}");
            assert_eq!(s.version, target, "new nodes run the target: {s:?}");
        }
        assert_eq!(p.nodes[0].version, source, "{p:#?}");
    }

    // budget: blocked by the budget, from its readings; quarantined.
    let budget = &record.pools[0];
    let n = &budget.nodes[0];
    let DrainOutcome::Blocked {
        by:
            BlockedBy::Budget {
                name,
                status,
                readings,
                ..
            },
        would_wait,
        ..
    } = &n.drain.outcome
    else {
        panic!("{n:#?}")
    };
    assert_eq!(name, "web");
    assert_eq!(
        (
            status.disruptions_allowed,
            status.current_healthy,
            status.desired_healthy
        ),
        (0, 3, 3)
    );
    assert!(readings.len() >= 2, "confirmed over readings: {readings:?}");
    assert_eq!(
        would_wait.as_secs(),
        300,
        "the drain timeout AKS would wait"
    );
    assert!(
        n.drain.duration.as_secs() < 60,
        "an early verdict: {:?}",
        n.drain.duration
    );
    assert!(n.quarantined && !n.removed, "{n:#?}");
    assert!(
        matches!(&budget.prediction, Prediction::Quarantined { nodes, .. } if nodes == &vec![n.node.clone()]),
        "{:?}",
        budget.prediction
    );

    // guard: drained; the webhook's backend and what it guards are refused (a
    // deadlock), the affine Pod is not scheduled, the tolerant Deployment is back.
    let guard = &record.pools[1];
    let n = &guard.nodes[0];
    assert_eq!(n.drain.outcome, DrainOutcome::Drained, "{n:#?}");
    assert!(n.removed, "{n:#?}");
    let cause = |owner: &str| {
        &n.not_back
            .iter()
            .find(|b| b.owner == owner)
            .unwrap_or_else(|| panic!("{owner} not back: {:#?}", n.not_back))
            .cause
    };
    for owner in ["Deployment/guard", "Deployment/app"] {
        match cause(owner) {
            NotBackCause::CreateRefused {
                webhook,
                message,
                deadlock,
            } => {
                assert!(
                    webhook
                        .as_deref()
                        .is_some_and(|w| w.starts_with("pods.guard.")),
                    "{message}"
                );
                assert!(
                    *deadlock,
                    "{owner}: the webhook's own backend is not back: {message}"
                );
            }
            c => panic!("{owner}: {c:?}"),
        }
    }
    match cause("Deployment/affine") {
        NotBackCause::Unschedulable { message, .. } => {
            assert!(
                message.contains("affinity"),
                "the scheduler's event: {message}"
            )
        }
        c => panic!("affine: {c:?}"),
    }
    // The tolerant Deployment went one Pod at a time: its budget answered 429 while a
    // replacement was not Ready yet, and each Pod was admitted once.
    let api: Vec<_> = n
        .drain
        .pods
        .iter()
        .filter(|p| p.pod.name.starts_with("api-"))
        .collect();
    assert_eq!(api.len(), 3, "{:#?}", n.drain.pods);
    for p in &api {
        assert_eq!(p.end, PodEnd::Gone, "{p:?}");
        let admitted = n
            .drain
            .evictions
            .iter()
            .filter(|e| e.pod == p.pod && matches!(e.answer, Answer::Evicted { .. }))
            .count();
        assert_eq!(admitted, 1, "one admitted eviction for {}", p.pod);
    }
    let budget_said: Vec<_> = n
        .drain
        .evictions
        .iter()
        .filter(|e| e.pod.name.starts_with("api-") && e.answer.code() == Some(429))
        .collect();
    assert!(budget_said.len() >= 2, "{:#?}", n.drain.evictions);
    for e in budget_said {
        let Answer::Refused { causes, .. } = &e.answer else {
            unreachable!()
        };
        assert!(
            causes
                .iter()
                .any(|c| c.message.starts_with("The disruption budget api")),
            "{e:?}"
        );
    }
    assert!(
        guard
            .nodes
            .iter()
            .all(|n| n.not_back.iter().all(|b| b.owner != "Deployment/api")),
        "the Deployment allowing one disruption at a time came back: {:#?}",
        guard.nodes
    );
    // Its image is a private registry's: it ran the stand-in (listed), which passed its
    // HTTP readiness probe before and after the drain; nothing else was substituted.
    let substituted: Vec<(&str, &str, u64)> = run["substitutions"]
        .as_array()
        .unwrap_or_else(|| panic!("no substitutions: {run:#}"))
        .iter()
        .map(|s| {
            (
                s["workload"].as_str().unwrap(),
                s["image"].as_str().unwrap(),
                s["pods"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(
        matches!(substituted.as_slice(), [(w, "registry.corp.example/shop/api:3.1", pods)]
            if w.starts_with("ReplicaSet/api-") && *pods >= 6),
        "{substituted:?}"
    );
    assert!(
        matches!(guard.prediction, Prediction::Degraded { .. }),
        "{:?}",
        guard.prediction
    );

    // noevict: the eviction webhook refuses; kubectl's drain fails at once.
    let n = &record.pools[2].nodes[0];
    let DrainOutcome::Blocked {
        by: BlockedBy::Refused { message, .. },
        would_wait,
        ..
    } = &n.drain.outcome
    else {
        panic!("{n:#?}")
    };
    assert!(message.contains("evictions.no-evict."), "{message}");
    assert!(would_wait.is_zero());
    assert!(n.quarantined);

    // The report says it for people too.
    let md = common::read(&work.path().join("reports/report.md"));
    for words in ["quarantined", "PodDisruptionBudget", "deadlock"] {
        assert!(md.contains(words), "report.md says `{words}`:\n{md}");
    }
    // Nothing left of this run (namespace `pf-node-pools-<id>`, cluster
    // `preflight-<id>-upgrade`): the surge nodes go with the cluster. Other processes
    // may run kind clusters of their own meanwhile.
    let ns = run["namespace"].as_str().unwrap();
    let id = ns.rsplit('-').next().unwrap();
    let prefix = format!("preflight-{id}-");
    let left: Vec<String> = preflight_containers()
        .into_iter()
        .filter(|c| !before.contains(c) && c.starts_with(&prefix))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "kind nodes left behind");
}
