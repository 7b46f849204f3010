//! The node pools' roll as reports show it: the record with every text the cluster
//! wrote redacted, and the sentences and lines all four formats share (a pool's
//! outcome, a node's drain, its evictions with long runs of identical 429s collapsed,
//! the budget readings that confirmed a block, the Pods not back), so that no renderer
//! words a fact its own way.

use std::time::Duration;

use crate::drain::{Answer, BlockedBy, BudgetReading, DrainOutcome, Eviction, PodDecision, PodEnd};
use crate::redact::redact;
use crate::rollout::{
    NodeRoll, NotBack, NotBackCause, Prediction, RolloutRecord, SurgeNode, Undrainable, drain_cause,
};

/// Runs of at least this many identical 429 answers to one Pod are one line.
pub const COLLAPSE_429: usize = 3;

/// The record with credentials removed from everything the cluster wrote (eviction
/// answers, budget conditions, causes, webhook and event messages, errors).
pub fn redacted(r: &RolloutRecord) -> RolloutRecord {
    let mut r = r.clone();
    for p in &mut r.pools {
        for s in &mut p.surge {
            redact_opt(&mut s.error);
        }
        for n in &mut p.nodes {
            redact_node(n);
        }
        redact_prediction(&mut p.prediction);
    }
    r
}

fn redact_all(texts: &mut [String]) {
    texts.iter_mut().for_each(|t| *t = redact(t));
}

fn redact_opt(text: &mut Option<String>) {
    if let Some(t) = text {
        *t = redact(t);
    }
}

fn redact_node(n: &mut NodeRoll) {
    redact_opt(&mut n.error);
    let d = &mut n.drain;
    for (_, decision) in &mut d.decisions {
        match decision {
            PodDecision::Evict { warning } => redact_opt(warning),
            PodDecision::Skip { why } | PodDecision::Refuse { why } => *why = redact(why),
        }
    }
    d.evictions
        .iter_mut()
        .for_each(|e| redact_answer(&mut e.answer));
    d.budget_readings.iter_mut().for_each(redact_reading);
    for p in &mut d.pods {
        match &mut p.end {
            PodEnd::Blocked { by } | PodEnd::Failed { by } | PodEnd::TimedOut { by } => {
                redact_blocked(by)
            }
            PodEnd::Stopped { state } => *state = redact(state),
            PodEnd::Gone => {}
        }
    }
    match &mut d.outcome {
        DrainOutcome::Blocked { by, .. } | DrainOutcome::TimedOut { by, .. } => redact_blocked(by),
        DrainOutcome::Unevictable { pods } => {
            pods.iter_mut().for_each(|(_, why)| *why = redact(why));
        }
        DrainOutcome::Drained => {}
    }
    for b in &mut n.not_back {
        redact_cause(&mut b.cause);
    }
}

fn redact_answer(a: &mut Answer) {
    match a {
        Answer::Evicted { status } => *status = redact(status),
        Answer::Refused {
            reason,
            message,
            causes,
            ..
        } => {
            *reason = redact(reason);
            *message = redact(message);
            for c in causes {
                c.message = redact(&c.message);
            }
        }
        Answer::NoAnswer { error } => *error = redact(error),
    }
}

fn redact_reading(r: &mut BudgetReading) {
    redact_all(&mut r.conditions);
}

fn redact_blocked(b: &mut BlockedBy) {
    match b {
        BlockedBy::Budget {
            status,
            readings,
            answer,
            ..
        } => {
            redact_reading(status);
            readings.iter_mut().for_each(redact_reading);
            *answer = redact(answer);
        }
        BlockedBy::Refused {
            reason, message, ..
        } => {
            *reason = redact(reason);
            *message = redact(message);
        }
        BlockedBy::Unknown { checked } => redact_all(checked),
    }
}

fn redact_cause(c: &mut NotBackCause) {
    match c {
        NotBackCause::Unschedulable { message, .. } => *message = redact(message),
        NotBackCause::CreateRefused {
            webhook, message, ..
        } => {
            redact_opt(webhook);
            *message = redact(message);
        }
        NotBackCause::NotReady { conditions, .. } => redact_all(conditions),
        NotBackCause::Unknown { checked } => redact_all(checked),
    }
}

