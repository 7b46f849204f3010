//! Concurrent runs, from issue 13's fault matrix: two `preflight run`s and a
//! `preflight cluster up` at once on one machine, and, on a shared cluster, a run killed
//! with SIGKILL followed by two runs side by side. Each test counts what is left
//! behind (it must be nothing) and prints one `fault-matrix:` line with the numbers for
//! the table in docs/reliability.md.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DynamicObject, ListParams};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use preflight::cluster::heartbeat;
use serde_json::{Value, json};

use crate::common;

/// A `preflight` process started by a test, its output going to files.
struct Proc {
    name: String,
    child: Child,
    started: Instant,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Proc {
    /// Starts `preflight args...` with `env` added, writing its output under `logs`.
    fn spawn(name: &str, args: &[&str], env: &[(&str, &Path)], logs: &Path) -> Proc {
        let stdout = logs.join(format!("{name}.out"));
        let stderr = logs.join(format!("{name}.err"));
        let mut cmd = Command::new(common::preflight_bin());
        cmd.args(args)
            .env("CI", "true")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc {
            name: name.to_string(),
            child: cmd.spawn().unwrap(),
            started: Instant::now(),
            stdout,
            stderr,
        }
    }

    fn output(&self) -> String {
        format!(
            "--- {} stdout:\n{}\n--- stderr:\n{}",
            self.name,
            common::read(&self.stdout),
            common::read(&self.stderr)
        )
    }
}

/// How a process ended: its exit code and how long it ran.
#[derive(Clone, Copy, Debug)]
struct Ended {
    code: Option<i32>,
    took: Duration,
}

/// Waits for every process in `procs` to end (at most `deadline`), calling `sample`
/// every 200 ms meanwhile. A process still running at the deadline is killed and the
/// test fails.
async fn finish(procs: &mut [Proc], deadline: Duration, mut sample: impl FnMut()) -> Vec<Ended> {
    let end = Instant::now() + deadline;
    let mut ended: Vec<Option<Ended>> = vec![None; procs.len()];
    while ended.iter().any(Option::is_none) {
        sample();
        for (p, e) in procs.iter_mut().zip(ended.iter_mut()) {
            if e.is_none()
                && let Some(status) = p.child.try_wait().unwrap()
            {
                *e = Some(Ended {
                    code: status.code(),
                    took: p.started.elapsed(),
                });
            }
        }
        if Instant::now() >= end {
            let hung: Vec<String> = procs
                .iter_mut()
                .zip(&ended)
                .filter(|(_, e)| e.is_none())
                .map(|(p, _)| {
                    let _ = p.child.kill();
                    let _ = p.child.wait();
                    p.output()
                })
                .collect();
            panic!("still running after {deadline:?}:\n{}", hung.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ended.into_iter().map(Option::unwrap).collect()
}

/// A directory of its own for the temporary files of one `preflight` process (given as
/// its `TMPDIR`: cluster directories, helm's files and chart copies all go there), so
/// that what it leaves can be counted apart from other tests on the machine.
fn private_tmp(label: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("pf-conc-{label}-"))
        .tempdir()
        .unwrap()
}

/// The entries left in `dir`.
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path().display().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The cluster directories (`--cert-dir` up to `/pki`) of component processes whose
/// command line names a directory under `under`.
fn component_dirs(under: &Path) -> BTreeSet<String> {
    let needle = format!("--cert-dir={}/", under.display());
    common::processes_mentioning(&needle)
        .into_iter()
        .filter_map(|(_, cmd)| {
            let arg = cmd.split(' ').find(|a| a.starts_with(&needle))?;
            // The API server's is `<dir>/pki`, the controller manager's below it.
            let cert_dir = arg.trim_start_matches("--cert-dir=");
            Some(
                cert_dir
                    .split("/pki")
                    .next()
                    .unwrap_or(cert_dir)
                    .to_string(),
            )
        })
        .collect()
}

fn report_of(dir: &Path) -> Value {
    for f in ["report.json", "report.md", "junit.xml", "report.html"] {
        assert!(dir.join(f).is_file(), "{f} missing in {}", dir.display());
    }
    let doc: Value = serde_json::from_str(&common::read(&dir.join("report.json")))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    assert_eq!(
        common::schema_errors(&doc),
        Vec::<String>::new(),
        "{}",
        dir.display()
    );
    doc
}

/// What a report says, without what differs from one run of the same scenario to the
/// next (run ids, times, generated names): the verdict, the exit code, the summary
/// and, per run, its verdict, headline, leftovers (normalised, with reason),
/// findings, teardown errors and helm exit codes.
fn essence(doc: &Value) -> Value {
    let runs: Vec<Value> = doc["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            s["runs"].as_array().unwrap().iter().map(move |r| {
                let mut left: Vec<String> = r["leftovers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| {
                        format!(
                            "{} | {} | unexpected: {}",
                            l["normalized"], l["reason"], l["unexpected"]
                        )
                    })
                    .collect();
                left.sort();
                let findings: Vec<String> = r["findings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| {
                        format!(
                            "{} {} counted: {}",
                            f["class"], f["finding"]["type"], f["counted"]
                        )
                    })
                    .collect();
                let helm: Vec<&Value> = r["steps"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|s| s.get("helm").map(|h| &h["exitCode"]))
                    .collect();
                json!({
                    "scenario": s["name"], "role": r["role"], "version": r["version"],
                    "verdict": r["verdict"], "headline": r["headline"], "leftovers": left,
                    "findings": findings, "teardownErrors": r["teardownErrors"], "helm": helm,
                })
            })
        })
        .collect();
    json!({
        "verdict": doc["verdict"],
        "exitCode": doc["exitCode"],
        "summary": doc["summary"],
        "runs": runs,
    })
}

