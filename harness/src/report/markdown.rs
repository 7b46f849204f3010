//! `report.md`: short enough for a pull-request comment or a change ticket, with the
//! verdict first, the scenario x version matrix, then what stayed and why.

use std::fmt::Write;

use super::{Report, Verdict, run_label};

fn mark(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "✅ pass",
        Verdict::Fail => "❌ fail",
        Verdict::Error => "⚠️ error",
    }
}

pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# preflight: {}: {}",
        r.path(" -> "),
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
            let _ = writeln!(s, "- {line}");
        }
    }
    let whole = r.versions.len() <= 2;
    if !r.regressions.is_empty() {
        let _ = writeln!(s, "\n## Regressions\n");
        for g in &r.regressions {
            if whole {
                let _ = writeln!(s, "- **{}**: {}", g.scenario, g.difference.text);
            } else {
                let _ = writeln!(
                    s,
                    "- **{}** ({} -> {}): {}",
                    g.scenario, g.from, g.to, g.difference.text
                );
            }
        }
    }
    let _ = writeln!(s, "\n## Matrix\n");
    let _ = writeln!(s, "| scenario | verdict | run | result |");
    let _ = writeln!(s, "|---|---|---|---|");
    for sc in &r.scenarios {
        for (i, run) in sc.runs.iter().enumerate() {
            let name = if i == 0 {
                format!("`{}`", sc.name)
            } else {
                String::new()
            };
            let verdict = if i == 0 {
                mark(sc.verdict).to_string()
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "| {name} | {verdict} | {} | {}: {} |",
                run_label(run),
                mark(run.verdict),
                run.headline.replace('|', "\\|")
            );
        }
    }
    for sc in &r.scenarios {
        let interesting = sc.runs.iter().any(|run| {
            run.leftovers.iter().any(|l| l.reason.is_failure())
                || run.error.is_some()
                || !run.findings.is_empty()
        }) || sc.comparisons(r).iter().any(|c| {
            !c.regressions.is_empty() || !c.improvements.is_empty() || !c.differences.is_empty()
        });
        if !interesting {
            continue;
        }
        let _ = writeln!(s, "\n## `{}`\n", sc.name);
        if !sc.description.is_empty() {
            let _ = writeln!(s, "{}\n", sc.description);
        }
        for c in sc.comparisons(r) {
            let label = if c.label.is_empty() {
                String::new()
            } else {
                format!(" ({})", c.label)
            };
            for d in c
                .regressions
                .iter()
                .map(|d| ("regression", d))
                .chain(c.improvements.iter().map(|d| ("improvement", d)))
                .chain(c.differences.iter().map(|d| ("difference", d)))
            {
                let _ = writeln!(s, "- {}{label}: {}", d.0, d.1.text);
            }
        }
        for run in &sc.runs {
            let failures: Vec<_> = run
                .leftovers
                .iter()
                .filter(|l| l.reason.is_failure())
                .collect();
            if failures.is_empty() && run.error.is_none() && run.findings.is_empty() {
                continue;
            }
            let _ = writeln!(s, "\n**{}**: {}\n", run_label(run), run.headline);
            if let Some(e) = &run.error {
                let _ = writeln!(s, "```\n{e}\n```");
            }
            for f in &run.findings {
                let counted = if f.counted { "" } else { " (not counted)" };
                let _ = writeln!(s, "- finding{counted}: {}", f.text.replace('`', "'"));
            }
            // Group by normalised shape: three Pods of one ReplicaSet are one line.
            let mut groups: std::collections::BTreeMap<&str, Vec<&super::LeftoverReport>> =
                std::collections::BTreeMap::new();
            for l in failures {
                groups.entry(l.normalized.as_str()).or_default().push(l);
            }
            for (shape, items) in groups {
                let first = items[0];
                let tag = if first.expected {
                    " (expected by the scenario)"
                } else {
                    ""
                };
                let names: Vec<&str> = items.iter().map(|l| l.name.as_str()).collect();
                let _ = writeln!(
                    s,
                    "- {} × `{shape}`: {}{tag}",
                    items.len(),
                    first.reason_text
                );
                let _ = writeln!(s, "  - objects: {}", names.join(", "));
                if let Some(e) = first.evidence.first() {
                    let e: String = e.chars().take(300).collect();
                    let _ = writeln!(s, "  - evidence: `{}`", e.replace('`', "'"));
                }
            }
        }
    }
    s
}