fn redact_prediction(p: &mut Prediction) {
    match p {
        Prediction::Fails { cause, .. } => *cause = redact(cause),
        Prediction::Quarantined { causes, .. } | Prediction::Degraded { causes } => {
            redact_all(causes)
        }
        Prediction::SurgeFailed { error } => *error = redact(error),
        Prediction::Succeeds => {}
    }
}

/// `30 min` for whole minutes, else seconds (`12.5 s`).
pub fn duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 60.0 && d.subsec_nanos() == 0 && d.as_secs().is_multiple_of(60) {
        format!("{} min", d.as_secs() / 60)
    } else {
        format!("{s:.1} s")
    }
}

/// `after 30 min`, or `at once`.
pub fn after(d: Duration) -> String {
    if d.is_zero() {
        "at once".to_string()
    } else {
        format!("after {}", duration(d))
    }
}

/// `node a` or `nodes a, b`.
pub fn nodes_phrase(nodes: &[String]) -> String {
    match nodes {
        [one] => format!("node {one}"),
        _ => format!("nodes {}", nodes.join(", ")),
    }
}

/// What `--undrainable-node-behavior` does.
pub fn behaviour(u: Undrainable) -> &'static str {
    match u {
        Undrainable::Schedule => "schedule (an undrainable node fails the upgrade)",
        Undrainable::Cordon => "cordon (an undrainable node is quarantined)",
    }
}

/// The roll's settings in one line.
pub fn settings(r: &RolloutRecord) -> String {
    format!(
        "{} -> {}, max surge {}, drain timeout {}, undrainable nodes: {}",
        r.from,
        r.to,
        r.max_surge,
        duration(r.drain_timeout),
        behaviour(r.undrainable)
    )
}

/// Whether AKS would not roll the pool cleanly.
pub fn troubled(p: &Prediction) -> bool {
    !matches!(p, Prediction::Succeeds)
}

/// The pool's outcome as a sentence: `succeeds`, `fails at node a after 30 min: ...`,
/// `node b quarantined: ...`, `degraded: ...`, `surge failed: ...`.
pub fn prediction(p: &Prediction) -> String {
    match p {
        Prediction::Succeeds => "succeeds".to_string(),
        Prediction::Fails { node, cause, after } => {
            format!("fails at node {node} {}: {cause}", self::after(*after))
        }
        Prediction::Quarantined { nodes, causes } => {
            let causes: Vec<&str> = match nodes.as_slice() {
                // The cause names its node; the sentence already does.
                [one] => causes
                    .iter()
                    .map(|c| c.strip_prefix(&format!("{one}: ")).unwrap_or(c))
                    .collect(),
                _ => causes.iter().map(String::as_str).collect(),
            };
            format!("{} quarantined: {}", nodes_phrase(nodes), causes.join("; "))
        }
        Prediction::Degraded { causes } => format!("degraded: {}", causes.join("; ")),
        Prediction::SurgeFailed { error } => format!("surge failed: {error}"),
    }
}

/// A surge node: `s-0: kubelet v1.30.14, joined in 45.0 s`.
pub fn surge_line(s: &SurgeNode) -> String {
    match &s.error {
        Some(e) => format!("{}: could not join after {}: {e}", s.node, duration(s.took)),
        None => format!(
            "{}: kubelet {}, joined in {}",
            s.node,
            s.version,
            duration(s.took)
        ),
    }
}

/// A node's drain and what became of the node, in one line.
pub fn node_line(n: &NodeRoll) -> String {
    let d = duration(n.drain.duration);
    let o = &n.drain.outcome;
    let mut line = match o {
        DrainOutcome::Drained => format!("drained in {d}"),
        DrainOutcome::Blocked { would_wait, .. } if !would_wait.is_zero() => format!(
            "blocked, confirmed after {d} (AKS retries until its timeout, {}): {}",
            duration(*would_wait),
            drain_cause(o)
        ),
        DrainOutcome::Blocked { .. } => {
            format!(
                "refused after {d} (the drain fails at once): {}",
                drain_cause(o)
            )
        }
        DrainOutcome::TimedOut { .. } => format!("timed out after {d}: {}", drain_cause(o)),
        DrainOutcome::Unevictable { .. } => format!("not started ({d}): {}", drain_cause(o)),
    };
    if n.quarantined {
        line.push_str("; quarantined (left cordoned)");
    }
    if n.removed {
        line.push_str("; removed");
    }
    if let Some(e) = &n.error {
        line.push_str(&format!("; error: {e}"));
    }
    line
}

