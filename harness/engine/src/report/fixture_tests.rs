//! Snapshot tests of every report format, on a fixture job: a clean baseline, the
//! admission incident on both versions, and a scenario that regresses on the target.
//! Times, versions, generated names and namespaces are redacted.

use std::collections::BTreeMap;

use crate::exercise::{Outcome, StepRecord};
use crate::helm::{HelmCall, HelmRun};
use crate::report::shard::ShardFiles;
use crate::runner::{Role, RunResult};
use crate::scenario::{self, HelmAction, HelmDryRun, Scenario};
use crate::snapshot::{ListedType, ObjectRecord, Owner, Snapshot};
use crate::webhook::{Record, WebhookKind};

use super::{FailOn, Verdict, build, html, junit, markdown, render_json};

pub(super) fn obj(
    kind: &str,
    api: &str,
    ns: &str,
    name: &str,
    uid: &str,
    owners: &[(&str, &str, &str)],
) -> ObjectRecord {
    ObjectRecord {
        api_version: api.into(),
        kind: kind.into(),
        resource: format!(
            "{}/{}s",
            api.split_once('/').map_or("core", |(g, _)| g),
            kind.to_lowercase()
        ),
        namespace: Some(ns.into()),
        name: name.into(),
        uid: uid.into(),
        resource_version: String::new(),
        owners: owners
            .iter()
            .map(|(k, n, u)| Owner {
                api_version: if matches!(*k, "Deployment" | "ReplicaSet") {
                    "apps/v1".into()
                } else {
                    "v1".into()
                },
                kind: (*k).into(),
                name: (*n).into(),
                uid: (*u).into(),
                controller: true,
            })
            .collect(),
        finalizers: vec![],
        deletion_timestamp: None,
        labels: BTreeMap::new(),
        helm_annotations: BTreeMap::new(),
    }
}

/// The types the fixture snapshots listed.
fn listed() -> Vec<ListedType> {
    [
        ("apps", "Deployment"),
        ("apps", "ReplicaSet"),
        ("", "Pod"),
        ("", "ConfigMap"),
    ]
    .into_iter()
    .map(|(group, kind)| ListedType {
        group: group.into(),
        version: "v1".into(),
        kind: kind.into(),
        resource: format!("{}s", kind.to_lowercase()),
        namespaced: true,
        served_versions: vec!["v1".into()],
        full_objects: false,
    })
    .collect()
}

pub(super) fn helm(action: HelmAction, code: i32) -> HelmRun {
    HelmRun {
        command: format!("helm {}", action.as_str()),
        exit_code: code,
        stdout: String::new(),
        stderr: String::new(),
        duration_ms: 1200,
        step: Some(HelmCall {
            action,
            dry_run: HelmDryRun::None,
            release: "preflight-test".into(),
        }),
    }
}

pub(super) fn step(
    index: usize,
    title: &str,
    version: &str,
    helm_run: Option<HelmRun>,
) -> StepRecord {
    StepRecord {
        index,
        title: title.into(),
        version: version.into(),
        helm: helm_run,
        dry_run: None,
        settle: None,
        rollout: None,
        error: None,
        duration_ms: 1500,
    }
}

