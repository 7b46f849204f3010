//! The fault matrix: signals at each phase of a run, a damaged components cache, a
//! report directory that cannot take the reports, a component dying, a helm that
//! hangs. Every case asserts what an SRE on a shared CI machine needs: nothing of the
//! run is left (no process, no directory), the exit code says what happened, and the
//! output says it in words.
//!
//! Each case runs `preflight` as a child with a private `TMPDIR` (every directory a
//! run makes lands there, so "nothing left" is "that directory is empty") and a
//! marker in its environment (every process it starts inherits it, so "no process
//! left" is "no process carries the marker", whatever it was reparented to). Each
//! prints one `fault-matrix:` line with what it measured; the table in
//! docs/reliability.md ("Faults, measured") is made of those lines.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common;

/// Processes (not zombies) whose environment holds `PREFLIGHT_FAULT_CASE=<marker>`.
fn processes_marked(marker: &str) -> Vec<(u32, String)> {
    let needle = format!("PREFLIGHT_FAULT_CASE={marker}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if common::process_gone(pid) {
            continue;
        }
        let env = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        if env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
            let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            found.push((pid, String::from_utf8_lossy(&cmd).replace('\0', " ")));
        }
    }
    found
}

/// Everything under `dir` (relative paths), for "nothing left" messages.
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// A `preflight` child with a private temporary directory and a marker.
struct Case {
    name: String,
    tmp: tempfile::TempDir,
    child: Child,
    /// Every stderr line so far.
    stderr: Arc<Mutex<Vec<String>>>,
    started: Instant,
}

impl Case {
    fn start(name: &str, args: &[&str], env: &[(&str, &str)]) -> Case {
        let tmp = tempfile::Builder::new()
            .prefix("pf-fault-")
            .tempdir()
            .unwrap();
        std::fs::create_dir(tmp.path().join("tmp")).unwrap();
        let mut cmd = Command::new(common::preflight_bin());
        cmd.args(args)
            .env("CI", "true")
            .env("TMPDIR", tmp.path().join("tmp"))
            .env("PREFLIGHT_FAULT_CASE", name)
            .stdout(std::fs::File::create(tmp.path().join("stdout")).unwrap())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        Case {
            name: name.to_string(),
            tmp,
            child,
            stderr,
            started: Instant::now(),
        }
    }

    fn tmp(&self) -> PathBuf {
        self.tmp.path().join("tmp")
    }

    fn stdout_text(&self) -> String {
        common::read(&self.tmp.path().join("stdout"))
    }

    fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    async fn wait_for_line(&self, needle: &str, deadline: Duration) {
        let seen = common::eventually(deadline, || {
            self.stderr
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(needle))
        })
        .await;
        assert!(
            seen,
            "{}: never printed {needle:?}; stderr:\n{}",
            self.name,
            self.stderr_text()
        );
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// Waits (bounded) for the harness to exit; its status.
    async fn exit(&mut self, deadline: Duration) -> std::process::ExitStatus {
        let mut status = None;
        common::eventually(deadline, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        })
        .await;
        status.unwrap_or_else(|| {
            let _ = self.child.kill();
            panic!(
                "{}: preflight did not exit within {deadline:?}; stderr:\n{}",
                self.name,
                self.stderr_text()
            )
        })
    }

    /// Asserts that no process of the case is left and its temporary directory is
    /// empty (both within a deadline: sentinels act after the harness is gone).
    async fn assert_nothing_left(&self) {
        let gone = common::eventually(Duration::from_secs(30), || {
            processes_marked(&self.name).is_empty()
        })
        .await;
        assert!(
            gone,
            "{}: processes left: {:#?}",
            self.name,
            processes_marked(&self.name)
        );
        let tmp = self.tmp();
        let empty = common::eventually(Duration::from_secs(15), || entries(&tmp).is_empty()).await;
        assert!(
            empty,
            "{}: left in its temporary directory: {:?}",
            self.name,
            entries(&tmp)
        );
    }

    fn measured(&self, what: &str, outcome: &str) {
        eprintln!(
            "fault-matrix: {what} | {outcome} | left: 0 processes, 0 dirs | {:.0} s",
            self.started.elapsed().as_secs_f64()
        );
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// No `preflight-*` container is left (deletes take a while on a loaded machine).
async fn assert_no_kind_container_left(name: &str) {
    let gone = common::eventually(Duration::from_secs(240), || {
        crate::kind_clusters::preflight_containers().is_empty()
    })
    .await;
    assert!(
        gone,
        "{name}: containers left: {:?}",
        crate::kind_clusters::preflight_containers()
    );
}

fn exit_text(status: std::process::ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => format!("{status:?}"),
    }
}

