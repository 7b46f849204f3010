//! The image stand-in webhook: on a kind cluster preflight owns, every Pod created is
//! reviewed, and each container whose image no node holds runs preflight's workload
//! image instead (what changes, and why it is safe for the verdict:
//! [`preflight_core::images`]). Served by the run's webhook server under the run's CA,
//! registered fail-open (`Ignore`: if preflight's server is gone the Pod is created as
//! it was, and its image pull fails where everyone can see it), and proven live before
//! anything is installed: a dry-run Pod comes back substituted.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum_server::Handle;
use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use preflight_core::images::{self, Substitution};
use preflight_core::sizing::Scale;
use serde_json::{Value, json};

use super::{WebhookError, WebhookServer};

/// The configuration's name (cluster-scoped, one per cluster preflight owns).
pub const CONFIGURATION: &str = "preflight-image-stand-in";

/// How long the nodes may take to report their images, and the API server to start
/// calling the new configuration.
const DEADLINE: Duration = Duration::from_secs(30);

#[derive(Clone)]
struct Shared {
    held: Arc<BTreeSet<String>>,
    stand_in: Arc<str>,
    scale: Scale,
    found: Arc<Mutex<Vec<Substitution>>>,
}

/// The running webhook; stops serving when dropped.
pub struct ImageStandIn {
    handle: Handle<std::net::SocketAddr>,
    found: Arc<Mutex<Vec<Substitution>>>,
    held: usize,
}

impl std::fmt::Debug for ImageStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStandIn")
            .field("held", &self.held)
            .finish_non_exhaustive()
    }
}

impl ImageStandIn {
    /// Reads what every node holds, serves the webhook on `server` and registers it
    /// with the cluster; returns once the API server calls it. Each Pod's requests are
    /// also scaled by `scale` (a rehearsal's node sizes; `Scale::default()` changes
    /// nothing).
    pub async fn start(
        server: &WebhookServer,
        client: &kube::Client,
        stand_in: &str,
        scale: Scale,
    ) -> Result<ImageStandIn, WebhookError> {
        let held = held(client, stand_in).await?;
        let shared = Shared {
            held: Arc::new(held),
            stand_in: stand_in.into(),
            scale,
            found: Arc::new(Mutex::new(Vec::new())),
        };
        let app = Router::new()
            .route("/images", post(review))
            .with_state(shared.clone());
        let (addr, handle) = server.serve("image stand-in", app).await?;
        let this = ImageStandIn {
            handle,
            found: shared.found.clone(),
            held: shared.held.len(),
        };
        register(client, server, &format!("https://{addr}/images")).await?;
        live(client, stand_in).await?;
        Ok(this)
    }

    /// Every substitution made so far (dry runs not counted), one per container of a
    /// workload, with its Pods counted.
    pub fn substitutions(&self) -> Vec<Substitution> {
        let mut all = self.found.lock().expect("substitutions lock").clone();
        all.sort();
        all
    }
}

impl Drop for ImageStandIn {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

fn register_error(detail: impl std::fmt::Display) -> WebhookError {
    WebhookError::Register {
        name: CONFIGURATION.into(),
        detail: detail.to_string(),
    }
}

/// The images every worker reports holding (see [`images::held_by_every_node`]), once
/// every node reports the stand-in among them: before the kubelet's first status
/// with images, a node seems to hold nothing.
async fn held(client: &kube::Client, stand_in: &str) -> Result<BTreeSet<String>, WebhookError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let started = Instant::now();
    let want = images::full_image_ref(stand_in);
    loop {
        let list = nodes
            .list(&ListParams::default())
            .await
            .map_err(register_error)?;
        let values: Vec<Value> = list
            .items
            .iter()
            .filter_map(|n| serde_json::to_value(n).ok())
            .collect();
        let held = images::held_by_every_node(&values);
        if held.contains(&want) {
            return Ok(held);
        }
        if started.elapsed() >= DEADLINE {
            return Err(register_error(format!(
                "after {}s the nodes do not all report holding {stand_in} (node status images)",
                DEADLINE.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn register(
    client: &kube::Client,
    server: &WebhookServer,
    url: &str,
) -> Result<(), WebhookError> {
    let config: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": CONFIGURATION, "labels": {super::register::MANAGED_BY.0: super::register::MANAGED_BY.1}},
        "webhooks": [{
            "name": "images.preflight.dev",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Ignore",
            "timeoutSeconds": 10,
            // After the twin's own mutating webhooks: the containers as they end up.
            "reinvocationPolicy": "IfNeeded",
            "clientConfig": {"url": url, "caBundle": server.ca_bundle()},
            // The cluster's own components are the node image's: kube-proxy or CoreDNS
            // at an image a worker lacks (the target's, before the nodes are rolled)
            // must not be replaced by something that only answers probes.
            "namespaceSelector": {"matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}
            ]},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]
        }]
    }))
    .map_err(register_error)?;
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &config)
        .await
        .map_err(register_error)?;
    Ok(())
}

