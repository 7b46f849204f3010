//! `junit.xml`: one test case per scenario and version; a failure says what stayed
//! and why, so a CI system's test view tells the story without opening the report.

use quick_junit::{NonSuccessKind, Report as JunitReport, TestCase, TestCaseStatus, TestSuite};

use super::text::printable;
use super::{Report, Verdict, images, rollout, run_label};

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
            let out: Vec<String> = waivers(run).into_iter().chain(substituted(run)).collect();
            if !out.is_empty() {
                case.set_system_out(printable(&out.join("\n")).as_ref());
            }
            let ms: u64 = run.steps.iter().map(|s| s.duration_ms).sum();
            case.set_time(std::time::Duration::from_millis(ms));
            suite.add_test_case(case);
            suite.add_test_cases(pool_cases(&sc.name, run));
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

/// One test case per pool a run's steps rolled: a failure when AKS would not roll it
/// cleanly and its findings count (the sentence as the message, each node's drain and
/// evidence as the description); passed, saying so, when `--fail-on` or a waiver
/// leaves them uncounted.
fn pool_cases(scenario: &str, run: &super::RunReport) -> Vec<TestCase> {
    let mut cases = Vec::new();
    for (step, roll) in rollout::rolls(run) {
        for p in &roll.pools {
            let sentence = rollout::prediction(&p.prediction);
            let troubled = rollout::troubled(&p.prediction);
            let counted = troubled && rollout::pool_counted(run, step, &p.pool);
            let mut st = if counted {
                let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
                st.set_message(printable(&sentence).as_ref());
                st.set_type("nodes");
                st.set_description(printable(&pool_lines(p).join("\n")).as_ref());
                st
            } else {
                TestCaseStatus::success()
            };
            if !counted {
                st.set_message(printable(&sentence).as_ref());
            }
            let name = format!(
                "{} node roll (step {step}): pool {}",
                run_label(run),
                p.pool
            );
            let mut case = TestCase::new(printable(&name).into_owned(), st);
            case.set_classname(format!("preflight.{}", printable(scenario)));
            if troubled && !counted {
                case.set_system_out(printable(&format!("not counted: {sentence}")).as_ref());
            }
            cases.push(case);
        }
    }
    cases
}

/// A pool's surge nodes and nodes, a line each, with each node's evidence indented.
fn pool_lines(p: &crate::rollout::PoolRoll) -> Vec<String> {
    let mut lines: Vec<String> = p
        .surge
        .iter()
        .map(|s| format!("surge node {}", rollout::surge_line(s)))
        .collect();
    for n in &p.nodes {
        lines.push(format!("node {}: {}", n.node, rollout::node_line(n)));
        lines.extend(
            rollout::node_details(n)
                .into_iter()
                .map(|(what, line)| format!("  {what}: {line}")),
        );
    }
    lines
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

/// The images a run substituted: what that means for the verdict, then a line each
/// (never a failure: substitutions are not findings).
fn substituted(run: &super::RunReport) -> Vec<String> {
    if run.substitutions.is_empty() {
        return Vec::new();
    }
    let mut lines = vec![format!(
        "images substituted: {}",
        images::explained(&run.substitutions)
    )];
    lines.extend(
        run.substitutions
            .iter()
            .map(|s| format!("  {}", images::line(s))),
    );
    lines
}
