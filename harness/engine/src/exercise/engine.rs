//! The one exercise engine. Every kind of run is a plan of steps for it: a scenario
//! file's steps, a twin's set-up and installs, each pass of a twin's replay. A plan
//! says *what* to do; the engine owns *how*, the same for all of them:
//!
//! * each step runs under the cluster's liveness watch: a component that dies ends the
//!   run, naming what died, instead of leaving the step waiting on a dead API server;
//! * one function per kind of step ([`Action`]);
//! * one observation after each step ([`Run::observe`]): the release's manifest and
//!   its admission policies in force after an install or upgrade, a snapshot of the
//!   plan's namespaces (the timeline, and every object ever seen, by uid), and the
//!   webhooks that can be registered now that the step created what they need;
//! * one record per step, timed, with a progress line ([`Run::custom`] records a
//!   plan's own step the same way);
//! * one conclusion ([`Run::conclude`]): the cluster's components checked, the snapshot
//!   after, the control plane's evidence read and the orphans probed while the
//!   webhooks are still as the plan left them.
//!
//! What a run owns around the engine (its webhook server, the registrations, a shared
//! cluster's heartbeat) is the caller's: a scenario run and a twin's installed control
//! plane own them differently, and both stop them on every path.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{StepRecord, dry_run, pods, policies, settle};
use crate::cluster::{Cluster, Liveness};
use crate::components::Components;
use crate::evidence::EvidenceLog;
use crate::helm::{self, Helm};
use crate::progress::Progress;
use crate::scenario::{DryRunAction, HelmAction, HelmDryRun, HelmStep};
use crate::snapshot::{self, Noise, ObjectRecord, Snapshot, SnapshotScope};
use crate::webhook::{BehaviourSpec, Registration, WebhookServer};

/// A Helm release a plan works on.
#[derive(Clone, Debug)]
pub struct Release {
    pub name: String,
    pub namespace: String,
    /// The chart's folder on disk.
    pub chart: PathBuf,
    /// Values files, in helm's order (later ones win).
    pub values: Vec<PathBuf>,
}

/// What one step of a plan does.
#[derive(Clone, Debug)]
pub enum Action {
    /// A `helm` CLI call on a release (an index into [`Run`]'s releases).
    Helm {
        release: usize,
        step: HelmStep,
    },
    /// A server-side dry run of what an install or uninstall of a release would send.
    ServerDryRun {
        release: usize,
        action: DryRunAction,
    },
    /// Switches a webhook on preflight's server to another behaviour.
    SetWebhook {
        hook: String,
        spec: BehaviourSpec,
    },
    RestartControllerManager,
    RestartApiServer,
    /// Upgrades the control plane in place, one version of the path at a time.
    Upgrade,
    /// Waits until every namespace of the run settles (side by side: the cascade runs
    /// in all of them at once, and the garbage collector's queues are the cluster's).
    Settle {
        timeout: Duration,
    },
    /// Rolls the cluster's node pools as AKS does (kind: nodes the run owns).
    RollNodes(crate::scenario::RollNodes),
}

impl Action {
    /// Steps that stop components on purpose are not watched for dying ones.
    fn restarts_components(&self) -> bool {
        matches!(
            self,
            Action::RestartControllerManager | Action::RestartApiServer | Action::Upgrade
        )
    }
}

/// One step of a plan: what it does and how its record and progress line name it.
#[derive(Clone, Debug)]
pub struct Planned {
    pub title: String,
    pub action: Action,
}

/// Whether the run goes on after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// A component of the cluster died: nothing after this would get an answer.
    Stop,
}

/// Where a run works and what it may use: the cluster and what the caller owns on it.
pub struct Setting<'a> {
    pub cluster: &'a mut Cluster,
    pub server: &'a WebhookServer,
    /// A scenario's sample webhooks (a conversion webhook is registered once the chart
    /// has created its CRD); `None` where the caller registers its own.
    pub registration: Option<&'a mut Registration>,
    /// The run's folder: step values, component logs, `outcome.json`.
    pub dir: PathBuf,
    /// The helm CLI's own folder (its cache and configuration).
    pub helm_home: PathBuf,
    pub noise: Noise,
    pub progress: &'a Progress,
    /// The binaries an `upgrade` step switches to, in order.
    pub upgrade_to: &'a [Components],
}