/// What a signal must lead to: SIGINT and SIGTERM an orderly teardown that says so
/// and exits 2 (never a pass); SIGKILL cannot be answered, the sentinels clean up.
fn assert_exit(case: &Case, signal: Signal, status: std::process::ExitStatus) {
    match signal {
        Signal::SIGKILL => assert_eq!(status.signal(), Some(9), "{}", case.name),
        Signal::SIGINT | Signal::SIGTERM => {
            assert_eq!(
                status.code(),
                Some(2),
                "{}: {status:?}; stderr:\n{}",
                case.name,
                case.stderr_text()
            );
            let said = if signal == Signal::SIGINT {
                "interrupted: tearing down"
            } else {
                "terminated: tearing down"
            };
            assert!(
                case.stderr_text().contains(said),
                "{}: stderr does not say {said:?}:\n{}",
                case.name,
                case.stderr_text()
            );
        }
        other => panic!("no expectation for {other}"),
    }
}

/// Runs `incident-admission` (install, webhook switch, uninstall, settle), pauses it
/// at `phase`, sends `signal`, and checks that nothing is left and no report (or
/// only a whole one) was written.
async fn signal_at_phase(phase: &str, signal: Signal) {
    signal_at_phase_on(phase, signal, "local").await;
}

pub(crate) async fn signal_at_phase_on(phase: &str, signal: Signal, provider: &str) {
    let name = format!("{provider}-{phase}-{}", signal.as_str().to_lowercase());
    let reports = tempfile::tempdir().unwrap();
    let report_dir = reports.path().join("out");
    let mut case = Case::start(
        &name,
        &[
            "run",
            "incident-admission",
            "--provider",
            provider,
            "--report-dir",
            report_dir.to_str().unwrap(),
        ],
        &[("PREFLIGHT_PAUSE_AT", phase)],
    );
    case.wait_for_line(&format!("paused at {phase}"), Duration::from_secs(240))
        .await;
    assert!(
        !processes_marked(&name).is_empty(),
        "{name}: nothing of the run is running at {phase}"
    );
    case.signal(signal);
    let status = case.exit(Duration::from_secs(60)).await;
    assert_exit(&case, signal, status);
    case.assert_nothing_left().await;
    if provider == "kind" {
        assert_no_kind_container_left(&name).await;
    }
    // Paused before any report is written: none, not even an empty directory (the
    // early writability check removes what it created).
    assert!(
        !report_dir.exists(),
        "{name}: {} exists: {:?}",
        report_dir.display(),
        entries(&report_dir)
    );
    case.measured(
        &format!("{signal} at {phase} ({provider})"),
        &format!("{}, no report", exit_text(status)),
    );
}

macro_rules! signal_cases {
    ($($test:ident: $phase:literal, $signal:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread")]
        async fn $test() {
            signal_at_phase($phase, Signal::$signal).await;
        }
    )*};
}

