//! Exercising a cluster: one scenario, one cluster, every step in order.
//!
//! A run works in its own namespace (labelled as preflight's) with its own release
//! name, so runs can share a cluster. It snapshots the whole cluster before the first
//! step and after the last (after the cascade has settled), starts the scenario's
//! sample webhooks, drives the real `helm` CLI, and keeps every piece of evidence:
//! helm's exit codes and output, server-side dry-run answers, the webhook server's
//! request records, and the control plane's log lines about webhooks.

pub mod dry_run;
pub mod engine;
pub mod pods;
pub mod policies;
pub mod settle;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cluster::Cluster;
use crate::components::Components;
use crate::components::kind_image::WORKLOAD_IMAGE;
use crate::evidence::EvidenceLog;
use crate::helm;
use crate::progress::Progress;
use crate::scenario::{ChartSource, DryRunAction, Scenario, Step};
use crate::snapshot::{self, Noise, SnapshotScope};
use crate::webhook::{BehaviourSpec, ImageStandIn, Registration, WebhookServer};
use anyhow::Context;

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
    std::fs::create_dir_all(&opts.dir)
        .with_context(|| format!("creating {}", opts.dir.display()))?;
    let release = engine::Release {
        // A DNS label of at most 53 characters (the scenario's name, at most 40, by
        // default): names the chart derives from it stay within Kubernetes limits as
        // long as the chart's own templates keep them there.
        name: scenario.release.name.clone(),
        namespace: namespace.clone(),
        ..chart_and_values(cluster, scenario, opts).await?
    };
    let client = cluster.client();
    let start_version = cluster.version().to_string();
    let heartbeat = claim(cluster, &namespace, opts).await?;
    // Before the run's own webhook configurations exist: they are the run's, not the
    // cluster's.
    let before = snapshot::take(
        &client,
        &SnapshotScope {
            namespace: None,
            noise: opts.noise.clone(),
        },
    )
    .await
    .context("snapshot before the scenario")?;
    let mut owned = Owned::serve(cluster, scenario, &namespace, opts, heartbeat).await?;

    let mut steps = scenario.steps.clone();
    if !matches!(steps.last(), Some(Step::Settle(_))) {
        steps.push(Step::Settle(crate::scenario::Settle {
            timeout_seconds: 60,
        }));
    }
    let label = format!("{} @ {}", scenario.name, cluster.version());
    let setting = engine::Setting {
        cluster: &mut *cluster,
        server: &owned.server,
        registration: Some(&mut owned.registration),
        dir: opts.dir.clone(),
        helm_home: opts.dir.join("helm"),
        noise: opts.noise.clone(),
        progress: &opts.progress,
        upgrade_to: &opts.upgrade_to,
    };
    let mut run = engine::Run::new(setting, label, vec![release.clone()], Vec::new());
    run.plan(&plan(&steps)).await;
    let concluded = run.conclude().await?;
    let teardown_errors = owned.release(&client, &namespace).await;
    let outcome = Outcome {
        scenario: scenario.name.clone(),
        namespace,
        other_namespaces: Vec::new(),
        release: release.name,
        start_version,
        end_version: cluster.version().to_string(),
        steps: concluded.steps,
        before,
        after: concluded.after,
        webhook_requests: owned.server.records(),
        manifest: concluded.manifest,
        objects_after_step: concluded.objects_after_step,
        seen: concluded.seen,
        log_evidence: concluded.log_evidence,
        teardown_errors,
        substitutions: owned
            .images
            .as_ref()
            .map(ImageStandIn::substitutions)
            .unwrap_or_default(),
    };
    engine::write_outcome(&opts.dir, &outcome)?;
    Ok(outcome)
}

/// What a scenario's run owns on the cluster besides its steps: the webhook server and
/// the sample webhooks' registrations, and on a shared cluster the heartbeat Lease
/// ([`claim`]). [`Owned::release`] undoes them at the end; on an error path,
/// dropping stops the server and the heartbeat, and [`run`]'s clean-up removes the
/// registrations and the namespace by the run's label.
struct Owned {
    server: WebhookServer,
    registration: Registration,
    heartbeat: Option<crate::cluster::heartbeat::Heartbeat>,
    /// On kind: the webhook that runs preflight's workload image where no node holds a
    /// Pod's image (see [`ImageStandIn`]).
    images: Option<ImageStandIn>,
}

/// The run's namespace, created and labelled as this run's, or the run stops: a
/// namespace that exists already (someone else's on a shared cluster) is never used, so
/// never deleted. On a shared cluster the run holds a Lease while it lives, so that
/// another preflight's sweep of abandoned runs leaves it alone.
async fn claim(
    cluster: &Cluster,
    namespace: &str,
    opts: &Options,
) -> anyhow::Result<Option<crate::cluster::heartbeat::Heartbeat>> {
    let client = cluster.client();
    crate::namespace::claim(
        &client,
        namespace,
        &opts.run_id,
        crate::namespace::TERMINATING_WAIT,
    )
    .await?;
    Ok(if cluster.shared() {
        Some(crate::cluster::heartbeat::Heartbeat::start(&client, namespace, &opts.run_id).await?)
    } else {
        None
    })
}