/// A run that leaves `pods` Pods and (if `rs`) a ReplicaSet of Deployment `<release>-web`.
pub(super) fn outcome(scenario: &str, version: &str, ns: &str, rs: bool, pods: usize) -> Outcome {
    let release = scenario.to_string();
    let mut after = vec![obj("ConfigMap", "v1", ns, "kube-root-ca.crt", "infra", &[])];
    let mut requests = Vec::new();
    let mut evidence = crate::evidence::EvidenceLog::default();
    let rs_name = format!("{release}-web-5d4f8c7b9");
    if rs {
        after.push(obj(
            "ReplicaSet",
            "apps/v1",
            ns,
            &rs_name,
            &format!("rs-{ns}"),
            &[("Deployment", &format!("{release}-web"), "gone-deploy")],
        ));
        evidence.push(crate::evidence::Evidence::GcCouldNotDelete {
            object: crate::evidence::ObjectRef {
                kind: Some("ReplicaSet".into()),
                resource: None,
                namespace: Some(ns.into()),
                name: rs_name.clone(),
            },
            error: format!(
                "Internal error occurred: failed calling webhook \"delete-guard.{ns}.preflight.dev\": connection refused"
            ),
        });
        requests.push(Record {
            time: "2026-11-29T10:00:00Z".into(),
            webhook: "delete-guard".into(),
            kind: WebhookKind::Validating,
            operation: "DELETE".into(),
            resource: "apps/v1/replicasets".into(),
            namespace: Some(ns.into()),
            name: Some(rs_name.clone()),
            user: Some("system:serviceaccount:kube-system:generic-garbage-collector".into()),
            dry_run: false,
            answer: crate::webhook::Answer::Denied {
                message: "no deletes today".into(),
            },
            latency_ms: 3,
            caller_timeout_ms: Some(10_000),
            caller_gave_up: false,
        });
    }
    for i in 0..pods {
        after.push(obj(
            "Pod",
            "v1",
            ns,
            &format!("{rs_name}-abcd{i}"),
            &format!("pod{i}-{ns}"),
            &[("ReplicaSet", &rs_name, &format!("rs-{ns}"))],
        ));
    }
    Outcome {
        scenario: scenario.into(),
        namespace: ns.into(),
        other_namespaces: Vec::new(),
        release,
        start_version: version.into(),
        end_version: version.into(),
        steps: vec![
            step(
                0,
                "helm install",
                version,
                Some(helm(HelmAction::Install, 0)),
            ),
            step(1, "webhook delete-guard -> deny", version, None),
            step(
                2,
                "helm uninstall",
                version,
                Some(helm(HelmAction::Uninstall, 0)),
            ),
        ],
        before: Snapshot {
            objects: vec![],
            unlistable: vec![],
            types: 40,
            listed: listed(),
            ..Default::default()
        },
        after: Snapshot {
            objects: after,
            unlistable: vec![],
            types: 40,
            listed: listed(),
            ..Default::default()
        },
        webhook_requests: requests,
        manifest: String::new(),
        objects_after_step: vec![14, 14, 4],
        seen: Default::default(),
        log_evidence: evidence,
        teardown_errors: vec![],
        substitutions: Vec::new(),
    }
}

pub(super) fn versions() -> Vec<super::VersionInfo> {
    use super::VersionInfo;
    vec![VersionInfo::new("v1.29.15"), VersionInfo::new("v1.30.14")]
}

pub(super) fn scenario(text: &str) -> Scenario {
    scenario::parse(text, "fixture.yaml", None).unwrap()
}

pub(super) fn job() -> (Vec<Scenario>, Vec<RunResult>) {
    let baseline = scenario(
        "name: baseline\ndescription: healthy\nchart: {path: charts/preflight-test}\nsteps: [settle: {}]\n",
    );
    let incident = scenario(
        "name: incident-admission\ndescription: the incident\nchart: {path: charts/preflight-test}\nsteps: [settle: {}]\nexpect:\n  leftovers:\n    - {kind: ReplicaSet, reason: webhook-blocked-delete}\n    - {kind: Pod, reason: webhook-blocked-delete}\n",
    );
    let regress = scenario(
        "name: regresses\ndescription: worse on the target\nchart: {path: charts/preflight-test}\nsteps: [settle: {}]\n",
    );
    let unreproduced = scenario(
        "name: unreproduced\ndescription: the webhook stayed healthy\nchart: {path: charts/preflight-test}\nsteps: [settle: {}]\nexpect:\n  leftovers:\n    - {kind: ReplicaSet, reason: webhook-blocked-delete}\n",
    );
    let (s, t) = ("v1.29.15", "v1.30.14");
    let mut failed_uninstall = outcome("unreproduced", t, "pf-unreproduced-abcde7", false, 0);
    failed_uninstall.steps[2].helm = Some(HelmRun {
        stderr: "Error: uninstall: timed out waiting for the condition, token=s3cr3t".into(),
        ..helm(HelmAction::Uninstall, 1)
    });
    let results = vec![
        RunResult {
            scenario: "baseline".into(),
            role: Role::Source,
            at: 0,
            timings: Default::default(),
            outcome: Ok(outcome("baseline", s, "pf-baseline-abcde0", false, 0)),
        },
        RunResult {
            scenario: "baseline".into(),
            role: Role::Target,
            at: 1,
            timings: Default::default(),
            outcome: Ok(outcome("baseline", t, "pf-baseline-abcde1", false, 0)),
        },
        RunResult {
            scenario: "incident-admission".into(),
            role: Role::Source,
            at: 0,
            timings: Default::default(),
            outcome: Ok(outcome(
                "incident-admission",
                s,
                "pf-incident-admission-abcde2",
                true,
                2,
            )),
        },
        RunResult {
            scenario: "incident-admission".into(),
            role: Role::Target,
            at: 1,
            timings: Default::default(),
            outcome: Ok(outcome(
                "incident-admission",
                t,
                "pf-incident-admission-abcde3",
                true,
                2,
            )),
        },
        RunResult {
            scenario: "regresses".into(),
            role: Role::Source,
            at: 0,
            timings: Default::default(),
            outcome: Ok(outcome("regresses", s, "pf-regresses-abcde4", false, 0)),
        },
        RunResult {
            scenario: "regresses".into(),
            role: Role::Target,
            at: 1,
            timings: Default::default(),
            outcome: Ok(outcome("regresses", t, "pf-regresses-abcde5", true, 3)),
        },
        RunResult {
            scenario: "unreproduced".into(),
            role: Role::Source,
            at: 0,
            timings: Default::default(),
            outcome: Ok(outcome(
                "unreproduced",
                s,
                "pf-unreproduced-abcde6",
                false,
                0,
            )),
        },
        RunResult {
            scenario: "unreproduced".into(),
            role: Role::Target,
            at: 1,
            timings: Default::default(),
            outcome: Ok(failed_uninstall),
        },
    ];
    (vec![baseline, incident, regress, unreproduced], results)
}