signal_cases! {
    sigint_at_cluster_start: "cluster-start", SIGINT;
    sigterm_at_cluster_start: "cluster-start", SIGTERM;
    sigkill_at_cluster_start: "cluster-start", SIGKILL;
    sigint_at_install: "install", SIGINT;
    sigterm_at_install: "install", SIGTERM;
    sigkill_at_install: "install", SIGKILL;
    sigint_at_webhook_switch: "webhook-switch", SIGINT;
    sigterm_at_webhook_switch: "webhook-switch", SIGTERM;
    sigkill_at_webhook_switch: "webhook-switch", SIGKILL;
    sigint_at_uninstall: "uninstall", SIGINT;
    sigterm_at_uninstall: "uninstall", SIGTERM;
    sigkill_at_uninstall: "uninstall", SIGKILL;
    sigint_at_settle: "settle", SIGINT;
    sigterm_at_settle: "settle", SIGTERM;
    sigkill_at_settle: "settle", SIGKILL;
    sigint_at_report_writing: "report-writing", SIGINT;
    sigterm_at_report_writing: "report-writing", SIGTERM;
    sigkill_at_report_writing: "report-writing", SIGKILL;
}

/// A copy of the cached binaries of `version` (Kubernetes, its etcd, helm) in a new
/// cache directory: the test may damage it without touching the machine's cache.
fn private_cache(version: &str) -> tempfile::TempDir {
    let real = preflight::components::default_cache_dir().join("bin");
    let cache = tempfile::Builder::new()
        .prefix("pf-cache-")
        .tempdir()
        .unwrap();
    let bin = cache.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    // Every etcd of the cache: which one the release recommends is read from its
    // module, and copying a few more is cheaper than repeating that here.
    let etcds: Vec<String> = entries(&real)
        .into_iter()
        .filter(|e| e.starts_with("etcd-v"))
        .collect();
    let wanted = [
        format!("kubernetes-{version}"),
        format!("helm-{}", preflight::components::HELM_VERSION),
    ];
    for entry in wanted.into_iter().chain(etcds) {
        let status = Command::new("cp")
            .args(["-r", "--reflink=auto"])
            .arg(real.join(&entry))
            .arg(bin.join(&entry))
            .status()
            .unwrap();
        assert!(status.success(), "copying {entry} of the cache");
    }
    cache
}

/// An environment in which Go can build nothing (no proxy, empty module and build
/// caches): a rebuild fails at once instead of taking minutes.
fn offline_go(dir: &Path) -> Vec<(String, String)> {
    vec![
        ("GOPROXY".into(), "off".into()),
        ("GOMODCACHE".into(), dir.join("gomod").display().to_string()),
        ("GOCACHE".into(), dir.join("gocache").display().to_string()),
        ("GOFLAGS".into(), "-mod=mod".into()),
    ]
}

/// A truncated binary and a half-written staging directory in the cache: detected,
/// removed, never run; the rebuild is attempted (and here fails, offline, with the
/// reason), and nothing is left half-done.
#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_components_cache_is_detected_and_never_used() {
    let version = "v1.30.14";
    let cache = private_cache(version);
    let bin = cache.path().join("bin");
    let kube = bin.join(format!("kubernetes-{version}"));
    let cache_env = cache.path().display().to_string();

    // Intact: used as it is (and sealed, if it was not yet).
    let mut ok = Case::start(
        "cache-intact",
        &["components", "ensure", "--version", version],
        &[("PREFLIGHT_CACHE_DIR", &cache_env)],
    );
    let status = ok.exit(Duration::from_secs(120)).await;
    assert_eq!(status.code(), Some(0), "{}", ok.stderr_text());
    assert!(kube.join(".preflight-sums").exists(), "the entry is sealed");
    ok.assert_nothing_left().await;

    // Damaged: half of kube-apiserver, and a staging directory a killed build left.
    let apiserver = kube.join("kube-apiserver");
    let len = std::fs::metadata(&apiserver).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&apiserver)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let stale = bin.join(format!(".tmp-kubernetes-{version}-killed"));
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("kube-apiserver"), b"half").unwrap();

    let go_dir = tempfile::tempdir().unwrap();
    let mut env: Vec<(String, String)> = offline_go(go_dir.path());
    env.push(("PREFLIGHT_CACHE_DIR".into(), cache_env.clone()));
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut damaged = Case::start(
        "cache-damaged",
        &["components", "ensure", "--version", version],
        &env_refs,
    );
    let status = damaged.exit(Duration::from_secs(300)).await;
    let err = damaged.stderr_text();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("the cached kubernetes-{version} is damaged"))
            && err.contains("`kube-apiserver` has"),
        "the damage is named: {err}"
    );
    assert!(!kube.exists(), "the damaged entry is removed, never used");
    assert!(
        !stale.exists(),
        "the killed build's staging directory is removed"
    );
    assert!(
        entries(&bin).iter().all(|e| !e.starts_with(".tmp-")),
        "no staging directory is left: {:?}",
        entries(&bin)
    );
    damaged.assert_nothing_left().await;
    damaged.measured(
        "damaged cache (truncated kube-apiserver, stale staging)",
        &format!("{}, damage named, entry removed", exit_text(status)),
    );
}

