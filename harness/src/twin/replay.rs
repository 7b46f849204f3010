//! Replaying a twin (`preflight run DIR`): its admission surface and releases on
//! control planes at the source and target versions.
//!
//! Each version's control plane is set up once: the captured namespaces (with their
//! labels), CRDs, admission policies and webhook configurations are recreated as they
//! were, with only each webhook's `clientConfig` pointed at preflight's own server (one
//! hook per captured webhook), so the API server applies the real rules, selectors,
//! match conditions and timeouts. Then every release is installed with its captured
//! chart and values, and the state is saved (etcd's data, see
//! `LocalCluster::save_state`). Each pass restores that state on fresh components and
//! uninstalls every release ([`Reset::Restore`]); [`Reset::Reinstall`] (and kind, which
//! has no saved state) gives each pass a new cluster, installed again.
//!
//! The healthy pass has every webhook answer `allow`. Which webhooks matter is decided
//! from the installed cluster: an admission webhook whose rules and selectors send it a
//! DELETE of an object the releases really created (decided as the API server decides,
//! with `audit::selection`), a conversion webhook whose CRD has objects the releases
//! created. Each of those gets a failure pass per mode (default: unreachable) in which
//! that one webhook fails during uninstall; a conversion webhook's pass restarts the
//! API server and the controller manager after it breaks, as every upgrade does.
//!
//! Each pass becomes an ordinary run (an [`Outcome`]), so leftovers, causes, the
//! comparison across versions and the reports are the same as for scenario files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

use super::health::Health;
pub use super::load::Surface;
use super::manifest::{Twin, TwinRelease};
use crate::audit::selection::{self, Labels, Webhook};
use crate::behaviour::{Behaviour, BehaviourSpec, WebhookKind};
use crate::cluster::local::SavedState;
use crate::cluster::{Cluster, KindCluster, KindConfig, LocalCluster, LocalConfig};
use crate::components::Components;
use crate::components::kind_image::WORKLOAD_IMAGE;
use crate::exercise::engine::{Action, Flow, Planned, Release, Run, Setting};
use crate::exercise::{self, Outcome, StepRecord};
use crate::progress::Progress;
use crate::runner::{Role, RunResult, Timings};
use crate::scenario::{Chart, ChartSource, HelmAction, HelmDryRun, HelmStep, Scenario};
use crate::snapshot::{self, Noise, Snapshot, SnapshotScope};
use crate::webhook::{self as register, ImageStandIn, WebhookServer, in_cluster};

/// One webhook made to fail in a pass.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Failure {
    /// The hook's name on preflight's server (`config:webhook`, `crd:name`).
    pub hook: String,
    pub conversion: bool,
    pub behaviour: Behaviour,
    /// Why it matters: the first object it is called for.
    pub because: String,
}

/// What a pass asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassKind {
    /// The cluster as captured: the webhooks that were failing fail the same way, the
    /// control plane restarts as the upgrade restarts it, every release is uninstalled.
    AsIs,
    /// Every webhook allows: the reference.
    Healthy,
    /// One webhook fails during uninstall.
    Failing,
}

/// One pass over the twin.
#[derive(Clone, Debug)]
pub struct Pass {
    pub name: String,
    pub kind: PassKind,
    /// The webhooks that fail in it (one for [`PassKind::Failing`], those failing when
    /// captured for [`PassKind::AsIs`]).
    pub failures: Vec<Failure>,
}

impl Pass {
    fn healthy() -> Pass {
        Pass {
            name: "healthy".into(),
            kind: PassKind::Healthy,
            failures: Vec::new(),
        }
    }

    /// The cluster as captured (see [`PassKind::AsIs`]).
    fn as_is(twin: &Twin) -> Pass {
        let failures = twin
            .webhooks
            .iter()
            .filter(|w| w.health.is_failing())
            .map(|w| Failure {
                hook: w.hook.clone(),
                conversion: w.hook.starts_with("crd:"),
                behaviour: match w.health {
                    Health::Failing => Behaviour::Error,
                    _ => Behaviour::Unreachable,
                },
                because: format!("{} when captured: {}", w.health.word(), w.evidence),
            })
            .collect();
        Pass {
            name: AS_IS.into(),
            kind: PassKind::AsIs,
            failures,
        }
    }

    /// Whether the control plane restarts before the uninstalls: always as captured
    /// (the upgrade restarts it), and when a conversion webhook fails (its effect on
    /// the garbage collector shows only once the controller manager starts again).
    fn restarts(&self) -> bool {
        self.kind == PassKind::AsIs || self.failures.iter().any(|f| f.conversion)
    }

    fn failing(f: Failure) -> Pass {
        let mode = format!("{:?}", f.behaviour).to_lowercase();
        let mut name: String = format!("{}-{mode}", f.hook)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        if name.len() > 63 {
            let cut = name.len() - 63;
            name.drain(..cut);
        }
        Pass {
            name: name.trim_matches('-').to_string(),
            kind: PassKind::Failing,
            failures: vec![f],
        }
    }

    /// The pass as a scenario, for the reports.
    fn scenario(&self, twin: &Twin) -> Scenario {
        let description = match (self.kind, self.failures.first()) {
            (PassKind::AsIs, _) => format!(
                "twin {}: as captured ({}); the control plane restarts as the upgrade restarts it, then {} are uninstalled",
                twin.dir.display(),
                failing_now(&self.failures),
                release_names(twin)
            ),
            (_, None) => format!(
                "twin {}: every captured webhook allows; install and uninstall {}",
                twin.dir.display(),
                release_names(twin)
            ),
            (_, Some(f)) => format!(
                "twin {}: if webhook {} is {} during uninstall of {} ({})",
                twin.dir.display(),
                f.hook,
                format!("{:?}", f.behaviour).to_lowercase(),
                release_names(twin),
                f.because
            ),
        };
        Scenario {
            name: self.name.clone(),
            description,
            origin: twin.dir.join("twin.yaml").display().to_string(),
            source_version: None,
            target_version: None,
            chart: Chart {
                source: ChartSource::Dir(twin.dir.clone()),
                values: json!({}),
                values_files: Vec::new(),
                place: Default::default(),
                prepared: None,
            },
            release: crate::scenario::Release::named(&self.name),
            webhooks: Vec::new(),
            steps: Vec::new(),
            nodes: Vec::new(),
            expect: Default::default(),
        }
    }
}

/// The pass's name for the cluster as captured.
pub const AS_IS: &str = "as-is";

