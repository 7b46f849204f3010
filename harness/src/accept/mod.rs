//! Accepted findings and a baseline, for a gate that runs every night (`--accept`,
//! `--baseline`).
//!
//! A team replaying its production twin every night always sees what its charts leave
//! by design (hook Jobs, objects held by a finalizer it knows about). Rather than
//! turning the gate off, it accepts those findings one by one, each with who accepted
//! it, why and until when; or it compares with last night's report and fails only on
//! what is new. Both only change whether a finding counts: the report still shows it,
//! with the acceptance or the baseline that waived it.
//!
//! Precedence, for each finding: the first entry in force that matches accepts it; else
//! an expired entry that matches makes it count again, even when the baseline had it
//! (an expiry is a deadline someone set on purpose); else the baseline waives what it
//! had. An entry in force that decided nothing (it matched nothing, or only what an
//! earlier entry accepted) is reported stale and fails nothing.

pub mod file;
pub mod render;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::Date;

use crate::audit::AuditReport;
use crate::policy::{self, Finding};
use crate::reason::Reason;
use crate::report::{FindingReport, LeftoverReport, Regression, Report, RunReport, Verdict};
use crate::runner::Role;

pub use file::{AcceptError, AcceptFile, Baseline, BaselineFor, load, load_baseline};

/// The schema of `audit.json`.
pub const AUDIT_SCHEMA: &str = "preflight.audit/v1";

/// What kind of finding an entry accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// An object left behind that the scenario does not expect.
    Leftover,
    /// The target behaves worse than the source.
    Regression,
    StepFailed,
    SettleTimedOut,
    Unlistable,
    DiscoveryFailed,
    TeardownFailed,
    LeftoverNotReproduced,
    UnlistableNotReproduced,
    /// A finding of `preflight audit` (its check is `check`).
    Audit,
}

impl FindingKind {
    /// The name accept files use.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Leftover => "leftover",
            FindingKind::Regression => "regression",
            FindingKind::StepFailed => "step-failed",
            FindingKind::SettleTimedOut => "settle-timed-out",
            FindingKind::Unlistable => "unlistable",
            FindingKind::DiscoveryFailed => "discovery-failed",
            FindingKind::TeardownFailed => "teardown-failed",
            FindingKind::LeftoverNotReproduced => "leftover-not-reproduced",
            FindingKind::UnlistableNotReproduced => "unlistable-not-reproduced",
            FindingKind::Audit => "audit",
        }
    }

    fn of(f: &Finding) -> FindingKind {
        match f {
            Finding::StepFailed { .. } => FindingKind::StepFailed,
            Finding::SettleTimedOut { .. } => FindingKind::SettleTimedOut,
            Finding::Unlistable { .. } => FindingKind::Unlistable,
            Finding::DiscoveryFailed { .. } => FindingKind::DiscoveryFailed,
            Finding::TeardownFailed { .. } => FindingKind::TeardownFailed,
            Finding::LeftoverNotReproduced { .. } => FindingKind::LeftoverNotReproduced,
            Finding::UnlistableNotReproduced { .. } => FindingKind::UnlistableNotReproduced,
        }
    }
}

/// What an entry accepts: every field given must match (`*` and `?` are wildcards in
/// the text fields).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Matcher {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding: Option<FindingKind>,
    /// The scenario, or the twin's pass (`web-pre-delete-unreachable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    /// The object's kind, exactly (`Job`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The object's name, its normalised name (`Pod of ReplicaSet of Deployment web`),
    /// an audit finding's object, or a regression's objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The object's top owner, `Kind/name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owned_by: Option<String>,
    /// Why the object stayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// An audit check (`webhook-timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// The finding's sentence as the report prints it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl Matcher {
    /// Whether every field given matches `s`.
    pub fn matches(&self, s: &Subject) -> bool {
        let glob_opt = |p: &Option<String>, v: Option<&str>| {
            p.as_ref().is_none_or(|p| v.is_some_and(|v| glob(p, v)))
        };
        self.finding.is_none_or(|f| f == s.finding)
            && glob_opt(&self.scenario, s.scenario.as_deref())
            && self
                .kind
                .as_ref()
                .is_none_or(|k| s.kind.as_ref() == Some(k))
            && self
                .name
                .as_ref()
                .is_none_or(|p| s.names.iter().any(|n| glob(p, n)))
            && glob_opt(&self.owned_by, s.owned_by.as_deref())
            && self.reason.is_none_or(|r| s.reason == Some(r))
            && glob_opt(&self.check, s.check.as_deref())
            && self.text.as_ref().is_none_or(|p| glob(p, &s.text))
    }
}

