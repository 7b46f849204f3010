//! `report.md`: short enough for a pull-request comment or a change ticket, with the
//! verdict first, the scenario x version matrix, then what stayed and why.

use std::fmt::Write;

use super::text::{md_block, md_code, md_inline};
use super::{Report, Verdict, images, rollout, run_label};

fn mark(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "✅ pass",
        Verdict::Fail => "❌ fail",
        Verdict::Error => "⚠️ error",
    }
}

/// The whole report: verdict and summary, regressions, the matrix, then each scenario
/// that has something to say.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    header(&mut s, r);
    regressions(&mut s, r);
    matrix(&mut s, r);
    for sc in &r.scenarios {
        scenario(&mut s, r, sc);
    }
    if let Some(a) = &r.acceptance {
        s.push_str(&crate::accept::render::markdown(a));
    }
    s
}

/// The verdict, the counts, and the versions substituted for those asked.
fn header(s: &mut String, r: &Report) {
    let _ = writeln!(
        s,
        "# preflight: {}: {}",
        md_inline(&r.path(" -> ")),
        mark(r.verdict).to_uppercase()
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{} scenarios, {} runs: {} unexpected leftovers, {} regressions, {} improvements, {} findings, {} errors. Fails on: {}.",
        r.summary.scenarios,
        r.summary.runs,
        r.summary.unexpected_leftovers,
        r.summary.regressions,
        r.summary.improvements,
        r.summary.findings,
        r.summary.errors,
        r.fail_on
            .iter()
            .map(|f| format!("{f:?}").to_lowercase())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let substitutions = r.substitutions();
    if !substitutions.is_empty() {
        let _ = writeln!(s);
        for line in substitutions {
            let _ = writeln!(s, "- {}", md_inline(&line));
        }
    }
}

/// Every regression, with its hop on a path of more than two versions.
fn regressions(s: &mut String, r: &Report) {
    if r.regressions.is_empty() {
        return;
    }
    let whole = r.versions.len() <= 2;
    let _ = writeln!(s, "\n## Regressions\n");
    for g in &r.regressions {
        let waiver = waiver_tag(g.acceptance.as_ref());
        if whole {
            let _ = writeln!(
                s,
                "- **{}**: {}{waiver}",
                md_inline(&g.scenario),
                md_inline(&g.difference.text)
            );
        } else {
            let _ = writeln!(
                s,
                "- **{}** ({} -> {}): {}{waiver}",
                md_inline(&g.scenario),
                md_inline(&g.from),
                md_inline(&g.to),
                md_inline(&g.difference.text)
            );
        }
    }
}

/// One row per run: scenario, its verdict, the run, its headline.
fn matrix(s: &mut String, r: &Report) {
    let _ = writeln!(s, "\n## Matrix\n");
    let _ = writeln!(s, "| scenario | verdict | run | result |");
    let _ = writeln!(s, "|---|---|---|---|");
    for sc in &r.scenarios {
        for (i, run) in sc.runs.iter().enumerate() {
            let (name, verdict) = if i == 0 {
                (
                    format!("`{}`", md_code(&sc.name)),
                    mark(sc.verdict).to_string(),
                )
            } else {
                (String::new(), String::new())
            };
            let _ = writeln!(
                s,
                "| {name} | {verdict} | {} | {}: {} |",
                md_inline(&run_label(run)),
                mark(run.verdict),
                md_inline(&run.headline)
            );
        }
    }
}

/// A scenario's section, when it has leftovers, errors, findings or differences:
/// what changed across versions, then each run that has something to say.
fn scenario(s: &mut String, r: &Report, sc: &super::ScenarioReport) {
    let comparisons = sc.comparisons(r);
    let interesting = sc.runs.iter().any(|run| {
        run.leftovers.iter().any(|l| l.reason.is_failure())
            || run.error.is_some()
            || !run.findings.is_empty()
            || run.steps.iter().any(|st| st.rollout.is_some())
            || !run.substitutions.is_empty()
    }) || comparisons.iter().any(|c| {
        !c.regressions.is_empty() || !c.improvements.is_empty() || !c.differences.is_empty()
    });
    if !interesting {
        return;
    }
    let _ = writeln!(s, "\n## `{}`\n", md_code(&sc.name));
    if !sc.description.is_empty() {
        let _ = writeln!(s, "{}\n", md_inline(&sc.description));
    }
    for c in &comparisons {
        let label = if c.label.is_empty() {
            String::new()
        } else {
            format!(" ({})", md_inline(&c.label))
        };
        for d in c
            .regressions
            .iter()
            .map(|d| ("regression", d))
            .chain(c.improvements.iter().map(|d| ("improvement", d)))
            .chain(c.differences.iter().map(|d| ("difference", d)))
        {
            let waiver = match d.0 {
                "regression" => waiver_tag(r.regression_waiver(&sc.name, d.1)),
                _ => String::new(),
            };
            let _ = writeln!(s, "- {}{label}: {}{waiver}", d.0, md_inline(&d.1.text));
        }
    }
    for run in &sc.runs {
        run_details(s, run);
    }
}

/// A run's error, findings and failed leftovers (grouped by normalised shape: three
/// Pods of one ReplicaSet are one line).
fn run_details(s: &mut String, run: &super::RunReport) {
    let failures: Vec<_> = run
        .leftovers
        .iter()
        .filter(|l| l.reason.is_failure())
        .collect();
    let rolled = run.steps.iter().any(|st| st.rollout.is_some());
    if failures.is_empty()
        && run.error.is_none()
        && run.findings.is_empty()
        && !rolled
        && run.substitutions.is_empty()
    {
        return;
    }
    let _ = writeln!(
        s,
        "\n**{}**: {}\n",
        md_inline(&run_label(run)),
        md_inline(&run.headline)
    );
    if let Some(e) = &run.error {
        let _ = writeln!(s, "{}", md_block(e));
    }
    for f in &run.findings {
        let counted = match &f.acceptance {
            Some(w) => waiver_tag(Some(w)),
            None if f.counted => String::new(),
            None => " (not counted)".to_string(),
        };
        // Findings quote names in backticks; as quotes, not as code.
        let _ = writeln!(
            s,
            "- finding{counted}: {}",
            md_inline(&f.text.replace('`', "'"))
        );
    }
    let mut groups: std::collections::BTreeMap<&str, Vec<&super::LeftoverReport>> =
        std::collections::BTreeMap::new();
    for l in failures {
        groups.entry(l.normalized.as_str()).or_default().push(l);
    }
    for (shape, items) in groups {
        let first = items[0];
        let tag = if first.expected {
            " (expected by the scenario)".to_string()
        } else {
            waiver_tag(first.acceptance.as_ref())
        };
        let names: Vec<String> = items.iter().map(|l| md_inline(&l.name)).collect();
        let _ = writeln!(
            s,
            "- {} × `{}`: {}{tag}",
            items.len(),
            md_code(shape),
            md_inline(&first.reason_text)
        );
        let _ = writeln!(s, "  - objects: {}", names.join(", "));
        if let Some(e) = first.evidence.first() {
            let e: String = e.chars().take(300).collect();
            let _ = writeln!(s, "  - evidence: `{}`", md_code(&e));
        }
    }
    for (step, roll) in rollout::rolls(run) {
        rollout_section(s, step, roll);
    }
    substitutions_section(s, run);
}

/// The containers that ran something other than the image they name: a sentence on
/// what that means for the verdict, then a row each.
fn substitutions_section(s: &mut String, run: &super::RunReport) {
    if run.substitutions.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n### Images substituted ({})\n",
        md_inline(&run_label(run))
    );
    let _ = writeln!(s, "{}\n", md_inline(&images::explained(&run.substitutions)));
    let _ = writeln!(
        s,
        "| namespace | workload | container | image | ran instead | Pods | changes |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for sub in &run.substitutions {
        let ran = if images::pull_policy_only(sub) {
            md_inline(&images::ran_instead(sub))
        } else {
            format!("`{}`", md_code(&sub.replaced_by))
        };
        let _ = writeln!(
            s,
            "| `{}` | `{}` | `{}` | `{}` | {ran} | {} | {} |",
            md_code(&sub.namespace),
            md_code(&sub.workload),
            md_code(&sub.container),
            md_code(&sub.image),
            sub.pods,
            md_inline(&images::changes(sub))
        );
    }
}

