//! The `local` provider: etcd, kube-apiserver and kube-controller-manager as child
//! processes on loopback.
//!
//! No kubelet and no scheduler run, on purpose: preflight exercises the API server,
//! admission and the controllers that create and garbage-collect objects (Deployments
//! make ReplicaSets make Pods; the garbage collector removes them), which is the path
//! of the incident. Pods therefore stay `Pending`, and an unscheduled Pod is deleted
//! at once, without a grace period.
//!
//! The cluster's directory holds its certificates and keys (`pki/`, mode 0600), the
//! etcd data (`etcd/`), one log per component and version (`logs/`), and the admin
//! `kubeconfig`. It is removed at teardown unless the user asked to keep it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::{Deserialize, Serialize};

use super::pki::{self, Pki};
use super::ports::PortLease;
use super::process::{Sentinel, Supervised};
use crate::components::Components;
use crate::errors::{ClusterError, log_tail_from};
use crate::progress::Progress;

/// The controllers a local control plane runs: everything that creates or deletes
/// objects on a Helm release's behalf. Named with their short aliases, which every
/// supported release accepts.
pub const CONTROLLERS: &[&str] = &[
    "garbagecollector",
    "deployment",
    "replicaset",
    "statefulset",
    "daemonset",
    "job",
    "cronjob",
    "ttl-after-finished",
    "namespace",
    "serviceaccount",
    "serviceaccount-token",
    "root-ca-cert-publisher",
    "clusterrole-aggregation",
    "endpoint",
    "endpointslice",
    "disruption",
    "pvc-protection",
    "pv-protection",
    "persistentvolume-binder",
];

/// Loopback ports of one control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ports {
    pub etcd_client: u16,
    pub etcd_peer: u16,
    pub apiserver: u16,
    pub controller_manager: u16,
}

/// How often a local control plane is started on fresh ports when a component finds
/// its port taken (and how often a controller manager is restarted on a fresh one).
pub const START_ATTEMPTS: u32 = 3;

impl Ports {
    /// Four ports that were free a moment ago, which this process will not hand out
    /// again (for callers that pass them as [`LocalConfig::ports`]).
    pub fn free() -> Result<Ports, ClusterError> {
        let (ports, lease) = Ports::lease()?;
        lease.keep_forever();
        Ok(ports)
    }

    /// Four ports that were free a moment ago, leased until the lease is dropped.
    pub fn lease() -> Result<(Ports, PortLease), ClusterError> {
        let lease = PortLease::new(4)?;
        let p = lease.ports();
        let ports = Ports {
            etcd_client: p[0],
            etcd_peer: p[1],
            apiserver: p[2],
            controller_manager: p[3],
        };
        Ok((ports, lease))
    }
}

/// Called with the ports of each start-up attempt, and before each (re)start of the
/// controller manager, just before anything binds them. Tests use it to take a port
/// in exactly that window, which is otherwise a race that cannot be forced.
#[derive(Clone)]
pub struct PortsHook(pub Arc<dyn Fn(&Ports) + Send + Sync>);

impl std::fmt::Debug for PortsHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PortsHook")
    }
}

/// How to start a local control plane.
#[derive(Clone, Debug)]
pub struct LocalConfig {
    /// A short name, used in directory names and messages (e.g. `source`).
    pub name: String,
    pub components: Components,
    /// Parent of the cluster's directory; a fresh temporary directory when `None`.
    pub base_dir: Option<PathBuf>,
    /// Keep the directory (logs, certificates, etcd data) after teardown.
    pub keep: bool,
    /// Ports to use instead of free ones. Given ports are never changed: a component
    /// that finds one taken fails the start instead of being retried elsewhere.
    pub ports: Option<Ports>,
    /// How long each component may take to become ready.
    pub ready_timeout: Duration,
    pub progress: Progress,
    /// See [`PortsHook`]; `None` outside tests.
    #[doc(hidden)]
    pub on_ports: Option<PortsHook>,
}

impl LocalConfig {
    pub fn new(name: impl Into<String>, components: Components) -> Self {
        LocalConfig {
            name: name.into(),
            components,
            base_dir: None,
            keep: false,
            ports: None,
            ready_timeout: Duration::from_secs(60),
            progress: Progress::quiet(),
            on_ports: None,
        }
    }
}

/// What `preflight cluster down` needs to find a detached cluster again.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DetachedState {
    pub name: String,
    pub version: String,
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub process_groups: Vec<i32>,
}