/// Whether `text` matches `pattern`, where `*` is any run of characters and `?` one.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // The last `*` seen and where in the text it started to match.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// One entry of an accept file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `file:line:column` of the entry.
    pub at: String,
    pub matcher: Matcher,
    pub reason: String,
    /// Who accepted it.
    pub owner: String,
    /// The last day it accepts.
    pub expires: Date,
}

impl Entry {
    /// Whether it no longer accepts on `today` (it accepts through its expiry date).
    pub fn expired(&self, today: Date) -> bool {
        today > self.expires
    }

    fn waiver(&self, expired: bool) -> Waiver {
        let by = AcceptedBy {
            at: self.at.clone(),
            owner: self.owner.clone(),
            reason: self.reason.clone(),
            expires: self.expires.to_string(),
        };
        if expired {
            Waiver::Expired(by)
        } else {
            Waiver::Accepted(by)
        }
    }
}

/// Who accepted a finding, why and until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedBy {
    /// `file:line:column` of the entry.
    pub at: String,
    pub owner: String,
    pub reason: String,
    pub expires: String,
}

/// What the accept file or the baseline said of one finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum Waiver {
    /// An entry in force accepts it: it does not count.
    Accepted(AcceptedBy),
    /// The entry that accepted it has expired: it counts again.
    Expired(AcceptedBy),
    /// The baseline report had it: not new, it does not count.
    Baseline,
}

impl Waiver {
    /// Whether the finding no longer counts.
    pub fn waives(&self) -> bool {
        !matches!(self, Waiver::Expired(_))
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            Waiver::Accepted(b) => format!(
                "accepted by {} until {}: {} ({})",
                b.owner, b.expires, b.reason, b.at
            ),
            Waiver::Expired(b) => format!(
                "acceptance expired on {} (by {}: {}; {}): counts again",
                b.expires, b.owner, b.reason, b.at
            ),
            Waiver::Baseline => "in the baseline: not new".to_string(),
        }
    }
}

/// Whether an optional waiver waives.
pub fn waived(w: &Option<Waiver>) -> bool {
    w.as_ref().is_some_and(Waiver::waives)
}

/// A finding as the matcher sees it, whatever its type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    pub finding: FindingKind,
    pub scenario: Option<String>,
    pub kind: Option<String>,
    /// Names an entry's `name` may match.
    pub names: Vec<String>,
    pub owned_by: Option<String>,
    pub reason: Option<Reason>,
    pub check: Option<String>,
    pub text: String,
    /// The same on every run of the same finding: no time, run id, namespace or
    /// generated name (generated names are replaced by the ownership path).
    pub identity: String,
}

impl Subject {
    fn base(finding: FindingKind, scenario: &str, text: String, identity: String) -> Subject {
        Subject {
            finding,
            scenario: Some(scenario.to_string()),
            kind: None,
            names: Vec::new(),
            owned_by: None,
            reason: None,
            check: None,
            text,
            identity,
        }
    }

    /// An unexpected leftover of a run.
    pub fn leftover(scenario: &str, run: &str, l: &LeftoverReport) -> Subject {
        let text = format!("{} ({})", l.normalized, l.reason.as_str());
        let identity = format!(
            "leftover {scenario} {run}: {} ({})",
            l.normalized,
            l.reason.as_str()
        );
        Subject {
            kind: Some(l.kind.clone()),
            names: vec![l.name.clone(), l.normalized.clone()],
            owned_by: l
                .owner_chain
                .last()
                .map(|o| format!("{}/{}", o.kind, o.name)),
            reason: Some(l.reason),
            ..Subject::base(FindingKind::Leftover, scenario, text, identity)
        }
    }

