//! The HTTPS listeners and the review handlers.

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use base64::Engine;
use rcgen::{ExtendedKeyUsagePurpose, SanType};
use serde::Serialize;
use serde_json::{Value, json};

use super::{Behaviour, BehaviourSpec, WebhookError, WebhookKind};

/// One request the server received, and what it answered.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// RFC 3339 time the request arrived.
    pub time: String,
    pub webhook: String,
    pub kind: WebhookKind,
    /// CREATE, UPDATE, DELETE, CONNECT, or CONVERT.
    pub operation: String,
    /// `group/version/resource` (conversion: `group/Kind`).
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// The requesting user, e.g. `system:serviceaccount:kube-system:generic-garbage-collector`.
    pub user: Option<String>,
    pub dry_run: bool,
    /// `allowed`, `denied: ...`, `error 500`, `malformed`, `converted`, ...
    pub answer: String,
    pub latency_ms: u64,
}

struct Hook {
    kind: WebhookKind,
    addr: SocketAddr,
    spec: Arc<RwLock<BehaviourSpec>>,
    handle: Option<Handle<SocketAddr>>,
}

#[derive(Clone)]
struct HookState {
    name: String,
    kind: WebhookKind,
    spec: Arc<RwLock<BehaviourSpec>>,
    records: Arc<Mutex<Vec<Record>>>,
    log: PathBuf,
}

/// The sample webhook server of one run.
pub struct WebhookServer {
    bind: IpAddr,
    ca_pem: String,
    tls: RustlsConfig,
    hooks: Mutex<HashMap<String, Hook>>,
    records: Arc<Mutex<Vec<Record>>>,
    log: PathBuf,
}

impl std::fmt::Debug for WebhookServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookServer")
            .field("bind", &self.bind)
            .field("log", &self.log)
            .finish()
    }
}

impl WebhookServer {
    /// A server whose certificates (CA and serving, valid for `bind` and any
    /// `extra_addresses`) are generated now; its key and the request log stay in `dir`.
    pub async fn new(
        dir: &Path,
        bind: IpAddr,
        extra_addresses: &[IpAddr],
    ) -> Result<WebhookServer, WebhookError> {
        crate::init_crypto();
        std::fs::create_dir_all(dir).map_err(|source| WebhookError::Io {
            action: "creating",
            path: dir.into(),
            source,
        })?;
        let tls_err = |e: rcgen::Error| WebhookError::Tls(e.to_string());
        let (ca, issuer) = crate::cluster::pki::new_ca("preflight-webhook-ca").map_err(tls_err)?;
        let mut sans = vec![SanType::DnsName("localhost".try_into().map_err(tls_err)?)];
        sans.extend(
            std::iter::once(&bind)
                .chain(extra_addresses)
                .map(|ip| SanType::IpAddress(*ip)),
        );
        let cert = crate::cluster::pki::leaf(
            &issuer,
            "preflight-webhooks",
            None,
            &sans,
            ExtendedKeyUsagePurpose::ServerAuth,
        )
        .map_err(|e| WebhookError::Tls(e.to_string()))?;
        let tls = RustlsConfig::from_pem(cert.cert_pem.into_bytes(), cert.key_pem.into_bytes())
            .await
            .map_err(|e| WebhookError::Tls(e.to_string()))?;
        let log = dir.join("requests.jsonl");
        std::fs::write(&log, "").map_err(|source| WebhookError::Io {
            action: "creating",
            path: log.clone(),
            source,
        })?;
        Ok(WebhookServer {
            bind,
            ca_pem: ca.cert_pem,
            tls,
            hooks: Mutex::new(HashMap::new()),
            records: Arc::new(Mutex::new(Vec::new())),
            log,
        })
    }

