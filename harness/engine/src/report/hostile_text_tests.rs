//! Every format quotes hostile text safely: object names, descriptions, helm's output,
//! log lines, step titles and errors carrying markup, control characters and
//! credentials go through JSON, Markdown, JUnit XML and HTML, and each format stays
//! well-formed, shows the text (escaped, not dropped) and never shows a credential.
//! Fields only a hand-made `runs.json` can fill (a scenario name, a version) are set on
//! the report itself, as `merge-reports` would read them.

use crate::exercise::{Outcome, StepRecord};
use crate::helm::HelmRun;
use crate::runner::{Role, RunResult};
use crate::scenario::HelmAction;
use crate::webhook::Answer;

use super::fixture_tests::{helm, outcome, scenario, step, versions};
use preflight_core::drain::{PodDecision, PodEnd};
use preflight_core::rollout::{NotBack, NotBackCause};

use super::rollout_tests::{blocked_node, drained_node, pool, rollout, surge};
use super::{Report, build, html, junit, markdown, render_json};

/// Markup of every format, and the control characters a terminal or a parser acts on.
const HOSTILE: &str =
    "<script>alert(1)</script></testcase>]]>|`x`*y*_z_[l](j:x)\n\u{1b}[31mred\u{0}\u{7}\u{8}";
/// A name with the same, as a hand-made or mangled object name could be.
const NAME: &str = "web<script>alert(1)</script>|`n`*\u{1b}[31m\u{0}";
/// Credentials as they appear in helm's output, API errors and log lines.
const SECRETS: [&str; 4] = [
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
    "abcdef0123456789token",
    "hunter2-hostile",
    "LS0tLS1CRUdJTiBQUklWQVRF",
];

fn leaks() -> String {
    format!(
        "Authorization: Bearer {}\ntoken: {}\nsomething password={} else\nclient-key-data: {}",
        SECRETS[0], SECRETS[1], SECRETS[2], SECRETS[3]
    )
}

/// A run of `hostile` that leaves a ReplicaSet and two Pods named with [`NAME`], whose
/// evidence, helm output, step titles and errors carry [`HOSTILE`] and credentials.
fn hostile_outcome(version: &str, ns: &str) -> Outcome {
    let mut o = outcome("hostile", version, ns, true, 2);
    let rs = "hostile-web-5d4f8c7b9";
    for obj in &mut o.after.objects {
        obj.name = obj.name.replace(rs, NAME);
        for owner in &mut obj.owners {
            owner.name = owner.name.replace(rs, NAME);
        }
    }
    o.log_evidence.map(|e| {
        let e = e.map_text(&|t| format!("{} {HOSTILE} {}", t.replace(rs, NAME), leaks()));
        match e {
            crate::evidence::Evidence::GcCouldNotDelete { mut object, error } => {
                object.name = object.name.replace(rs, NAME);
                crate::evidence::Evidence::GcCouldNotDelete { object, error }
            }
            e => e,
        }
    });
    for r in &mut o.webhook_requests {
        r.name = Some(NAME.into());
        r.answer = Answer::Denied {
            message: format!("{HOSTILE} {}", leaks()),
        };
    }
    o.steps[0].helm = Some(HelmRun {
        command: format!("helm install hostile --set password={}", SECRETS[2]),
        stdout: format!("{HOSTILE}\n{}", leaks()),
        stderr: format!("{HOSTILE}\n{}", leaks()),
        ..helm(HelmAction::Install, 0)
    });
    o.steps.push(StepRecord {
        error: Some(format!("{HOSTILE} {}", leaks())),
        ..step(
            3,
            &format!("{HOSTILE} password={}", SECRETS[2]),
            version,
            None,
        )
    });
    o.objects_after_step.push(usize::MAX / 2);
    o.steps.push(StepRecord {
        rollout: Some(hostile_rollout()),
        ..step(4, "roll nodes", version, None)
    });
    o.objects_after_step.push(4);
    o.teardown_errors = vec![format!("{HOSTILE} {}", leaks())];
    o.substitutions = vec![preflight_core::images::Substitution {
        namespace: format!("{ns}{HOSTILE}"),
        workload: format!("ReplicaSet/{NAME} password={}", SECRETS[2]),
        container: NAME.into(),
        image: format!("registry.example/{NAME}:1?token={}", SECRETS[1]),
        replaced_by: STAND_IN.into(),
        changes: vec![format!("{HOSTILE} {}", leaks())],
        pods: 2,
    }];
    o
}

/// The image the hostile run's substitution ran instead (shown in every format).
const STAND_IN: &str = "preflight/workload:stand-in-r1";

/// The hostile substitution is in `text`.
fn assert_substitution_shown(format: &str, text: &str) {
    assert!(
        text.contains(STAND_IN) && text.to_lowercase().contains("images substituted"),
        "{format} does not show the substitution"
    );
}

