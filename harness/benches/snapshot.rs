//! `cargo bench --bench snapshot`: a snapshot of a cluster holding 5,000 objects across
//! more than 20 resource types, preflight's (discovery + concurrent LISTs) against the
//! usual by-hand way (`kubectl api-resources --verbs=list -o name`, then
//! `kubectl get -A -o json` for each), on the same cluster, side by side.

use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use preflight::cluster::{LocalCluster, LocalConfig};
use preflight::components::{self, Version};
use preflight::progress::Progress;
use preflight::snapshot::{self, SnapshotScope};

const TYPES: usize = 20;
const PER_TYPE: usize = 250;

fn crd(i: usize) -> DynamicObject {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("things{i}.bench.preflight.dev")},
        "spec": {"group": "bench.preflight.dev", "scope": "Namespaced",
                 "names": {"kind": format!("Thing{i}"), "plural": format!("things{i}"), "singular": format!("thing{i}")},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .unwrap()
}

fn kubectl_snapshot(kubectl: &std::path::Path, kubeconfig: &std::path::Path) -> usize {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(kubectl)
            .args(args)
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let resources =
        String::from_utf8(run(&["api-resources", "--verbs=list", "-o", "name"])).unwrap();
    let mut count = 0;
    for r in resources.lines().filter(|r| !r.is_empty()) {
        let list: serde_json::Value =
            serde_json::from_slice(&run(&["get", r, "-A", "-o", "json"])).unwrap();
        count += list["items"].as_array().map_or(0, Vec::len);
    }
    count
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    preflight::init_crypto();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let opts = components::Options::from_env(Progress::from_env());
    let version: Version = components::DEFAULT_TARGET.parse().unwrap();
    let comps = components::ensure(&version, &opts).unwrap();
    let kubectl = components::ensure_kubectl(&version, &opts).unwrap();
    let rounds: usize = std::env::var("PREFLIGHT_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);

    rt.block_on(async {
        let cluster = LocalCluster::start(LocalConfig::new("bench-snapshot", comps)).await.unwrap();
        let client = cluster.client();
        preflight::smoke::ensure_namespace(&client, "bench").await.unwrap();
        let crds: Api<DynamicObject> = Api::all_with(
            client.clone(),
            &ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"), "customresourcedefinitions"),
        );
        for i in 0..TYPES {
            crds.create(&PostParams::default(), &crd(i)).await.unwrap();
        }
        let creates = (0..TYPES).flat_map(|i| (0..PER_TYPE).map(move |j| (i, j)));
        let created: usize = futures::stream::iter(creates)
            .map(|(i, j)| {
                let client = client.clone();
                async move {
                    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("bench.preflight.dev", "v1", &format!("Thing{i}")), &format!("things{i}"));
                    let api: Api<DynamicObject> = Api::namespaced_with(client, "bench", &ar);
                    let obj: DynamicObject = serde_json::from_value(serde_json::json!({
                        "apiVersion": "bench.preflight.dev/v1", "kind": format!("Thing{i}"), "metadata": {"name": format!("t{j}")}, "data": {"n": j}
                    }))
                    .unwrap();
                    // The CRD may take a moment to be served: retry with a deadline.
                    let deadline = Instant::now() + Duration::from_secs(60);
                    loop {
                        match api.create(&PostParams::default(), &obj).await {
                            Ok(_) => return 1,
                            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
                            Err(e) => panic!("creating Thing{i}/t{j}: {e}"),
                        }
                    }
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<usize>>()
            .await
            .into_iter()
            .sum();

        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        let (mut n_ours, mut n_theirs, mut types) = (0, 0, 0);
        for _ in 0..rounds {
            let t = Instant::now();
            let snap = snapshot::take(&client, &SnapshotScope::default()).await.unwrap();
            ours.push(t.elapsed());
            n_ours = snap.objects.len();
            types = snap.types;
            let (kubectl, kc) = (kubectl.clone(), cluster.kubeconfig().to_path_buf());
            let t = Instant::now();
            n_theirs = tokio::task::spawn_blocking(move || kubectl_snapshot(&kubectl, &kc)).await.unwrap();
            theirs.push(t.elapsed());
        }
        let (a, b) = (median(theirs), median(ours));
        println!("snapshot of a cluster with {created} created objects across {TYPES} custom types ({types} listable types in all), median of {rounds}");
        println!("{:<46} {:>10} {:>10} {:>8}", "measurement", "kubectl", "preflight", "speed-up");
        println!("{:<46} {:>9.2}s {:>9.2}s {:>7.1}x", "full snapshot wall time", a.as_secs_f64(), b.as_secs_f64(), a.as_secs_f64() / b.as_secs_f64());
        println!("{:<46} {:>10} {:>10}", "objects seen (preflight leaves out events, leases)", n_theirs, n_ours);

        // What snapshots did before: discovery (preferred versions), then every type
        // listed as whole objects, concurrently; against today's snapshot (discovery of
        // every served version and the APIServices, paged metadata-only lists).
        let snap = snapshot::take(&client, &SnapshotScope::default()).await.unwrap();
        let listed: Vec<ApiResource> = snap
            .listed
            .iter()
            .map(|t| {
                ApiResource::from_gvk_with_plural(
                    &GroupVersionKind::gvk(&t.group, &t.version, &t.kind),
                    &t.resource,
                )
            })
            .collect();
        let mut whole = Vec::new();
        let mut bytes_whole = 0;
        for _ in 0..rounds {
            let t = Instant::now();
            snapshot::discover(&client).await.unwrap();
            bytes_whole = futures::stream::iter(listed.iter().map(|ar| {
                let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
                async move {
                    let list = api.list(&kube::api::ListParams::default()).await.unwrap();
                    serde_json::to_vec(&list.items).unwrap().len()
                }
            }))
            .buffer_unordered(16)
            .collect::<Vec<usize>>()
            .await
            .into_iter()
            .sum::<usize>();
            whole.push(t.elapsed());
        }
        let w = median(whole);
        let bytes_meta = serde_json::to_vec(&snap.objects).unwrap().len();
        println!("{:<46} {:>10} {:>10} {:>8}", "measurement", "whole", "metadata", "ratio");
        println!("{:<46} {:>9.2}s {:>9.2}s {:>8.2}", "snapshot: whole-object lists vs metadata-only", w.as_secs_f64(), b.as_secs_f64(), b.as_secs_f64() / w.as_secs_f64());
        println!("{:<46} {:>9}K {:>9}K {:>8.2}", "bytes kept", bytes_whole / 1024, bytes_meta / 1024, bytes_meta as f64 / bytes_whole as f64);
    });
}
