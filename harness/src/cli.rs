//! The command line: parsing, and one function per command.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::cluster::{LocalCluster, LocalConfig, state};
use crate::components::{self, SourceKind, Version};
use crate::progress::Progress;
use crate::smoke;

/// Exit code: the target is no worse than the source.
pub const EXIT_OK: i32 = 0;
/// Exit code: findings (leftovers, regressions).
pub const EXIT_FINDINGS: i32 = 1;
/// Exit code: the harness could not run.
pub const EXIT_ERROR: i32 = 2;

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
    Run(RunArgs),
    /// Manage the cache of Kubernetes binaries.
    #[command(subcommand)]
    Components(ComponentsCommand),
    /// Start or stop a local control plane for debugging.
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

/// Where binaries come from (shared by every command that needs them).
#[derive(Debug, Args, Clone)]
pub struct BinArgs {
    /// Use binaries from this directory (kube-apiserver, kube-controller-manager, etcd, helm) instead of the cache.
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
    /// Source Kubernetes version (what the cluster runs now).
    #[arg(long, default_value = components::DEFAULT_SOURCE)]
    pub source: String,
    /// Target Kubernetes version (what the cluster is upgraded to).
    #[arg(long, default_value = components::DEFAULT_TARGET)]
    pub target: String,
    /// Keep the clusters' directories (logs, certificates, etcd data) after the run.
    #[arg(long)]
    pub keep: bool,
    /// How long to wait for the garbage collector's cascade, in seconds.
    #[arg(long, default_value_t = 60)]
    pub settle_timeout: u64,
    #[command(flatten)]
    pub bins: BinArgs,
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

fn parse_version(flag: &str, value: &str) -> anyhow::Result<Version> {
    value
        .parse()
        .with_context(|| format!("invalid value for {flag}"))
}

/// Runs a parsed command; returns the process exit code.
pub async fn execute(cli: Cli, progress: Progress) -> anyhow::Result<i32> {
    match cli.command {
        Command::Run(args) => run(args, progress).await,
        Command::Components(ComponentsCommand::Ensure {
            versions,
            kubectl,
            bins,
        }) => {
            let opts = bins.options(&progress);
            let versions = if versions.is_empty() {
                vec![
                    components::DEFAULT_SOURCE.to_string(),
                    components::DEFAULT_TARGET.to_string(),
                ]
            } else {
                versions
            };
            for v in versions {
                let version = parse_version("--version", &v)?;
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

async fn run(args: RunArgs, progress: Progress) -> anyhow::Result<i32> {
    let source = parse_version("--source", &args.source)?;
    let target = parse_version("--target", &args.target)?;
    let opts = args.bins.options(&progress);
    let (s, t) = (source.clone(), target.clone());
    let (src_comps, tgt_comps) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        Ok((
            components::ensure(&s, &opts)?,
            components::ensure(&t, &opts)?,
        ))
    })
    .await??;

    let config = |name: &str, c: components::Components| {
        let mut cfg = LocalConfig::new(name, c);
        cfg.keep = args.keep;
        cfg.progress = progress.clone();
        cfg
    };
    let (src, tgt) = tokio::join!(
        LocalCluster::start(config("source", src_comps)),
        LocalCluster::start(config("target", tgt_comps))
    );
    let (src, tgt) = (src?, tgt?);
    let deadline = Duration::from_secs(args.settle_timeout);
    let mut worse = false;
    let mut rows = Vec::new();
    for cluster in [&src, &tgt] {
        let step = progress.step(format!(
            "garbage-collection smoke check on `{}` ({})",
            cluster.name(),
            cluster.version()
        ));
        let outcome = smoke::run(&cluster.client(), "preflight-smoke", "web", deadline).await?;
        if outcome.clean() {
            step.done("cascade complete");
        } else {
            step.fail(format!("{} left behind", outcome.leftovers.len()));
        }
        rows.push((
            cluster.name().to_string(),
            cluster.version().to_string(),
            outcome,
        ));
    }
    if !rows[1].2.clean() && rows[0].2.clean() {
        worse = true;
    }
    println!(
        "{:<8} {:<10} {:>11} {:>6} {:>9}  leftovers",
        "cluster", "version", "replicasets", "pods", "cascade"
    );
    for (name, version, o) in &rows {
        let cascade = o
            .cascade_seconds
            .map_or("timeout".to_string(), |s| format!("{s:.1}s"));
        println!(
            "{name:<8} {version:<10} {:>11} {:>6} {cascade:>9}  {}",
            o.replicasets_created,
            o.pods_created,
            if o.leftovers.is_empty() {
                "-".to_string()
            } else {
                o.leftovers.join(", ")
            }
        );
    }
    let any_leftover = rows.iter().any(|r| !r.2.clean());
    src.stop();
    tgt.stop();
    Ok(if worse || any_leftover {
        EXIT_FINDINGS
    } else {
        EXIT_OK
    })
}
