//! Images substituted in every report format, on a fixture whose source run had two
//! containers changed at admission: `api`, whose image no node held, ran preflight's
//! stand-in (listening on its ports, its exec probe and handler running `true`), and
//! `migrate`, whose image the node held, ran as it is with only its pull policy
//! changed. The target run substituted nothing. Substitutions are not findings: both
//! runs pass.

use preflight_core::images::Substitution;

use crate::runner::{Role, RunResult};
use crate::scenario::Scenario;

use super::fixture_tests::{filters, outcome, scenario, versions};
use super::{Report, Verdict, build, html, junit, markdown, render_json};

const FROM: &str = "v1.29.15";
const TO: &str = "v1.30.14";

/// The fixture's two substitutions in namespace `ns`.
pub(super) fn substitutions(ns: &str) -> Vec<Substitution> {
    vec![
        Substitution {
            namespace: ns.into(),
            workload: "ReplicaSet/stand-in-web-5d4f8c7b9".into(),
            container: "api".into(),
            image: "registry.corp.example/shop/api:2.4".into(),
            replaced_by: "preflight/workload:r1".into(),
            changes: vec![
                "listens on 8080, 9090 (answers 200)".into(),
                "exec readiness probe runs true".into(),
                "exec preStop handler runs true".into(),
            ],
            pods: 2,
        },
        Substitution {
            namespace: ns.into(),
            workload: "Job/stand-in-migrate".into(),
            container: "migrate".into(),
            image: "docker.io/library/busybox:1.36".into(),
            replaced_by: "docker.io/library/busybox:1.36".into(),
            changes: vec!["pull policy Always → IfNotPresent (the node holds the image)".into()],
            pods: 1,
        },
    ]
}

fn job() -> (Vec<Scenario>, Vec<RunResult>) {
    let s = scenario(
        "name: stand-in\ndescription: a chart whose images no kind node holds\nchart: {path: charts/preflight-test}\nsteps: [settle: {}]\n",
    );
    let ns = "pf-stand-in-abcde0";
    let mut source = outcome("stand-in", FROM, ns, false, 0);
    source.substitutions = substitutions(ns);
    let target = outcome("stand-in", TO, "pf-stand-in-abcde1", false, 0);
    let results = vec![
        RunResult {
            scenario: "stand-in".into(),
            role: Role::Source,
            at: 0,
            timings: Default::default(),
            outcome: Ok(source),
        },
        RunResult {
            scenario: "stand-in".into(),
            role: Role::Target,
            at: 1,
            timings: Default::default(),
            outcome: Ok(target),
        },
    ];
    (vec![s], results)
}

fn report() -> Report {
    let (scenarios, results) = job();
    build(
        &scenarios,
        &results,
        &versions(),
        &crate::policy::DEFAULT_FAIL_ON,
    )
}

#[test]
fn substitutions_are_reported_but_are_not_findings() {
    let r = report();
    assert_eq!((r.verdict, r.exit_code), (Verdict::Pass, 0));
    assert_eq!(r.summary.findings, 0);
    let (source, target) = (&r.scenarios[0].runs[0], &r.scenarios[0].runs[1]);
    assert_eq!(source.verdict, Verdict::Pass);
    assert!(source.findings.is_empty(), "{:?}", source.findings);
    assert_eq!(
        source.headline, "clean: nothing unexpected left behind",
        "a substitution is no headline"
    );
    assert_eq!(source.substitutions, substitutions("pf-stand-in-abcde0"));
    assert!(target.substitutions.is_empty());
    // The JSON carries them for the run that had them only.
    let doc: serde_json::Value = serde_json::from_str(&render_json(&r)).unwrap();
    let runs = &doc["scenarios"][0]["runs"];
    assert_eq!(
        runs[0]["substitutions"][0]["replacedBy"],
        "preflight/workload:r1"
    );
    assert_eq!(runs[0]["substitutions"][1]["pods"], 1);
    assert!(runs[1].get("substitutions").is_none(), "{}", runs[1]);
    // JUnit says so and fails nothing.
    let xml = junit::render(&r);
    assert!(
        !xml.contains("<failure") && !xml.contains("<error"),
        "{xml}"
    );
    assert!(xml.contains("<system-out>images substituted: "), "{xml}");
}

#[test]
fn substitutions_follow_the_schema_and_survive_shards_and_merge() {
    let (scenarios, results) = job();
    let fail_on = crate::policy::DEFAULT_FAIL_ON.to_vec();
    let direct = build(&scenarios, &results, &versions(), &fail_on);
    let doc: serde_json::Value = serde_json::from_str(&render_json(&direct)).unwrap();
    assert_eq!(
        super::fixture_tests::schema_errors(&doc),
        Vec::<String>::new()
    );
    // A substitution without what ran instead breaks the schema.
    let mut broken = doc.clone();
    broken["scenarios"][0]["runs"][0]["substitutions"][0]
        .as_object_mut()
        .unwrap()
        .remove("replacedBy");
    assert_eq!(super::fixture_tests::schema_errors(&broken).len(), 1);

    let mut merged = super::fixture_tests::through_shards(&scenarios, results, &fail_on, 1);
    assert_eq!(
        merged.scenarios[0].runs[0].substitutions,
        direct.scenarios[0].runs[0].substitutions
    );
    merged.generated_at = direct.generated_at.clone();
    assert_eq!(markdown::render(&merged), markdown::render(&direct));
    assert_eq!(html::render(&merged), html::render(&direct));
    assert_eq!(junit::render(&merged), junit::render(&direct));
}

#[test]
fn every_format_snapshot_of_substitutions() {
    let r = report();
    let md = markdown::render(&r);
    assert_eq!(md.matches("### Images substituted").count(), 1, "{md}");
    assert!(md.contains(super::images::WHY), "{md}");
    let page = html::render(&r);
    assert!(page.contains("<h4>images substituted</h4>"), "{page}");
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!("substitutions.report.json", render_json(&r));
        insta::assert_snapshot!("substitutions.report.md", md);
        insta::assert_snapshot!("substitutions.junit.xml", junit::render(&r));
        insta::assert_snapshot!("substitutions.report.html", page);
    });
}