impl Owned {
    /// Starts the webhook server and registers the scenario's sample webhooks.
    async fn serve(
        cluster: &Cluster,
        scenario: &Scenario,
        namespace: &str,
        opts: &Options,
        heartbeat: Option<crate::cluster::heartbeat::Heartbeat>,
    ) -> anyhow::Result<Owned> {
        let client = cluster.client();
        let server =
            WebhookServer::new(&opts.dir.join("webhooks"), cluster.webhook_bind(), &[]).await?;
        // Kind nodes reach no registry: a chart's own images would never be pulled.
        let images = match cluster {
            Cluster::Kind(_) => Some(
                ImageStandIn::start(&server, &client, WORKLOAD_IMAGE, Default::default())
                    .await
                    .context(
                        "running preflight's workload image where no node holds a Pod's image",
                    )?,
            ),
            _ => None,
        };
        let registration = Registration::register(
            &client,
            &server,
            &scenario.webhooks,
            namespace,
            &opts.run_id,
        )
        .await?;
        Ok(Owned {
            server,
            registration,
            heartbeat,
            images,
        })
    }

    /// Removes the registrations, stops the server and the heartbeat, deletes the
    /// namespace; returns what went wrong (never silent).
    async fn release(&mut self, client: &kube::Client, namespace: &str) -> Vec<String> {
        let mut errors = self.registration.teardown(client).await;
        self.server.shutdown();
        if let Some(heartbeat) = self.heartbeat.take() {
            errors.extend(heartbeat.stop().await);
        }
        if let Err(e) = crate::smoke::delete_namespace(client, namespace).await {
            errors.push(format!("deleting namespace {namespace}: {e}"));
        }
        errors
    }
}

/// A scenario's steps as the engine's plan (the scenario's one release is release 0).
fn plan(steps: &[Step]) -> Vec<engine::Planned> {
    steps
        .iter()
        .map(|step| engine::Planned {
            title: title(step),
            action: match step {
                Step::Helm(h) => engine::Action::Helm {
                    release: 0,
                    step: h.clone(),
                },
                Step::ServerDryRun(action) => engine::Action::ServerDryRun {
                    release: 0,
                    action: *action,
                },
                Step::SetWebhook(set) => engine::Action::SetWebhook {
                    hook: set.name.clone(),
                    spec: BehaviourSpec {
                        behaviour: set.behaviour,
                        message: set.message.clone(),
                        delay: set.delay_seconds.map(Duration::from_secs),
                    },
                },
                Step::RestartControllerManager => engine::Action::RestartControllerManager,
                Step::RestartApiServer => engine::Action::RestartApiServer,
                Step::Upgrade => engine::Action::Upgrade,
                Step::RollNodes(r) => engine::Action::RollNodes(r.clone()),
                Step::Settle(s) => engine::Action::Settle {
                    timeout: Duration::from_secs(s.timeout_seconds.into()),
                },
            },
        })
        .collect()
}

/// The run's chart and values files: the chart as [`local_chart`] finds it, then the
/// scenario's `values` written beside the run's other files.
async fn chart_and_values(
    cluster: &Cluster,
    scenario: &Scenario,
    opts: &Options,
) -> anyhow::Result<engine::Release> {
    let (chart, mut values) = local_chart(cluster, scenario, opts).await?;
    let path = opts.dir.join("values.json");
    std::fs::write(&path, serde_json::to_string_pretty(&scenario.chart.values)?)
        .with_context(|| format!("writing {}", path.display()))?;
    values.push(path);
    Ok(engine::Release {
        name: String::new(),
        namespace: String::new(),
        chart,
        values,
    })
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
        Step::RollNodes(_) => "roll the node pools (surge, cordon, drain)".into(),
        Step::Settle(_) => "settle".into(),
    }
}

/// The control plane's evidence about webhook and garbage-collector trouble: log lines
/// of the API server and the controller manager, and the audit log's refused DELETEs
/// where the cluster has one. Every piece is kept, indexed by the object it names
/// ([`EvidenceLog`]): reports cut what they show, the verdict sees it all.
pub(crate) async fn log_evidence(cluster: &Cluster, dir: &Path) -> EvidenceLog {
    let mut logs = Vec::new();
    for component in ["kube-apiserver", "kube-controller-manager"] {
        let Some(text) = cluster.component_log(component).await else {
            continue;
        };
        // Where the logs live in a container, keep what was read beside the run's
        // other records (`--keep` keeps them).
        if cluster.logs_in_container() {
            let _ = std::fs::write(dir.join(format!("{component}.log")), &text);
        }
        logs.push((component, text));
    }
    let audit = match cluster.audit_log() {
        Some(a) => Some(tokio::fs::read_to_string(a).await.unwrap_or_default()),
        None => None,
    };
    evidence_from(&logs, audit.as_deref())
}

pub use crate::cluster::metrics::{GC_PROCEEDING, GC_SYNCED, GC_WAITING};
pub use preflight_core::control_plane_log::{
    audit_refusal, evidence_from, gc_could_not_delete, gc_error,
};
