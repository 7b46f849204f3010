//! Images a kind node cannot pull, and what stands in for them.
//!
//! A twin's charts name production images (`registry.corp.example/api:2.4`); a kind
//! node preflight built offline holds none of them and reaches no registry, so those
//! Pods would sit in `ImagePullBackOff`, never Ready: a drain would evict nothing worth
//! watching and a hook Job would hold `helm install` until its timeout. On clusters
//! preflight owns, each container whose image no node holds runs preflight's workload
//! image instead, made to behave as the workload does from the outside: it listens on
//! every declared port (and every port a probe names) and answers HTTP with 200, so
//! HTTP and TCP probes pass; exec probes and handlers run `true`; a container that is
//! meant to finish (an init container, a Job's) exits 0; SIGTERM ends it at once. Every
//! substitution is recorded and reported: the verdict is about scheduling, evictions
//! and admission, never about the application's own code.
//!
//! This module is the pure part: deciding what to change in a Pod. The engine serves
//! it as a mutating admission webhook.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::sizing::Scale;

/// One container that ran something other than what it names, and why that is safe
/// to say about the verdict.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Substitution {
    pub namespace: String,
    /// The Pod's controller (`ReplicaSet/web-5d8f`), else its name or generateName.
    pub workload: String,
    pub container: String,
    /// The image the Pod names.
    pub image: String,
    /// What ran instead: the stand-in image, or the same image with only its pull
    /// policy changed (the node holds it, but `Always` would ask a registry).
    pub replaced_by: String,
    /// What else changed in the container, in words (`exec readiness probe runs
    /// true`, `listens on 8080, 9090`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    /// How many Pods were admitted with it.
    pub pods: usize,
}

/// An image reference as containerd lists it: Docker's short names completed with
/// `docker.io` (and `library/` for a single path component), `:latest` when untagged.
pub fn full_image_ref(image: &str) -> String {
    let first = image.split('/').next().unwrap_or("");
    let has_domain =
        image.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = if has_domain {
        image.to_string()
    } else if image.contains('/') {
        format!("docker.io/{image}")
    } else {
        format!("docker.io/library/{image}")
    };
    let last = full.rsplit('/').next().unwrap_or("");
    if last.contains(':') || last.contains('@') {
        full
    } else {
        format!("{full}:latest")
    }
}

/// The images every schedulable node holds, from the nodes' `status.images` (what
/// each kubelet reports). A control-plane node's own images (etcd, the API server)
/// are not a worker's: with workers, only theirs count.
pub fn held_by_every_node(nodes: &[Value]) -> BTreeSet<String> {
    let control_plane = |n: &Value| {
        n["metadata"]["labels"]
            .as_object()
            .is_some_and(|l| l.contains_key("node-role.kubernetes.io/control-plane"))
    };
    let workers: Vec<&Value> = nodes.iter().filter(|n| !control_plane(n)).collect();
    let counted: Vec<&Value> = if workers.is_empty() {
        nodes.iter().collect()
    } else {
        workers
    };
    let images = |n: &Value| -> BTreeSet<String> {
        n["status"]["images"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|i| i["names"].as_array().into_iter().flatten())
            .filter_map(Value::as_str)
            .map(full_image_ref)
            .collect()
    };
    let mut sets = counted.into_iter().map(images);
    let first = sets.next().unwrap_or_default();
    sets.fold(first, |acc, s| acc.intersection(&s).cloned().collect())
}

/// The user a stand-in runs as when the Pod asks for a non-root user without naming
/// one (the workload image's user is root, which `runAsNonRoot` refuses).
pub const NOBODY: i64 = 65534;

/// The stand-in's program for a container that keeps running: a listener on each
/// port that answers any request with `200 ok`, and an exit on SIGTERM.
pub fn serving_script(ports: &[u16]) -> String {
    let mut script = String::from("trap 'exit 0' TERM INT; export cr=$(printf '\\r'); ");
    for p in ports {
        script.push_str(&format!(
            "nc -ll -p {p} -e sh -c 'while IFS= read -r l && [ \"$l\" != \"$cr\" ] && [ -n \"$l\" ]; do :; done; printf \"HTTP/1.0 200 OK\\r\\nContent-Length: 3\\r\\n\\r\\nok\\n\"' & "
        ));
    }
    script.push_str("while :; do sleep 3600 & wait $!; done");
    script
}

