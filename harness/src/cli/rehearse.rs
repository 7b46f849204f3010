//! `preflight rehearse TWIN`: the whole AKS upgrade, node pools included, on a kind
//! cluster shaped as the twin's pools (see `twin::replay::rehearse`).

use std::time::Duration;

use anyhow::Context;

use super::RehearseArgs;
use crate::cluster::Provider;
use crate::progress::Progress;
use crate::runner;
use crate::scenario::{RollNodes, SurgeValue};
use preflight_core::sizing::Scale;

/// `30m`, `90s`, `1h`, or plain seconds.
fn duration(flag: &str, text: &str) -> anyhow::Result<Duration> {
    let t = text.trim();
    let (n, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let n: u64 = n.parse().with_context(|| {
        format!("invalid value for {flag}: `{text}`: expected e.g. 30m, 90s, 1h")
    })?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => anyhow::bail!("invalid value for {flag}: `{text}`: expected e.g. 30m, 90s, 1h"),
    };
    anyhow::ensure!(
        (1..=86_400).contains(&secs),
        "invalid value for {flag}: `{text}`: expected 1s to 24h"
    );
    Ok(Duration::from_secs(secs))
}

/// The roll as the flags ask it, checked before anything starts.
fn roll(args: &RehearseArgs) -> anyhow::Result<RollNodes> {
    let roll = RollNodes {
        max_surge: Some(SurgeValue::Text(args.max_surge.clone())),
        drain_timeout_seconds: duration("--drain-timeout", &args.drain_timeout)?.as_secs() as u32,
        undrainable_node_behavior: Some(args.undrainable_node_behavior.clone()),
        comeback_seconds: args.comeback_seconds,
    };
    roll.parsed().map_err(|e| {
        anyhow::anyhow!(
            "invalid flags: {}",
            e.replace("rollNodes.maxSurge", "--max-surge").replace(
                "rollNodes.undrainableNodeBehavior",
                "--undrainable-node-behavior"
            )
        )
    })?;
    Ok(roll)
}

/// The captured pools' sizes on this machine's kind nodes (see
/// `preflight_core::sizing`), said on the progress output.
fn node_sizes(
    pools: &[crate::twin::nodes::NodePool],
    progress: &Progress,
) -> (Scale, Vec<Option<crate::cluster::NodeSize>>) {
    let unsized_ = |why: &str| {
        progress.println(format!(
            "node sizes as this machine's, not as captured: {why}"
        ));
        (Scale::default(), Vec::new())
    };
    let Some(capacity) = crate::cluster::kind::node_capacity() else {
        return unsized_("/proc does not say this machine's CPUs and memory");
    };
    let (scale, sizes) = crate::twin::nodes::sizes(pools, capacity);
    if sizes.iter().all(Option::is_none) {
        return unsized_("the twin's pools record no allocatable CPU and memory");
    }
    for (p, s) in pools.iter().zip(&sizes) {
        if let Some(s) = s {
            progress.println(format!(
                "pool {}: allocatable cpu {}, memory {} captured; each kind node reserves cpu {}m, memory {} bytes of this machine's {}m, {} bytes",
                p.name,
                p.allocatable.get("cpu").map_or("-", String::as_str),
                p.allocatable.get("memory").map_or("-", String::as_str),
                s.reserved.cpu_millis,
                s.reserved.memory_bytes,
                capacity.cpu_millis,
                capacity.memory_bytes
            ));
        }
    }
    if !scale.is_identity() {
        progress.println(format!(
            "Pods' requests scaled by cpu x{:.4}, memory x{:.4} (the same factors as the nodes): the same Pods fit, and the same do not",
            scale.cpu, scale.memory
        ));
    }
    (scale, sizes)
}

pub(super) async fn rehearse(args: RehearseArgs, progress: Progress) -> anyhow::Result<i32> {
    match args.provider {
        Provider::Kubeconfig => anyhow::bail!(
            "preflight rehearse refuses --provider kubeconfig: it cordons and drains nodes, joins new ones and removes old ones, which on an existing cluster would be a real upgrade of its nodes; it runs on kind clusters it creates (--provider kind)"
        ),
        Provider::Local => anyhow::bail!(
            "preflight rehearse needs nodes with real kubelets to drain: --provider kind (local control planes have no nodes)"
        ),
        Provider::Kind => {}
    }
    let roll = roll(&args)?;
    let twin = crate::twin::manifest::load(&args.twin)?;
    let pools_file = twin.node_pools.clone().with_context(|| {
        format!(
            "twin {}: it records no node pools (twin.nodePools): capture it again with a preflight that records them",
            twin.dir.display()
        )
    })?;
    let pools: Vec<crate::twin::nodes::NodePool> =
        crate::twin::load::read_yaml(&pools_file).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (source, target) =
        super::source_and_target(args.source.as_deref(), args.target.as_deref())?;
    let (scale, sizes) = node_sizes(&pools, &progress);
    let workers = crate::twin::nodes::kind_workers(&pools, args.nodes, &sizes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", pools_file.display()))?;
    progress.println(format!(
        "rehearsing the AKS upgrade of the twin in {} on {} kind workers: {source} -> {target}, max surge {}, drain timeout {} s, undrainable nodes: {}",
        twin.dir.display(),
        workers.len(),
        args.max_surge,
        roll.drain_timeout_seconds,
        args.undrainable_node_behavior
    ));
    let opts = args.bins.options(&progress);
    let (src, tgt, kind) =
        super::run::twin_components(&source, &target, Some(args.kind_image.is_none()), opts)
            .await?;
    let kind = kind.context("the kind CLI")?;
    let replay_opts = crate::twin::replay::ReplayOptions {
        modes: Vec::new(),
        reset: crate::twin::replay::Reset::Reinstall,
        on: crate::twin::replay::ReplayOn::Kind {
            kind,
            image: args.kind_image.clone(),
            workers,
        },
        run_id: runner::new_run_id(),
        parallel: 1,
        keep: args.keep,
        progress: progress.clone(),
        noise: super::run::noise(&[])?,
        scale,
    };
    let replayed = crate::twin::replay::rehearse(&twin, &src, &tgt, &replay_opts, roll).await?;
    super::run::write_replayed(
        &replayed,
        [source, target],
        &replay_opts,
        &args.fail_on,
        args.report_dir.clone(),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_aks_and_kubectl_write_them() {
        assert_eq!(duration("--drain-timeout", "30m").unwrap().as_secs(), 1800);
        assert_eq!(duration("--drain-timeout", "90s").unwrap().as_secs(), 90);
        assert_eq!(duration("--drain-timeout", "120").unwrap().as_secs(), 120);
        assert_eq!(duration("--drain-timeout", "1h").unwrap().as_secs(), 3600);
        for bad in ["", "soon", "0s", "25h", "5d", "-1m"] {
            let e = duration("--drain-timeout", bad).unwrap_err().to_string();
            assert!(e.contains("--drain-timeout"), "{bad}: {e}");
        }
    }
}
