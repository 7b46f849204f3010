//! `preflight run`: scenarios (or a twin) on clusters at every version of the path,
//! then the reports and the exit code.

use std::path::PathBuf;

use anyhow::Context;

use crate::report::shard::ShardFiles;

use super::*;

/// Loads scenarios given as files or embedded names; none means every embedded one.
/// Two that name the same `release.namespace` are refused (see
/// [`scenario::check_distinct_namespaces`]).
pub fn load_scenarios(args: &[String]) -> anyhow::Result<Vec<Scenario>> {
    if args.is_empty() {
        return Ok(scenario::embedded());
    }
    let mut out = Vec::new();
    for a in args {
        let path = std::path::Path::new(a);
        if path.exists() {
            out.push(scenario::load_file(path)?);
        } else if let Some(s) = scenario::embedded_named(a) {
            out.push(s);
        } else {
            let names: Vec<_> = scenario::embedded().into_iter().map(|s| s.name).collect();
            anyhow::bail!(
                "scenario `{a}`: no such file, and not an embedded scenario (embedded: {})",
                names.join(", ")
            );
        }
    }
    scenario::check_distinct_namespaces(&out)?;
    Ok(out)
}

/// Fetches, copies and builds the scenarios' charts once, before any cluster starts,
/// into a temporary folder that lives as long as the returned guard (with `--keep`,
/// beyond). A chart that cannot be made ready stops the run, and its folder is removed.
/// The folder of the scenarios' fetched charts: removed when dropped, and by a
/// sentinel process if preflight is killed (SIGKILL runs no destructor).
struct ChartsDir {
    _sentinel: crate::cluster::process::Sentinel,
    _dir: tempfile::TempDir,
}

async fn prepare_charts(
    scenarios: Vec<Scenario>,
    helm: std::path::PathBuf,
    keep: bool,
    progress: &Progress,
) -> anyhow::Result<(Vec<Scenario>, Option<ChartsDir>)> {
    if scenarios
        .iter()
        .all(|s| s.chart.source == scenario::ChartSource::Embedded)
    {
        return Ok((scenarios, None));
    }
    let shown = progress.clone();
    let (scenarios, dir) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let mut scenarios = scenarios;
        let dir = tempfile::Builder::new()
            .prefix("preflight-charts-")
            .tempdir()
            .context("creating a folder for the scenarios' charts")?;
        crate::chart_source::prepare_all(
            &mut scenarios,
            &helm,
            dir.path(),
            &crate::chart_source::UserHelmConfig::from_env(),
            &shown,
        )?;
        Ok((scenarios, dir))
    })
    .await??;
    if keep {
        let kept = dir.keep();
        progress.println(format!("kept the charts in {}", kept.display()));
        return Ok((scenarios, None));
    }
    // No process groups to stop: only the folder to remove.
    let sentinel = crate::cluster::process::Sentinel::start(
        std::path::Path::new("/dev/null"),
        Some(dir.path()),
    )?;
    Ok((
        scenarios,
        Some(ChartsDir {
            _sentinel: sentinel,
            _dir: dir,
        }),
    ))
}

/// `preflight run`: a twin is replayed on its own; scenarios run on clusters at every
/// version of the path (or on one existing cluster), then the reports are written.
pub(super) async fn run(args: RunArgs, progress: Progress) -> anyhow::Result<i32> {
    let gate = load_gate(
        args.accept.as_deref(),
        args.baseline.as_deref(),
        crate::accept::BaselineFor::Run,
    )?;
    if let Some(twin) = twin_arg(&args)? {
        return run_twin(args, twin, gate, progress).await;
    }
    let scenarios = load_scenarios(&args.scenarios)?;
    let run_id = runner::new_run_id();
    let report_dir = args
        .report_dir
        .clone()
        .unwrap_or_else(|| default_report_dir("", &format!("-{run_id}")));
    report::check_writable(&report_dir).with_context(|| {
        format!(
            "the report directory {} cannot take the reports (checked before starting any cluster)",
            report_dir.display()
        )
    })?;
    let opts = args.bins.options(&progress);
    let path = resolve_path(&args, &scenarios, &opts, &progress).await?;
    anyhow::ensure!(
        args.provider != Provider::Kubeconfig || path.len() == 2,
        "--path and --aks-upgrades need clusters preflight starts (local or kind): an existing cluster has one version"
    );
    // `_charts` lives until the end of the run: the charts fetched for it.
    let (setup, _charts) = if args.provider == Provider::Kubeconfig {
        existing_cluster(&args, scenarios, opts, &progress).await?
    } else {
        started_clusters(&args, scenarios, &path, opts, &progress).await?
    };
    let version_info: Vec<report::VersionInfo> = if args.provider == Provider::Kubeconfig {
        vec![
            report::VersionInfo::new(setup.source.version.to_string()),
            report::VersionInfo::new(setup.target.version.to_string()),
        ]
    } else {
        path.iter().map(version_info).collect()
    };
    let scenarios = setup.scenarios.clone();
    let settings = settings(&args, setup, &run_id, &progress)?;
    let shard_file = run_plan(&args, &scenarios, &settings, version_info).await;
    crate::failpoint::pause_at("report-writing").await;
    write_reports(&shard_file, &report_dir, &[], gate.as_ref())
}

