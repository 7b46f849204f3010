//! Bad input gets one clear message naming what failed, and nothing is left running.

use std::net::TcpListener;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::time::Duration;

use preflight::cluster::local::Ports;
use preflight::cluster::{LocalCluster, LocalConfig};
use preflight::components::{self, SourceKind, Version};
use preflight::errors::{ClusterError, ComponentsError};
use preflight::progress::Progress;

use crate::common;

fn assert_nothing_left(base: &std::path::Path) {
    let left: Vec<_> = std::fs::read_dir(base)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
    let procs = common::processes_mentioning(&base.display().to_string());
    assert!(procs.is_empty(), "processes left running: {procs:?}");
}

#[test]
fn unknown_version_is_named() {
    let cache = tempfile::tempdir().unwrap();
    let mut opts = components::Options::from_env(Progress::quiet());
    opts.cache_dir = cache.path().to_path_buf();
    opts.source = SourceKind::Build;
    let err = components::ensure(&Version::new(1, 99, 0), &opts).unwrap_err();
    assert!(
        matches!(err, ComponentsError::UnknownVersion { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("Kubernetes v1.99.0 is not published"),
        "{err}"
    );
    assert!(!cache.path().join("bin/kubernetes-v1.99.0").exists());
}

#[test]
fn no_go_and_no_network_says_what_to_install() {
    let cache = tempfile::tempdir().unwrap();
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut opts = components::Options::from_env(Progress::quiet());
    opts.cache_dir = cache.path().to_path_buf();
    opts.go = "/nonexistent/go".into();
    let base = format!("http://127.0.0.1:{closed}");
    opts.mirrors = components::download::Mirrors {
        kubernetes: base.clone(),
        etcd: base.clone(),
        helm: base,
    };
    let err = components::ensure(&Version::new(1, 30, 14), &opts).unwrap_err();
    assert!(matches!(err, ComponentsError::NoSource { .. }), "{err}");
    assert!(err.to_string().contains("no Go toolchain on PATH"), "{err}");
    let bin = cache.path().join("bin");
    let left = std::fs::read_dir(&bin)
        .map(|d| d.flatten().count())
        .unwrap_or(0);
    assert_eq!(left, 0, "nothing half-installed in {}", bin.display());
}

#[test]
fn bin_dir_without_a_binary_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = components::Options::from_env(Progress::quiet());
    opts.bin_dir = Some(dir.path().to_path_buf());
    let err = components::ensure(&Version::new(1, 30, 14), &opts).unwrap_err();
    assert!(
        err.to_string()
            .contains("has no executable `kube-apiserver`"),
        "{err}"
    );
}

#[test]
fn bin_dir_binaries_must_be_the_requested_version() {
    let [source, target] = common::versions();
    let real = common::components(&target);
    let root = tempfile::tempdir().unwrap();
    let one = root.path().join(target.to_string());
    std::fs::create_dir_all(&one).unwrap();
    for (name, path) in [
        ("kube-apiserver", &real.kube_apiserver),
        ("kube-controller-manager", &real.kube_controller_manager),
        ("etcd", &real.etcd),
        ("helm", &real.helm),
    ] {
        symlink(path, one.join(name)).unwrap();
    }
    let mut opts = components::Options::from_env(Progress::quiet());
    // One directory for both versions: the source would be the target's binaries.
    opts.bin_dir = Some(one.clone());
    assert!(components::ensure(&target, &opts).is_ok());
    let err = components::ensure(&source, &opts).unwrap_err();
    assert!(matches!(err, ComponentsError::WrongVersion { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("kube-apiserver says it is v1.30.14, but the run needs v1.29.15"),
        "{msg}"
    );
    // `{version}` picks one directory per version.
    opts.bin_dir = Some(root.path().join("{version}"));
    let comps = components::ensure(&target, &opts).unwrap();
    assert_eq!(comps.kube_apiserver, one.join("kube-apiserver"));
    let err = components::ensure(&source, &opts).unwrap_err();
    assert!(
        err.to_string()
            .contains("has no executable `kube-apiserver`"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn busy_port_is_reported_with_the_components_log() {
    preflight::init_crypto();
    let version = &common::versions()[1];
    let base = tempfile::tempdir().unwrap();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut ports = Ports::free().unwrap();
    ports.etcd_client = busy.local_addr().unwrap().port();
    let mut config = LocalConfig::new("busy", common::components(version));
    config.base_dir = Some(base.path().to_path_buf());
    config.ports = Some(ports);
    config.ready_timeout = Duration::from_secs(30);
    let err = LocalCluster::start(config).await.unwrap_err();
    assert!(matches!(err, ClusterError::ComponentExited { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.starts_with("etcd exited during start-up"), "{msg}");
    assert!(msg.contains("address already in use"), "{msg}");
    assert_nothing_left(base.path());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_binary_that_exits_at_start_up_is_reported_and_the_rest_is_stopped() {
    preflight::init_crypto();
    let version = &common::versions()[1];
    let real = common::components(version);
    let bins = tempfile::tempdir().unwrap();
    for (name, path) in [
        ("etcd", &real.etcd),
        ("kube-controller-manager", &real.kube_controller_manager),
        ("helm", &real.helm),
    ] {
        symlink(path, bins.path().join(name)).unwrap();
    }
    let fake = bins.path().join("kube-apiserver");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\n[ \"$1\" = --version ] && {{ echo 'Kubernetes {version}'; exit 0; }}\necho 'fake kube-apiserver: refusing to start' >&2\nexit 3\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut opts = components::Options::from_env(Progress::quiet());
    opts.bin_dir = Some(bins.path().to_path_buf());
    let comps = components::ensure(version, &opts).unwrap();
    let base = tempfile::tempdir().unwrap();
    let mut config = LocalConfig::new("exits", comps);
    config.base_dir = Some(base.path().to_path_buf());
    let err = LocalCluster::start(config).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("kube-apiserver exited during start-up"),
        "{msg}"
    );
    assert!(msg.contains("exit status: 3"), "{msg}");
    assert!(msg.contains("refusing to start"), "{msg}");
    assert_nothing_left(base.path());
}

/// `preflight rehearse` cordons and drains nodes: it refuses any cluster it does not
/// create, and bad flags are named, all before anything starts.
#[test]
fn rehearse_refuses_clusters_it_does_not_own_and_names_bad_flags() {
    let twin = tempfile::tempdir().unwrap();
    let dir = twin.path().to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (
            &["--provider", "kubeconfig"],
            "refuses --provider kubeconfig: it cordons and drains nodes",
        ),
        (&["--provider", "local"], "needs nodes with real kubelets"),
        (
            &["--max-surge", "0%"],
            "--max-surge: `0%` is not a max surge",
        ),
        (
            &["--drain-timeout", "soon"],
            "invalid value for --drain-timeout: `soon`",
        ),
        (
            &["--undrainable-node-behavior", "wait"],
            "--undrainable-node-behavior: `wait`",
        ),
        (&[], "twin.yaml"),
    ];
    for (flags, says) in cases {
        let out = std::process::Command::new(common::preflight_bin())
            .arg("rehearse")
            .arg(dir)
            .args(flags)
            .env("CI", "true")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(
            stderr.contains(says),
            "{flags:?}: expected `{says}` in: {stderr}"
        );
    }
    assert_eq!(std::fs::read_dir(twin.path()).unwrap().count(), 0);
}
