//! The pass/fail policy: what counts against a run, a scenario and the whole job, and
//! the exit code that goes with it. Reports only render what this module decides.
//!
//! A run fails on what the cluster showed, never on what the scenario hoped:
//! * leftovers the scenario does not expect (`--fail-on leftovers`);
//! * the target behaving worse than the source (`--fail-on regressions`);
//! * anything that went wrong while running (`--fail-on errors`): a step that failed or
//!   a helm call with an exit code the step did not expect, a settle that ran out of
//!   time, a resource type that could not be listed (unless the scenario breaks it on
//!   purpose), a teardown that left something;
//! * a node pool AKS would not roll cleanly (`--fail-on nodes`): a node that cannot be
//!   drained (the upgrade fails), nodes quarantined, Pods that did not come back Ready
//!   after their node was drained, surge nodes that could not join;
//! * a demonstration that no longer reproduces (`--fail-on unreproduced`): every
//!   expected leftover must be found by kind and reason (and count and owner where
//!   given), every expected unlistable type must be unlistable.
//!
//! A finding accepted with `--accept` or found in the `--baseline` report no longer
//! counts (the engine's `accept` marks it and judges runs, scenarios and the job again with
//! [`run_verdict`], [`scenario_verdict`] and [`job_verdict`]).

use serde::Serialize;

use crate::record::Outcome;
use crate::scenario::{Expect, Expectation, Scenario, Step};
use crate::verdict::Leftover;

/// Exit code: the target is no worse than the source.
pub const EXIT_OK: i32 = 0;
/// Exit code: findings (leftovers, regressions, failed steps, unreproduced demonstrations).
pub const EXIT_FINDINGS: i32 = 1;
/// Exit code: the harness could not run.
pub const EXIT_ERROR: i32 = 2;

/// What makes a run fail (`--fail-on`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum FailOn {
    /// Unexpected leftovers on any version.
    Leftovers,
    /// The target behaves worse than the source.
    Regressions,
    /// A failed step, an unexpected helm exit code, a settle time-out, an unlistable
    /// type, a failed teardown.
    Errors,
    /// An expected leftover or unlistable type that did not happen.
    Unreproduced,
    /// A node pool's roll that AKS would fail, or that quarantines nodes, leaves Pods
    /// not back, or cannot surge.
    Nodes,
}

/// Everything counts by default: a gate fails on what failed.
pub const DEFAULT_FAIL_ON: [FailOn; 5] = [
    FailOn::Leftovers,
    FailOn::Regressions,
    FailOn::Errors,
    FailOn::Unreproduced,
    FailOn::Nodes,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    Fail,
    /// The harness could not run something.
    Error,
}

impl Verdict {
    /// The process exit code of a job with this verdict.
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Pass => EXIT_OK,
            Verdict::Fail => EXIT_FINDINGS,
            Verdict::Error => EXIT_ERROR,
        }
    }
}

/// Something that went wrong in a run, or a demonstration that did not happen.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Finding {
    /// A step ended with an error, or helm exited with a code the step did not expect.
    #[serde(rename_all = "camelCase")]
    StepFailed {
        step: usize,
        title: String,
        detail: String,
    },
    /// Settling ran out of time while the namespace was still changing.
    #[serde(rename_all = "camelCase")]
    SettleTimedOut {
        step: usize,
        waited_ms: u64,
        orphans: usize,
    },
    /// A resource type could not be listed: its objects are unknown.
    #[serde(rename_all = "camelCase")]
    Unlistable { resource: String, error: String },
    /// Discovery could not read a group version (an unavailable APIService, a stale
    /// aggregated entry): its types were not listed.
    #[serde(rename_all = "camelCase")]
    DiscoveryFailed {
        group_version: String,
        error: String,
    },
    /// Teardown left something behind or failed.
    #[serde(rename_all = "camelCase")]
    TeardownFailed { detail: String },
    /// An expected leftover was not found as expected.
    #[serde(rename_all = "camelCase")]
    LeftoverNotReproduced { expected: String, found: usize },
    /// A type the scenario breaks on purpose could be listed.
    #[serde(rename_all = "camelCase")]
    UnlistableNotReproduced { resource: String },
    /// A node could not be drained: AKS fails the pool's upgrade at it, `after_secs`
    /// into its drain (its drain timeout for a budget, at once for a refusal).
    #[serde(rename_all = "camelCase")]
    NodeUndrainable {
        step: usize,
        pool: String,
        node: String,
        cause: String,
        after_secs: u64,
    },
    /// Nodes that could not be drained were quarantined (left cordoned) while the
    /// pool rolled on.
    #[serde(rename_all = "camelCase")]
    NodesQuarantined {
        step: usize,
        pool: String,
        nodes: Vec<String>,
        causes: Vec<String>,
    },
    /// A workload whose Pods, evicted from a node, were not back and Ready.
    #[serde(rename_all = "camelCase")]
    PodsNotBack {
        step: usize,
        pool: String,
        node: String,
        /// `namespace/Kind/name`.
        workload: String,
        cause: String,
    },
    /// A surge node could not join: AKS fails the pool before draining anything.
    #[serde(rename_all = "camelCase")]
    SurgeFailed {
        step: usize,
        pool: String,
        error: String,
    },
}