/// The twin among `run`'s arguments, loaded: it replays alone and whole.
fn twin_arg(args: &RunArgs) -> anyhow::Result<Option<crate::twin::manifest::Twin>> {
    let Some(twin) = args
        .scenarios
        .iter()
        .find(|a| crate::twin::manifest::is_twin_path(std::path::Path::new(a)))
    else {
        return Ok(None);
    };
    anyhow::ensure!(
        args.scenarios.len() == 1,
        "`{twin}` is a twin: replay it on its own (`preflight run {twin}`), not with other scenarios"
    );
    anyhow::ensure!(
        args.shard.is_none_or(|(_, n)| n == 1),
        "--shard splits scenario runs; a twin's passes share one installation per version: replay it whole (one shard)"
    );
    Ok(Some(crate::twin::manifest::load(std::path::Path::new(
        twin,
    ))?))
}

/// What the clusters of a run are made of: the scenarios with their charts ready, the
/// components of the source, the target and the versions between, and kind's CLI.
struct Setup {
    scenarios: Vec<Scenario>,
    source: components::Components,
    target: components::Components,
    via: Vec<components::Components>,
    kind_binary: Option<PathBuf>,
}

/// `--provider kubeconfig`: one existing cluster, its own version both source and
/// target; what an interrupted earlier run left is swept first, and (unless scenarios
/// were named) the scenarios a shared cluster cannot take are left out, said why.
async fn existing_cluster(
    args: &RunArgs,
    scenarios: Vec<Scenario>,
    opts: components::Options,
    progress: &Progress,
) -> anyhow::Result<(Setup, Option<ChartsDir>)> {
    let helm = tokio::task::spawn_blocking(move || components::ensure_helm(&opts)).await??;
    let (mut scenarios, charts) =
        prepare_charts(scenarios, helm.clone(), args.keep, progress).await?;
    let path = args.cluster.path()?;
    let existing = crate::cluster::ExistingCluster::connect(
        &path,
        args.cluster.context.as_deref(),
        &helm,
        args.webhook_address,
    )
    .await?;
    let swept = existing.sweep().await?;
    if !swept.removed.is_empty() {
        progress.println(format!(
            "removed what an interrupted earlier run left: {}",
            swept.removed.join(", ")
        ));
    }
    for kept in &swept.kept {
        progress.println(format!("left another preflight's {kept}"));
    }
    if args.scenarios.is_empty() {
        scenarios.retain(
            |s| match crate::cluster::existing::refusal(s, args.webhook_address) {
                Some(why) => {
                    progress.println(format!(
                        "leaving out `{}` on a shared cluster: {why}",
                        s.name
                    ));
                    false
                }
                None => true,
            },
        );
    }
    let version = existing.version().clone();
    let comps = components::Components {
        version: version.clone(),
        etcd_version: version.default_etcd(),
        helm_version: components::HELM_VERSION.parse().expect("pinned"),
        kube_apiserver: PathBuf::new(),
        kube_controller_manager: PathBuf::new(),
        etcd: PathBuf::new(),
        helm,
    };
    let setup = Setup {
        scenarios,
        source: comps.clone(),
        target: comps,
        via: Vec::new(),
        kind_binary: None,
    };
    Ok((setup, charts))
}

