//! Verdicts at scale: evidence read from long logs, and runs that span several
//! namespaces with the same names in each (a twin's releases).

use std::collections::BTreeMap;

use crate::control_plane_log::evidence_from;
use crate::evidence::Evidence;
use crate::record::Outcome;
use crate::snapshot::{ListedType, ObjectRecord, Owner, Snapshot};
use crate::verdict::{Reason, leftovers};

fn object(
    kind: &str,
    ns: &str,
    name: &str,
    uid: &str,
    owner: Option<(&str, &str, &str)>,
) -> ObjectRecord {
    let apps = matches!(kind, "Deployment" | "ReplicaSet");
    ObjectRecord {
        api_version: if apps { "apps/v1" } else { "v1" }.into(),
        kind: kind.into(),
        resource: format!(
            "{}/{}s",
            if apps { "apps" } else { "core" },
            kind.to_lowercase()
        ),
        namespace: Some(ns.into()),
        name: name.into(),
        uid: uid.into(),
        resource_version: String::new(),
        owners: owner
            .into_iter()
            .map(|(k, n, u)| Owner {
                api_version: if k == "Pod" { "v1" } else { "apps/v1" }.into(),
                kind: k.into(),
                name: n.into(),
                uid: u.into(),
                controller: true,
            })
            .collect(),
        finalizers: Vec::new(),
        deletion_timestamp: None,
        labels: BTreeMap::new(),
        helm_annotations: BTreeMap::new(),
    }
}

fn listed() -> Vec<ListedType> {
    [("apps", "Deployment"), ("apps", "ReplicaSet"), ("", "Pod")]
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

/// A run in `namespaces` that ends with `after`, with the evidence read from `kcm`
/// (the controller manager's log) and `audit` (the audit log).
fn run(
    namespaces: &[&str],
    after: Vec<ObjectRecord>,
    kcm: String,
    audit: Option<String>,
) -> Outcome {
    let snap = |objects| Snapshot {
        objects,
        listed: listed(),
        types: 3,
        ..Default::default()
    };
    Outcome {
        scenario: "scale".into(),
        namespace: namespaces[0].into(),
        other_namespaces: namespaces[1..].iter().map(|n| n.to_string()).collect(),
        release: "web".into(),
        start_version: "v1.30.14".into(),
        end_version: "v1.30.14".into(),
        steps: Vec::new(),
        before: snap(Vec::new()),
        after: snap(after),
        webhook_requests: Vec::new(),
        manifest: String::new(),
        objects_after_step: Vec::new(),
        seen: BTreeMap::new(),
        log_evidence: evidence_from(&[("kube-controller-manager", kcm)], audit.as_deref()),
        teardown_errors: Vec::new(),
        substitutions: Vec::new(),
    }
}

/// The controller manager's line for a DELETE of `kind ns/name` that a webhook refused.
fn gc_refused(kind: &str, ns: &str, name: &str) -> String {
    format!(
        r#"E1203 07:00:00.000000   42 garbagecollector.go:360] error syncing item &garbagecollector.node{{identity:garbagecollector.objectReference{{OwnerReference:v1.OwnerReference{{APIVersion:"apps/v1", Kind:"{kind}", Name:"{name}", UID:"u"}}, Namespace:"{ns}"}}}}: Internal error occurred: failed calling webhook "delete-guard.preflight.dev": connection refused"#
    )
}

/// An audit event of the garbage collector's DELETE of pod `ns/name`, refused.
fn audit_refused(ns: &str, name: &str) -> String {
    format!(
        r#"{{"kind":"Event","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/{ns}/pods/{name}","verb":"delete","user":{{"username":"system:serviceaccount:kube-system:generic-garbage-collector"}},"objectRef":{{"resource":"pods","namespace":"{ns}","name":"{name}","apiVersion":"v1"}},"responseStatus":{{"code":500,"message":"Internal error occurred: failed calling webhook \"delete-guard.preflight.dev\""}}}}"#
    )
}

/// 500 refused DELETEs of other objects (a twin with hundreds of blocked Pods).
fn many_refusals() -> (Vec<String>, Vec<String>) {
    (0..500)
        .map(|i| {
            (
                gc_refused("Pod", "pf-other", &format!("api-{i}")),
                audit_refused("pf-other", &format!("api-{i}")),
            )
        })
        .unzip()
}

/// A ReplicaSet whose Deployment is gone.
fn rs_record() -> ObjectRecord {
    object(
        "ReplicaSet",
        "pf-a",
        "web-5d4",
        "r1",
        Some(("Deployment", "web", "gone")),
    )
}

#[test]
fn a_stall_logged_before_hundreds_of_refusals_still_explains_an_orphan() {
    let (gc, audit) = many_refusals();
    let kcm = std::iter::once(format!(
        "I1203 07:00:00.000000   42 shared_informer.go:311] {}",
        crate::gc::GC_WAITING
    ))
    .chain(gc)
    .collect::<Vec<_>>()
    .join("\n");
    let rs = object(
        "ReplicaSet",
        "pf-a",
        "web-5d4",
        "r1",
        Some(("Deployment", "web", "gone")),
    );
    let o = run(&["pf-a"], vec![rs], kcm, Some(audit.join("\n")));
    let left = leftovers(&o);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].reason, Reason::GarbageCollectorStalled, "{left:?}");
}

