//! The whole job: scenarios x versions, each run on a fresh local control plane, as
//! many at a time as the machine holds ([`default_parallel`], or `--parallel`).
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

pub use preflight_core::run::{Role, RunResult, Timings};

/// One planned run.
#[derive(Clone, Debug)]
pub struct Planned {
    pub scenario: Scenario,
    /// `source`, `target`, `via` (a version between them on a path), or `upgrade`.
    pub role: Role,
    /// The version it starts on: an index into the run's path (0 is the source).
    pub at: usize,
}

/// Every run of every scenario on a source and a target version.
pub fn plan(scenarios: &[Scenario]) -> Vec<Planned> {
    plan_for(scenarios, Provider::Local, 2)
}

/// Every run of every scenario on `provider` along a path of `versions` versions
/// (source, those between, target): one run per version, or one run that upgrades in
/// place along the whole path. An existing cluster has one version, so each scenario
/// runs once there.
pub fn plan_for(scenarios: &[Scenario], provider: Provider, versions: usize) -> Vec<Planned> {
    let last = versions.max(2) - 1;
    let mut out = Vec::new();
    for s in scenarios {
        let mut push = |role, at| {
            out.push(Planned {
                scenario: s.clone(),
                role,
                at,
            })
        };
        if provider == Provider::Kubeconfig {
            push(Role::Source, 0);
        } else if s.upgrades_in_place() {
            push(Role::Upgrade, 0);
        } else {
            push(Role::Source, 0);
            for at in 1..last {
                push(Role::Via, at);
            }
            push(Role::Target, last);
        }
    }
    out
}

/// Plan entries of shard `index` of `count` (1-based `index`): every `count`-th run,
/// so each shard gets a share of every scenario's versions. Deterministic: the same
/// scenarios and path give every shard the same share on every machine.
pub fn shard(plan: Vec<Planned>, index: usize, count: usize) -> Vec<(usize, Planned)> {
    plan.into_iter()
        .enumerate()
        .filter(|(i, _)| i % count == index - 1)
        .collect()
}

/// Settings of the whole job.
#[derive(Clone, Debug)]
pub struct Settings {
    pub source: Components,
    pub target: Components,
    /// Versions between source and target, in order (a path of more than two).
    pub via: Vec<Components>,
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
            via: Vec::new(),
            work_dir: std::env::temp_dir(),
            keep: false,
            parallel: default_parallel(Provider::Local),
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

impl Settings {
    /// Every version of the run, in order: source, those between, target.
    pub fn path(&self) -> Vec<&Components> {
        std::iter::once(&self.source)
            .chain(&self.via)
            .chain(std::iter::once(&self.target))
            .collect()
    }
}

/// How many runs go at once unless told (`--parallel`), within what the machine holds:
///
/// * local control planes: [`LOCAL_RUNS_PER_CORE`] per core, bounded by the memory
///   (one peaks at about [`PLANE_MEMORY_GIB`]). A local control plane mostly waits once
///   it has started (helm, webhooks, the garbage collector's own 30 s clock): on a
///   2-core, 24 GiB machine the default run's seven runs took 111 s two at a time and
///   57 s all seven at once, with the same verdicts, 1.5 GiB of memory at the peak and
///   a load average of about 5 (measured with a debug build while another build ran);
/// * kind clusters: one per core, as memory allows (a node container with its kubelet
///   and every control-plane Pod takes far more than a local control plane);
/// * a shared cluster (`--provider kubeconfig`): one, decided by the caller.
///
/// Several jobs on one CI machine multiply whatever is chosen here: give each a
/// smaller `--parallel` there.
pub fn default_parallel(provider: Provider) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory = total_memory_gib();
    let (per_core, plane_gib) = match provider {
        Provider::Kind => (1, KIND_NODE_MEMORY_GIB),
        Provider::Local | Provider::Kubeconfig => (LOCAL_RUNS_PER_CORE, PLANE_MEMORY_GIB),
    };
    let by_memory = memory.map_or(usize::MAX, |gib| (gib / plane_gib) as usize);
    (cores * per_core).min(by_memory).max(1)
}

/// Local control planes per core: they wait far more than they compute.
pub const LOCAL_RUNS_PER_CORE: usize = 4;

/// What one local control plane's processes hold at their peak, with room to spare
/// (seven peaked at 1.5 GiB together).
pub const PLANE_MEMORY_GIB: f64 = 1.0;

/// What one single-node kind cluster holds, with room to spare.
pub const KIND_NODE_MEMORY_GIB: f64 = 2.0;