/// `incident-admission` without its `expect` block: the same incident, but its
/// leftovers are now unexpected, so the verdict is a failure (exit 1). Next to
/// `baseline` (exit 0) the two runs end differently, so a report or an exit code that
/// went to the wrong process would show.
fn admission_unexpected(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/incident-admission.yaml"),
    )
    .unwrap();
    let (without, _) = text
        .split_once("\n# What this scenario demonstrates")
        .expect("incident-admission.yaml ends with its expectations");
    assert!(!without.contains("expect:"), "{without}");
    let text = without
        .replace("name: incident-admission", "name: admission-unexpected")
        .replace(
            "path: charts/preflight-test",
            &format!(
                "path: {}\n  outsideScenarioDir: true",
                common::test_chart().display()
            ),
        );
    let file = dir.join("admission-unexpected.yaml");
    std::fs::write(&file, text).unwrap();
    file
}

/// Two `preflight run`s at once on one machine, beside a `preflight cluster up`:
/// `baseline` (passes) and `admission-unexpected` (fails with findings), each with its
/// own report directory and temporary directory, started together with `cluster up`.
///
/// Proves that concurrent processes do not clash (ports, cluster names, directories,
/// the components cache they all read; a cold cache's build locks are not exercised
/// here): each ends with the exit code it has alone (measured
/// here by running each alone first), writes a complete, schema-valid report that says
/// what its solo run says, and leaves no process and no directory; the cluster of
/// `cluster up` is still served afterwards. Each run starts two control planes, so
/// five run side by side.
#[tokio::test(flavor = "multi_thread")]
async fn two_runs_and_a_cluster_up_at_once_do_not_clash() {
    preflight::init_crypto();
    let [source, target] = common::versions();
    // Built once (under the cache's lock) before any process is timed.
    common::components(&source);
    common::components(&target);
    let work = tempfile::tempdir().unwrap();
    let logs = work.path();
    let unexpected = admission_unexpected(work.path());
    let unexpected = unexpected.display().to_string();
    let scenarios = [
        ("baseline", "baseline"),
        ("unexpected", unexpected.as_str()),
    ];
    let run_args = |scenario: &str, reports: &Path| -> Vec<String> {
        vec![
            "run".into(),
            scenario.into(),
            "--report-dir".into(),
            reports.display().to_string(),
        ]
    };

    // Each scenario alone, as the reference.
    let mut solo = BTreeMap::new();
    for (label, scenario) in scenarios {
        let tmp = private_tmp(&format!("solo-{label}"));
        let reports = work.path().join(format!("solo-{label}"));
        let args = run_args(scenario, &reports);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut p = [Proc::spawn(
            &format!("solo-{label}"),
            &args,
            &[("TMPDIR", tmp.path())],
            logs,
        )];
        let ended = finish(&mut p, Duration::from_secs(300), || {}).await;
        let doc = report_of(&reports);
        assert!(
            matches!(ended[0].code, Some(0 | 1)),
            "the solo run reached a verdict: {}",
            p[0].output()
        );
        assert_eq!(
            doc["exitCode"].as_i64().map(|c| c as i32),
            ended[0].code,
            "{}",
            p[0].output()
        );
        solo.insert(label, (ended[0], essence(&doc)));
    }
    assert_eq!(solo["baseline"].0.code, Some(0), "baseline passes alone");
    assert_eq!(
        solo["unexpected"].0.code,
        Some(1),
        "unexpected leftovers fail alone"
    );

    // Now together, with `cluster up` started at the same moment.
    let state = private_tmp("state");
    let up_tmp = private_tmp("up");
    let run_tmps = [private_tmp("run-baseline"), private_tmp("run-unexpected")];
    let started = Instant::now();
    let mut procs = vec![Proc::spawn(
        "cluster-up",
        &[
            "cluster",
            "up",
            "--version",
            &target.to_string(),
            "--name",
            "conc-up",
        ],
        &[
            ("PREFLIGHT_STATE_DIR", state.path()),
            ("TMPDIR", up_tmp.path()),
        ],
        logs,
    )];
    for ((label, scenario), tmp) in scenarios.iter().zip(&run_tmps) {
        let args = run_args(scenario, &work.path().join(format!("together-{label}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        procs.push(Proc::spawn(
            &format!("together-{label}"),
            &args,
            &[("TMPDIR", tmp.path())],
            logs,
        ));
    }
    // Every control plane of the runs, and how many ran at once.
    let mut seen: [BTreeSet<String>; 2] = Default::default();
    let mut peak = 0;
    let mut overlapped = false;
    let ended = finish(&mut procs, Duration::from_secs(420), || {
        let now: Vec<BTreeSet<String>> =
            run_tmps.iter().map(|t| component_dirs(t.path())).collect();
        peak = peak.max(now.iter().map(BTreeSet::len).sum::<usize>());
        overlapped |= now.iter().all(|n| !n.is_empty());
        for (s, n) in seen.iter_mut().zip(now) {
            s.extend(n);
        }
    })
    .await;
    let wall = started.elapsed();
    let outputs: String = procs.iter().map(Proc::output).collect();

    assert_eq!(ended[0].code, Some(0), "cluster up: {outputs}");
    assert!(
        overlapped,
        "the two runs' control planes ran at the same time"
    );
    for (i, (label, _)) in scenarios.iter().enumerate() {
        let (solo_end, solo_essence) = &solo[label];
        assert_eq!(
            ended[i + 1].code,
            solo_end.code,
            "{label} ends as it does alone: {outputs}"
        );
        let doc = report_of(&work.path().join(format!("together-{label}")));
        assert_eq!(
            &essence(&doc),
            solo_essence,
            "{label}: the report says what the solo run's says"
        );
        // Each run's two control planes lived in its own temporary directory.
        assert_eq!(
            seen[i].len(),
            2,
            "{label}: a source and a target control plane: {:?}",
            seen[i]
        );
    }
    let clashes = outputs.matches("starting again on fresh ports").count();

    // The cluster of `cluster up` is still served, and `cluster down` removes it.
    let up_out = common::read(&procs[0].stdout);
    let (client, _) = common::cluster_up_client(&up_out).await;
    assert_eq!(
        client.apiserver_version().await.unwrap().git_version,
        target.to_string(),
        "the cluster of `cluster up` answers after both runs"
    );
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
    assert!(
        namespaces
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some("kube-system"))
    );
    let down = Command::new(common::preflight_bin())
        .args(["cluster", "down", "--name", "conc-up"])
        .env("CI", "true")
        .env("PREFLIGHT_STATE_DIR", state.path())
        .env("TMPDIR", up_tmp.path())
        .output()
        .unwrap();
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );

    // Nothing of any of them is left: no process naming their directories, nothing in
    // their temporary directories, no cluster directory of `cluster up`.
    let dirs = [&run_tmps[0], &run_tmps[1], &up_tmp, &state];
    let no_process = common::eventually(Duration::from_secs(30), || {
        dirs.iter()
            .all(|d| common::processes_mentioning(&d.path().display().to_string()).is_empty())
    })
    .await;
    let processes: Vec<(u32, String)> = dirs
        .iter()
        .flat_map(|d| common::processes_mentioning(&d.path().display().to_string()))
        .collect();
    assert!(no_process, "left running: {processes:?}");
    let mut left: Vec<String> = [&run_tmps[0], &run_tmps[1], &up_tmp]
        .iter()
        .flat_map(|d| entries(d.path()))
        .collect();
    left.extend(entries(&state.path().join("clusters")));
    assert_eq!(left, Vec::<String>::new(), "directories left behind");
    for d in seen.iter().flatten() {
        assert!(!Path::new(d).exists(), "{d} remains");
    }

    eprintln!(
        "fault-matrix: concurrent-runs | 2 runs (baseline exit 0, admission-unexpected exit 1; {peak} control planes at once) + cluster up | left: {} processes, {} dirs | {} s (alone: {} s and {} s; {clashes} port clashes retried)",
        processes.len(),
        left.len(),
        wall.as_secs(),
        solo["baseline"].0.took.as_secs(),
        solo["unexpected"].0.took.as_secs(),
    );
}