/// SIGINT, SIGTERM and SIGKILL while `go build` compiles a Kubernetes release into a
/// new cache: the compilers stop, the staging directory goes (at once, or for
/// SIGKILL at the next fill of that entry), and the cache holds no entry.
async fn signal_during_components_build(signal: Signal) {
    let name = format!("build-{}", signal.as_str().to_lowercase());
    let cache = tempfile::Builder::new()
        .prefix("pf-cache-")
        .tempdir()
        .unwrap();
    let cache_env = cache.path().display().to_string();
    let mut case = Case::start(
        &name,
        &["components", "ensure", "--version", "v1.30.14"],
        &[("PREFLIGHT_CACHE_DIR", &cache_env)],
    );
    // `go build -o <cache>/bin/.tmp-kubernetes-.../` is running.
    let building = common::eventually(Duration::from_secs(300), || {
        processes_marked(&name)
            .iter()
            .any(|(_, cmd)| cmd.contains(" build ") && cmd.contains(&cache_env))
    })
    .await;
    assert!(
        building,
        "{name}: go build never started; stderr:\n{}",
        case.stderr_text()
    );
    case.signal(signal);
    let status = case.exit(Duration::from_secs(60)).await;
    assert_exit(&case, signal, status);
    case.assert_nothing_left().await;
    let bin = cache.path().join("bin");
    assert!(
        !bin.join("kubernetes-v1.30.14").exists(),
        "{name}: a half build was installed"
    );
    if signal == Signal::SIGKILL {
        // Nothing ran after the kill: the staging directory is there until the next
        // fill of the entry takes its lock (offline here, so it fails fast).
        let go_dir = tempfile::tempdir().unwrap();
        let mut env = offline_go(go_dir.path());
        env.push(("PREFLIGHT_CACHE_DIR".into(), cache_env.clone()));
        let env_refs: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut again = Case::start(
            &format!("{name}-again"),
            &["components", "ensure", "--version", "v1.30.14"],
            &env_refs,
        );
        let _ = again.exit(Duration::from_secs(120)).await;
        again.assert_nothing_left().await;
    }
    assert!(
        entries(&bin).iter().all(|e| !e.starts_with(".tmp-")),
        "{name}: staging left: {:?}",
        entries(&bin)
    );
    case.measured(
        &format!("{signal} during components build (go build)"),
        &format!("{}, no entry installed", exit_text(status)),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_during_components_build() {
    signal_during_components_build(Signal::SIGINT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_components_build() {
    signal_during_components_build(Signal::SIGTERM).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_components_build() {
    signal_during_components_build(Signal::SIGKILL).await;
}

/// A tmpfs of `size` mounted on a new directory; unmounted when dropped. (The tests
/// run as root in CI: permissions do not stop root, a read-only or full file system
/// does.)
struct Mount(tempfile::TempDir);

impl Mount {
    fn tmpfs(options: &str) -> Mount {
        let dir = tempfile::Builder::new()
            .prefix("pf-mnt-")
            .tempdir()
            .unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mount -t tmpfs -o {options} (the tests run as root)"
        );
        Mount(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// A read-only report directory: refused before any cluster starts, with the
/// directory and the reason named; nothing started, nothing left.
#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_report_directory_is_refused_before_any_cluster_starts() {
    let mount = Mount::tmpfs("ro,size=1m");
    let out = mount.path().join("reports");
    let mut case = Case::start(
        "report-dir-read-only",
        &["run", "baseline", "--report-dir", out.to_str().unwrap()],
        &[],
    );
    let status = case.exit(Duration::from_secs(60)).await;
    let err = case.stderr_text();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "the report directory {} cannot take the reports",
            out.display()
        )) && err.contains("Read-only file system"),
        "{err}"
    );
    assert!(
        !err.contains("starting local control plane"),
        "no cluster was started: {err}"
    );
    case.assert_nothing_left().await;
    case.measured(
        "read-only report directory",
        &format!("{}, refused before clusters", exit_text(status)),
    );
}

/// A report directory whose disk fills up during the run: the run's verdict is still
/// printed, the error names the file that could not be written and why, no half
/// report is left (a gate must never read one), and the clusters are gone.
#[tokio::test(flavor = "multi_thread")]
async fn a_report_directory_that_fills_up_during_the_run_loses_no_verdict() {
    let mount = Mount::tmpfs("size=2m");
    let out = mount.path().join("reports");
    let mut case = Case::start(
        "report-dir-full",
        &[
            "run",
            "incident-admission",
            "--report-dir",
            out.to_str().unwrap(),
        ],
        &[],
    );
    // The early check passed; the disk fills while the scenario runs.
    case.wait_for_line("] helm install ...", Duration::from_secs(240))
        .await;
    let filler = mount.path().join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 4 << 20]);
    assert!(std::fs::metadata(&filler).unwrap().len() > 0);
    let status = case.exit(Duration::from_secs(300)).await;
    let err = case.stderr_text();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("writing reports into {}", out.display()))
            && err.contains("No space left on device"),
        "{err}"
    );
    let stdout = case.stdout_text();
    assert!(
        stdout.contains("incident-admission"),
        "the verdict is printed before the reports fail: {stdout}"
    );
    let left = entries(&out);
    assert!(
        left.iter()
            .all(|f| !f.starts_with("report.") && !f.contains(".tmp-")),
        "no report, whole or half, and no temporary file: {left:?}"
    );
    case.assert_nothing_left().await;
    case.measured(
        "report directory full during the run",
        &format!("{}, verdict printed, no half report", exit_text(status)),
    );
}

