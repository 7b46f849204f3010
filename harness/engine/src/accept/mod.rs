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
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use time::Date;

use crate::audit_report::AuditReport;
use crate::policy;
use crate::report::{Report, RunReport, Verdict};
use crate::runner::Role;

pub use preflight_core::accept::{
    AcceptedBy, FindingKind, Matcher, Subject, Waiver, glob, render, waived,
};

pub use file::{AcceptError, AcceptFile, Baseline, BaselineFor, load, load_baseline};

/// The schema of `audit.json`.
pub const AUDIT_SCHEMA: &str = "preflight.audit/v1";

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

/// A finding of `preflight audit` as the matcher sees it.
pub trait AuditSubject {
    fn audit(f: &crate::audit_report::Finding) -> Subject;
}

impl AuditSubject for Subject {
    fn audit(f: &crate::audit_report::Finding) -> Subject {
        Subject::audit_finding(&f.check, &f.object, &f.title)
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