/// Marks a Pod whose requests were scaled (with the factors), so a reinvocation of the
/// webhook does not scale them again.
pub const SCALED_ANNOTATION: &str = "preflight.dev/requests-scaled";

/// The Pod's changes, as JSON patch operations, and the substitutions they make; `None`
/// when every container's image is `held` and none would ask a registry.
pub fn substitute(pod: &Value, held: &BTreeSet<String>, stand_in: &str) -> Option<Admitted> {
    substitute_scaled(pod, held, stand_in, &Scale::default())
}

/// [`substitute`], with each container's requests also scaled by `scale` (a
/// rehearsal's captured node sizes, see [`crate::sizing`]); a scaled container is
/// listed among the substitutions with what changed.
pub fn substitute_scaled(
    pod: &Value,
    held: &BTreeSet<String>,
    stand_in: &str,
    scale: &Scale,
) -> Option<Admitted> {
    // A static Pod's mirror only reflects what the kubelet runs from its manifest.
    if pod["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string() {
        return None;
    }
    // Reinvoked after another webhook's change: scaled once is enough.
    let annotations = &pod["metadata"]["annotations"];
    let scale = match annotations[SCALED_ANNOTATION] {
        Value::String(_) => Scale::default(),
        _ => *scale,
    };
    let mut scaled = false;
    let spec = &pod["spec"];
    let finishes = spec["restartPolicy"]
        .as_str()
        .is_some_and(|p| p != "Always");
    let pod_sc = &spec["securityContext"];
    let mut patch = Vec::new();
    let mut found = Vec::new();
    for (field, init) in [("initContainers", true), ("containers", false)] {
        let Some(list) = spec[field].as_array() else {
            continue;
        };
        let mut changed = false;
        let mut out = Vec::with_capacity(list.len());
        for c in list {
            // A sidecar (an init container that restarts) keeps running.
            let sidecar = init && c["restartPolicy"] == "Always";
            let runs_to_end = (init && !sidecar) || finishes;
            scaled |= scale.requests(c).is_some();
            match container(c, held, stand_in, runs_to_end, pod_sc, &scale) {
                Some((new, s)) => {
                    changed = true;
                    out.push(new);
                    found.push(s);
                }
                None => out.push(c.clone()),
            }
        }
        if changed {
            patch.push(json!({"op": "replace", "path": format!("/spec/{field}"), "value": out}));
        }
    }
    if patch.is_empty() {
        return None;
    }
    if scaled {
        let value = format!("cpu x{:.4}, memory x{:.4}", scale.cpu, scale.memory);
        patch.push(if annotations.is_object() {
            json!({"op": "add", "path": format!("/metadata/annotations/{}", SCALED_ANNOTATION.replace('/', "~1")), "value": value})
        } else {
            json!({"op": "add", "path": "/metadata/annotations", "value": {SCALED_ANNOTATION: value}})
        });
    }
    let meta = &pod["metadata"];
    let namespace = meta["namespace"].as_str().unwrap_or_default().to_string();
    let workload = workload_of(meta);
    let substitutions = found
        .into_iter()
        .map(|(container, image, replaced_by, changes)| Substitution {
            namespace: namespace.clone(),
            workload: workload.clone(),
            container,
            image,
            replaced_by,
            changes,
            pods: 1,
        })
        .collect();
    Some(Admitted {
        patch: Value::Array(patch),
        substitutions,
    })
}

/// What [`substitute`] decided for one Pod.
#[derive(Clone, Debug, PartialEq)]
pub struct Admitted {
    /// JSON patch operations (RFC 6902) for the admission response.
    pub patch: Value,
    pub substitutions: Vec<Substitution>,
}