#[test]
fn an_objects_own_refusal_before_hundreds_of_others_still_explains_it() {
    let (gc, audit) = many_refusals();
    let kcm = std::iter::once(gc_refused("ReplicaSet", "pf-a", "web-5d4"))
        .chain(gc)
        .collect::<Vec<_>>()
        .join("\n");
    let rs = object(
        "ReplicaSet",
        "pf-a",
        "web-5d4",
        "r1",
        Some(("Deployment", "web", "gone")),
    );
    let o = run(&["pf-a"], vec![rs], kcm, Some(audit.join("\n")));
    let left = leftovers(&o);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].reason, Reason::WebhookBlockedDelete, "{left:?}");
    let named: Vec<_> = left[0]
        .evidence
        .iter()
        .filter_map(Evidence::object)
        .collect();
    assert!(
        !named.is_empty() && named.iter().all(|r| r.names(&rs_record())),
        "{left:?}"
    );
}

#[test]
fn the_same_names_in_two_namespaces_keep_their_own_causes() {
    // pf-a: the garbage collector's DELETE of the ReplicaSet was refused; its Pods stay
    // with it. pf-b: the same release, uninstalled with `--cascade orphan`: the
    // ReplicaSet lost its owner reference and nothing asked to delete it or its Pods.
    let mut after = vec![
        object(
            "ReplicaSet",
            "pf-a",
            "web-5d4",
            "ra",
            Some(("Deployment", "web", "da")),
        ),
        object("ReplicaSet", "pf-b", "web-5d4", "rb", None),
    ];
    for (ns, rs) in [("pf-a", "ra"), ("pf-b", "rb")] {
        for i in 0..2 {
            after.push(object(
                "Pod",
                ns,
                &format!("web-5d4-{i}"),
                &format!("{rs}-p{i}"),
                Some(("ReplicaSet", "web-5d4", rs)),
            ));
        }
    }
    let kcm = gc_refused("ReplicaSet", "pf-a", "web-5d4");
    let o = run(&["pf-a", "pf-b"], after, kcm, None);
    let left = leftovers(&o);
    assert_eq!(left.len(), 6, "{left:?}");
    for l in &left {
        let ns = l.namespace.as_deref().unwrap();
        // As the reports render it.
        let text: Vec<String> = l.evidence.iter().map(ToString::to_string).collect();
        if ns == "pf-a" {
            assert_eq!(l.reason, Reason::WebhookBlockedDelete, "{l:?}");
            assert!(
                text.iter()
                    .any(|t| t.contains("could not delete ReplicaSet pf-a/web-5d4")),
                "{text:?}"
            );
        } else {
            assert_eq!(l.reason, Reason::NotDeleted, "{l:?}");
            assert!(
                text.iter().all(|t| !t.contains("pf-a")),
                "pf-a's cause in pf-b: {text:?}"
            );
            assert!(
                l.evidence.iter().all(|e| !matches!(
                    e,
                    Evidence::OwnerBlocked { .. } | Evidence::OwnerStays { .. }
                )),
                "{l:?}"
            );
        }
    }
}

#[test]
fn stall_lines_repeated_for_an_hour_count_once_and_a_later_sync_ends_the_stall() {
    let waiting = |t: usize| {
        format!(
            "I1203 07:{:02}:{:02}.000000   42 shared_informer.go:311] {}",
            t / 60 % 60,
            t % 60,
            crate::gc::GC_WAITING
        )
    };
    let failing = |t: usize| {
        format!(
            "E1203 07:{:02}:{:02}.000000   42 garbagecollector.go:245] timed out waiting for dependency graph builder sync during GC sync",
            t / 60 % 60,
            t % 60
        )
    };
    let stalled: Vec<String> = std::iter::once(waiting(0))
        .chain((1..500).map(failing))
        .collect();
    let o = run(&["pf-a"], vec![rs_record()], stalled.join("\n"), None);
    let left = leftovers(&o);
    assert_eq!(left[0].reason, Reason::GarbageCollectorStalled, "{left:?}");
    assert_eq!(
        left[0]
            .evidence
            .iter()
            .map(Evidence::source)
            .collect::<Vec<_>>(),
        ["gc-never-synced", "log-line"],
        "one line per distinct message: {left:?}"
    );
    // Synced after the last wait (a restart that recovered): no stall from the log.
    let recovered = format!(
        "{}\nI1203 08:00:00.000000   42 shared_informer.go:318] {}",
        waiting(0),
        crate::gc::GC_SYNCED
    );
    let o = run(&["pf-a"], vec![rs_record()], recovered, None);
    assert_eq!(leftovers(&o)[0].reason, Reason::OwnerGone);
}