    /// A finding of a run (failed step, unlistable type, ...).
    pub fn finding(scenario: &str, run: &str, f: &FindingReport) -> Subject {
        let kind = FindingKind::of(&f.finding);
        // What names the finding on every run; details that quote a namespace or a
        // time are left out.
        let key = match &f.finding {
            Finding::StepFailed { step, title, .. } => format!("step {step} ({title})"),
            Finding::SettleTimedOut { step, .. } => format!("step {step}"),
            Finding::Unlistable { resource, .. }
            | Finding::UnlistableNotReproduced { resource } => resource.clone(),
            Finding::DiscoveryFailed { group_version, .. } => group_version.clone(),
            Finding::TeardownFailed { .. } => String::new(),
            Finding::LeftoverNotReproduced { expected, .. } => expected.clone(),
        };
        let identity = format!("{} {scenario} {run}: {key}", kind.as_str());
        Subject::base(kind, scenario, f.text.clone(), identity)
    }

    /// A regression of a scenario.
    pub fn regression(g: &Regression) -> Subject {
        let d = &g.difference;
        let what = if d.objects.is_empty() {
            d.text.clone()
        } else {
            d.objects.join(", ")
        };
        let identity = format!("regression {}: {:?} {what}", g.scenario, d.aspect);
        Subject {
            names: d.objects.clone(),
            ..Subject::base(
                FindingKind::Regression,
                &g.scenario,
                d.text.clone(),
                identity,
            )
        }
    }

    /// A finding of `preflight audit`.
    pub fn audit(f: &crate::audit::Finding) -> Subject {
        Subject {
            finding: FindingKind::Audit,
            scenario: None,
            kind: f.object.split('/').next().map(str::to_string),
            names: vec![f.object.clone()],
            owned_by: None,
            reason: None,
            check: Some(f.check.clone()),
            text: f.title.clone(),
            identity: format!("audit {}: {}", f.check, f.object),
        }
    }
}

/// `source`, `target`, `upgrade`; a version between on a path is named by its version.
fn run_key(run: &RunReport) -> String {
    match run.role {
        Role::Via => format!("via {}", run.version),
        role => role.as_str().to_string(),
    }
}

/// What the job was asked to accept: the accept file, the baseline, and the day.
#[derive(Clone, Debug)]
pub struct Gate {
    pub accept: Option<AcceptFile>,
    pub baseline: Option<Baseline>,
    /// The day expiry is judged on (given, never read from the clock here).
    pub today: Date,
}

/// What each entry matched and what the baseline waived, as the gate goes.
struct Tally {
    matched: Vec<Vec<String>>,
    suppressed: Vec<String>,
}

impl Gate {
    fn entries(&self) -> &[Entry] {
        self.accept.as_ref().map_or(&[], |a| a.entries.as_slice())
    }

    /// What waives `s`, if anything (see the module's precedence). Only the entry that
    /// decides is credited with the match: an entry that only overlaps an earlier one
    /// is stale, and an expired entry superseded by one in force fails nothing.
    fn decide(&self, s: &Subject, tally: &mut Tally) -> Option<Waiver> {
        let matching = |expired: bool| {
            self.entries()
                .iter()
                .position(|e| e.expired(self.today) == expired && e.matcher.matches(s))
        };
        if let Some(i) = matching(false).or_else(|| matching(true)) {
            tally.matched[i].push(s.text.clone());
            let e = &self.entries()[i];
            return Some(e.waiver(e.expired(self.today)));
        }
        let known = self
            .baseline
            .as_ref()
            .is_some_and(|b| b.identities.contains(&s.identity));
        known.then(|| {
            tally.suppressed.push(s.text.clone());
            Waiver::Baseline
        })
    }

    fn tally(&self) -> Tally {
        Tally {
            matched: vec![Vec::new(); self.entries().len()],
            suppressed: Vec::new(),
        }
    }

