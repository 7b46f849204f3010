//! The node roll in every report format, on a fixture upgrade that rolls two pools: in
//! `nodepool1` a PodDisruptionBudget blocks the first node's drain (its 429s retried,
//! the budget read again until the block is confirmed), so AKS would fail the upgrade
//! after its 30 min drain timeout; `userpool` drains, but two workloads are not back:
//! the admission webhook's own backend cannot be scheduled (`FailedScheduling`), and
//! the webhook refuses every replacement Pod it matches until its backend runs again (a
//! deadlock).

use std::time::Duration;

use preflight_core::drain::{
    AKS_DRAIN_TIMEOUT, Answer, BlockedBy, BudgetReading, Cause, DrainOutcome, Eviction,
    PodDecision, PodEnd, PodRef, PodResult,
};
use preflight_core::rollout::{
    MaxSurge, NodeDrain, NodeRoll, NotBack, NotBackCause, PoolRoll, Prediction, RolloutRecord,
    SurgeNode, Undrainable, predict,
};

use crate::runner::{Role, RunResult};
use crate::scenario::Scenario;

use super::fixture_tests::{filters, outcome, scenario, step, versions};
use super::{FailOn, Report, Verdict, build, html, junit, markdown, render_json};

pub(super) const FROM: &str = "v1.29.15";
pub(super) const TO: &str = "v1.30.14";

fn pod(ns: &str, name: &str) -> PodRef {
    PodRef {
        namespace: ns.into(),
        name: name.into(),
        uid: format!("uid-{name}"),
    }
}

fn at(secs: u64) -> String {
    format!("2026-11-29T10:{:02}:{:02}Z", secs / 60, secs % 60)
}

fn eviction(p: &PodRef, attempt: u32, ms: u64, answer: Answer) -> Eviction {
    Eviction {
        pod: p.clone(),
        attempt,
        at: at(ms / 1000),
        elapsed_ms: ms,
        answer,
    }
}

/// The Eviction API's 429 for a budget that allows no disruption.
pub(super) fn too_many(budget: &str, message: &str) -> Answer {
    Answer::Refused {
        code: 429,
        reason: "TooManyRequests".into(),
        message: message.into(),
        causes: vec![Cause {
            kind: "DisruptionBudget".into(),
            message: format!(
                "The disruption budget {budget} needs 2 healthy pods and has 2 currently"
            ),
        }],
    }
}

fn evicted() -> Answer {
    Answer::Evicted {
        status: "Success".into(),
    }
}

pub(super) fn reading(secs: u64, conditions: Vec<String>) -> BudgetReading {
    BudgetReading {
        name: "web-pdb".into(),
        namespace: "shop".into(),
        at: at(secs),
        elapsed_ms: secs * 1000,
        generation: Some(1),
        observed_generation: Some(1),
        expected_pods: 2,
        current_healthy: 2,
        desired_healthy: 2,
        disruptions_allowed: 0,
        disrupted_pods: vec![],
        conditions,
        selector_pods: 2,
        could_become_healthy: vec![],
    }
}

fn node(name: &str, drain: NodeDrain, not_back: Vec<NotBack>, removed: bool) -> NodeRoll {
    NodeRoll {
        node: name.into(),
        version: FROM.into(),
        drain,
        quarantined: false,
        removed,
        not_back,
        waited: Duration::from_secs(120),
        error: None,
    }
}

/// `aks-nodepool1-0`: `shop/web-1` evicted at once, `shop/web-0` answered 429 eight
/// times while three readings of `shop/web-pdb` confirm it allows nothing.
/// `message` is the 429's message and `conditions` the budget's.
pub(super) fn blocked_node(message: &str, conditions: Vec<String>) -> NodeRoll {
    let (web0, web1) = (pod("shop", "web-0"), pod("shop", "web-1"));
    let mut evictions = vec![eviction(&web1, 1, 300, evicted())];
    evictions.extend((1..=8).map(|i| {
        eviction(
            &web0,
            i,
            300 + 5000 * u64::from(i - 1),
            too_many("web-pdb", message),
        )
    }));
    let readings: Vec<BudgetReading> = [10, 25, 40]
        .into_iter()
        .map(|s| reading(s, conditions.clone()))
        .collect();
    let by = BlockedBy::Budget {
        name: "web-pdb".into(),
        namespace: "shop".into(),
        status: Box::new(readings[2].clone()),
        readings: readings.clone(),
        answer: message.into(),
    };
    let drain = NodeDrain {
        duration: Duration::from_millis(40_500),
        cordoned: true,
        decisions: vec![
            (web0.clone(), PodDecision::Evict { warning: None }),
            (web1.clone(), PodDecision::Evict { warning: None }),
        ],
        evictions,
        budget_readings: readings,
        pods: vec![
            PodResult {
                pod: web0.clone(),
                end: PodEnd::Blocked { by: by.clone() },
            },
            PodResult {
                pod: web1,
                end: PodEnd::Gone,
            },
        ],
        outcome: DrainOutcome::Blocked {
            pods: vec![web0],
            by,
            would_wait: AKS_DRAIN_TIMEOUT,
        },
    };
    node("aks-nodepool1-0", drain, vec![], false)
}