#[test]
fn reports_cut_what_they_show_per_source_and_say_how_much_more_there_was() {
    let (gc, audit) = many_refusals();
    let kcm = std::iter::once(gc_refused("ReplicaSet", "pf-a", "web-5d4"))
        .chain(gc)
        .collect::<Vec<_>>()
        .join("\n");
    // The object's own refusals: 20 in the audit log, among 500 of others.
    let own: Vec<String> = (0..20)
        .map(|_| {
            audit_refused("pf-a", "web-5d4")
                .replace("pods", "replicasets")
                .replace("\"v1\"", "\"apps/v1\"")
        })
        .collect();
    let audit = own.iter().chain(&audit).cloned().collect::<Vec<_>>();
    let o = run(&["pf-a"], vec![rs_record()], kcm, Some(audit.join("\n")));
    let left = leftovers(&o);
    assert_eq!(left[0].reason, Reason::WebhookBlockedDelete);
    assert_eq!(left[0].evidence.len(), 21, "the verdict keeps every piece");
    let (lines, records) = crate::report::shown_evidence(&left[0].evidence);
    assert_eq!(records.len(), 4, "1 GC line and 3 of the 20 audit events");
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[4], "and 17 more pieces of evidence like these");
    assert!(
        lines[1].starts_with("kube-apiserver audit: system:serviceaccount:kube-system:generic-garbage-collector DELETE replicasets pf-a/web-5d4: 500"),
        "{lines:#?}"
    );
}

#[test]
fn leftovers_and_their_reports_from_an_older_runs_json_read_back() {
    // As a runs.json written before evidence had types and leftovers had uids.
    let leftover = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "namespace": "pf-a", "name": "web-1",
        "reason": "webhook-blocked-delete",
        "ownerChain": ["ReplicaSet/web-5d4 (gone)"],
        "evidence": ["kube-apiserver audit: gc DELETE pods pf-a/web-1: 500 no"]
    });
    let l: crate::verdict::Leftover = serde_json::from_value(leftover.clone()).unwrap();
    assert_eq!(l.uid, "");
    assert_eq!(l.owner_chain[0].key(), "ReplicaSet/web-5d4");
    assert_eq!(
        l.evidence[0].to_string(),
        "kube-apiserver audit: gc DELETE pods pf-a/web-1: 500 no"
    );
    let mut report = leftover;
    for (k, v) in [
        ("reasonText", serde_json::json!("blocked")),
        ("unexpected", serde_json::json!(true)),
        ("expected", serde_json::json!(false)),
        ("normalized", serde_json::json!("Pod of ReplicaSet web-5d4")),
    ] {
        report[k] = v;
    }
    let r: crate::report::LeftoverReport = serde_json::from_value(report).unwrap();
    assert!(r.evidence_records.is_empty());
    assert_eq!(r.evidence.len(), 1);
}

#[test]
fn a_roll_leaves_nothing_behind_while_its_releases_stay_and_nodes_are_never_the_releases() {
    use crate::helm::{HelmCall, HelmRun};
    use crate::record::StepRecord;
    use crate::scenario::{HelmAction, HelmDryRun};
    let step = |index: usize, action: Option<HelmAction>, rolls: bool| StepRecord {
        index,
        title: String::new(),
        version: "v1.30.14".into(),
        helm: action.map(|action| HelmRun {
            command: String::new(),
            exit_code: 0,
            stdout: String::new(),
            stderr: String::new(),
            duration_ms: 0,
            step: Some(HelmCall {
                action,
                dry_run: HelmDryRun::None,
                release: "web".into(),
            }),
        }),
        dry_run: None,
        settle: None,
        rollout: rolls.then(|| crate::rollout::RolloutRecord {
            from: "v1.29.15".into(),
            to: "v1.30.14".into(),
            max_surge: crate::rollout::MaxSurge::Count(1),
            drain_timeout: std::time::Duration::from_secs(1800),
            undrainable: crate::rollout::Undrainable::Schedule,
            pools: Vec::new(),
        }),
        error: None,
        duration_ms: 0,
    };
    let mut node = object("Node", "x", "aks-user-2", "n1", None);
    node.namespace = None;
    let after = vec![object("Deployment", "pf-a", "web", "d1", None), node];
    let mut o = run(&["pf-a"], after, String::new(), None);
    o.steps = vec![
        step(0, Some(HelmAction::Install), false),
        step(1, None, true),
    ];
    assert!(
        leftovers(&o).is_empty(),
        "installed and rolled: nothing left behind"
    );
    // Uninstalled after the roll: what stays is judged, the joined node is not the
    // release's.
    o.steps.push(step(2, Some(HelmAction::Uninstall), false));
    let left: Vec<String> = leftovers(&o).iter().map(|l| l.kind.clone()).collect();
    assert_eq!(left, ["Deployment"]);
    // No roll: an install-only run is judged as before.
    o.steps = vec![step(0, Some(HelmAction::Install), false)];
    assert_eq!(leftovers(&o).len(), 1);
}