/// A step's node roll: its settings, then each pool's outcome, surge nodes and nodes
/// (each eviction, the budget readings that confirmed a block, the Pods not back).
fn rollout_section(s: &mut String, step: usize, r: &crate::rollout::RolloutRecord) {
    let _ = writeln!(
        s,
        "\n- node roll (step {step}): {}",
        md_inline(&rollout::settings(r))
    );
    for p in &r.pools {
        let mark = if rollout::troubled(&p.prediction) {
            "❌"
        } else {
            "✅"
        };
        let _ = writeln!(
            s,
            "  - pool `{}`: {mark} {}",
            md_code(&p.pool),
            md_inline(&rollout::prediction(&p.prediction))
        );
        for sn in &p.surge {
            let _ = writeln!(
                s,
                "    - surge node {}",
                md_inline(&rollout::surge_line(sn))
            );
        }
        for n in &p.nodes {
            let _ = writeln!(
                s,
                "    - node `{}` ({}): {}",
                md_code(&n.node),
                md_inline(&n.version),
                md_inline(&rollout::node_line(n))
            );
            for (what, line) in rollout::node_details(n) {
                let _ = writeln!(s, "      - {what}: {}", md_inline(&line));
            }
        }
    }
}

/// ` (accepted by ... until ...: why)`, or nothing.
fn waiver_tag(w: Option<&crate::accept::Waiver>) -> String {
    w.map(|w| format!(" ({})", md_inline(&w.describe())))
        .unwrap_or_default()
}
