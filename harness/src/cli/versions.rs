//! `preflight versions` and `preflight components ensure|kind-image`: what can run, and
//! the binaries and node images built into the cache.

use super::{EXIT_OK, Progress, versions_or_pinned};
use crate::components::{self, Version};

pub(super) async fn versions(check: bool, progress: Progress) -> anyhow::Result<i32> {
    let opts = components::Options::from_env(progress);
    let table = tokio::task::spawn_blocking(move || versions_table(&opts, check)).await?;
    print!("{table}");
    Ok(EXIT_OK)
}

pub(super) async fn ensure(
    versions: Vec<String>,
    kubectl: bool,
    opts: components::Options,
) -> anyhow::Result<i32> {
    let o = opts.clone();
    let versions = tokio::task::spawn_blocking(move || versions_or_pinned(&versions, &o)).await??;
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

pub(super) async fn kind_image(
    versions: Vec<String>,
    opts: components::Options,
) -> anyhow::Result<i32> {
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