/// `aks-userpool-0`, drained; the webhook's backend `admission/Deployment/guard` is not
/// scheduled again (`scheduling`, the scheduler's message), and `payments/Deployment/api`
/// is refused by the webhook (`refusal`, the controller's FailedCreate message).
pub(super) fn drained_node(scheduling: &str, refusal: &str) -> NodeRoll {
    let (guard, api) = (pod("admission", "guard-0"), pod("payments", "api-0"));
    let drain = NodeDrain {
        duration: Duration::from_millis(12_400),
        cordoned: true,
        decisions: vec![
            (guard.clone(), PodDecision::Evict { warning: None }),
            (api.clone(), PodDecision::Evict { warning: None }),
        ],
        evictions: vec![
            eviction(&guard, 1, 200, evicted()),
            eviction(&api, 1, 250, evicted()),
        ],
        budget_readings: vec![],
        pods: vec![
            PodResult {
                pod: guard,
                end: PodEnd::Gone,
            },
            PodResult {
                pod: api,
                end: PodEnd::Gone,
            },
        ],
        outcome: DrainOutcome::Drained,
    };
    let not_back = vec![
        NotBack {
            namespace: "admission".into(),
            owner: "Deployment/guard".into(),
            evicted: vec!["guard-0".into()],
            ready: 0,
            desired: 1,
            cause: NotBackCause::Unschedulable {
                pods: vec!["guard-1".into()],
                message: scheduling.into(),
            },
        },
        NotBack {
            namespace: "payments".into(),
            owner: "Deployment/api".into(),
            evicted: vec!["api-0".into()],
            ready: 1,
            desired: 2,
            cause: NotBackCause::CreateRefused {
                webhook: Some("guard.admission.example".into()),
                message: refusal.into(),
                deadlock: true,
            },
        },
    ];
    node("aks-userpool-0", drain, not_back, true)
}

pub(super) fn surge(name: &str) -> SurgeNode {
    SurgeNode {
        node: name.into(),
        version: TO.into(),
        took: Duration::from_millis(45_200),
        error: None,
    }
}

/// A pool of `nodes`, its prediction made as the engine makes it.
pub(super) fn pool(name: &str, before: &[&str], s: SurgeNode, nodes: Vec<NodeRoll>) -> PoolRoll {
    let surge = vec![s];
    let prediction = predict(&nodes, &surge, AKS_DRAIN_TIMEOUT, Undrainable::Schedule);
    PoolRoll {
        pool: name.into(),
        nodes_before: before.iter().map(|n| n.to_string()).collect(),
        surge,
        nodes,
        prediction,
    }
}

pub(super) const BUDGET_429: &str =
    "Cannot evict pod as it would violate the pod's disruption budget.";
const SCHEDULING: &str = "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient memory. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.";
const REFUSAL: &str = "Internal error occurred: failed calling webhook \"guard.admission.example\": failed to call webhook: Post \"https://guard.admission.svc:443/validate\": no endpoints available for service \"guard\"";

/// The fixture's roll: `nodepool1` fails, `userpool` is degraded.
pub(super) fn rollout() -> RolloutRecord {
    RolloutRecord {
        from: FROM.into(),
        to: TO.into(),
        max_surge: MaxSurge::Percent(10),
        drain_timeout: AKS_DRAIN_TIMEOUT,
        undrainable: Undrainable::Schedule,
        pools: vec![
            pool(
                "nodepool1",
                &["aks-nodepool1-0", "aks-nodepool1-1"],
                surge("aks-nodepool1-s0"),
                vec![blocked_node(BUDGET_429, vec![])],
            ),
            pool(
                "userpool",
                &["aks-userpool-0"],
                surge("aks-userpool-s0"),
                vec![drained_node(SCHEDULING, REFUSAL)],
            ),
        ],
    }
}