    /// The CA that signed the serving certificate, base64 PEM: a configuration's `caBundle`.
    pub fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.ca_pem)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Adds a webhook on a fresh port and starts it with `spec`.
    pub async fn add(
        &self,
        name: &str,
        kind: WebhookKind,
        spec: BehaviourSpec,
    ) -> Result<(), WebhookError> {
        let addr = {
            let l = TcpListener::bind((self.bind, 0)).map_err(|source| WebhookError::Listen {
                name: name.into(),
                addr: SocketAddr::new(self.bind, 0),
                source,
            })?;
            l.local_addr().map_err(|source| WebhookError::Listen {
                name: name.into(),
                addr: SocketAddr::new(self.bind, 0),
                source,
            })?
        };
        self.hooks.lock().expect("hooks lock").insert(
            name.to_string(),
            Hook {
                kind,
                addr,
                spec: Arc::new(RwLock::new(BehaviourSpec::new(Behaviour::Unreachable))),
                handle: None,
            },
        );
        self.set(name, spec).await
    }

    /// The URL the API server calls for webhook `name`.
    pub fn url(&self, name: &str) -> Result<String, WebhookError> {
        let hooks = self.hooks.lock().expect("hooks lock");
        let hook = hooks
            .get(name)
            .ok_or_else(|| WebhookError::Unknown(name.into()))?;
        let path = match hook.kind {
            WebhookKind::Validating => "validate",
            WebhookKind::Mutating => "mutate",
            WebhookKind::Conversion => "convert",
        };
        Ok(format!("https://{}/{path}/{name}", hook.addr))
    }

    pub fn kind(&self, name: &str) -> Option<WebhookKind> {
        self.hooks
            .lock()
            .expect("hooks lock")
            .get(name)
            .map(|h| h.kind)
    }

    /// Changes how webhook `name` answers from now on. `unreachable` stops its
    /// listener; any other behaviour (re)starts it on the same address.
    pub async fn set(&self, name: &str, spec: BehaviourSpec) -> Result<(), WebhookError> {
        let (stop, start) = {
            let mut hooks = self.hooks.lock().expect("hooks lock");
            let hook = hooks
                .get_mut(name)
                .ok_or_else(|| WebhookError::Unknown(name.into()))?;
            *hook.spec.write().expect("spec lock") = spec.clone();
            let stop = if spec.behaviour == Behaviour::Unreachable {
                hook.handle.take()
            } else {
                None
            };
            let start = (spec.behaviour != Behaviour::Unreachable && hook.handle.is_none())
                .then(|| (hook.addr, hook.kind, hook.spec.clone()));
            (stop, start)
        };
        if let Some(handle) = stop {
            handle.shutdown();
            // Wait until the port is closed for real.
            let deadline = Instant::now() + Duration::from_secs(5);
            let addr = self.hooks.lock().expect("hooks lock")[name].addr;
            while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if let Some((addr, kind, spec)) = start {
            let std_listener = bind_reusing(addr).map_err(|source| WebhookError::Listen {
                name: name.into(),
                addr,
                source,
            })?;
            let state = HookState {
                name: name.to_string(),
                kind,
                spec,
                records: self.records.clone(),
                log: self.log.clone(),
            };
            let app = Router::new()
                .route("/healthz", get(|| async { "ok" }))
                .route("/{kind}/{name}", post(handle_review))
                .with_state(state);
            let handle = Handle::new();
            let server = axum_server::from_tcp_rustls(std_listener, self.tls.clone())
                .map_err(|source| WebhookError::Listen {
                    name: name.into(),
                    addr,
                    source,
                })?
                .handle(handle.clone());
            tokio::spawn(async move {
                let _ = server.serve(app.into_make_service()).await;
            });
            handle.listening().await;
            self.hooks
                .lock()
                .expect("hooks lock")
                .get_mut(name)
                .expect("exists")
                .handle = Some(handle);
        }
        Ok(())
    }

    /// Every request received so far.
    pub fn records(&self) -> Vec<Record> {
        self.records.lock().expect("records lock").clone()
    }

    /// Stops every listener.
    pub fn shutdown(&self) {
        for hook in self.hooks.lock().expect("hooks lock").values_mut() {
            if let Some(h) = hook.handle.take() {
                h.shutdown();
            }
        }
    }
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn bind_reusing(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(128)?.into_std()?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// What the request was about, for the record.
struct Seen {
    uid: Value,
    operation: String,
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
    user: Option<String>,
    dry_run: bool,
    operation_is_write: bool,
    has_annotations: bool,
    objects: Vec<Value>,
    desired: Option<String>,
}

fn parse_review(kind: WebhookKind, body: &[u8]) -> Option<Seen> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let req = v.get("request")?;
    let s = |p: &str| req.pointer(p).and_then(Value::as_str).map(str::to_string);
    if kind == WebhookKind::Conversion {
        let objects = req.get("objects")?.as_array()?.clone();
        let first = objects.first();
        let kind_name = first
            .and_then(|o| o.get("kind"))
            .and_then(Value::as_str)
            .unwrap_or("?");
        let api = first
            .and_then(|o| o.get("apiVersion"))
            .and_then(Value::as_str)
            .unwrap_or("?");
        return Some(Seen {
            uid: req.get("uid")?.clone(),
            operation: "CONVERT".into(),
            resource: format!("{api}/{kind_name}"),
            namespace: first
                .and_then(|o| o.pointer("/metadata/namespace"))
                .and_then(Value::as_str)
                .map(str::to_string),
            name: first
                .and_then(|o| o.pointer("/metadata/name"))
                .and_then(Value::as_str)
                .map(str::to_string),
            user: None,
            dry_run: false,
            operation_is_write: false,
            has_annotations: false,
            desired: s("/desiredAPIVersion"),
            objects,
        });
    }
    let operation = s("/operation").unwrap_or_default();
    let group = s("/resource/group").unwrap_or_default();
    Some(Seen {
        uid: req.get("uid")?.clone(),
        resource: format!(
            "{}/{}/{}",
            if group.is_empty() {
                "core"
            } else {
                group.as_str()
            },
            s("/resource/version").unwrap_or_default(),
            s("/resource/resource").unwrap_or_default()
        ),
        namespace: s("/namespace").filter(|n| !n.is_empty()),
        name: s("/name").filter(|n| !n.is_empty()),
        user: s("/userInfo/username"),
        dry_run: req.get("dryRun").and_then(Value::as_bool).unwrap_or(false),
        operation_is_write: operation == "CREATE" || operation == "UPDATE",
        has_annotations: req
            .pointer("/object/metadata/annotations")
            .is_some_and(Value::is_object),
        operation,
        objects: Vec::new(),
        desired: None,
    })
}

async fn handle_review(State(hook): State<HookState>, body: Bytes) -> Response {
    let started = Instant::now();
    let time = crate::now_rfc3339();
    let spec = hook.spec.read().expect("spec lock").clone();
    let Some(seen) = parse_review(hook.kind, &body) else {
        return (StatusCode::BAD_REQUEST, "not a review").into_response();
    };
    let (response, answer) = match spec.behaviour {
        Behaviour::Error => (
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "preflight sample webhook: simulated failure",
            )
                .into_response(),
            "error 500".to_string(),
        ),
        Behaviour::Malformed => (
            (StatusCode::OK, "{\"this is\": \"not a review\"").into_response(),
            "malformed".to_string(),
        ),
        Behaviour::Deny => {
            let msg = spec.deny_message(&hook.name);
            (
                answer_json(hook.kind, &seen, Err(&msg)),
                format!("denied: {msg}"),
            )
        }
        Behaviour::Delay => {
            let delay = spec.delay.unwrap_or(Duration::from_secs(15));
            tokio::time::sleep(delay).await;
            (
                answer_json(hook.kind, &seen, Ok(&hook.name)),
                format!(
                    "allowed after {}s (past the caller's timeout)",
                    delay.as_secs()
                ),
            )
        }
        Behaviour::Allow | Behaviour::Unreachable => {
            let word = if hook.kind == WebhookKind::Conversion {
                "converted"
            } else {
                "allowed"
            };
            (
                answer_json(hook.kind, &seen, Ok(&hook.name)),
                word.to_string(),
            )
        }
    };
    let record = Record {
        time,
        webhook: hook.name.clone(),
        kind: hook.kind,
        operation: seen.operation,
        resource: seen.resource,
        namespace: seen.namespace,
        name: seen.name,
        user: seen.user,
        dry_run: seen.dry_run,
        answer,
        latency_ms: started.elapsed().as_millis() as u64,
    };
    if let Ok(line) = serde_json::to_string(&record)
        && let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&hook.log)
    {
        let _ = writeln!(f, "{line}");
    }
    hook.records.lock().expect("records lock").push(record);
    response
}

