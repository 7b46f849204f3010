//! `--accept` and `--baseline` on the fixture job of `fixture_tests`: what counts
//! after them, the exit code, baseline identities across runs whose generated names
//! and namespaces differ, and the four formats.

use time::macros::date;

use crate::accept::file::{BaselineFor, parse_baseline};
use crate::accept::{self, AcceptFile, Baseline, Entry, FindingKind, Gate, Matcher, Waiver};
use crate::runner::RunResult;

use super::fixture_tests::{filters, job, schema_errors, versions};
use super::{FailOn, Report, Verdict, build, html, junit, markdown, render_json};

fn report() -> Report {
    let (scenarios, results) = job();
    build(
        &scenarios,
        &results,
        &versions(),
        &crate::policy::DEFAULT_FAIL_ON,
    )
}

fn entry(line: u32, matcher: Matcher, why: &str, expires: time::Date) -> Entry {
    Entry {
        at: format!("ci/accept.yaml:{line}:5"),
        matcher,
        reason: why.into(),
        owner: "platform-team".into(),
        expires,
    }
}

/// In force: `regresses`' leftovers and its regression; expired: `unreproduced`'s
/// failed uninstall; stale: a hook Job nothing left. The baseline had everything of
/// `unreproduced`.
fn gate(today: time::Date) -> Gate {
    let until = date!(2026 - 12 - 31);
    let entries = vec![
        entry(
            2,
            Matcher {
                finding: Some(FindingKind::Leftover),
                scenario: Some("regresses".into()),
                owned_by: Some("Deployment/regresses-web".into()),
                ..Matcher::default()
            },
            "the web Deployment's Pods outlive it on purpose (OPS-7)",
            until,
        ),
        entry(
            7,
            Matcher {
                finding: Some(FindingKind::Regression),
                scenario: Some("regresses".into()),
                ..Matcher::default()
            },
            "known on v1.30, fixed in chart 2.4",
            until,
        ),
        entry(
            12,
            Matcher {
                finding: Some(FindingKind::StepFailed),
                scenario: Some("unreproduced".into()),
                text: Some("*helm uninstall*".into()),
                ..Matcher::default()
            },
            "uninstall times out while the guard is down",
            date!(2026 - 11 - 30),
        ),
        entry(
            18,
            Matcher {
                kind: Some("Job".into()),
                reason: Some(crate::reason::Reason::HookLeftover),
                ..Matcher::default()
            },
            "the migration hook Job",
            until,
        ),
    ];
    let mut previous = report();
    previous.scenarios.retain(|s| s.name == "unreproduced");
    previous
        .regressions
        .retain(|g| g.scenario == "unreproduced");
    Gate {
        accept: Some(AcceptFile {
            file: "ci/accept.yaml".into(),
            entries,
        }),
        baseline: Some(Baseline {
            file: "reports/last-night/report.json".into(),
            identities: accept::identities(&mut previous),
        }),
        today,
    }
}

#[test]
fn accepted_and_baseline_findings_do_not_count_an_expired_acceptance_does() {
    let mut r = report();
    assert_eq!(r.exit_code, 1);
    accept::apply(&mut r, &gate(date!(2026 - 12 - 03)));
    let by_name = |n: &str| r.scenarios.iter().find(|s| s.name == n).unwrap();
    let regresses = by_name("regresses");
    assert_eq!(
        regresses.verdict,
        Verdict::Pass,
        "leftovers and regression accepted"
    );
    let target = &regresses.runs[1];
    assert_eq!(target.leftovers.len(), 4);
    assert!(target.leftovers.iter().all(|l| !l.unexpected
        && matches!(l.acceptance, Some(Waiver::Accepted(ref b)) if b.at == "ci/accept.yaml:2:5")));
    let unreproduced = by_name("unreproduced");
    assert_eq!(
        unreproduced.verdict,
        Verdict::Fail,
        "its acceptance expired"
    );
    let counted: Vec<&str> = unreproduced
        .runs
        .iter()
        .flat_map(|run| run.findings.iter().filter(|f| f.counted))
        .map(|f| f.text.as_str())
        .collect();
    assert_eq!(counted.len(), 1, "{counted:?}");
    assert!(counted[0].starts_with("step 2 (helm uninstall) failed"));
    // The rest of `unreproduced` was in the baseline.
    let source = &unreproduced.runs[0];
    assert_eq!(source.verdict, Verdict::Pass);
    assert_eq!(source.findings[0].acceptance, Some(Waiver::Baseline));
    assert_eq!(r.summary.unexpected_leftovers, 0);
    assert_eq!(r.summary.regressions, 0);
    assert_eq!((r.verdict, r.exit_code), (Verdict::Fail, 1));
    let a = r.acceptance.as_ref().unwrap();
    let statuses: Vec<&str> = a.entries.iter().map(|e| e.status.as_str()).collect();
    assert_eq!(statuses, ["in force", "in force", "EXPIRED", "stale"]);
    assert_eq!(a.entries[0].matched.len(), 4);
    // Both runs' unreproduced demonstrations and the helm exit code regression.
    assert_eq!(a.baseline.as_ref().unwrap().suppressed.len(), 3);

    // Before the expiry, nothing counts: the gate passes.
    let mut r = report();
    accept::apply(&mut r, &gate(date!(2026 - 11 - 30)));
    assert_eq!((r.verdict, r.exit_code), (Verdict::Pass, 0));
    // Without the accept file, only what the baseline had is waived.
    let mut r = report();
    let mut g = gate(date!(2026 - 12 - 03));
    g.accept = None;
    accept::apply(&mut r, &g);
    assert_eq!(r.exit_code, 1);
    assert_eq!(
        r.summary.unexpected_leftovers, 4,
        "regresses' leftovers are new"
    );
}