fn roll_job() -> (Vec<Scenario>, Vec<RunResult>) {
    let s = scenario(
        "name: node-roll\ndescription: the node pools rolled as AKS rolls them\nchart: {path: charts/preflight-test}\nsteps: [settle: {}]\n",
    );
    let mut o = outcome("node-roll", FROM, "pf-node-roll-abcde0", false, 0);
    o.end_version = TO.into();
    let mut roll = step(3, "roll nodes", FROM, None);
    roll.rollout = Some(rollout());
    roll.duration_ms = 98_000;
    o.steps.push(roll);
    o.objects_after_step.push(4);
    let results = vec![RunResult {
        scenario: "node-roll".into(),
        role: Role::Upgrade,
        at: 0,
        timings: Default::default(),
        outcome: Ok(o),
    }];
    (vec![s], results)
}

fn roll_report(fail_on: &[FailOn]) -> Report {
    let (scenarios, results) = roll_job();
    build(&scenarios, &results, &versions(), fail_on)
}

#[test]
fn fixture_predictions_are_a_failure_and_a_degraded_pool() {
    let r = rollout();
    assert!(matches!(
        &r.pools[0].prediction,
        Prediction::Fails { node, after, .. } if node == "aks-nodepool1-0" && *after == AKS_DRAIN_TIMEOUT
    ));
    assert!(matches!(&r.pools[1].prediction, Prediction::Degraded { causes } if causes.len() == 2));
}

#[test]
fn a_predicted_failure_fails_the_run_and_fail_on_without_nodes_ignores_it() {
    let r = roll_report(&crate::policy::DEFAULT_FAIL_ON);
    assert_eq!((r.verdict, r.exit_code), (Verdict::Fail, 1));
    let run = &r.scenarios[0].runs[0];
    let texts: Vec<&str> = run.findings.iter().map(|f| f.text.as_str()).collect();
    assert_eq!(texts.len(), 3, "{texts:#?}");
    assert!(
        texts[0].starts_with(
            "step 3: AKS would fail the upgrade of pool nodepool1 at node aks-nodepool1-0 after 30 min: PodDisruptionBudget shop/web-pdb allows 0 disruptions"
        ),
        "{texts:#?}"
    );
    assert!(texts[1].contains("admission/Deployment/guard, evicted from node aks-userpool-0 of pool userpool, is not back: not scheduled"), "{texts:#?}");
    assert!(texts[2].contains("is not back: deadlock: webhook guard.admission.example refuses the Pods and its own backend is not back"), "{texts:#?}");
    assert!(
        run.findings
            .iter()
            .all(|f| f.class == FailOn::Nodes && f.counted)
    );

    let lenient = roll_report(&[
        FailOn::Leftovers,
        FailOn::Regressions,
        FailOn::Errors,
        FailOn::Unreproduced,
    ]);
    assert_eq!((lenient.verdict, lenient.exit_code), (Verdict::Pass, 0));
    let run = &lenient.scenarios[0].runs[0];
    assert_eq!(run.findings.len(), 3);
    assert!(run.findings.iter().all(|f| !f.counted));
    // JUnit passes the pools then, saying why.
    let xml = junit::render(&lenient);
    assert!(!xml.contains("<failure"), "{xml}");
    assert!(
        xml.contains("not counted: fails at node aks-nodepool1-0"),
        "{xml}"
    );
}

#[test]
fn a_rollout_follows_the_schema_and_survives_shards_and_merge() {
    let (scenarios, results) = roll_job();
    let fail_on = crate::policy::DEFAULT_FAIL_ON.to_vec();
    let direct = build(&scenarios, &results, &versions(), &fail_on);
    let doc: serde_json::Value = serde_json::from_str(&render_json(&direct)).unwrap();
    assert_eq!(
        super::fixture_tests::schema_errors(&doc),
        Vec::<String>::new()
    );
    let merged = super::fixture_tests::through_shards(&scenarios, results, &fail_on, 1);
    let roll = |r: &Report| r.scenarios[0].runs[0].steps[3].rollout.clone();
    assert_eq!(roll(&merged), Some(rollout()));
    assert_eq!(roll(&merged), roll(&direct));
    assert_eq!(markdown::render(&merged), markdown::render(&direct));
    assert_eq!((merged.verdict, merged.exit_code), (Verdict::Fail, 1));
}

#[test]
fn every_format_snapshot_of_a_rollout() {
    let r = roll_report(&crate::policy::DEFAULT_FAIL_ON);
    let md = markdown::render(&r);
    assert!(
        md.contains("shop/web-0 attempts 1-8: 429 ×8 from 0.3 to 35.3 s"),
        "{md}"
    );
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!("rollout.report.json", render_json(&r));
        insta::assert_snapshot!("rollout.report.md", md);
        insta::assert_snapshot!("rollout.junit.xml", junit::render(&r));
        insta::assert_snapshot!("rollout.report.html", html::render(&r));
    });
}

