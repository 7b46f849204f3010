//! `cargo bench --bench settle`: how long waiting for the cascade takes after a
//! Deployment (3 replicas) is deleted on a local control plane, when nothing is stuck.
//!
//! Side by side: the quiet-period rule alone (the baseline: nothing changed for 2 s)
//! against settling from evidence (no object without its owners, no deletion under
//! way, the garbage collector's work queues empty in the controller manager's metrics).
//! Also what the snapshot of every listable type costs while settling.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use preflight::cluster::{LocalCluster, LocalConfig};
use preflight::components::{self, Version};
use preflight::exercise::settle::{self, GcMetrics};
use preflight::progress::Progress;
use preflight::snapshot::Noise;

fn main() {
    preflight::init_crypto();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let opts = components::Options::from_env(Progress::from_env());
    let target: Version = components::DEFAULT_TARGET.parse().unwrap();
    let comps = components::ensure(&target, &opts).expect("components");
    let rounds: usize = std::env::var("PREFLIGHT_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    runtime.block_on(async {
        let cluster = LocalCluster::start(LocalConfig::new("bench-settle", comps))
            .await
            .expect("control plane");
        let client = cluster.client();
        let gc = GcMetrics::Url(cluster.controller_manager_metrics_url());
        let mut quiet = Vec::new();
        let mut evidence = Vec::new();
        for round in 0..rounds {
            for (mode, gc, out) in [
                ("quiet", None, &mut quiet),
                ("evidence", Some(&gc), &mut evidence),
            ] {
                let ns = format!("bench-{mode}-{round}");
                preflight::smoke::ensure_namespace_labelled(&client, &ns, "bench")
                    .await
                    .expect("namespace");
                let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
                deployments
                    .create(
                        &PostParams::default(),
                        &preflight::smoke::deployment("web", 3),
                    )
                    .await
                    .expect("deployment");
                let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
                preflight::smoke::poll(Duration::from_secs(30), || async {
                    let n = pods.list(&ListParams::default()).await.ok()?.items.len();
                    (n == 3).then_some(())
                })
                .await
                .expect("3 Pods");
                deployments
                    .delete("web", &DeleteParams::background())
                    .await
                    .expect("delete");
                let t = Instant::now();
                let r = settle::settle(
                    &client,
                    &ns,
                    &Noise::default(),
                    Duration::from_secs(60),
                    gc,
                    &|| Box::pin(async { None }),
                    None,
                )
                .await;
                assert_eq!(r.orphans, 0, "{mode}: {r:?}");
                assert!(!r.timed_out, "{mode}: {r:?}");
                out.push(t.elapsed());
            }
        }
        let (q, e) = (median(&mut quiet), median(&mut evidence));
        println!("settle after deleting a Deployment (3 Pods), nothing stuck, median of {rounds}");
        println!(
            "{:<44} {:>10} {:>10} {:>8}",
            "measurement", "baseline", "preflight", "ratio"
        );
        println!(
            "{:<44} {:>9.2}s {:>9.2}s {:>8.2}",
            "quiet period vs garbage-collector evidence",
            q.as_secs_f64(),
            e.as_secs_f64(),
            e.as_secs_f64() / q.as_secs_f64()
        );
        cluster.stop();
    });
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}
