//! The command line: parsing, and one function per command.

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
    /// How many control planes run at once [default: two per core, as memory allows].
    #[arg(long, default_value_t = crate::runner::default_parallel(), hide_default_value = true)]
    pub parallel: usize,
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

/// Runs a parsed command; returns the process exit code.
pub async fn execute(cli: Cli, progress: Progress) -> anyhow::Result<i32> {
    match cli.command {
        Command::Run(args) => run(*args, progress).await,
        Command::Audit(args) => audit(args).await,
        Command::Capture(args) => capture(args, progress).await,
        Command::Snapshot { out, target } => {
            let client = target.client(None).await?;
            let snap = crate::snapshot::take(&client, &Default::default())
                .await
                .context("taking the snapshot")?;
            std::fs::write(&out, serde_json::to_string_pretty(&snap)?)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "{} objects of {} resource types ({} not listable) written to {}",
                snap.objects.len(),
                snap.types,
                snap.unlistable.len(),
                out.display()
            );
            Ok(EXIT_OK)
        }
        Command::Diff { before, after } => {
            let load = |p: &PathBuf| -> anyhow::Result<crate::snapshot::Snapshot> {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?;
                serde_json::from_str(&text)
                    .with_context(|| format!("{}: not a preflight snapshot", p.display()))
            };
            let d = crate::snapshot_diff::diff(&load(&before)?, &load(&after)?);
            print!("{}", d.render());
            Ok(if d.newly_orphaned.is_empty() && d.newly_stuck.is_empty() {
                EXIT_OK
            } else {
                EXIT_FINDINGS
            })
        }
        Command::MergeReports {
            dirs,
            report_dir,
            accept,
            baseline,
        } => {
            let gate = load_gate(
                accept.as_deref(),
                baseline.as_deref(),
                crate::accept::BaselineFor::Run,
            )?;
            let merged = report::shard::merge(&dirs)?;
            progress.println(format!(
                "merged {} shard{} ({} runs)",
                dirs.len(),
                if dirs.len() == 1 { "" } else { "s" },
                merged.records.len()
            ));
            let dir = report_dir.unwrap_or_else(|| default_report_dir("", "-merged"));
            write_reports(&merged, &dir, &[], gate.as_ref())
        }
        Command::Versions { check } => {
            let opts = components::Options::from_env(progress.clone());
            let table = tokio::task::spawn_blocking(move || versions_table(&opts, check)).await?;
            print!("{table}");
            Ok(EXIT_OK)
        }
        Command::Validate { files } => {
            let mut failed = 0;
            for f in &files {
                if crate::twin::manifest::is_twin_path(f) {
                    // twin.yaml and every captured file it names, as replay reads them.
                    let loaded = crate::twin::manifest::load(f)
                        .and_then(|t| crate::twin::load::Surface::load(&t).map(|_| t));
                    match loaded {
                        Ok(t) => {
                            println!(
                                "ok    {} (twin of Kubernetes {}: {} releases)",
                                f.display(),
                                t.kubernetes_version,
                                t.releases.len()
                            );
                            for w in &t.webhooks {
                                println!(
                                    "      webhook {}: {} ({})",
                                    w.hook,
                                    w.health.word(),
                                    w.evidence
                                );
                            }
                        }
                        Err(e) => {
                            failed += 1;
                            eprintln!("error {e}");
                        }
                    }
                    continue;
                }
                match scenario::load_file(f) {
                    Ok(s) => println!(
                        "ok    {} ({}: {} webhooks, {} steps)",
                        f.display(),
                        s.name,
                        s.webhooks.len(),
                        s.steps.len()
                    ),
                    Err(e) => {
                        failed += 1;
                        eprintln!("error {e}");
                    }
                }
            }
            Ok(if failed == 0 { EXIT_OK } else { EXIT_ERROR })
        }
        Command::Components(ComponentsCommand::Ensure {
            versions,
            kubectl,
            bins,
        }) => {
            let opts = bins.options(&progress);
            let o = opts.clone();
            let versions =
                tokio::task::spawn_blocking(move || versions_or_pinned(&versions, &o)).await??;
            for version in versions {
                let opts = opts.clone();
                let c = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                    let c = components::ensure(&version, &opts)?;
                    let kubectl = if kubectl {
                        Some(components::ensure_kubectl(&version, &opts)?)
                    } else {
                        None
                    };
                    Ok((c, kubectl))
                })
                .await??;
                println!("{} ready:", c.0.version);
                for (name, path) in [
                    ("kube-apiserver", &c.0.kube_apiserver),
                    ("kube-controller-manager", &c.0.kube_controller_manager),
                    ("etcd", &c.0.etcd),
                    ("helm", &c.0.helm),
                ] {
                    println!("  {name:<24} {}", path.display());
                }
                if let Some(k) = c.1 {
                    println!("  {:<24} {}", "kubectl", k.display());
                }
            }
            Ok(EXIT_OK)
        }
        Command::Components(ComponentsCommand::KindImage { versions, bins }) => {
            let opts = bins.options(&progress);
            let built = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let versions = versions_or_pinned(&versions, &opts)?;
                let kind = components::kind_image::ensure_kind(&opts)?;
                let records = versions
                    .iter()
                    .map(|v| components::kind_image::ensure(v, &opts))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((kind, records))
            })
            .await??;
            println!("kind {}", built.0.display());
            for r in built.1 {
                println!(
                    "{:<28} etcd {}, coredns {}, pause {} ({})",
                    r.image,
                    r.etcd,
                    r.coredns,
                    r.pause,
                    &r.image_id.chars().take(19).collect::<String>()
                );
            }
            Ok(EXIT_OK)
        }
        Command::Cluster(ClusterCommand::Up {
            version,
            name,
            bins,
        }) => {
            if state::exists(&name) {
                anyhow::bail!(
                    "a cluster named `{name}` is already up; run `preflight cluster down --name {name}` first"
                );
            }
            let version = parse_version("--version", &version)?;
            let opts = bins.options(&progress);
            let comps =
                tokio::task::spawn_blocking(move || components::ensure(&version, &opts)).await??;
            let mut config = LocalConfig::new(name.clone(), comps);
            config.base_dir = Some(state::state_dir().join("clusters"));
            config.progress = progress.clone();
            let cluster = LocalCluster::start(config).await?;
            let server = cluster.server_url();
            let st = cluster.detach();
            state::save(&st)?;
            println!("cluster `{name}` ({}) is up at {server}", st.version);
            println!("  export KUBECONFIG={}", st.kubeconfig.display());
            println!("  logs: {}", st.dir.join("logs").display());
            println!("stop it with: preflight cluster down --name {name}");
            Ok(EXIT_OK)
        }
        Command::Cluster(ClusterCommand::Down { name }) => {
            let st = state::down(&name)?;
            println!("cluster `{name}` ({}) stopped and removed", st.version);
            Ok(EXIT_OK)
        }
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

