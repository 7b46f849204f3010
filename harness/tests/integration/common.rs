//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use preflight::cluster::{LocalCluster, LocalConfig};
use preflight::components::{self, Components, Version};
use preflight::progress::Progress;

/// Both pinned versions: every control-plane test runs on each.
pub fn versions() -> [Version; 2] {
    [
        components::DEFAULT_SOURCE.parse().unwrap(),
        components::DEFAULT_TARGET.parse().unwrap(),
    ]
}

/// The binaries of `version`, from the cache (built once if missing).
pub fn components(version: &Version) -> Components {
    static LOCK: OnceLock<std::sync::Mutex<()>> = OnceLock::new();
    let _guard = LOCK.get_or_init(Default::default).lock().unwrap();
    let opts = components::Options::from_env(Progress::quiet());
    components::ensure(version, &opts).unwrap_or_else(|e| panic!("components {version}: {e}"))
}

/// A local control plane at `version`, in a fresh temporary directory.
pub async fn cluster(name: &str, version: &Version) -> LocalCluster {
    preflight::init_crypto();
    let mut config = LocalConfig::new(name, components(version));
    config.ready_timeout = Duration::from_secs(90);
    LocalCluster::start(config)
        .await
        .unwrap_or_else(|e| panic!("starting {name} at {version}: {e}"))
}

