//! `cargo bench --bench startup`: how fast local control planes become ready, with a
//! warm components cache.
//!
//! Prints, side by side: one control plane (median of several starts) against the
//! 10 s budget, and source + target started one after the other (the baseline) against
//! both started concurrently, as `preflight run` does.

use std::time::{Duration, Instant};

use preflight::cluster::{LocalCluster, LocalConfig};
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
    });
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}