async fn capture(args: CaptureArgs, progress: Progress) -> anyhow::Result<i32> {
    let releases = args
        .releases
        .iter()
        .map(|r| match r.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok((ns.to_string(), name.to_string()))
            }
            _ => {
                anyhow::bail!("invalid value for --release: `{r}`: expected NS/NAME, e.g. shop/web")
            }
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let path = args.cluster.path()?;
    let config =
        crate::cluster::local::config_from_kubeconfig(&path, args.cluster.context.as_deref(), None)
            .await?;
    let opts = crate::twin::capture::CaptureOptions {
        out: args.out.clone(),
        namespaces: args.namespaces,
        releases,
        keep_values: args.keep_values,
        aks: args.aks,
        server_url: config.cluster_url.to_string(),
        max_custom_resources: args.max_custom_resources,
    };
    let client =
        kube::Client::try_from(config).with_context(|| format!("kubeconfig {}", path.display()))?;
    let m = crate::twin::capture::capture(&client, &opts, &progress)
        .await
        .with_context(|| format!("capturing into {}", args.out.display()))?;
    println!(
        "captured {} releases, {} webhook configurations from {} ({}{})",
        m.releases.len(),
        m.configurations.len(),
        m.server,
        m.kubernetes_version,
        if m.aks.detected { ", AKS" } else { "" }
    );
    for r in &m.releases {
        println!(
            "  {}/{} revision {} ({}){}",
            r.namespace,
            r.name,
            r.revision,
            r.chart,
            r.rendered
                .as_ref()
                .map(|why| format!(": kept as its rendered manifest, {why}"))
                .unwrap_or_default()
        );
    }
    for h in m.webhook_health.iter().filter(|h| h.health.is_failing()) {
        println!(
            "  failing now: webhook {} ({}): {}",
            h.hook,
            h.health.word(),
            h.evidence.join("; ")
        );
    }
    for l in &m.lacked {
        println!("  not read: {}: {}", l.what, l.error);
    }
    if !m.redactions.is_empty() {
        println!(
            "  {} values redacted (listed in capture.json)",
            m.redactions.len()
        );
    }
    println!("  {}", args.out.join("twin.yaml").display());
    Ok(EXIT_OK)
}