/// Run id -> `Kind/name` of every Namespace and webhook configuration labelled as that
/// preflight run's, each with whether it is being deleted.
async fn objects_by_run(client: &kube::Client) -> BTreeMap<String, Vec<(String, bool)>> {
    let mut runs: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
    for r in [
        common::ar("", "Namespace", "namespaces"),
        common::ar(
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
        ),
        common::ar(
            "admissionregistration.k8s.io",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
        ),
    ] {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &r);
        let list = api
            .list(&ListParams::default().labels(preflight::cluster::existing::OWNED))
            .await
            .unwrap();
        for o in list.items {
            let run = o
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(preflight::cluster::existing::RUN_LABEL))
                .cloned()
                .unwrap_or_default();
            runs.entry(run).or_default().push((
                format!("{}/{}", r.kind, o.metadata.name.unwrap_or_default()),
                o.metadata.deletion_timestamp.is_some(),
            ));
        }
    }
    runs
}

/// The run ids of preflight's Leases on the cluster.
async fn leased_runs(client: &kube::Client) -> BTreeSet<String> {
    let leases: Api<Lease> = Api::all(client.clone());
    leases
        .list(&ListParams::default().labels(preflight::cluster::existing::OWNED))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|l| {
            l.metadata
                .labels?
                .get(preflight::cluster::existing::RUN_LABEL)
                .cloned()
        })
        .collect()
}