/// Local control planes or kind clusters: the source's binaries first (its helm
/// fetches the charts, so a chart that cannot be fetched stops the run before the
/// others are built), then the other versions' and kind's node images.
async fn started_clusters(
    args: &RunArgs,
    mut scenarios: Vec<Scenario>,
    path: &[components::releases::Resolved],
    opts: components::Options,
    progress: &Progress,
) -> anyhow::Result<(Setup, Option<ChartsDir>)> {
    if args.provider == Provider::Kind && args.scenarios.is_empty() {
        scenarios.retain(|s| {
            if s.upgrades_in_place() {
                progress.println(format!(
                    "leaving out `{}` on kind: its in-place upgrade (kubeadm on the node) adds minutes; name it to run it",
                    s.name
                ));
            }
            !s.upgrades_in_place()
        });
    }
    let versions: Vec<Version> = path.iter().map(|r| r.version.clone()).collect();
    let kind_setup = (args.provider == Provider::Kind).then(|| args.kind_image.is_none());
    let (s, source_opts) = (versions[0].clone(), opts.clone());
    let source =
        tokio::task::spawn_blocking(move || components::ensure(&s, &source_opts)).await??;
    let (scenarios, charts) =
        prepare_charts(scenarios, source.helm.clone(), args.keep, progress).await?;
    let rest = versions[1..].to_vec();
    let (mut later, kind_binary) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let later = rest
            .iter()
            .map(|v| components::ensure(v, &opts))
            .collect::<Result<Vec<_>, _>>()?;
        let kind = kind_setup
            .map(|build_images| kind_tools(&versions, build_images, &opts))
            .transpose()?;
        Ok((later, kind))
    })
    .await??;
    let target = later.pop().expect("a path has a target");
    let setup = Setup {
        scenarios,
        source,
        target,
        via: later,
        kind_binary,
    };
    Ok((setup, charts))
}

/// The runner's settings from the flags and the clusters' setup.
fn settings(
    args: &RunArgs,
    setup: Setup,
    run_id: &str,
    progress: &Progress,
) -> anyhow::Result<runner::Settings> {
    let shared = args.provider == Provider::Kubeconfig;
    Ok(runner::Settings {
        source: setup.source,
        target: setup.target,
        via: setup.via,
        work_dir: std::env::temp_dir(),
        keep: args.keep,
        parallel: match args.parallel {
            _ if shared => 1,
            Some(n) => n,
            None => runner::default_parallel(args.provider),
        },
        progress: progress.clone(),
        run_id: run_id.to_string(),
        noise: noise(&args.noise)?,
        provider: args.provider,
        kubeconfig: shared
            .then(|| {
                args.cluster
                    .path()
                    .map(|p| (p, args.cluster.context.clone()))
            })
            .transpose()?,
        webhook_address: args.webhook_address,
        kind_image: args.kind_image.clone(),
        kind_binary: setup.kind_binary,
    })
}

/// Plans every run of the scenarios over the path, runs this shard's, and returns
/// them as the shard's runs.json. On a shared cluster, an interrupted run sweeps its
/// objects away.
async fn run_plan(
    args: &RunArgs,
    scenarios: &[Scenario],
    settings: &runner::Settings,
    versions: Vec<report::VersionInfo>,
) -> report::shard::ShardFile {
    let progress = &settings.progress;
    let mut sweeper =
        settings
            .kubeconfig
            .as_ref()
            .map(|(path, context)| crate::cluster::existing::SweepOnDrop {
                kubeconfig: path.clone(),
                context: context.clone(),
                session: settings.run_id.clone(),
                progress: progress.clone(),
                armed: true,
            });
    let plan = runner::plan_for(scenarios, args.provider, settings.path().len());
    let planned = plan.len();
    let (shard, of) = args.shard.unwrap_or((1, 1));
    let mine = runner::shard(plan, shard, of);
    if of > 1 {
        progress.println(format!(
            "shard {shard}/{of}: {} of the {planned} runs",
            mine.len()
        ));
    }
    let indices: Vec<usize> = mine.iter().map(|(i, _)| *i).collect();
    let results = runner::run_indexed(mine, settings).await;
    if let Some(s) = sweeper.as_mut() {
        s.armed = false;
    }
    let indexed: Vec<(usize, runner::RunResult)> = indices.into_iter().zip(results).collect();
    let records = report::records(scenarios, &indexed, &versions, &args.fail_on);
    report::shard::ShardFile {
        schema: report::shard::SCHEMA.to_string(),
        shard,
        of,
        planned,
        provider: format!("{:?}", args.provider).to_lowercase(),
        versions,
        fail_on: args.fail_on.clone(),
        noise: settings.noise.0.clone(),
        scenarios: scenarios.iter().map(report::ScenarioMeta::of).collect(),
        records,
    }
}

