//! Reports: one result model, four renderers (nextest style: no renderer re-derives a
//! fact).
//!
//! * `report.json`: the machine contract, [`SCHEMA`], described by
//!   `harness/schema/report.v1.json`;
//! * `report.md`: fits a pull-request comment or a change ticket;
//! * `junit.xml`: one test case per scenario and version, for CI systems;
//! * `report.html`: one self-contained page for people.
//!
//! Everything here computes and renders; the engine's `report` module writes the files
//! and stamps the time a report was generated.

pub mod html;
pub mod images;
pub mod junit;
pub mod markdown;
pub mod rollout;
pub mod shard;
pub mod text;

use serde::Serialize;

use crate::compare::{self, Comparison, Difference};
use crate::dry_run::DryRunReport;
use crate::policy::{self, Finding};
use crate::record::Outcome;
use crate::run::{Role, RunResult};
use crate::scenario::Scenario;
use crate::settle::SettleReport;
use crate::snapshot::Unlistable;
use crate::verdict::{self, Leftover, Reason};

/// The identifier and version of the JSON contract.
pub const SCHEMA: &str = "preflight.report/v1";

pub use crate::policy::{FailOn, Verdict};

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub version: String,
    /// What was asked for (`v1.31`, an AKS `1.31.3`) when it was not this exact patch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested: Option<String>,
    /// Why another patch than the one asked for ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substituted: Option<String>,
}

impl VersionInfo {
    pub fn new(version: impl Into<String>) -> Self {
        VersionInfo {
            version: version.into(),
            requested: None,
            substituted: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub schema: String,
    pub verdict: Verdict,
    /// The process exit code that goes with the verdict.
    pub exit_code: i32,
    pub fail_on: Vec<FailOn>,
    pub preflight_version: String,
    pub generated_at: String,
    pub provider: String,
    pub source: VersionInfo,
    pub target: VersionInfo,
    /// Every version of the run in order: source, those between (a path), target.
    pub versions: Vec<VersionInfo>,
    pub summary: Summary,
    /// Resource types left out of snapshots (`group/resource`).
    pub noise: Vec<String>,
    pub scenarios: Vec<ScenarioReport>,
    /// Every regression of every scenario, each naming its scenario.
    pub regressions: Vec<Regression>,
    /// What `--accept` and `--baseline` waived, and their entries (absent without them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceptance: Option<crate::accept::render::Acceptance>,
}

#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub scenarios: usize,
    pub runs: usize,
    pub failed_runs: usize,
    pub unexpected_leftovers: usize,
    pub regressions: usize,
    pub improvements: usize,
    /// Runs the harness could not run.
    pub errors: usize,
    /// Findings of every run (failed steps, time-outs, unlistable types, unreproduced
    /// demonstrations, node pools AKS would not roll cleanly), counted or not.
    pub findings: usize,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Regression {
    pub scenario: String,
    /// The earlier and the later version of the comparison.
    pub from: String,
    pub to: String,
    #[serde(flatten)]
    pub difference: Difference,
    /// What `--accept` or `--baseline` said of it (absent without them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceptance: Option<crate::accept::Waiver>,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioReport {
    pub name: String,
    pub description: String,
    pub verdict: Verdict,
    pub runs: Vec<RunReport>,
    /// Source against target. Empty for scenarios that upgrade in place (they run once).
    pub regressions: Vec<Difference>,
    pub improvements: Vec<Difference>,
    pub differences: Vec<Difference>,
    /// On a path of more than two versions: each version against the next.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hops: Vec<Hop>,
}

impl Report {
    /// The versions in order joined by `sep` (`v1.29.15 -> v1.30.14`).
    pub fn path(&self, sep: &str) -> String {
        self.versions
            .iter()
            .map(|v| v.version.as_str())
            .collect::<Vec<_>>()
            .join(sep)
    }

    /// What `--accept` or `--baseline` said of a regression `d` of `scenario`.
    pub fn regression_waiver(
        &self,
        scenario: &str,
        d: &Difference,
    ) -> Option<&crate::accept::Waiver> {
        self.regressions
            .iter()
            .find(|g| g.scenario == scenario && &g.difference == d)
            .and_then(|g| g.acceptance.as_ref())
    }

    /// `v1.31: ran v1.31.4 instead of v1.31.14: ...` for every version that is not the
    /// one asked for.
    pub fn substitutions(&self) -> Vec<String> {
        self.versions
            .iter()
            .filter_map(|v| {
                let why = v.substituted.as_ref()?;
                Some(format!(
                    "{}: ran {why}",
                    v.requested.as_deref().unwrap_or(&v.version)
                ))
            })
            .collect()
    }
}

/// One comparison of a scenario, for renderers: what was compared with what, and what
/// differed.
pub struct ComparisonView<'a> {
    /// Empty for the only comparison of a source and a target; `from -> to` otherwise.
    pub label: String,
    pub regressions: &'a [Difference],
    pub improvements: &'a [Difference],
    pub differences: &'a [Difference],
}

impl ScenarioReport {
    /// Source against target, then (on a longer path) each version against the next.
    pub fn comparisons(&self, report: &Report) -> Vec<ComparisonView<'_>> {
        let mut out = vec![ComparisonView {
            label: if self.hops.is_empty() {
                String::new()
            } else {
                format!(
                    "{} -> {}, whole path",
                    report.source.version, report.target.version
                )
            },
            regressions: &self.regressions,
            improvements: &self.improvements,
            differences: &self.differences,
        }];
        out.extend(self.hops.iter().map(|h| ComparisonView {
            label: format!("{} -> {}", h.from, h.to),
            regressions: &h.regressions,
            improvements: &h.improvements,
            differences: &h.differences,
        }));
        out
    }
}