/// "webhook `a` unreachable, webhook `b` failing", or that every webhook answered.
fn failing_now(failures: &[Failure]) -> String {
    if failures.is_empty() {
        return "every captured webhook answered when captured".into();
    }
    failures
        .iter()
        .map(|f| format!("webhook `{}` {}", f.hook, mode(f.behaviour)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn mode(b: Behaviour) -> String {
    format!("{b:?}").to_lowercase()
}

fn release_names(twin: &Twin) -> String {
    twin.releases
        .iter()
        .map(|r| format!("{}/{}", r.namespace, r.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How each pass of a replay starts from the twin installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reset {
    /// Set up and install once per version, save etcd's data, and restore it for each
    /// pass (N passes cost N restores, not N installs).
    Restore,
    /// A new control plane per pass, set up and installed again (the baseline the
    /// restore is measured against).
    Reinstall,
}

/// Where a replay's control planes run.
#[derive(Clone, Debug)]
pub enum ReplayOn {
    /// Local control planes (no kubelet; hook Jobs' Pods completed by a stand-in).
    Local,
    /// kind clusters (real kubelets): the kind CLI and a node image template
    /// (`None`: preflight's own node images). A pass per cluster: no saved state.
    /// `workers`: the cluster's worker nodes (none: one node runs everything).
    Kind {
        kind: PathBuf,
        image: Option<String>,
        workers: Vec<crate::cluster::NodeSpec>,
    },
}

/// Knobs of a replay.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// How the failing webhook fails (one failure pass per mode).
    pub modes: Vec<Behaviour>,
    /// How each pass starts from the releases installed.
    pub reset: Reset,
    /// Where the control planes run.
    pub on: ReplayOn,
    /// A short unique id (kind clusters' names).
    pub run_id: String,
    pub parallel: usize,
    pub keep: bool,
    pub progress: Progress,
    pub noise: Noise,
    /// How much the Pods' requests are scaled (a rehearsal's node sizes, see
    /// `preflight_core::sizing`; the default changes nothing).
    pub scale: preflight_core::sizing::Scale,
}

/// What a replay produced: the passes as scenarios (for the reports), their runs, and
/// per pass and release what the uninstall did.
#[derive(Debug)]
pub struct Replayed {
    pub scenarios: Vec<Scenario>,
    pub results: Vec<RunResult>,
    pub headlines: Vec<String>,
}

/// Replays `twin` on `source` and `target`: the healthy pass, then one pass per
/// webhook that matters and mode.
pub async fn replay(
    twin: &Twin,
    source: &Components,
    target: &Components,
    opts: &ReplayOptions,
) -> anyhow::Result<Replayed> {
    let surface = Arc::new(Surface::load(twin)?);
    let healthy = Pass::healthy();
    // Which webhooks matter, on either version (one pass each, whichever version
    // found it first names the object it is called for).
    let mut failures: BTreeMap<String, Failure> = BTreeMap::new();
    let mut note = |found: &BTreeSet<Failure>| {
        for f in found {
            failures.entry(f.hook.clone()).or_insert(f.clone());
        }
    };
    let mut results = Vec::new();
    let mut installed = None;
    match opts.reset {
        Reset::Restore => {
            let got = install_each_version(twin, &surface, source, target, opts).await;
            for (_, i) in &got {
                if let Ok((i, _)) = i {
                    note(&i.found);
                }
            }
            installed = Some(got);
        }
        Reset::Reinstall => {
            let got = run_fresh(
                twin,
                &surface,
                std::slice::from_ref(&healthy),
                0,
                source,
                target,
                opts,
            )
            .await;
            for (r, found) in got {
                note(&found);
                results.push(r);
            }
        }
    }
    let mut failing = Vec::new();
    for f in failures.into_values() {
        for mode in &opts.modes {
            failing.push(Pass::failing(Failure {
                behaviour: *mode,
                ..f.clone()
            }));
        }
    }
    if failing.is_empty() {
        opts.progress
            .println("no captured webhook is called for what the releases created: only the healthy pass runs");
    }
    let mut passes = vec![Pass::as_is(twin), healthy];
    passes.extend(failing);
    match installed {
        Some(installed) => results.extend(run_restored(twin, installed, &passes, opts).await),
        None => {
            // The healthy pass ran first (it found which webhooks matter).
            let rest: Vec<Pass> = passes
                .iter()
                .filter(|p| p.kind != PassKind::Healthy)
                .cloned()
                .collect();
            results.extend(
                run_fresh(twin, &surface, &rest, 1, source, target, opts)
                    .await
                    .into_iter()
                    .map(|(r, _)| r),
            )
        }
    }
    let mut all = Vec::new();
    let scenarios = passes
        .iter()
        .map(|p| {
            let mut s = p.scenario(twin);
            let lines = headlines(p, twin, &results);
            if !lines.is_empty() {
                s.description = format!("{}. {}", s.description, lines.join(". "));
            }
            all.extend(lines);
            s
        })
        .collect();
    Ok(Replayed {
        scenarios,
        results,
        headlines: all,
    })
}

/// Per release, what its uninstall did in a pass on each version, from the runs:
/// "if webhook W is unreachable during uninstall, `helm uninstall shop` exits 0 and
/// leaves 1 ReplicaSet, 2 Pods on v1.30.14 (the same on v1.29.15)".
pub fn headlines(pass: &Pass, twin: &Twin, results: &[RunResult]) -> Vec<String> {
    let runs: Vec<&Outcome> = results
        .iter()
        .filter(|r| r.scenario == pass.name)
        .filter_map(|r| r.outcome.as_ref().ok())
        .collect();
    let condition = match (pass.kind, pass.failures.first()) {
        (PassKind::AsIs, _) => "if you upgrade now".to_string(),
        (_, None) => "with every webhook healthy".to_string(),
        (_, Some(f)) => format!(
            "if webhook `{}` is {} during uninstall",
            f.hook,
            mode(f.behaviour)
        ),
    };
    let mut out = Vec::new();
    if pass.kind == PassKind::AsIs && !runs.is_empty() {
        out.push(format!("as captured: {}", failing_now(&pass.failures)));
    }
    for r in &twin.releases {
        let per_version: Vec<(String, String)> = runs
            .iter()
            .map(|o| {
                let alone = twin
                    .releases
                    .iter()
                    .filter(|x| x.namespace == r.namespace)
                    .count()
                    == 1;
                (o.start_version.clone(), release_outcome(o, r, alone))
            })
            .collect();
        let Some((first_version, first)) = per_version.first() else {
            continue;
        };
        if first.is_empty() {
            continue;
        }
        let others: Vec<String> = per_version[1..]
            .iter()
            .map(|(v, what)| {
                if what == first {
                    format!("the same on {v}")
                } else {
                    format!("on {v} it {what}")
                }
            })
            .collect();
        out.push(format!(
            "{condition}, `helm uninstall {}` {first} on {first_version}{}",
            r.name,
            if others.is_empty() {
                String::new()
            } else {
                format!(" ({})", others.join("; "))
            }
        ));
    }
    out
}

/// "exits 0 and leaves 1 ReplicaSet, 2 Pods" for release `r` in one run. `alone`: no
/// other release shares its namespace, so what Helm did not annotate there (hooks)
/// is its own.
fn release_outcome(o: &Outcome, r: &TwinRelease, alone: bool) -> String {
    let exit = o
        .steps
        .iter()
        .filter_map(|s| s.helm.as_ref())
        .find(|h| {
            h.step
                .as_ref()
                .is_some_and(|c| c.action == HelmAction::Uninstall && c.release == r.name)
        })
        .map(|h| h.exit_code);
    let Some(exit) = exit else {
        return String::new();
    };
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for l in crate::verdict::leftovers(o) {
        if !l.reason.is_failure() || l.namespace.as_deref() != Some(r.namespace.as_str()) {
            continue;
        }
        let owner = release_of(o, &l);
        if owner.as_deref() != Some(r.name.as_str()) && !(owner.is_none() && alone) {
            continue;
        }
        *kinds.entry(l.kind.clone()).or_default() += 1;
    }
    if kinds.is_empty() {
        return format!("exits {exit} and leaves nothing unexpected");
    }
    let parts: Vec<String> = kinds
        .iter()
        .map(|(k, n)| format!("{n} {k}{}", if *n == 1 { "" } else { "s" }))
        .collect();
    format!("exits {exit} and leaves {}", parts.join(", "))
}

/// The release a leftover belongs to: Helm's `meta.helm.sh/release-name` on it or on
/// the top of its owner chain (a Pod of a ReplicaSet of the release's Deployment).
fn release_of(o: &Outcome, l: &crate::verdict::Leftover) -> Option<String> {
    let annotated = |kind: &str, name: &str| {
        o.seen
            .values()
            .find(|s| s.kind == kind && s.name == name && s.namespace == l.namespace)
            .and_then(|s| s.helm_annotations.get("meta.helm.sh/release-name").cloned())
    };
    annotated(&l.kind, &l.name).or_else(|| {
        l.owner_chain
            .iter()
            .rev()
            .find_map(|owner| annotated(&owner.kind, &owner.name))
    })
}

/// A control plane with the twin's surface set up and its releases installed: where
/// every pass starts.
struct Installed {
    cluster: Cluster,
    server: WebhookServer,
    dir: PathBuf,
    version: String,
    before: Snapshot,
    installed: Snapshot,
    manifest: String,
    /// The set-up and install steps (each pass's record starts with them).
    steps: Vec<StepRecord>,
    /// What the webhooks were asked during set-up and installs.
    requests: Vec<crate::webhook::Record>,
    /// The webhooks that matter for what the releases created.
    found: BTreeSet<Failure>,
    /// Time to start the control plane, and to set up and install.
    start: Duration,
    install: Duration,
    /// On kind: the webhook that runs preflight's workload image where no node holds
    /// a Pod's image (served as long as the cluster is exercised).
    images: Option<ImageStandIn>,
}

/// Starts the `role`'s control plane (the `index`th of the replay; `pass` names it
/// when it serves one pass only) and installs the twin on it.
async fn start_installed(
    twin: &Twin,
    surface: &Surface,
    pass: Option<&str>,
    role: Role,
    index: usize,
    comps: &Components,
    opts: &ReplayOptions,
) -> anyhow::Result<Installed> {
    let started = Instant::now();
    let role = role_name(role);
    let cluster = match &opts.on {
        ReplayOn::Local => {
            let name = match pass {
                Some(p) => format!("twin-{p}-{role}"),
                None => format!("twin-{role}"),
            };
            let mut config = LocalConfig::new(name, comps.clone());
            config.keep = opts.keep;
            config.progress = opts.progress.clone();
            Cluster::Local(Box::new(
                LocalCluster::start(config)
                    .await
                    .context("starting the control plane")?,
            ))
        }
        ReplayOn::Kind {
            kind,
            image,
            workers,
        } => {
            let name = crate::cluster::kind::cluster_name(&format!("{}{index}", opts.run_id), role);
            let mut config = KindConfig::for_components(
                name.clone(),
                comps,
                image.as_deref(),
                kind.clone(),
                opts.keep,
            );
            config.workers = workers.clone();
            Cluster::Kind(
                KindCluster::create(config, &opts.progress)
                    .await
                    .context("creating the kind cluster")?,
            )
        }
    };
    let start = started.elapsed();
    let mut inst = install(cluster, twin, surface, opts).await?;
    inst.start = start;
    Ok(inst)
}

/// Sets up the twin's surface on `cluster` and installs every release: a plan for the
/// exercise engine, with the twin's own steps (the surface, the stored objects, the
/// webhooks pointed at preflight's server once their release created them).
async fn install(
    mut cluster: Cluster,
    twin: &Twin,
    surface: &Surface,
    opts: &ReplayOptions,
) -> anyhow::Result<Installed> {
    let started = Instant::now();
    let dir = cluster.dir().join("replay");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let client = cluster.client();
    let version = cluster.version().to_string();
    let on_kind = matches!(cluster, Cluster::Kind(_));
    // On worker nodes (a rehearsal) each captured webhook's backend runs on them, where
    // a drain evicts it; elsewhere every webhook is served from outside the cluster.
    let backends = match &opts.on {
        ReplayOn::Kind { workers, .. } if on_kind && !workers.is_empty() => {
            let (backends, outside) = super::backends::in_cluster(twin)?;
            for b in &backends {
                opts.progress.println(format!(
                    "webhook(s) {} served inside the cluster: {} Pod(s) of Deployment {}/{} behind Service {}/{}",
                    b.hook_names(),
                    b.replicas,
                    b.namespace,
                    b.stand_in(),
                    b.namespace,
                    b.stand_in()
                ));
            }
            for note in outside {
                opts.progress.println(note);
            }
            backends
        }
        _ => Vec::new(),
    };
    let names: Vec<String> = backends.iter().map(|b| b.dns_name()).collect();
    let server =
        WebhookServer::with_names(&dir.join("webhooks"), cluster.webhook_bind(), &[], &names)
            .await?;
    let releases = releases(twin);
    let setting = setting(&mut cluster, &server, dir.clone(), &dir, opts, &[]);
    let mut run = Run::new(
        setting,
        format!("install @ {version}"),
        releases.clone(),
        Vec::new(),
    );
    // Kind nodes reach no registry: a captured image would never be pulled.
    let images = if on_kind {
        let title = "run preflight's workload image where no node holds a Pod's image";
        let started = run
            .custom(title, async {
                let images =
                    ImageStandIn::start(&server, &client, WORKLOAD_IMAGE, opts.scale).await?;
                Ok((images, None))
            })
            .await;
        if started.is_none() {
            let why = run.records().last().and_then(|r| r.error.clone());
            anyhow::bail!("{title}: {}", why.unwrap_or_default());
        }
        started
    } else {
        None
    };
    let set_up = run
        .custom(
            "set up the twin's namespaces and admission surface",
            async {
                let notes = set_up(&client, &server, surface, twin, &backends).await?;
                Ok(((), (!notes.is_empty()).then(|| notes.join("; "))))
            },
        )
        .await;
    if set_up.is_none() {
        let why = run.records().last().and_then(|r| r.error.clone());
        anyhow::bail!("setting up the twin: {}", why.unwrap_or_default());
    }

    // Stored objects the cluster had before the releases (unowned, or owned by each
    // other) are part of the start; those a release's object owns come after it.
    let deferred = recreate_stored(&mut run, &client, surface, None, &opts.progress)
        .await
        .deferred;
    let everything = scope(opts);
    let before = snapshot::take(&client, &everything)
        .await
        .context("snapshot before the installs")?;
    install_releases(&mut run, &releases, twin, surface, &server).await;
    let unowned = recreate_stored(&mut run, &client, surface, Some(deferred), &opts.progress)
        .await
        .unowned;
    // The controllers' work (ReplicaSets, Pods) is part of what was installed.
    if let Some(m) = run.cluster().gc_metrics() {
        m.wait_idle(Duration::from_secs(60)).await;
    }
    let installed = quiet(&client, &everything).await;
    let (steps, manifest) = run.finish();
    let installed = installed?;
    // Stored objects whose owners are outside the twin were there before the releases.
    let mut before = before;
    before.objects.extend(
        installed
            .objects
            .iter()
            .filter(|o| unowned.contains(&o.uid))
            .cloned(),
    );
    let found = relevant(&client, surface, twin.aks, &before, &installed).await?;
    Ok(Installed {
        cluster,
        requests: server.take_records(),
        server,
        dir,
        version,
        before,
        installed,
        manifest,
        steps,
        found,
        start: Duration::ZERO,
        install: started.elapsed(),
        images,
    })
}

/// Every release installed in order, each one's webhooks and CRDs pointed at
/// preflight's server as soon as the release has created them.
async fn install_releases(
    run: &mut Run<'_>,
    releases: &[Release],
    twin: &Twin,
    surface: &Surface,
    server: &WebhookServer,
) {
    let client = run.cluster().client();
    let order = install_order(&twin.releases);
    for (i, r) in releases.iter().enumerate() {
        let install = helm_step(i, r, HelmAction::Install);
        if run.step(&install).await == Flow::Stop {
            break;
        }
        let installed = run
            .records()
            .last()
            .and_then(|rec| rec.helm.as_ref())
            .is_some_and(|h| h.exit_code == 0);
        let release = order[i];
        if installed
            && surface
                .crds
                .iter()
                .chain(&surface.validating)
                .chain(&surface.mutating)
                .any(|o| is_release(owner(&o.object, twin), release))
        {
            let title = format!("point the webhooks of {} at preflight's server", r.name);
            run.custom(&title, async {
                register_crds_and_webhooks(&client, server, surface, twin, |o| {
                    is_release(o, release)
                })
                .await?;
                Ok(((), None))
            })
            .await;
        }
    }
}

/// Recreates the twin's stored custom resources (see [`super::stored::recreate`]):
/// all of them before the installs (`after` `None`), or those deferred then once the
/// releases are installed. An object that could not be recreated fails the step.
async fn recreate_stored(
    run: &mut Run<'_>,
    client: &kube::Client,
    surface: &Surface,
    after: Option<Vec<super::stored::ObjectId>>,
    progress: &Progress,
) -> super::stored::Recreated {
    let n = match &after {
        Some(ids) => ids.len(),
        None => surface.stored.iter().map(|s| s.objects.len()).sum(),
    };
    if n == 0 {
        return Default::default();
    }
    let title = match after {
        Some(_) => format!("recreate {n} stored custom resources owned by the releases' objects"),
        None => format!("recreate {n} stored custom resources"),
    };
    let last = after.is_some();
    run.custom(&title, async {
        let done = super::stored::recreate(
            client,
            &surface.stored,
            after.as_deref(),
            &surface.crds,
            last,
        )
        .await;
        for note in &done.notes {
            progress.println(format!("  {note}"));
        }
        let wanted = n - done.deferred.len();
        let problem = (done.created < wanted).then(|| {
            format!(
                "{} of {wanted} not recreated: {}",
                wanted - done.created,
                done.notes.join("; ")
            )
        });
        Ok((done, problem))
    })
    .await
    .unwrap_or_default()
}

fn scope(opts: &ReplayOptions) -> SnapshotScope {
    SnapshotScope {
        namespace: None,
        noise: opts.noise.clone(),
    }
}

/// The twin's releases for the engine, in install order (see [`install_order`]).
fn releases(twin: &Twin) -> Vec<Release> {
    install_order(&twin.releases)
        .into_iter()
        .map(|r| Release {
            name: r.name.clone(),
            namespace: r.namespace.clone(),
            chart: r.chart.clone(),
            values: vec![r.values.clone()],
        })
        .collect()
}

/// Where the engine runs a twin's plan: its control plane and preflight's server, no
/// registrations of the engine's (the twin's are pointed at the server by the plan),
/// the records in `dir`, helm's own files in `home`.
fn setting<'a>(
    cluster: &'a mut Cluster,
    server: &'a WebhookServer,
    dir: PathBuf,
    home: &std::path::Path,
    opts: &'a ReplayOptions,
    upgrade_to: &'a [Components],
) -> Setting<'a> {
    Setting {
        cluster,
        server,
        registration: None,
        dir,
        helm_home: home.join("helm"),
        noise: opts.noise.clone(),
        progress: &opts.progress,
        upgrade_to,
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Source => "source",
        Role::Upgrade => "upgrade",
        _ => "target",
    }
}

/// [`Reset::Reinstall`]: every pass on both versions, each on a new control plane
/// that is set up and installed again, `opts.parallel` control planes at a time.
async fn run_fresh(
    twin: &Twin,
    surface: &Arc<Surface>,
    passes: &[Pass],
    first_index: usize,
    source: &Components,
    target: &Components,
    opts: &ReplayOptions,
) -> Vec<(RunResult, BTreeSet<Failure>)> {
    let sem = Arc::new(tokio::sync::Semaphore::new(opts.parallel.max(1)));
    let mut futures = Vec::new();
    for (index, pass) in passes.iter().enumerate() {
        for (role, comps) in [(Role::Source, source), (Role::Target, target)] {
            let (sem, pass, comps) = (sem.clone(), pass.clone(), comps.clone());
            futures.push(async move {
                let _permit = sem.acquire().await.expect("semaphore open");
                let mut timings = Timings::default();
                let index = first_index + index;
                let (outcome, found) = match start_installed(
                    twin,
                    surface,
                    Some(&pass.name),
                    role,
                    index,
                    &comps,
                    opts,
                )
                .await
                {
                    Ok(mut inst) => {
                        let started = Instant::now();
                        let outcome = uninstall(&mut inst, twin, &pass, opts, Vec::new())
                            .await
                            .map_err(|e| format!("{e:#}"));
                        timings.start = inst.start;
                        timings.exercise = inst.install + started.elapsed();
                        let found = std::mem::take(&mut inst.found);
                        let started = Instant::now();
                        finish(inst, opts);
                        timings.stop = started.elapsed();
                        (outcome, found)
                    }
                    Err(e) => (Err(format!("{e:#}")), BTreeSet::new()),
                };
                (
                    RunResult {
                        scenario: pass.name.clone(),
                        role,
                        at: usize::from(role == Role::Target),
                        outcome,
                        timings,
                    },
                    found,
                )
            });
        }
    }
    futures::future::join_all(futures).await
}

/// Stops an installed control plane (saying where it is kept with `--keep`).
fn finish(inst: Installed, opts: &ReplayOptions) {
    if opts.keep {
        opts.progress
            .println(format!("kept {}", inst.cluster.dir().display()));
    }
    inst.server.shutdown();
    inst.cluster.stop();
}

/// A version's control plane installed with its state saved, or why not.
type Base = Result<(Installed, SavedState), String>;

/// [`Reset::Restore`], first half: one control plane per version, set up and
/// installed once, its state saved.
async fn install_each_version(
    twin: &Twin,
    surface: &Arc<Surface>,
    source: &Components,
    target: &Components,
    opts: &ReplayOptions,
) -> Vec<(Role, Base)> {
    let sem = Arc::new(tokio::sync::Semaphore::new(opts.parallel.max(1)));
    let futures = [(Role::Source, source), (Role::Target, target)].map(|(role, comps)| {
        let sem = sem.clone();
        async move {
            let _permit = sem.acquire().await.expect("semaphore open");
            let got = async {
                let mut inst = start_installed(twin, surface, None, role, 0, comps, opts).await?;
                let state = inst
                    .cluster
                    .save_state("installed")
                    .context("saving the state after install")?;
                anyhow::Ok((inst, state))
            }
            .await
            .map_err(|e| format!("{e:#}"));
            (role, got)
        }
    });
    futures::future::join_all(futures).await
}

/// [`Reset::Restore`], second half: on each version's control plane, every pass
/// starts from the saved state after install. The versions run side by side; the
/// passes on one version one after another.
async fn run_restored(
    twin: &Twin,
    installed: Vec<(Role, Base)>,
    passes: &[Pass],
    opts: &ReplayOptions,
) -> Vec<RunResult> {
    let per_version = installed.into_iter().map(|(role, got)| async move {
        let (mut inst, state) = match got {
            Ok(x) => x,
            Err(e) => {
                return passes
                    .iter()
                    .map(|p| RunResult {
                        scenario: p.name.clone(),
                        role,
                        at: usize::from(role == Role::Target),
                        outcome: Err(e.clone()),
                        timings: Timings::default(),
                    })
                    .collect::<Vec<_>>();
            }
        };
        let mut results = Vec::new();
        for (i, pass) in passes.iter().enumerate() {
            let mut timings = Timings::default();
            if i == 0 {
                // The one start and install count once, on the first pass.
                timings.start = inst.start;
                timings.exercise = inst.install;
            }
            let started = Instant::now();
            let restored = match inst.cluster.restore_state(&state, &pass.name).await {
                Err(e) => Err(format!("restoring the state after install: {e}")),
                // Fresh controllers first sync their informers and go over every
                // object: the pass starts once they have nothing left to do, as on a
                // cluster that has been running.
                Ok(()) => match inst.cluster.gc_metrics() {
                    Some(m) if !m.wait_idle(Duration::from_secs(60)).await => Err(
                        "the controller manager still had work queued 60 s after the restore"
                            .to_string(),
                    ),
                    _ => Ok(()),
                },
            };
            let restore = started.elapsed();
            timings.start += restore;
            let outcome = match restored {
                Ok(()) => {
                    let r = StepRecord {
                        index: inst.steps.len(),
                        title: "restore the state after install (etcd's data; fresh API server and controller manager)".into(),
                        version: inst.version.clone(),
                        helm: None,
                        dry_run: None,
                        settle: None,
                        rollout: None,
                        error: None,
                        duration_ms: restore.as_millis() as u64,
                    };
                    let started = Instant::now();
                    let o = uninstall(&mut inst, twin, pass, opts, vec![r]).await;
                    timings.exercise += started.elapsed();
                    o.map_err(|e| format!("{e:#}"))
                }
                Err(e) => Err(e),
            };
            results.push(RunResult {
                scenario: pass.name.clone(),
                role,
                at: usize::from(role == Role::Target),
                outcome,
                timings,
            });
            // The next pass starts with every webhook allowing.
            if let Err((hook, e)) = allow_again(&inst.server, &pass.failures).await {
                let why = format!("making webhook {hook} allow again after pass {}: {e}", pass.name);
                results.extend(passes[i + 1..].iter().map(|p| RunResult {
                    scenario: p.name.clone(),
                    role,
                    at: usize::from(role == Role::Target),
                    outcome: Err(why.clone()),
                    timings: Timings::default(),
                }));
                break;
            }
        }
        let started = Instant::now();
        finish(inst, opts);
        if let Some(last) = results.last_mut() {
            last.timings.stop = started.elapsed();
        }
        results
    });
    futures::future::join_all(per_version)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Makes every webhook of `failures` (that the server serves) allow again.
async fn allow_again(
    server: &WebhookServer,
    failures: &[Failure],
) -> Result<(), (String, crate::webhook::WebhookError)> {
    for f in failures.iter().filter(|f| server.kind(&f.hook).is_some()) {
        server
            .set(&f.hook, BehaviourSpec::new(Behaviour::Allow))
            .await
            .map_err(|e| (f.hook.clone(), e))?;
    }
    Ok(())
}

/// One pass from the installed state: the failing webhook (if any) fails, every
/// release is uninstalled, the cascade settles, and what stays is recorded. A plan for
/// the exercise engine ([`pass_plan`]).
async fn uninstall(
    inst: &mut Installed,
    twin: &Twin,
    pass: &Pass,
    opts: &ReplayOptions,
    prelude: Vec<StepRecord>,
) -> anyhow::Result<Outcome> {
    let plan = pass_plan(pass, &releases(twin));
    run_pass(inst, twin, &pass.name, &plan, &[], opts, prelude).await
}

/// One plan from the installed state, as the run named `name`: what stays is recorded
/// (the uninstall passes, the rehearsal).
async fn run_pass(
    inst: &mut Installed,
    twin: &Twin,
    name: &str,
    plan: &[Planned],
    upgrade_to: &[Components],
    opts: &ReplayOptions,
    prelude: Vec<StepRecord>,
) -> anyhow::Result<Outcome> {
    let version = inst.version.clone();
    let mut records = inst.steps.clone();
    records.extend(prelude);
    let dir = inst.dir.join(name);
    let releases = releases(twin);
    let setting = setting(
        &mut inst.cluster,
        &inst.server,
        dir.clone(),
        &inst.dir,
        opts,
        upgrade_to,
    );
    let label = format!("{name} @ {version}");
    let mut run = Run::new(setting, label, releases.clone(), records);
    run.seen_before(inst.installed.objects.iter().cloned());
    let namespaces = run.namespaces();
    run.plan(plan).await;
    let end_version = run.version();
    let mut done = run.conclude().await?;
    for o in &done.after.objects {
        done.seen.entry(o.uid.clone()).or_insert_with(|| o.clone());
    }
    let mut webhook_requests = inst.requests.clone();
    webhook_requests.extend(inst.server.take_records());
    let mut namespaces = namespaces.into_iter();
    let outcome = Outcome {
        scenario: name.to_string(),
        namespace: namespaces.next().unwrap_or_default(),
        other_namespaces: namespaces.collect(),
        release: twin
            .releases
            .iter()
            .map(|r| r.name.clone())
            .collect::<Vec<_>>()
            .join(","),
        start_version: version,
        end_version,
        steps: done.steps,
        before: inst.before.clone(),
        after: done.after,
        webhook_requests,
        manifest: inst.manifest.clone(),
        objects_after_step: Vec::new(),
        seen: done.seen,
        log_evidence: done.log_evidence,
        teardown_errors: Vec::new(),
        substitutions: inst
            .images
            .as_ref()
            .map(ImageStandIn::substitutions)
            .unwrap_or_default(),
    };
    exercise::engine::write_outcome(&dir, &outcome)?;
    Ok(outcome)
}

/// The rehearsal's run, as reports name it.
pub const REHEARSAL: &str = "rehearsal";

/// `preflight rehearse`: the whole AKS upgrade on one kind cluster whose workers are
/// the twin's node pools (`opts.on`). The twin is set up and installed at the source as
/// for a replay; then one plan for the engine: the webhooks failing when captured fail
/// the same way, the control plane is upgraded in place to `target` (unless it is the
/// source: a node-image upgrade), and every pool is rolled as AKS does (`roll`). One
/// run, role `upgrade`.
pub async fn rehearse(
    twin: &Twin,
    source: &Components,
    target: &Components,
    opts: &ReplayOptions,
    roll: crate::scenario::RollNodes,
) -> anyhow::Result<Replayed> {
    anyhow::ensure!(
        matches!(&opts.on, ReplayOn::Kind { workers, .. } if !workers.is_empty()),
        "a rehearsal rolls node pools: it needs the kind provider and worker nodes"
    );
    let surface = Surface::load(twin)?;
    let as_is = Pass::as_is(twin);
    let mut plan = pass_plan(&as_is, &[]);
    // Not the uninstall pass's settle: the releases stay installed.
    plan.retain(|p| matches!(p.action, Action::SetWebhook { .. }));
    // A target equal to the source is AKS's node-image upgrade (`az aks nodepool
    // upgrade --node-image-only`): the pools roll, the control plane stays.
    let node_image_only = source.version == target.version;
    if !node_image_only {
        plan.push(Planned {
            title: "upgrade the control plane in place".into(),
            action: Action::Upgrade,
        });
    }
    plan.push(Planned {
        title: "roll the node pools (surge, cordon, drain)".into(),
        action: Action::RollNodes(roll.clone()),
    });
    let mut timings = Timings::default();
    let upgrade_to = [target.clone()];
    let outcome = match start_installed(
        twin,
        &surface,
        Some(REHEARSAL),
        Role::Upgrade,
        0,
        source,
        opts,
    )
    .await
    {
        Ok(mut inst) => {
            let started = Instant::now();
            let outcome = run_pass(
                &mut inst,
                twin,
                REHEARSAL,
                &plan,
                &upgrade_to,
                opts,
                Vec::new(),
            )
            .await
            .map_err(|e| format!("{e:#}"));
            timings.start = inst.start;
            timings.exercise = inst.install + started.elapsed();
            let started = Instant::now();
            finish(inst, opts);
            timings.stop = started.elapsed();
            outcome
        }
        Err(e) => Err(format!("{e:#}")),
    };
    let headlines = match &outcome {
        Ok(o) => o
            .steps
            .iter()
            .filter_map(|s| s.rollout.as_ref())
            .flat_map(|r| r.pools.iter().map(preflight_core::rollout::headline))
            .collect(),
        Err(_) => Vec::new(),
    };
    let mut scenario = as_is.scenario(twin);
    scenario.name = REHEARSAL.into();
    scenario.description = format!(
        "twin {}: installed at the source on kind nodes as its pools, webhooks as captured ({}); {}, then every pool rolled as AKS does",
        twin.dir.display(),
        failing_now(&as_is.failures),
        if node_image_only {
            "a node-image upgrade (the control plane stays at the source)"
        } else {
            "the control plane upgraded in place"
        }
    );
    scenario.steps = if node_image_only {
        vec![crate::scenario::Step::RollNodes(roll)]
    } else {
        vec![
            crate::scenario::Step::Upgrade,
            crate::scenario::Step::RollNodes(roll),
        ]
    };
    Ok(Replayed {
        scenarios: vec![scenario],
        results: vec![RunResult {
            scenario: REHEARSAL.into(),
            role: Role::Upgrade,
            at: 0,
            outcome,
            timings,
        }],
        headlines,
    })
}

/// A pass as steps: each failing webhook fails (answering after any webhook's longest
/// allowed timeout, 30 s), a conversion webhook's pass restarts the API server and then
/// the controller manager (in an upgrade's order: it exits when its API server goes
/// away while it starts), every release is uninstalled in the reverse of install
/// order, and every namespace settles.
fn pass_plan(pass: &Pass, releases: &[Release]) -> Vec<Planned> {
    let mut steps = Vec::new();
    for f in &pass.failures {
        let mut spec = BehaviourSpec::new(f.behaviour);
        spec.delay = Some(Duration::from_secs(35));
        steps.push(Planned {
            title: format!("webhook {} -> {}", f.hook, mode(f.behaviour)),
            action: Action::SetWebhook {
                hook: f.hook.clone(),
                spec,
            },
        });
    }
    if pass.restarts() {
        steps.push(Planned {
            title: "restart kube-apiserver".into(),
            action: Action::RestartApiServer,
        });
        steps.push(Planned {
            title: "restart kube-controller-manager".into(),
            action: Action::RestartControllerManager,
        });
    }
    for (i, r) in releases.iter().enumerate().rev() {
        steps.push(helm_step(i, r, HelmAction::Uninstall));
    }
    let namespaces: BTreeSet<&String> = releases.iter().map(|r| &r.namespace).collect();
    steps.push(Planned {
        title: match namespaces.len() {
            1 => format!(
                "settle {}",
                namespaces.iter().next().map_or("", |n| n.as_str())
            ),
            n => format!("settle {n} namespaces"),
        },
        action: Action::Settle {
            timeout: Duration::from_secs(60),
        },
    });
    steps
}

/// Releases whose charts bring CRDs first (custom resources of other charts need them).
fn install_order(releases: &[TwinRelease]) -> Vec<&TwinRelease> {
    let mut order: Vec<&TwinRelease> = releases.iter().collect();
    order.sort_by_key(|r| !r.chart.join("crds").is_dir());
    order
}

/// `helm install` / `helm uninstall` of the `index`th release of the plan.
fn helm_step(index: usize, r: &Release, action: HelmAction) -> Planned {
    Planned {
        title: format!("helm {} {} -n {}", action.as_str(), r.name, r.namespace),
        action: Action::Helm {
            release: index,
            step: HelmStep {
                action,
                dry_run: HelmDryRun::None,
                no_hooks: false,
                wait: false,
                timeout_seconds: 120,
                expect_exit_code: 0,
                cascade: None,
                values: None,
            },
        },
    }
}

/// Recreates the captured surface; returns what could not be (said in the step).
async fn set_up(
    client: &kube::Client,
    server: &WebhookServer,
    surface: &Surface,
    twin: &Twin,
    backends: &[in_cluster::Backend],
) -> anyhow::Result<Vec<String>> {
    let mut notes = Vec::new();
    let ns_api: Api<Namespace> = Api::all(client.clone());
    let mut wanted: BTreeMap<String, Labels> = surface.namespaces.iter().cloned().collect();
    for ns in twin
        .releases
        .iter()
        .map(|r| &r.namespace)
        .chain(backends.iter().map(|b| &b.namespace))
    {
        wanted.entry(ns.clone()).or_default();
    }
    for (name, mut labels) in wanted {
        labels.remove(selection::NAMESPACE_NAME_LABEL);
        let patch = json!({"metadata": {"labels": labels}});
        match ns_api.get_opt(&name).await? {
            Some(_) if labels.is_empty() => {}
            Some(_) => {
                ns_api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .with_context(|| format!("labelling namespace {name}"))?;
            }
            None => {
                let ns: Namespace =
                    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))?;
                ns_api
                    .create(&PostParams::default(), &ns)
                    .await
                    .with_context(|| format!("creating namespace {name}"))?;
            }
        }
    }
    // The backends first: once a fail-closed configuration is registered, nothing it
    // matches is created without them.
    in_cluster::start(client, server, backends).await?;
    // What a release brings itself is registered once that release is installed
    // (see `register_crds_and_webhooks`): created before, it would be refused as not Helm's.
    register_crds_and_webhooks(client, server, surface, twin, |o| o.is_none()).await?;
    for (kind, plural, objects) in [
        (
            "ValidatingAdmissionPolicy",
            "validatingadmissionpolicies",
            &surface.policies,
        ),
        (
            "ValidatingAdmissionPolicyBinding",
            "validatingadmissionpolicybindings",
            &surface.bindings,
        ),
    ] {
        for o in objects {
            if let Some(note) = create_policy(client, kind, plural, &o.object).await? {
                notes.push(note);
            }
        }
    }
    for a in surface.apiservices.iter().map(|a| &a.object) {
        let name = a["metadata"]["name"].as_str().unwrap_or_default();
        let available = a["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Available" && c["status"] == "True");
        if available {
            // Its backend is not part of the twin: recreated, it would be unavailable,
            // which the captured cluster was not.
            continue;
        }
        let mut obj = a.clone();
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
        let ar = ApiResource {
            group: "apiregistration.k8s.io".into(),
            version: "v1".into(),
            api_version: "apiregistration.k8s.io/v1".into(),
            kind: "APIService".into(),
            plural: "apiservices".into(),
        };
        let obj: DynamicObject = serde_json::from_value(obj)?;
        Api::<DynamicObject>::all_with(client.clone(), &ar)
            .create(&PostParams::default(), &obj)
            .await
            .with_context(|| format!("creating APIService {name}"))?;
    }
    Ok(notes)
}

/// A webhook configuration as AKS's admissions enforcer leaves it on an AKS twin:
/// unless annotated `admissions.enforcer/disabled: "true"`, every webhook's namespace
/// selector excludes namespaces labelled `control-plane: "true"` or
/// `kubernetes.azure.com/managedby: aks`. A configuration captured from AKS usually
/// has these already (the live selectors); one the enforcer had not yet reached, or
/// one a release creates, gets them here, as AKS would add them.
fn aks_enforced(config: &Value, aks: bool) -> Value {
    let mut config = config.clone();
    let disabled = config["metadata"]["annotations"][super::capture::AKS_ENFORCER_DISABLED]
        .as_str()
        == Some("true");
    if !aks || disabled {
        return config;
    }
    for w in config["webhooks"].as_array_mut().into_iter().flatten() {
        let selector = &mut w["namespaceSelector"];
        if !selector.is_object() {
            *selector = json!({});
        }
        let exprs = &mut selector["matchExpressions"];
        if !exprs.is_array() {
            *exprs = json!([]);
        }
        let list = exprs.as_array_mut().expect("an array");
        for (key, value) in [
            ("control-plane", "true"),
            ("kubernetes.azure.com/managedby", "aks"),
        ] {
            let present = list
                .iter()
                .any(|e| e["key"] == key && e["operator"] == "NotIn");
            if !present {
                list.push(json!({"key": key, "operator": "NotIn", "values": [value]}));
            }
        }
    }
    config
}

/// The twin's release that a captured object belongs to (Helm's ownership
/// annotations), if any.
fn owner<'a>(o: &Value, twin: &'a Twin) -> Option<&'a TwinRelease> {
    let a = &o["metadata"]["annotations"];
    let (name, ns) = (
        a["meta.helm.sh/release-name"].as_str()?,
        a["meta.helm.sh/release-namespace"].as_str()?,
    );
    twin.releases
        .iter()
        .find(|r| r.name == name && r.namespace == ns)
}

