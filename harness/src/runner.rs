//! The whole job: scenarios x versions, each run on a fresh local control plane, two
//! at a time (source and target side by side).
//!
//! A scenario without an `upgrade` step runs twice, once at the source and once at
//! the target version, so their outcomes can be compared. A scenario with one runs
//! once, starting at the source and upgrading in place to the target: the incident's
//! own path.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use crate::cluster::{
    Cluster, ExistingCluster, KindCluster, KindConfig, LocalCluster, LocalConfig, Provider,
    existing, kind,
};
use crate::components::Components;
use crate::exercise::{self, Outcome};
use crate::progress::Progress;
use crate::scenario::Scenario;

/// One planned run.
#[derive(Clone, Debug)]
pub struct Planned {
    pub scenario: Scenario,
    /// `source`, `target`, or `upgrade`.
    pub role: Role,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    Source,
    Target,
    /// Source upgraded in place to target.
    Upgrade,
}

/// Every run of every scenario.
pub fn plan(scenarios: &[Scenario]) -> Vec<Planned> {
    plan_for(scenarios, Provider::Local)
}

/// Every run of every scenario on `provider`: an existing cluster has one version, so
/// each scenario runs once there.
pub fn plan_for(scenarios: &[Scenario], provider: Provider) -> Vec<Planned> {
    let mut out = Vec::new();
    for s in scenarios {
        if provider == Provider::Kubeconfig {
            out.push(Planned {
                scenario: s.clone(),
                role: Role::Source,
            });
        } else if s.upgrades_in_place() {
            out.push(Planned {
                scenario: s.clone(),
                role: Role::Upgrade,
            });
        } else {
            out.push(Planned {
                scenario: s.clone(),
                role: Role::Source,
            });
            out.push(Planned {
                scenario: s.clone(),
                role: Role::Target,
            });
        }
    }
    out
}

/// A finished run (or why it could not run).
#[derive(Clone, Debug)]
pub struct RunResult {
    pub scenario: String,
    pub role: Role,
    pub outcome: Result<Outcome, String>,
    pub timings: Timings,
}

/// Where a run's time went.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timings {
    /// Starting the control plane until ready.
    pub start: std::time::Duration,
    /// The scenario's steps, snapshots and webhook set-up.
    pub exercise: std::time::Duration,
    /// Stopping the control plane and removing its files.
    pub stop: std::time::Duration,
}

/// Settings of the whole job.
#[derive(Clone, Debug)]
pub struct Settings {
    pub source: Components,
    pub target: Components,
    pub work_dir: PathBuf,
    pub keep: bool,
    pub parallel: usize,
    pub progress: Progress,
    pub run_id: String,
    /// Resource types left out of snapshots.
    pub noise: crate::snapshot::Noise,
    pub provider: Provider,
    /// For the kubeconfig provider: the cluster.
    pub kubeconfig: Option<(PathBuf, Option<String>)>,
    /// For the kubeconfig provider: where the cluster's API server reaches preflight.
    pub webhook_address: Option<std::net::IpAddr>,
    /// For the kind provider: a node image instead of `preflight/node:<version>`.
    pub kind_image: Option<String>,
    /// For the kind provider: the kind CLI.
    pub kind_binary: Option<PathBuf>,
}

impl Settings {
    /// Settings for local control planes at `source` and `target`.
    pub fn local(source: Components, target: Components, progress: Progress) -> Settings {
        Settings {
            source,
            target,
            work_dir: std::env::temp_dir(),
            keep: false,
            parallel: 2,
            progress,
            run_id: new_run_id(),
            noise: Default::default(),
            provider: Provider::Local,
            kubeconfig: None,
            webhook_address: None,
            kind_image: None,
            kind_binary: None,
        }
    }
}