/// The objects a sweep says it removed, from a run's progress output.
fn swept(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.split_once("removed what an interrupted earlier run left: "))
        .flat_map(|(_, list)| list.split(", ").map(|o| o.trim().to_string()))
        .collect()
}

/// On a shared cluster (a local control plane reached through its kubeconfig): a run
/// killed with SIGKILL once its namespace, Lease and webhook configuration exist; then,
/// after its Lease expired, a second run, and a third started once the second holds
/// its Lease.
///
/// Proves that the sweep removes only the dead run's objects: SIGKILL leaves them (no
/// clean-up can run), the second run's sweep removes them once the Lease has expired
/// (the real expiry, [`heartbeat::LEASE_DURATION_SECONDS`] + [`heartbeat::SKEW_MARGIN`]
/// after the last renewal, waited for by polling the product's own expiry rule), the
/// third run's sweep leaves the live second run alone, both live runs end with complete
/// reports of the incident (no step failed because its objects vanished), every object
/// a sweep names is the dead run's, and nothing of any run stays on the cluster or on
/// this machine (processes, temporary directories: the killed run's too).
#[tokio::test(flavor = "multi_thread")]
async fn after_a_sigkill_the_sweep_of_concurrent_runs_removes_only_the_dead_runs_objects() {
    let version = &common::versions()[1];
    let cluster = common::cluster("conc-shared", version).await;
    let client = cluster.client();
    let kc = cluster.kubeconfig().display().to_string();
    let work = tempfile::tempdir().unwrap();
    let logs = work.path();
    let file = common::shared_admission_file(work.path())
        .display()
        .to_string();
    let run_args = |reports: &str| -> Vec<String> {
        [
            "run",
            &file,
            "--provider",
            "kubeconfig",
            "--kubeconfig",
            &kc,
            "--webhook-address",
            "127.0.0.1",
            "--report-dir",
            reports,
        ]
        .map(String::from)
        .to_vec()
    };
    let spawn = |name: &str, tmp: &Path| {
        let args = run_args(&work.path().join(name).display().to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Proc::spawn(name, &args, &[("TMPDIR", tmp)], logs)
    };
    let started = Instant::now();

    // The first run, killed with SIGKILL once its webhook configuration is registered
    // (its namespace and Lease come before it).
    let dead_tmp = private_tmp("dead");
    let mut dead = spawn("dead", dead_tmp.path());
    let dead_id = preflight::smoke::poll(Duration::from_secs(120), || async {
        objects_by_run(&client)
            .await
            .into_iter()
            .find_map(|(run, objects)| {
                objects
                    .iter()
                    .any(|(o, _)| o.starts_with("ValidatingWebhookConfiguration/"))
                    .then_some(run)
            })
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the first run never registered its webhook: {}",
            dead.output()
        )
    });
    kill(Pid::from_raw(dead.child.id() as i32), Signal::SIGKILL).unwrap();
    let status = dead.child.wait().unwrap();
    assert_eq!(status.code(), None, "killed by a signal");
    let dead_ns = format!("pf-shared-admission-{dead_id}");
    let dead_objects: BTreeSet<String> = objects_by_run(&client)
        .await
        .remove(&dead_id)
        .unwrap_or_default()
        .into_iter()
        .map(|(o, deleting)| {
            assert!(!deleting, "{o} is being deleted after SIGKILL");
            o
        })
        .collect();
    assert!(
        dead_objects.contains(&format!("Namespace/{dead_ns}"))
            && dead_objects
                .iter()
                .any(|o| o.starts_with("ValidatingWebhookConfiguration/")),
        "SIGKILL leaves the run's objects: {dead_objects:?}"
    );

    // Its Lease stops being renewed; wait until the product's own rule says it expired.
    let leases: Api<Lease> = Api::namespaced(client.clone(), &dead_ns);
    let lease_name = heartbeat::lease_name(&dead_id);
    assert!(
        leases.get_opt(&lease_name).await.unwrap().is_some(),
        "the killed run's Lease is still there"
    );
    let waiting = Instant::now();
    let expired = preflight::smoke::poll(Duration::from_secs(120), || async {
        let lease = leases.get(&lease_name).await.ok()?;
        let (now, _) = heartbeat::server_now(&client).await;
        heartbeat::lease_expired(&heartbeat::LeaseTimes::of(&lease), now).then_some(())
    })
    .await;
    assert!(expired.is_some(), "the killed run's Lease never expired");
    let waited = waiting.elapsed();

    // The second run; the third once the second holds its Lease (so the third's sweep
    // meets a live run beside the dead one's remains).
    let second_tmp = private_tmp("second");
    let third_tmp = private_tmp("third");
    let mut procs = vec![spawn("second", second_tmp.path())];
    let second_id = preflight::smoke::poll(Duration::from_secs(120), || async {
        leased_runs(&client)
            .await
            .into_iter()
            .find(|r| *r != dead_id)
    })
    .await
    .unwrap_or_else(|| panic!("the second run never took a Lease: {}", procs[0].output()));
    procs.push(spawn("third", third_tmp.path()));

    // Meanwhile: which live runs had their namespaces on the cluster at one instant.
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let (client, watching, dead_id) = (client.clone(), watching.clone(), dead_id.clone());
        tokio::spawn(async move {
            let mut together = 0;
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                let live = objects_by_run(&client)
                    .await
                    .into_iter()
                    .filter(|(run, objects)| {
                        *run != dead_id
                            && objects
                                .iter()
                                .any(|(o, deleting)| o.starts_with("Namespace/") && !deleting)
                    })
                    .count();
                together = together.max(live);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            together
        })
    };
    let ended = finish(&mut procs, Duration::from_secs(300), || {}).await;
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let together = watcher.await.unwrap();
    let outputs: String = procs.iter().map(Proc::output).collect();

    let mut ids = vec![second_id.clone()];
    for (p, e) in procs.iter().zip(&ended) {
        // What the existing shared-cluster test asserts of this scenario alone: it passes.
        assert_eq!(e.code, Some(0), "{}", p.output());
        let doc = report_of(&work.path().join(&p.name));
        assert_eq!(doc["provider"], "kubeconfig");
        assert_eq!(doc["verdict"], "pass", "{}", p.name);
        let run = common::run_of(&doc, "shared-admission", "source");
        let ns = run["namespace"].as_str().unwrap().to_string();
        let id = ns.trim_start_matches("pf-shared-admission-").to_string();
        if p.name == "third" {
            ids.push(id.clone());
        } else {
            assert_eq!(id, second_id);
        }
        assert!(
            run["findings"].as_array().unwrap().is_empty()
                && run["teardownErrors"].as_array().unwrap().is_empty(),
            "{}: nothing of its own went missing: {run}",
            p.name
        );
        let rs = common::leftovers(run, "ReplicaSet");
        assert!(
            rs.len() == 1 && rs[0]["reason"] == "webhook-blocked-delete",
            "{}: the incident is reproduced: {run}",
            p.name
        );
        assert!(!common::leftovers(run, "Pod").is_empty(), "{run}");
    }
    assert!(
        !ids.contains(&dead_id) && ids[0] != ids[1],
        "three distinct runs: {dead_id} {ids:?}"
    );
    assert_eq!(together, 2, "the second and third runs overlapped");

    // Every object any sweep removed is the dead run's, and all of it went.
    let second_err = common::read(&procs[0].stderr);
    let third_err = common::read(&procs[1].stderr);
    let removed: BTreeSet<String> = swept(&second_err)
        .into_iter()
        .chain(swept(&third_err))
        .collect();
    assert!(
        removed.iter().all(|o| dead_objects.contains(o)),
        "a sweep removed what was not the dead run's: {removed:?} (the dead run's: {dead_objects:?})\n{outputs}"
    );
    assert!(
        dead_objects.iter().all(|o| removed.contains(o)),
        "the dead run's objects were swept: {removed:?} of {dead_objects:?}\n{outputs}"
    );
    assert!(
        third_err.contains(&format!(
            "left another preflight's run {second_id}: its Lease is live"
        )),
        "the third run's sweep met the live second run and left it: {third_err}"
    );

    // Nothing of any run is left on the cluster (namespaces take a moment to go).
    let clean = preflight::smoke::poll(Duration::from_secs(90), || async {
        (objects_by_run(&client).await.is_empty() && leased_runs(&client).await.is_empty())
            .then_some(())
    })
    .await;
    assert!(
        clean.is_some(),
        "left on the cluster: {:?}",
        objects_by_run(&client).await
    );
    let wall = started.elapsed();

    // On this machine: no process of the three and nothing in their temporary
    // directories, the killed run's included (SIGKILL runs no destructor: its sentinel
    // removes them, a moment after the kill).
    let dirs = [&dead_tmp, &second_tmp, &third_tmp];
    let no_process = common::eventually(Duration::from_secs(30), || {
        dirs.iter()
            .all(|d| common::processes_mentioning(&d.path().display().to_string()).is_empty())
    })
    .await;
    assert!(
        no_process,
        "left running: {:?}",
        dirs.iter()
            .flat_map(|d| common::processes_mentioning(&d.path().display().to_string()))
            .collect::<Vec<_>>()
    );
    let left = || -> Vec<String> { dirs.iter().flat_map(|d| entries(d.path())).collect() };
    common::eventually(Duration::from_secs(10), || left().is_empty()).await;
    assert_eq!(left(), Vec::<String>::new(), "temporary files left");

    eprintln!(
        "fault-matrix: shared-cluster sweep | 1 run SIGKILLed, then 2 runs concurrent on one cluster | left: 0 namespaces, 0 webhook configurations, 0 Leases, 0 processes, 0 dirs | {} s (of which {} s waiting for the Lease to expire)",
        wall.as_secs(),
        waited.as_secs(),
    );
}

