//! The audit's reports, in the same four formats as `preflight run`.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use quick_junit::{NonSuccessKind, Report as JunitReport, TestCase, TestCaseStatus, TestSuite};

use super::{AuditReport, Severity};
use crate::report::html::esc;

pub fn json(r: &AuditReport) -> String {
    let mut s = serde_json::to_string_pretty(r).expect("report serialises");
    s.push('\n');
    s
}

pub fn markdown(r: &AuditReport) -> String {
    let mut s = String::new();
    let target = r
        .target_version
        .clone()
        .unwrap_or_else(|| "(no target given)".into());
    let _ = writeln!(
        s,
        "# preflight audit: {} before the upgrade to {target}: {}\n",
        r.server_version,
        format!("{:?}", r.verdict).to_uppercase()
    );
    let _ = writeln!(
        s,
        "{} findings (failing at {} and above).\n",
        r.findings.len(),
        r.fail_on.as_str()
    );
    for sk in &r.skipped {
        let _ = writeln!(s, "- not checked: {sk}");
    }
    if !r.findings.is_empty() {
        let _ = writeln!(
            s,
            "\n| severity | check | object | finding |\n|---|---|---|---|"
        );
        for f in &r.findings {
            let _ = writeln!(
                s,
                "| {} | `{}` | `{}` | {}{} |",
                f.severity.as_str(),
                f.check,
                f.object,
                f.title.replace('|', "\\|"),
                f.acceptance
                    .as_ref()
                    .map(|w| format!(" ({})", w.describe().replace('|', "\\|")))
                    .unwrap_or_default()
            );
        }
        let _ = writeln!(s, "\n## What to do\n");
        let mut seen = std::collections::BTreeSet::new();
        for f in &r.findings {
            if seen.insert(&f.check) {
                let _ = writeln!(s, "- `{}`: {}", f.check, f.fix);
            }
        }
    }
    if let Some(a) = &r.acceptance {
        s.push_str(&crate::accept::render::markdown(a));
    }
    s
}

pub fn junit(r: &AuditReport) -> String {
    let mut report = JunitReport::new("preflight-audit");
    let mut suite = TestSuite::new("audit");
    for f in &r.findings {
        let waiver = f.acceptance.as_ref();
        let status = if f.severity >= r.fail_on && !waiver.is_some_and(|w| w.waives()) {
            let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
            st.set_message(f.title.as_str());
            st.set_type(f.severity.as_str());
            st.set_description(format!("{}\nfix: {}", f.evidence.join("\n"), f.fix));
            st
        } else {
            TestCaseStatus::success()
        };
        let mut case = TestCase::new(format!("{} {}", f.check, f.object), status);
        case.set_classname(format!("preflight.audit.{}", f.check));
        if let Some(w) = waiver {
            case.set_system_out(w.describe());
        }
        suite.add_test_case(case);
    }
    if r.findings.is_empty() {
        suite.add_test_case(TestCase::new("no findings", TestCaseStatus::success()));
    }
    report.add_test_suite(suite);
    if let Some(a) = &r.acceptance {
        report.add_test_suite(crate::accept::render::junit(a));
    }
    report.to_string().unwrap_or_default()
}

pub fn html(r: &AuditReport) -> String {
    let mut h = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>preflight audit</title><style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2rem auto;padding:0 1rem;color:#1d2330}table{border-collapse:collapse;width:100%}td,th{border:1px solid #dde2ea;padding:.4rem;text-align:left;vertical-align:top}.critical,.high{background:#fde4e4}.medium{background:#fff1d6}.low,.info{background:#eef1f6}</style></head><body>\n",
    );
    let _ = writeln!(
        h,
        "<h1>preflight audit: {} → {}</h1><p>{:?}: {} findings, failing at {} and above</p>",
        esc(&r.server_version),
        esc(r.target_version.as_deref().unwrap_or("?")),
        r.verdict,
        r.findings.len(),
        r.fail_on.as_str()
    );
    for sk in &r.skipped {
        let _ = writeln!(h, "<p>not checked: {}</p>", esc(sk));
    }
    h.push_str("<table id=\"findings\"><tr><th>severity</th><th>check</th><th>object</th><th>finding</th><th>evidence</th><th>fix</th></tr>\n");
    for f in &r.findings {
        let _ = writeln!(
            h,
            "<tr class=\"{0}\"><td>{0}</td><td>{1}</td><td>{2}</td><td>{3}{6}</td><td>{4}</td><td>{5}</td></tr>",
            f.severity.as_str(),
            esc(&f.check),
            esc(&f.object),
            esc(&f.title),
            esc(&f.evidence.join("\n")),
            esc(&f.fix),
            f.acceptance
                .as_ref()
                .map(|w| format!("<br><i>{}</i>", esc(&w.describe())))
                .unwrap_or_default()
        );
    }
    h.push_str("</table>");
    if let Some(a) = &r.acceptance {
        h.push_str(&crate::accept::render::html(a));
    }
    h.push_str("</body></html>\n");
    h
}