/// Writes the four reports of `runs` and runs.json into `dir`, prints the summary,
/// `headlines` and the files; returns the exit code. `gate` (`--accept`,
/// `--baseline`) judges the report, not runs.json: a merge of shards judges again.
pub(super) fn write_reports(
    runs: &report::shard::ShardFile,
    dir: &std::path::Path,
    headlines: &[String],
    gate: Option<&crate::accept::Gate>,
) -> anyhow::Result<i32> {
    let mut report = runs.report();
    if let Some(gate) = gate {
        crate::accept::apply(&mut report, gate);
    }
    // The verdict first: a report directory that fails now (a full disk) must not
    // swallow what the run found.
    print_summary(&report);
    println!();
    let mut written = report::write_all(&report, dir)
        .with_context(|| format!("writing reports into {}", dir.display()))?;
    written.push(
        runs.write(dir)
            .with_context(|| format!("writing runs.json into {}", dir.display()))?,
    );
    if !headlines.is_empty() {
        for line in headlines {
            println!("{line}");
        }
        println!();
    }
    for p in written {
        println!("  {}", p.display());
    }
    Ok(report.exit_code)
}

/// What the report says of one version of the path.
fn version_info(r: &components::releases::Resolved) -> report::VersionInfo {
    let version = r.version.to_string();
    report::VersionInfo {
        requested: (r.requested != version).then(|| r.requested.clone()),
        substituted: r.substituted.clone(),
        version,
    }
}

