//! Exercising a cluster: one scenario, one cluster, every step in order.
//!
//! A run works in its own namespace (labelled as preflight's) with its own release
//! name, so runs can share a cluster. It snapshots the whole cluster before the first
//! step and after the last (after the cascade has settled), starts the scenario's
//! sample webhooks, drives the real `helm` CLI, and keeps every piece of evidence:
//! helm's exit codes and output, server-side dry-run answers, the webhook server's
//! request records, and the control plane's log lines about webhooks.

pub mod dry_run;
pub mod pods;
pub mod policies;
pub mod settle;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::components::Components;
use crate::evidence::{Component, Evidence, EvidenceLog, ObjectRef};
use crate::helm::{self, Helm};
use crate::progress::Progress;
use crate::scenario::{ChartSource, DryRunAction, HelmAction, HelmDryRun, Scenario, Step};
use crate::snapshot::{self, Noise, SnapshotScope};
use crate::webhook::{BehaviourSpec, Registration, WebhookServer};
use anyhow::Context;
use dry_run::DryRunReport;

pub use preflight_core::record::{Outcome, StepRecord};

/// Knobs of a run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where the run keeps its files (chart copy, values, helm home, webhook records).
    pub dir: PathBuf,
    /// The binaries an `upgrade` step switches to, in order: a path of several
    /// versions is walked one upgrade at a time.
    pub upgrade_to: Vec<Components>,
    pub progress: Progress,
    /// A short unique id, used in names and labels.
    pub run_id: String,
    /// Resource types left out of snapshots.
    pub noise: Noise,
}

/// The namespace of a scenario's run.
pub fn namespace_for(scenario: &str, run_id: &str) -> String {
    let mut base: String = scenario.chars().take(40).collect();
    while base.ends_with('-') {
        base.pop();
    }
    format!("pf-{base}-{run_id}")
}

/// Runs `scenario` on `cluster`. If the run fails part-way, its namespace and webhook
/// configurations are removed before the error is returned.
pub async fn run(
    cluster: &mut Cluster,
    scenario: &Scenario,
    opts: &Options,
) -> anyhow::Result<Outcome> {
    let result = run_steps(cluster, scenario, opts).await;
    if result.is_err() {
        // Bounded: the error may be an API server that no longer answers.
        let _ = tokio::time::timeout(
            Duration::from_secs(30),
            crate::cluster::existing::cleanup_run(&cluster.client(), &opts.run_id),
        )
        .await;
    }
    result
}