/// A running local control plane; dropping it stops everything and removes its
/// directory (unless kept).
pub struct LocalCluster {
    name: String,
    dir: PathBuf,
    keep: bool,
    components: Components,
    pki: Pki,
    ports: Ports,
    /// Holds `ports` (when preflight chose them) so this process hands them to no one
    /// else; released after the components are stopped.
    lease: PortLease,
    /// The user gave the ports: they must not change.
    explicit_ports: bool,
    on_ports: Option<PortsHook>,
    kubeconfig: PathBuf,
    ready_timeout: Duration,
    progress: Progress,
    etcd: Option<Supervised>,
    apiserver: Option<Supervised>,
    controller_manager: Option<Supervised>,
    sentinel: Option<Sentinel>,
    client: Option<kube::Client>,
}

impl std::fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCluster")
            .field("name", &self.name)
            .field("version", &self.components.version)
            .field("dir", &self.dir)
            .field("ports", &self.ports)
            .finish()
    }
}

impl LocalCluster {
    /// Starts etcd, kube-apiserver and kube-controller-manager and waits until each is
    /// ready. On any error everything started so far is stopped and removed.
    ///
    /// Chosen ports can be taken by another process before a component binds them; a
    /// start that fails that way is repeated on fresh ports (up to [`START_ATTEMPTS`]
    /// times), unless the ports were given.
    pub async fn start(config: LocalConfig) -> Result<LocalCluster, ClusterError> {
        crate::init_crypto();
        let step = config.progress.step(format!(
            "starting local control plane `{}` ({})",
            config.name, config.components.version
        ));
        let dir = match &config.base_dir {
            Some(base) => {
                std::fs::create_dir_all(base).map_err(|e| ClusterError::io("creating", base, e))?;
                tempfile::Builder::new()
                    .prefix(&format!("{}-", config.name))
                    .tempdir_in(base)
            }
            None => tempfile::Builder::new()
                .prefix(&format!("preflight-{}-", config.name))
                .tempdir(),
        }
        .map_err(|e| ClusterError::io("creating a directory for", &config.name, e))?
        .keep();
        let pgids = dir.join(".pgids");
        let sentinel = Sentinel::start(&pgids, (!config.keep).then_some(dir.as_path()))?;
        let (ports, lease) = match config.ports {
            Some(p) => (p, PortLease::default()),
            None => Ports::lease()?,
        };
        let pki = match Pki::generate(&dir.join("pki")) {
            Ok(p) => p,
            Err(e) => {
                if !config.keep {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                return Err(e);
            }
        };
        let mut cluster = LocalCluster {
            name: config.name.clone(),
            kubeconfig: dir.join("kubeconfig"),
            dir,
            keep: config.keep,
            components: config.components.clone(),
            pki,
            ports,
            lease,
            explicit_ports: config.ports.is_some(),
            on_ports: config.on_ports.clone(),
            ready_timeout: config.ready_timeout,
            progress: config.progress.clone(),
            etcd: None,
            apiserver: None,
            controller_manager: None,
            sentinel: Some(sentinel),
            client: None,
        };
        match cluster.boot_retrying().await {
            Ok(()) => {
                step.done(format!("https://127.0.0.1:{}", cluster.ports.apiserver));
                Ok(cluster)
            }
            Err(e) => {
                step.fail("");
                Err(e)
            }
        }
    }

    /// [`Self::boot`], again on fresh ports while a component finds its port taken.
    async fn boot_retrying(&mut self) -> Result<(), ClusterError> {
        let mut attempt = 1;
        loop {
            self.notify_ports();
            let err = match self.boot().await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if !self.may_move_ports(&err, attempt) {
                return Err(err);
            }
            self.progress.println(format!(
                "`{}`: {} (attempt {attempt} of {START_ATTEMPTS}); starting again on fresh ports",
                self.name,
                crate::errors::summary_line(&err.to_string())
            ));
            self.reset_for_fresh_ports()?;
            attempt += 1;
        }
    }

    /// Whether a failed start may be tried again on other ports.
    fn may_move_ports(&self, err: &ClusterError, attempt: u32) -> bool {
        !self.explicit_ports && attempt < START_ATTEMPTS && err.is_port_clash()
    }

    fn notify_ports(&self) {
        if let Some(hook) = &self.on_ports {
            (hook.0)(&self.ports);
        }
    }

    /// Undoes a failed [`Self::boot`] so it can run again: stops what was started,
    /// removes etcd's data (its membership records the old peer URL) and leases new
    /// ports. The logs stay: each component's error is judged by its own lines
    /// ([`Supervised::log_offset`]), and earlier attempts are evidence.
    fn reset_for_fresh_ports(&mut self) -> Result<(), ClusterError> {
        self.stop_components(Duration::from_secs(5));
        self.client = None;
        let data = self.dir.join("etcd");
        if data.exists() {
            std::fs::remove_dir_all(&data).map_err(|e| ClusterError::io("removing", &data, e))?;
        }
        // Lease the new ports before releasing the old, so none comes back.
        let (ports, lease) = Ports::lease()?;
        self.ports = ports;
        self.lease = lease;
        Ok(())
    }

    /// Stops the running components, in reverse order of start so nothing logs errors
    /// about its dependencies.
    fn stop_components(&mut self, grace: Duration) {
        for p in [
            &mut self.controller_manager,
            &mut self.apiserver,
            &mut self.etcd,
        ] {
            if let Some(mut proc) = p.take() {
                proc.stop(grace);
            }
        }
    }

    /// [`Self::stop_components`] on the async runtime, without blocking it.
    async fn stop_components_async(&mut self, grace: Duration) {
        for p in [
            &mut self.controller_manager,
            &mut self.apiserver,
            &mut self.etcd,
        ] {
            if let Some(mut proc) = p.take() {
                proc.stop_async(grace).await;
            }
        }
    }

    async fn boot(&mut self) -> Result<(), ClusterError> {
        std::fs::create_dir_all(self.dir.join("logs"))
            .map_err(|e| ClusterError::io("creating", self.dir.join("logs"), e))?;
        self.write_kubeconfigs()?;
        let policy = self.audit_policy();
        std::fs::create_dir_all(self.dir.join("audit"))
            .and_then(|()| std::fs::write(&policy, super::AUDIT_POLICY))
            .map_err(|e| ClusterError::io("writing", &policy, e))?;
        self.start_etcd().await?;
        self.start_apiserver().await?;
        self.start_controller_manager().await?;
        // Pods can be created only once the namespace's `default` service account exists.
        self.wait_for_default_service_account().await
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    /// The Kubernetes version running now (the target's after an in-place upgrade).
    pub fn version(&self) -> &crate::components::Version {
        &self.components.version
    }
    pub fn components(&self) -> &Components {
        &self.components
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }
    pub fn ports(&self) -> Ports {
        self.ports
    }
    pub fn server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.ports.apiserver)
    }
    /// The log file of a component (`etcd`, `kube-apiserver`, `kube-controller-manager`)
    /// of the version running now.
    pub fn log_path(&self, component: &str) -> PathBuf {
        if component == "etcd" {
            self.dir.join("logs/etcd.log")
        } else {
            self.dir
                .join("logs")
                .join(format!("{component}-{}.log", self.components.version))
        }
    }

