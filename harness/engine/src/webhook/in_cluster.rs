//! Webhooks served inside the cluster: for a rehearsal, a captured webhook's backend
//! is a workload on the nodes, so a drain evicts it as it would in production.
//!
//! Each captured backend gets a stand-in Deployment in its own namespace, with the
//! captured replicas, node selector, affinity, tolerations and PodDisruptionBudgets, and
//! a Service in front of it. Its Pods run preflight's workload image as a TCP relay: one
//! port per hook, each forwarding to that hook's listener on the run's webhook server,
//! where the answer (allow, or failing as the twin says) and its record are made. TLS
//! stays end to end: the API server checks the run's certificate against the
//! Service's `NAME.NAMESPACE.svc` name, which the certificate carries.
//!
//! So the API server's call goes where production's goes: through the Service to the
//! Pods that are Ready. While none is (all evicted, or refused on re-creation by the
//! very webhook they serve), a fail-closed webhook refuses everything it matches, and
//! the refusal is the cluster's own.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

use super::server::InCluster;
use super::{WebhookError, WebhookKind, WebhookServer};

/// The first container port of a stand-in's relays (one per hook, counting up).
pub const FIRST_PORT: u16 = 8443;

/// The label that selects a stand-in's Pods (its value: the stand-in's name).
pub const STAND_IN_LABEL: &str = "preflight.dev/webhook-stand-in";

/// How long a stand-in's Pods may take to be Ready.
const READY_DEADLINE: Duration = Duration::from_secs(120);

/// The captured workload behind one or more webhooks' Service.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Backend {
    pub namespace: String,
    /// The captured Deployment's or StatefulSet's name.
    pub name: String,
    pub replicas: i32,
    /// Whether its Pods are Ready: `false` for a backend captured with no ready
    /// endpoint, whose stand-in runs but never becomes Ready.
    pub ready: bool,
    pub budgets: Vec<Budget>,
    pub node_selector: BTreeMap<String, String>,
    pub affinity: Option<Value>,
    pub tolerations: Vec<Value>,
    pub topology_spread_constraints: Vec<Value>,
    /// The captured Pods' labels. The stand-in's Pods carry them too (beside its own),
    /// so affinity and spread rules that select the backend's own Pods, such as
    /// replicas kept on different nodes, place the stand-in as they placed the backend:
    /// which replicas one drain evicts depends on it.
    pub pod_labels: BTreeMap<String, String>,
    /// The hooks it serves (the server's names) and their kinds.
    pub hooks: Vec<(String, WebhookKind)>,
}

/// A captured PodDisruptionBudget of a backend.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    pub name: String,
    pub min_available: Option<String>,
    pub max_unavailable: Option<String>,
}

impl Backend {
    /// The stand-in's name (its Deployment, Service and label value): a DNS label.
    pub fn stand_in(&self) -> String {
        let mut name = format!("preflight-{}", self.name);
        name.truncate(63);
        name.trim_end_matches('-').to_string()
    }

    /// The hooks it serves, for people: `a, b`.
    pub fn hook_names(&self) -> String {
        let names: Vec<&str> = self.hooks.iter().map(|(h, _)| h.as_str()).collect();
        names.join(", ")
    }

    /// The name the API server checks the serving certificate against.
    pub fn dns_name(&self) -> String {
        format!("{}.{}.svc", self.stand_in(), self.namespace)
    }