impl Finding {
    /// The finding with credentials removed from the text it quotes (step titles, helm
    /// and API errors), as the report keeps it.
    pub fn redacted(&self) -> Finding {
        use crate::redact::redact;
        let mut f = self.clone();
        match &mut f {
            Finding::StepFailed { title, detail, .. } => {
                *title = redact(title);
                *detail = redact(detail);
            }
            Finding::Unlistable { error, .. } | Finding::DiscoveryFailed { error, .. } => {
                *error = redact(error);
            }
            Finding::TeardownFailed { detail } => *detail = redact(detail),
            Finding::NodeUndrainable { cause, .. } | Finding::PodsNotBack { cause, .. } => {
                *cause = redact(cause);
            }
            Finding::NodesQuarantined { causes, .. } => {
                causes.iter_mut().for_each(|c| *c = redact(c));
            }
            Finding::SurgeFailed { error, .. } => *error = redact(error),
            Finding::SettleTimedOut { .. }
            | Finding::LeftoverNotReproduced { .. }
            | Finding::UnlistableNotReproduced { .. } => {}
        }
        f
    }

    /// Which `--fail-on` class the finding belongs to.
    pub fn class(&self) -> FailOn {
        match self {
            Finding::LeftoverNotReproduced { .. } | Finding::UnlistableNotReproduced { .. } => {
                FailOn::Unreproduced
            }
            Finding::NodeUndrainable { .. }
            | Finding::NodesQuarantined { .. }
            | Finding::PodsNotBack { .. }
            | Finding::SurgeFailed { .. } => FailOn::Nodes,
            _ => FailOn::Errors,
        }
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            Finding::StepFailed {
                step,
                title,
                detail,
            } => format!("step {step} ({title}) failed: {detail}"),
            Finding::SettleTimedOut {
                step,
                waited_ms,
                orphans,
            } => format!(
                "step {step} (settle) ran out of time after {:.1} s with the namespace still changing ({orphans} object{} without an owner)",
                *waited_ms as f64 / 1000.0,
                if *orphans == 1 { "" } else { "s" }
            ),
            Finding::Unlistable { resource, error } => {
                format!("{resource} could not be listed, so its objects are unknown: {error}")
            }
            Finding::DiscoveryFailed {
                group_version,
                error,
            } => format!(
                "discovery could not read {group_version}, so its types were not listed: {error}"
            ),
            Finding::TeardownFailed { detail } => format!("teardown: {detail}"),
            Finding::LeftoverNotReproduced { expected, found } => {
                format!("not reproduced: expected {expected} left behind, found {found} matching")
            }
            Finding::UnlistableNotReproduced { resource } => {
                format!("not reproduced: expected {resource} to be unlistable, it was listed")
            }
            Finding::NodeUndrainable {
                step,
                pool,
                node,
                cause,
                after_secs,
            } => format!(
                "step {step}: AKS would fail the upgrade of pool {pool} at node {node} {}: {cause}",
                crate::report::rollout::after(std::time::Duration::from_secs(*after_secs))
            ),
            Finding::NodesQuarantined {
                step,
                pool,
                nodes,
                causes,
            } => format!(
                "step {step}: AKS would quarantine {} in pool {pool} (left cordoned, not upgraded): {}",
                crate::report::rollout::nodes_phrase(nodes),
                causes.join("; ")
            ),
            Finding::PodsNotBack {
                step,
                pool,
                node,
                workload,
                cause,
            } => format!(
                "step {step}: {workload}, evicted from node {node} of pool {pool}, is not back: {cause}"
            ),
            Finding::SurgeFailed { step, pool, error } => format!(
                "step {step}: AKS would fail the upgrade of pool {pool}: a surge node could not join: {error}"
            ),
        }
    }
}