/// Waits until a dry-run Pod naming an image no node holds comes back with the
/// stand-in: the API server calls the configuration.
async fn live(client: &kube::Client, stand_in: &str) -> Result<(), WebhookError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let probe: Pod = serde_json::from_value(json!({
        "metadata": {"generateName": "preflight-image-check-"},
        "spec": {"containers": [{"name": "check", "image": "preflight.invalid/check:1"}]}
    }))
    .map_err(register_error)?;
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let started = Instant::now();
    loop {
        let answer = pods.create(&params, &probe).await.map_err(register_error)?;
        let image = answer
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.clone());
        if image.as_deref() == Some(stand_in) {
            return Ok(());
        }
        if started.elapsed() >= DEADLINE {
            return Err(register_error(format!(
                "the API server did not call it within {}s (a dry-run Pod kept its image)",
                DEADLINE.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn review(State(shared): State<Shared>, body: Bytes) -> axum::Json<Value> {
    axum::Json(answer(&shared, &body))
}

/// The review's answer: the Pod admitted, with the stand-in's patch when it needs one.
fn answer(shared: &Shared, body: &[u8]) -> Value {
    let review: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let req = &review["request"];
    let allowed = |extra: Value| {
        let mut response = json!({"uid": req["uid"], "allowed": true});
        if let (Some(r), Some(e)) = (response.as_object_mut(), extra.as_object()) {
            r.extend(e.clone());
        }
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
    };
    if req["operation"] != "CREATE" || !req["object"].is_object() {
        return allowed(json!({}));
    }
    let mut pod = req["object"].clone();
    if pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .is_empty()
    {
        pod["metadata"]["namespace"] = req["namespace"].clone();
    }
    let Some(admitted) =
        images::substitute_scaled(&pod, &shared.held, &shared.stand_in, &shared.scale)
    else {
        return allowed(json!({}));
    };
    if req["dryRun"] != json!(true) {
        let mut found = shared.found.lock().expect("substitutions lock");
        for s in admitted.substitutions {
            images::record(&mut found, s);
        }
    }
    let patch = base64::engine::general_purpose::STANDARD.encode(admitted.patch.to_string());
    allowed(json!({"patchType": "JSONPatch", "patch": patch}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        Shared {
            held: Arc::new(BTreeSet::from([
                "docker.io/preflight/workload:r1".to_string()
            ])),
            stand_in: "preflight/workload:r1".into(),
            scale: Scale::default(),
            found: Arc::default(),
        }
    }

    fn review(dry_run: bool, image: &str) -> Vec<u8> {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u-1", "operation": "CREATE", "namespace": "shop", "dryRun": dry_run,
            "object": {"metadata": {"generateName": "api-"}, "spec": {"containers": [{"name": "api", "image": image}]}}
        }})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_pod_whose_image_no_node_holds_is_patched_and_recorded_unless_a_dry_run() {
        let s = shared();
        let a = answer(&s, &review(true, "corp.example/api:1"));
        assert_eq!(a["response"]["uid"], "u-1");
        assert_eq!(a["response"]["allowed"], true);
        assert_eq!(a["response"]["patchType"], "JSONPatch");
        let patch = base64::engine::general_purpose::STANDARD
            .decode(a["response"]["patch"].as_str().unwrap())
            .unwrap();
        let patch: Value = serde_json::from_slice(&patch).unwrap();
        assert_eq!(patch[0]["value"][0]["image"], "preflight/workload:r1");
        assert!(
            s.found.lock().unwrap().is_empty(),
            "a dry run is no substitution"
        );
        answer(&s, &review(false, "corp.example/api:1"));
        let found = s.found.lock().unwrap().clone();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].namespace, "shop");
        assert_eq!(found[0].workload, "Pod/api-");
    }

    #[test]
    fn a_held_image_and_anything_but_a_pod_create_are_admitted_unchanged() {
        let s = shared();
        let a = answer(&s, &review(false, "preflight/workload:r1"));
        assert_eq!(a["response"]["allowed"], true);
        assert!(a["response"].get("patch").is_none());
        let a = answer(&s, b"not json");
        assert_eq!(a["response"]["allowed"], true);
        assert!(s.found.lock().unwrap().is_empty());
    }
}