/// The versions of a run, oldest first: `--path`, `--aks-upgrades`, or `--source` and
/// `--target` (else the scenarios', else the pins). Minors and AKS versions become the
/// patches that run here, substitutions said on the way.
async fn resolve_path(
    args: &RunArgs,
    scenarios: &[Scenario],
    opts: &components::Options,
    progress: &Progress,
) -> anyhow::Result<Vec<components::releases::Resolved>> {
    let (flag, requested, nearest): (&str, Vec<String>, bool) = if !args.path.is_empty() {
        anyhow::ensure!(
            args.path.len() >= 2,
            "invalid value for --path: `{}`: a path needs at least two versions, e.g. v1.29,v1.30",
            args.path.join(",")
        );
        ("--path", args.path.clone(), false)
    } else if let Some(file) = &args.aks_upgrades {
        let path = crate::aks::upgrade_path(file, args.source.as_deref(), args.target.as_deref())?;
        progress.println(format!(
            "AKS upgrade path from {}: {}",
            file.display(),
            path.join(" -> ")
        ));
        ("--aks-upgrades", path, true)
    } else {
        let pick = |given: &Option<String>, from: Option<&String>, default: &str| {
            given
                .clone()
                .or_else(|| from.cloned())
                .unwrap_or_else(|| default.to_string())
        };
        (
            "--source/--target",
            vec![
                pick(
                    &args.source,
                    scenarios.iter().find_map(|s| s.source_version.as_ref()),
                    components::DEFAULT_SOURCE,
                ),
                pick(
                    &args.target,
                    scenarios.iter().find_map(|s| s.target_version.as_ref()),
                    components::DEFAULT_TARGET,
                ),
            ],
            false,
        )
    };
    let opts = opts.clone();
    let flag_owned = flag.to_string();
    let resolved = tokio::task::spawn_blocking(move || {
        requested
            .iter()
            .map(|r| {
                components::releases::resolve(r, nearest, &opts)
                    .with_context(|| format!("invalid value for {flag_owned}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })
    .await??;
    for r in &resolved {
        if let Some(why) = &r.substituted {
            progress.println(format!("{}: running {why}", r.requested));
        }
    }
    if flag != "--source/--target" {
        for w in resolved.windows(2) {
            anyhow::ensure!(
                w[0].version < w[1].version,
                "invalid value for {flag}: {} ({}) does not come after {} ({}): a path goes from the oldest version to the newest",
                w[1].requested,
                w[1].version,
                w[0].requested,
                w[0].version
            );
        }
    }
    Ok(resolved)
}

/// The snapshot noise: the defaults and every `--noise GROUP/RESOURCE`.
pub(super) fn noise(extra: &[String]) -> anyhow::Result<crate::snapshot::Noise> {
    let mut n = crate::snapshot::Noise::default();
    for e in extra {
        anyhow::ensure!(
            e.split('/').count() == 2 && !e.starts_with('/') && !e.ends_with('/'),
            "invalid value for --noise: `{e}`: expected GROUP/RESOURCE, e.g. core/configmaps"
        );
        n.0.push(e.clone());
    }
    Ok(n)
}

/// What the kind provider needs: preflight's own node images for `source` and
/// `target` unless the user named an image (then only the workload image), and the
/// kind CLI, whose path is returned.
pub(super) fn kind_tools(
    versions: &[components::Version],
    build_images: bool,
    opts: &components::Options,
) -> anyhow::Result<std::path::PathBuf> {
    if build_images {
        for v in versions {
            components::kind_image::ensure(v, opts)?;
        }
    } else {
        components::kind_image::ensure_workload(opts)?;
    }
    Ok(components::kind_image::ensure_kind(opts)?)
}

/// `preflight run DIR` of a twin: every pass on fresh local control planes at the
/// source and target, one report.
async fn run_twin(
    args: RunArgs,
    twin: crate::twin::manifest::Twin,
    gate: Option<crate::accept::Gate>,
    progress: Progress,
) -> anyhow::Result<i32> {
    anyhow::ensure!(
        args.path.is_empty() && args.aks_upgrades.is_none(),
        "a twin replays on a source and a target: give them with --source and --target"
    );
    anyhow::ensure!(
        args.provider != Provider::Kubeconfig,
        "replaying a twin needs the local or kind provider: it recreates the captured webhook configurations and CRDs, which on a shared cluster would change every tenant's admission"
    );
    let reset = match (args.provider, args.reset) {
        (Provider::Kind, Some(ResetArg::Restore)) => anyhow::bail!(
            "--reset restore needs the local provider (a kind node's etcd is not preflight's to copy); use --reset reinstall with --provider kind"
        ),
        (Provider::Kind, _) | (_, Some(ResetArg::Reinstall)) => {
            crate::twin::replay::Reset::Reinstall
        }
        _ => crate::twin::replay::Reset::Restore,
    };
    let modes = args
        .modes
        .iter()
        .map(|m| match m.as_str() {
            "unreachable" => Ok(crate::behaviour::Behaviour::Unreachable),
            "deny" => Ok(crate::behaviour::Behaviour::Deny),
            "delay" => Ok(crate::behaviour::Behaviour::Delay),
            "error" => Ok(crate::behaviour::Behaviour::Error),
            other => anyhow::bail!(
                "invalid value for --modes: `{other}`: expected unreachable, deny, delay or error"
            ),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (source, target) =
        super::source_and_target(args.source.as_deref(), args.target.as_deref())?;
    progress.println(format!(
        "replaying the twin in {} (captured on Kubernetes {}) on {source} and {target}",
        twin.dir.display(),
        twin.kubernetes_version
    ));
    let opts = args.bins.options(&progress);
    let kind_setup = (args.provider == Provider::Kind).then(|| args.kind_image.is_none());
    let (src, tgt, kind) = twin_components(&source, &target, kind_setup, opts).await?;
    let replay_opts = crate::twin::replay::ReplayOptions {
        modes,
        reset,
        on: match kind {
            Some(kind) => crate::twin::replay::ReplayOn::Kind {
                kind,
                image: args.kind_image.clone(),
                workers: Vec::new(),
            },
            None => crate::twin::replay::ReplayOn::Local,
        },
        run_id: runner::new_run_id(),
        parallel: args
            .parallel
            .unwrap_or_else(|| runner::default_parallel(args.provider)),
        keep: args.keep,
        progress: progress.clone(),
        noise: noise(&args.noise)?,
        scale: Default::default(),
    };
    let replayed = crate::twin::replay::replay(&twin, &src, &tgt, &replay_opts).await?;
    write_replayed(
        &replayed,
        [source, target],
        &replay_opts,
        &args.fail_on,
        args.report_dir.clone(),
        gate.as_ref(),
    )
}

/// The components of a twin's source and target, and with `kind_setup` (whether to
/// build preflight's node images) the kind CLI, off the async runtime.
pub(super) async fn twin_components(
    source: &components::Version,
    target: &components::Version,
    kind_setup: Option<bool>,
    opts: components::Options,
) -> anyhow::Result<(
    components::Components,
    components::Components,
    Option<std::path::PathBuf>,
)> {
    let (s, t) = (source.clone(), target.clone());
    tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let kind = kind_setup
            .map(|build_images| kind_tools(&[s.clone(), t.clone()], build_images, &opts))
            .transpose()?;
        Ok((
            components::ensure(&s, &opts)?,
            components::ensure(&t, &opts)?,
            kind,
        ))
    })
    .await?
}

/// Writes a twin's replay (or rehearsal) as one report, with runs.json so the CI
/// templates' merge step reads it as one shard.
pub(super) fn write_replayed(
    replayed: &crate::twin::replay::Replayed,
    [source, target]: [components::Version; 2],
    replay_opts: &crate::twin::replay::ReplayOptions,
    fail_on: &[FailOn],
    report_dir: Option<std::path::PathBuf>,
    gate: Option<&crate::accept::Gate>,
) -> anyhow::Result<i32> {
    let versions = [
        report::VersionInfo::new(source.to_string()),
        report::VersionInfo::new(target.to_string()),
    ];
    let indexed: Vec<(usize, runner::RunResult)> =
        replayed.results.iter().cloned().enumerate().collect();
    let runs = report::shard::ShardFile {
        schema: report::shard::SCHEMA.to_string(),
        shard: 1,
        of: 1,
        planned: indexed.len(),
        provider: match replay_opts.on {
            crate::twin::replay::ReplayOn::Local => "local",
            crate::twin::replay::ReplayOn::Kind { .. } => "kind",
        }
        .into(),
        versions: versions.to_vec(),
        fail_on: fail_on.to_vec(),
        noise: replay_opts.noise.0.clone(),
        scenarios: replayed
            .scenarios
            .iter()
            .map(report::ScenarioMeta::of)
            .collect(),
        records: report::records(&replayed.scenarios, &indexed, &versions, fail_on),
    };
    let dir = report_dir
        .unwrap_or_else(|| default_report_dir("twin-", &format!("-{}", runner::new_run_id())));
    write_reports(&runs, &dir, &replayed.headlines, gate)
}

/// `--accept` and `--baseline` read before anything starts (a bad file stops the job
/// here, not after an hour of runs), with today's date (UTC) for expiry.
pub(super) fn load_gate(
    accept: Option<&std::path::Path>,
    baseline: Option<&std::path::Path>,
    wanted: crate::accept::BaselineFor,
) -> anyhow::Result<Option<crate::accept::Gate>> {
    if accept.is_none() && baseline.is_none() {
        return Ok(None);
    }
    let accept = accept
        .map(crate::accept::load)
        .transpose()
        .context("invalid --accept file")?;
    let baseline = baseline
        .map(|b| crate::accept::load_baseline(b, wanted))
        .transpose()
        .context("invalid --baseline")?;
    Ok(Some(crate::accept::Gate {
        accept,
        baseline,
        today: time::OffsetDateTime::now_utc().date(),
    }))
}

/// The short table printed at the end of a run.
fn print_summary(r: &report::Report) {
    let word = |v: report::Verdict| match v {
        report::Verdict::Pass => "pass",
        report::Verdict::Fail => "FAIL",
        report::Verdict::Error => "ERROR",
    };
    println!();
    println!("{:<28} {:<22} {:<6} result", "scenario", "version", "");
    for sc in &r.scenarios {
        for run in &sc.runs {
            println!(
                "{:<28} {:<22} {:<6} {}",
                sc.name,
                report::run_label(run),
                word(run.verdict),
                run.headline
            );
        }
        for d in &sc.regressions {
            println!(
                "{:<28} {:<22} {:<6} regression: {}",
                sc.name, "", "FAIL", d.text
            );
        }
        for d in &sc.improvements {
            println!(
                "{:<28} {:<22} {:<6} improvement: {}",
                sc.name, "", "", d.text
            );
        }
    }
    let substituted: usize = r
        .scenarios
        .iter()
        .flat_map(|sc| &sc.runs)
        .map(|run| run.substitutions.len())
        .sum();
    if substituted > 0 {
        println!();
        println!(
            "{substituted} containers ran preflight's stand-in or a changed pull policy (images no node holds): \"Images substituted\" in report.md"
        );
    }
    println!();
    println!(
        "verdict: {} ({} unexpected leftovers, {} regressions, {} errors)",
        word(r.verdict).to_uppercase(),
        r.summary.unexpected_leftovers,
        r.summary.regressions,
        r.summary.errors
    );
    if let Some(a) = &r.acceptance {
        println!("{}", a.summary());
    }
}
