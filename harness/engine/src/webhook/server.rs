//! The HTTPS listeners and the review handlers.

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use base64::Engine;
use rcgen::{ExtendedKeyUsagePurpose, SanType};
use serde_json::{Value, json};

use super::{Behaviour, BehaviourSpec, WebhookError, WebhookKind};
pub use preflight_core::webhook::{Answer, Record};

/// The API server's `timeout` query parameter (`timeout=10s`), in milliseconds.
pub fn caller_timeout_ms(query: Option<&str>) -> Option<u64> {
    let value = query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("timeout="))?;
    let d = value.trim();
    if let Some(ms) = d.strip_suffix("ms") {
        return ms.parse().ok();
    }
    if let Some(s) = d.strip_suffix('s') {
        return s.parse::<f64>().ok().map(|s| (s * 1000.0) as u64);
    }
    None
}

struct Hook {
    kind: WebhookKind,
    /// A mutating hook's `allow` adds an annotation (sample webhooks, so the mutation is
    /// visible) or admits unchanged (a captured webhook replayed as healthy).
    patch: bool,
    addr: SocketAddr,
    spec: Arc<RwLock<BehaviourSpec>>,
    handle: Option<Handle<SocketAddr>>,
    /// While unreachable: the address bound but not listening, so connections are
    /// refused as on a closed port, and the kernel gives the port to no one else as an
    /// ephemeral port (the API server's configuration, and a replay's saved state,
    /// name it).
    reserved: Option<tokio::net::TcpSocket>,
}

#[derive(Clone)]
struct HookState {
    name: String,
    kind: WebhookKind,
    patch: bool,
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
    /// Hooks the API server reaches through a Service inside the cluster (a relay to
    /// the hook's listener, see `in_cluster`) instead of at the listener's URL.
    routes: Mutex<HashMap<String, InCluster>>,
    records: Arc<Mutex<Vec<Record>>>,
    log: PathBuf,
}

/// A path as a Service reference allows it (each segment a DNS subdomain: a hook's
/// `config:webhook` name is not). Each hook has a listener of its own, so the path
/// only says which hook it is to a person reading the configuration.
fn service_path(path: &str) -> String {
    // A DNS subdomain: labels of lowercase letters, digits and inner dashes.
    let segment = |s: &str| {
        let labels: Vec<String> = s
            .split('.')
            .map(|l| {
                let l: String = l
                    .chars()
                    .map(|c| match c.to_ascii_lowercase() {
                        c @ ('a'..='z' | '0'..='9') => c,
                        _ => '-',
                    })
                    .take(63)
                    .collect();
                l.trim_matches('-').to_string()
            })
            .filter(|l| !l.is_empty())
            .collect();
        if labels.is_empty() {
            "hook".to_string()
        } else {
            labels.join(".")
        }
    };
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| format!("/{}", segment(s)))
        .collect()
}