/// The same job again on other namespaces, with other generated names (a new
/// ReplicaSet hash, new Pod suffixes): `results` renamed.
fn renamed(mut results: Vec<RunResult>) -> Vec<RunResult> {
    for r in &mut results {
        let Ok(o) = &mut r.outcome else { continue };
        let rename = |s: &str| {
            s.replace("abcde", "zyxwv")
                .replace("5d4f8c7b9", "7b9c4d5f8")
        };
        o.namespace = rename(&o.namespace);
        for obj in &mut o.after.objects {
            obj.name = rename(&obj.name).replace("-abcd", "-qrst");
            obj.namespace = obj.namespace.as_deref().map(rename);
            for owner in &mut obj.owners {
                owner.name = rename(&owner.name);
            }
        }
        for w in &mut o.webhook_requests {
            w.name = w.name.as_deref().map(rename);
            w.namespace = w.namespace.as_deref().map(rename);
        }
        o.log_evidence = o
            .log_evidence
            .iter()
            .map(|e| e.map_text(&|t| rename(t)))
            .collect();
    }
    results
}

#[test]
fn baseline_identities_survive_new_generated_names_and_namespaces() {
    let (scenarios, results) = job();
    let fail_on = crate::policy::DEFAULT_FAIL_ON;
    let mut last = build(&scenarios, &results, &versions(), &fail_on);
    let mut tonight = build(&scenarios, &renamed(results.clone()), &versions(), &fail_on);
    let names = |r: &Report| -> Vec<String> {
        r.scenarios
            .iter()
            .flat_map(|s| s.runs.iter().flat_map(|run| run.leftovers.iter()))
            .map(|l| l.name.clone())
            .collect()
    };
    assert_ne!(names(&last), names(&tonight), "the renaming renamed");
    let ids = accept::identities(&mut last);
    assert!(!ids.is_empty());
    assert_eq!(ids, accept::identities(&mut tonight));
    // Read back from the report's JSON, as `--baseline report.json` does.
    let from_json = parse_baseline(&render_json(&last), "report.json", BaselineFor::Run).unwrap();
    assert_eq!(from_json.identities, ids);
    // And from runs.json, which a shard or a replay writes beside it.
    let indexed: Vec<(usize, RunResult)> = results.iter().cloned().enumerate().collect();
    let runs = super::shard::ShardFile {
        schema: super::shard::SCHEMA.to_string(),
        shard: 1,
        of: 1,
        planned: indexed.len(),
        provider: "local".into(),
        versions: versions(),
        fail_on: fail_on.to_vec(),
        noise: Vec::new(),
        scenarios: scenarios.iter().map(super::ScenarioMeta::of).collect(),
        records: super::records(&scenarios, &indexed, &versions(), &fail_on),
    };
    let text = serde_json::to_string(&runs).unwrap();
    let from_runs = parse_baseline(&text, "runs.json", BaselineFor::Run).unwrap();
    assert_eq!(from_runs.identities, ids);
    let gate = Gate {
        accept: None,
        baseline: Some(from_json),
        today: date!(2026 - 12 - 03),
    };
    accept::apply(&mut tonight, &gate);
    assert_eq!((tonight.verdict, tonight.exit_code), (Verdict::Pass, 0));

    // A new leftover kind on the target is new, the rest is not.
    let mut results = renamed(results);
    let Ok(o) = &mut results[5].outcome else {
        panic!()
    };
    let mut cm =
        super::fixture_tests::obj("ConfigMap", "v1", &o.namespace, "web-config", "cm1", &[]);
    cm.labels.insert("app".into(), "web".into());
    o.after.objects.push(cm);
    let mut tonight = build(&scenarios, &results, &versions(), &[FailOn::Leftovers]);
    accept::apply(&mut tonight, &gate);
    assert_eq!(tonight.exit_code, 1);
    let counted: Vec<String> = tonight
        .scenarios
        .iter()
        .flat_map(|s| s.runs.iter().flat_map(|run| run.leftovers.iter()))
        .filter(|l| l.unexpected)
        .map(|l| l.normalized.clone())
        .collect();
    assert_eq!(counted, ["ConfigMap web-config"]);
}

#[test]
fn accepted_findings_in_every_format() {
    let mut r = report();
    accept::apply(&mut r, &gate(date!(2026 - 12 - 03)));
    let doc: serde_json::Value = serde_json::from_str(&render_json(&r)).unwrap();
    assert_eq!(schema_errors(&doc), Vec::<String>::new());
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!("accepted.report.json", render_json(&r));
        insta::assert_snapshot!("accepted.report.md", markdown::render(&r));
        insta::assert_snapshot!("accepted.junit.xml", junit::render(&r));
        insta::assert_snapshot!("accepted.report.html", html::render(&r));
    });
}