/// Runs every planned run and returns the results in plan order.
pub async fn run_all(plan: Vec<Planned>, settings: &Settings) -> Vec<RunResult> {
    let sem = Arc::new(tokio::sync::Semaphore::new(settings.parallel.max(1)));
    let futures = plan.into_iter().enumerate().map(|(i, p)| {
        let sem = sem.clone();
        let settings = settings.clone();
        async move {
            let _permit = sem.acquire().await.expect("semaphore open");
            let mut timings = Timings::default();
            let outcome = run_one(&p, &settings, i, &mut timings)
                .await
                .map_err(|e| format!("{e:#}"));
            RunResult {
                scenario: p.scenario.name.clone(),
                role: p.role,
                outcome,
                timings,
            }
        }
    });
    futures::future::join_all(futures).await
}

async fn run_one(
    p: &Planned,
    settings: &Settings,
    index: usize,
    timings: &mut Timings,
) -> anyhow::Result<Outcome> {
    let (start, upgrade_to) = match p.role {
        Role::Source => (settings.source.clone(), None),
        Role::Target => (settings.target.clone(), None),
        Role::Upgrade => (settings.source.clone(), Some(settings.target.clone())),
    };
    let role = match p.role {
        Role::Source => "source",
        Role::Target => "target",
        Role::Upgrade => "upgrade",
    };
    let started = std::time::Instant::now();
    let mut cluster = match settings.provider {
        Provider::Local => {
            let mut config = LocalConfig::new(format!("{}-{role}", p.scenario.name), start);
            config.keep = settings.keep;
            config.progress = settings.progress.clone();
            Cluster::Local(Box::new(
                LocalCluster::start(config)
                    .await
                    .context("starting the control plane")?,
            ))
        }
        Provider::Kind => {
            anyhow::ensure!(
                upgrade_to.is_none(),
                "scenario `{}` upgrades in place, which needs the local provider",
                p.scenario.name
            );
            let name = kind::cluster_name(&format!("{}{index}", settings.run_id), role);
            let config = KindConfig::for_components(
                name.clone(),
                &start,
                settings.kind_image.as_deref(),
                settings
                    .kind_binary
                    .clone()
                    .context("the kind provider needs the kind CLI")?,
                settings.keep,
            );
            Cluster::Kind(KindCluster::create(config, &settings.progress).await?)
        }
        Provider::Kubeconfig => {
            let (path, context) = settings
                .kubeconfig
                .clone()
                .context("the kubeconfig provider needs --kubeconfig")?;
            if let Some(why) = existing::refusal(&p.scenario, settings.webhook_address) {
                anyhow::bail!(
                    "scenario `{}` cannot run on a shared cluster: {why}",
                    p.scenario.name
                );
            }
            let existing = ExistingCluster::connect(
                &path,
                context.as_deref(),
                &start.helm,
                settings.webhook_address,
            )
            .await?;
            // Rules on resources only the cluster knows (a CRD's): discovery, read-only,
            // before anything is created.
            if let Some(why) =
                existing::cluster_scoped_rule_refusal(&existing.client(), &p.scenario).await?
            {
                anyhow::bail!(
                    "scenario `{}` cannot run on a shared cluster: {why}",
                    p.scenario.name
                );
            }
            Cluster::Existing(existing)
        }
    };
    timings.start = started.elapsed();
    let started = std::time::Instant::now();
    let opts = exercise::Options {
        dir: cluster.dir().join(format!("run-{index}")),
        upgrade_to,
        progress: settings.progress.clone(),
        run_id: format!("{}{index}", settings.run_id),
        noise: settings.noise.clone(),
    };
    let outcome = exercise::run(&mut cluster, &p.scenario, &opts).await;
    timings.exercise = started.elapsed();
    let started = std::time::Instant::now();
    if settings.keep {
        settings.progress.println(format!(
            "kept {} (logs, certificates, webhook records)",
            cluster.dir().display()
        ));
    }
    cluster.stop();
    timings.stop = started.elapsed();
    outcome
}

/// A short random id for names and labels.
pub fn new_run_id() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..5)
        .map(|_| (b'a' + rng.random_range(0..26)) as char)
        .collect()
}