async fn audit(args: AuditArgs) -> anyhow::Result<i32> {
    let gate = load_gate(
        args.accept.as_deref(),
        args.baseline.as_deref(),
        crate::accept::BaselineFor::Audit,
    )?;
    let target = args
        .target
        .as_deref()
        .map(|t| parse_version("--target", t))
        .transpose()?;
    let client = args.cluster.client(None).await?;
    // Impersonating the garbage collector needs the `impersonate` right; without it the
    // live checks run as the user, and the report says so.
    let gc = args
        .cluster
        .client(Some(crate::exercise::dry_run::GC_USER))
        .await?;
    let ns: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(gc.clone());
    let gc = ns
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .ok()
        .map(|_| gc);
    let opts = crate::audit::AuditOptions {
        target,
        upgrade_window_days: args.upgrade_window,
        live: !args.no_live,
    };
    let mut report = crate::audit::run(&client, gc.as_ref(), &opts, args.fail_on).await?;
    if let Some(gate) = &gate {
        crate::accept::apply_audit(&mut report, gate);
    }
    let dir = args
        .report_dir
        .clone()
        .unwrap_or_else(|| default_report_dir("audit-", ""));
    let written = crate::audit::render::write_all(&report, &dir)
        .with_context(|| format!("writing reports into {}", dir.display()))?;
    for f in &report.findings {
        println!(
            "{:<9} {:<36} {}: {}",
            f.severity.as_str(),
            f.check,
            f.object,
            f.title
        );
    }
    for s in &report.skipped {
        println!("not checked: {s}");
    }
    if let Some(a) = &report.acceptance {
        println!("{}", a.summary());
    }
    println!(
        "
{} findings; verdict {:?}",
        report.findings.len(),
        report.verdict
    );
    for p in written {
        println!("  {}", p.display());
    }
    Ok(report.exit_code)
}

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