/// Adds `new` to `all`: the same container of the same workload counts Pods.
pub fn record(all: &mut Vec<Substitution>, new: Substitution) {
    match all.iter_mut().find(|s| {
        (&s.namespace, &s.workload, &s.container, &s.image)
            == (&new.namespace, &new.workload, &new.container, &new.image)
    }) {
        Some(s) => s.pods += new.pods,
        None => all.push(new),
    }
}

fn workload_of(meta: &Value) -> String {
    let controller = meta["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|o| o["controller"] == json!(true));
    match controller {
        Some(o) => format!(
            "{}/{}",
            o["kind"].as_str().unwrap_or_default(),
            o["name"].as_str().unwrap_or_default()
        ),
        None => meta["name"]
            .as_str()
            .or(meta["generateName"].as_str())
            .map(|n| format!("Pod/{n}"))
            .unwrap_or_else(|| "Pod".into()),
    }
}

type Found = (String, String, String, Vec<String>);

/// One container rewritten, or `None` when it runs as it is.
fn container(
    c: &Value,
    held: &BTreeSet<String>,
    stand_in: &str,
    runs_to_end: bool,
    pod_sc: &Value,
    scale: &Scale,
) -> Option<(Value, Found)> {
    let image = c["image"].as_str().unwrap_or_default().to_string();
    let changed = image_change(c, held, stand_in, runs_to_end, pod_sc);
    let Some((requests, said)) = scale.requests(c) else {
        return changed;
    };
    let (mut new, (name, image, replaced_by, mut changes)) = changed.unwrap_or_else(|| {
        let name = c["name"].as_str().unwrap_or_default().to_string();
        (c.clone(), (name, image.clone(), image, Vec::new()))
    });
    new["resources"]["requests"] = requests;
    changes.push(said);
    Some((new, (name, image, replaced_by, changes)))
}

/// The container with its image replaced (or only its pull policy changed) and what
/// else that takes; `None` when the nodes hold its image and it would ask no registry.
fn image_change(
    c: &Value,
    held: &BTreeSet<String>,
    stand_in: &str,
    runs_to_end: bool,
    pod_sc: &Value,
) -> Option<(Value, Found)> {
    let name = c["name"].as_str().unwrap_or_default().to_string();
    let image = c["image"].as_str().unwrap_or_default().to_string();
    let mut new = c.clone();
    let mut changes = Vec::new();
    if held.contains(&full_image_ref(&image)) {
        if c["imagePullPolicy"] != "Always" {
            return None;
        }
        new["imagePullPolicy"] = json!("IfNotPresent");
        changes.push("pull policy Always → IfNotPresent (the node holds the image)".into());
        return Some((new, (name, image.clone(), image, changes)));
    }
    new["image"] = json!(stand_in);
    new["imagePullPolicy"] = json!("Never");
    if let Some(o) = new.as_object_mut() {
        o.remove("args");
    }
    if runs_to_end {
        new["command"] = json!(["true"]);
        changes.push("exits 0 at once".into());
    } else {
        let ports = ports(c);
        new["command"] = json!(["sh", "-c", serving_script(&ports)]);
        if !ports.is_empty() {
            let list: Vec<String> = ports.iter().map(u16::to_string).collect();
            changes.push(format!("listens on {} (answers 200)", list.join(", ")));
        }
    }
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        // `get_mut`, never `new[probe]`: indexing a missing key would add it as null.
        let Some(p) = new.get_mut(probe).and_then(Value::as_object_mut) else {
            continue;
        };
        if p.get("exec").is_some_and(Value::is_object) {
            p.insert("exec".into(), json!({"command": ["true"]}));
            changes.push(format!("exec {} runs true", probe_words(probe)));
        } else if let Some(grpc) = p.remove("grpc") {
            p.insert("tcpSocket".into(), json!({"port": grpc["port"]}));
            changes.push(format!("gRPC {} checks the port only", probe_words(probe)));
        }
    }
    for hook in ["postStart", "preStop"] {
        let Some(h) = new
            .get_mut("lifecycle")
            .and_then(|l| l.get_mut(hook))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        if h.get("exec").is_some_and(Value::is_object) {
            h.insert("exec".into(), json!({"command": ["true"]}));
            changes.push(format!("exec {hook} handler runs true"));
        }
    }
    // The container's own settings, else the Pod's.
    let sc = &c["securityContext"];
    let setting = |key: &str| match &sc[key] {
        Value::Null => &pod_sc[key],
        v => v,
    };
    if setting("runAsNonRoot") == &json!(true) && setting("runAsUser").is_null() {
        new["securityContext"]["runAsUser"] = json!(NOBODY);
        changes.push(format!(
            "runs as user {NOBODY} (runAsNonRoot without a user; the stand-in's image user is root)"
        ));
    }
    Some((new, (name, image, stand_in.to_string(), changes)))
}