/// Whether `owner` (see [`owner`]) is `release`.
fn is_release(owner: Option<&TwinRelease>, release: &TwinRelease) -> bool {
    owner.is_some_and(|o| o.name == release.name && o.namespace == release.namespace)
}

/// Registers the captured CRDs and webhook configurations whose owning release (see
/// [`owner`]) `which` accepts, as captured, pointed at `server` (on an AKS twin as the
/// admissions enforcer leaves them). After a release is installed (`which` accepts
/// that release): its own objects replace what the chart created (its `clientConfig`
/// names a Service whose Pods do not run here; on AKS the captured selectors also
/// hold what the enforcer added, which the chart's do not).
async fn register_crds_and_webhooks(
    client: &kube::Client,
    server: &WebhookServer,
    surface: &Surface,
    twin: &Twin,
    which: impl Fn(Option<&TwinRelease>) -> bool,
) -> anyhow::Result<()> {
    for crd in surface
        .crds
        .iter()
        .filter(|o| which(owner(&o.object, twin)))
    {
        register::register_captured_crd(client, server, &crd.object).await?;
    }
    for (kind, configs) in [
        (WebhookKind::Validating, &surface.validating),
        (WebhookKind::Mutating, &surface.mutating),
    ] {
        for c in configs.iter().filter(|o| which(owner(&o.object, twin))) {
            let c = aks_enforced(&c.object, twin.aks);
            register::register_captured(client, server, kind, &c, "default").await?;
        }
    }
    Ok(())
}