pub fn write_all(r: &AuditReport, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut out = Vec::new();
    for (name, text) in [
        ("audit.json", json(r)),
        ("audit.md", markdown(r)),
        ("junit.xml", junit(r)),
        ("audit.html", html(r)),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, text)?;
        out.push(p);
    }
    Ok(out)
}

/// Severity names for `--fail-on`.
pub fn parse_severity(s: &str) -> Option<Severity> {
    [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ]
    .into_iter()
    .find(|v| v.as_str() == s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accept::AuditSubject;
    use crate::audit::{AuditReport, Finding};
    use crate::report::Verdict;

    fn sample() -> AuditReport {
        AuditReport {
            schema: "preflight.audit/v1".into(),
            verdict: Verdict::Fail,
            exit_code: 1,
            fail_on: Severity::High,
            server_version: "v1.29.15".into(),
            target_version: Some("v1.30.14".into()),
            generated_at: "2026-11-29T10:00:00Z".into(),
            skipped: vec!["Helm releases not checked (cannot read Secrets): forbidden".into()],
            findings: vec![
                Finding {
                    check: "gc-delete-refused-now".into(),
                    severity: Severity::Critical,
                    object: "ValidatingWebhookConfiguration/guard webhook guard.example.com".into(),
                    title: "right now the garbage collector's DELETE of a Pod is webhook-failed".into(),
                    evidence: vec!["dry-run DELETE of Pod apps/web-0 as system:serviceaccount:kube-system:generic-garbage-collector: webhook-failed".into()],
                    fix: "Set the webhook's failurePolicy to Ignore.".into(),
                    acceptance: None,
                },
                Finding {
                    check: "webhook-timeout".into(),
                    severity: Severity::Medium,
                    object: "ValidatingWebhookConfiguration/guard webhook guard.example.com".into(),
                    title: "timeoutSeconds is unset: the API server waits 10 s".into(),
                    evidence: vec![],
                    fix: "Set timeoutSeconds to 5 or less.".into(),
                    acceptance: None,
                },
            ],
            acceptance: None,
        }
    }

    #[test]
    fn every_format_snapshot() {
        let r = sample();
        insta::assert_snapshot!("audit.json", json(&r));
        insta::assert_snapshot!("audit.md", markdown(&r));
        insta::assert_snapshot!("audit.junit.xml", junit(&r));
        insta::assert_snapshot!("audit.html", html(&r));
    }

    /// The critical finding accepted until a day after "today", the medium one in the
    /// baseline, one stale entry: the gate passes and every format says why.
    #[test]
    fn accepted_and_baseline_in_every_format() {
        use crate::accept::{AcceptFile, Baseline, Entry, Gate, Matcher, Subject, apply_audit};
        use time::macros::date;
        let mut r = sample();
        let entry = |check: &str, line: u32| Entry {
            at: format!("ci/accept.yaml:{line}:5"),
            matcher: Matcher {
                check: Some(check.into()),
                ..Matcher::default()
            },
            reason: "the guard is ours; failurePolicy Ignore ships in 2.4 (OPS-12)".into(),
            owner: "platform-team".into(),
            expires: date!(2026 - 12 - 04),
        };
        let gate = Gate {
            accept: Some(AcceptFile {
                file: "ci/accept.yaml".into(),
                entries: vec![entry("gc-delete-refused-now", 2), entry("pdb-*", 7)],
            }),
            baseline: Some(Baseline {
                file: "reports/last/audit.json".into(),
                identities: [Subject::audit(&r.findings[1]).identity].into(),
            }),
            today: date!(2026 - 12 - 03),
        };
        apply_audit(&mut r, &gate);
        assert_eq!((r.verdict, r.exit_code), (Verdict::Pass, 0));
        insta::assert_snapshot!("accepted.audit.json", json(&r));
        insta::assert_snapshot!("accepted.audit.md", markdown(&r));
        insta::assert_snapshot!("accepted.audit.junit.xml", junit(&r));
        insta::assert_snapshot!("accepted.audit.html", html(&r));
        // A day after the expiry the critical finding counts again.
        let mut later = sample();
        apply_audit(
            &mut later,
            &Gate {
                today: date!(2026 - 12 - 05),
                ..gate
            },
        );
        assert_eq!((later.verdict, later.exit_code), (Verdict::Fail, 1));
        assert!(markdown(&later).contains("acceptance expired on 2026-12-04"));
    }
}
