//! `cargo bench --bench replay`: a twin of 20 releases and 10 relevant webhooks
//! replayed on the default pair, each pass starting from the restored state after
//! install (`--reset restore`, what `preflight run TWIN` does) against a new control
//! plane installed again per pass (`--reset reinstall`, the baseline), side by side,
//! against the 10-minute budget for the whole matrix.
//!
//! The twin is captured (`preflight capture`) from a local "production" control plane
//! built here: 20 releases of a small chart (a Deployment of two replicas, a Service,
//! a ConfigMap) in five namespaces, and ten fail-closed DELETE webhooks, each called
//! for pods or replica sets in one or two of those namespaces. The replays run the
//! real binary, as a user would.
//!
//! `PREFLIGHT_BENCH_BASELINE=0` skips the reinstall baseline.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, PostParams};
use kube::discovery::ApiResource;
use preflight::cluster::{LocalCluster, LocalConfig};
use preflight::components::{self, Version};
use preflight::progress::Progress;

const RELEASES: usize = 20;
const NAMESPACES: usize = 5;
const WEBHOOKS: usize = 10;
const BUDGET: Duration = Duration::from_secs(600);

const CHART: &[(&str, &str)] = &[
    ("Chart.yaml", "apiVersion: v2\nname: app\nversion: 1.0.0\n"),
    ("values.yaml", "replicas: 2\n"),
    (
        "templates/app.yaml",
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels: {app: {{ .Release.Name }}}
  template:
    metadata:
      labels: {app: {{ .Release.Name }}}
    spec:
      containers:
        - {name: app, image: registry.invalid/app:1}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}
spec:
  selector: {app: {{ .Release.Name }}}
  ports: [{port: 80}]
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-settings
data: {mode: production}
"#,
    ),
];

fn preflight(args: &[&std::ffi::OsStr]) -> (bool, Duration) {
    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_preflight"))
        .args(args)
        .env("CI", "true")
        .status()
        .expect("running preflight");
    // Exit 1: leftovers found, which the failing webhooks are there to cause.
    (matches!(status.code(), Some(0 | 1)), started.elapsed())
}

/// The "production" cluster: releases first (its webhooks would refuse nothing at
/// install, but fail closed), then the webhooks.
async fn build_production(cluster: &LocalCluster, work: &Path) {
    let chart = work.join("app");
    for (path, text) in CHART {
        let p = chart.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let helm = components::ensure(
        cluster.version(),
        &components::Options::from_env(Progress::quiet()),
    )
    .unwrap()
    .helm;
    for i in 0..RELEASES {
        let ns = format!("team-{}", i % NAMESPACES);
        let out = Command::new(&helm)
            .args(["install", &format!("app-{i}")])
            .arg(&chart)
            .args(["-n", &ns, "--create-namespace"])
            .arg(format!("--kubeconfig={}", cluster.kubeconfig().display()))
            .env("HELM_CACHE_HOME", work.join("helm/cache"))
            .env("HELM_CONFIG_HOME", work.join("helm/config"))
            .env("HELM_DATA_HOME", work.join("helm/data"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ar = ApiResource {
        group: "admissionregistration.k8s.io".into(),
        version: "v1".into(),
        api_version: "admissionregistration.k8s.io/v1".into(),
        kind: "ValidatingWebhookConfiguration".into(),
        plural: "validatingwebhookconfigurations".into(),
    };
    let api: Api<DynamicObject> = Api::all_with(cluster.client(), &ar);
    for i in 0..WEBHOOKS {
        // Pods or replica sets, in one namespace, or two for every other webhook.
        let resource = if i % 2 == 0 { "pods" } else { "replicasets" };
        let group = if i % 2 == 0 { "" } else { "apps" };
        let mut namespaces = vec![format!("team-{}", i % NAMESPACES)];
        if i % 2 == 1 {
            namespaces.push(format!("team-{}", (i + 1) % NAMESPACES));
        }
        let config: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": format!("guard-{i}")},
            "webhooks": [{
                "name": format!("delete-{resource}.guard-{i}.corp"),
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 5,
                "clientConfig": {"service": {"namespace": "guards", "name": format!("guard-{i}")}},
                "rules": [{"operations": ["DELETE"], "apiGroups": [group], "apiVersions": ["v1"], "resources": [resource]}],
                "namespaceSelector": {"matchExpressions": [{
                    "key": "kubernetes.io/metadata.name", "operator": "In", "values": namespaces
                }]}
            }]
        }))
        .unwrap();
        api.create(&PostParams::default(), &config).await.unwrap();
    }
}

fn main() {
    preflight::init_crypto();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let opts = components::Options::from_env(Progress::from_env());
    let source: Version = components::DEFAULT_SOURCE.parse().unwrap();
    let target: Version = components::DEFAULT_TARGET.parse().unwrap();
    components::ensure(&source, &opts).expect("source components");
    let tgt = components::ensure(&target, &opts).expect("target components");
    let baseline = std::env::var("PREFLIGHT_BENCH_BASELINE").as_deref() != Ok("0");
    let work = tempfile::tempdir().unwrap();
    let twin = work.path().join("twin");

    eprintln!(
        "building the production cluster ({RELEASES} releases, {WEBHOOKS} webhooks) and capturing it"
    );
    rt.block_on(async {
        let cluster = LocalCluster::start(LocalConfig::new("production", tgt))
            .await
            .expect("production control plane");
        build_production(&cluster, work.path()).await;
        let (ok, _) = preflight(&[
            "capture".as_ref(),
            "--kubeconfig".as_ref(),
            cluster.kubeconfig().as_os_str(),
            "--out".as_ref(),
            twin.as_os_str(),
        ]);
        assert!(ok, "capture");
    });

    let replay = |reset: &str| {
        let reports = work.path().join(format!("reports-{reset}"));
        let (ok, took) = preflight(&[
            "run".as_ref(),
            twin.as_os_str(),
            "--reset".as_ref(),
            reset.as_ref(),
            "--report-dir".as_ref(),
            reports.as_os_str(),
        ]);
        assert!(ok, "replay with --reset {reset}");
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(reports.join("report.json")).unwrap())
                .unwrap();
        let passes = report["scenarios"].as_array().map_or(0, Vec::len);
        (took, passes)
    };
    let (restored, passes) = replay("restore");
    let secs = |d: Duration| d.as_secs_f64();
    eprintln!(
        "restore per pass: {:.1}s for {passes} passes",
        secs(restored)
    );
    println!();
    println!(
        "replay of {RELEASES} releases, {WEBHOOKS} webhooks: {passes} passes x 2 versions ({source}, {target})"
    );
    println!(
        "{:<34} {:>12} {:>12} {:>8}",
        "", "baseline", "measured", "ratio"
    );
    if baseline {
        let (reinstalled, again) = replay("reinstall");
        assert_eq!(passes, again, "both replays run the same passes");
        println!(
            "{:<34} {:>11.1}s {:>11.1}s {:>8.2}",
            "reinstall per pass vs restore",
            secs(reinstalled),
            secs(restored),
            secs(reinstalled) / secs(restored)
        );
    }
    println!(
        "{:<34} {:>11.1}s {:>11.1}s {:>8.2}",
        "budget vs restore per pass",
        secs(BUDGET),
        secs(restored),
        secs(restored) / secs(BUDGET)
    );
}