async fn run_steps(
    cluster: &mut Cluster,
    scenario: &Scenario,
    opts: &Options,
) -> anyhow::Result<Outcome> {
    let namespace = scenario
        .release
        .namespace
        .clone()
        .unwrap_or_else(|| namespace_for(&scenario.name, &opts.run_id));
    // A release name is a DNS label of at most 53 characters (the scenario's name, at
    // most 40, by default): names the chart derives from it stay within Kubernetes
    // limits as long as the chart's own templates keep them there.
    let release = scenario.release.name.clone();
    std::fs::create_dir_all(&opts.dir)
        .with_context(|| format!("creating {}", opts.dir.display()))?;
    let client = cluster.client();
    let start_version = cluster.version().to_string();

    let (chart, values_files) = local_chart(cluster, scenario, opts).await?;
    let values = opts.dir.join("values.json");
    std::fs::write(
        &values,
        serde_json::to_string_pretty(&scenario.chart.values)?,
    )?;
    // Every helm call's values, in order: the chart's files, then its `values`.
    let mut chart_values = values_files;
    chart_values.push(values.clone());

    // Created and labelled as this run's, or the run stops: a namespace that exists
    // already (someone else's on a shared cluster) is never used, so never deleted.
    crate::namespace::claim(
        &client,
        &namespace,
        &opts.run_id,
        crate::namespace::TERMINATING_WAIT,
    )
    .await?;
    // On a shared cluster the run holds a Lease while it lives, so that another
    // preflight's sweep of abandoned runs leaves it alone.
    let heartbeat = if cluster.shared() {
        Some(crate::cluster::heartbeat::Heartbeat::start(&client, &namespace, &opts.run_id).await?)
    } else {
        None
    };
    let everything = SnapshotScope {
        namespace: None,
        noise: opts.noise.clone(),
    };
    let before = snapshot::take(&client, &everything)
        .await
        .context("snapshot before the scenario")?;

    let server =
        WebhookServer::new(&opts.dir.join("webhooks"), cluster.webhook_bind(), &[]).await?;
    let mut registration = Registration::register(
        &client,
        &server,
        &scenario.webhooks,
        &namespace,
        &opts.run_id,
    )
    .await?;
    // Only where no kubelet runs: on kind a hook Job's Pod really runs (or really fails).
    // Stopped when dropped: an error below (`?`) stops it as the end of the run does.
    let driver = if cluster.has_kubelet() {
        pods::JobPodDriver::none()
    } else {
        pods::JobPodDriver::start(&client, [namespace.clone()])
    };

    let mut steps = Vec::new();
    let mut manifest = String::new();
    let mut objects_after_step = Vec::new();
    let mut seen = std::collections::BTreeMap::new();
    let mut steps_iter: Vec<Step> = scenario.steps.clone();
    if !matches!(steps_iter.last(), Some(Step::Settle(_))) {
        steps_iter.push(Step::Settle(crate::scenario::Settle {
            timeout_seconds: 60,
        }));
    }
    for (index, step) in steps_iter.iter().enumerate() {
        let started = Instant::now();
        let mut record = StepRecord {
            index,
            title: title(step),
            version: cluster.version().to_string(),
            helm: None,
            dry_run: None,
            settle: None,
            error: None,
            duration_ms: 0,
        };
        let progress = opts.progress.step(format!(
            "[{} @ {}] {}",
            scenario.name,
            cluster.version(),
            record.title
        ));
        let helm = helm_for(cluster, opts);
        // Steps that restart components stop them on purpose.
        let liveness = match step {
            Step::RestartControllerManager | Step::RestartApiServer | Step::Upgrade => {
                crate::cluster::Liveness::Unwatched
            }
            _ => cluster.liveness(),
        };
        let work = async {
            match step {
                Step::Helm(h) => {
                    if h.dry_run == HelmDryRun::None {
                        match h.action {
                            HelmAction::Install => crate::failpoint::pause_at("install").await,
                            HelmAction::Uninstall => crate::failpoint::pause_at("uninstall").await,
                            _ => {}
                        }
                    }
                    let mut values = chart_values.clone();
                    if let Some(v) = &h.values {
                        let path = opts.dir.join(format!("values-step-{index}.json"));
                        std::fs::write(&path, serde_json::to_string_pretty(v)?)?;
                        values.push(path);
                    }
                    let (h, release, namespace, chart) =
                        (h.clone(), release.clone(), namespace.clone(), chart.clone());
                    let run = tokio::task::spawn_blocking(move || {
                        helm.step(&h, &release, &namespace, &chart, &values)
                    })
                    .await?;
                    record.helm = Some(run);
                }
                Step::ServerDryRun(action) => {
                    record.dry_run = Some(
                        server_dry_run(
                            *action,
                            cluster,
                            &helm,
                            &release,
                            &namespace,
                            &chart,
                            &chart_values,
                        )
                        .await?,
                    );
                }
                Step::SetWebhook(set) => {
                    crate::failpoint::pause_at("webhook-switch").await;
                    server
                        .set(
                            &set.name,
                            BehaviourSpec {
                                behaviour: set.behaviour,
                                message: set.message.clone(),
                                delay: set.delay_seconds.map(Duration::from_secs),
                            },
                        )
                        .await?;
                }
                Step::RestartControllerManager => cluster.restart_controller_manager().await?,
                Step::RestartApiServer => cluster.restart_apiserver().await?,
                Step::Upgrade => {
                    anyhow::ensure!(
                        !opts.upgrade_to.is_empty(),
                        "an `upgrade` step needs a target version"
                    );
                    // One minor at a time, as AKS upgrades: each an in-place upgrade.
                    for target in &opts.upgrade_to {
                        cluster.upgrade(target.clone()).await?;
                    }
                }
                Step::Settle(s) => {
                    crate::failpoint::pause_at("settle").await;
                    record.settle = Some(
                        settle::settle(
                            &cluster.client(),
                            &namespace,
                            &opts.noise,
                            Duration::from_secs(s.timeout_seconds.into()),
                            cluster.gc_metrics().as_ref(),
                            &|| cluster.component_log("kube-controller-manager"),
                            Some(settle::GcInitialSync::of(cluster.version())),
                        )
                        .await,
                    );
                }
            }
            Ok(())
        };
        let mut died = false;
        let result: anyhow::Result<()> = tokio::select! {
            biased;
            dead = liveness.until_dead() => {
                died = true;
                Err(anyhow::anyhow!(dead))
            }
            r = work => r,
        };
        if let Err(e) = result {
            record.error = Some(format!("{e:#}"));
        }
        if died {
            // Nothing after this would get an answer: the component check below
            // names what died, with its log.
            record.duration_ms = started.elapsed().as_millis() as u64;
            progress.fail(format!(
                "error: {}",
                crate::errors::summary_line(record.error.as_deref().unwrap_or_default())
            ));
            steps.push(record);
            break;
        }
        // The release's manifest as it now is, after every install or upgrade that
        // really happened (compared across versions).
        if let (Some(h), Step::Helm(step)) = (&record.helm, step)
            && h.exit_code == 0
            && step.action.applies_chart()
            && step.dry_run == HelmDryRun::None
        {
            let (helm, r, n) = (helm_for(cluster, opts), release.clone(), namespace.clone());
            let got = tokio::task::spawn_blocking(move || helm.manifest(&r, &n)).await?;
            if got.exit_code == 0 {
                manifest = got.stdout;
            }
            // A policy the release just created is enforced only once the API server
            // has loaded it (see `policies`): the next step must meet it in force.
            let names = helm::split_manifest(&manifest)
                .map(|objects| policies::validating_policies(&objects))
                .unwrap_or_default();
            policies::wait_in_force(&cluster.client(), &names).await;
        }
        let scope = SnapshotScope {
            namespace: Some(namespace.clone()),
            noise: opts.noise.clone(),
        };
        let step_snapshot = snapshot::take(&cluster.client(), &scope).await;
        objects_after_step.push(step_snapshot.as_ref().map_or(0, |s| s.objects.len()));
        if let Ok(snap) = step_snapshot {
            for o in snap.objects {
                seen.insert(o.uid.clone(), o);
            }
        }
        // A conversion webhook can be registered once the chart has created its CRD.
        if let Err(e) = registration
            .register_pending(&cluster.client(), &server)
            .await
        {
            record.error.get_or_insert_with(|| e.to_string());
        }
        record.duration_ms = started.elapsed().as_millis() as u64;
        let note = match (&record.helm, &record.error) {
            (_, Some(e)) => format!("error: {}", crate::errors::summary_line(e)),
            (Some(h), None) => format!("helm exit {}", h.exit_code),
            _ => String::new(),
        };
        if record.error.is_some() || record.helm.as_ref().is_some_and(|h| h.exit_code != 0) {
            progress.fail(note);
        } else {
            progress.done(note);
        }
        steps.push(record);
    }

    let dead = cluster.dead_components();
    anyhow::ensure!(dead.is_empty(), "{}", dead.join("; "));
    let client = cluster.client();
    let after = snapshot::take(&client, &everything)
        .await
        .context("snapshot after the scenario")?;
    driver.stop();
    let mut log_evidence = log_evidence(cluster, &opts.dir);
    // While the webhooks are still registered as the scenario left them.
    if let Ok(gc) = cluster.impersonating(dry_run::GC_USER).await {
        log_evidence.extend(dry_run::probe_orphans(&client, &gc, &namespace, &after).await);
    }
    let mut teardown_errors = registration.teardown(&client).await;
    server.shutdown();
    if let Some(heartbeat) = heartbeat {
        teardown_errors.extend(heartbeat.stop().await);
    }
    if let Err(e) = crate::smoke::delete_namespace(&client, &namespace).await {
        teardown_errors.push(format!("deleting namespace {namespace}: {e}"));
    }
    let outcome = Outcome {
        scenario: scenario.name.clone(),
        namespace,
        other_namespaces: Vec::new(),
        release,
        start_version,
        end_version: cluster.version().to_string(),
        steps,
        before,
        after,
        webhook_requests: server.records(),
        manifest,
        objects_after_step,
        seen,
        log_evidence,
        teardown_errors,
    };
    let path = opts.dir.join("outcome.json");
    std::fs::write(&path, serde_json::to_string_pretty(&outcome)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(outcome)
}

/// The chart folder and values files of a run: those [`crate::chart_source`] prepared
/// before the clusters started, else (the library used without it) the embedded chart
/// written out, a folder as it is, or the chart fetched and built now, into the run's
/// directory.
async fn local_chart(
    cluster: &Cluster,
    scenario: &Scenario,
    opts: &Options,
) -> anyhow::Result<(PathBuf, Vec<PathBuf>)> {
    let chart = &scenario.chart;
    if let Some(p) = &chart.prepared {
        return Ok((p.dir.clone(), p.values_files.clone()));
    }
    match &chart.source {
        ChartSource::Embedded => {
            let dir = crate::scenario::extract_embedded_chart(&opts.dir.join("chart"))
                .with_context(|| {
                    format!("writing the embedded chart into {}", opts.dir.display())
                })?;
            Ok((dir, Vec::new()))
        }
        _ => {
            let (chart, helm, dir) = (chart.clone(), cluster.helm(), opts.dir.join("chart-source"));
            let user = crate::chart_source::UserHelmConfig::from_env();
            let p = tokio::task::spawn_blocking(move || {
                crate::chart_source::prepare(&chart, &helm, &dir, &user)
            })
            .await??;
            Ok((p.dir, p.values_files))
        }
    }
}

/// The helm CLI for this cluster: its kubeconfig and context, and on a shared cluster
/// `--skip-crds` (CRDs are cluster-wide; preflight writes only into its namespaces).
fn helm_for(cluster: &Cluster, opts: &Options) -> Helm {
    Helm::new(
        &cluster.helm(),
        &cluster.kubeconfig(),
        &opts.dir.join("helm"),
    )
    .context(cluster.context())
    .skip_crds(cluster.shared())
}

fn title(step: &Step) -> String {
    match step {
        Step::Helm(h) => match helm::dry_run_flag(h.action, h.dry_run) {
            Some(flag) => format!("helm {} {flag}", h.action.as_str()),
            None => format!("helm {}", h.action.as_str()),
        },
        Step::ServerDryRun(DryRunAction::Install) => "server-side dry run: install".into(),
        Step::ServerDryRun(DryRunAction::Uninstall) => "server-side dry run: uninstall".into(),
        Step::SetWebhook(s) => format!("webhook {} -> {:?}", s.name, s.behaviour).to_lowercase(),
        Step::RestartControllerManager => "restart kube-controller-manager".into(),
        Step::RestartApiServer => "restart kube-apiserver".into(),
        Step::Upgrade => "upgrade the control plane in place".into(),
        Step::Settle(_) => "settle".into(),
    }
}

async fn server_dry_run(
    action: DryRunAction,
    cluster: &Cluster,
    helm: &Helm,
    release: &str,
    namespace: &str,
    chart: &Path,
    values: &[PathBuf],
) -> anyhow::Result<DryRunReport> {
    let client = cluster.client();
    match action {
        DryRunAction::Install => {
            let (h, r, n, c, v, kv) = (
                helm.clone(),
                release.to_string(),
                namespace.to_string(),
                chart.to_path_buf(),
                values.to_vec(),
                cluster.version().to_string(),
            );
            let rendered =
                tokio::task::spawn_blocking(move || h.template(&r, &n, &c, &v, &kv)).await?;
            anyhow::ensure!(
                rendered.exit_code == 0,
                "helm template failed: {}",
                rendered.stderr.trim()
            );
            let manifests = helm::split_manifest(&rendered.stdout).map_err(anyhow::Error::msg)?;
            Ok(dry_run::install(&client, namespace, &manifests).await?)
        }
        DryRunAction::Uninstall => {
            let (h, r, n) = (helm.clone(), release.to_string(), namespace.to_string());
            let manifest = tokio::task::spawn_blocking(move || h.manifest(&r, &n)).await?;
            anyhow::ensure!(
                manifest.exit_code == 0,
                "helm get manifest failed: {}",
                manifest.stderr.trim()
            );
            let manifests = helm::split_manifest(&manifest.stdout).map_err(anyhow::Error::msg)?;
            let current = snapshot::take(
                &client,
                &SnapshotScope {
                    namespace: Some(namespace.to_string()),
                    ..Default::default()
                },
            )
            .await?;
            let gc_client = cluster.impersonating(dry_run::GC_USER).await?;
            Ok(dry_run::uninstall(&client, &gc_client, namespace, &manifests, &current).await?)
        }
    }
}

/// The control plane's evidence about webhook and garbage-collector trouble: log lines
/// of the API server and the controller manager, and the audit log's refused DELETEs
/// where the cluster has one. Every piece is kept, indexed by the object it names
/// ([`EvidenceLog`]): reports cut what they show, the verdict sees it all.
pub(crate) fn log_evidence(cluster: &Cluster, dir: &Path) -> EvidenceLog {
    let mut logs = Vec::new();
    for component in ["kube-apiserver", "kube-controller-manager"] {
        let Some(text) = cluster.component_log(component) else {
            continue;
        };
        // Where the logs live in a container, keep what was read beside the run's
        // other records (`--keep` keeps them).
        if cluster.logs_in_container() {
            let _ = std::fs::write(dir.join(format!("{component}.log")), &text);
        }
        logs.push((component, text));
    }
    let audit = cluster
        .audit_log()
        .map(|a| std::fs::read_to_string(a).unwrap_or_default());
    evidence_from(&logs, audit.as_deref())
}

/// The evidence in the text of the control plane's logs (`(component, text)`) and
/// audit log: what [`log_evidence`] reads, without the cluster. The garbage
/// collector's errors become [`Evidence::GcCouldNotDelete`] of the object they name.
pub fn evidence_from(logs: &[(&str, String)], audit: Option<&str>) -> EvidenceLog {
    let mut out = EvidenceLog::default();
    for (name, text) in logs {
        let Some(component) = Component::from_name(name) else {
            continue;
        };
        for line in text.lines() {
            if let Some(gc) = gc_could_not_delete(line) {
                out.push(gc);
            } else if explains(component, line) {
                out.push(Evidence::LogLine {
                    component,
                    line: line.chars().take(400).collect(),
                });
            }
        }
    }
    if let Some(text) = audit {
        out.extend(text.lines().filter_map(audit_refusal));
    }
    out
}

/// Whether a log line of `component` is about webhooks or the garbage collector's
/// informers: what can explain a leftover.
fn explains(component: Component, line: &str) -> bool {
    let kcm = component == Component::KubeControllerManager;
    line.contains("failed calling webhook")
        || line.contains("conversion webhook")
        || (kcm
            && (line.contains(GC_WAITING)
                || line.contains(GC_SYNCED)
                || line.contains(GC_PROCEEDING)))
        || (kcm
            && line.contains("garbagecollector")
            && (line.contains("timed out")
                || line.contains("unable to sync")
                || line.contains("failed to sync")))
}

pub use crate::cluster::metrics::{GC_PROCEEDING, GC_SYNCED, GC_WAITING};

/// An audit event of a DELETE that the API server refused, as evidence about the
/// object (rendered `kube-apiserver audit: USER DELETE resource namespace/name: CODE
/// message`).
pub fn audit_refusal(line: &str) -> Option<Evidence> {
    let event: serde_json::Value = serde_json::from_str(line).ok()?;
    if event["verb"] != "delete" || event["stage"] != "ResponseComplete" {
        return None;
    }
    // preflight's own server-side dry runs and probes are not what happened to the
    // object: a dry run in the query string, or in the DeleteOptions body (kube-rs sends
    // it there; the policy records it at `Request` level).
    let in_body = event["requestObject"]["dryRun"]
        .as_array()
        .is_some_and(|d| !d.is_empty());
    if in_body
        || event["requestURI"]
            .as_str()
            .is_some_and(|u| u.contains("dryRun="))
    {
        return None;
    }
    let code = event["responseStatus"]["code"].as_i64()?;
    if code < 400 || code == 404 {
        return None;
    }
    let obj = &event["objectRef"];
    let text = |v: &serde_json::Value| v.as_str().map(String::from);
    Some(Evidence::AuditRefusal {
        object: ObjectRef {
            kind: None,
            resource: Some(text(&obj["resource"])?),
            namespace: text(&obj["namespace"]).filter(|n| !n.is_empty()),
            name: text(&obj["name"]).unwrap_or_default(),
        },
        user: text(&event["user"]["username"]).unwrap_or_else(|| "?".into()),
        code,
        message: event["responseStatus"]["message"]
            .as_str()
            .unwrap_or("")
            .chars()
            .take(300)
            .collect(),
    })
}

/// A garbage collector `error syncing item` line, as evidence that it could not
/// delete the object the line names.
pub fn gc_could_not_delete(line: &str) -> Option<Evidence> {
    if !line.contains("error syncing item") {
        return None;
    }
    let field = |key: &str| -> Option<&str> {
        let start = line.find(&format!("{key}:\""))? + key.len() + 2;
        let rest = &line[start..];
        Some(&rest[..rest.find('"')?])
    };
    let (kind, name) = (field("Kind")?, field("Name")?);
    let ns = field("Namespace").unwrap_or("");
    let error = line.rsplit_once("}: ").map(|(_, e)| e).unwrap_or("");
    Some(Evidence::GcCouldNotDelete {
        object: ObjectRef {
            kind: Some(kind.to_string()),
            resource: None,
            namespace: (!ns.is_empty()).then(|| ns.to_string()),
            name: name.to_string(),
        },
        error: error.to_string(),
    })
}

/// A garbage collector `error syncing item` line condensed to `kube-controller-manager:
/// garbage collector could not delete Kind namespace/name: error`.
pub fn gc_error(line: &str) -> Option<String> {
    gc_could_not_delete(line).map(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFUSED: &str = r#"{"kind":"Event","level":"Metadata","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/pf-a/pods/web-1","verb":"delete","user":{"username":"system:serviceaccount:kube-system:generic-garbage-collector"},"objectRef":{"resource":"pods","namespace":"pf-a","name":"web-1","apiVersion":"v1"},"responseStatus":{"code":500,"message":"Internal error occurred: failed calling webhook \"delete-guard\""}}"#;

    #[test]
    fn audit_events_of_refused_deletes_become_evidence() {
        assert_eq!(
            audit_refusal(REFUSED).map(|e| e.to_string()).as_deref(),
            Some(
                "kube-apiserver audit: system:serviceaccount:kube-system:generic-garbage-collector DELETE pods pf-a/web-1: 500 Internal error occurred: failed calling webhook \"delete-guard\""
            )
        );
        let dry_run = REFUSED.replace("web-1\",\"verb", "web-1?dryRun=All\",\"verb");
        assert_eq!(audit_refusal(&dry_run), None, "dry runs are probes");
        let in_body = REFUSED.replace(
            "\"verb\":\"delete\",",
            "\"verb\":\"delete\",\"requestObject\":{\"kind\":\"DeleteOptions\",\"dryRun\":[\"All\"]},",
        );
        assert_ne!(in_body, REFUSED);
        assert_eq!(audit_refusal(&in_body), None, "a dry run in DeleteOptions");
        let real = REFUSED.replace(
            "\"verb\":\"delete\",",
            "\"verb\":\"delete\",\"requestObject\":{\"kind\":\"DeleteOptions\",\"propagationPolicy\":\"Background\"},",
        );
        assert!(audit_refusal(&real).is_some(), "a real DELETE with options");
        let ok = REFUSED.replace("\"code\":500", "\"code\":200");
        assert_eq!(audit_refusal(&ok), None);
        let gone = REFUSED.replace("\"code\":500", "\"code\":404");
        assert_eq!(audit_refusal(&gone), None);
        assert_eq!(audit_refusal("not json"), None);
    }
}
