//! `cargo bench --bench capture`: `preflight capture` of a cluster with 20 CRDs and
//! 5,000 stored custom resources (250 each), time and twin size, against the same
//! cluster's capture before the objects were created (the baseline), side by side.
//!
//! The objects carry labels, an annotation and (every tenth) an owner link to another
//! object of their CRD, so the metadata the twin keeps is not empty. The capture runs
//! the real binary, as a user would.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, DynamicObject, PostParams};
use kube::discovery::ApiResource;
use preflight::cluster::{LocalCluster, LocalConfig};
use preflight::components::{self, Version};
use preflight::progress::Progress;

const CRDS: usize = 20;
const PER_CRD: usize = 250;

fn capture(kubeconfig: &Path, out: &Path) -> Duration {
    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_preflight"))
        .args(["capture", "--kubeconfig"])
        .arg(kubeconfig)
        .arg("--out")
        .arg(out)
        .env("CI", "true")
        .status()
        .expect("running preflight capture");
    assert!(status.success(), "capture into {}", out.display());
    started.elapsed()
}

/// Bytes of every file under `dir`.
fn size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                size(&p)
            } else {
                e.metadata().map_or(0, |m| m.len())
            }
        })
        .sum()
}

fn crd_ar() -> ApiResource {
    ApiResource {
        group: "apiextensions.k8s.io".into(),
        version: "v1".into(),
        api_version: "apiextensions.k8s.io/v1".into(),
        kind: "CustomResourceDefinition".into(),
        plural: "customresourcedefinitions".into(),
    }
}

fn kind_ar(i: usize) -> ApiResource {
    ApiResource {
        group: "bench.preflight.dev".into(),
        version: "v1".into(),
        api_version: "bench.preflight.dev/v1".into(),
        kind: format!("Thing{i}"),
        plural: format!("things{i}"),
    }
}

async fn create_crds(client: &kube::Client) {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &crd_ar());
    for i in 0..CRDS {
        let crd: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("things{i}.bench.preflight.dev")},
            "spec": {
                "group": "bench.preflight.dev",
                "scope": "Namespaced",
                "names": {"kind": format!("Thing{i}"), "plural": format!("things{i}")},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
            },
        }))
        .unwrap();
        api.create(&PostParams::default(), &crd).await.unwrap();
    }
}

/// Creates the objects, 16 requests at a time (a CRD is served a moment after it is
/// created: a 404 is retried within a deadline).
async fn create_objects(client: &kube::Client) {
    let jobs = (0..CRDS).flat_map(|i| (0..PER_CRD).map(move |j| (i, j)));
    futures::stream::iter(jobs)
        .for_each_concurrent(16, |(i, j)| {
            let client = client.clone();
            async move {
                let api: Api<DynamicObject> = Api::namespaced_with(client, "default", &kind_ar(i));
                let mut meta = serde_json::json!({
                    "name": format!("thing-{j}"),
                    "labels": {"app": "bench", "shard": (j % 7).to_string()},
                    "annotations": {"bench.preflight.dev/note": "kept as metadata"},
                });
                if j % 10 == 9 {
                    meta["ownerReferences"] = serde_json::json!([{
                        "apiVersion": "bench.preflight.dev/v1", "kind": format!("Thing{i}"),
                        "name": "thing-0", "uid": "00000000-0000-0000-0000-000000000000",
                    }]);
                }
                let obj: DynamicObject = serde_json::from_value(serde_json::json!({
                    "apiVersion": "bench.preflight.dev/v1", "kind": format!("Thing{i}"),
                    "metadata": meta, "spec": {"size": j},
                }))
                .unwrap();
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    match api.create(&PostParams::default(), &obj).await {
                        Ok(_) => break,
                        Err(kube::Error::Api(e)) if e.code == 404 && Instant::now() < deadline => {
                            tokio::time::sleep(Duration::from_millis(200)).await
                        }
                        Err(e) => panic!("creating thing{i}/thing-{j}: {e}"),
                    }
                }
            }
        })
        .await;
}

fn main() {
    preflight::init_crypto();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let opts = components::Options::from_env(Progress::from_env());
    let target: Version = components::DEFAULT_TARGET.parse().unwrap();
    let comps = components::ensure(&target, &opts).expect("components");
    let work = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let cluster = LocalCluster::start(LocalConfig::new("capture-bench", comps))
            .await
            .expect("control plane");
        let client = cluster.client();
        create_crds(&client).await;
        let empty = work.path().join("twin-empty");
        let took_empty = capture(cluster.kubeconfig(), &empty);
        eprintln!("creating {} objects", CRDS * PER_CRD);
        let started = Instant::now();
        create_objects(&client).await;
        eprintln!("created in {:.1}s", started.elapsed().as_secs_f64());
        let full = work.path().join("twin-full");
        let took_full = capture(cluster.kubeconfig(), &full);
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(full.join("capture.json")).unwrap())
                .unwrap();
        let kept: u64 = manifest["customResources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["kept"].as_u64().unwrap())
            .sum();
        assert_eq!(kept as usize, CRDS * PER_CRD, "every object kept");
        let (s_empty, s_full) = (size(&empty), size(&full));
        println!();
        println!(
            "capture of {CRDS} CRDs: without objects (baseline) vs with {} stored objects",
            CRDS * PER_CRD
        );
        println!(
            "{:<22} {:>12} {:>12} {:>8}",
            "", "baseline", "measured", "ratio"
        );
        println!(
            "{:<22} {:>11.2}s {:>11.2}s {:>8.2}",
            "capture time",
            took_empty.as_secs_f64(),
            took_full.as_secs_f64(),
            took_full.as_secs_f64() / took_empty.as_secs_f64()
        );
        println!(
            "{:<22} {:>10}KB {:>10}KB {:>8.2}",
            "twin size",
            s_empty / 1024,
            s_full / 1024,
            s_full as f64 / s_empty.max(1) as f64
        );
        cluster.stop();
    });
}