/// A run judged: which leftovers the scenario expects, and the findings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Judgement {
    /// Parallel to the leftovers: whether an expectation covers it.
    pub expected: Vec<bool>,
    pub findings: Vec<Finding>,
}

impl Judgement {
    /// Leftovers that count as failures and that nothing expects.
    pub fn unexpected<'a>(
        &'a self,
        leftovers: &'a [Leftover],
    ) -> impl Iterator<Item = &'a Leftover> {
        leftovers
            .iter()
            .zip(&self.expected)
            .filter(|(l, e)| l.reason.is_failure() && !**e)
            .map(|(l, _)| l)
    }

    /// The run's verdict under `fail_on`.
    pub fn verdict(&self, leftovers: &[Leftover], fail_on: &[FailOn]) -> Verdict {
        run_verdict(
            self.unexpected(leftovers).next().is_some(),
            self.findings.iter().any(|f| fail_on.contains(&f.class())),
            fail_on,
        )
    }
}

/// A run's verdict: whether it left unexpected leftovers that count, and whether a
/// finding counts (under `fail_on`, and after `--accept` and `--baseline`).
pub fn run_verdict(
    unexpected_leftovers: bool,
    counted_findings: bool,
    fail_on: &[FailOn],
) -> Verdict {
    if (fail_on.contains(&FailOn::Leftovers) && unexpected_leftovers) || counted_findings {
        Verdict::Fail
    } else {
        Verdict::Pass
    }
}

/// Whether `expectation` covers `leftover` (kind, reason, and top owner where given).
fn covers(expectation: &Expectation, leftover: &Leftover) -> bool {
    expectation.kind == leftover.kind
        && expectation.reason == leftover.reason
        && expectation.owner.as_ref().is_none_or(|owner| {
            let (kind, name) = owner.split_once('/').unwrap_or((owner, ""));
            let normalized = leftover.normalized();
            normalized.ends_with(&format!(" of {kind} {name}"))
        })
}

/// Judges one run of `scenario`: its expectations against its leftovers, and what
/// went wrong along the way.
pub fn judge(scenario: &Scenario, outcome: &Outcome, leftovers: &[Leftover]) -> Judgement {
    let mut j = Judgement {
        expected: leftovers
            .iter()
            .map(|l| scenario.expect.leftovers.iter().any(|e| covers(e, l)))
            .collect(),
        findings: step_findings(scenario, outcome),
    };
    j.findings.extend(rollout_findings(outcome));
    j.findings
        .extend(unlistable_findings(&scenario.expect, outcome));
    j.findings.extend(
        outcome
            .teardown_errors
            .iter()
            .map(|e| Finding::TeardownFailed {
                detail: crate::redact::redact(e),
            }),
    );
    for e in &scenario.expect.leftovers {
        let found = leftovers.iter().filter(|l| covers(e, l)).count();
        let reproduced = match e.count {
            Some(n) => found == n,
            None => found > 0,
        };
        if !reproduced {
            j.findings.push(Finding::LeftoverNotReproduced {
                expected: e.to_string(),
                found,
            });
        }
    }
    j
}

/// Why helm failed, in one line: its first meaningful line, with the listed errors of
/// a multi-error (`Error: 1 error occurred:` then `* timed out waiting for the
/// condition`) joined to it.
fn helm_reason(stderr: &str) -> Option<String> {
    let first = crate::log_text::first_meaningful_line(stderr)?;
    if !first.ends_with("occurred:") {
        return Some(first.to_string());
    }
    let listed: Vec<&str> = stderr
        .lines()
        .skip_while(|l| !l.contains(first))
        .skip(1)
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("* "))
        .collect();
    Some(format!("{first} {}", listed.join("; ")))
}

/// Failed steps, unexpected helm exit codes and settle time-outs.
fn step_findings(scenario: &Scenario, outcome: &Outcome) -> Vec<Finding> {
    let mut out = Vec::new();
    for record in &outcome.steps {
        if let Some(e) = &record.error {
            out.push(Finding::StepFailed {
                step: record.index,
                title: record.title.clone(),
                detail: crate::redact::redact(&crate::log_text::summary_line(e)),
            });
            continue;
        }
        if let Some(h) = &record.helm {
            // Steps the harness added (a final settle) have no scenario step.
            let expected = match scenario.steps.get(record.index) {
                Some(Step::Helm(step)) => step.expect_exit_code,
                _ => 0,
            };
            if h.exit_code != expected {
                let said = helm_reason(&h.stderr);
                out.push(Finding::StepFailed {
                    step: record.index,
                    title: record.title.clone(),
                    detail: crate::redact::redact(&format!(
                        "helm exited {} (the step expects {expected}){}",
                        h.exit_code,
                        said.map(|l| format!(": {l}")).unwrap_or_default()
                    )),
                });
            }
        }
        if let Some(s) = &record.settle
            && s.timed_out
        {
            out.push(Finding::SettleTimedOut {
                step: record.index,
                waited_ms: s.duration_ms,
                orphans: s.orphans,
            });
        }
    }
    out
}