    /// The report's account of the accept file and the baseline.
    fn account(&self, tally: Tally) -> render::Acceptance {
        let entries = self
            .entries()
            .iter()
            .zip(tally.matched)
            .map(|(e, matched)| render::EntryReport {
                status: if e.expired(self.today) {
                    render::EntryStatus::Expired
                } else if matched.is_empty() {
                    render::EntryStatus::Stale
                } else {
                    render::EntryStatus::InForce
                },
                at: e.at.clone(),
                matcher: e.matcher.clone(),
                owner: e.owner.clone(),
                reason: e.reason.clone(),
                expires: e.expires.to_string(),
                matched,
            })
            .collect();
        render::Acceptance {
            today: self.today.to_string(),
            file: self.accept.as_ref().map(|a| a.file.clone()),
            entries,
            baseline: self.baseline.as_ref().map(|b| render::BaselineReport {
                file: b.file.clone(),
                known: b.identities.len(),
                suppressed: tally.suppressed,
            }),
        }
    }
}

/// Every finding of `report` that can fail a gate, each given to `decide` with its
/// subject and its waiver set to what `decide` answers: unexpected leftovers (failure
/// reasons the scenario does not expect), run findings, regressions.
fn each_finding(report: &mut Report, mut decide: impl FnMut(&Subject) -> Option<Waiver>) {
    for sc in &mut report.scenarios {
        for run in &mut sc.runs {
            let key = run_key(run);
            for l in &mut run.leftovers {
                if l.reason.is_failure() && !l.expected {
                    l.acceptance = decide(&Subject::leftover(&sc.name, &key, l));
                }
            }
            for f in &mut run.findings {
                f.acceptance = decide(&Subject::finding(&sc.name, &key, f));
            }
        }
    }
    for g in &mut report.regressions {
        g.acceptance = decide(&Subject::regression(g));
    }
}

/// The identities of every finding of a report (a baseline's).
pub fn identities(report: &mut Report) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    each_finding(report, |s| {
        out.insert(s.identity.clone());
        None
    });
    out
}

/// Applies the gate to a run's report: marks what it waives, judges runs, scenarios
/// and the job again on what still counts, and adds the account of the gate.
pub fn apply(report: &mut Report, gate: &Gate) {
    let mut tally = gate.tally();
    each_finding(report, |s| gate.decide(s, &mut tally));
    rejudge(report);
    report.acceptance = Some(gate.account(tally));
}

/// Verdicts, counts and the exit code again, on what the gate left counting.
fn rejudge(report: &mut Report) {
    let fail_on = report.fail_on.clone();
    let (mut unexpected, mut failed_runs) = (0, 0);
    for sc in &mut report.scenarios {
        for run in &mut sc.runs {
            for l in &mut run.leftovers {
                l.unexpected &= !waived(&l.acceptance);
            }
            for f in &mut run.findings {
                f.counted &= !waived(&f.acceptance);
            }
            let left = run.leftovers.iter().filter(|l| l.unexpected).count();
            unexpected += left;
            if run.verdict != Verdict::Error {
                let counted = run.findings.iter().any(|f| f.counted);
                run.verdict = policy::run_verdict(left > 0, counted, &fail_on);
            }
            failed_runs += usize::from(run.verdict != Verdict::Pass);
        }
        let regressions = report
            .regressions
            .iter()
            .filter(|g| g.scenario == sc.name && !waived(&g.acceptance))
            .count();
        let runs: Vec<Verdict> = sc.runs.iter().map(|r| r.verdict).collect();
        sc.verdict = policy::scenario_verdict(&runs, regressions, &fail_on);
    }
    report.summary.unexpected_leftovers = unexpected;
    report.summary.failed_runs = failed_runs;
    report.summary.regressions = report
        .regressions
        .iter()
        .filter(|g| !waived(&g.acceptance))
        .count();
    let verdicts: Vec<Verdict> = report.scenarios.iter().map(|s| s.verdict).collect();
    report.verdict = policy::job_verdict(&verdicts);
    report.exit_code = report.verdict.exit_code();
}

/// Applies the gate to an audit: a finding at or above `--fail-on` fails it unless
/// waived.
pub fn apply_audit(report: &mut AuditReport, gate: &Gate) {
    let mut tally = gate.tally();
    for f in &mut report.findings {
        f.acceptance = gate.decide(&Subject::audit(f), &mut tally);
    }
    let failing = report
        .findings
        .iter()
        .any(|f| f.severity >= report.fail_on && !waived(&f.acceptance));
    report.verdict = if failing {
        Verdict::Fail
    } else {
        Verdict::Pass
    };
    report.exit_code = report.verdict.exit_code();
    report.acceptance = Some(gate.account(tally));
}
