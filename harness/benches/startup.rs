//! `cargo bench --bench startup`: how fast local control planes become ready, with a
//! warm components cache.
//!
//! Prints, side by side: one control plane (median of several starts) against the
//! 10 s budget, and source + target started one after the other (the baseline) against
//! both started concurrently, as `preflight run` does. Where a Docker engine answers,
//! the same for kind clusters (from preflight's node images), with local as the
//! baseline: what a kubelet costs.

use std::time::{Duration, Instant};

use preflight::cluster::{KindCluster, KindConfig, LocalCluster, LocalConfig};
use preflight::components::{self, Version};
use preflight::progress::Progress;

fn main() {
    preflight::init_crypto();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let opts = components::Options::from_env(Progress::from_env());
    let source: Version = components::DEFAULT_SOURCE.parse().unwrap();
    let target: Version = components::DEFAULT_TARGET.parse().unwrap();
    let src = components::ensure(&source, &opts).expect("source components");
    let tgt = components::ensure(&target, &opts).expect("target components");
    let rounds: usize = std::env::var("PREFLIGHT_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);

    runtime.block_on(async {
        let start = |name: &str, c: &components::Components| {
            let config = LocalConfig::new(name, c.clone());
            async move {
                let t = Instant::now();
                let cluster = LocalCluster::start(config)
                    .await
                    .expect("control plane starts");
                let ready = t.elapsed();
                drop(cluster);
                ready
            }
        };
        let mut single = Vec::new();
        let mut sequential = Vec::new();
        let mut concurrent = Vec::new();
        for _ in 0..rounds {
            single.push(start("bench", &tgt).await);
            let t = Instant::now();
            start("bench-source", &src).await;
            start("bench-target", &tgt).await;
            sequential.push(t.elapsed());
            let t = Instant::now();
            tokio::join!(start("bench-source", &src), start("bench-target", &tgt));
            concurrent.push(t.elapsed());
        }
        let (one, seq, conc) = (
            median(&mut single),
            median(&mut sequential),
            median(&mut concurrent),
        );
        println!("local control plane start-up, median of {rounds} rounds (warm cache)");
        println!(
            "{:<44} {:>10} {:>10} {:>8}",
            "measurement", "baseline", "preflight", "ratio"
        );
        println!(
            "{:<44} {:>9.2}s {:>9.2}s {:>8.2}",
            "one control plane ready vs the 10 s budget",
            10.0,
            one.as_secs_f64(),
            one.as_secs_f64() / 10.0
        );
        println!(
            "{:<44} {:>9.2}s {:>9.2}s {:>8.2}",
            "source + target: sequential vs concurrent",
            seq.as_secs_f64(),
            conc.as_secs_f64(),
            conc.as_secs_f64() / seq.as_secs_f64()
        );

        if components::kind_image::check_docker().is_err() {
            println!("kind: skipped (no Docker engine answers; `sudo ci/docker-engine.sh`)");
            return;
        }
        let kind = components::kind_image::ensure_kind(&opts).expect("kind CLI");
        for v in [&source, &target] {
            components::kind_image::ensure(v, &opts).expect("kind node image");
        }
        let kind_start = |name: String, c: &components::Components| {
            let config = KindConfig {
                name,
                version: c.version.clone(),
                image: components::kind_image::node_image(&c.version),
                kind: kind.clone(),
                helm: c.helm.clone(),
                load_images: Vec::new(),
                keep: false,
                workers: Vec::new(),
            };
            async move {
                let t = Instant::now();
                let cluster = KindCluster::start(config).await.expect("kind cluster");
                let ready = t.elapsed();
                drop(cluster);
                ready
            }
        };
        let id = preflight::runner::new_run_id();
        let mut kind_one = Vec::new();
        let mut kind_two = Vec::new();
        for round in 0..rounds {
            kind_one.push(kind_start(format!("preflight-bench-{id}{round}"), &tgt).await);
            let t = Instant::now();
            tokio::join!(
                kind_start(format!("preflight-bench-{id}{round}s"), &src),
                kind_start(format!("preflight-bench-{id}{round}t"), &tgt)
            );
            kind_two.push(t.elapsed());
        }
        let (k1, k2) = (median(&mut kind_one), median(&mut kind_two));
        println!(
            "{:<44} {:>9.2}s {:>9.2}s {:>8.2}",
            "one cluster ready: local vs kind",
            one.as_secs_f64(),
            k1.as_secs_f64(),
            k1.as_secs_f64() / one.as_secs_f64()
        );
        println!(
            "{:<44} {:>9.2}s {:>9.2}s {:>8.2}",
            "source + target concurrent: local vs kind",
            conc.as_secs_f64(),
            k2.as_secs_f64(),
            k2.as_secs_f64() / conc.as_secs_f64()
        );
    });
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}
