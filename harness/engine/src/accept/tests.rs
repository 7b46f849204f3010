//! Matching, expiry (on a given day), stale entries, file errors and baselines, without
//! a report: the subjects are built by hand. The report-level tests (verdicts, the four
//! formats) are in `report/accept_tests.rs`.

use time::macros::date;

use super::file::{AcceptError, BaselineFor, parse, parse_baseline};
use super::*;
use crate::reason::Reason;

fn leftover_subject(scenario: &str, kind: &str, name: &str, normalized: &str) -> Subject {
    Subject {
        kind: Some(kind.into()),
        names: vec![name.into(), normalized.into()],
        owned_by: Some("Deployment/web".into()),
        reason: Some(Reason::HookLeftover),
        ..Subject::base(
            FindingKind::Leftover,
            scenario,
            format!("{kind} {normalized}: a Helm hook"),
            format!("leftover {scenario} target: {normalized} (hook-leftover)"),
        )
    }
}

fn entry(matcher: Matcher, expires: Date) -> Entry {
    Entry {
        at: "accept.yaml:2:5".into(),
        matcher,
        reason: "by design".into(),
        owner: "platform".into(),
        expires,
    }
}

fn gate(entries: Vec<Entry>, today: Date) -> Gate {
    Gate {
        accept: Some(AcceptFile {
            file: "accept.yaml".into(),
            entries,
        }),
        baseline: None,
        today,
    }
}

#[test]
fn glob_matches_stars_and_question_marks_only_as_wildcards() {
    for (p, t, want) in [
        ("*", "", true),
        ("*", "anything", true),
        ("web-*-migrate", "web-1-migrate", true),
        ("web-*-migrate", "web-1-migrate-x", false),
        ("*migrate*", "db-migrate-7f9c", true),
        ("a?c", "abc", true),
        ("a?c", "ac", false),
        ("a*b*c", "aXbYbZc", true),
        ("a*b*c", "aXbYbZ", false),
        ("Job", "job", false),
        ("exact", "exact", true),
        ("", "x", false),
    ] {
        assert_eq!(glob(p, t), want, "glob({p:?}, {t:?})");
    }
}

#[test]
fn every_field_given_must_match() {
    let s = leftover_subject("nightly", "Job", "web-migrate", "Job web-migrate");
    let m = |f: &dyn Fn(&mut Matcher)| {
        let mut m = Matcher::default();
        f(&mut m);
        m.matches(&s)
    };
    assert!(m(&|m| m.kind = Some("Job".into())));
    assert!(!m(&|m| m.kind = Some("Pod".into())));
    assert!(m(&|m| m.name = Some("*-migrate".into())));
    assert!(m(&|m| m.owned_by = Some("Deployment/*".into())));
    assert!(!m(&|m| m.owned_by = Some("StatefulSet/*".into())));
    assert!(m(&|m| m.reason = Some(Reason::HookLeftover)));
    assert!(!m(&|m| m.reason = Some(Reason::BlockedByFinalizer)));
    assert!(m(&|m| m.finding = Some(FindingKind::Leftover)));
    assert!(!m(&|m| m.finding = Some(FindingKind::Regression)));
    assert!(m(&|m| m.scenario = Some("night*".into())));
    // A field the finding does not have never matches (a leftover has no audit check).
    assert!(!m(&|m| m.check = Some("*".into())));
    // All given fields together: one wrong one is enough to miss.
    assert!(!m(&|m| {
        m.kind = Some("Job".into());
        m.name = Some("other".into());
    }));
}

#[test]
fn an_entry_accepts_through_its_expiry_day_and_not_after() {
    let s = leftover_subject("nightly", "Job", "web-migrate", "Job web-migrate");
    let m = Matcher {
        kind: Some("Job".into()),
        ..Matcher::default()
    };
    let expires = date!(2027 - 03 - 31);
    for (today, want_waived) in [
        (date!(2027 - 03 - 30), true),
        (date!(2027 - 03 - 31), true),
        (date!(2027 - 04 - 01), false),
    ] {
        let g = gate(vec![entry(m.clone(), expires)], today);
        let mut tally = g.tally();
        let w = g.decide(&s, &mut tally).expect("the entry matches");
        assert_eq!(w.waives(), want_waived, "on {today}");
        assert_eq!(matches!(w, Waiver::Expired(_)), !want_waived, "on {today}");
        let account = g.account(tally);
        let status = account.entries[0].status;
        let want = if want_waived {
            render::EntryStatus::InForce
        } else {
            render::EntryStatus::Expired
        };
        assert_eq!(status, want, "on {today}");
        assert_eq!(account.today, today.to_string());
    }
}