/// A review response: admit (`Ok(webhook name)`) or refuse (`Err(message)`).
fn answer_json(kind: WebhookKind, seen: &Seen, verdict: Result<&str, &str>) -> Response {
    let body = match kind {
        WebhookKind::Conversion => {
            let desired = seen.desired.clone().unwrap_or_default();
            match verdict {
                Ok(_) => {
                    let converted: Vec<Value> = seen
                        .objects
                        .iter()
                        .map(|o| {
                            let mut o = o.clone();
                            o["apiVersion"] = Value::String(desired.clone());
                            o
                        })
                        .collect();
                    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
                           "response": {"uid": seen.uid, "convertedObjects": converted, "result": {"status": "Success"}}})
                }
                Err(msg) => {
                    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
                                   "response": {"uid": seen.uid, "convertedObjects": [], "result": {"status": "Failure", "message": msg}}})
                }
            }
        }
        _ => match verdict {
            Ok(name) if kind == WebhookKind::Mutating && seen.operation_is_write => {
                // Never replace existing annotations: Helm keeps its ownership there.
                let patch = if seen.has_annotations {
                    json!([{"op": "add", "path": "/metadata/annotations/preflight.dev~1mutated-by", "value": name}])
                } else {
                    json!([{"op": "add", "path": "/metadata/annotations", "value": {"preflight.dev/mutated-by": name}}])
                };
                let patch = base64::engine::general_purpose::STANDARD.encode(patch.to_string());
                json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                       "response": {"uid": seen.uid, "allowed": true, "patchType": "JSONPatch", "patch": patch}})
            }
            Ok(_) => json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                            "response": {"uid": seen.uid, "allowed": true}}),
            Err(msg) => json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                               "response": {"uid": seen.uid, "allowed": false, "status": {"code": 403, "message": msg}}}),
        },
    };
    (StatusCode::OK, axum::Json(body)).into_response()
}