fn probe_words(field: &str) -> &'static str {
    match field {
        "startupProbe" => "startup probe",
        "readinessProbe" => "readiness probe",
        _ => "liveness probe",
    }
}

/// Every port the container declares or a probe or handler names by number (a named
/// port resolves to a declared one), sorted, without duplicates.
fn ports(c: &Value) -> Vec<u16> {
    let declared: BTreeMap<&str, u16> = c["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let n = u16::try_from(p["containerPort"].as_u64()?).ok()?;
            Some((p["name"].as_str().unwrap_or(""), n))
        })
        .collect();
    let mut all: BTreeSet<u16> = declared.values().copied().collect();
    let probes = ["startupProbe", "readinessProbe", "livenessProbe"]
        .map(|p| &c[p])
        .into_iter()
        .chain(["postStart", "preStop"].map(|h| &c["lifecycle"][h]));
    for p in probes {
        for kind in ["httpGet", "tcpSocket", "grpc"] {
            match &p[kind]["port"] {
                Value::Number(n) => {
                    if let Some(n) = n.as_u64().and_then(|n| u16::try_from(n).ok()) {
                        all.insert(n);
                    }
                }
                Value::String(s) => {
                    if let Some(n) = declared.get(s.as_str()).copied().or_else(|| s.parse().ok()) {
                        all.insert(n);
                    }
                }
                _ => {}
            }
        }
    }
    all.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAND_IN: &str = "preflight/workload:r1";

    fn held() -> BTreeSet<String> {
        [
            "docker.io/preflight/workload:r1",
            "registry.k8s.io/pause:3.10",
        ]
        .map(String::from)
        .into()
    }

    fn pod(spec: Value) -> Value {
        json!({
            "metadata": {"namespace": "shop", "generateName": "api-7c9-",
                "ownerReferences": [{"kind": "ReplicaSet", "name": "api-7c9", "controller": true}]},
            "spec": spec
        })
    }

    #[test]
    fn short_names_are_completed_as_containerd_lists_them() {
        assert_eq!(
            full_image_ref("busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(full_image_ref("busybox:1"), "docker.io/library/busybox:1");
        assert_eq!(
            full_image_ref("preflight/cni:r1"),
            "docker.io/preflight/cni:r1"
        );
        assert_eq!(
            full_image_ref("registry.k8s.io/kube-proxy:v1.30.14"),
            "registry.k8s.io/kube-proxy:v1.30.14"
        );
        assert_eq!(full_image_ref("localhost/x:1"), "localhost/x:1");
        assert_eq!(
            full_image_ref("localhost:5000/x"),
            "localhost:5000/x:latest"
        );
        assert_eq!(full_image_ref("a.io/x@sha256:ab"), "a.io/x@sha256:ab");
    }

    #[test]
    fn a_held_image_runs_as_it_is_and_only_a_pull_that_would_ask_a_registry_changes() {
        let p = pod(json!({"containers": [
            {"name": "a", "image": "preflight/workload:r1", "imagePullPolicy": "IfNotPresent"}
        ]}));
        assert_eq!(substitute(&p, &held(), STAND_IN), None);
        let p = pod(json!({"containers": [
            {"name": "a", "image": "preflight/workload:r1", "imagePullPolicy": "Always"}
        ]}));
        let a = substitute(&p, &held(), STAND_IN).unwrap();
        assert_eq!(a.patch[0]["value"][0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(a.patch[0]["value"][0]["image"], "preflight/workload:r1");
        assert_eq!(a.substitutions[0].replaced_by, "preflight/workload:r1");
    }

    #[test]
    fn a_serving_container_listens_on_its_ports_and_its_probes_pass() {
        let p = pod(json!({
            "restartPolicy": "Always",
            "securityContext": {"runAsNonRoot": true},
            "initContainers": [{"name": "migrate", "image": "corp.example/migrate:2", "args": ["up"]}],
            "containers": [{
                "name": "api", "image": "corp.example/api:2.4", "args": ["--serve"],
                "ports": [{"name": "http", "containerPort": 8080}, {"containerPort": 9090}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
                "livenessProbe": {"exec": {"command": ["/app/check"]}},
                "startupProbe": {"grpc": {"port": 9443}},
                "lifecycle": {"preStop": {"exec": {"command": ["/app/drain"]}}}
            }]
        }));
        let a = substitute(&p, &held(), STAND_IN).unwrap();
        let init = &a.patch[0];
        assert_eq!(init["path"], "/spec/initContainers");
        assert_eq!(init["value"][0]["command"], json!(["true"]));
        assert!(init["value"][0].get("args").is_none());
        // Nothing the container did not have: an init container may not carry
        // `lifecycle`, and a null probe is noise.
        let keys: Vec<&String> = init["value"][0].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "command",
                "image",
                "imagePullPolicy",
                "name",
                "securityContext"
            ],
            "{init}"
        );
        let api = &a.patch[1]["value"][0];
        assert_eq!(api["image"], STAND_IN);
        assert_eq!(api["imagePullPolicy"], "Never");
        let script = api["command"][2].as_str().unwrap();
        for port in ["-p 8080 ", "-p 9090 ", "-p 9443 "] {
            assert!(script.contains(port), "{script}");
        }
        assert_eq!(api["livenessProbe"]["exec"]["command"], json!(["true"]));
        assert_eq!(api["startupProbe"]["tcpSocket"]["port"], 9443);
        assert!(api["startupProbe"].get("grpc").is_none());
        assert_eq!(
            api["lifecycle"]["preStop"]["exec"]["command"],
            json!(["true"])
        );
        assert_eq!(api["securityContext"]["runAsUser"], NOBODY);
        assert_eq!(
            api["readinessProbe"],
            p["spec"]["containers"][0]["readinessProbe"]
        );
        let s = &a.substitutions;
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].workload, "ReplicaSet/api-7c9");
        assert_eq!(s[1].image, "corp.example/api:2.4");
        assert!(
            s[1].changes.iter().any(|c| c.contains("8080, 9090, 9443")),
            "{s:?}"
        );
    }

    #[test]
    fn a_jobs_container_and_a_pod_that_names_its_user_finish_as_they_are_told() {
        let p = pod(json!({
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000},
            "containers": [{"name": "smoke", "image": "corp.example/smoke:1"}]
        }));
        let a = substitute(&p, &held(), STAND_IN).unwrap();
        let c = &a.patch[0]["value"][0];
        assert_eq!(c["command"], json!(["true"]));
        let keys: Vec<&String> = c.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["command", "image", "imagePullPolicy", "name"], "{c}");
    }

    #[test]
    fn a_user_named_by_the_pod_holds_for_a_container_that_asks_for_non_root() {
        let p = pod(json!({
            "securityContext": {"runAsUser": 1000},
            "containers": [{"name": "api", "image": "corp.example/api:1",
                "securityContext": {"runAsNonRoot": true}}]
        }));
        let a = substitute(&p, &held(), STAND_IN).unwrap();
        let c = &a.patch[0]["value"][0];
        assert_eq!(c["securityContext"], json!({"runAsNonRoot": true}), "{c}");
    }

    #[test]
    fn a_static_pods_mirror_is_left_alone() {
        let mut p = pod(
            json!({"containers": [{"name": "kube-apiserver", "image": "registry.k8s.io/kube-apiserver:v1.30.14"}]}),
        );
        p["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "abc"});
        assert_eq!(substitute(&p, &held(), STAND_IN), None);
    }

    #[test]
    fn counting_the_pods_of_one_workload() {
        let p = pod(json!({"containers": [{"name": "api", "image": "corp.example/api:2.4"}]}));
        let mut all = Vec::new();
        for _ in 0..3 {
            for s in substitute(&p, &held(), STAND_IN).unwrap().substitutions {
                record(&mut all, s);
            }
        }
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].pods, 3);
    }

    #[test]
    fn only_what_every_worker_holds_counts() {
        let node = |name: &str, cp: bool, images: &[&str]| {
            let mut labels = json!({});
            if cp {
                labels["node-role.kubernetes.io/control-plane"] = json!("");
            }
            json!({"metadata": {"name": name, "labels": labels},
                "status": {"images": images.iter().map(|i| json!({"names": [i]})).collect::<Vec<_>>()}})
        };
        let nodes = [
            node(
                "cp",
                true,
                &["registry.k8s.io/etcd:3.5", "preflight/workload:r1"],
            ),
            node("w1", false, &["preflight/workload:r1", "corp.example/a:1"]),
            node("w2", false, &["docker.io/preflight/workload:r1"]),
        ];
        let held = held_by_every_node(&nodes);
        assert_eq!(
            held,
            BTreeSet::from(["docker.io/preflight/workload:r1".to_string()])
        );
    }

    #[test]
    fn the_serving_script_answers_http_and_ends_on_sigterm() {
        let s = serving_script(&[8080]);
        assert!(s.starts_with("trap 'exit 0' TERM INT;"), "{s}");
        assert!(s.contains("nc -ll -p 8080 -e sh -c"), "{s}");
        assert!(s.contains("HTTP/1.0 200 OK"), "{s}");
    }

    #[test]
    fn scaled_requests_are_listed_whether_or_not_the_image_is_replaced() {
        let pod = json!({"metadata": {"namespace": "shop", "name": "p"}, "spec": {
        "containers": [
            {"name": "held", "image": "preflight/workload:r1", "resources": {"requests": {"cpu": "2"}}},
            {"name": "private", "image": "corp.example/api:1", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}},
            {"name": "none", "image": "preflight/workload:r1"}
        ]}});
        let scale = Scale {
            cpu: 0.5,
            memory: 1.0,
        };
        let a = substitute_scaled(&pod, &held(), "preflight/workload:r1", &scale).unwrap();
        let containers = &a.patch[0]["value"];
        assert_eq!(containers[0]["resources"]["requests"]["cpu"], "1000m");
        assert_eq!(containers[0]["image"], "preflight/workload:r1");
        assert_eq!(
            containers[1]["resources"]["requests"],
            json!({"cpu": "250m", "memory": "1Gi"})
        );
        assert_eq!(containers[1]["image"], "preflight/workload:r1");
        assert_eq!(containers[2], pod["spec"]["containers"][2]);
        let listed: Vec<(&str, &str)> = a
            .substitutions
            .iter()
            .map(|s| (s.container.as_str(), s.replaced_by.as_str()))
            .collect();
        assert_eq!(
            listed,
            [
                ("held", "preflight/workload:r1"),
                ("private", "preflight/workload:r1")
            ]
        );
        assert!(
            a.substitutions[0].changes[0].contains("cpu 2 → 1000m"),
            "{:?}",
            a.substitutions[0]
        );
        assert_eq!(a.patch[1]["path"], "/metadata/annotations");
        // Reinvoked: scaled once only.
        let mut again = pod.clone();
        again["metadata"]["annotations"] = json!({SCALED_ANNOTATION: "cpu x0.5"});
        assert!(
            substitute_scaled(&again, &held(), "preflight/workload:r1", &scale).is_some_and(|a| a
                .substitutions
                .iter()
                .all(|s| s.container == "private")
                && a.patch.as_array().unwrap().len() == 1)
        );
        // Unscaled, the held container is left alone.
        let a = substitute(&pod, &held(), "preflight/workload:r1").unwrap();
        assert_eq!(a.substitutions.len(), 1);
    }
}