#[test]
fn an_entry_that_matches_nothing_is_stale_and_the_first_in_force_wins() {
    let today = date!(2027 - 01 - 10);
    let s = leftover_subject("nightly", "Job", "web-migrate", "Job web-migrate");
    let g = gate(
        vec![
            entry(
                Matcher {
                    kind: Some("Pod".into()),
                    ..Matcher::default()
                },
                date!(2027 - 12 - 31),
            ),
            // Expired, but a later entry in force accepts it.
            entry(
                Matcher {
                    kind: Some("Job".into()),
                    ..Matcher::default()
                },
                date!(2026 - 12 - 31),
            ),
            entry(
                Matcher {
                    name: Some("web-*".into()),
                    ..Matcher::default()
                },
                date!(2027 - 12 - 31),
            ),
        ],
        today,
    );
    let mut tally = g.tally();
    let w = g.decide(&s, &mut tally).unwrap();
    assert!(matches!(w, Waiver::Accepted(_)), "{w:?}");
    let a = g.account(tally);
    let statuses: Vec<_> = a.entries.iter().map(|e| e.status).collect();
    assert_eq!(
        statuses,
        [
            render::EntryStatus::Stale,
            render::EntryStatus::Expired,
            render::EntryStatus::InForce
        ]
    );
    assert_eq!(a.entries[2].matched, std::slice::from_ref(&s.text));
    assert!(a.entries[0].matched.is_empty());
    // The expired entry decided nothing: it is not credited (its JUnit case must not
    // fail a job that passes).
    assert!(a.entries[1].matched.is_empty());
}

#[test]
fn an_expired_acceptance_counts_even_when_the_baseline_had_the_finding() {
    let s = leftover_subject("nightly", "Job", "web-migrate", "Job web-migrate");
    let mut g = gate(
        vec![entry(
            Matcher {
                kind: Some("Job".into()),
                ..Matcher::default()
            },
            date!(2026 - 01 - 01),
        )],
        date!(2026 - 06 - 01),
    );
    g.baseline = Some(Baseline {
        file: "last.json".into(),
        identities: [s.identity.clone()].into(),
    });
    let mut tally = g.tally();
    assert!(matches!(g.decide(&s, &mut tally), Some(Waiver::Expired(_))));
    // Without the entry, the baseline waives it; a finding it did not have is new.
    g.accept = None;
    let mut tally = g.tally();
    assert_eq!(g.decide(&s, &mut tally), Some(Waiver::Baseline));
    let other = leftover_subject("nightly", "Job", "db-migrate", "Job db-migrate");
    assert_eq!(g.decide(&other, &mut tally), None);
    assert_eq!(g.account(tally).baseline.unwrap().suppressed, [s.text]);
}