/// A chart whose pre-install hook Pod never finishes (its image cannot be pulled on
/// kind; no kubelet runs it on local control planes): helm is bounded by the step's
/// `timeoutSeconds`, the run reports the failed install with helm's own words, and
/// the hook Pod, the namespace and helm itself are gone afterwards.
fn hung_hook_scenario(dir: &Path, timeout: u32) -> PathBuf {
    let chart = dir.join("hung-hook");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: hung-hook\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/hook.yaml"),
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {{ .Release.Name }}-waits-forever
  annotations:
    helm.sh/hook: pre-install
    helm.sh/hook-delete-policy: before-hook-creation
spec:
  restartPolicy: Never
  containers:
    - name: never
      image: registry.invalid/never:1
"#,
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/config.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-config\ndata: {a: b}\n",
    )
    .unwrap();
    let file = dir.join("hung-hook.yaml");
    std::fs::write(
        &file,
        format!(
            "name: hung-hook\nchart:\n  path: hung-hook\nsteps:\n  - helm: {{action: install, timeoutSeconds: {timeout}}}\n  - helm: {{action: uninstall}}\n  - settle: {{timeoutSeconds: 10}}\n"
        ),
    )
    .unwrap();
    file
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hook_that_never_finishes_is_bounded_by_the_step_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = hung_hook_scenario(dir.path(), 8);
    let out = dir.path().join("out");
    let mut case = Case::start(
        "hung-helm",
        &[
            "run",
            scenario.to_str().unwrap(),
            "--report-dir",
            out.to_str().unwrap(),
        ],
        &[],
    );
    let status = case.exit(Duration::from_secs(300)).await;
    let report: serde_json::Value = serde_json::from_str(&common::read(&out.join("report.json")))
        .unwrap_or_else(|e| panic!("no report.json ({e}); stderr:\n{}", case.stderr_text()));
    for role in ["source", "target"] {
        let run = common::run_of(&report, "hung-hook", role);
        let install = run["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["title"] == "helm install")
            .unwrap_or_else(|| panic!("no install step: {run}"));
        let helm = &install["helm"];
        assert_eq!(helm["exitCode"], 1, "{role}: {install}");
        let said = helm["stderr"].as_str().unwrap_or("");
        assert!(
            said.contains("timed out") || said.contains("deadline exceeded"),
            "{role}: helm's own words: {said}"
        );
        let ms = install["durationMs"]
            .as_u64()
            .unwrap_or_else(|| panic!("{role}: no duration: {install}"));
        assert!(
            (8_000..60_000).contains(&ms),
            "{role}: bounded by the 8 s timeout, took {ms} ms"
        );
    }
    // A release that cannot install is a finding on both versions (not a
    // regression): the gate fails with 1, as the report says.
    assert_eq!(report["exitCode"], 1, "{}", report["summary"]);
    assert_eq!(status.code(), Some(1));
    case.assert_nothing_left().await;
    case.measured(
        "helm hook that never finishes (timeoutSeconds 8)",
        &format!(
            "{}, install failed after the timeout on both versions",
            exit_text(status)
        ),
    );
}