fn secs_of(ms: u64) -> String {
    format!("{:.1}", ms as f64 / 1000.0)
}

/// One answer: `evicted (Success)`, `429 TooManyRequests: ...`, `no answer: ...`.
pub fn answer(a: &Answer) -> String {
    match a {
        Answer::Evicted { status } => format!("evicted ({status})"),
        Answer::Refused {
            code,
            reason,
            message,
            causes,
        } => {
            let mut s = format!("{code} {reason}: {message}");
            if !causes.is_empty() {
                let c: Vec<String> = causes
                    .iter()
                    .map(|c| format!("{}: {}", c.kind, c.message))
                    .collect();
                s.push_str(&format!(" (causes: {})", c.join("; ")));
            }
            s
        }
        Answer::NoAnswer { error } => format!("no answer: {error}"),
    }
}

/// Whether two answers are the same 429 (a retry that changed nothing).
fn same_429(a: &Answer, b: &Answer) -> bool {
    matches!((a, b), (Answer::Refused { code: 429, .. }, Answer::Refused { code: 429, .. }) if a == b)
}

/// Every eviction as a line, Pod by Pod (in the order each was first tried), with a
/// run of [`COLLAPSE_429`] or more identical 429s as one:
/// `shop/web-0 attempts 2-40: 429 ×39 from 5.0 to 195.0 s: TooManyRequests: ...`.
pub fn eviction_lines(evictions: &[Eviction]) -> Vec<String> {
    let mut pods: Vec<&crate::drain::PodRef> = Vec::new();
    for e in evictions {
        if !pods.contains(&&e.pod) {
            pods.push(&e.pod);
        }
    }
    let mut out = Vec::new();
    for pod in pods {
        let mine: Vec<&Eviction> = evictions.iter().filter(|e| &e.pod == pod).collect();
        let mut i = 0;
        while i < mine.len() {
            let run = mine[i..]
                .iter()
                .take_while(|e| same_429(&e.answer, &mine[i].answer))
                .count();
            if run >= COLLAPSE_429 {
                let (first, last) = (mine[i], mine[i + run - 1]);
                out.push(format!(
                    "{pod} attempts {}-{}: 429 ×{run} from {} to {} s: {}",
                    first.attempt,
                    last.attempt,
                    secs_of(first.elapsed_ms),
                    secs_of(last.elapsed_ms),
                    answer(&first.answer)
                        .strip_prefix("429 ")
                        .unwrap_or_default()
                ));
                i += run;
            } else {
                let e = mine[i];
                out.push(format!(
                    "{pod} attempt {} at {} s: {}",
                    e.attempt,
                    secs_of(e.elapsed_ms),
                    answer(&e.answer)
                ));
                i += 1;
            }
        }
    }
    out
}

/// The budget readings that confirmed the drain's block (none unless a budget
/// blocked it).
pub fn confirming_readings(outcome: &DrainOutcome) -> &[BudgetReading] {
    match outcome {
        DrainOutcome::Blocked {
            by: BlockedBy::Budget { readings, .. },
            ..
        }
        | DrainOutcome::TimedOut {
            by: BlockedBy::Budget { readings, .. },
            ..
        } => readings,
        _ => &[],
    }
}

/// `shop/web at 10.0 s: 2 healthy / 2 desired, 0 allowed`.
pub fn reading_line(r: &BudgetReading) -> String {
    let mut s = format!(
        "{}/{} at {} s: {} healthy / {} desired, {} allowed",
        r.namespace,
        r.name,
        secs_of(r.elapsed_ms),
        r.current_healthy,
        r.desired_healthy,
        r.disruptions_allowed
    );
    if !r.conditions.is_empty() {
        s.push_str(&format!(" ({})", r.conditions.join("; ")));
    }
    s
}

/// `shop/Deployment/web (0/2 Ready; evicted web-0): not scheduled (...): ...`.
pub fn not_back_line(b: &NotBack) -> String {
    format!(
        "{}/{} ({}/{} Ready; evicted {}): {}",
        b.namespace,
        b.owner,
        b.ready,
        b.desired,
        b.evicted.join(", "),
        b.cause
    )
}