pub(super) fn filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "[time]"),
        (r"v1\.29\.\d+", "[source]"),
        (r"v1\.30\.\d+", "[target]"),
        (r"pf-([a-z-]+)-[a-z]{5}\d", "pf-$1-[id]"),
        (r"-[0-9a-f]{9}-[a-z0-9]{5}\b", "-[rs-hash]-[pod]"),
        (r"-[0-9a-f]{9}\b", "-[rs-hash]"),
        (
            r#""preflightVersion": "[^"]+""#,
            r#""preflightVersion": "[version]""#,
        ),
    ]
}

#[test]
fn verdicts_regressions_and_exit_codes() {
    let (scenarios, results) = job();
    let r = build(
        &scenarios,
        &results,
        &versions(),
        &[FailOn::Leftovers, FailOn::Regressions],
    );
    assert_eq!(r.verdict, Verdict::Fail);
    assert_eq!(r.exit_code, 1);
    let by_name = |n: &str| r.scenarios.iter().find(|s| s.name == n).unwrap();
    assert_eq!(by_name("baseline").verdict, Verdict::Pass);
    assert_eq!(
        by_name("incident-admission").verdict,
        Verdict::Pass,
        "expected leftovers are not findings"
    );
    let regresses = by_name("regresses");
    assert_eq!(regresses.verdict, Verdict::Fail);
    assert_eq!(
        regresses.regressions[0].text,
        "the target leaves 3 Pods and 1 ReplicaSet that the source cleaned up"
    );
    assert_eq!(regresses.regressions.len(), 1);
    // The other: `unreproduced`'s helm uninstall exits 1 on the target only.
    assert_eq!(r.regressions.len(), 2);
    let inc = &by_name("incident-admission").runs[0];
    assert_eq!(inc.headline, "helm said success (exit 0), 3 objects stayed");
    let pod = inc.leftovers.iter().find(|l| l.kind == "Pod").unwrap();
    assert_eq!(
        pod.normalized,
        "Pod of ReplicaSet of Deployment incident-admission-web"
    );
    assert!(
        pod.evidence[0].starts_with("its owner ReplicaSet/"),
        "{:?}",
        pod.evidence
    );

    // --fail-on chooses what counts.
    let only_regressions = build(&scenarios, &results, &versions(), &[FailOn::Regressions]);
    assert_eq!(only_regressions.exit_code, 1);
    let (s2, r2) = (scenarios[..2].to_vec(), results[..4].to_vec());
    let clean = build(
        &s2,
        &r2,
        &versions(),
        &[FailOn::Leftovers, FailOn::Regressions],
    );
    assert_eq!((clean.verdict, clean.exit_code), (Verdict::Pass, 0));
    let mut errored = r2.clone();
    errored[0].outcome = Err("starting the control plane: etcd exited".into());
    let e = build(&s2, &errored, &versions(), &[FailOn::Leftovers]);
    assert_eq!((e.verdict, e.exit_code), (Verdict::Error, 2));
}