/// SIGTERM while helm waits on a hook that never finishes: helm (in its own process
/// group, tracked) is stopped with the harness, not left waiting out its timeout.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_while_helm_hangs_stops_helm_too() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = hung_hook_scenario(dir.path(), 600);
    let mut case = Case::start(
        "hung-helm-sigterm",
        &[
            "run",
            scenario.to_str().unwrap(),
            "--report-dir",
            dir.path().join("out").to_str().unwrap(),
        ],
        &[],
    );
    let hanging = common::eventually(Duration::from_secs(240), || {
        processes_marked("hung-helm-sigterm")
            .iter()
            .any(|(_, cmd)| cmd.contains("helm") && cmd.contains(" install "))
    })
    .await;
    assert!(hanging, "helm install never ran: {}", case.stderr_text());
    case.signal(Signal::SIGTERM);
    let status = case.exit(Duration::from_secs(60)).await;
    assert_exit(&case, Signal::SIGTERM, status);
    case.assert_nothing_left().await;
    case.measured(
        "SIGTERM while helm waits on a hook (timeout 600 s)",
        &format!("{}, helm stopped", exit_text(status)),
    );
}

/// Runs `incident-admission` on `provider`, lets `kill` break the target's cluster
/// once its settle begins (`kill` returns the words the report must name it with),
/// and checks: exit 2, the death named in the target's run, the source run (which it
/// did not touch) reported whole, nothing left.
pub(crate) async fn target_dies_during_settle(
    name: &str,
    provider: &str,
    kill: impl FnOnce() -> String,
) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut case = Case::start(
        name,
        &[
            "run",
            "incident-admission",
            "--provider",
            provider,
            "--report-dir",
            out.to_str().unwrap(),
        ],
        &[],
    );
    let target = preflight::components::DEFAULT_TARGET;
    case.wait_for_line(
        &format!("[incident-admission @ {target}] settle ..."),
        Duration::from_secs(600),
    )
    .await;
    let named = kill();
    let status = case.exit(Duration::from_secs(600)).await;
    let err = case.stderr_text();
    assert_eq!(status.code(), Some(2), "{name}: {err}");
    let report: serde_json::Value = serde_json::from_str(&common::read(&out.join("report.json")))
        .unwrap_or_else(|e| panic!("{name}: no report.json ({e}); stderr:\n{err}"));
    let said = common::run_of(&report, "incident-admission", "target").to_string();
    assert!(
        said.contains(&named),
        "{name}: {named:?} is not said: {said}"
    );
    let source_run = common::run_of(&report, "incident-admission", "source");
    assert!(
        !common::leftovers(source_run, "ReplicaSet").is_empty(),
        "{name}: the source run is reported whole: {source_run}"
    );
    case.assert_nothing_left().await;
    if provider == "kind" {
        assert_no_kind_container_left(name).await;
    }
    case.measured(
        &format!("{name} during the target's settle ({provider})"),
        &format!("{}, named, source run reported", exit_text(status)),
    );
}