/// The fixture's node roll with [`HOSTILE`] and credentials in everything the cluster
/// writes: the 429s' messages and causes, the budget's conditions, the scheduler's
/// event, the webhook's refusal, a node's error, and a surge node that could not join.
fn hostile_rollout() -> preflight_core::rollout::RolloutRecord {
    let text = format!("{HOSTILE} {}", leaks());
    let mut r = rollout();
    let mut blocked = blocked_node(&text, vec![text.clone()]);
    blocked.error = Some(text.clone());
    blocked.drain.decisions[0].1 = PodDecision::Evict {
        warning: Some(text.clone()),
    };
    blocked.drain.pods[1].end = PodEnd::Stopped {
        state: text.clone(),
    };
    let mut drained = drained_node(&text, &text);
    drained.not_back.push(NotBack {
        namespace: "shop".into(),
        owner: "StatefulSet/db".into(),
        evicted: vec!["db-0".into()],
        ready: 0,
        desired: 1,
        cause: NotBackCause::NotReady {
            pods: vec!["db-0".into()],
            conditions: vec![text.clone()],
        },
    });
    r.pools[0] = pool(
        "nodepool1",
        &["aks-nodepool1-0"],
        surge("aks-nodepool1-s0"),
        vec![blocked],
    );
    r.pools[1] = pool(
        "userpool",
        &["aks-userpool-0"],
        surge("aks-userpool-s0"),
        vec![drained],
    );
    let mut failed = surge("aks-spot-s0");
    failed.error = Some(text);
    r.pools.push(pool("spot", &["aks-spot-0"], failed, vec![]));
    r
}

/// The hostile roll is in `text` (so the checks on it cover the roll's texts too).
fn assert_rollout_shown(format: &str, text: &str) {
    for shown in ["aks-nodepool1-0", "aks-userpool-0", "aks-spot-s0", "429 ×8"] {
        assert!(text.contains(shown), "{format} does not show `{shown}`");
    }
}

fn hostile_report() -> Report {
    let s = scenario(
        "name: hostile\ndescription: \"<script>alert(1)</script> | `d` *e* ]]> \\e[31m \\0 \\a \\b\\nsecond line\"\nchart: {path: charts/preflight-test}\nsteps: [settle: {}]\n",
    );
    let source = "v1.29.15";
    let results = vec![
        RunResult {
            scenario: "hostile".into(),
            role: Role::Source,
            at: 0,
            timings: Default::default(),
            outcome: Ok(hostile_outcome(source, "pf-hostile-abcde0")),
        },
        RunResult {
            scenario: "hostile".into(),
            role: Role::Target,
            at: 1,
            timings: Default::default(),
            // A run that could not run: its error is printed whole (a code block).
            outcome: Err(format!(
                "{HOSTILE}\n```\n# not a heading\n````\n{}",
                leaks()
            )),
        },
    ];
    let mut r = build(&[s], &results, &versions(), &crate::policy::DEFAULT_FAIL_ON);
    // What only a hand-made runs.json holds: names the scenario file would refuse.
    r.scenarios[0].name = format!("x\" onmouseover=\"alert(1)\" a='{HOSTILE}");
    r.source.version = format!("v1<b>\n|{HOSTILE}");
    r
}

fn assert_no_secrets(format: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{format} shows `{secret}`:\n{text}");
    }
}

fn assert_no_raw_controls(format: &str, text: &str) {
    for c in ['\u{1b}', '\u{0}', '\u{7}', '\u{8}'] {
        assert!(!text.contains(c), "{format} holds the raw control {c:?}");
    }
}

#[test]
fn json_is_valid_round_trips_and_holds_no_credentials() {
    let r = hostile_report();
    let json = render_json(&r);
    assert_no_secrets("report.json", &json);
    assert!(json.contains("\"rollout\""), "{json}");
    assert!(json.contains(STAND_IN), "{json}");
    let doc: serde_json::Value = serde_json::from_str(&json).expect("report.json is JSON");
    // The text comes back exactly (JSON escapes, it does not rewrite).
    assert_eq!(doc["scenarios"][0]["name"], r.scenarios[0].name.as_str());
    let error = doc["scenarios"][0]["runs"][1]["error"].as_str().unwrap();
    assert!(error.starts_with(HOSTILE), "{error}");
    let back: Report = serde_json::from_str(&json).expect("report.json reads back");
    assert_eq!(render_json(&back), json);
}

/// Unescaped `|` in a Markdown line (a `\` escapes the next character).
fn cell_separators(line: &str) -> usize {
    let mut count = 0;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '|' => count += 1,
            _ => {}
        }
    }
    count
}