/// What AKS would make of each pool a step rolled: the failed drain or surge that
/// fails it, the nodes it quarantines, and every workload not back (a deadlock says so
/// in its cause). Texts are the cluster's, redacted.
fn rollout_findings(outcome: &Outcome) -> Vec<Finding> {
    use crate::redact::redact;
    use crate::rollout::Prediction;
    let mut out = Vec::new();
    for record in &outcome.steps {
        let Some(rollout) = &record.rollout else {
            continue;
        };
        let step = record.index;
        for p in &rollout.pools {
            let pool = p.pool.clone();
            match &p.prediction {
                Prediction::Fails { node, cause, after } => out.push(Finding::NodeUndrainable {
                    step,
                    pool: pool.clone(),
                    node: node.clone(),
                    cause: redact(cause),
                    after_secs: after.as_secs(),
                }),
                Prediction::Quarantined { nodes, causes } => out.push(Finding::NodesQuarantined {
                    step,
                    pool: pool.clone(),
                    nodes: nodes.clone(),
                    causes: causes.iter().map(|c| redact(c)).collect(),
                }),
                Prediction::SurgeFailed { error } => out.push(Finding::SurgeFailed {
                    step,
                    pool: pool.clone(),
                    error: redact(error),
                }),
                Prediction::Succeeds | Prediction::Degraded { .. } => {}
            }
            for n in &p.nodes {
                out.extend(n.not_back.iter().map(|b| Finding::PodsNotBack {
                    step,
                    pool: pool.clone(),
                    node: n.node.clone(),
                    workload: format!("{}/{}", b.namespace, b.owner),
                    cause: redact(&b.cause.to_string()),
                }));
            }
        }
    }
    out
}

/// Unlistable types the scenario does not break on purpose, and the ones it does that
/// could be listed after all.
fn unlistable_findings(expect: &Expect, outcome: &Outcome) -> Vec<Finding> {
    let mut out: Vec<Finding> = outcome
        .after
        .unlistable
        .iter()
        .filter(|u| !expect.unlistable.contains(&u.resource))
        .map(|u| Finding::Unlistable {
            resource: u.resource.clone(),
            error: crate::redact::redact(&u.error),
        })
        .collect();
    out.extend(
        outcome
            .after
            .discovery_errors
            .iter()
            .map(|d| Finding::DiscoveryFailed {
                group_version: d.group_version.clone(),
                error: crate::redact::redact(&d.error),
            }),
    );
    out.extend(
        expect
            .unlistable
            .iter()
            .filter(|r| !outcome.after.unlistable.iter().any(|u| &u.resource == *r))
            .map(|r| Finding::UnlistableNotReproduced {
                resource: r.clone(),
            }),
    );
    out
}

/// A scenario's verdict from its runs' verdicts and its regressions.
pub fn scenario_verdict(runs: &[Verdict], regressions: usize, fail_on: &[FailOn]) -> Verdict {
    if runs.contains(&Verdict::Error) {
        Verdict::Error
    } else if runs.contains(&Verdict::Fail)
        || (fail_on.contains(&FailOn::Regressions) && regressions > 0)
    {
        Verdict::Fail
    } else {
        Verdict::Pass
    }
}

/// The job's verdict from its scenarios' verdicts.
pub fn job_verdict(scenarios: &[Verdict]) -> Verdict {
    if scenarios.contains(&Verdict::Error) {
        Verdict::Error
    } else if scenarios.contains(&Verdict::Fail) {
        Verdict::Fail
    } else {
        Verdict::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helm_multi_errors_say_what_they_list() {
        let stderr = "Error: 1 error occurred:\n\t* timed out waiting for the condition\n\n";
        assert_eq!(
            helm_reason(stderr).as_deref(),
            Some("Error: 1 error occurred: timed out waiting for the condition")
        );
        assert_eq!(
            helm_reason("Error: INSTALLATION FAILED: boom\n").as_deref(),
            Some("Error: INSTALLATION FAILED: boom")
        );
    }
}