/// With `cordon` the blocked node is quarantined and the pool rolls on; a pool whose
/// surge node cannot join fails before draining. Both count under `nodes`, and JUnit
/// fails their pools with the sentence.
#[test]
fn a_quarantine_and_a_failed_surge_are_findings_too() {
    let blocked = blocked_node(BUDGET_429, vec![]);
    let mut quarantined = blocked.clone();
    quarantined.quarantined = true;
    let prediction = predict(
        std::slice::from_ref(&quarantined),
        &[],
        AKS_DRAIN_TIMEOUT,
        Undrainable::Cordon,
    );
    let mut failed = surge("aks-spot-s0");
    failed.error = Some("the node did not become Ready within 10 min".into());
    let roll = RolloutRecord {
        undrainable: Undrainable::Cordon,
        pools: vec![
            PoolRoll {
                pool: "nodepool1".into(),
                nodes_before: vec!["aks-nodepool1-0".into()],
                surge: vec![surge("aks-nodepool1-s0")],
                nodes: vec![quarantined],
                prediction,
            },
            pool("spot", &["aks-spot-0"], failed, vec![]),
        ],
        ..rollout()
    };
    let (scenarios, mut results) = roll_job();
    if let Ok(o) = &mut results[0].outcome {
        o.steps[3].rollout = Some(roll);
    }
    let r = build(
        &scenarios,
        &results,
        &versions(),
        &crate::policy::DEFAULT_FAIL_ON,
    );
    assert_eq!(r.exit_code, 1);
    let run = &r.scenarios[0].runs[0];
    let texts: Vec<&str> = run.findings.iter().map(|f| f.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "step 3: AKS would quarantine node aks-nodepool1-0 in pool nodepool1 (left cordoned, not upgraded): aks-nodepool1-0: PodDisruptionBudget shop/web-pdb allows 0 disruptions (2 healthy, 2 needed) (Pods shop/web-0)",
            "step 3: AKS would fail the upgrade of pool spot: a surge node could not join: the node did not become Ready within 10 min",
        ]
    );
    let xml = junit::render(&r);
    assert!(
        xml.contains(
            "<failure message=\"node aks-nodepool1-0 quarantined: PodDisruptionBudget shop/web-pdb"
        ),
        "{xml}"
    );
    assert!(
        xml.contains("<failure message=\"surge failed: the node did not become Ready within 10 min\" type=\"nodes\">"),
        "{xml}"
    );
    let md = markdown::render(&r);
    assert!(md.contains("quarantined (left cordoned)"), "{md}");
    assert!(
        md.contains("surge node aks-spot-s0: could not join after 45.2 s"),
        "{md}"
    );
}

/// Accept files name the roll's findings by type and by pool, node or workload; what
/// is accepted no longer fails the run, and its pool's JUnit case passes.
#[test]
fn accepted_node_findings_do_not_count() {
    use crate::accept::{self, AcceptFile, Entry, FindingKind, Gate, Matcher};
    let entry = |finding: FindingKind, name: &str| Entry {
        at: "ci/accept.yaml:2:5".into(),
        matcher: Matcher {
            finding: Some(finding),
            name: Some(name.into()),
            ..Matcher::default()
        },
        reason: "the budget is tightened on purpose until OPS-9".into(),
        owner: "platform-team".into(),
        expires: time::macros::date!(2026 - 12 - 31),
    };
    let gate = |entries: Vec<Entry>| Gate {
        accept: Some(AcceptFile {
            file: "ci/accept.yaml".into(),
            entries,
        }),
        baseline: None,
        today: time::macros::date!(2026 - 12 - 03),
    };
    let mut r = roll_report(&crate::policy::DEFAULT_FAIL_ON);
    accept::apply(
        &mut r,
        &gate(vec![entry(FindingKind::NodeUndrainable, "nodepool1")]),
    );
    // The workloads not back in `userpool` still count.
    assert_eq!(r.exit_code, 1);
    let xml = junit::render(&r);
    assert!(
        xml.contains("pool nodepool1\" classname=\"preflight.node-roll\">\n            <system-out>not counted: fails at node aks-nodepool1-0"),
        "{xml}"
    );

    let mut r = roll_report(&crate::policy::DEFAULT_FAIL_ON);
    accept::apply(
        &mut r,
        &gate(vec![
            entry(FindingKind::NodeUndrainable, "aks-nodepool1-*"),
            entry(FindingKind::PodsNotBack, "userpool"),
        ]),
    );
    assert_eq!((r.verdict, r.exit_code), (Verdict::Pass, 0));
    assert!(!junit::render(&r).contains("<failure"));
}
