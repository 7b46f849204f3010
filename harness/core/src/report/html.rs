//! `report.html`: one self-contained page (inline CSS and SVG, no scripts, nothing
//! fetched) that a person would rather look at than read: the scenario x version
//! matrix, then for every leftover its ownership chain drawn as a picture, its cause
//! and its evidence, and each run's timeline of objects per step.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{LeftoverReport, Report, RunReport, Verdict, images, rollout, run_label};
use crate::rollout::{NodeRoll, PoolRoll, RolloutRecord};
use crate::run::Role;

/// Escapes text for HTML (elements and quoted attributes; see [`super::text::html`]).
pub fn esc(s: &str) -> String {
    super::text::html(s)
}

fn class(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Error => "error",
    }
}

const STYLE: &str = r#"
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#1d2330;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem} h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #dde2ea;padding-bottom:.3rem}
.badge{display:inline-block;padding:.15rem .6rem;border-radius:1rem;font-weight:600;font-size:.9rem}
.pass{background:#e3f6e8;color:#17632f}.fail{background:#fde4e4;color:#9b1c1c}.error{background:#fff1d6;color:#8a5300}
.expected{background:#eef1f6;color:#39435a}
table.matrix{border-collapse:collapse;width:100%;margin-top:1rem}
table.matrix th,table.matrix td{border:1px solid #dde2ea;padding:.5rem;text-align:left;vertical-align:top}
table.matrix td.cell{font-size:.9rem}
.summary{color:#4b5568}
.reg{border-left:4px solid #c62828;padding:.3rem .8rem;background:#fff6f6;margin:.4rem 0}
.imp{border-left:4px solid #2e7d32;padding:.3rem .8rem;background:#f4fbf5;margin:.4rem 0}
.dif{border-left:4px solid #8894a8;padding:.3rem .8rem;background:#f6f7f9;margin:.4rem 0}
.leftover{margin:.8rem 0;padding:.6rem .8rem;border:1px solid #e4e8ef;border-radius:.4rem}
.cause{font-weight:600} details{margin-top:.3rem} pre{white-space:pre-wrap;font-size:.8rem;background:#f6f7f9;padding:.5rem;border-radius:.3rem}
table.nodes{border-collapse:collapse;width:100%;margin:.4rem 0;font-size:.85rem}
table.nodes th,table.nodes td{border:1px solid #dde2ea;padding:.3rem .5rem;text-align:left;vertical-align:top}
table.nodes ul{margin:0;padding-left:1rem}
svg text{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
"#;

pub fn render(r: &Report) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>preflight {}: {}</title><style>{STYLE}</style></head><body>\n",
        esc(&r.path(" → ")),
        class(r.verdict)
    );
    let _ = write!(
        h,
        "<h1>preflight: {} <span id=\"verdict\" class=\"badge {}\">{}</span></h1>\n<p class=\"summary\">{} scenarios, {} runs · {} unexpected leftovers · {} regressions · {} improvements · {} findings · {} errors · generated {}</p>\n",
        esc(&r.path(" → ")),
        class(r.verdict),
        class(r.verdict).to_uppercase(),
        r.summary.scenarios,
        r.summary.runs,
        r.summary.unexpected_leftovers,
        r.summary.regressions,
        r.summary.improvements,
        r.summary.findings,
        r.summary.errors,
        esc(&r.generated_at)
    );
    for line in r.substitutions() {
        let _ = writeln!(h, "<p class=\"summary\">{}</p>", esc(&line));
    }
    let whole = r.versions.len() <= 2;
    for g in &r.regressions {
        let between = if whole {
            String::new()
        } else {
            format!(" ({} → {})", g.from, g.to)
        };
        let _ = writeln!(
            h,
            "<div class=\"{}\"><b>{}</b>{}: {}{}</div>",
            if crate::accept::waived(&g.acceptance) {
                "dif"
            } else {
                "reg"
            },
            esc(&g.scenario),
            esc(&between),
            esc(&g.difference.text),
            waiver_tag(g.acceptance.as_ref())
        );
    }

    // The matrix: scenarios x (each version of the path, in-place upgrade).
    let columns: Vec<String> = r.versions.iter().map(|v| v.version.clone()).collect();
    let _ = write!(
        h,
        "<table class=\"matrix\" id=\"matrix\"><tr><th>scenario</th>"
    );
    for c in &columns {
        let _ = write!(h, "<th>{}</th>", esc(c));
    }
    let _ = writeln!(h, "<th>{} in place</th></tr>", esc(&r.path(" → ")));
    for sc in &r.scenarios {
        let _ = write!(
            h,
            "<tr><td><a href=\"#sc-{0}\">{0}</a><br><span class=\"badge {1}\">{1}</span></td>",
            esc(&sc.name),
            class(sc.verdict)
        );
        let cells = columns
            .iter()
            .map(|v| {
                sc.runs
                    .iter()
                    .find(|run| run.role != Role::Upgrade && &run.version == v)
            })
            .chain(std::iter::once(
                sc.runs.iter().find(|run| run.role == Role::Upgrade),
            ));
        for cell in cells {
            match cell {
                Some(run) => {
                    let all_expected =
                        run.verdict == Verdict::Pass && run.leftovers.iter().any(|l| l.expected);
                    let c = if all_expected {
                        "expected"
                    } else {
                        class(run.verdict)
                    };
                    let _ = write!(h, "<td class=\"cell {c}\">{}</td>", esc(&run.headline));
                }
                None => h.push_str("<td class=\"cell\">–</td>"),
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n<p class=\"summary\">Grey cells: leftovers the scenario exists to demonstrate (expected), not counted as findings.</p>\n");

    for sc in &r.scenarios {
        let _ = write!(
            h,
            "<h2 id=\"sc-{0}\">{0} <span class=\"badge {1}\">{1}</span></h2>\n<p>{2}</p>\n",
            esc(&sc.name),
            class(sc.verdict),
            esc(&sc.description)
        );
        for c in sc.comparisons(r) {
            let label = if c.label.is_empty() {
                String::new()
            } else {
                format!(" ({})", c.label)
            };
            for (css, what, list) in [
                ("reg", "regression", c.regressions),
                ("imp", "improvement", c.improvements),
                ("dif", "difference", c.differences),
            ] {
                for d in list {
                    let waiver = match what {
                        "regression" => r.regression_waiver(&sc.name, d),
                        _ => None,
                    };
                    let _ = writeln!(
                        h,
                        "<div class=\"{}\">{what}{}: {}{}</div>",
                        if crate::accept::waived(&waiver.cloned()) {
                            "dif"
                        } else {
                            css
                        },
                        esc(&label),
                        esc(&d.text),
                        waiver_tag(waiver)
                    );
                }
            }
        }
        for run in &sc.runs {
            run_section(&mut h, run);
        }
    }
    if let Some(a) = &r.acceptance {
        h.push_str(&crate::accept::render::html(a));
    }
    h.push_str("</body></html>\n");
    h
}

/// ` <span class="badge">accepted by ...</span>`, or nothing.
fn waiver_tag(w: Option<&crate::accept::Waiver>) -> String {
    w.map(|w| {
        format!(
            " <span class=\"badge {}\">{}</span>",
            if w.waives() { "expected" } else { "fail" },
            esc(&w.describe())
        )
    })
    .unwrap_or_default()
}

fn run_section(h: &mut String, run: &RunReport) {
    let _ = writeln!(
        h,
        "<h3>{} <span class=\"badge {}\">{}</span></h3>",
        esc(&run_label(run)),
        class(run.verdict),
        esc(&run.headline)
    );
    if let Some(e) = &run.error {
        let _ = writeln!(h, "<pre>{}</pre>", esc(e));
        return;
    }
    timeline(h, run);
    findings(h, run);
    substitutions(h, run);
    // Group leftovers by their normalised shape, so three Pods of one ReplicaSet are one picture.
    let mut groups: BTreeMap<String, Vec<&LeftoverReport>> = BTreeMap::new();
    for l in run.leftovers.iter().filter(|l| l.reason.is_failure()) {
        groups.entry(l.normalized.clone()).or_default().push(l);
    }
    for (shape, items) in &groups {
        let first = items[0];
        let tag = if first.expected {
            " <span class=\"badge expected\">expected</span>".to_string()
        } else {
            waiver_tag(first.acceptance.as_ref())
        };
        let _ = write!(
            h,
            "<div class=\"leftover\"><div>{} × {}{tag}</div>",
            items.len(),
            esc(shape)
        );
        chain_svg(h, first, items.len());
        let _ = write!(h, "<div class=\"cause\">{}</div>", esc(&first.reason_text));
        let names: Vec<String> = items.iter().map(|l| esc(&l.name)).collect();
        let _ = writeln!(
            h,
            "<details><summary>objects and evidence</summary><p>{}</p><pre>{}</pre></details></div>",
            names.join(", "),
            esc(&first.evidence.join("\n"))
        );
    }
    let kept: Vec<&LeftoverReport> = run
        .leftovers
        .iter()
        .filter(|l| !l.reason.is_failure())
        .collect();
    if !kept.is_empty() {
        let list: Vec<String> = kept
            .iter()
            .map(|l| {
                format!(
                    "{} {} ({})",
                    esc(&l.kind),
                    esc(&l.name),
                    esc(&l.reason_text)
                )
            })
            .collect();
        let _ = writeln!(
            h,
            "<details><summary>{} kept on purpose or by design</summary><p>{}</p></details>",
            kept.len(),
            list.join("<br>")
        );
    }
}

/// The run's findings, then each node roll its steps made.
fn findings(h: &mut String, run: &RunReport) {
    for f in &run.findings {
        let _ = writeln!(
            h,
            "<div class=\"{}\">finding{}: {}{}</div>",
            if f.counted { "reg" } else { "dif" },
            if f.counted || f.acceptance.is_some() {
                ""
            } else {
                " (not counted)"
            },
            esc(&f.text),
            waiver_tag(f.acceptance.as_ref())
        );
    }
    for (step, roll) in rollout::rolls(run) {
        rollout_section(h, step, roll);
    }
}

/// The containers that ran something other than the image they name: what that means
/// for the verdict, then a row each.
fn substitutions(h: &mut String, run: &RunReport) {
    if run.substitutions.is_empty() {
        return;
    }
    let _ = writeln!(
        h,
        "<div class=\"substitutions\"><h4>images substituted</h4><p class=\"summary\">{}</p>",
        esc(&images::explained(&run.substitutions))
    );
    h.push_str("<table class=\"nodes\"><tr><th>namespace</th><th>workload</th><th>container</th><th>image</th><th>ran instead</th><th>Pods</th><th>changes</th></tr>\n");
    for s in &run.substitutions {
        let changes: Vec<String> = s
            .changes
            .iter()
            .map(|c| format!("<li>{}</li>", esc(c)))
            .collect();
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><ul>{}</ul></td></tr>",
            esc(&s.namespace),
            esc(&s.workload),
            esc(&s.container),
            esc(&s.image),
            esc(&images::ran_instead(s)),
            s.pods,
            changes.join("")
        );
    }
    h.push_str("</table></div>\n");
}

/// A step's node roll: its settings, then each pool.
fn rollout_section(h: &mut String, step: usize, r: &RolloutRecord) {
    let _ = writeln!(
        h,
        "<div class=\"rollout\"><h4>node roll (step {step})</h4><p class=\"summary\">{}</p>",
        esc(&rollout::settings(r))
    );
    for p in &r.pools {
        pool_section(h, p);
    }
    h.push_str("</div>\n");
}

/// A pool: what AKS would make of it, its surge nodes, and a row per node.
fn pool_section(h: &mut String, p: &PoolRoll) {
    let _ = writeln!(
        h,
        "<div class=\"{}\"><b>pool {}</b>: {}</div>",
        if rollout::troubled(&p.prediction) {
            "reg"
        } else {
            "imp"
        },
        esc(&p.pool),
        esc(&rollout::prediction(&p.prediction))
    );
    if !p.surge.is_empty() {
        let surge: Vec<String> = p
            .surge
            .iter()
            .map(|s| esc(&rollout::surge_line(s)))
            .collect();
        let _ = writeln!(
            h,
            "<p class=\"summary\">surge nodes: {}</p>",
            surge.join("<br>")
        );
    }
    if p.nodes.is_empty() {
        return;
    }
    h.push_str("<table class=\"nodes\"><tr><th>node</th><th>kubelet</th><th>drain</th><th>evictions, budgets, Pods not back</th></tr>\n");
    for n in &p.nodes {
        node_row(h, n);
    }
    h.push_str("</table>\n");
}

/// One node: its drain and its evidence.
fn node_row(h: &mut String, n: &NodeRoll) {
    let details: Vec<String> = rollout::node_details(n)
        .iter()
        .map(|(what, line)| format!("<li>{}: {}</li>", esc(what), esc(line)))
        .collect();
    let _ = writeln!(
        h,
        "<tr><td>{}</td><td>{}</td><td>{}</td><td><ul>{}</ul></td></tr>",
        esc(&n.node),
        esc(&n.version),
        esc(&rollout::node_line(n)),
        details.join("")
    );
}

/// The ownership chain as boxes and arrows; owners that are gone are dashed.
fn chain_svg(h: &mut String, l: &LeftoverReport, count: usize) {
    let mut nodes = vec![(
        if count > 1 {
            format!("{count} × {}", l.kind)
        } else {
            l.kind.clone()
        },
        l.name.clone(),
        false,
    )];
    for o in &l.owner_chain {
        nodes.push((o.kind.clone(), o.name.clone(), o.gone()));
    }
    let (box_w, gap) = (250, 60);
    let total = nodes.len() * (box_w + gap);
    let _ = write!(
        h,
        "<svg role=\"img\" aria-label=\"ownership chain\" width=\"{total}\" height=\"64\" viewBox=\"0 0 {total} 64\">"
    );
    for (i, (kind, name, gone)) in nodes.iter().enumerate() {
        let x = i * (box_w + gap) + 4;
        let (stroke, fill, dash) = match (i, gone) {
            (0, _) => ("#c62828", "#fde4e4", ""),
            (_, true) => ("#8894a8", "#ffffff", " stroke-dasharray=\"5,3\""),
            _ => ("#39435a", "#eef1f6", ""),
        };
        let name: String = if i == 0 && count > 1 {
            String::new()
        } else {
            name.chars().take(34).collect()
        };
        let _ = write!(
            h,
            "<rect x=\"{x}\" y=\"6\" width=\"{box_w}\" height=\"50\" rx=\"6\" fill=\"{fill}\" stroke=\"{stroke}\"{dash}/><text x=\"{}\" y=\"26\" font-weight=\"bold\">{}{}</text><text x=\"{}\" y=\"46\">{}</text>",
            x + 8,
            esc(kind),
            if *gone { " — gone" } else { "" },
            x + 8,
            esc(&name)
        );
        if i + 1 < nodes.len() {
            let (x1, x2) = (x + box_w, x + box_w + gap - 4);
            let _ = write!(
                h,
                "<line x1=\"{x1}\" y1=\"31\" x2=\"{x2}\" y2=\"31\" stroke=\"#39435a\"/><polygon points=\"{},26 {x2},31 {},36\" fill=\"#39435a\"/><text x=\"{}\" y=\"24\" font-size=\"9\">owner</text>",
                x2 - 6,
                x2 - 6,
                x1 + 10
            );
        }
    }
    h.push_str("</svg>");
}

/// Objects in the namespace after each step, as bars numbered like the steps.
fn timeline(h: &mut String, run: &RunReport) {
    let counts: Vec<(String, usize)> = run
        .steps
        .iter()
        .filter_map(|s| s.objects_after.map(|n| (s.title.clone(), n)))
        .collect();
    if counts.is_empty() {
        return;
    }
    let max = counts.iter().map(|(_, n)| *n).max().unwrap_or(1).max(1);
    let bar = 56;
    let width = counts.len() * bar + 10;
    let _ = write!(
        h,
        "<div class=\"summary\">objects in the namespace after each step</div><svg role=\"img\" aria-label=\"objects after each step\" width=\"{width}\" height=\"110\" viewBox=\"0 0 {width} 110\">"
    );
    for (i, (title, n)) in counts.iter().enumerate() {
        // In u128: a count read from a hostile runs.json must not overflow (n <= max).
        let height = (70 * *n as u128 / max as u128) as usize;
        let x = i * bar + 10;
        let _ = write!(
            h,
            "<rect x=\"{x}\" y=\"{}\" width=\"40\" height=\"{height}\" fill=\"#7aa2d6\"><title>{}: {n} objects</title></rect><text x=\"{x}\" y=\"{}\">{n}</text><text x=\"{}\" y=\"104\" font-size=\"11\">{}</text>",
            90 - height,
            esc(title),
            85 - height,
            x + 14,
            i + 1
        );
    }
    h.push_str("</svg><ol class=\"summary\" style=\"font-size:.8rem;columns:2\">");
    for (title, n) in &counts {
        let _ = write!(h, "<li>{} ({n})</li>", esc(title));
    }
    h.push_str("</ol>\n");
}