#[test]
fn a_demonstration_that_does_not_reproduce_and_a_failed_step_fail_the_gate() {
    let (scenarios, results) = job();
    let r = build(
        &scenarios,
        &results,
        &versions(),
        &crate::policy::DEFAULT_FAIL_ON,
    );
    let sc = r
        .scenarios
        .iter()
        .find(|s| s.name == "unreproduced")
        .unwrap();
    assert_eq!(sc.verdict, Verdict::Fail);
    let (source, target) = (&sc.runs[0], &sc.runs[1]);
    assert_eq!(
        source.verdict,
        Verdict::Fail,
        "nothing was left: not reproduced"
    );
    assert_eq!(
        source
            .findings
            .iter()
            .map(|f| f.text.as_str())
            .collect::<Vec<_>>(),
        [
            "not reproduced: expected ReplicaSet (webhook-blocked-delete) left behind, found 0 matching"
        ]
    );
    assert!(
        target.findings.iter().any(|f| f.text.starts_with("step 2 (helm uninstall) failed: helm exited 1 (the step expects 0): Error: uninstall: timed out")),
        "{:?}",
        target.findings
    );
    assert!(
        target.findings.iter().all(|f| !f.text.contains("s3cr3t")),
        "redacted: {:?}",
        target.findings
    );
    // Without `unreproduced`, `errors` and `regressions` (helm's exit code differs
    // across versions), the same runs pass: the policy decides.
    let lenient = build(&scenarios, &results, &versions(), &[FailOn::Leftovers]);
    let sc = lenient
        .scenarios
        .iter()
        .find(|s| s.name == "unreproduced")
        .unwrap();
    assert_eq!(sc.verdict, Verdict::Pass);
    assert!(sc.runs[1].findings.iter().all(|f| !f.counted));
    // A kind alone no longer hides everything of that kind: the reason must match too.
    let incident = r
        .scenarios
        .iter()
        .find(|s| s.name == "incident-admission")
        .unwrap();
    assert_eq!(incident.verdict, Verdict::Pass);
    assert!(incident.runs.iter().all(|run| run.findings.is_empty()));
}

#[test]
fn every_format_snapshot() {
    let (scenarios, results) = job();
    let r = build(
        &scenarios,
        &results,
        &versions(),
        &crate::policy::DEFAULT_FAIL_ON,
    );
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!("report.json", render_json(&r));
        insta::assert_snapshot!("report.md", markdown::render(&r));
        insta::assert_snapshot!("junit.xml", junit::render(&r));
        insta::assert_snapshot!("report.html", html::render(&r));
    });
}

