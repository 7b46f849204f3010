//! `preflight capture`: a twin of a cluster, from reads only.

use anyhow::Context;

use super::*;

pub(super) async fn capture(args: CaptureArgs, progress: Progress) -> anyhow::Result<i32> {
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