/// Processes whose command line mentions `needle` (zombies excluded).
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        if state == Some("Z") {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// Whether process `pid` is gone (or a zombie waiting for a reaper).
pub fn process_gone(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.is_empty()
        || stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
            == Some("Z")
}

/// Polls `cond` every 100 ms until it holds or `deadline` passes.
pub async fn eventually(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + deadline;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `preflight` binary built for these tests.
pub fn preflight_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_preflight"))
}

/// What the default run (`preflight run`: every embedded scenario, pinned versions)
/// said and wrote.
pub struct DefaultRun {
    pub code: Option<i32>,
    /// Its report directory (under cargo's test scratch directory).
    pub dir: PathBuf,
    pub stdout: String,
    pub stderr: String,
}

/// The default run, once per test process, as CI runs it (`CI=true`, from the
/// package's folder): the four-reports test and the shards' reference read the same
/// run rather than start the heaviest local run twice.
pub fn default_run() -> &'static DefaultRun {
    static RUN: OnceLock<DefaultRun> = OnceLock::new();
    RUN.get_or_init(|| {
        let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
        // Earlier test processes' directories (their processes are gone).
        for e in std::fs::read_dir(scratch).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(pid) = name.strip_prefix("default-run-")
                && !Path::new("/proc").join(pid).exists()
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let dir = scratch.join(format!("default-run-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = std::process::Command::new(preflight_bin())
            .args(["run", "--report-dir"])
            .arg(&dir)
            .env("CI", "true")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        DefaultRun {
            code: out.status.code(),
            dir,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
}

/// Runs the preflight binary with `args` and `--report-dir dir`, as CI does
/// (`CI=true`: plain progress lines), from the package's folder; returns its exit code,
/// its report.json (which must exist) and its output.
pub fn run_preflight(args: &[&str], dir: &Path) -> (Option<i32>, serde_json::Value, String) {
    let out = std::process::Command::new(preflight_bin())
        .args(args)
        .arg("--report-dir")
        .arg(dir)
        .env("CI", "true")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = serde_json::from_str(&read(&dir.join("report.json")))
        .unwrap_or_else(|e| panic!("no report.json ({e}):\n{text}"));
    (out.status.code(), doc, text)
}

/// The string `field` of each item of a JSON array (panics on anything else: a
/// report that lacks it fails the test).
pub fn strings<'a>(items: &'a serde_json::Value, field: &str) -> Vec<&'a str> {
    items
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {items}"))
        .iter()
        .map(|i| {
            i[field]
                .as_str()
                .unwrap_or_else(|| panic!("no string {field}: {i}"))
        })
        .collect()
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The run of `scenario` in `role` (`source`, `target`, `upgrade`) in a report.json.
pub fn run_of<'a>(doc: &'a serde_json::Value, scenario: &str, role: &str) -> &'a serde_json::Value {
    doc["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == scenario)
        .and_then(|s| {
            s["runs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["role"] == role)
        })
        .unwrap_or_else(|| panic!("no {role} run of {scenario}"))
}

/// A run's leftovers of one kind.
pub fn leftovers<'a>(run: &'a serde_json::Value, kind: &str) -> Vec<&'a serde_json::Value> {
    run["leftovers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] == kind)
        .collect()
}

/// What a run in a report.json left that counts as a failure: (normalised identity,
/// reason).
pub fn failures(run: &serde_json::Value) -> std::collections::BTreeSet<(String, String)> {
    run["leftovers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| {
            !matches!(
                l["reason"].as_str(),
                Some("kept-by-policy" | "kept-by-design")
            )
        })
        .map(|l| {
            (
                l["normalized"].as_str().unwrap_or_default().to_string(),
                l["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The parent process of `pid`.
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The `v1` resource `kind` (`plural`) of API group `group`.
pub fn ar(group: &str, kind: &str, plural: &str) -> ApiResource {
    let version = "v1";
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// `Kind/name` of the Namespaces and ValidatingWebhookConfigurations that `lp`
/// selects, with whether each is being deleted.
pub async fn namespaces_and_webhooks(
    client: &kube::Client,
    lp: &ListParams,
) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for r in [
        ar("", "Namespace", "namespaces"),
        ar(
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
        ),
    ] {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &r);
        for o in api.list(lp).await.unwrap().items {
            let id = format!("{}/{}", r.kind, o.metadata.name.clone().unwrap_or_default());
            out.push((id, o.metadata.deletion_timestamp.is_some()));
        }
    }
    out
}

/// `Kind/name` of every Namespace and ValidatingWebhookConfiguration labelled as
/// preflight's.
pub async fn owned(client: &kube::Client) -> Vec<String> {
    let lp = ListParams::default().labels("app.kubernetes.io/managed-by=preflight");
    namespaces_and_webhooks(client, &lp)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// The admission incident as a scenario for a shared cluster (`CHART`: the chart's
/// path; see [`shared_admission_file`]).
///
// The "shared cluster" here is a local control plane: no kubelet runs the chart's hook
// Job, and preflight never fakes one on a cluster it does not own, so the hook is off.
pub const SHARED_ADMISSION: &str = r#"name: shared-admission
description: the admission incident, on a shared cluster
chart:
  path: CHART
  outsideScenarioDir: true
  values: {widget: {enabled: false}, hook: {enabled: false}}
webhooks:
  - name: delete-guard
    kind: validating
    failurePolicy: Fail
    timeoutSeconds: 2
    rules:
      - {operations: [DELETE], apiGroups: [apps, ""], apiVersions: [v1], resources: [replicasets, pods]}
steps:
  - helm: {action: install}
  - setWebhook: {name: delete-guard, behaviour: unreachable}
  - helm: {action: uninstall}
  - settle: {timeoutSeconds: 30}
expect:
  leftovers:
    - {kind: ReplicaSet, reason: webhook-blocked-delete}
    - {kind: Pod, reason: webhook-blocked-delete}
"#;

/// The test chart of the embedded scenarios.
pub fn test_chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/charts/preflight-test")
}

/// [`SHARED_ADMISSION`], written to `dir/shared.yaml` with the test chart's path.
pub fn shared_admission_file(dir: &Path) -> PathBuf {
    let file = dir.join("shared.yaml");
    std::fs::write(
        &file,
        SHARED_ADMISSION.replace("CHART", &test_chart().display().to_string()),
    )
    .unwrap();
    file
}

/// What `doc` (a report.json) breaks of `harness/schema/report.v1.json`.
pub fn schema_errors(doc: &serde_json::Value) -> Vec<String> {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../schema/report.v1.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    validator
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// A preflight run's namespace and webhook configuration, as another process on the
/// same cluster would have made them.
pub async fn fake_run(client: &kube::Client, run: &str) -> (String, String) {
    let ns = format!("pf-other-{run}");
    preflight::smoke::ensure_namespace_labelled(client, &ns, run)
        .await
        .unwrap();
    let vwcs: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ar(
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
        ),
    );
    let name = format!("preflight-{ns}-guard");
    let config: DynamicObject = serde_json::from_value(serde_json::json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "preflight", "preflight.dev/run": run}},
        "webhooks": [{"name": format!("guard.{ns}.preflight.dev"), "clientConfig": {"url": "https://127.0.0.1:9/x"}, "failurePolicy": "Ignore", "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "rules": [{"operations": ["DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced"}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}]})).unwrap();
    vwcs.create(&PostParams::default(), &config).await.unwrap();
    (
        format!("Namespace/{ns}"),
        format!("ValidatingWebhookConfiguration/{name}"),
    )
}

/// A Lease of run `run` in `ns`, last renewed `ago` before now.
pub fn lease(run: &str, ago: Duration) -> k8s_openapi::api::coordination::v1::Lease {
    let renewed = k8s_openapi::jiff::Timestamp::now()
        - k8s_openapi::jiff::SignedDuration::try_from(ago).unwrap();
    serde_json::from_value(serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": format!("preflight-run-{run}"),
            "labels": {"app.kubernetes.io/managed-by": "preflight", "preflight.dev/run": run}},
        "spec": {"holderIdentity": format!("preflight@elsewhere/pid-1/run-{run}"), "leaseDurationSeconds": 30,
            "renewTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(renewed)}
    }))
    .unwrap()
}

/// A client of the cluster `preflight cluster up` started, and its kubeconfig's
/// path, from the `export KUBECONFIG=...` line it prints.
pub async fn cluster_up_client(stdout: &str) -> (kube::Client, String) {
    let kubeconfig = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("export KUBECONFIG="))
        .unwrap_or_else(|| panic!("`cluster up` prints its kubeconfig: {stdout}"))
        .to_string();
    let client = preflight::cluster::local::client_from_kubeconfig(kubeconfig.as_ref(), None)
        .await
        .unwrap();
    (client, kubeconfig)
}