/// Validates a report document against the JSON Schema in the repository.
pub(super) fn schema_errors(doc: &serde_json::Value) -> Vec<String> {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../../schema/report.v1.json"))
            .expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    validator
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn report_json_follows_its_schema() {
    let (scenarios, results) = job();
    let r = build(&scenarios, &results, &versions(), &[FailOn::Leftovers]);
    let doc: serde_json::Value = serde_json::from_str(&render_json(&r)).unwrap();
    assert_eq!(schema_errors(&doc), Vec::<String>::new());
    let mut broken = doc.clone();
    broken.as_object_mut().unwrap().remove("verdict");
    broken["scenarios"][1]["runs"][0]["leftovers"][0]["reason"] = "because".into();
    let errors = schema_errors(&broken);
    assert_eq!(errors.len(), 2, "{errors:?}");
}

/// A run whose control plane did not start: the one-line summaries (terminal table,
/// markdown matrix, JUnit message) say why, and the full error keeps the log lines.
#[test]
fn a_control_plane_that_did_not_start_is_summarised_by_its_log() {
    let (scenarios, results) = job();
    let (s2, mut r2) = (scenarios[..2].to_vec(), results[..4].to_vec());
    let clash = r#"E1130 10:11:12.500000   4242 run.go:74] "command failed" err="failed to create listener: failed to listen on 127.0.0.1:43211: listen tcp 127.0.0.1:43211: bind: address already in use""#;
    r2[0].outcome = Err(format!(
        "starting the control plane: kube-apiserver exited during start-up (exit status: 1)\n\
         last lines of /tmp/preflight-baseline-source-x/logs/kube-apiserver-v1.29.15.log:\n\
         \x20 | I1130 10:11:12.001000   4242 server.go:148] Version: v1.29.15\n\
         \x20 | {clash}\n\
         \x20 | I1130 10:11:12.600000   4242 shutdown.go:1] token=s3cr3t"
    ));
    let e = build(&s2, &r2, &versions(), &[FailOn::Leftovers]);
    let run = &e.scenarios[0].runs[0];
    assert_eq!(run.verdict, Verdict::Error);
    assert_eq!(
        run.headline,
        format!(
            "could not run: starting the control plane: kube-apiserver exited during start-up (exit status: 1): {clash}"
        )
    );
    let error = run.error.as_deref().unwrap();
    assert!(
        error.contains(clash) && error.contains("Version: v1.29.15"),
        "{error}"
    );
    assert!(!error.contains("s3cr3t"), "{error}");
    let md = markdown::render(&e);
    assert!(
        md.lines()
            .any(|l| l.starts_with("| `baseline` ") && l.contains("bind: address already in use")),
        "{md}"
    );
    assert!(junit::render(&e).contains("bind: address already in use"));
}

/// Pods left behind after their ReplicaSet was collected: the ReplicaSet's name (with
/// the pod-template-hash, which differs between versions for the same template) is
/// gone by the end, but the run saw it, so both versions name the Pods after the
/// Deployment and nothing reads as a regression.
#[test]
fn pods_of_a_collected_replicaset_have_the_same_identity_on_both_versions() {
    let run = |version: &str, hash: &str| {
        let ns = format!("pf-x-{hash}");
        let rs = obj(
            "ReplicaSet",
            "apps/v1",
            &ns,
            &format!("x-web-{hash}"),
            &format!("rs-{hash}"),
            &[("Deployment", "x-web", &format!("deploy-{hash}"))],
        );
        let pod = obj(
            "Pod",
            "v1",
            &ns,
            &format!("x-web-{hash}-abcde"),
            &format!("pod-{hash}"),
            &[(
                "ReplicaSet",
                &format!("x-web-{hash}"),
                &format!("rs-{hash}"),
            )],
        );
        let mut o = outcome("x", version, &ns, false, 0);
        o.after.objects.push(pod);
        o.seen.insert(rs.uid.clone(), rs);
        let left = crate::verdict::leftovers(&o);
        (o, left)
    };
    let ((so, source), (to, target)) = (run("v1.29.15", "5d4f8c7b9"), run("v1.30.14", "7f9c6d5b4"));
    let pod = |l: &[crate::verdict::Leftover]| {
        l.iter()
            .find(|l| l.kind == "Pod")
            .map(|l| {
                (
                    l.normalized(),
                    l.owner_chain
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>(),
                )
            })
            .unwrap()
    };
    assert_eq!(pod(&source).0, "Pod of ReplicaSet of Deployment x-web");
    assert_eq!(pod(&source).0, pod(&target).0);
    assert_eq!(
        pod(&source).1,
        [
            "ReplicaSet/x-web-5d4f8c7b9 (gone)",
            "Deployment/x-web (gone)"
        ]
    );
    let c = crate::compare::compare(
        &crate::compare::Facts::of(&so, &source),
        &crate::compare::Facts::of(&to, &target),
    );
    assert!(
        c.regressions.is_empty() && c.improvements.is_empty(),
        "identical leftovers are no regression: {c:?}"
    );
}

/// A scenario on a path of three versions: cleaned up on the first, left behind on
/// the second (the hop regresses), cleaned up again on the third (the next hop
/// improves; first against last is the same).
fn path_job() -> (Vec<Scenario>, Vec<RunResult>, Vec<super::VersionInfo>) {
    let s = scenario(
        "name: walk\ndescription: along a path\nchart: {path: charts/preflight-test}\nsteps: [settle: {}]\n",
    );
    let versions = vec![
        super::VersionInfo::new("v1.29.15"),
        super::VersionInfo {
            version: "v1.31.4".into(),
            requested: Some("v1.31".into()),
            substituted: Some("v1.31.4 instead of v1.31.14: the Go module proxy does not serve k8s.io/endpointslice at v0.31.14 (the newest 1.31 patch that builds here)".into()),
        },
        super::VersionInfo::new("v1.32.9"),
    ];
    let run = |at: usize, role: Role, rs: bool, pods: usize| RunResult {
        scenario: "walk".into(),
        role,
        at,
        timings: Default::default(),
        outcome: Ok(outcome(
            "walk",
            &versions[at].version,
            &format!("pf-walk-abcde{at}"),
            rs,
            pods,
        )),
    };
    let results = vec![
        run(0, Role::Source, false, 0),
        run(1, Role::Via, true, 2),
        run(2, Role::Target, false, 0),
    ];
    (vec![s], results, versions)
}

#[test]
fn a_path_compares_each_version_with_the_next_and_the_first_with_the_last() {
    let (scenarios, results, versions) = path_job();
    let r = build(
        &scenarios,
        &results,
        &versions,
        &crate::policy::DEFAULT_FAIL_ON,
    );
    let sc = &r.scenarios[0];
    assert!(
        sc.regressions.is_empty() && sc.improvements.is_empty(),
        "{sc:?}"
    );
    assert_eq!(sc.hops.len(), 2);
    assert_eq!(
        (sc.hops[0].from.as_str(), sc.hops[0].to.as_str()),
        ("v1.29.15", "v1.31.4")
    );
    assert_eq!(sc.hops[0].regressions.len(), 1, "{:?}", sc.hops[0]);
    assert_eq!(sc.hops[1].improvements.len(), 1, "{:?}", sc.hops[1]);
    // A regression on the way fails the gate even when the last version is fine:
    // the cluster runs the middle version for a while.
    assert_eq!(r.verdict, Verdict::Fail);
    assert_eq!(r.summary.regressions, 1);
    assert_eq!(
        (r.regressions[0].from.as_str(), r.regressions[0].to.as_str()),
        ("v1.29.15", "v1.31.4")
    );
    let doc: serde_json::Value = serde_json::from_str(&render_json(&r)).unwrap();
    assert_eq!(schema_errors(&doc), Vec::<String>::new());
    let filters = vec![
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "[time]"),
        (r"pf-walk-[a-z]{5}\d", "pf-walk-[id]"),
    ];
    insta::with_settings!({filters => filters}, {
        insta::assert_snapshot!("path.report.json", render_json(&r));
        insta::assert_snapshot!("path.report.md", markdown::render(&r));
        insta::assert_snapshot!("path.junit.xml", junit::render(&r));
        insta::assert_snapshot!("path.report.html", html::render(&r));
    });
}