const GOOD: &str = "\
accept:
  - match: {finding: leftover, kind: Job, name: \"*-migrate\", reason: hook-leftover}
    reason: the migration hook Job is deleted by before-hook-creation on the next install
    owner: platform-team
    expires: 2027-03-31
  - match: {check: webhook-timeout}
    reason: vendor webhook, ticket OPS-12
    owner: alice
    expires: \"2027-01-15\"
";

#[test]
fn a_good_file_loads_with_where_each_entry_is() {
    let f = parse(GOOD, "ci/accept.yaml").unwrap();
    assert_eq!(f.entries.len(), 2);
    let e = &f.entries[0];
    assert_eq!(e.matcher.kind.as_deref(), Some("Job"));
    assert_eq!(e.matcher.reason, Some(Reason::HookLeftover));
    assert_eq!(e.expires, date!(2027 - 03 - 31));
    assert_eq!(e.owner, "platform-team");
    assert!(e.at.starts_with("ci/accept.yaml:2:"), "{}", e.at);
    assert!(f.entries[1].at.starts_with("ci/accept.yaml:6:"));
    assert_eq!(f.entries[1].expires, date!(2027 - 01 - 15));
}

#[test]
fn bad_files_say_file_line_column_and_the_field() {
    let cases: &[(&str, &str, u64, &str)] = &[
        (
            "unknown matcher field",
            "accept:\n  - match: {kinds: Job}\n    reason: r\n    owner: o\n    expires: 2027-01-01\n",
            2,
            "kinds",
        ),
        (
            "missing expires",
            "accept:\n  - match: {kind: Job}\n    reason: r\n    owner: o\n",
            4,
            "missing field `expires`",
        ),
        (
            "not a date",
            "accept:\n  - match: {kind: Job}\n    reason: r\n    owner: o\n    expires: next spring\n",
            5,
            "accept[0].expires `next spring`",
        ),
        (
            "impossible date",
            "accept:\n  - match: {kind: Job}\n    reason: r\n    owner: o\n    expires: 2027-02-30\n",
            5,
            "accept[0].expires",
        ),
        (
            "empty match",
            "accept:\n  - match: {}\n    reason: r\n    owner: o\n    expires: 2027-01-01\n",
            2,
            "accept[0].match",
        ),
        (
            "empty owner",
            "accept:\n  - match: {kind: Job}\n    reason: r\n    owner: \"  \"\n    expires: 2027-01-01\n",
            4,
            "accept[0].owner",
        ),
        (
            "unknown reason",
            "accept:\n  - match: {reason: hook-left}\n    reason: r\n    owner: o\n    expires: 2027-01-01\n",
            2,
            "hook-left",
        ),
        (
            "unknown finding",
            "accept:\n  - match: {finding: leftovers}\n    reason: r\n    owner: o\n    expires: 2027-01-01\n",
            2,
            "leftovers",
        ),
    ];
    for (what, text, want_line, names) in cases {
        let err = parse(text, "a.yaml").expect_err(what);
        let AcceptError::File {
            line,
            column,
            message,
            ..
        } = &err
        else {
            panic!("{what}: {err:?}")
        };
        assert_eq!(*line, *want_line, "{what}: {err}");
        assert!(*column > 0, "{what}: {err}");
        assert!(message.contains(names), "{what}: {err}");
        assert!(
            err.to_string()
                .starts_with(&format!("a.yaml:{line}:{column}: "))
        );
        assert!(
            !message.contains("line "),
            "{what}: position said twice: {err}"
        );
    }
}

#[test]
fn a_baseline_must_be_a_report_of_the_same_command() {
    let audit = r#"{"schema": "preflight.audit/v1", "verdict": "fail", "exitCode": 1,
        "failOn": "high", "serverVersion": "v1.29.15", "targetVersion": null,
        "generatedAt": "2026-11-29T10:00:00Z", "skipped": [],
        "findings": [{"check": "webhook-timeout", "severity": "medium",
          "object": "ValidatingWebhookConfiguration/guard", "title": "t",
          "evidence": [], "fix": "f"}]}"#;
    let b = parse_baseline(audit, "audit.json", BaselineFor::Audit).unwrap();
    assert_eq!(
        b.identities.into_iter().collect::<Vec<_>>(),
        ["audit webhook-timeout: ValidatingWebhookConfiguration/guard"]
    );
    let err = parse_baseline(audit, "audit.json", BaselineFor::Run).unwrap_err();
    assert!(err.to_string().contains("preflight.audit/v1"), "{err}");
    let err = parse_baseline("{}", "x.json", BaselineFor::Audit).unwrap_err();
    assert!(
        err.to_string().starts_with("baseline x.json: schema ``"),
        "{err}"
    );
    let err = parse_baseline("not json", "x.json", BaselineFor::Run).unwrap_err();
    assert!(err.to_string().contains("not JSON"), "{err}");
}

#[test]
fn finding_kind_names_are_the_accept_file_names() {
    for k in [
        FindingKind::Leftover,
        FindingKind::Regression,
        FindingKind::StepFailed,
        FindingKind::SettleTimedOut,
        FindingKind::Unlistable,
        FindingKind::DiscoveryFailed,
        FindingKind::TeardownFailed,
        FindingKind::LeftoverNotReproduced,
        FindingKind::UnlistableNotReproduced,
        FindingKind::NodeUndrainable,
        FindingKind::NodesQuarantined,
        FindingKind::PodsNotBack,
        FindingKind::SurgeFailed,
        FindingKind::Audit,
    ] {
        assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
    }
}

#[test]
fn the_example_accept_file_loads() {
    let text = include_str!("../../../../ci/accept.example.yaml");
    let f = parse(text, "ci/accept.example.yaml").unwrap();
    assert_eq!(f.entries.len(), 3);
    assert!(
        f.entries
            .iter()
            .all(|e| !e.reason.is_empty() && !e.owner.is_empty())
    );
}

#[test]
fn entry_text_is_quoted_not_interpreted_in_the_reports() {
    let hostile = "<script>alert(1)</script> | `x` *y* ]]> \u{1b}[31m";
    let g = gate(
        vec![Entry {
            owner: hostile.into(),
            reason: hostile.into(),
            ..entry(
                Matcher {
                    text: Some(hostile.into()),
                    ..Matcher::default()
                },
                date!(2027 - 01 - 01),
            )
        }],
        date!(2026 - 12 - 03),
    );
    let a = g.account(g.tally());
    let html = render::html(&a);
    assert!(!html.contains("<script>"), "{html}");
    let md = render::markdown(&a);
    let row = md.lines().find(|l| l.starts_with("| stale")).unwrap();
    // Six columns: the pipes in the text are escaped, not new cells.
    assert_eq!(row.matches(" | ").count(), 5, "{row}");
    assert!(!md.contains('\u{1b}'), "{md}");
    let mut report = quick_junit::Report::new("t");
    report.add_test_suite(render::junit(&a));
    let xml = report.to_string().unwrap();
    assert!(
        !xml.contains("<script>") && !xml.contains('\u{1b}'),
        "{xml}"
    );
}