    /// Components that have exited since they were (re)started, each with its exit
    /// status and last meaningful log line: a run whose controller manager died has
    /// nothing to say about the garbage collector.
    pub fn dead_components(&mut self) -> Vec<String> {
        let exited: Vec<(&str, std::process::ExitStatus)> = [
            ("etcd", self.etcd.as_mut()),
            ("kube-apiserver", self.apiserver.as_mut()),
            ("kube-controller-manager", self.controller_manager.as_mut()),
        ]
        .into_iter()
        .filter_map(|(name, p)| Some((name, p?.exited()?)))
        .collect();
        let mut dead = Vec::new();
        for (name, status) in exited {
            let log = std::fs::read_to_string(self.log_path(name)).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(20)..].join("\n");
            let last = crate::errors::first_meaningful_line(&tail)
                .unwrap_or_default()
                .to_string();
            dead.push(format!("{name} exited during the run ({status}): {last}"));
        }
        dead
    }

    /// A client with the admin's credentials.
    pub fn client(&self) -> kube::Client {
        self.client
            .clone()
            .expect("client exists once the cluster is ready")
    }

    /// A client that impersonates `user` (e.g. the garbage collector's service
    /// account), for dry runs that must be judged as that user's requests.
    pub async fn impersonating(&self, user: &str) -> Result<kube::Client, ClusterError> {
        client_from_kubeconfig_as(&self.kubeconfig, None, Some(user)).await
    }

    /// Each running component's name and process id.
    pub fn component_pids(&self) -> Vec<(&'static str, u32)> {
        [
            ("etcd", &self.etcd),
            ("kube-apiserver", &self.apiserver),
            ("kube-controller-manager", &self.controller_manager),
        ]
        .into_iter()
        .filter_map(|(n, p)| Some((n, p.as_ref()?.pid()?)))
        .collect()
    }

    /// Process ids of the running components (for tests and `cluster down`).
    pub fn pids(&self) -> Vec<u32> {
        [&self.etcd, &self.apiserver, &self.controller_manager]
            .into_iter()
            .filter_map(|p| p.as_ref().and_then(Supervised::pid))
            .collect()
    }

    fn write_kubeconfigs(&self) -> Result<(), ClusterError> {
        let admin = kubeconfig_json(
            &self.server_url(),
            &self.pki.ca.cert_pem,
            &self.pki.admin,
            "preflight-admin",
        );
        pki::write_private(&self.kubeconfig, &admin)?;
        let kcm = kubeconfig_json(
            &self.server_url(),
            &self.pki.ca.cert_pem,
            &self.pki.controller_manager,
            "kube-controller-manager",
        );
        pki::write_private(&self.dir.join("controller-manager.kubeconfig"), &kcm)
    }

    async fn start_etcd(&mut self) -> Result<(), ClusterError> {
        let p = self.ports;
        let client_url = format!("http://127.0.0.1:{}", p.etcd_client);
        let peer_url = format!("http://127.0.0.1:{}", p.etcd_peer);
        let args = vec![
            "--name=preflight".to_string(),
            format!("--data-dir={}", self.dir.join("etcd").display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=preflight={peer_url}"),
            "--unsafe-no-fsync=true".to_string(),
            "--log-level=warn".to_string(),
        ];
        let log = self.log_path("etcd");
        let mut etcd = Supervised::spawn(
            "etcd",
            &self.components.etcd,
            &args,
            &log,
            &self.dir.join(".pgids"),
        )?;
        let http = super::metrics::loopback_http().map_err(|e| ClusterError::Kubeconfig {
            path: self.kubeconfig.clone(),
            detail: e.to_string(),
        })?;
        let result = wait_until(
            &mut etcd,
            self.ready_timeout,
            "GET /health and our member",
            || etcd_ready(&http, &client_url, &peer_url),
        )
        .await;
        self.etcd = Some(etcd);
        result
    }

    fn apiserver_args(&self) -> Vec<String> {
        let p = self.ports;
        let pki = &self.pki;
        vec![
            format!("--etcd-servers=http://127.0.0.1:{}", p.etcd_client),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={}", p.apiserver),
            format!("--cert-dir={}", self.dir.join("pki").display()),
            format!("--tls-cert-file={}", pki.serving_cert().display()),
            format!("--tls-private-key-file={}", pki.serving_key().display()),
            format!("--client-ca-file={}", pki.ca_cert().display()),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", pki.sa_public().display()),
            format!(
                "--service-account-signing-key-file={}",
                pki.sa_private().display()
            ),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--authorization-mode=RBAC".into(),
            "--allow-privileged=true".into(),
            // Loopback addresses cannot be endpoints of the `kubernetes` Service.
            "--endpoint-reconciler-type=none".into(),
            "--enable-priority-and-fairness=false".into(),
            "--profiling=false".into(),
            "--v=1".into(),
            format!("--audit-policy-file={}", self.audit_policy().display()),
            format!("--audit-log-path={}", self.audit_log().display()),
            "--audit-log-maxsize=200".into(),
        ]
    }

    fn audit_policy(&self) -> PathBuf {
        self.dir.join("audit/policy.yaml")
    }

    /// The API server's audit log: every DELETE and its answer (JSON lines).
    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("audit/audit.log")
    }

    async fn start_apiserver(&mut self) -> Result<(), ClusterError> {
        let args = self.apiserver_args();
        let log = self.log_path("kube-apiserver");
        let mut apiserver = Supervised::spawn(
            "kube-apiserver",
            &self.components.kube_apiserver,
            &args,
            &log,
            &self.dir.join(".pgids"),
        )?;
        // etcd and kube-apiserver run, nothing is ready yet.
        crate::failpoint::pause_at("cluster-start").await;
        let client = self.make_client().await;
        let result = match client {
            Ok(client) => {
                let r = wait_until(
                    &mut apiserver,
                    self.ready_timeout,
                    "GET /readyz",
                    || async {
                        let req = http::Request::get("/readyz")
                            .body(Vec::new())
                            .map_err(|e| e.to_string())?;
                        client
                            .request_text(req)
                            .await
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    },
                )
                .await;
                self.client = Some(client);
                r
            }
            Err(e) => Err(e),
        };
        self.apiserver = Some(apiserver);
        result
    }

    /// The controller manager's metrics (Prometheus text, on loopback).
    pub fn controller_manager_metrics_url(&self) -> String {
        format!(
            "https://127.0.0.1:{}/metrics",
            self.ports.controller_manager
        )
    }

    async fn make_client(&self) -> Result<kube::Client, ClusterError> {
        client_from_kubeconfig(&self.kubeconfig, None).await
    }

    async fn start_controller_manager(&mut self) -> Result<(), ClusterError> {
        let kcm_kubeconfig = self.dir.join("controller-manager.kubeconfig");
        let args = vec![
            format!("--kubeconfig={}", kcm_kubeconfig.display()),
            format!("--authentication-kubeconfig={}", kcm_kubeconfig.display()),
            format!("--authorization-kubeconfig={}", kcm_kubeconfig.display()),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={}", self.ports.controller_manager),
            format!(
                "--cert-dir={}",
                self.dir.join("pki/controller-manager").display()
            ),
            "--leader-elect=false".into(),
            "--use-service-account-credentials=true".into(),
            format!(
                "--service-account-private-key-file={}",
                self.pki.sa_private().display()
            ),
            format!("--root-ca-file={}", self.pki.ca_cert().display()),
            format!("--controllers={}", CONTROLLERS.join(",")),
            "--cluster-name=preflight".into(),
            "--profiling=false".into(),
            // Settling reads the garbage collector's work queues from /metrics (on
            // loopback only, like /healthz).
            "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics".into(),
            "--v=2".into(),
        ];
        let log = self.log_path("kube-controller-manager");
        let mut kcm = Supervised::spawn(
            "kube-controller-manager",
            &self.components.kube_controller_manager,
            &args,
            &log,
            &self.dir.join(".pgids"),
        )?;
        let http = super::metrics::loopback_http().map_err(|e| ClusterError::Kubeconfig {
            path: kcm_kubeconfig.clone(),
            detail: e.to_string(),
        })?;
        let url = format!(
            "https://127.0.0.1:{}/healthz",
            self.ports.controller_manager
        );
        let result = wait_until(&mut kcm, self.ready_timeout, "GET /healthz", || async {
            match http.get(&url).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("HTTP {}", r.status())),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
        self.controller_manager = Some(kcm);
        result
    }

    async fn wait_for_default_service_account(&mut self) -> Result<(), ClusterError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client(), "default");
        let mut kcm = self.controller_manager.take().expect("started");
        let result = wait_until(
            &mut kcm,
            self.ready_timeout,
            "the `default` service account",
            || async {
                match api.get_opt("default").await {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => Err("not created yet".to_string()),
                    Err(e) => Err(e.to_string()),
                }
            },
        )
        .await;
        self.controller_manager = Some(kcm);
        result
    }

    /// Restarts the controller manager (as every upgrade does): informers, the garbage
    /// collector's view of resource types, everything is rebuilt from scratch.
    pub async fn restart_controller_manager(&mut self) -> Result<(), ClusterError> {
        let step = self.progress.step(format!(
            "restarting kube-controller-manager of `{}`",
            self.name
        ));
        if let Some(mut kcm) = self.controller_manager.take() {
            kcm.stop_async(Duration::from_secs(10)).await;
        }
        let r = self.restart_controller_manager_retrying().await;
        match &r {
            Ok(()) => step.done(""),
            Err(_) => step.fail(""),
        };
        r
    }

    /// Starts the controller manager again after it was stopped, on a fresh port while
    /// another process holds its old one (nothing else refers to that port), unless
    /// the ports were given.
    async fn restart_controller_manager_retrying(&mut self) -> Result<(), ClusterError> {
        let mut attempt = 1;
        loop {
            self.notify_ports();
            let err = match self.start_controller_manager().await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if let Some(mut kcm) = self.controller_manager.take() {
                kcm.stop_async(Duration::from_secs(5)).await;
            }
            if !self.may_move_ports(&err, attempt) {
                return Err(err);
            }
            let old = self.ports.controller_manager;
            self.ports.controller_manager = self.lease.replace(old)?;
            self.progress.println(format!(
                "`{}`: kube-controller-manager found 127.0.0.1:{old} taken; restarting it on 127.0.0.1:{}",
                self.name, self.ports.controller_manager
            ));
            attempt += 1;
        }
    }

    /// Upgrades in place, the incident's path: stop the controller manager and the
    /// apiserver, start the `target` binaries on the same etcd data, ports and
    /// certificates. Objects created under the old version are deleted under the new.
    /// Restarts kube-apiserver (as every upgrade does): its caches, including the
    /// converted objects of custom resources, are rebuilt from etcd.
    pub async fn restart_apiserver(&mut self) -> Result<(), ClusterError> {
        let step = self
            .progress
            .step(format!("restarting kube-apiserver of `{}`", self.name));
        if let Some(mut api) = self.apiserver.take() {
            api.stop_async(APISERVER_RESTART_GRACE).await;
        }
        self.client = None;
        self.notify_ports();
        let port = self.ports.apiserver;
        let r = self
            .start_apiserver()
            .await
            .map_err(|e| apiserver_port_taken(e, port));
        match &r {
            Ok(()) => step.done(""),
            Err(_) => step.fail(""),
        };
        r
    }

    pub async fn upgrade(&mut self, target: Components) -> Result<(), ClusterError> {
        let step = self.progress.step(format!(
            "upgrading `{}` in place: {} -> {}",
            self.name, self.components.version, target.version
        ));
        if let Some(mut kcm) = self.controller_manager.take() {
            kcm.stop_async(Duration::from_secs(10)).await;
        }
        if let Some(mut api) = self.apiserver.take() {
            api.stop_async(Duration::from_secs(10)).await;
        }
        self.client = None;
        self.components.kube_apiserver = target.kube_apiserver;
        self.components.kube_controller_manager = target.kube_controller_manager;
        self.components.helm = target.helm;
        self.components.version = target.version;
        self.notify_ports();
        let r = self.start_apiserver_and_controller_manager().await;
        match &r {
            Ok(()) => step.done(""),
            Err(_) => step.fail(""),
        };
        r
    }

    /// Starts the API server again on its port (kubeconfigs point at it), then the
    /// controller manager (on a fresh port if its old one was taken): after an
    /// upgrade's or a restore's stop.
    async fn start_apiserver_and_controller_manager(&mut self) -> Result<(), ClusterError> {
        let port = self.ports.apiserver;
        self.start_apiserver()
            .await
            .map_err(|e| apiserver_port_taken(e, port))?;
        self.restart_controller_manager_retrying().await
    }

    /// Saves the cluster's whole state under `name`: stops every component (a copy of
    /// etcd's data is consistent only while etcd is stopped) and copies etcd's data
    /// directory into the cluster's directory. The components stay stopped until
    /// [`Self::restore_state`]. A replay installs its releases once and restores this
    /// state for each pass, instead of installing again on a new control plane.
    pub fn save_state(&mut self, name: &str) -> Result<SavedState, ClusterError> {
        let step = self
            .progress
            .step(format!("saving the state of `{}` ({name})", self.name));
        self.stop_components(Duration::from_secs(10));
        self.client = None;
        let to = self.dir.join("states").join(name);
        let r = (|| {
            if to.exists() {
                std::fs::remove_dir_all(&to).map_err(|e| ClusterError::io("removing", &to, e))?;
            }
            copy_tree(&self.dir.join("etcd"), &to)
        })();
        match &r {
            Ok(bytes) => step.done(format!("{} MiB", bytes / (1024 * 1024))),
            Err(_) => step.fail(""),
        };
        r.map(|_| SavedState { dir: to })
    }

    /// Starts the control plane on a copy of `state`, as a fresh control plane: etcd
    /// holds exactly what it held when the state was saved, and the API server and
    /// controller manager start from scratch (their caches, informers and the garbage
    /// collector's graph are rebuilt, as after an upgrade). The logs and audit log of
    /// what ran before move to `history/before-<label>/`, so the evidence read after
    /// this point is the restored cluster's own.
    pub async fn restore_state(
        &mut self,
        state: &SavedState,
        label: &str,
    ) -> Result<(), ClusterError> {
        let step = self.progress.step(format!(
            "restoring `{}` to its saved state ({label})",
            self.name
        ));
        self.stop_components_async(Duration::from_secs(10)).await;
        self.client = None;
        let r = async {
            let history = self.dir.join("history").join(format!("before-{label}"));
            std::fs::create_dir_all(&history)
                .map_err(|e| ClusterError::io("creating", &history, e))?;
            for from in [self.dir.join("logs"), self.dir.join("audit/audit.log")] {
                if from.exists() {
                    let to = history.join(from.file_name().expect("named"));
                    std::fs::rename(&from, &to)
                        .map_err(|e| ClusterError::io("moving", &from, e))?;
                }
            }
            std::fs::create_dir_all(self.dir.join("logs"))
                .map_err(|e| ClusterError::io("creating", self.dir.join("logs"), e))?;
            let data = self.dir.join("etcd");
            if data.exists() {
                std::fs::remove_dir_all(&data)
                    .map_err(|e| ClusterError::io("removing", &data, e))?;
            }
            copy_tree(&state.dir, &data)?;
            self.notify_ports();
            self.start_etcd().await?;
            self.start_apiserver_and_controller_manager().await
        }
        .await;
        match &r {
            Ok(()) => step.done(""),
            Err(_) => step.fail(""),
        };
        r
    }

    /// Stops everything and removes the directory (unless kept). Same as dropping,
    /// but says so.
    pub fn stop(self) {
        let step = self.progress.step(format!("stopping `{}`", self.name));
        drop(self);
        step.done("");
    }

    /// Leaves the control plane running after this process exits (`cluster up`) and
    /// returns what is needed to stop it later.
    pub fn detach(mut self) -> DetachedState {
        if let Some(mut s) = self.sentinel.take() {
            s.disarm();
        }
        let process_groups = [
            self.etcd.take(),
            self.apiserver.take(),
            self.controller_manager.take(),
        ]
        .into_iter()
        .flatten()
        .filter_map(|p| p.detach().map(|pid| pid as i32))
        .collect();
        let state = DetachedState {
            name: self.name.clone(),
            version: self.components.version.to_string(),
            dir: self.dir.clone(),
            kubeconfig: self.kubeconfig.clone(),
            process_groups,
        };
        self.keep = true;
        state
    }
}