/// `MemTotal` of `/proc/meminfo` in GiB; `None` where there is no such file.
fn total_memory_gib() -> Option<f64> {
    Some(total_memory_kib()? as f64 / (1024.0 * 1024.0))
}

/// `MemTotal` of `/proc/meminfo` in KiB; `None` where there is no such file.
pub fn total_memory_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Runs every planned run and returns the results in plan order.
pub async fn run_all(plan: Vec<Planned>, settings: &Settings) -> Vec<RunResult> {
    run_indexed(plan.into_iter().enumerate().collect(), settings).await
}

/// Runs planned runs that keep their index in the whole plan (a shard's share), which
/// names their clusters and namespaces.
///
/// Each run is its own task (a [`tokio::task::JoinSet`]), so one run's blocking
/// moments never hold up another's, and at most `settings.parallel` control planes
/// exist at once (a semaphore whose permit a run holds from its start to its stop).
/// Runs start longest first (those that upgrade in place start two versions), the
/// rest in plan order, so the longest does not run alone at the end; the results come
/// back in plan order whatever order they finish in.
pub async fn run_indexed(plan: Vec<(usize, Planned)>, settings: &Settings) -> Vec<RunResult> {
    let sem = Arc::new(tokio::sync::Semaphore::new(settings.parallel.max(1)));
    let mut order: Vec<usize> = (0..plan.len()).collect();
    order.sort_by_key(|&k| plan[k].1.role != Role::Upgrade);
    let mut tasks = tokio::task::JoinSet::new();
    for k in order {
        let (i, p) = plan[k].clone();
        // Taken before the spawn, so runs start in `order`: tasks themselves start
        // in any order.
        let permit = sem
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let settings = settings.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let mut timings = Timings::default();
            let outcome = run_one(&p, &settings, i, &mut timings)
                .await
                .map_err(|e| format!("{e:#}"));
            let result = RunResult {
                scenario: p.scenario.name.clone(),
                role: p.role,
                at: p.at,
                outcome,
                timings,
            };
            (k, result)
        });
    }
    let mut slots: Vec<Option<RunResult>> = vec![None; plan.len()];
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((k, result)) => slots[k] = Some(result),
            // A run that panicked is a bug: it ends the job as it did on one task
            // (dropping the set stops the other runs, their clusters with them).
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(e) => unreachable!("runs are never cancelled while joined: {e}"),
            },
        }
    }
    slots
        .into_iter()
        .map(|r| r.expect("every run's task returned its result"))
        .collect()
}

async fn run_one(
    p: &Planned,
    settings: &Settings,
    index: usize,
    timings: &mut Timings,
) -> anyhow::Result<Outcome> {
    let path = settings.path();
    let start = path
        .get(p.at)
        .map(|c| (*c).clone())
        .context("a planned run beyond the path")?;
    let upgrade_to: Vec<Components> = match p.role {
        Role::Upgrade => path[p.at + 1..].iter().map(|c| (*c).clone()).collect(),
        _ => Vec::new(),
    };
    let role = match p.role {
        Role::Via => format!("via{}", p.at),
        other => other.as_str().to_string(),
    };
    let role = role.as_str();
    let started = std::time::Instant::now();
    let rolls = p
        .scenario
        .steps
        .iter()
        .any(|s| matches!(s, crate::scenario::Step::RollNodes(_)));
    anyhow::ensure!(
        !rolls || settings.provider == Provider::Kind,
        "scenario `{}` rolls node pools (cordons and drains nodes, joins and removes them), which needs nodes preflight owns with real kubelets: --provider kind",
        p.scenario.name
    );
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
            let name = kind::cluster_name(&format!("{}{index}", settings.run_id), role);
            let mut config = KindConfig::for_components(
                name.clone(),
                &start,
                settings.kind_image.as_deref(),
                settings
                    .kind_binary
                    .clone()
                    .context("the kind provider needs the kind CLI")?,
                settings.keep,
            );
            // The scenario's node pools (validated when it was loaded).
            config.workers =
                crate::rollout::workers_of(&p.scenario.nodes).map_err(anyhow::Error::msg)?;
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
    // Stopping waits for processes to exit (and `kind delete` for a kind cluster):
    // on a blocking thread, not on the runtime the other runs share.
    if let Err(e) = tokio::task::spawn_blocking(move || cluster.stop()).await
        && let Ok(panic) = e.try_into_panic()
    {
        std::panic::resume_unwind(panic);
    }
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
