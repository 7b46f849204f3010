//! The embedded scenarios produce the outcomes they describe, on real control planes.

use preflight::cluster::{Cluster, LocalCluster, LocalConfig};
use preflight::components::Version;
use preflight::exercise::dry_run::{DryRunOutcome, GC_USER};
use preflight::exercise::{self, Outcome};
use preflight::scenario;
use preflight::verdict::{self, Leftover, Reason};

use crate::common;

async fn run(
    name: &str,
    start: &Version,
    upgrade_to: Option<&Version>,
) -> (Outcome, Vec<Leftover>) {
    preflight::init_crypto();
    let s = scenario::embedded_named(name).unwrap();
    let mut config = LocalConfig::new(name, common::components(start));
    config.ready_timeout = std::time::Duration::from_secs(90);
    let mut cluster = Cluster::Local(Box::new(LocalCluster::start(config).await.unwrap()));
    let opts = exercise::Options {
        dir: cluster.dir().join("run"),
        upgrade_to: upgrade_to.map(common::components).into_iter().collect(),
        progress: preflight::progress::Progress::quiet(),
        run_id: "t".into(),
        noise: Default::default(),
    };
    let outcome = exercise::run(&mut cluster, &s, &opts).await.unwrap();
    let left = verdict::leftovers(&outcome);
    (outcome, left)
}

fn failures(left: &[Leftover]) -> Vec<&Leftover> {
    left.iter().filter(|l| l.reason.is_failure()).collect()
}

fn count(left: &[&Leftover], kind: &str, reason: Reason) -> usize {
    left.iter()
        .filter(|l| l.kind == kind && l.reason == reason)
        .count()
}

fn helm_exits(o: &Outcome) -> Vec<i32> {
    o.steps
        .iter()
        .filter_map(|s| s.helm.as_ref().map(|h| h.exit_code))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn baseline_leaves_only_what_helm_keeps_by_design() {
    for version in common::versions() {
        let (o, left) = run("baseline", &version, None).await;
        assert!(
            o.steps.iter().all(|s| s.error.is_none()),
            "{version}: {:#?}",
            o.steps
        );
        assert!(
            helm_exits(&o).iter().all(|c| *c == 0),
            "{version}: {:?}",
            helm_exits(&o)
        );
        assert!(
            failures(&left).is_empty(),
            "{version}: unexpected leftovers {:#?}",
            failures(&left)
        );
        let kept: Vec<_> = left.iter().map(|l| (l.kind.as_str(), l.reason)).collect();
        for expected in [
            ("PersistentVolumeClaim", Reason::KeptByDesign),
            ("CustomResourceDefinition", Reason::KeptByDesign),
            ("ConfigMap", Reason::KeptByPolicy),
            ("Widget", Reason::KeptByPolicy),
        ] {
            assert!(
                kept.contains(&expected),
                "{version}: expected {expected:?} among {kept:?}"
            );
        }
        // The healthy webhooks saw the lifecycle, including the garbage collector's deletes.
        assert!(
            o.webhook_requests
                .iter()
                .any(|r| r.operation == "DELETE" && r.user.as_deref() == Some(GC_USER)),
            "{version}"
        );
        assert!(
            o.webhook_requests.iter().any(|r| r.operation == "CONVERT"),
            "{version}: conversion was exercised"
        );
        let dry = o.steps[0]
            .dry_run
            .as_ref()
            .expect("server-side dry run of the install");
        assert!(
            dry.objects
                .iter()
                .any(|x| x.kind == "Deployment" && x.outcome == DryRunOutcome::Admitted),
            "{version}: {dry:?}"
        );
        assert!(
            o.webhook_requests.iter().any(|r| r.dry_run),
            "{version}: dry-run requests reach the webhooks"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn incident_admission_helm_says_success_and_replicasets_and_pods_stay() {
    for version in common::versions() {
        let (o, left) = run("incident-admission", &version, None).await;
        assert_eq!(
            helm_exits(&o),
            [0, 0],
            "{version}: helm install and uninstall both exit 0"
        );
        let f = failures(&left);
        assert_eq!(
            count(&f, "ReplicaSet", Reason::WebhookBlockedDelete),
            1,
            "{version}: {f:#?}"
        );
        assert!(
            count(&f, "Pod", Reason::WebhookBlockedDelete) >= 2,
            "{version}: {f:#?}"
        );
        assert!(
            f.iter().all(|l| l.reason == Reason::WebhookBlockedDelete),
            "{version}: {f:#?}"
        );
        let rs = f.iter().find(|l| l.kind == "ReplicaSet").unwrap();
        assert!(
            rs.owner_chain[0].kind == "Deployment"
                && rs.owner_chain[0].name.starts_with("incident-admission-web")
                && rs.owner_chain[0].gone(),
            "{rs:?}"
        );
        assert!(
            rs.evidence.iter().any(|e| matches!(
                e,
                preflight::evidence::Evidence::GcCouldNotDelete { error, .. }
                    if error.contains("delete-guard")
            )),
            "{rs:#?}"
        );

        // The server-side dry run, before anything was deleted, already showed that the
        // garbage collector's DELETEs would fail.
        let (i, dry) = o
            .steps
            .iter()
            .enumerate()
            .find_map(|(i, s)| s.dry_run.as_ref().map(|d| (i, d)))
            .unwrap();
        let uninstall = o
            .steps
            .iter()
            .position(|s| s.title == "helm uninstall")
            .unwrap();
        assert!(i < uninstall);
        let refused: Vec<_> = dry.refused().collect();
        assert!(
            refused.iter().any(|x| x.kind == "ReplicaSet"
                && x.as_user == GC_USER
                && x.outcome == DryRunOutcome::WebhookFailed
                && x.webhook
                    .as_deref()
                    .is_some_and(|w| w.starts_with("delete-guard."))),
            "{version}: {refused:#?}"
        );
        assert!(
            dry.objects.iter().any(|x| x.kind == "Deployment"
                && x.as_user == "helm"
                && x.outcome == DryRunOutcome::Admitted),
            "{version}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn incident_conversion_stalls_the_garbage_collector_up_to_1_31() {
    for version in common::versions() {
        assert!(version.minor <= 31);
        let (o, left) = run("incident-conversion", &version, None).await;
        assert_eq!(helm_exits(&o), [0, 0], "{version}");
        let f = failures(&left);
        assert_eq!(
            count(&f, "ReplicaSet", Reason::GarbageCollectorStalled),
            1,
            "{version}: {f:#?}"
        );
        assert!(
            count(&f, "Pod", Reason::GarbageCollectorStalled) >= 2,
            "{version}: {f:#?}"
        );
        assert!(
            o.after
                .unlistable
                .iter()
                .any(|u| u.resource == "preflight.dev/widgets"),
            "{version}: widgets cannot be listed"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn incident_conversion_upgrade_installs_on_source_and_orphans_on_target() {
    let [source, target] = common::versions();
    let (o, left) = run("incident-conversion-upgrade", &source, Some(&target)).await;
    assert_eq!(o.start_version, source.to_string());
    assert_eq!(o.end_version, target.to_string());
    let uninstall = o
        .steps
        .iter()
        .find(|s| s.title == "helm uninstall")
        .unwrap();
    assert_eq!(
        uninstall.version,
        target.to_string(),
        "uninstalled on the target"
    );
    assert_eq!(uninstall.helm.as_ref().unwrap().exit_code, 0);
    let f = failures(&left);
    assert_eq!(
        count(&f, "ReplicaSet", Reason::GarbageCollectorStalled),
        1,
        "{f:#?}"
    );
}