/// A run of plans on one cluster: the records and observations so far.
pub struct Run<'a> {
    at: Setting<'a>,
    label: String,
    releases: Vec<Release>,
    /// The stand-in that completes hook Jobs' Pods where no kubelet runs; stopped at
    /// the conclusion, or when the run is dropped on an error path.
    driver: pods::JobPodDriver,
    records: Vec<StepRecord>,
    manifests: BTreeMap<usize, String>,
    objects_after_step: Vec<usize>,
    seen: BTreeMap<String, ObjectRecord>,
}

/// What a run concluded with.
pub struct Concluded {
    pub steps: Vec<StepRecord>,
    /// The releases' manifests as last installed or upgraded, in release order.
    pub manifest: String,
    pub objects_after_step: Vec<usize>,
    pub seen: BTreeMap<String, ObjectRecord>,
    pub after: Snapshot,
    pub log_evidence: EvidenceLog,
}

impl<'a> Run<'a> {
    /// A run on `at` of `releases`, its progress lines labelled `label`; `records` are
    /// the steps that came before it (a replay's pass starts with the install's).
    pub fn new(
        at: Setting<'a>,
        label: String,
        releases: Vec<Release>,
        records: Vec<StepRecord>,
    ) -> Run<'a> {
        let namespaces: BTreeSet<String> = releases.iter().map(|r| r.namespace.clone()).collect();
        let driver = if at.cluster.has_kubelet() {
            pods::JobPodDriver::none()
        } else {
            pods::JobPodDriver::start(&at.cluster.client(), namespaces)
        };
        Run {
            at,
            label,
            releases,
            driver,
            records,
            manifests: BTreeMap::new(),
            objects_after_step: Vec::new(),
            seen: BTreeMap::new(),
        }
    }

    /// Objects known before the run (a replay's installed state): owners collected
    /// during the run are still found by uid.
    pub fn seen_before(&mut self, objects: impl IntoIterator<Item = ObjectRecord>) {
        for o in objects {
            self.seen.insert(o.uid.clone(), o);
        }
    }

    /// The namespaces of the run's releases, each once, in order.
    pub fn namespaces(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self.releases.iter().map(|r| &r.namespace).collect();
        set.into_iter().cloned().collect()
    }

    /// The version running now.
    pub fn version(&self) -> String {
        self.at.cluster.version().to_string()
    }

    /// Records a step the engine did not run (a restore done before the run started).
    pub fn push_record(&mut self, mut record: StepRecord) {
        record.index = self.records.len();
        self.records.push(record);
    }

    /// Runs `steps` in order; stops after one in which a component died.
    pub async fn plan(&mut self, steps: &[Planned]) -> Flow {
        for planned in steps {
            if self.step(planned).await == Flow::Stop {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    /// Runs one step, observes the cluster after it, and records both.
    pub async fn step(&mut self, planned: &Planned) -> Flow {
        let started = Instant::now();
        let mut record = self.record(&planned.title);
        let progress = self.progress_line(&planned.title);
        let liveness = if planned.action.restarts_components() {
            Liveness::Unwatched
        } else {
            self.at.cluster.liveness()
        };
        let result = {
            let work = self.act(&planned.action, &mut record);
            watched(&liveness, work).await
        };
        let (result, died) = match result {
            Watched::Done(r) => (r, false),
            Watched::Died(dead) => (Err(anyhow::anyhow!(dead)), true),
        };
        let settled = match result {
            Ok(settled) => settled,
            Err(e) => {
                record.error = Some(format!("{e:#}"));
                Vec::new()
            }
        };
        if died {
            record.duration_ms = started.elapsed().as_millis() as u64;
            progress.fail(format!(
                "error: {}",
                crate::errors::summary_line(record.error.as_deref().unwrap_or_default())
            ));
            self.push_record(record);
            return Flow::Stop;
        }
        self.observe(planned, &mut record).await;
        record.duration_ms = started.elapsed().as_millis() as u64;
        finish_line(progress, &record);
        self.push_settles(record, settled);
        Flow::Continue
    }

    /// A step of the plan's own (setting up a twin's surface, recreating its stored
    /// objects), recorded, timed and watched as the engine's steps are. `work` returns
    /// its value and a problem that did not stop it (kept as the step's error).
    pub async fn custom<T>(
        &mut self,
        title: &str,
        work: impl Future<Output = anyhow::Result<(T, Option<String>)>>,
    ) -> Option<T> {
        let started = Instant::now();
        let mut record = self.record(title);
        let progress = self.progress_line(title);
        let liveness = self.at.cluster.liveness();
        let value = match watched(&liveness, work).await {
            Watched::Done(Ok((value, problem))) => {
                record.error = problem;
                Some(value)
            }
            Watched::Done(Err(e)) => {
                record.error = Some(format!("{e:#}"));
                None
            }
            Watched::Died(dead) => {
                record.error = Some(dead);
                None
            }
        };
        record.duration_ms = started.elapsed().as_millis() as u64;
        finish_line(progress, &record);
        self.push_record(record);
        value
    }

    /// The records so far (a plan decides on what its earlier steps did).
    pub fn records(&self) -> &[StepRecord] {
        &self.records
    }

    /// The cluster the run works on.
    pub fn cluster(&self) -> &Cluster {
        self.at.cluster
    }

    /// Ends a run that sets up where later runs start (a twin's installs): its records
    /// and the releases' manifests, without the conclusion's snapshot and evidence.
    pub fn finish(self) -> (Vec<StepRecord>, String) {
        self.driver.stop();
        (self.records, join_manifests(&self.manifests))
    }

    /// Ends the run: every component must still run; then the snapshot after, the
    /// control plane's evidence, and the orphan probe in each of the run's namespaces
    /// (while the webhooks are still as the plan left them).
    pub async fn conclude(self) -> anyhow::Result<Concluded> {
        let Run {
            at,
            releases,
            driver,
            records,
            manifests,
            objects_after_step,
            seen,
            ..
        } = self;
        let dead = at.cluster.dead_components().await;
        anyhow::ensure!(dead.is_empty(), "{}", dead.join("; "));
        let client = at.cluster.client();
        let everything = SnapshotScope {
            namespace: None,
            noise: at.noise.clone(),
        };
        let after = match snapshot::take(&client, &everything).await {
            Ok(after) => after,
            Err(e) => {
                // A component killed after the check above shows first as a reset
                // connection and a moment later as an exit: the death is the cause.
                let liveness = at.cluster.liveness();
                if let Ok(seen) = tokio::time::timeout(DEATH_NOTICE, liveness.until_dead()).await {
                    let dead = at.cluster.dead_components().await;
                    anyhow::bail!(
                        "{}",
                        if dead.is_empty() {
                            seen
                        } else {
                            dead.join("; ")
                        }
                    );
                }
                return Err(e).context("snapshot after the run");
            }
        };
        driver.stop();
        std::fs::create_dir_all(&at.dir)
            .with_context(|| format!("creating {}", at.dir.display()))?;
        let mut log_evidence = super::log_evidence(at.cluster, &at.dir).await;
        let namespaces: BTreeSet<&String> = releases.iter().map(|r| &r.namespace).collect();
        if let Ok(gc) = at.cluster.impersonating(dry_run::GC_USER).await {
            for ns in namespaces {
                log_evidence.extend(dry_run::probe_orphans(&client, &gc, ns, &after).await);
            }
        }
        Ok(Concluded {
            steps: records,
            manifest: join_manifests(&manifests),
            objects_after_step,
            seen,
            after,
            log_evidence,
        })
    }

    fn record(&self, title: &str) -> StepRecord {
        StepRecord {
            index: self.records.len(),
            title: title.to_string(),
            version: self.version(),
            helm: None,
            dry_run: None,
            settle: None,
            rollout: None,
            error: None,
            duration_ms: 0,
        }
    }

    fn progress_line(&self, title: &str) -> crate::progress::Step {
        self.at.progress.step(format!("[{}] {title}", self.label))
    }

    fn helm(&self) -> Helm {
        Helm::new(
            &self.at.cluster.helm(),
            &self.at.cluster.kubeconfig(),
            &self.at.helm_home,
        )
        .context(self.at.cluster.context())
        .skip_crds(self.at.cluster.shared())
    }

    /// Does what `action` says, into `record`. A settle of several namespaces returns
    /// their reports (each becomes a record of its own).
    async fn act(
        &mut self,
        action: &Action,
        record: &mut StepRecord,
    ) -> anyhow::Result<Vec<(String, settle::SettleReport)>> {
        match action {
            Action::Helm { release, step } => {
                record.helm = Some(self.helm_call(*release, step, record.index).await?);
            }
            Action::ServerDryRun { release, action } => {
                record.dry_run = Some(self.server_dry_run(*release, *action).await?);
            }
            Action::SetWebhook { hook, spec } => {
                crate::failpoint::pause_at("webhook-switch").await;
                anyhow::ensure!(
                    self.at.server.kind(hook).is_some(),
                    "webhook {hook} is not registered in this run: its configuration or CRD was not created"
                );
                self.at.server.set(hook, spec.clone()).await?;
            }
            Action::RestartControllerManager => {
                self.at.cluster.restart_controller_manager().await?
            }
            Action::RestartApiServer => self.at.cluster.restart_apiserver().await?,
            Action::Upgrade => {
                anyhow::ensure!(
                    !self.at.upgrade_to.is_empty(),
                    "an `upgrade` step needs a target version"
                );
                // One minor at a time, as AKS upgrades: each an in-place upgrade.
                for target in self.at.upgrade_to {
                    self.at.cluster.upgrade(target.clone()).await?;
                }
            }
            Action::RollNodes(spec) => {
                record.rollout = Some(self.roll_nodes(spec).await?);
            }
            Action::Settle { timeout } => {
                crate::failpoint::pause_at("settle").await;
                let mut settled = self.settle(*timeout).await;
                if settled.len() == 1 {
                    record.settle = settled.pop().map(|(_, s)| s);
                }
                return Ok(settled);
            }
        }
        Ok(Vec::new())
    }

    /// Rolls the node pools: new nodes join from preflight's node image of the version
    /// the control plane runs now (after an `upgrade` step, the target).
    async fn roll_nodes(
        &mut self,
        spec: &crate::scenario::RollNodes,
    ) -> anyhow::Result<preflight_core::rollout::RolloutRecord> {
        use crate::rollout::{self, Clients, RollOptions};
        let (max_surge, undrainable) = spec.parsed().map_err(anyhow::Error::msg)?;
        let Cluster::Kind(kind) = &mut *self.at.cluster else {
            anyhow::bail!(
                "rollNodes needs nodes preflight owns and real kubelets: run it with --provider kind"
            );
        };
        let kubeconfig = kind.kubeconfig();
        let config = crate::cluster::local::config_from_kubeconfig(&kubeconfig, None, None).await?;
        let clients = Clients {
            api: kind.client(),
            evictions: crate::drain::client_without_retries(config)?,
        };
        let to = kind.version().to_string();
        let from = match rollout::pools(&clients.api)
            .await?
            .values()
            .flatten()
            .next()
        {
            Some(n) => n
                .status
                .as_ref()
                .and_then(|s| s.node_info.as_ref())
                .map(|i| i.kubelet_version.clone())
                .unwrap_or_default(),
            None => anyhow::bail!(
                "rollNodes: the cluster has no node labelled with an AKS pool: declare `nodes` in the scenario"
            ),
        };
        let opts = RollOptions {
            max_surge,
            undrainable,
            drain: crate::drain::DrainOptions {
                timeout: Duration::from_secs(spec.drain_timeout_seconds.into()),
                ..Default::default()
            },
            comeback: Duration::from_secs(spec.comeback_seconds.into()),
            ..RollOptions::new(from, to)
        };
        // The node image of the version the control plane runs now (the user's
        // `--kind-image` template too).
        let image = kind.node_image_for(&kind.version().clone()).ok_or_else(|| {
            anyhow::anyhow!(
                "rollNodes: the cluster's node image does not name its version, so the image new nodes join from cannot be told"
            )
        })?;
        let mut nodes = rollout::kind::KindNodes {
            cluster: kind,
            image,
        };
        Ok(rollout::roll(&mut nodes, &clients, &opts, self.at.progress).await?)
    }

    async fn helm_call(
        &self,
        release: usize,
        step: &HelmStep,
        index: usize,
    ) -> anyhow::Result<helm::HelmRun> {
        if step.dry_run == HelmDryRun::None {
            match step.action {
                HelmAction::Install => crate::failpoint::pause_at("install").await,
                HelmAction::Uninstall => crate::failpoint::pause_at("uninstall").await,
                _ => {}
            }
        }
        let r = self.release(release)?.clone();
        let mut values = r.values.clone();
        if let Some(v) = &step.values {
            let path = self.at.dir.join(format!("values-step-{index}.json"));
            std::fs::write(&path, serde_json::to_string_pretty(v)?)
                .with_context(|| format!("writing {}", path.display()))?;
            values.push(path);
        }
        let (helm, step) = (self.helm(), step.clone());
        Ok(tokio::task::spawn_blocking(move || {
            helm.step(&step, &r.name, &r.namespace, &r.chart, &values)
        })
        .await?)
    }

    async fn server_dry_run(
        &self,
        release: usize,
        action: DryRunAction,
    ) -> anyhow::Result<dry_run::DryRunReport> {
        let r = self.release(release)?.clone();
        let client = self.at.cluster.client();
        let helm = self.helm();
        match action {
            DryRunAction::Install => {
                let kv = self.version();
                let (name, ns, chart, values) = (r.name, r.namespace.clone(), r.chart, r.values);
                let rendered = tokio::task::spawn_blocking(move || {
                    helm.template(&name, &ns, &chart, &values, &kv)
                })
                .await?;
                anyhow::ensure!(
                    rendered.exit_code == 0,
                    "helm template failed: {}",
                    rendered.stderr.trim()
                );
                let manifests =
                    helm::split_manifest(&rendered.stdout).map_err(anyhow::Error::msg)?;
                Ok(dry_run::install(&client, &r.namespace, &manifests).await?)
            }
            DryRunAction::Uninstall => {
                let (name, ns) = (r.name, r.namespace.clone());
                let manifest =
                    tokio::task::spawn_blocking(move || helm.manifest(&name, &ns)).await?;
                anyhow::ensure!(
                    manifest.exit_code == 0,
                    "helm get manifest failed: {}",
                    manifest.stderr.trim()
                );
                let manifests =
                    helm::split_manifest(&manifest.stdout).map_err(anyhow::Error::msg)?;
                let current = snapshot::take(
                    &client,
                    &SnapshotScope {
                        namespace: Some(r.namespace.clone()),
                        ..Default::default()
                    },
                )
                .await?;
                let gc_client = self.at.cluster.impersonating(dry_run::GC_USER).await?;
                Ok(
                    dry_run::uninstall(&client, &gc_client, &r.namespace, &manifests, &current)
                        .await?,
                )
            }
        }
    }

    /// Every namespace of the run settled side by side, ended on the evidence of the
    /// version running now (see [`settle::settle`]).
    async fn settle(&self, timeout: Duration) -> Vec<(String, settle::SettleReport)> {
        let cluster = &*self.at.cluster;
        let client = cluster.client();
        let metrics = cluster.gc_metrics();
        let gc_log = || futures::FutureExt::boxed(cluster.component_log("kube-controller-manager"));
        let initial_sync = Some(settle::GcInitialSync::of(cluster.version()));
        let namespaces = self.namespaces();
        let reports = futures::future::join_all(namespaces.iter().map(|ns| {
            settle::settle(
                &client,
                ns,
                &self.at.noise,
                timeout,
                metrics.as_ref(),
                &gc_log,
                initial_sync,
            )
        }))
        .await;
        namespaces.into_iter().zip(reports).collect()
    }

    /// After each step: the manifest and admission policies of a release the step
    /// installed or upgraded, the run's namespaces as they now are, and the webhooks
    /// that can now be registered.
    async fn observe(&mut self, planned: &Planned, record: &mut StepRecord) {
        let client = self.at.cluster.client();
        if let (Some(h), Action::Helm { release, step }) = (&record.helm, &planned.action)
            && h.exit_code == 0
            && step.action.applies_chart()
            && step.dry_run == HelmDryRun::None
            && let Ok(r) = self.release(*release)
        {
            let (helm, name, ns) = (self.helm(), r.name.clone(), r.namespace.clone());
            if let Ok(got) = tokio::task::spawn_blocking(move || helm.manifest(&name, &ns)).await
                && got.exit_code == 0
            {
                self.manifests.insert(*release, got.stdout);
            }
            // A policy the release just created is enforced only once the API server
            // has loaded it (see `policies`): the next step must meet it in force.
            let names = self
                .manifests
                .get(release)
                .and_then(|m| helm::split_manifest(m).ok())
                .map(|objects| policies::validating_policies(&objects))
                .unwrap_or_default();
            policies::wait_in_force(&client, &names).await;
        }
        let mut objects = 0;
        for ns in self.namespaces() {
            let scope = SnapshotScope {
                namespace: Some(ns),
                noise: self.at.noise.clone(),
            };
            if let Ok(snap) = snapshot::take(&client, &scope).await {
                objects += snap.objects.len();
                for o in snap.objects {
                    self.seen.insert(o.uid.clone(), o);
                }
            }
        }
        self.objects_after_step.push(objects);
        // A conversion webhook can be registered once the chart has created its CRD.
        if let Some(registration) = self.at.registration.as_deref_mut()
            && let Err(e) = registration.register_pending(&client, self.at.server).await
        {
            record.error.get_or_insert_with(|| e.to_string());
        }
    }

    /// A settle of several namespaces is recorded as one step per namespace.
    fn push_settles(&mut self, record: StepRecord, settled: Vec<(String, settle::SettleReport)>) {
        if settled.is_empty() {
            self.push_record(record);
            return;
        }
        for (ns, s) in settled {
            let mut r = self.record(&format!("settle {ns}"));
            r.duration_ms = s.duration_ms;
            r.settle = Some(s);
            r.error = record.error.clone();
            self.push_record(r);
        }
    }

    fn release(&self, index: usize) -> anyhow::Result<&Release> {
        self.releases
            .get(index)
            .with_context(|| format!("the plan names release {index}, which the run has not"))
    }
}

/// Writes a run's outcome beside its other records.
pub fn write_outcome(dir: &Path, outcome: &super::Outcome) -> anyhow::Result<()> {
    let path = dir.join("outcome.json");
    std::fs::write(&path, serde_json::to_string_pretty(outcome)?)
        .with_context(|| format!("writing {}", path.display()))
}

fn join_manifests(manifests: &BTreeMap<usize, String>) -> String {
    match manifests.len() {
        0 => String::new(),
        1 => manifests.values().next().cloned().unwrap_or_default(),
        _ => manifests.values().map(|m| format!("{m}\n---\n")).collect(),
    }
}

/// How long a failed call waits to learn whether a component died behind it: a local
/// process's exit shows within a moment of its connections' reset, a kind node's
/// within one of [`Liveness::until_dead`]'s two-second checks.
const DEATH_NOTICE: Duration = Duration::from_secs(3);

enum Watched<T> {
    Done(T),
    Died(String),
}

/// `work`, cut short when a watched component dies.
async fn watched<T>(liveness: &Liveness, work: impl Future<Output = T>) -> Watched<T> {
    tokio::select! {
        biased;
        dead = liveness.until_dead() => Watched::Died(dead),
        r = work => Watched::Done(r),
    }
}

/// A step's progress line, ended with helm's exit code or the error.
fn finish_line(progress: crate::progress::Step, record: &StepRecord) {
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
}