    /// The stand-in's objects (Deployment, Service, budgets), its relays forwarding
    /// hook `i` from port `FIRST_PORT + i` to `listeners[i]`.
    pub fn manifests(&self, listeners: &[SocketAddr]) -> Vec<Value> {
        let name = self.stand_in();
        let labels = json!({
            STAND_IN_LABEL: name,
            super::register::MANAGED_BY.0: super::register::MANAGED_BY.1,
        });
        let selector = json!({STAND_IN_LABEL: name});
        let mut pod_labels = json!(self.pod_labels);
        for (k, v) in labels.as_object().into_iter().flatten() {
            pod_labels[k] = v.clone();
        }
        let ports: Vec<u16> = (0..listeners.len())
            .map(|i| FIRST_PORT + i as u16)
            .collect();
        let mut pod = json!({
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "relay",
                "image": crate::components::kind_image::WORKLOAD_IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", relay_script(&ports, listeners)],
                "ports": ports.iter().map(|p| json!({"containerPort": p})).collect::<Vec<_>>(),
                "readinessProbe": if self.ready {
                    json!({"tcpSocket": {"port": ports.first().copied().unwrap_or(FIRST_PORT)}, "periodSeconds": 2})
                } else {
                    json!({"exec": {"command": ["false"]}, "periodSeconds": 5})
                },
            }],
        });
        if !self.node_selector.is_empty() {
            pod["nodeSelector"] = json!(self.node_selector);
        }
        if let Some(a) = &self.affinity {
            pod["affinity"] = a.clone();
        }
        if !self.tolerations.is_empty() {
            pod["tolerations"] = json!(self.tolerations);
        }
        if !self.topology_spread_constraints.is_empty() {
            pod["topologySpreadConstraints"] = json!(self.topology_spread_constraints);
        }
        let mut out = vec![
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "namespace": self.namespace, "labels": labels},
                "spec": {
                    "replicas": self.replicas,
                    "selector": {"matchLabels": selector},
                    "template": {"metadata": {"labels": pod_labels}, "spec": pod},
                },
            }),
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": self.namespace, "labels": labels},
                "spec": {
                    "selector": selector,
                    "ports": ports.iter().map(|p| json!({"name": format!("hook-{p}"), "port": p, "targetPort": p})).collect::<Vec<_>>(),
                },
            }),
        ];
        for b in &self.budgets {
            let mut spec = json!({"selector": {"matchLabels": selector}});
            if let Some(m) = &b.min_available {
                spec["minAvailable"] = int_or_string(m);
            }
            if let Some(m) = &b.max_unavailable {
                spec["maxUnavailable"] = int_or_string(m);
            }
            out.push(json!({
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": format!("{name}-{}", b.name), "namespace": self.namespace, "labels": labels},
                "spec": spec,
            }));
        }
        out
    }
}

/// `"2"` is the integer 2, `"50%"` stays a percentage, as the budget had them.
fn int_or_string(v: &str) -> Value {
    v.parse::<i64>().map_or_else(|_| json!(v), |n| json!(n))
}

/// One relay per port, each connection forwarded to its listener; the relays end on
/// SIGTERM as a served backend would.
fn relay_script(ports: &[u16], listeners: &[SocketAddr]) -> String {
    let mut s = String::from("trap 'exit 0' TERM; ");
    for (p, to) in ports.iter().zip(listeners) {
        s.push_str(&format!("nc -ll -p {p} -e nc {} {} & ", to.ip(), to.port()));
    }
    s.push_str("wait");
    s
}

/// Starts a stand-in for each backend: its hooks added to `server` answering `allow`
/// and routed through its Service, its objects applied, and its Pods Ready (or, for a
/// backend captured with none Ready, created). Call before the configurations are
/// registered, so nothing they match is refused while the stand-ins start.
pub async fn start(
    client: &kube::Client,
    server: &WebhookServer,
    backends: &[Backend],
) -> Result<(), WebhookError> {
    for b in backends {
        let mut listeners = Vec::new();
        for (i, (hook, kind)) in b.hooks.iter().enumerate() {
            server.allow_captured(hook, *kind).await?;
            listeners.push(server.addr(hook)?);
            server.route(
                hook,
                InCluster {
                    namespace: b.namespace.clone(),
                    service: b.stand_in(),
                    port: FIRST_PORT + i as u16,
                },
            );
        }
        for obj in b.manifests(&listeners) {
            apply(client, &obj)
                .await
                .map_err(|detail| WebhookError::Register {
                    name: format!("{}/{}", b.namespace, b.stand_in()),
                    detail,
                })?;
        }
    }
    for b in backends {
        ready(client, b).await?;
    }
    Ok(())
}

/// Server-side apply of one object.
async fn apply(client: &kube::Client, obj: &Value) -> Result<(), String> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = obj["kind"].as_str().unwrap_or_default();
    let plural = match kind {
        "Deployment" => "deployments",
        "Service" => "services",
        _ => "poddisruptionbudgets",
    };
    let ar = ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar);
    api.patch(
        name,
        &PatchParams::apply("preflight").force(),
        &Patch::Apply(obj),
    )
    .await
    .map(|_| ())
    .map_err(|e| format!("applying {kind} {ns}/{name}: {e}"))
}