/// A Service inside the cluster that relays to one hook's listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InCluster {
    pub namespace: String,
    pub service: String,
    pub port: u16,
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
        Self::with_names(dir, bind, extra_addresses, &[]).await
    }

    /// [`WebhookServer::new`] whose serving certificate is also valid for `dns_names`:
    /// the `SERVICE.NAMESPACE.svc` names the API server checks when it calls a hook
    /// through a Service inside the cluster ([`WebhookServer::route`]).
    pub async fn with_names(
        dir: &Path,
        bind: IpAddr,
        extra_addresses: &[IpAddr],
        dns_names: &[String],
    ) -> Result<WebhookServer, WebhookError> {
        crate::init_crypto();
        std::fs::create_dir_all(dir).map_err(|source| WebhookError::Io {
            action: "creating",
            path: dir.into(),
            source,
        })?;
        let tls_err = |e: rcgen::Error| WebhookError::Tls(e.to_string());
        let (ca, issuer) = crate::pki::new_ca("preflight-webhook-ca").map_err(tls_err)?;
        let mut sans = vec![SanType::DnsName("localhost".try_into().map_err(tls_err)?)];
        sans.extend(
            std::iter::once(&bind)
                .chain(extra_addresses)
                .map(|ip| SanType::IpAddress(*ip)),
        );
        for name in dns_names {
            sans.push(SanType::DnsName(name.clone().try_into().map_err(tls_err)?));
        }
        let cert = crate::pki::leaf(
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
            routes: Mutex::new(HashMap::new()),
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
        self.add_hook(name, kind, spec, true).await
    }

    /// A captured webhook answering `allow`: added on a fresh port if it is new, else
    /// kept on its address (where a stand-in's relay inside the cluster may already
    /// forward, see `in_cluster`).
    pub async fn allow_captured(&self, name: &str, kind: WebhookKind) -> Result<(), WebhookError> {
        let allow = BehaviourSpec::new(Behaviour::Allow);
        if self.kind(name).is_some() {
            self.set(name, allow).await
        } else {
            self.add_captured(name, kind, allow).await
        }
    }

    /// Like [`WebhookServer::add`], for a captured webhook: a mutating one that allows
    /// admits the object unchanged.
    pub async fn add_captured(
        &self,
        name: &str,
        kind: WebhookKind,
        spec: BehaviourSpec,
    ) -> Result<(), WebhookError> {
        self.add_hook(name, kind, spec, false).await
    }

    async fn add_hook(
        &self,
        name: &str,
        kind: WebhookKind,
        spec: BehaviourSpec,
        patch: bool,
    ) -> Result<(), WebhookError> {
        // The port stays bound from here on (reserved, then listening): a port merely
        // found free can be taken, even by an outgoing connection's local end, before
        // the listener starts.
        let any = SocketAddr::new(self.bind, 0);
        let listen_err = |source| WebhookError::Listen {
            name: name.into(),
            addr: any,
            source,
        };
        let socket = reserve(any).map_err(listen_err)?;
        let addr = socket.local_addr().map_err(listen_err)?;
        self.hooks.lock().expect("hooks lock").insert(
            name.to_string(),
            Hook {
                kind,
                patch,
                addr,
                spec: Arc::new(RwLock::new(BehaviourSpec::new(Behaviour::Unreachable))),
                handle: None,
                reserved: Some(socket),
            },
        );
        self.set(name, spec).await
    }

    /// The URL the API server calls for webhook `name`.
    pub fn url(&self, name: &str) -> Result<String, WebhookError> {
        let addr = self.addr(name)?;
        Ok(format!("https://{addr}{}", self.path(name)?))
    }

    /// The address webhook `name` listens on.
    pub fn addr(&self, name: &str) -> Result<SocketAddr, WebhookError> {
        let hooks = self.hooks.lock().expect("hooks lock");
        hooks
            .get(name)
            .map(|h| h.addr)
            .ok_or_else(|| WebhookError::Unknown(name.into()))
    }

    /// The HTTP path of webhook `name` on its listener.
    fn path(&self, name: &str) -> Result<String, WebhookError> {
        let kind = self
            .kind(name)
            .ok_or_else(|| WebhookError::Unknown(name.into()))?;
        let path = match kind {
            WebhookKind::Validating => "validate",
            WebhookKind::Mutating => "mutate",
            WebhookKind::Conversion => "convert",
        };
        Ok(format!("/{path}/{name}"))
    }

    /// From now on, configurations registered for webhook `name` reach it through
    /// `via`, a Service inside the cluster, instead of at its URL.
    pub fn route(&self, name: &str, via: InCluster) {
        self.routes
            .lock()
            .expect("routes lock")
            .insert(name.to_string(), via);
    }

    /// The `clientConfig` a configuration names webhook `name` with: its Service
    /// inside the cluster if it has one ([`WebhookServer::route`]), else its URL; with
    /// the run's CA either way.
    pub fn client_config(&self, name: &str) -> Result<Value, WebhookError> {
        let route = self.routes.lock().expect("routes lock").get(name).cloned();
        Ok(match route {
            Some(r) => json!({
                "service": {
                    "namespace": r.namespace,
                    "name": r.service,
                    "port": r.port,
                    "path": service_path(&self.path(name)?),
                },
                "caBundle": self.ca_bundle(),
            }),
            None => json!({"url": self.url(name)?, "caBundle": self.ca_bundle()}),
        })
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
            let start =
                (spec.behaviour != Behaviour::Unreachable && hook.handle.is_none()).then(|| {
                    (
                        hook.addr,
                        hook.kind,
                        hook.patch,
                        hook.spec.clone(),
                        hook.reserved.take(),
                    )
                });
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
        if spec.behaviour == Behaviour::Unreachable {
            let mut hooks = self.hooks.lock().expect("hooks lock");
            let hook = hooks.get_mut(name).expect("exists");
            // Best effort: without the reservation the port is merely free.
            if hook.reserved.is_none() {
                hook.reserved = reserve(hook.addr).ok();
            }
        }
        if let Some((addr, kind, patch, spec, reserved)) = start {
            let std_listener =
                listen_on(reserved, addr).map_err(|source| WebhookError::Listen {
                    name: name.into(),
                    addr,
                    source,
                })?;
            let state = HookState {
                name: name.to_string(),
                kind,
                patch,
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

    /// Whether the barrier hook has been called for object `name` (see
    /// `register::BARRIER`).
    pub fn barrier_seen(&self, name: &str) -> bool {
        self.records
            .lock()
            .expect("records lock")
            .iter()
            .any(|r| r.webhook == super::register::BARRIER && r.name.as_deref() == Some(name))
    }

    /// Every request received so far (the registration barrier's own excluded).
    pub fn records(&self) -> Vec<Record> {
        self.records
            .lock()
            .expect("records lock")
            .iter()
            .filter(|r| r.webhook != super::register::BARRIER)
            .cloned()
            .collect()
    }

    /// Like [`Self::records`], and forgets them: what one pass of a replay was asked.
    pub fn take_records(&self) -> Vec<Record> {
        std::mem::take(&mut *self.records.lock().expect("records lock"))
            .into_iter()
            .filter(|r| r.webhook != super::register::BARRIER)
            .collect()
    }

    /// Serves `app` over TLS on a fresh port of this server's address, under the same
    /// CA (the image stand-in webhook, which is no scenario webhook). The handle stops it.
    pub(super) async fn serve(
        &self,
        what: &str,
        app: Router,
    ) -> Result<(SocketAddr, Handle<SocketAddr>), WebhookError> {
        let listen_err = |addr, source| WebhookError::Listen {
            name: what.into(),
            addr,
            source,
        };
        let any = SocketAddr::new(self.bind, 0);
        let listener = TcpListener::bind(any).map_err(|e| listen_err(any, e))?;
        let addr = listener.local_addr().map_err(|e| listen_err(any, e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| listen_err(addr, e))?;
        let handle = Handle::new();
        let server = axum_server::from_tcp_rustls(listener, self.tls.clone())
            .map_err(|e| listen_err(addr, e))?
            .handle(handle.clone());
        tokio::spawn(async move {
            let _ = server.serve(app.into_make_service()).await;
        });
        handle.listening().await;
        Ok((addr, handle))
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

/// A socket bound to `addr` without listening: connections are refused.
fn reserve(addr: SocketAddr) -> std::io::Result<tokio::net::TcpSocket> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// A listener on `addr`: the socket that reserved it when there is one (the port never
/// left this process), else bound again.
fn listen_on(
    reserved: Option<tokio::net::TcpSocket>,
    addr: SocketAddr,
) -> std::io::Result<TcpListener> {
    let socket = match reserved {
        Some(s) => s,
        None => reserve(addr)?,
    };
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
        // Every object of a ConversionReview is an object; anything else is not a
        // review (and could not be given the desired apiVersion).
        if !objects.iter().all(Value::is_object) {
            return None;
        }
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

async fn handle_review(
    State(hook): State<HookState>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let spec = hook.spec.read().expect("spec lock").clone();
    let Some(seen) = parse_review(hook.kind, &body) else {
        return (StatusCode::BAD_REQUEST, "not a review").into_response();
    };
    // Recorded when this handler ends, also when the caller hangs up first (a delayed
    // answer past its timeout): the record then says how long the caller waited.
    let mut pending = PendingRecord {
        hook: hook.clone(),
        started,
        record: Some(Record {
            time: crate::now_rfc3339(),
            webhook: hook.name.clone(),
            kind: hook.kind,
            operation: seen.operation.clone(),
            resource: seen.resource.clone(),
            namespace: seen.namespace.clone(),
            name: seen.name.clone(),
            user: seen.user.clone(),
            dry_run: seen.dry_run,
            answer: Answer::Allowed,
            latency_ms: 0,
            caller_timeout_ms: caller_timeout_ms(query.as_deref()),
            caller_gave_up: false,
        }),
        finished: false,
    };
    let (response, answer) = match spec.behaviour {
        Behaviour::Error => (
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "preflight sample webhook: simulated failure",
            )
                .into_response(),
            Answer::Error { status: 500 },
        ),
        Behaviour::Malformed => (
            (StatusCode::OK, "{\"this is\": \"not a review\"").into_response(),
            Answer::Malformed,
        ),
        Behaviour::Deny => {
            let msg = spec.deny_message(&hook.name);
            (
                answer_json(&hook, &seen, Err(&msg)),
                Answer::Denied { message: msg },
            )
        }
        Behaviour::Delay => {
            let delay = spec.delay.unwrap_or(Duration::from_secs(15));
            let answer = Answer::Delayed {
                seconds: delay.as_secs(),
            };
            pending.set_answer(answer.clone());
            tokio::time::sleep(delay).await;
            (answer_json(&hook, &seen, Ok(&hook.name)), answer)
        }
        Behaviour::Allow | Behaviour::Unreachable => {
            let answer = if hook.kind == WebhookKind::Conversion {
                Answer::Converted
            } else {
                Answer::Allowed
            };
            (answer_json(&hook, &seen, Ok(&hook.name)), answer)
        }
    };
    pending.set_answer(answer);
    pending.finished = true;
    response
}

/// A request's record, kept when dropped.
struct PendingRecord {
    hook: HookState,
    started: Instant,
    record: Option<Record>,
    /// Whether the handler produced its answer (dropped before: the caller hung up).
    finished: bool,
}

impl PendingRecord {
    fn set_answer(&mut self, answer: Answer) {
        if let Some(r) = self.record.as_mut() {
            r.answer = answer;
        }
    }
}

impl Drop for PendingRecord {
    fn drop(&mut self) {
        let Some(mut record) = self.record.take() else {
            return;
        };
        record.latency_ms = self.started.elapsed().as_millis() as u64;
        record.caller_gave_up = !self.finished;
        if let Ok(line) = serde_json::to_string(&record)
            && let Ok(mut f) = std::fs::OpenOptions::new()
                .append(true)
                .open(&self.hook.log)
        {
            let _ = writeln!(f, "{line}");
        }
        self.hook.records.lock().expect("records lock").push(record);
    }
}

/// A review response: admit (`Ok(webhook name)`) or refuse (`Err(message)`).
fn answer_json(hook: &HookState, seen: &Seen, verdict: Result<&str, &str>) -> Response {
    let body = review_answer(hook.kind, hook.patch, seen, verdict);
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// What a webhook of `kind` answers to the review in `body` when it admits
/// (`Ok(webhook name)`) or refuses (`Err(message)`): the JSON [`handle_review`] sends
/// for `allow` and `deny` (and, after its wait, `delay`), as a pure function of the
/// request's bytes, for tests and the fuzz target. `patch`: a mutating webhook's `allow`
/// adds its annotation. `None`: `body` is not a review of `kind` (answered with 400).
pub fn review_response(
    kind: WebhookKind,
    patch: bool,
    body: &[u8],
    verdict: Result<&str, &str>,
) -> Option<Value> {
    let seen = parse_review(kind, body)?;
    Some(review_answer(kind, patch, &seen, verdict))
}

fn review_answer(
    kind: WebhookKind,
    patch: bool,
    seen: &Seen,
    verdict: Result<&str, &str>,
) -> Value {
    match kind {
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
            Ok(name) if kind == WebhookKind::Mutating && patch && seen.operation_is_write => {
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
    }
}

#[cfg(test)]
mod timeout_tests {
    use super::caller_timeout_ms;

    #[test]
    fn the_api_servers_timeout_parameter_is_read() {
        assert_eq!(caller_timeout_ms(Some("timeout=10s")), Some(10_000));
        assert_eq!(caller_timeout_ms(Some("a=b&timeout=2s")), Some(2_000));
        assert_eq!(caller_timeout_ms(Some("timeout=1500ms")), Some(1_500));
        assert_eq!(caller_timeout_ms(Some("timeout=soon")), None);
        assert_eq!(caller_timeout_ms(None), None);
    }
}

#[cfg(test)]
mod port_tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_hook_refuses_connections_and_keeps_its_port() {
        let dir = tempfile::tempdir().unwrap();
        let server = WebhookServer::new(dir.path(), IpAddr::from([127, 0, 0, 1]), &[])
            .await
            .unwrap();
        server
            .add(
                "guard",
                WebhookKind::Validating,
                BehaviourSpec::new(Behaviour::Allow),
            )
            .await
            .unwrap();
        let url = server.url("guard").unwrap();
        let addr: SocketAddr = url
            .trim_start_matches("https://")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let connects = || std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        assert!(connects().is_ok());
        for _ in 0..2 {
            server
                .set("guard", BehaviourSpec::new(Behaviour::Unreachable))
                .await
                .unwrap();
            assert!(connects().is_err(), "refused while unreachable");
            // The port stays bound: the kernel hands it to no one as an ephemeral port
            // (an outgoing connection's, or a bind to port 0), and a plain bind fails.
            let plain = tokio::net::TcpSocket::new_v4().unwrap();
            assert!(plain.bind(addr).is_err(), "the port is held");
            server
                .set("guard", BehaviourSpec::new(Behaviour::Allow))
                .await
                .unwrap();
            assert!(connects().is_ok(), "listening again on the same address");
            assert_eq!(server.url("guard").unwrap(), url);
        }
    }

    /// A hook served inside the cluster is named by its Service in configurations, and
    /// the serving certificate holds for the Service's name under the run's CA.
    #[tokio::test]
    async fn a_routed_hook_is_named_by_its_service_and_its_certificate_holds() {
        let dir = tempfile::tempdir().unwrap();
        let name = "preflight-guard.guards.svc".to_string();
        let server = WebhookServer::with_names(
            dir.path(),
            IpAddr::from([127, 0, 0, 1]),
            &[],
            std::slice::from_ref(&name),
        )
        .await
        .unwrap();
        for hook in ["g:pods", "g:other"] {
            server
                .add_captured(
                    hook,
                    WebhookKind::Validating,
                    BehaviourSpec::new(Behaviour::Allow),
                )
                .await
                .unwrap();
        }
        server.route(
            "g:pods",
            InCluster {
                namespace: "guards".into(),
                service: "preflight-guard".into(),
                port: 8443,
            },
        );
        let routed = server.client_config("g:pods").unwrap();
        assert_eq!(
            routed["service"],
            json!({"namespace": "guards", "name": "preflight-guard", "port": 8443, "path": "/validate/g-pods"})
        );
        assert!(routed.get("url").is_none());
        assert_eq!(
            service_path("/validate/Pod-Guard:pods.guard.corp_"),
            "/validate/pod-guard-pods.guard.corp"
        );
        assert_eq!(service_path("/convert/crd:a..b-.c"), "/convert/crd-a.b.c");
        assert_eq!(routed["caBundle"], server.ca_bundle());
        let direct = server.client_config("g:other").unwrap();
        assert_eq!(direct["url"], server.url("g:other").unwrap());
        // What the API server does through the Service: TLS to the Service's name.
        let ca = reqwest::Certificate::from_pem(server.ca_pem.as_bytes()).unwrap();
        let client = reqwest::Client::builder()
            .no_proxy()
            .tls_certs_only([ca])
            .resolve(&name, server.addr("g:pods").unwrap())
            .build()
            .unwrap();
        let port = server.addr("g:pods").unwrap().port();
        let got = client
            .get(format!("https://{name}:{port}/healthz"))
            .send()
            .await
            .unwrap();
        assert!(got.status().is_success(), "{got:?}");
    }
}

#[cfg(test)]
mod review_tests {
    use serde_json::json;

    use super::{WebhookKind, review_response};

    #[test]
    fn an_admission_review_is_answered_with_its_uid_and_a_patch_only_on_writes() {
        let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u-1", "operation": "CREATE", "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
                        "object": {"metadata": {"name": "web"}}}})
        .to_string();
        let ok = review_response(WebhookKind::Mutating, true, body.as_bytes(), Ok("m")).unwrap();
        assert_eq!(ok["response"]["uid"], "u-1");
        assert_eq!(ok["response"]["patchType"], "JSONPatch");
        let denied =
            review_response(WebhookKind::Validating, false, body.as_bytes(), Err("<no>")).unwrap();
        assert_eq!(denied["response"]["allowed"], false);
        assert_eq!(denied["response"]["status"]["message"], "<no>");
        let delete = body.replace("CREATE", "DELETE");
        let ok = review_response(WebhookKind::Mutating, true, delete.as_bytes(), Ok("m")).unwrap();
        assert!(ok["response"].get("patch").is_none(), "{ok}");
    }

    #[test]
    fn a_conversion_review_of_something_other_than_objects_is_not_a_review() {
        // Before, `objects: [1]` panicked the handler (indexing a number as an object).
        for objects in [json!([1]), json!(["x", {"kind": "W"}]), json!([null])] {
            let body =
                json!({"request": {"uid": "u", "desiredAPIVersion": "x/v2", "objects": objects}});
            assert!(
                review_response(
                    WebhookKind::Conversion,
                    false,
                    body.to_string().as_bytes(),
                    Ok("c")
                )
                .is_none(),
                "{body}"
            );
        }
        let body = json!({"request": {"uid": "u", "desiredAPIVersion": "x/v2",
            "objects": [{"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "a"}}]}});
        let answer = review_response(
            WebhookKind::Conversion,
            false,
            body.to_string().as_bytes(),
            Ok("c"),
        )
        .unwrap();
        assert_eq!(
            answer["response"]["convertedObjects"][0]["apiVersion"],
            "x/v2"
        );
        assert_eq!(answer["response"]["result"]["status"], "Success");
        assert!(review_response(WebhookKind::Validating, false, b"\xff{", Ok("v")).is_none());
    }
}