async fn run(args: RunArgs, progress: Progress) -> anyhow::Result<i32> {
    if let Some(twin) = args
        .scenarios
        .iter()
        .find(|a| crate::twin::manifest::is_twin_path(std::path::Path::new(a)))
    {
        anyhow::ensure!(
            args.scenarios.len() == 1,
            "`{twin}` is a twin: replay it on its own (`preflight run {twin}`), not with other scenarios"
        );
        anyhow::ensure!(
            args.shard.is_none_or(|(_, n)| n == 1),
            "--shard splits scenario runs; a twin's passes share one installation per version: replay it whole (one shard)"
        );
        let twin = crate::twin::manifest::load(std::path::Path::new(twin))?;
        let gate = load_gate(
            args.accept.as_deref(),
            args.baseline.as_deref(),
            crate::accept::BaselineFor::Run,
        )?;
        return run_twin(args, twin, gate, progress).await;
    }
    let gate = load_gate(
        args.accept.as_deref(),
        args.baseline.as_deref(),
        crate::accept::BaselineFor::Run,
    )?;
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
    let versions: Vec<Version> = path.iter().map(|r| r.version.clone()).collect();
    let source = versions[0].clone();
    let mut scenarios = scenarios;
    let mut kind_binary = None;
    // Lives until the end of the run: the charts fetched for it.
    let _charts;
    let (src_comps, tgt_comps, via) = if args.provider == Provider::Kubeconfig {
        // One existing cluster: its own version is both source and target.
        let helm = tokio::task::spawn_blocking(move || components::ensure_helm(&opts)).await??;
        (scenarios, _charts) =
            prepare_charts(scenarios, helm.clone(), args.keep, &progress).await?;
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
            scenarios.retain(|s| {
                match crate::cluster::existing::refusal(s, args.webhook_address) {
                    Some(why) => {
                        progress.println(format!(
                            "leaving out `{}` on a shared cluster: {why}",
                            s.name
                        ));
                        false
                    }
                    None => true,
                }
            });
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
        (comps.clone(), comps, Vec::new())
    } else {
        if args.provider == Provider::Kind && args.scenarios.is_empty() {
            scenarios.retain(|s| {
                if s.upgrades_in_place() {
                    progress.println(format!(
                        "leaving out `{}` on kind: an in-place upgrade needs the local provider",
                        s.name
                    ));
                }
                !s.upgrades_in_place()
            });
        }
        let kind_setup = (args.provider == Provider::Kind).then(|| args.kind_image.is_none());
        // The source's binaries first: its helm fetches the charts, so a chart that
        // cannot be fetched stops the run before the others are built.
        let (s, source_opts) = (source.clone(), opts.clone());
        let a = tokio::task::spawn_blocking(move || components::ensure(&s, &source_opts)).await??;
        (scenarios, _charts) =
            prepare_charts(scenarios, a.helm.clone(), args.keep, &progress).await?;
        let rest = versions[1..].to_vec();
        let (mut later, kind) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
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
        kind_binary = kind;
        let b = later.pop().expect("a path has a target");
        (a, b, later)
    };
    let version_info: Vec<report::VersionInfo> = if args.provider == Provider::Kubeconfig {
        vec![
            report::VersionInfo::new(src_comps.version.to_string()),
            report::VersionInfo::new(tgt_comps.version.to_string()),
        ]
    } else {
        path.iter().map(version_info).collect()
    };

    let settings = runner::Settings {
        source: src_comps,
        target: tgt_comps,
        via,
        work_dir: std::env::temp_dir(),
        keep: args.keep,
        parallel: if args.provider == Provider::Kubeconfig {
            1
        } else {
            args.parallel
        },
        progress: progress.clone(),
        run_id: run_id.clone(),
        noise: noise(&args.noise)?,
        provider: args.provider,
        kubeconfig: (args.provider == Provider::Kubeconfig)
            .then(|| {
                args.cluster
                    .path()
                    .map(|p| (p, args.cluster.context.clone()))
            })
            .transpose()?,
        webhook_address: args.webhook_address,
        kind_image: args.kind_image.clone(),
        kind_binary,
    };
    // On a shared cluster, an interrupted run must not leave its objects behind.
    let mut sweeper =
        settings
            .kubeconfig
            .as_ref()
            .map(|(path, context)| crate::cluster::existing::SweepOnDrop {
                kubeconfig: path.clone(),
                context: context.clone(),
                session: run_id.clone(),
                progress: progress.clone(),
                armed: true,
            });
    let plan = runner::plan_for(&scenarios, args.provider, settings.path().len());
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
    let results = runner::run_indexed(mine, &settings).await;
    if let Some(s) = sweeper.as_mut() {
        s.armed = false;
    }
    let indexed: Vec<(usize, runner::RunResult)> = indices.into_iter().zip(results).collect();
    let records = report::records(&scenarios, &indexed, &version_info, &args.fail_on);
    let shard_file = report::shard::ShardFile {
        schema: report::shard::SCHEMA.to_string(),
        shard,
        of,
        planned,
        provider: format!("{:?}", args.provider).to_lowercase(),
        versions: version_info,
        fail_on: args.fail_on.clone(),
        noise: settings.noise.0.clone(),
        scenarios: scenarios.iter().map(report::ScenarioMeta::of).collect(),
        records,
    };
    crate::failpoint::pause_at("report-writing").await;
    write_reports(&shard_file, &report_dir, &[], gate.as_ref())
}