/// The report that `merge-reports` makes of `results` recorded in `shards` shards (run
/// `n` in shard `n % shards`), each written as JSON and read back.
pub(super) fn through_shards(
    scenarios: &[Scenario],
    results: Vec<RunResult>,
    fail_on: &[FailOn],
    shards: usize,
) -> super::Report {
    let indexed: Vec<(usize, RunResult)> = results.into_iter().enumerate().collect();
    let dirs: Vec<tempfile::TempDir> = (0..shards).map(|_| tempfile::tempdir().unwrap()).collect();
    for (i, dir) in dirs.iter().enumerate() {
        let mine: Vec<(usize, RunResult)> = indexed
            .iter()
            .filter(|(n, _)| n % shards == i)
            .cloned()
            .collect();
        super::shard::ShardFile {
            schema: super::shard::SCHEMA.into(),
            shard: i + 1,
            of: shards,
            planned: indexed.len(),
            provider: "local".into(),
            versions: versions(),
            fail_on: fail_on.to_vec(),
            noise: crate::snapshot::Noise::default().0,
            scenarios: scenarios.iter().map(super::ScenarioMeta::of).collect(),
            records: super::records(scenarios, &mine, &versions(), fail_on),
        }
        .write(dir.path())
        .unwrap();
    }
    let paths: Vec<std::path::PathBuf> = dirs.iter().map(|d| d.path().to_path_buf()).collect();
    super::shard::merge(&paths).unwrap().report()
}

#[test]
fn runs_written_and_read_back_give_the_same_report() {
    let (scenarios, results) = job();
    let fail_on = crate::policy::DEFAULT_FAIL_ON.to_vec();
    let direct = build(&scenarios, &results, &versions(), &fail_on);
    // Two shards, each recorded alone, written as JSON and read back.
    let merged = through_shards(&scenarios, results, &fail_on, 2);
    let strip = |r: &super::Report| {
        let mut v: serde_json::Value = serde_json::from_str(&render_json(r)).unwrap();
        v["generatedAt"] = serde_json::Value::Null;
        v
    };
    assert_eq!(strip(&merged), strip(&direct));
    assert_eq!(markdown::render(&merged), markdown::render(&direct));
}
