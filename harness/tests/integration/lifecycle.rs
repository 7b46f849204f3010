//! The guard's life: in-place upgrade, controller-manager restart, and that nothing
//! survives the harness, however it ends.

use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common;

#[tokio::test(flavor = "multi_thread")]
async fn in_place_upgrade_keeps_objects_and_the_garbage_collector_works_on_the_target() {
    let [source, target] = common::versions();
    let mut cluster = common::cluster("upgrade", &source).await;
    let client = cluster.client();
    preflight::smoke::ensure_namespace(&client, "keep")
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client, "keep");
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "created-on-source"}, "data": {"version": source.to_string()}
    }))
    .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let etcd_pid_before = cluster.pids()[0];

    cluster.upgrade(common::components(&target)).await.unwrap();
    assert_eq!(cluster.version(), &target);
    let client = cluster.client();
    let info = client.apiserver_version().await.unwrap();
    assert_eq!(
        info.git_version,
        target.to_string(),
        "the target apiserver answers"
    );
    assert_eq!(
        cluster.pids()[0],
        etcd_pid_before,
        "etcd (and its data) survive the upgrade"
    );

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "keep");
    let read = cms.get("created-on-source").await.unwrap();
    assert_eq!(read.data.unwrap()["version"], source.to_string());

    let outcome = preflight::smoke::run(&client, "after-upgrade", "web", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        outcome.clean(),
        "GC on the target after upgrade left {:?}",
        outcome.leftovers
    );
    assert!(
        cluster
            .log_path("kube-apiserver")
            .ends_with(format!("kube-apiserver-{target}.log"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn restarting_the_controller_manager_keeps_garbage_collection_working() {
    let version = &common::versions()[1];
    let mut cluster = common::cluster("restart", version).await;
    let before = cluster.pids();
    cluster.restart_controller_manager().await.unwrap();
    let after = cluster.pids();
    assert_eq!(before[..2], after[..2], "etcd and apiserver keep running");
    assert_ne!(before[2], after[2], "a new controller manager process");
    assert!(
        common::process_gone(before[2]),
        "the old controller manager is gone"
    );
    let outcome =
        preflight::smoke::run(&cluster.client(), "restart", "web", Duration::from_secs(60))
            .await
            .unwrap();
    assert!(outcome.clean(), "{:?}", outcome.leftovers);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restored_state_is_the_saved_one_on_fresh_components() {
    let version = &common::versions()[1];
    let mut cluster = common::cluster("restore", version).await;
    let client = cluster.client();
    preflight::smoke::ensure_namespace(&client, "keep")
        .await
        .unwrap();
    let cm = |name: &str| -> ConfigMap {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}
        }))
        .unwrap()
    };
    let cms: Api<ConfigMap> = Api::namespaced(client, "keep");
    let saved_uid = cms
        .create(&PostParams::default(), &cm("saved"))
        .await
        .unwrap()
        .metadata
        .uid;
    let before = cluster.pids();
    let state = cluster.save_state("one").unwrap();
    assert!(cluster.pids().is_empty(), "saving stops every component");
    for p in &before {
        assert!(common::process_gone(*p), "component {p} stopped");
    }

    for label in ["first", "second"] {
        cluster.restore_state(&state, label).await.unwrap();
        let pids = cluster.pids();
        assert_eq!(pids.len(), 3, "etcd, apiserver and controller manager run");
        assert!(pids.iter().all(|p| !before.contains(p)), "fresh processes");
        let cms: Api<ConfigMap> = Api::namespaced(cluster.client(), "keep");
        let got = cms.get_opt("saved").await.unwrap().expect("saved is back");
        assert_eq!(got.metadata.uid, saved_uid, "the same object, not a copy");
        assert!(
            cms.get_opt("changed-later").await.unwrap().is_none(),
            "{label}: what changed after the save is gone"
        );
        cms.delete("saved", &Default::default()).await.unwrap();
        cms.create(&PostParams::default(), &cm("changed-later"))
            .await
            .unwrap();
        // The logs of what ran before the restore are kept apart from the new ones.
        assert!(
            cluster
                .dir()
                .join("history")
                .join(format!("before-{label}"))
                .join("logs")
                .is_dir()
        );
        let log = std::fs::read_to_string(cluster.log_path("kube-apiserver")).unwrap();
        assert!(!log.is_empty(), "the restored apiserver logs afresh");
    }
    // The garbage collector of the restored control plane works.
    let outcome = preflight::smoke::run(
        &cluster.client(),
        "restored",
        "web",
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert!(outcome.clean(), "{:?}", outcome.leftovers);
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_the_guard_stops_every_process_and_removes_the_directory() {
    let version = &common::versions()[1];
    let cluster = common::cluster("drop", version).await;
    let pids = cluster.pids();
    let dir = cluster.dir().to_path_buf();
    assert_eq!(pids.len(), 3);
    assert!(dir.join("pki/sa.key").exists());
    drop(cluster);
    for pid in pids {
        assert!(common::process_gone(pid), "process {pid} survived the drop");
    }
    assert!(!dir.exists(), "{} should be removed", dir.display());
}

/// Starts `preflight run`, waits until its control planes are up, sends `signal` and
/// checks that every component process and every cluster directory disappears.
async fn signal_mid_run_leaves_nothing(signal: Signal) {
    let mut child = Command::new(common::preflight_bin())
        .args(["run", "incident-admission"])
        .env("CI", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let harness = child.id();
    // Components are children of the harness: find its kube-apiservers.
    let mut components = Vec::new();
    let up = common::eventually(Duration::from_secs(120), || {
        components = common::processes_mentioning("--etcd-servers=")
            .into_iter()
            .filter(|(pid, _)| common::parent_of(*pid) == Some(harness))
            .collect();
        components.len() == 2
    })
    .await;
    assert!(up, "the harness never started two apiservers");
    let dirs: Vec<String> = components
        .iter()
        .filter_map(|(_, cmd)| {
            let arg = cmd.split(' ').find(|a| a.starts_with("--cert-dir="))?;
            Some(
                arg.trim_start_matches("--cert-dir=")
                    .trim_end_matches("/pki")
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(dirs.len(), 2);

    kill(Pid::from_raw(harness as i32), signal).unwrap();
    let _ = child.wait();
    let all_gone = common::eventually(Duration::from_secs(30), || {
        dirs.iter()
            .all(|d| common::processes_mentioning(d).is_empty())
    })
    .await;
    assert!(
        all_gone,
        "after {signal}: left running: {:?}",
        dirs.iter()
            .flat_map(|d| common::processes_mentioning(d))
            .collect::<Vec<_>>()
    );
    let removed = common::eventually(Duration::from_secs(10), || {
        dirs.iter().all(|d| !std::path::Path::new(d).exists())
    })
    .await;
    assert!(
        removed,
        "after {signal}: cluster directories remain: {dirs:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_harness_with_sigkill_leaves_no_component_behind() {
    signal_mid_run_leaves_nothing(Signal::SIGKILL).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_tears_down_in_order() {
    signal_mid_run_leaves_nothing(Signal::SIGTERM).await;
}