/// Two runs that start at the same moment on a shared cluster sweep the same dead
/// runs at once: both list the dead runs' objects before either deletes them.
///
/// Proves that neither sweep fails because the other got there first (a webhook
/// configuration already gone, a namespace already terminating), so neither run
/// stops before it starts, and that between them every dead run's objects go.
#[tokio::test(flavor = "multi_thread")]
async fn two_sweeps_of_the_same_dead_runs_at_once_both_succeed() {
    use preflight::cluster::existing;
    let version = &common::versions()[0];
    let cluster = common::cluster("conc-sweeps", version).await;
    let client = cluster.client();
    let started = Instant::now();
    let mut dead = BTreeSet::new();
    for run in ["deada0", "deadb0", "deadc0", "deadd0"] {
        let (ns, vwc) = common::fake_run(&client, run).await;
        // Its heartbeat stopped an hour ago.
        Api::<Lease>::namespaced(client.clone(), &format!("pf-other-{run}"))
            .create(
                &Default::default(),
                &common::lease(run, Duration::from_secs(3600)),
            )
            .await
            .unwrap();
        dead.extend([ns, vwc]);
    }
    let (a, b) = tokio::join!(existing::sweep(&client), existing::sweep(&client));
    let (a, b) = (
        a.unwrap_or_else(|e| panic!("first sweep: {e:#}")),
        b.unwrap_or_else(|e| panic!("second sweep: {e:#}")),
    );
    let removed: BTreeSet<String> = a.removed.iter().chain(&b.removed).cloned().collect();
    assert_eq!(removed, dead, "{a:?}\n{b:?}");
    // Objects both deleted: the two sweeps really met (reported, not asserted: the
    // interleaving is the scheduler's).
    let both = a.removed.iter().filter(|o| b.removed.contains(o)).count();
    let gone = preflight::smoke::poll(Duration::from_secs(60), || async {
        objects_by_run(&client).await.is_empty().then_some(())
    })
    .await;
    assert!(gone.is_some(), "left: {:?}", objects_by_run(&client).await);
    eprintln!(
        "fault-matrix: concurrent sweeps | 2 sweeps at once of 4 dead runs ({both} of 8 objects deleted by both) | left: 0 namespaces, 0 webhook configurations | {} s",
        started.elapsed().as_secs()
    );
}