/// Waits until the stand-in's Deployment has its replicas Ready (or, when its backend
/// was captured with none Ready, created).
async fn ready(client: &kube::Client, b: &Backend) -> Result<(), WebhookError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), &b.namespace);
    let name = b.stand_in();
    let started = Instant::now();
    loop {
        let status = api
            .get_opt(&name)
            .await
            .ok()
            .flatten()
            .and_then(|d| d.status)
            .unwrap_or_default();
        let (ready, created) = (
            status.ready_replicas.unwrap_or(0),
            status.replicas.unwrap_or(0),
        );
        let done = if b.ready {
            ready >= b.replicas
        } else {
            created >= b.replicas
        };
        if done {
            return Ok(());
        }
        if started.elapsed() >= READY_DEADLINE {
            return Err(WebhookError::Register {
                name: format!("{}/{name}", b.namespace),
                detail: format!(
                    "the stand-in for the backend of webhook(s) {}: {ready} of {} Pods Ready after {} s (do the captured node selector, affinity and tolerations fit the nodes? see `kubectl describe pod -l {STAND_IN_LABEL}={name}`)",
                    b.hook_names(),
                    b.replicas,
                    READY_DEADLINE.as_secs()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend() -> Backend {
        Backend {
            namespace: "guards".into(),
            name: "guard".into(),
            replicas: 2,
            ready: true,
            budgets: vec![Budget {
                name: "guard".into(),
                min_available: None,
                max_unavailable: Some("1".into()),
            }],
            node_selector: BTreeMap::from([("agentpool".into(), "user".into())]),
            affinity: None,
            tolerations: vec![json!({"key": "sku", "operator": "Exists"})],
            topology_spread_constraints: vec![
                json!({"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "guard"}}}),
            ],
            pod_labels: BTreeMap::from([
                ("app".into(), "guard".into()),
                (STAND_IN_LABEL.into(), "not-the-stand-in".into()),
            ]),
            hooks: vec![
                ("g:pods.guard".into(), WebhookKind::Validating),
                ("g:mutate.guard".into(), WebhookKind::Mutating),
            ],
        }
    }

    #[test]
    fn the_stand_in_keeps_the_captured_shape_and_relays_each_hook() {
        let b = backend();
        let listeners: Vec<SocketAddr> = vec![
            "172.18.0.1:40001".parse().unwrap(),
            "172.18.0.1:40002".parse().unwrap(),
        ];
        let objs = b.manifests(&listeners);
        let kinds: Vec<&str> = objs.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["Deployment", "Service", "PodDisruptionBudget"]);
        let d = &objs[0];
        assert_eq!(d["metadata"]["namespace"], "guards");
        assert_eq!(d["spec"]["replicas"], 2);
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["nodeSelector"]["agentpool"], "user");
        assert_eq!(pod["tolerations"][0]["key"], "sku");
        // The captured labels ride along, so a rule selecting the backend's own Pods
        // selects the stand-in's; the stand-in's own label wins a clash, or the
        // Deployment would not select its Pods.
        let template = &d["spec"]["template"]["metadata"]["labels"];
        assert_eq!(template["app"], "guard");
        assert_eq!(template[STAND_IN_LABEL], "preflight-guard");
        assert_eq!(
            d["spec"]["selector"]["matchLabels"][STAND_IN_LABEL],
            "preflight-guard"
        );
        assert_eq!(
            pod["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"]["app"],
            "guard"
        );
        assert_eq!(
            objs[1]["spec"]["selector"],
            d["spec"]["selector"]["matchLabels"]
        );
        let script = pod["containers"][0]["command"][2].as_str().unwrap();
        assert!(
            script.contains("nc -ll -p 8443 -e nc 172.18.0.1 40001")
                && script.contains("nc -ll -p 8444 -e nc 172.18.0.1 40002"),
            "{script}"
        );
        assert_eq!(
            pod["containers"][0]["readinessProbe"]["tcpSocket"]["port"],
            8443
        );
        assert_eq!(objs[1]["spec"]["ports"][1]["port"], 8444);
        assert_eq!(
            objs[1]["spec"]["selector"][STAND_IN_LABEL],
            "preflight-guard"
        );
        // The budget as captured, over the stand-in's Pods.
        assert_eq!(objs[2]["spec"]["maxUnavailable"], 1);
        assert_eq!(
            objs[2]["spec"]["selector"]["matchLabels"][STAND_IN_LABEL],
            "preflight-guard"
        );
        assert_eq!(b.dns_name(), "preflight-guard.guards.svc");
    }

    #[test]
    fn a_backend_captured_with_nothing_ready_is_never_ready() {
        let mut b = backend();
        b.ready = false;
        b.budgets[0].max_unavailable = Some("50%".into());
        let objs = b.manifests(&["127.0.0.1:1".parse().unwrap()]);
        assert_eq!(
            objs[0]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]["command"]
                [0],
            "false"
        );
        assert_eq!(objs[2]["spec"]["maxUnavailable"], "50%");
    }

    #[test]
    fn stand_in_names_are_dns_labels() {
        let mut b = backend();
        b.name = format!("{}-x", "a".repeat(52));
        let n = b.stand_in();
        assert!(n.len() <= 63 && !n.ends_with('-'), "{n}");
    }
}
