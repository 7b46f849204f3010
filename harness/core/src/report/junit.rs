//! `junit.xml`: one test case per scenario and version; a failure says what stayed
//! and why, so a CI system's test view tells the story without opening the report.

use quick_junit::{NonSuccessKind, Report as JunitReport, TestCase, TestCaseStatus, TestSuite};

use super::text::printable;
use super::{Report, Verdict, run_label};

pub fn render(r: &Report) -> String {
    let mut report = JunitReport::new("preflight");
    for sc in &r.scenarios {
        // quick-junit escapes markup and drops characters XML 1.0 cannot hold; control
        // characters are shown (`\u{1b}`) before that, as in the other formats.
        let mut suite = TestSuite::new(printable(&sc.name).as_ref());
        for run in &sc.runs {
            let name = printable(&run_label(run)).into_owned();
            let status = match run.verdict {
                Verdict::Pass => TestCaseStatus::success(),
                Verdict::Fail => {
                    let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    st.set_message(printable(&run.headline).as_ref());
                    let detail: Vec<String> = run
                        .findings
                        .iter()
                        .filter(|f| f.counted)
                        .map(|f| f.text.clone())
                        .chain(run.leftovers.iter().filter(|l| l.unexpected).map(|l| {
                            format!(
                                "{} {}/{}: {}{}",
                                l.kind,
                                l.namespace.clone().unwrap_or_default(),
                                l.name,
                                l.reason_text,
                                l.evidence
                                    .first()
                                    .map(|e| format!(" ({e})"))
                                    .unwrap_or_default()
                            )
                        }))
                        .collect();
                    st.set_description(printable(&detail.join("\n")).as_ref());
                    st.set_type(if run.findings.iter().any(|f| f.counted) {
                        "findings"
                    } else {
                        "leftovers"
                    });
                    st
                }
                Verdict::Error => {
                    let mut st = TestCaseStatus::non_success(NonSuccessKind::Error);
                    st.set_message(printable(&run.headline).as_ref());
                    st.set_description(
                        printable(run.error.as_deref().unwrap_or_default()).as_ref(),
                    );
                    st
                }
            };
            let mut case = TestCase::new(name, status);
            case.set_classname(format!("preflight.{}", printable(&sc.name)));
            let waived = waivers(run);
            if !waived.is_empty() {
                case.set_system_out(printable(&waived.join("\n")).as_ref());
            }
            let ms: u64 = run.steps.iter().map(|s| s.duration_ms).sum();
            case.set_time(std::time::Duration::from_millis(ms));
            suite.add_test_case(case);
        }
        for c in sc.comparisons(r) {
            if c.regressions.is_empty() {
                continue;
            }
            // Regressions `--accept` or `--baseline` waive pass, saying why.
            let (waived, counted): (Vec<_>, Vec<_>) = c.regressions.iter().partition(|d| {
                r.regression_waiver(&sc.name, d)
                    .is_some_and(crate::accept::Waiver::waives)
            });
            let mut st = if counted.is_empty() {
                TestCaseStatus::success()
            } else {
                TestCaseStatus::non_success(NonSuccessKind::Failure)
            };
            st.set_message(
                printable(
                    &counted
                        .iter()
                        .map(|d| d.text.clone())
                        .collect::<Vec<_>>()
                        .join("; "),
                )
                .as_ref(),
            );
            st.set_type("regression");
            let waived: Vec<String> = waived
                .iter()
                .filter_map(|d| {
                    let w = r.regression_waiver(&sc.name, d)?;
                    Some(format!("{}: {}", d.text, w.describe()))
                })
                .collect();
            let name = if c.label.is_empty() {
                format!("{} -> {}", r.source.version, r.target.version)
            } else {
                c.label
            };
            let mut case = TestCase::new(printable(&name).into_owned(), st);
            case.set_classname(format!("preflight.{}", printable(&sc.name)));
            if !waived.is_empty() {
                case.set_system_out(printable(&waived.join("\n")).as_ref());
            }
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    if let Some(a) = &r.acceptance {
        report.add_test_suite(crate::accept::render::junit(a));
    }
    report.to_string().unwrap_or_default()
}

/// What `--accept` or `--baseline` said of a run's leftovers and findings, a line each.
fn waivers(run: &super::RunReport) -> Vec<String> {
    let leftovers = run.leftovers.iter().filter_map(|l| {
        let w = l.acceptance.as_ref()?;
        Some(format!("{} {}: {}", l.kind, l.name, w.describe()))
    });
    let findings = run.findings.iter().filter_map(|f| {
        let w = f.acceptance.as_ref()?;
        Some(format!("{}: {}", f.text, w.describe()))
    });
    leftovers.chain(findings).collect()
}