/// Creates an admission policy or binding at the newest version this cluster serves;
/// `Some(note)` when it serves none (the policy is not enforced on this version).
async fn create_policy(
    client: &kube::Client,
    kind: &str,
    plural: &str,
    captured: &Value,
) -> anyhow::Result<Option<String>> {
    let name = captured["metadata"]["name"].as_str().unwrap_or_default();
    for version in ["v1", "v1beta1"] {
        let ar = ApiResource {
            group: "admissionregistration.k8s.io".into(),
            version: version.into(),
            api_version: format!("admissionregistration.k8s.io/{version}"),
            kind: kind.into(),
            plural: plural.into(),
        };
        let mut obj = captured.clone();
        obj["apiVersion"] = json!(ar.api_version);
        let obj: DynamicObject = serde_json::from_value(obj)?;
        match Api::<DynamicObject>::all_with(client.clone(), &ar)
            .create(&PostParams::default(), &obj)
            .await
        {
            Ok(_) => return Ok(None),
            Err(kube::Error::Api(e)) if e.code == 404 => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {kind} {name}")),
        }
    }
    Ok(Some(format!(
        "{kind} {name}: admissionregistration.k8s.io v1 and v1beta1 are not served on this version (not enforced here)"
    )))
}

/// A snapshot once the controllers have created the releases' dependents: two in a
/// row with the same objects, or the last after 15 s.
async fn quiet(client: &kube::Client, scope: &SnapshotScope) -> anyhow::Result<Snapshot> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let ids =
        |s: &Snapshot| -> BTreeSet<String> { s.objects.iter().map(|o| o.uid.clone()).collect() };
    let mut last = snapshot::take(client, scope).await?;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = snapshot::take(client, scope).await?;
        if ids(&now) == ids(&last) || Instant::now() >= deadline {
            return Ok(now);
        }
        last = now;
    }
}