#[test]
fn markdown_keeps_its_table_and_code_blocks_whole() {
    let r = hostile_report();
    let md = markdown::render(&r);
    assert_no_secrets("report.md", &md);
    assert_rollout_shown("report.md", &md);
    assert_substitution_shown("report.md", &md);
    assert_no_raw_controls("report.md", &md);

    // The matrix: a header, a rule, one row per run, each with exactly four cells.
    let matrix: Vec<&str> = md
        .split("## Matrix\n\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| !l.is_empty())
        .collect();
    let runs: usize = r.scenarios.iter().map(|s| s.runs.len()).sum();
    assert_eq!(matrix.len(), runs + 2, "{matrix:#?}");
    for row in &matrix {
        assert_eq!(
            cell_separators(row),
            5,
            "a row of other than four cells: {row}"
        );
    }

    // The substitutions' table: a header, a rule, one row, each with seven cells.
    let table: Vec<&str> = md
        .split("| namespace | workload |")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(table.len(), 3, "{table:#?}");
    for row in &table[1..] {
        assert_eq!(
            cell_separators(row),
            8,
            "a row of other than seven cells: {row}"
        );
    }

    // Outside code blocks, the only heading lines are the report's own; every block
    // that opens closes.
    let mut fence: Option<&str> = None;
    let mut headings = Vec::new();
    for line in md.lines() {
        match fence {
            Some(f) if line == f => fence = None,
            Some(_) => {}
            None if line.len() >= 3 && line.chars().all(|c| c == '`') => fence = Some(line),
            None => {
                if line.starts_with('#') {
                    headings.push(line);
                }
                // Markup outside code (spans pair backticks left to right) is escaped;
                // in code, Markdown shows it as text.
                for outside in line.split('`').step_by(2) {
                    assert!(
                        !outside.contains("<script"),
                        "raw markup in report.md: {line}"
                    );
                }
            }
        }
    }
    assert_eq!(fence, None, "a code block is left open:\n{md}");
    assert!(
        headings.iter().all(|h| !h.contains("not a heading")),
        "{headings:#?}"
    );
    // The quoted text is shown, escaped.
    assert!(md.contains("&lt;script>alert(1)&lt;/script>"), "{md}");
    assert!(md.contains("\\u{1b}[31m"), "{md}");
}

/// Every character of `xml` is one XML 1.0 allows.
fn xml10_chars(xml: &str) -> Result<(), char> {
    match xml.chars().find(|c| {
        !matches!(*c as u32, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
    }) {
        Some(c) => Err(c),
        None => Ok(()),
    }
}

/// The text and attribute values of `xml`, unescaped, read by a real XML parser.
fn xml_text(xml: &str) -> String {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = String::new();
    loop {
        match reader.read_event().expect("junit.xml parses as XML") {
            Event::Eof => break,
            Event::Start(e) | Event::Empty(e) => {
                for a in e.attributes() {
                    let a = a.expect("a well-formed attribute");
                    out.push_str(
                        &a.decoded_and_normalized_value(
                            quick_xml::XmlVersion::Implicit1_0,
                            reader.decoder(),
                        )
                        .expect("an attribute value unescapes"),
                    );
                    out.push('\n');
                }
            }
            Event::Text(t) => out.push_str(&t.decode().expect("text decodes")),
            Event::CData(t) => out.push_str(&t.decode().expect("CDATA decodes")),
            Event::GeneralRef(g) => match g.resolve_char_ref().expect("a character reference") {
                Some(c) => out.push(c),
                None => out.push(match g.decode().expect("an entity name").as_ref() {
                    "lt" => '<',
                    "gt" => '>',
                    "amp" => '&',
                    "quot" => '"',
                    "apos" => '\'',
                    other => panic!("an unknown entity &{other};"),
                }),
            },
            _ => {}
        }
    }
    out
}

#[test]
fn junit_parses_as_xml_and_holds_only_xml_characters() {
    let r = hostile_report();
    let xml = junit::render(&r);
    assert!(!xml.is_empty(), "junit.xml rendered");
    assert_no_secrets("junit.xml", &xml);
    assert_rollout_shown("junit.xml", &xml);
    assert_substitution_shown("junit.xml", &xml);
    assert_eq!(
        xml10_chars(&xml),
        Ok(()),
        "junit.xml holds a character XML 1.0 forbids"
    );
    assert!(!xml.contains("<script"), "raw markup in junit.xml");
    let text = xml_text(&xml);
    // Escaped, not dropped: the parser gives the quoted text back.
    assert!(
        text.contains("<script>alert(1)</script></testcase>]]>"),
        "{text}"
    );
    assert!(text.contains("\\u{1b}[31m"), "{text}");
}

#[test]
fn html_opens_no_tag_and_leaves_no_attribute() {
    let r = hostile_report();
    let page = html::render(&r);
    assert_no_secrets("report.html", &page);
    assert_rollout_shown("report.html", &page);
    assert_substitution_shown("report.html", &page);
    assert_no_raw_controls("report.html", &page);
    assert!(
        !page.to_lowercase().contains("<script"),
        "raw <script in report.html"
    );
    assert!(
        !page.contains("onmouseover=\""),
        "an attribute escaped its quotes"
    );
    assert!(
        page.contains("id=\"sc-x&quot; onmouseover=&quot;alert(1)&quot; a=&#39;&lt;script&gt;"),
        "the scenario's anchor, escaped"
    );
    // A count no real run has draws a bar, not a panic (it overflowed `70 * n`).
    assert!(page.contains("objects in the namespace after each step"));
}