/// Writes the four reports of `runs` and runs.json into `dir`, prints the summary,
/// `headlines` and the files; returns the exit code. `gate` (`--accept`,
/// `--baseline`) judges the report, not runs.json: a merge of shards judges again.
fn write_reports(
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

/// `preflight versions`: one line per minor.
fn versions_table(opts: &components::Options, check: bool) -> String {
    use components::releases::{self, RELEASES};
    use std::fmt::Write;
    let cached_patches = |minor: u32| -> Vec<String> {
        let mut found: Vec<Version> = std::fs::read_dir(opts.cache_dir.join("bin"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.strip_prefix("kubernetes-")?.parse::<Version>().ok()
            })
            .filter(|v| v.minor == minor)
            .filter(|v| {
                components::cached(components::Entry::Kubernetes, v, &opts.cache_dir).is_some()
            })
            .collect();
        found.sort();
        found.iter().map(|v| v.to_string()).collect()
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<7} {:<10} {:<8} {:<22} builds here",
        "minor", "pinned", "etcd", "cached"
    );
    for r in RELEASES {
        let pinned = Version::new(1, r.minor, r.newest);
        let probe = if check {
            Some(releases::probe(&pinned, opts))
        } else {
            releases::known_probe(&pinned, opts)
        };
        let builds = match &probe {
            None => "not checked (preflight versions --check)".to_string(),
            Some(p) if p.buildable() => "yes".to_string(),
            Some(p) => {
                let instead = if check {
                    match releases::resolve(&format!("v1.{}", r.minor), true, opts) {
                        Ok(res) if res.version != pinned => {
                            format!("; runs {} instead", res.version)
                        }
                        Ok(_) => String::new(),
                        Err(_) => "; no patch of this minor builds here".to_string(),
                    }
                } else {
                    String::new()
                };
                format!("no: {}{instead}", p.why_not())
            }
        };
        let cached = cached_patches(r.minor);
        let _ = writeln!(
            out,
            "{:<7} {:<10} {:<8} {:<22} {}{}",
            format!("v1.{}", r.minor),
            pinned.to_string(),
            format!("v{}.{}.{}", r.etcd.0, r.etcd.1, r.etcd.2),
            if cached.is_empty() {
                "-".to_string()
            } else {
                cached.join(",")
            },
            builds,
            if r.note.is_empty() {
                String::new()
            } else {
                format!("  ({})", r.note)
            }
        );
    }
    let _ = writeln!(
        out,
        "\nA minor (`--path v1.29,v1.30`) runs its pinned patch, or the newest patch that builds here when that one cannot; exact patches (v1.31.4) run as given. Cache: {}",
        opts.cache_dir.display()
    );
    out
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
fn noise(extra: &[String]) -> anyhow::Result<crate::snapshot::Noise> {
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
fn kind_tools(
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
    let source = parse_version(
        "--source",
        args.source.as_deref().unwrap_or(components::DEFAULT_SOURCE),
    )?;
    let target = parse_version(
        "--target",
        args.target.as_deref().unwrap_or(components::DEFAULT_TARGET),
    )?;
    progress.println(format!(
        "replaying the twin in {} (captured on Kubernetes {}) on {source} and {target}",
        twin.dir.display(),
        twin.kubernetes_version
    ));
    let opts = args.bins.options(&progress);
    let (s, t) = (source.clone(), target.clone());
    let kind_setup = (args.provider == Provider::Kind).then(|| args.kind_image.is_none());
    let (src, tgt, kind) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let kind = kind_setup
            .map(|build_images| kind_tools(&[s.clone(), t.clone()], build_images, &opts))
            .transpose()?;
        Ok((
            components::ensure(&s, &opts)?,
            components::ensure(&t, &opts)?,
            kind,
        ))
    })
    .await??;
    let replay_opts = crate::twin::replay::ReplayOptions {
        modes,
        reset,
        on: match kind {
            Some(kind) => crate::twin::replay::ReplayOn::Kind {
                kind,
                image: args.kind_image.clone(),
            },
            None => crate::twin::replay::ReplayOn::Local,
        },
        run_id: runner::new_run_id(),
        parallel: args.parallel,
        keep: args.keep,
        progress: progress.clone(),
        noise: noise(&args.noise)?,
    };
    let replayed = crate::twin::replay::replay(&twin, &src, &tgt, &replay_opts).await?;
    let versions = [
        report::VersionInfo::new(source.to_string()),
        report::VersionInfo::new(target.to_string()),
    ];
    let indexed: Vec<(usize, runner::RunResult)> =
        replayed.results.iter().cloned().enumerate().collect();
    // runs.json too, so the CI templates' merge step reads a replay as one shard.
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
        fail_on: args.fail_on.clone(),
        noise: replay_opts.noise.0.clone(),
        scenarios: replayed
            .scenarios
            .iter()
            .map(report::ScenarioMeta::of)
            .collect(),
        records: report::records(&replayed.scenarios, &indexed, &versions, &args.fail_on),
    };
    let dir = args
        .report_dir
        .clone()
        .unwrap_or_else(|| default_report_dir("twin-", &format!("-{}", runner::new_run_id())));
    write_reports(&runs, &dir, &replayed.headlines, gate.as_ref())
}

/// `--accept` and `--baseline` read before anything starts (a bad file stops the job
/// here, not after an hour of runs), with today's date (UTC) for expiry.
fn load_gate(
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