/// The webhooks that matter for what the releases created (see the module's doc).
async fn relevant(
    client: &kube::Client,
    surface: &Surface,
    aks: bool,
    before: &Snapshot,
    installed: &Snapshot,
) -> anyhow::Result<BTreeSet<Failure>> {
    let known: BTreeSet<&str> = before.objects.iter().map(|o| o.uid.as_str()).collect();
    let created: Vec<&snapshot::ObjectRecord> = installed
        .objects
        .iter()
        .filter(|o| !known.contains(o.uid.as_str()))
        .collect();
    let served = crate::audit::checks::served_from(&snapshot::discover(client).await?);
    let namespaces: BTreeMap<String, Labels> = Api::<Namespace>::all(client.clone())
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .map(|n| {
            (
                n.metadata.name.unwrap_or_default(),
                n.metadata.labels.unwrap_or_default(),
            )
        })
        .collect();
    let mut hooks: Vec<Webhook> = Vec::new();
    for (configs, validating) in [(&surface.validating, true), (&surface.mutating, false)] {
        for c in configs {
            let c = &aks_enforced(&c.object, aks);
            let config = c["metadata"]["name"].as_str().unwrap_or_default();
            for w in c["webhooks"].as_array().into_iter().flatten() {
                let mut w = w.clone();
                // The typed webhook wants a clientConfig; the captured one is rewritten
                // at registration anyway.
                w["clientConfig"] = json!({"url": "https://127.0.0.1"});
                let hook = if validating {
                    serde_json::from_value(w).map(|w| Webhook::validating(config, w))
                } else {
                    serde_json::from_value(w).map(|w| Webhook::mutating(config, w))
                };
                hooks.push(hook.with_context(|| format!("webhook configuration {config}"))?);
            }
        }
    }
    let mut out = BTreeSet::new();
    for hook in &hooks {
        let called_for = created.iter().find(|o| {
            let (group, plural) = o.resource.split_once('/').unwrap_or(("", &o.resource));
            let group = if group == "core" { "" } else { group };
            let Some(resource) = served
                .deletable
                .iter()
                .find(|r| r.group == group && r.plural == plural)
            else {
                return false;
            };
            let meta = selection::ObjectMeta {
                namespace: o.namespace.clone(),
                name: o.name.clone(),
                labels: o.labels.clone().into_iter().collect(),
                deleting: false,
            };
            hook.selects(resource, &served, &meta, &namespaces)
                .may_call()
        });
        if let Some(o) = called_for {
            out.insert(Failure {
                hook: register::captured_hook(&hook.config, &hook.name),
                conversion: false,
                behaviour: Behaviour::Unreachable,
                because: format!("called for the DELETE of {}", o.display()),
            });
        }
    }
    for crd in surface.crds.iter().map(|c| &c.object) {
        if crd["spec"]["conversion"]["strategy"] != "Webhook" {
            continue;
        }
        let group = crd["spec"]["group"].as_str().unwrap_or_default();
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap_or_default();
        let name = crd["metadata"]["name"].as_str().unwrap_or_default();
        // Any object of the CRD, the releases' or one the cluster had before them.
        if let Some(o) = installed
            .objects
            .iter()
            .find(|o| o.kind == kind && snapshot::group_of(&o.api_version) == group)
        {
            out.insert(Failure {
                hook: format!("crd:{name}"),
                conversion: true,
                behaviour: Behaviour::Unreachable,
                because: format!("converts {}", o.display()),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aks_enforcer_excludes_its_namespaces_unless_disabled() {
        let config = json!({
            "metadata": {"name": "guard"},
            "webhooks": [
                {"name": "a.corp"},
                {"name": "b.corp", "namespaceSelector": {"matchExpressions": [
                    {"key": "team", "operator": "In", "values": ["x"]},
                    {"key": "control-plane", "operator": "NotIn", "values": ["true"]}
                ]}}
            ]
        });
        assert_eq!(aks_enforced(&config, false), config, "not AKS: as captured");
        let enforced = aks_enforced(&config, true);
        let keys = |i: usize| -> Vec<String> {
            enforced["webhooks"][i]["namespaceSelector"]["matchExpressions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    format!(
                        "{} {}",
                        e["key"].as_str().unwrap(),
                        e["operator"].as_str().unwrap()
                    )
                })
                .collect()
        };
        assert_eq!(
            keys(0),
            [
                "control-plane NotIn",
                "kubernetes.azure.com/managedby NotIn"
            ]
        );
        // What the enforcer had added already is not added twice; the rest is kept.
        assert_eq!(
            keys(1),
            [
                "team In",
                "control-plane NotIn",
                "kubernetes.azure.com/managedby NotIn"
            ]
        );
        let mut disabled = config.clone();
        disabled["metadata"]["annotations"] = json!({"admissions.enforcer/disabled": "true"});
        assert_eq!(aks_enforced(&disabled, true), disabled);
    }

    #[test]
    fn pass_names_are_dns_labels() {
        let p = Pass::failing(Failure {
            hook: "policy-corp:delete-guard.policy.corp".into(),
            conversion: false,
            behaviour: Behaviour::Unreachable,
            because: String::new(),
        });
        assert_eq!(p.name, "policy-corp-delete-guard-policy-corp-unreachable");
        let long = Pass::failing(Failure {
            hook: format!("{}:x", "a".repeat(80)),
            conversion: false,
            behaviour: Behaviour::Deny,
            because: String::new(),
        });
        assert!(
            long.name.len() <= 63 && long.name.ends_with("x-deny"),
            "{}",
            long.name
        );
    }
}
