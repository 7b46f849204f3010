//! The command line: its arguments, and one module per command (`run`, `capture`,
//! `audit`, ...). Each command turns its arguments into calls of the library and
//! prints what a person needs; the work itself lives in the library's modules.

mod audit;
mod capture;
mod cluster;
mod merge;
mod rehearse;
mod run;
mod snapshot;
mod validate;
mod versions;

pub use run::load_scenarios;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::cluster::Provider;
use crate::cluster::{LocalCluster, LocalConfig, state};
use crate::components::{self, SourceKind, Version};
use crate::progress::Progress;
use crate::report::{self, FailOn};
use crate::runner;
use crate::scenario::{self, Scenario};

pub use crate::policy::{EXIT_ERROR, EXIT_FINDINGS, EXIT_OK};

#[derive(Debug, Parser)]
#[command(
    name = "preflight",
    version,
    about = "Will your Helm releases still install and delete cleanly after the Kubernetes upgrade?",
    long_about = "preflight starts control planes at a source and a target Kubernetes version, exercises \
                  install/delete lifecycles on both, finds what was left behind and why, and exits \
                  non-zero when the target behaves worse.\n\nExit codes: 0 target no worse than source, \
                  1 findings, 2 preflight could not run."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the lifecycle on source and target clusters and compare them.
    Run(Box<RunArgs>),
    /// Manage the cache of Kubernetes binaries.
    #[command(subcommand)]
    Components(ComponentsCommand),
    /// Audit a live cluster before its upgrade: read-only, dry-run requests only.
    Audit(AuditArgs),
    /// Save a snapshot of every listable object of a cluster (JSON).
    Snapshot {
        /// Where to write the snapshot.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        target: KubeconfigArgs,
    },
    /// Compare two snapshots: what appeared, disappeared, and what is newly orphaned or stuck.
    Diff { before: PathBuf, after: PathBuf },
    /// Combine the report directories of `preflight run --shard I/N` into one report
    /// and one verdict (what one machine running every shard would have written).
    MergeReports {
        /// Every shard's report directory (each holds runs.json).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Where to write the merged report.json, report.md, junit.xml, report.html
        /// and runs.json [default: reports/<time>-merged].
        #[arg(long)]
        report_dir: Option<PathBuf>,
        /// Accepted findings, as `preflight run --accept` (the merged verdict is the
        /// gate's: give the shards' file here too).
        #[arg(long, value_name = "FILE")]
        accept: Option<PathBuf>,
        /// A previous run's report.json (or runs.json), as `preflight run --baseline`.
        #[arg(long, value_name = "REPORT")]
        baseline: Option<PathBuf>,
    },
    /// The Kubernetes versions preflight knows: pinned patches, what is cached, and what
    /// builds here.
    Versions {
        /// Ask the Go module proxy, for every minor, whether its pinned patch builds here
        /// (and which patch would run instead); answers are cached.
        #[arg(long)]
        check: bool,
    },
    /// Check scenario files without running them.
    Validate {
        /// Scenario files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Capture a live cluster's Helm releases and admission surface as a twin (reads only).
    Capture(CaptureArgs),
    /// Rehearse the whole AKS upgrade of a twin on a kind cluster shaped as its node
    /// pools: install at the source, upgrade the control plane in place, then roll
    /// every pool as AKS does (surge, cordon, drain through the Eviction API).
    Rehearse(Box<RehearseArgs>),
    /// Start or stop a local control plane for debugging.
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

/// Where binaries come from (shared by every command that needs them).
#[derive(Debug, Args, Clone)]
pub struct BinArgs {
    /// Use binaries from this directory (kube-apiserver, kube-controller-manager, etcd, helm) instead of the cache; `{version}` in the path stands for the version (one directory per version). Each control-plane binary must say it is that version.
    #[arg(long, env = "PREFLIGHT_BIN_DIR", global = true)]
    pub bin_dir: Option<PathBuf>,
    /// Cache directory for built or downloaded binaries [default: ~/.cache/preflight].
    #[arg(long, env = "PREFLIGHT_CACHE_DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
    /// How to fill the cache: build from Go modules, download release binaries, or auto (build when Go is installed).
    #[arg(long = "components-from", value_enum, default_value_t = SourceKind::Auto, global = true)]
    pub components_from: SourceKind,
}

impl BinArgs {
    fn options(&self, progress: &Progress) -> components::Options {
        let mut opts = components::Options::from_env(progress.clone());
        if let Some(dir) = &self.cache_dir {
            opts.cache_dir = dir.clone();
        }
        opts.bin_dir = self.bin_dir.clone();
        opts.source = self.components_from;
        opts
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Scenario files, or names of embedded scenarios (default: every embedded scenario).
    pub scenarios: Vec<String>,
    /// Source Kubernetes version (what the cluster runs now) [default: the scenario's, else v1.29.15].
    #[arg(long)]
    pub source: Option<String>,
    /// Target Kubernetes version (what the cluster is upgraded to) [default: the scenario's, else v1.30.14].
    #[arg(long)]
    pub target: Option<String>,
    /// Run along a path of versions, oldest first, comma-separated, e.g.
    /// `v1.29,v1.30,v1.31,v1.32` (a minor is its newest patch that builds here; exact
    /// patches too): every scenario runs on each version, each version is compared with
    /// the next and the first with the last; an in-place upgrade walks the whole path.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["source", "target", "aks_upgrades"])]
    pub path: Vec<String>,
    /// Run the path an AKS cluster would take: the JSON `az aks get-upgrades -o json`
    /// prints (its current version and the upgrades offered), or that of `az aks
    /// get-versions -o json` with --source as the current version. Each AKS version
    /// runs as its upstream patch (the nearest that builds here when that one cannot).
    #[arg(long, value_name = "FILE", conflicts_with = "path")]
    pub aks_upgrades: Option<PathBuf>,
    /// Run only shard I of N (1-based): a deterministic share of the scenario x version
    /// runs. `preflight merge-reports` combines the shards' report directories.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    pub shard: Option<(usize, usize)>,
    /// Keep the clusters' directories (logs, certificates, etcd data, webhook records) after the run.
    #[arg(long)]
    pub keep: bool,
    /// How many clusters run at once [default: four local control planes per core, or
    /// one kind cluster per core, as memory allows].
    #[arg(long)]
    pub parallel: Option<usize>,
    /// Where to write report.json, report.md, junit.xml and report.html [default: reports/<time>-<id>].
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
    /// Also leave this resource type out of snapshots, as GROUP/RESOURCE (`core` for the
    /// core group), e.g. `metrics.k8s.io/pods` (repeatable). Events and Leases are always left out.
    #[arg(long = "noise", value_name = "GROUP/RESOURCE")]
    pub noise: Vec<String>,
    /// What counts as a failure (exit code 1).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = crate::policy::DEFAULT_FAIL_ON)]
    pub fail_on: Vec<FailOn>,
    /// Accepted findings, a YAML file: what each entry matches does not count until the
    /// entry expires; the reports say who accepted what, why and until when.
    #[arg(long, value_name = "FILE")]
    pub accept: Option<PathBuf>,
    /// A previous run's report.json (or runs.json): only findings it did not have count.
    #[arg(long, value_name = "REPORT")]
    pub baseline: Option<PathBuf>,
    /// Where clusters come from: local control planes, kind clusters (needs Docker), or an existing cluster.
    #[arg(long, value_enum, default_value_t = Provider::Local)]
    pub provider: Provider,
    /// With --provider kubeconfig: the cluster (and --context).
    #[command(flatten)]
    pub cluster: KubeconfigArgs,
    /// With --provider kubeconfig: an address of this machine that the cluster's API server reaches, for the sample webhooks.
    #[arg(long)]
    pub webhook_address: Option<std::net::IpAddr>,
    /// Replaying a twin: how the failing webhook fails in each failure pass
    /// (unreachable, deny, delay, error; comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "unreachable")]
    pub modes: Vec<String>,
    /// Replaying a twin: how each pass starts from the releases installed: `restore`
    /// (install once per version, restore etcd's saved data for each pass) or
    /// `reinstall` (a new control plane per pass, installed again).
    /// [default: restore on the local provider; reinstall on kind, which has no saved
    /// state]
    #[arg(long, value_enum)]
    pub reset: Option<ResetArg>,
    /// With --provider kind: the node image, `{version}` standing for the version, e.g.
    /// `kindest/node:{version}` [default: preflight/node:{version}, built here offline].
    #[arg(long)]
    pub kind_image: Option<String>,
    #[command(flatten)]
    pub bins: BinArgs,
}

#[derive(Debug, Args)]
pub struct RehearseArgs {
    /// The twin's directory (`preflight capture --out`).
    pub twin: PathBuf,
    /// Source Kubernetes version (what the cluster runs now) [default: v1.29.15].
    #[arg(long)]
    pub source: Option<String>,
    /// Target Kubernetes version [default: v1.30.14]. The source's own version
    /// rehearses AKS's node-image upgrade: the pools roll, the control plane stays.
    #[arg(long)]
    pub target: Option<String>,
    /// Worker nodes in all, shared out over the twin's pools (each at least one, the
    /// rest in proportion to the captured counts).
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// AKS's --max-surge: a node count (1) or a percentage of each pool (33%).
    #[arg(long, default_value = "10%")]
    pub max_surge: String,
    /// AKS's drain timeout per node (30m, 90s, 1h).
    #[arg(long, default_value = "30m")]
    pub drain_timeout: String,
    /// AKS's --undrainable-node-behavior: schedule (the upgrade fails) or cordon (the
    /// node is quarantined and the pool goes on).
    #[arg(long, default_value = "schedule")]
    pub undrainable_node_behavior: String,
    /// How long to wait after each drain for the evicted Pods to be Ready again.
    #[arg(long, default_value_t = 120)]
    pub comeback_seconds: u32,
    /// Where the cluster comes from: only kind (rehearse cordons and drains nodes).
    #[arg(long, value_enum, default_value_t = Provider::Kind)]
    pub provider: Provider,
    /// Where to write report.json, report.md, junit.xml and report.html [default: reports/<time>-<id>].
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
    /// What counts as a failure (exit code 1).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = crate::policy::DEFAULT_FAIL_ON)]
    pub fail_on: Vec<FailOn>,
    /// Keep the cluster's directory (logs, webhook records) after the run.
    #[arg(long)]
    pub keep: bool,
    /// The node image, `{version}` standing for the version [default: preflight/node:{version}, built here offline].
    #[arg(long)]
    pub kind_image: Option<String>,
    #[command(flatten)]
    pub bins: BinArgs,
}

/// `--reset` of a twin's replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ResetArg {
    Restore,
    Reinstall,
}

/// Which cluster to talk to.
#[derive(Debug, Args, Clone)]
pub struct KubeconfigArgs {
    /// Kubeconfig file [default: $KUBECONFIG, else ~/.kube/config].
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Context in the kubeconfig [default: its current context].
    #[arg(long)]
    pub context: Option<String>,
}

impl KubeconfigArgs {
    fn path(&self) -> anyhow::Result<PathBuf> {
        let path = self
            .kubeconfig
            .clone()
            .or_else(|| {
                std::env::var_os("KUBECONFIG")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .or_else(|| dirs::home_dir().map(|h| h.join(".kube/config")))
            .context("no kubeconfig: give --kubeconfig or set KUBECONFIG")?;
        anyhow::ensure!(
            path.is_file(),
            "kubeconfig {}: no such file (from --kubeconfig, KUBECONFIG or ~/.kube/config)",
            path.display()
        );
        Ok(path)
    }

    async fn client(&self, impersonate: Option<&str>) -> anyhow::Result<kube::Client> {
        Ok(crate::cluster::local::client_from_kubeconfig_as(
            &self.path()?,
            self.context.as_deref(),
            impersonate,
        )
        .await?)
    }
}

#[derive(Debug, Args)]
pub struct CaptureArgs {
    #[command(flatten)]
    pub cluster: KubeconfigArgs,
    /// Where to write the twin (a new or empty directory).
    #[arg(long)]
    pub out: PathBuf,
    /// Only releases in this namespace (repeatable) [default: every namespace].
    #[arg(long = "namespace", value_name = "NS")]
    pub namespaces: Vec<String>,
    /// Only this release, as NS/NAME (repeatable) [default: every release].
    #[arg(long = "release", value_name = "NS/NAME")]
    pub releases: Vec<String>,
    /// Keep user-supplied values as they are (default: credentials are redacted).
    #[arg(long)]
    pub keep_values: bool,
    /// The cluster is AKS (also recognised by a server URL ending in azmk8s.io).
    #[arg(long)]
    pub aks: bool,
    /// Keep at most this many stored objects of each CRD (metadata only; capture.json
    /// counts the rest).
    #[arg(long, value_name = "N", default_value_t = crate::twin::stored::DEFAULT_LIMIT)]
    pub max_custom_resources: usize,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub cluster: KubeconfigArgs,
    /// The version the cluster will be upgraded to (consequences and removed APIs depend on it).
    #[arg(long = "target")]
    pub target: Option<String>,
    /// Certificates expiring within this many days are findings.
    #[arg(long, default_value_t = 30)]
    pub upgrade_window: i64,
    /// Exit 1 when a finding is at or above this severity.
    #[arg(long, value_enum, default_value_t = crate::audit::Severity::High)]
    pub fail_on: crate::audit::Severity,
    /// Accepted findings, a YAML file: what each entry matches does not count until the
    /// entry expires; the reports say who accepted what, why and until when.
    #[arg(long, value_name = "FILE")]
    pub accept: Option<PathBuf>,
    /// A previous audit's audit.json: only findings it did not have count.
    #[arg(long, value_name = "REPORT")]
    pub baseline: Option<PathBuf>,
    /// Only read: send no dry-run requests.
    #[arg(long)]
    pub no_live: bool,
    /// Where to write audit.json, audit.md, junit.xml and audit.html [default: reports/audit-<time>].
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ComponentsCommand {
    /// Make the binaries of a version available (build or download them once).
    Ensure {
        /// Kubernetes version, e.g. v1.30.14 (repeatable) [default: the pinned source and target].
        #[arg(long = "version")]
        versions: Vec<String>,
        /// Also build kubectl (used by `cargo bench`).
        #[arg(long)]
        kubectl: bool,
        #[command(flatten)]
        bins: BinArgs,
    },
    /// Build kind node images (`preflight/node:<version>`) without any registry, and the kind CLI.
    KindImage {
        /// Kubernetes version, e.g. v1.30.14 (repeatable) [default: the pinned source and target].
        #[arg(long = "version")]
        versions: Vec<String>,
        #[command(flatten)]
        bins: BinArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Start a local control plane and leave it running.
    Up {
        /// Kubernetes version.
        #[arg(long = "version", default_value = components::DEFAULT_TARGET)]
        version: String,
        /// Name of the cluster (for `cluster down`).
        #[arg(long, default_value = "preflight")]
        name: String,
        #[command(flatten)]
        bins: BinArgs,
    },
    /// Stop a control plane started with `cluster up` and remove its files.
    Down {
        #[arg(long, default_value = "preflight")]
        name: String,
    },
}

/// `--version` values, or the pinned source and target when none is given.
/// `--version`s as given (a minor is the patch a run of it would use), else the pins.
fn versions_or_pinned(
    given: &[String],
    opts: &components::Options,
) -> anyhow::Result<Vec<Version>> {
    if given.is_empty() {
        return Ok(vec![
            components::DEFAULT_SOURCE.parse()?,
            components::DEFAULT_TARGET.parse()?,
        ]);
    }
    given
        .iter()
        .map(|v| {
            let r = components::releases::resolve(v, false, opts)
                .context("invalid value for --version")?;
            if let Some(why) = &r.substituted {
                opts.progress.println(format!("{v}: {why}"));
            }
            Ok(r.version)
        })
        .collect()
}

/// `I/N` with 1 <= I <= N.
fn parse_shard(value: &str) -> Result<(usize, usize), String> {
    let bad = || format!("`{value}`: expected I/N with 1 <= I <= N, e.g. 2/3");
    let (i, n) = value.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if i == 0 || n == 0 || i > n {
        return Err(bad());
    }
    Ok((i, n))
}

fn parse_version(flag: &str, value: &str) -> anyhow::Result<Version> {
    value
        .parse()
        .with_context(|| format!("invalid value for {flag}"))
}

/// `--source` and `--target` of a twin's replay or rehearsal, the pinned defaults where
/// not given.
fn source_and_target(
    source: Option<&str>,
    target: Option<&str>,
) -> anyhow::Result<(Version, Version)> {
    Ok((
        parse_version("--source", source.unwrap_or(components::DEFAULT_SOURCE))?,
        parse_version("--target", target.unwrap_or(components::DEFAULT_TARGET))?,
    ))
}

/// Runs one command; returns its exit code.
pub async fn execute(cli: Cli, progress: Progress) -> anyhow::Result<i32> {
    match cli.command {
        Command::Run(args) => run::run(*args, progress).await,
        Command::Audit(args) => audit::audit(args).await,
        Command::Capture(args) => capture::capture(args, progress).await,
        Command::Rehearse(args) => rehearse::rehearse(*args, progress).await,
        Command::Snapshot { out, target } => snapshot::snapshot(&out, &target).await,
        Command::Diff { before, after } => snapshot::diff(&before, &after),
        Command::MergeReports {
            dirs,
            report_dir,
            accept,
            baseline,
        } => merge::merge_reports(&dirs, report_dir, accept, baseline, &progress),
        Command::Versions { check } => versions::versions(check, progress).await,
        Command::Validate { files } => Ok(validate::validate(&files)),
        Command::Components(ComponentsCommand::Ensure {
            versions,
            kubectl,
            bins,
        }) => versions::ensure(versions, kubectl, bins.options(&progress)).await,
        Command::Components(ComponentsCommand::KindImage { versions, bins }) => {
            versions::kind_image(versions, bins.options(&progress)).await
        }
        Command::Cluster(ClusterCommand::Up {
            version,
            name,
            bins,
        }) => cluster::up(&version, &name, bins, progress).await,
        Command::Cluster(ClusterCommand::Down { name }) => cluster::down(&name),
    }
}

/// `reports/<prefix><UTC time><suffix>`: where reports go unless `--report-dir` says.
fn default_report_dir(prefix: &str, suffix: &str) -> PathBuf {
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]-[hour][minute][second]"
        ))
        .unwrap_or_default();
    PathBuf::from("reports").join(format!("{prefix}{stamp}{suffix}"))
}
