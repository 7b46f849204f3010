//! The gate's account in a report: every entry of the accept file with who accepted
//! what, why, until when and what it matched (or that it expired, or matched nothing),
//! and what the baseline waived. One model, a section in each of the four formats (the
//! JSON is the model itself), shared by `preflight run` and `preflight audit`.

use std::fmt::Write;

use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};
use serde::{Deserialize, Serialize};

use super::Matcher;
use crate::report::html::esc;
use crate::report::text::{md_code, md_inline, printable};

/// The account of `--accept` and `--baseline`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Acceptance {
    /// The day expiry was judged on (UTC).
    pub today: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub entries: Vec<EntryReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineReport>,
}

/// Whether an entry accepted something.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryStatus {
    /// In force and it matched: what it matched does not count.
    InForce,
    /// Past its expiry: what it matched counts again.
    Expired,
    /// In force but it matched nothing: remove it (it fails nothing).
    Stale,
}

impl EntryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryStatus::InForce => "in force",
            EntryStatus::Expired => "EXPIRED",
            EntryStatus::Stale => "stale",
        }
    }
}

/// One entry of the accept file as the report shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryReport {
    pub status: EntryStatus,
    /// `file:line:column` of the entry.
    pub at: String,
    #[serde(rename = "match")]
    pub matcher: Matcher,
    pub owner: String,
    pub reason: String,
    pub expires: String,
    /// The findings it matched, as the report words them.
    pub matched: Vec<String>,
}

impl EntryReport {
    /// `finding=leftover kind=Job name=*-migrate-*`.
    pub fn matcher_text(&self) -> String {
        match serde_json::to_value(&self.matcher) {
            Ok(serde_json::Value::Object(m)) => m
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        }
    }

    /// `in force, matched 2: accepted by ... until ...: why`.
    pub fn line(&self) -> String {
        format!(
            "{}, matched {}: accepted by {} until {}: {} ({})",
            self.status.as_str(),
            self.matched.len(),
            self.owner,
            self.expires,
            self.reason,
            self.at
        )
    }
}

/// What the baseline waived.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BaselineReport {
    pub file: String,
    /// Findings the baseline had.
    pub known: usize,
    /// Findings of this job the baseline had, which do not count.
    pub suppressed: Vec<String>,
}

impl Acceptance {
    /// Entries by status.
    pub fn count(&self, status: EntryStatus) -> usize {
        self.entries.iter().filter(|e| e.status == status).count()
    }

    /// One line for the terminal and the summaries.
    pub fn summary(&self) -> String {
        let accepted: usize = self
            .entries
            .iter()
            .filter(|e| e.status == EntryStatus::InForce)
            .map(|e| e.matched.len())
            .sum();
        let mut s = format!(
            "accepted: {accepted} findings; expired entries: {}; stale entries: {} (judged on {})",
            self.count(EntryStatus::Expired),
            self.count(EntryStatus::Stale),
            self.today
        );
        if let Some(b) = &self.baseline {
            let _ = write!(
                s,
                "; in the baseline {}: {} findings, not counted",
                b.file,
                b.suppressed.len()
            );
        }
        s
    }
}

/// `3 × Pod of ReplicaSet of Deployment web (hook-leftover)`: repeated findings once.
pub fn grouped(found: &[String]) -> Vec<String> {
    let mut counts: Vec<(&String, usize)> = Vec::new();
    for f in found {
        match counts.iter_mut().find(|(g, _)| *g == f) {
            Some((_, n)) => *n += 1,
            None => counts.push((f, 1)),
        }
    }
    counts
        .into_iter()
        .map(|(f, n)| {
            if n == 1 {
                f.clone()
            } else {
                format!("{n} × {f}")
            }
        })
        .collect()
}

/// The Markdown section.
pub fn markdown(a: &Acceptance) -> String {
    let mut s = String::from("\n## Accepted findings and baseline\n\n");
    let _ = writeln!(s, "{}.\n", md_inline(&a.summary()));
    if !a.entries.is_empty() {
        let _ = writeln!(s, "| status | match | owner | until | reason | matched |");
        let _ = writeln!(s, "|---|---|---|---|---|---|");
        for e in &a.entries {
            let _ = writeln!(
                s,
                "| {} | `{}` | {} | {} | {} | {} |",
                e.status.as_str(),
                md_code(&e.matcher_text()),
                md_inline(&e.owner),
                md_inline(&e.expires),
                md_inline(&e.reason),
                md_inline(&grouped(&e.matched).join("; "))
            );
        }
    }
    if let Some(b) = &a.baseline {
        s.push('\n');
        for f in grouped(&b.suppressed) {
            let _ = writeln!(s, "- in the baseline: {}", md_inline(&f));
        }
    }
    s
}

/// The HTML section.
pub fn html(a: &Acceptance) -> String {
    let mut h = String::from("<section id=\"acceptance\"><h2>Accepted findings and baseline</h2>");
    let _ = write!(h, "<p>{}</p>", esc(&a.summary()));
    if !a.entries.is_empty() {
        h.push_str("<table><tr><th>status</th><th>match</th><th>owner</th><th>until</th><th>reason</th><th>matched</th></tr>");
        for e in &a.entries {
            let _ = write!(
                h,
                "<tr class=\"{}\"><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                match e.status {
                    EntryStatus::Expired => "fail",
                    _ => "pass",
                },
                esc(e.status.as_str()),
                esc(&e.matcher_text()),
                esc(&e.owner),
                esc(&e.expires),
                esc(&e.reason),
                esc(&grouped(&e.matched).join("\n"))
            );
        }
        h.push_str("</table>");
    }
    if let Some(b) = &a.baseline
        && !b.suppressed.is_empty()
    {
        h.push_str("<ul>");
        for f in grouped(&b.suppressed) {
            let _ = write!(h, "<li>in the baseline: {}</li>", esc(&f));
        }
        h.push_str("</ul>");
    }
    h.push_str("</section>\n");
    h
}

/// The JUnit suite: one case per entry (an expired entry that matched fails, as its
/// findings do; a stale one is skipped) and one for the baseline.
pub fn junit(a: &Acceptance) -> TestSuite {
    let mut suite = TestSuite::new("preflight-acceptance");
    for e in &a.entries {
        let status = match e.status {
            EntryStatus::Expired if !e.matched.is_empty() => {
                let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
                st.set_message(printable(&e.line()).as_ref());
                st.set_type("acceptance-expired");
                st.set_description(printable(&grouped(&e.matched).join("\n")).as_ref());
                st
            }
            EntryStatus::Stale | EntryStatus::Expired => {
                let mut st = TestCaseStatus::skipped();
                st.set_message(printable(&e.line()).as_ref());
                st
            }
            EntryStatus::InForce => TestCaseStatus::success(),
        };
        let mut case = TestCase::new(printable(&e.matcher_text()).as_ref(), status);
        case.set_classname("preflight.acceptance");
        let out: Vec<String> = std::iter::once(e.line())
            .chain(grouped(&e.matched).iter().map(|m| format!("matched: {m}")))
            .collect();
        case.set_system_out(printable(&out.join("\n")).as_ref());
        suite.add_test_case(case);
    }
    if let Some(b) = &a.baseline {
        let mut case = TestCase::new(
            printable(&format!("baseline {}", b.file)).as_ref(),
            TestCaseStatus::success(),
        );
        case.set_classname("preflight.acceptance");
        case.set_system_out(printable(&grouped(&b.suppressed).join("\n")).as_ref());
        suite.add_test_case(case);
    }
    suite
}