/// A local component killed with SIGKILL: named with its exit status and log line.
async fn component_dies(binary: &'static str) {
    let name = format!("{binary} killed");
    let marker = name.clone();
    target_dies_during_settle(&name, "local", move || {
        let victims: Vec<(u32, String)> = processes_marked(&marker)
            .into_iter()
            .filter(|(_, cmd)| {
                cmd.split(' ').next().is_some_and(|b| b.ends_with(binary))
                    && cmd.contains("-target-")
            })
            .collect();
        assert_eq!(victims.len(), 1, "the target's {binary}: {victims:?}");
        kill(Pid::from_raw(victims[0].0 as i32), Signal::SIGKILL).unwrap();
        format!("{binary} exited during the run")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_apiserver_dying_mid_run_is_named() {
    component_dies("kube-apiserver").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn etcd_dying_mid_run_is_named() {
    component_dies("etcd").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_controller_manager_dying_mid_run_is_named() {
    component_dies("kube-controller-manager").await;
}

/// The webhook server cannot bind (`--webhook-address` names an address that is not
/// this machine's, which Linux refuses to bind while `ip_nonlocal_bind` is 0, so no
/// traffic can leave): exit 2 with the address and the reason, and the shared
/// cluster keeps nothing of the run (no namespace, no webhook configuration).
#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_server_that_cannot_bind_fails_the_run_and_leaves_the_cluster_clean() {
    assert_eq!(
        common::read(Path::new("/proc/sys/net/ipv4/ip_nonlocal_bind")).trim(),
        "0",
        "binding a foreign address must fail on this machine for this test to mean anything"
    );
    let version = &common::versions()[1];
    let cluster = common::cluster("bind-fails", version).await;
    let client = cluster.client();
    let dir = tempfile::tempdir().unwrap();
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/charts/preflight-test");
    let file = dir.path().join("shared.yaml");
    std::fs::write(
        &file,
        common::SHARED_ADMISSION.replace("CHART", &chart.display().to_string()),
    )
    .unwrap();
    let kubeconfig = cluster.kubeconfig().display().to_string();
    let mut case = Case::start(
        "webhook-bind-fails",
        &[
            "run",
            file.to_str().unwrap(),
            "--provider",
            "kubeconfig",
            "--webhook-address",
            "192.0.2.1",
            "--kubeconfig",
            &kubeconfig,
            "--report-dir",
            dir.path().join("out").to_str().unwrap(),
        ],
        &[],
    );
    let status = case.exit(Duration::from_secs(180)).await;
    let err = case.stderr_text();
    let report = common::read(&dir.path().join("out/report.json"));
    let said = format!("{err}\n{report}");
    assert_ne!(status.code(), Some(0), "{said}");
    assert!(
        said.contains("192.0.2.1") && said.contains("Cannot assign requested address"),
        "the address and the reason are named: {said}"
    );
    // The run deleted its namespace; the cluster's namespace controller finishes it.
    let clean = preflight::smoke::poll(Duration::from_secs(90), || async {
        common::owned(&client).await.is_empty().then_some(())
    })
    .await;
    assert!(
        clean.is_some(),
        "left on the shared cluster: {:?}",
        common::owned(&client).await
    );
    case.assert_nothing_left().await;
    case.measured(
        "webhook server cannot bind (shared cluster)",
        &format!("{}, address named, cluster clean", exit_text(status)),
    );
}
