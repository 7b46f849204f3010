//! `preflight cluster up|down`: a local control plane that outlives the command, for
//! trying things by hand.

use super::{
    BinArgs, EXIT_OK, LocalCluster, LocalConfig, Progress, components, parse_version, state,
};

pub(super) async fn up(
    version: &str,
    name: &str,
    bins: BinArgs,
    progress: Progress,
) -> anyhow::Result<i32> {
    if state::exists(name) {
        anyhow::bail!(
            "a cluster named `{name}` is already up; run `preflight cluster down --name {name}` first"
        );
    }
    let version = parse_version("--version", version)?;
    let opts = bins.options(&progress);
    let comps = tokio::task::spawn_blocking(move || components::ensure(&version, &opts)).await??;
    let mut config = LocalConfig::new(name.to_string(), comps);
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

pub(super) fn down(name: &str) -> anyhow::Result<i32> {
    let st = state::down(name)?;
    println!("cluster `{name}` ({}) stopped and removed", st.version);
    Ok(EXIT_OK)
}