/// The apiserver cannot move to another port after start-up (the kubeconfigs handed
/// out point at it): a clash there is said as such rather than retried.
fn apiserver_port_taken(err: ClusterError, port: u16) -> ClusterError {
    if err.is_port_clash() {
        ClusterError::PortTaken {
            component: "kube-apiserver".into(),
            port,
            source: Box::new(err),
        }
    } else {
        err
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop_components(Duration::from_secs(5));
        if let Some(mut s) = self.sentinel.take() {
            s.disarm();
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// How long a restart gives the API server to exit on SIGTERM while the controller
/// manager keeps running. Its own shutdown takes milliseconds (requests drained, the
/// audit backend flushed: its log says so); then it waits for the controller manager's
/// open watches, which it does not drain (`--shutdown-watch-termination-grace-period`
/// is 0), up to its request timeout of 60 s. It keeps no state of its own (etcd does),
/// so SIGKILL after this grace loses nothing and the restart takes seconds.
const APISERVER_RESTART_GRACE: Duration = Duration::from_secs(2);

/// Polls `check` until it succeeds, the process exits, or `timeout` passes.
async fn wait_until<F, Fut>(
    process: &mut Supervised,
    timeout: Duration,
    what: &str,
    mut check: F,
) -> Result<(), ClusterError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + timeout;
    let mut last;
    loop {
        if let Some(status) = process.exited() {
            return Err(ClusterError::ComponentExited {
                component: process.name.clone(),
                status: status.to_string(),
                log: process.log.clone(),
                tail: log_tail_from(&process.log, process.log_offset, 20),
            });
        }
        match tokio::time::timeout(Duration::from_secs(5), check()).await {
            // Another process's listener on a taken port can answer for a component
            // that has just exited: an answer counts only while ours still runs.
            Ok(Ok(())) if process.exited().is_none() => return Ok(()),
            Ok(Ok(())) => last = "answered, but not by this process".into(),
            Ok(Err(e)) => last = e,
            Err(_) => last = "check timed out".into(),
        }
        if Instant::now() >= deadline {
            return Err(ClusterError::NotReady {
                component: process.name.clone(),
                secs: timeout.as_secs(),
                detail: format!("{what}: {last}"),
                log: process.log.clone(),
                tail: log_tail_from(&process.log, process.log_offset, 20),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// etcd at `client_url` is healthy and is ours: its only member advertises
/// `peer_url`. Without the second check, another etcd that holds our client port
/// (another control plane's, started by another process) would pass for ours, and our
/// apiserver would write into its data.
async fn etcd_ready(
    http: &reqwest::Client,
    client_url: &str,
    peer_url: &str,
) -> Result<(), String> {
    let health = http
        .get(format!("{client_url}/health"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !health.status().is_success() {
        return Err(format!("/health: HTTP {}", health.status()));
    }
    // The gRPC gateway's member list (JSON), served by every etcd 3.x.
    let members = http
        .post(format!("{client_url}/v3/cluster/member/list"))
        .body("{}")
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("member list: {e}"))?
        .text()
        .await
        .map_err(|e| format!("member list: {e}"))?;
    if members.contains(&format!("\"{peer_url}\"")) {
        Ok(())
    } else {
        Err(format!(
            "the etcd on {client_url} is not ours (no member with peer URL {peer_url}): {members}"
        ))
    }
}

/// A kubeconfig with embedded credentials, as JSON (which every client reads as YAML).
fn kubeconfig_json(server: &str, ca_pem: &str, user: &pki::CertPair, user_name: &str) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "preflight", "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": user_name, "user": {"client-certificate-data": b64(&user.cert_pem), "client-key-data": b64(&user.key_pem)}}],
        "contexts": [{"name": "preflight", "context": {"cluster": "preflight", "user": user_name}}],
        "current-context": "preflight",
    });
    serde_json::to_string_pretty(&doc).expect("kubeconfig serialises")
}

/// A client for a kubeconfig file, optionally for a named context.
pub async fn client_from_kubeconfig(
    path: &Path,
    context: Option<&str>,
) -> Result<kube::Client, ClusterError> {
    client_from_kubeconfig_as(path, context, None).await
}

/// Like [`client_from_kubeconfig`], impersonating `user` when given.
pub async fn client_from_kubeconfig_as(
    path: &Path,
    context: Option<&str>,
    user: Option<&str>,
) -> Result<kube::Client, ClusterError> {
    let config = config_from_kubeconfig(path, context, user).await?;
    kube::Client::try_from(config).map_err(|e| ClusterError::Kubeconfig {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// The client configuration of a kubeconfig file (its server URL among it).
pub async fn config_from_kubeconfig(
    path: &Path,
    context: Option<&str>,
    user: Option<&str>,
) -> Result<kube::Config, ClusterError> {
    let err = |detail: String| ClusterError::Kubeconfig {
        path: path.to_path_buf(),
        detail,
    };
    let kc = Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
    let opts = KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(kc, &opts)
        .await
        .map_err(|e| err(e.to_string()))?;
    // A kubeconfig's own `as:` stays unless the caller impersonates someone else.
    if let Some(user) = user {
        config.auth_info.impersonate = Some(user.to_string());
    }
    // kube takes `HTTPS_PROXY` from the environment, which is for the way out: a
    // control plane on this machine's loopback (local, kind) is reached directly.
    if is_loopback(&config.cluster_url) {
        config.proxy_url = None;
    }
    Ok(config)
}

/// Whether `uri` names this machine's loopback (`127.0.0.0/8`, `::1`, `localhost`).
fn is_loopback(uri: &http::Uri) -> bool {
    match uri.host() {
        Some("localhost") => true,
        Some(h) => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// A saved state of a local control plane (etcd's data at one moment), see
/// [`LocalCluster::save_state`].
#[derive(Clone, Debug)]
pub struct SavedState {
    dir: PathBuf,
}

/// Copies directory `from` to `to` (created), files and subdirectories; returns the
/// bytes copied. etcd's data holds only those.
fn copy_tree(from: &Path, to: &Path) -> Result<u64, ClusterError> {
    std::fs::create_dir_all(to).map_err(|e| ClusterError::io("creating", to, e))?;
    let mut bytes = 0;
    for entry in std::fs::read_dir(from).map_err(|e| ClusterError::io("reading", from, e))? {
        let entry = entry.map_err(|e| ClusterError::io("reading", from, e))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry
            .file_type()
            .map_err(|e| ClusterError::io("reading", &src, e))?;
        if kind.is_dir() {
            bytes += copy_tree(&src, &dst)?;
        } else {
            bytes += std::fs::copy(&src, &dst).map_err(|e| ClusterError::io("copying", &src, e))?;
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod loopback_tests {
    #[test]
    fn loopback_servers_are_recognised() {
        for (url, loopback) in [
            ("https://127.0.0.1:6443", true),
            ("https://127.3.4.5", true),
            ("https://[::1]:6443", true),
            ("https://localhost:6443", true),
            ("https://aks-prod-dns.hcp.westeurope.azmk8s.io:443", false),
            ("https://10.0.0.1", false),
        ] {
            let uri: http::Uri = url.parse().unwrap();
            assert_eq!(super::is_loopback(&uri), loopback, "{url}");
        }
    }
}