/// One version against the next on a path.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hop {
    pub from: String,
    pub to: String,
    pub regressions: Vec<Difference>,
    pub improvements: Vec<Difference>,
    pub differences: Vec<Difference>,
}

/// One run as it is kept for the report: what the report shows of it and what the
/// comparison across versions reads. A shard writes these (`runs.json`), and
/// [`assemble_at`] builds the same report from them wherever they were made.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub scenario: String,
    /// Its index in the whole plan (what orders the runs).
    pub index: usize,
    /// The version it started on, as an index into the path.
    pub at: usize,
    pub run: RunReport,
    /// `None` when the run could not run.
    pub facts: Option<compare::Facts>,
}

/// A scenario as the report names it.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioMeta {
    pub name: String,
    pub description: String,
}

impl ScenarioMeta {
    pub fn of(s: &Scenario) -> Self {
        ScenarioMeta {
            name: s.name.clone(),
            description: s.description.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    /// `source`, `target`, or `upgrade` (source upgraded in place to target).
    pub role: Role,
    pub version: String,
    pub end_version: String,
    pub verdict: Verdict,
    /// One line: "helm said success (exit 0), 4 objects stayed".
    pub headline: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub namespace: Option<String>,
    pub release: Option<String>,
    pub steps: Vec<StepReport>,
    pub leftovers: Vec<LeftoverReport>,
    pub unlistable: Vec<Unlistable>,
    /// What went wrong in the run, and demonstrations that did not happen.
    pub findings: Vec<FindingReport>,
    pub webhook_requests: usize,
    /// Webhook requests not answered `allowed`/`converted`.
    pub webhook_refusals: usize,
    pub teardown_errors: Vec<String>,
    /// Containers that ran preflight's stand-in (or their own image with only the pull
    /// policy changed) because no node held their image, cluster texts redacted. Not
    /// findings: they never change the verdict.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub substitutions: Vec<crate::images::Substitution>,
}

/// A finding as reported: its class, whether `--fail-on` counts it, and a sentence.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FindingReport {
    pub class: FailOn,
    /// Whether it fails the run under this job's `--fail-on` (and is neither accepted
    /// nor in the baseline).
    pub counted: bool,
    pub text: String,
    pub finding: Finding,
    /// What `--accept` or `--baseline` said of it (absent without them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceptance: Option<crate::accept::Waiver>,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    pub index: usize,
    pub title: String,
    pub version: String,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<HelmReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<DryRunReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle: Option<SettleReport>,
    /// The node pools' roll (a `rollNodes` step), its cluster texts redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<crate::rollout::RolloutRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Objects in the run's namespace after the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects_after: Option<usize>,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmReport {
    pub command: String,
    pub exit_code: i32,
    /// The last lines of stderr (at most 20).
    pub stderr: String,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeftoverReport {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub reason: Reason,
    pub reason_text: String,
    /// Counted as a failure: a failure reason the scenario does not expect, neither
    /// accepted nor in the baseline.
    pub unexpected: bool,
    /// A failure reason the scenario expects (it demonstrates it).
    pub expected: bool,
    pub normalized: String,
    pub owner_chain: Vec<crate::ownership::OwnerLink>,
    /// The evidence as lines (what Markdown, HTML and JUnit show): at most
    /// [`SHOWN_PER_SOURCE`] pieces from each source, then how many more there were.
    pub evidence: Vec<String>,
    /// The same evidence, structured: its source, the object it names and the answer.
    /// Absent from runs written before evidence had types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence_records: Vec<crate::evidence::Evidence>,
    /// What `--accept` or `--baseline` said of it (absent without them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceptance: Option<crate::accept::Waiver>,
}

/// How many pieces of evidence from one source a leftover shows: a Pod the garbage
/// collector retried for an hour has a refusal per retry in every source.
pub const SHOWN_PER_SOURCE: usize = 3;

/// The evidence a report shows of a leftover, redacted: the first
/// [`SHOWN_PER_SOURCE`] of each source in order, and a line saying how many more
/// there were (every piece stays in the run's evidence; only the report is cut).
pub fn shown_evidence(
    evidence: &[crate::evidence::Evidence],
) -> (Vec<String>, Vec<crate::evidence::Evidence>) {
    let mut per_source: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut records = Vec::new();
    let mut omitted = 0;
    for e in evidence {
        let n = per_source.entry(e.source()).or_default();
        *n += 1;
        if *n > SHOWN_PER_SOURCE {
            omitted += 1;
        } else {
            records.push(e.map_text(&|t| redact(t)));
        }
    }
    let mut lines: Vec<String> = records.iter().map(ToString::to_string).collect();
    if omitted > 0 {
        lines.push(format!(
            "and {omitted} more piece{} of evidence like these",
            if omitted == 1 { "" } else { "s" }
        ));
    }
    (lines, records)
}

pub use crate::redact::redact;

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn run_report(
    role: Role,
    version: &str,
    scenario: &Scenario,
    result: &Result<Outcome, String>,
    fail_on: &[FailOn],
) -> (RunReport, Vec<Leftover>) {
    match result {
        Err(e) => (
            RunReport {
                role,
                version: version.to_string(),
                end_version: version.to_string(),
                verdict: Verdict::Error,
                // The error's first line alone often ends where the reason starts (a
                // component's log); the summary line adds the log line that says why.
                headline: redact(&format!(
                    "could not run: {}",
                    crate::log_text::summary_line(e)
                )),
                error: Some(redact(e)),
                namespace: None,
                release: None,
                steps: Vec::new(),
                leftovers: Vec::new(),
                unlistable: Vec::new(),
                findings: Vec::new(),
                webhook_requests: 0,
                webhook_refusals: 0,
                teardown_errors: Vec::new(),
                substitutions: Vec::new(),
            },
            Vec::new(),
        ),
        Ok(o) => {
            let left = verdict::leftovers(o);
            let judgement = policy::judge(scenario, o, &left);
            let leftovers: Vec<LeftoverReport> = left
                .iter()
                .zip(&judgement.expected)
                .map(|(l, expected)| {
                    let expected = l.reason.is_failure() && *expected;
                    let (evidence, evidence_records) = shown_evidence(&l.evidence);
                    LeftoverReport {
                        api_version: l.api_version.clone(),
                        kind: l.kind.clone(),
                        namespace: l.namespace.clone(),
                        name: l.name.clone(),
                        reason: l.reason,
                        reason_text: l.reason.describe().to_string(),
                        unexpected: l.reason.is_failure() && !expected,
                        expected,
                        normalized: l.normalized(),
                        owner_chain: l.owner_chain.clone(),
                        evidence,
                        evidence_records,
                        acceptance: None,
                    }
                })
                .collect();
            let failures = leftovers.iter().filter(|l| l.reason.is_failure()).count();
            let uninstall_exit = o
                .steps
                .iter()
                .filter_map(|s| s.helm.as_ref())
                .filter(|h| h.is_real_uninstall())
                .map(|h| h.exit_code)
                .next_back();
            let counted: Vec<&Finding> = judgement
                .findings
                .iter()
                .filter(|f| fail_on.contains(&f.class()))
                .collect();
            let headline = match (failures, uninstall_exit) {
                (0, _) if !counted.is_empty() => redact(&counted[0].describe()),
                (0, _) => "clean: nothing unexpected left behind".to_string(),
                (n, Some(0)) => format!(
                    "helm said success (exit 0), {n} object{} stayed",
                    if n == 1 { "" } else { "s" }
                ),
                (n, Some(code)) => format!(
                    "helm uninstall exited {code}, {n} object{} stayed",
                    if n == 1 { "" } else { "s" }
                ),
                (n, None) => format!("{n} object{} stayed", if n == 1 { "" } else { "s" }),
            };
            let steps = o
                .steps
                .iter()
                .enumerate()
                .map(|(i, s)| StepReport {
                    index: s.index,
                    title: redact(&s.title),
                    version: s.version.clone(),
                    duration_ms: s.duration_ms,
                    helm: s.helm.as_ref().map(|h| HelmReport {
                        command: redact(&h.command),
                        exit_code: h.exit_code,
                        stderr: redact(&tail(&h.stderr, 20)),
                    }),
                    dry_run: s.dry_run.clone(),
                    settle: s.settle.clone(),
                    rollout: s.rollout.as_ref().map(rollout::redacted),
                    error: s.error.as_deref().map(redact),
                    objects_after: o.objects_after_step.get(i).copied(),
                })
                .collect();
            let report = RunReport {
                role,
                version: o.start_version.clone(),
                end_version: o.end_version.clone(),
                verdict: judgement.verdict(&left, fail_on),
                headline,
                error: None,
                namespace: Some(o.namespace.clone()),
                release: Some(o.release.clone()),
                steps,
                leftovers,
                unlistable: o
                    .after
                    .unlistable
                    .iter()
                    .map(|u| crate::snapshot::Unlistable {
                        error: redact(&u.error),
                        ..u.clone()
                    })
                    .collect(),
                findings: judgement
                    .findings
                    .iter()
                    .map(|f| FindingReport {
                        class: f.class(),
                        counted: fail_on.contains(&f.class()),
                        text: redact(&f.describe()),
                        finding: f.redacted(),
                        acceptance: None,
                    })
                    .collect(),
                webhook_requests: o.webhook_requests.len(),
                webhook_refusals: o.webhook_requests.iter().filter(|r| r.refused()).count(),
                teardown_errors: o.teardown_errors.iter().map(|e| redact(e)).collect(),
                substitutions: o.substitutions.iter().map(images::redacted).collect(),
            };
            (report, left)
        }
    }
}

/// The records of finished runs: each judged against its scenario.
pub fn records(
    scenarios: &[Scenario],
    results: &[(usize, RunResult)],
    versions: &[VersionInfo],
    fail_on: &[FailOn],
) -> Vec<RunRecord> {
    results
        .iter()
        .filter_map(|(index, r)| {
            let scenario = scenarios.iter().find(|s| s.name == r.scenario)?;
            let version = versions.get(r.at).map_or("", |v| v.version.as_str());
            let (run, left) = run_report(r.role, version, scenario, &r.outcome, fail_on);
            Some(RunRecord {
                scenario: r.scenario.clone(),
                index: *index,
                at: r.at,
                run,
                facts: r
                    .outcome
                    .as_ref()
                    .ok()
                    .map(|o| compare::Facts::of(o, &left)),
            })
        })
        .collect()
}

/// Builds the report of a whole job from its runs on `versions` (the path; results
/// in plan order), generated at `generated_at` (RFC 3339).
pub fn build_at(
    scenarios: &[Scenario],
    results: &[RunResult],
    versions: &[VersionInfo],
    fail_on: &[FailOn],
    generated_at: String,
) -> Report {
    let indexed: Vec<(usize, RunResult)> = results.iter().cloned().enumerate().collect();
    let meta: Vec<ScenarioMeta> = scenarios.iter().map(ScenarioMeta::of).collect();
    assemble_at(
        &meta,
        records(scenarios, &indexed, versions, fail_on),
        versions,
        fail_on,
        generated_at,
    )
}

/// The report of runs recorded anywhere (one machine, or the shards of a CI matrix):
/// runs ordered by their plan index, each scenario's versions compared (source
/// against target, and on a longer path each version against the next), generated at
/// `generated_at` (RFC 3339).
pub fn assemble_at(
    scenarios: &[ScenarioMeta],
    mut records: Vec<RunRecord>,
    versions: &[VersionInfo],
    fail_on: &[FailOn],
    generated_at: String,
) -> Report {
    records.sort_by_key(|r| r.index);
    let name = |i: usize| versions.get(i).map_or(String::new(), |v| v.version.clone());
    let last = versions.len().saturating_sub(1);
    let mut report = Report {
        schema: SCHEMA.to_string(),
        verdict: Verdict::Pass,
        exit_code: 0,
        fail_on: fail_on.to_vec(),
        preflight_version: env!("CARGO_PKG_VERSION").to_string(),
        generated_at,
        provider: "local".to_string(),
        source: versions
            .first()
            .cloned()
            .unwrap_or_else(|| VersionInfo::new("")),
        target: versions
            .last()
            .cloned()
            .unwrap_or_else(|| VersionInfo::new("")),
        versions: versions.to_vec(),
        summary: Summary {
            scenarios: scenarios.len(),
            ..Default::default()
        },
        noise: crate::snapshot::Noise::default().0,
        scenarios: Vec::new(),
        regressions: Vec::new(),
        acceptance: None,
    };
    for scenario in scenarios {
        let mine: Vec<&RunRecord> = records
            .iter()
            .filter(|r| r.scenario == scenario.name)
            .collect();
        let runs: Vec<RunReport> = mine.iter().map(|r| r.run.clone()).collect();
        // A run that upgrades in place has nothing to be compared with.
        let facts_at = |at: usize| {
            mine.iter()
                .find(|r| r.at == at && r.run.role != Role::Upgrade)
                .and_then(|r| r.facts.as_ref())
        };
        let comparison = match (facts_at(0), facts_at(last)) {
            (Some(s), Some(t)) if last > 0 => compare::compare(s, t),
            _ => Comparison::default(),
        };
        let hops: Vec<Hop> = if last > 1 {
            (0..last)
                .filter_map(|i| {
                    let c = compare::compare(facts_at(i)?, facts_at(i + 1)?);
                    Some(Hop {
                        from: name(i),
                        to: name(i + 1),
                        regressions: c.regressions,
                        improvements: c.improvements,
                        differences: c.differences,
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut regressions: Vec<Regression> = comparison
            .regressions
            .iter()
            .map(|d| Regression {
                scenario: scenario.name.clone(),
                from: name(0),
                to: name(last),
                difference: d.clone(),
                acceptance: None,
            })
            .collect();
        for h in &hops {
            regressions.extend(h.regressions.iter().map(|d| Regression {
                scenario: scenario.name.clone(),
                from: h.from.clone(),
                to: h.to.clone(),
                difference: d.clone(),
                acceptance: None,
            }));
        }
        let improvements = comparison.improvements.len()
            + hops.iter().map(|h| h.improvements.len()).sum::<usize>();
        let errors = runs.iter().filter(|r| r.verdict == Verdict::Error).count();
        let unexpected: usize = runs
            .iter()
            .map(|r| r.leftovers.iter().filter(|l| l.unexpected).count())
            .sum();
        let run_verdicts: Vec<Verdict> = runs.iter().map(|r| r.verdict).collect();
        let verdict = policy::scenario_verdict(&run_verdicts, regressions.len(), fail_on);
        report.summary.runs += runs.len();
        report.summary.failed_runs += runs.iter().filter(|r| r.verdict != Verdict::Pass).count();
        report.summary.unexpected_leftovers += unexpected;
        report.summary.regressions += regressions.len();
        report.summary.improvements += improvements;
        report.summary.errors += errors;
        report.summary.findings += runs.iter().map(|r| r.findings.len()).sum::<usize>();
        report.regressions.extend(regressions);
        report.scenarios.push(ScenarioReport {
            name: scenario.name.clone(),
            description: scenario.description.clone(),
            verdict,
            runs,
            regressions: comparison.regressions,
            improvements: comparison.improvements,
            differences: comparison.differences,
            hops,
        });
    }
    let verdicts: Vec<Verdict> = report.scenarios.iter().map(|s| s.verdict).collect();
    let verdict = policy::job_verdict(&verdicts);
    let code = verdict.exit_code();
    report.verdict = verdict;
    report.exit_code = code;
    report
}

pub fn render_json(report: &Report) -> String {
    let mut s = serde_json::to_string_pretty(report).expect("report serialises");
    s.push('\n');
    s
}

/// A scenario run's column label: `v1.29.15`, or `v1.29.15 -> v1.30.14` for upgrades.
pub fn run_label(run: &RunReport) -> String {
    if run.role == Role::Upgrade {
        format!("{} -> {}", run.version, run.end_version)
    } else {
        run.version.clone()
    }
}