/// Everything a report says of one node, as lines under its [`node_line`]: each
/// eviction, each confirming budget reading, each workload not back.
pub fn node_details(n: &NodeRoll) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = eviction_lines(&n.drain.evictions)
        .into_iter()
        .map(|l| ("eviction", l))
        .collect();
    out.extend(
        confirming_readings(&n.drain.outcome)
            .iter()
            .map(|r| ("budget", reading_line(r))),
    );
    out.extend(n.not_back.iter().map(|b| ("not back", not_back_line(b))));
    out
}

/// The steps of a run that rolled node pools, with their rolls.
pub fn rolls(run: &super::RunReport) -> impl Iterator<Item = (usize, &RolloutRecord)> {
    run.steps
        .iter()
        .filter_map(|s| s.rollout.as_ref().map(|r| (s.index, r)))
}

/// The step and pool a finding is about, for the rollout's findings.
pub fn finding_pool(f: &crate::policy::Finding) -> Option<(usize, &str)> {
    use crate::policy::Finding;
    match f {
        Finding::NodeUndrainable { step, pool, .. }
        | Finding::NodesQuarantined { step, pool, .. }
        | Finding::PodsNotBack { step, pool, .. }
        | Finding::SurgeFailed { step, pool, .. } => Some((*step, pool.as_str())),
        _ => None,
    }
}

/// Whether a finding about pool `pool` of step `step` counts against the run (under
/// `--fail-on`, and neither accepted nor in the baseline).
pub fn pool_counted(run: &super::RunReport, step: usize, pool: &str) -> bool {
    run.findings
        .iter()
        .any(|f| f.counted && finding_pool(&f.finding) == Some((step, pool)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drain::{Cause, PodRef};

    fn eviction(attempt: u32, ms: u64, answer: Answer) -> Eviction {
        Eviction {
            pod: PodRef {
                namespace: "shop".into(),
                name: "web-0".into(),
                uid: "u".into(),
            },
            attempt,
            at: String::new(),
            elapsed_ms: ms,
            answer,
        }
    }

    fn too_many() -> Answer {
        Answer::Refused {
            code: 429,
            reason: "TooManyRequests".into(),
            message: "Cannot evict pod as it would violate the pod's disruption budget.".into(),
            causes: vec![Cause {
                kind: "DisruptionBudget".into(),
                message: "The disruption budget web needs 2 healthy pods and has 2 currently"
                    .into(),
            }],
        }
    }

    #[test]
    fn long_runs_of_the_same_429_are_one_line() {
        let mut ev: Vec<Eviction> = (1..=5)
            .map(|i| eviction(i, i as u64 * 5000, too_many()))
            .collect();
        ev.push(eviction(
            6,
            31_000,
            Answer::Evicted {
                status: "Success".into(),
            },
        ));
        let lines = eviction_lines(&ev);
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(
            lines[0].starts_with(
                "shop/web-0 attempts 1-5: 429 ×5 from 5.0 to 25.0 s: TooManyRequests: Cannot evict"
            ),
            "{}",
            lines[0]
        );
        assert_eq!(
            lines[1],
            "shop/web-0 attempt 6 at 31.0 s: evicted (Success)"
        );
        // Two are not a long run.
        assert_eq!(eviction_lines(&ev[3..]).len(), 3);
    }

    #[test]
    fn sentences_for_every_prediction() {
        assert_eq!(prediction(&Prediction::Succeeds), "succeeds");
        assert_eq!(
            prediction(&Prediction::Fails {
                node: "a".into(),
                cause: "blocked".into(),
                after: Duration::from_secs(1800)
            }),
            "fails at node a after 30 min: blocked"
        );
        assert_eq!(
            prediction(&Prediction::Quarantined {
                nodes: vec!["b".into()],
                causes: vec!["b: refused".into()]
            }),
            "node b quarantined: refused"
        );
        assert_eq!(
            prediction(&Prediction::SurgeFailed {
                error: "join failed".into()
            }),
            "surge failed: join failed"
        );
        assert_eq!(after(Duration::ZERO), "at once");
        assert_eq!(duration(Duration::from_millis(12_500)), "12.5 s");
    }
}
