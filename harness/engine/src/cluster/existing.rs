//! The `kubeconfig` provider: an existing cluster (a staging AKS cluster, say) that
//! other people use too.
//!
//! preflight is a guest there. It writes only into namespaces it creates and labels
//! with its run id, scopes every webhook it registers to those namespaces, refuses
//! steps that would affect the whole cluster (controller-manager restart, upgrade,
//! unscoped or conversion webhooks, webhook rules that reach cluster-scoped resources
//! or use `*`), removes everything it created at the end, and sweeps what an earlier
//! interrupted run left: a run's objects carry its labels, and a live run holds a
//! Lease that it renews (see [`super::heartbeat`]); only runs whose Lease expired (or,
//! without a Lease, that are older than a grace period) are swept.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;

use super::heartbeat;
use crate::behaviour::{Behaviour, WebhookKind};
use crate::components::Version;
use crate::errors::ClusterError;
use crate::scenario::{Scenario, Step};

/// The label selector of everything preflight creates on a shared cluster.
pub const OWNED: &str = "app.kubernetes.io/managed-by=preflight,preflight.dev/run";
/// The label naming the run an object belongs to.
pub const RUN_LABEL: &str = "preflight.dev/run";

/// A cluster preflight did not create.
pub struct ExistingCluster {
    kubeconfig: PathBuf,
    context: Option<String>,
    version: Version,
    helm: PathBuf,
    dir: tempfile::TempDir,
    /// Removes `dir` if this process is killed (SIGKILL runs no destructor); no
    /// process of ours runs on an existing cluster, so it stops none.
    _sentinel: super::process::Sentinel,
    client: kube::Client,
    /// Where the cluster's API server can reach preflight's webhook server.
    webhook_address: Option<IpAddr>,
}

impl std::fmt::Debug for ExistingCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExistingCluster")
            .field("kubeconfig", &self.kubeconfig)
            .field("version", &self.version)
            .finish()
    }
}

/// `v1.30.7-aks.1` -> v1.30.7.
pub fn parse_server_version(git_version: &str) -> Option<Version> {
    let core: String = git_version
        .trim_start_matches('v')
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    core.trim_end_matches('.').parse().ok()
}

impl ExistingCluster {
    pub async fn connect(
        kubeconfig: &Path,
        context: Option<&str>,
        helm: &Path,
        webhook_address: Option<IpAddr>,
    ) -> Result<ExistingCluster, ClusterError> {
        crate::init_crypto();
        let client = super::local::client_from_kubeconfig(kubeconfig, context).await?;
        let info = client
            .apiserver_version()
            .await
            .map_err(|source| ClusterError::Api {
                action: format!("asking {} for its version", kubeconfig.display()),
                source,
            })?;
        let version =
            parse_server_version(&info.git_version).ok_or_else(|| ClusterError::Kubeconfig {
                path: kubeconfig.to_path_buf(),
                detail: format!(
                    "the server reports version `{}`, which is not vMAJOR.MINOR.PATCH",
                    info.git_version
                ),
            })?;
        let dir = tempfile::Builder::new()
            .prefix("preflight-existing-")
            .tempdir()
            .map_err(|e| {
                ClusterError::io("creating a temporary directory", std::env::temp_dir(), e)
            })?;
        let sentinel = super::process::Sentinel::start(Path::new("/dev/null"), Some(dir.path()))?;
        Ok(ExistingCluster {
            kubeconfig: kubeconfig.to_path_buf(),
            context: context.map(String::from),
            version,
            helm: helm.to_path_buf(),
            dir,
            _sentinel: sentinel,
            client,
            webhook_address,
        })
    }

    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }
    pub fn version(&self) -> &Version {
        &self.version
    }
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }
    pub fn context(&self) -> Option<&str> {
        self.context.as_deref()
    }
    pub fn helm(&self) -> &Path {
        &self.helm
    }
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn webhook_address(&self) -> Option<IpAddr> {
        self.webhook_address
    }

    pub async fn impersonating(&self, user: &str) -> Result<kube::Client, ClusterError> {
        super::local::client_from_kubeconfig_as(
            &self.kubeconfig,
            self.context.as_deref(),
            Some(user),
        )
        .await
    }

    /// Removes what earlier, interrupted runs left (see [`sweep`]).
    pub async fn sweep(&self) -> Result<SweepReport, ClusterError> {
        sweep(&self.client).await
    }
}

/// What a sweep removed, and which runs it left alone and why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// `Kind/name` of every object removed.
    pub removed: Vec<String>,
    /// One line per run left alone: its id and why (a live Lease, the grace period of
    /// a run without one, a Lease that could not be read).
    pub kept: Vec<String>,
}

/// The kinds a run owns outside its namespace first (webhook configurations: a
/// namespace being deleted must not meet them), then its namespaces.
fn owned_kinds() -> [ApiResource; 3] {
    let ar = |group: &str, kind: &str, plural: &str| {
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", kind), plural)
    };
    [
        ar(
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
        ),
        ar(
            "admissionregistration.k8s.io",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
        ),
        ar("", "Namespace", "namespaces"),
    ]
}

/// One object a run owns.
#[derive(Clone, Debug)]
struct Owned {
    resource: ApiResource,
    name: String,
    created: Option<Timestamp>,
    deleting: bool,
}

/// Every object carrying preflight's labels, by run id, in deletion order.
async fn owned_by_run(
    client: &kube::Client,
    selector: &str,
) -> Result<BTreeMap<String, Vec<Owned>>, ClusterError> {
    let mut runs: BTreeMap<String, Vec<Owned>> = BTreeMap::new();
    for ar in owned_kinds() {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let list = api
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|source| ClusterError::Api {
                action: format!("listing preflight's {}s", ar.kind),
                source,
            })?;
        for obj in list.items {
            let run = obj
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(RUN_LABEL))
                .cloned()
                .unwrap_or_default();
            runs.entry(run).or_default().push(Owned {
                resource: ar.clone(),
                name: obj.metadata.name.unwrap_or_default(),
                created: obj.metadata.creation_timestamp.map(|t| t.0),
                deleting: obj.metadata.deletion_timestamp.is_some(),
            });
        }
    }
    Ok(runs)
}

/// Deletes `objects` (in order; those already being deleted are skipped).
async fn delete_owned(
    client: &kube::Client,
    objects: &[Owned],
    removed: &mut Vec<String>,
) -> Result<(), ClusterError> {
    for o in objects {
        if o.deleting {
            continue;
        }
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &o.resource);
        match api.delete(&o.name, &DeleteParams::background()).await {
            Ok(_) => removed.push(format!("{}/{}", o.resource.kind, o.name)),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(source) => {
                return Err(ClusterError::Api {
                    action: format!("deleting {} {}", o.resource.kind, o.name),
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Whether run `run`'s objects are abandoned, judged by its heartbeat (see
/// [`heartbeat`]): `Err(why)` when it must be left alone.
async fn abandoned(
    client: &kube::Client,
    run: &str,
    objects: &[Owned],
    now: Timestamp,
) -> Result<(), String> {
    let name = heartbeat::lease_name(run);
    let mut leases = Vec::new();
    for ns in objects.iter().filter(|o| o.resource.kind == "Namespace") {
        let api: Api<Lease> = Api::namespaced(client.clone(), &ns.name);
        match api.get_opt(&name).await {
            Ok(Some(lease)) => leases.push(heartbeat::LeaseTimes::of(&lease)),
            Ok(None) => {}
            Err(e) => {
                return Err(format!(
                    "run {run}: its Lease {}/{name} cannot be read ({e}), so it may be alive",
                    ns.name
                ));
            }
        }
    }
    if leases.is_empty() {
        let newest = objects.iter().filter_map(|o| o.created).max();
        return if heartbeat::unleased_expired(newest, now) {
            Ok(())
        } else {
            Err(format!(
                "run {run}: no Lease, but created {} (less than {} min ago, or unknown): it may be starting",
                newest.map_or_else(|| "at an unknown time".to_string(), |t| t.to_string()),
                heartbeat::NO_LEASE_GRACE.as_secs() / 60
            ))
        };
    }
    match leases
        .iter()
        .filter_map(|l| heartbeat::lease_valid_until(l, now))
        .max()
    {
        Some(until) if until >= now => Err(format!(
            "run {run}: its Lease is live (renewed; holds until {until} by the API server's clock)"
        )),
        _ => Ok(()),
    }
}

/// Removes what interrupted runs left on a shared cluster: the namespaces and webhook
/// configurations labelled as a preflight run's whose heartbeat has stopped (its Lease
/// expired, see [`heartbeat`]), or, for a run without a Lease, that were created more
/// than [`heartbeat::NO_LEASE_GRACE`] ago. Runs of other preflight processes that are
/// still going are left alone.
pub async fn sweep(client: &kube::Client) -> Result<SweepReport, ClusterError> {
    let runs = owned_by_run(client, OWNED).await?;
    let (now, _) = heartbeat::server_now(client).await;
    let mut report = SweepReport::default();
    for (run, objects) in runs {
        match abandoned(client, &run, &objects, now).await {
            Ok(()) => delete_owned(client, &objects, &mut report.removed).await?,
            Err(why) => report.kept.push(why),
        }
    }
    Ok(report)
}

/// Deletes the namespace and webhook configurations of one run (`preflight.dev/run=<id>`),
/// this process's own: no heartbeat is consulted.
pub async fn cleanup_run(client: &kube::Client, run_id: &str) -> Result<Vec<String>, ClusterError> {
    let runs = owned_by_run(
        client,
        &format!("app.kubernetes.io/managed-by=preflight,{RUN_LABEL}={run_id}"),
    )
    .await?;
    let mut removed = Vec::new();
    for objects in runs.values() {
        delete_owned(client, objects, &mut removed).await?;
    }
    Ok(removed)
}

/// Whether run id `run` belongs to the session `session` (run ids are the session's
/// id followed by the run's index).
pub fn in_session(run: &str, session: &str) -> bool {
    run.strip_prefix(session)
        .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()))
}

/// Deletes the objects of every run of this process's session (`<session><index>`):
/// its own, whatever their heartbeat says; other processes' runs are not touched.
pub async fn cleanup_session(
    client: &kube::Client,
    session: &str,
) -> Result<Vec<String>, ClusterError> {
    let runs = owned_by_run(client, OWNED).await?;
    let mut removed = Vec::new();
    for (run, objects) in &runs {
        if in_session(run, session) {
            delete_owned(client, objects, &mut removed).await?;
        }
    }
    Ok(removed)
}

/// Removes this session's runs from a thread of its own when dropped (armed): a run
/// interrupted by Ctrl-C or SIGTERM drops its futures, and no async teardown runs
/// then. Used on shared clusters, where nothing preflight made may stay. Only this
/// session's runs: other preflight processes on the cluster may be live.
pub struct SweepOnDrop {
    pub kubeconfig: PathBuf,
    pub context: Option<String>,
    /// The session's run id (each run's id is it followed by the run's index).
    pub session: String,
    pub progress: crate::progress::Progress,
    pub armed: bool,
}

impl Drop for SweepOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (kubeconfig, context, session, progress) = (
            self.kubeconfig.clone(),
            self.context.clone(),
            self.session.clone(),
            self.progress.clone(),
        );
        let worker = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let work = async {
                    let client = super::local::client_from_kubeconfig(&kubeconfig, context.as_deref()).await.ok()?;
                    cleanup_session(&client, &session).await.ok()
                };
                match tokio::time::timeout(std::time::Duration::from_secs(30), work).await {
                    Ok(Some(removed)) if !removed.is_empty() => progress.println(format!("interrupted: removed {}", removed.join(", "))),
                    Ok(_) => {}
                    Err(_) => progress.println("interrupted: could not finish removing preflight's objects within 30 s; once their Leases expire, the next run sweeps them"),
                }
            });
        });
        let _ = worker.join();
    }
}

/// Why a scenario cannot run on a shared cluster, if it cannot.
pub fn refusal(scenario: &Scenario, webhook_address: Option<IpAddr>) -> Option<String> {
    for step in &scenario.steps {
        match step {
            Step::RestartControllerManager => return Some("`restartControllerManager` affects the whole cluster: it needs the local or kind provider".into()),
            Step::RestartApiServer => return Some("`restartApiServer` affects the whole cluster: it needs the local or kind provider".into()),
            Step::Upgrade => return Some("`upgrade` (in place) affects the whole cluster: it needs the local or kind provider".into()),
            Step::RollNodes(_) => return Some("`rollNodes` would cordon and drain this cluster's own nodes, and join and remove nodes: it runs only on clusters preflight owns (--provider kind)".into()),
            _ => {}
        }
    }
    for w in &scenario.webhooks {
        if w.kind == WebhookKind::Conversion {
            return Some(format!(
                "webhook `{}`: a conversion webhook changes a CRD for the whole cluster: it needs the local or kind provider",
                w.name
            ));
        }
        if w.namespace_selector.is_some() {
            return Some(format!(
                "webhook `{}` sets its own namespaceSelector: on a shared cluster every webhook is scoped to preflight's namespace",
                w.name
            ));
        }
        for (i, rule) in w.rules.iter().enumerate() {
            if let Some(why) = rule_refusal(rule, |group, resource| {
                KNOWN_CLUSTER_SCOPED
                    .iter()
                    .any(|(g, r)| *g == group && *r == resource)
            }) {
                return Some(rule_refusal_text(scenario, &w.name, i, rule, &why));
            }
        }
    }
    let needs_address = scenario
        .webhooks
        .iter()
        .any(|w| w.initial.behaviour != Behaviour::Unreachable)
        || scenario
            .steps
            .iter()
            .any(|s| matches!(s, Step::SetWebhook(set) if set.behaviour != Behaviour::Unreachable));
    if needs_address && webhook_address.is_none() {
        return Some("its webhooks must answer, so the cluster's API server must reach preflight: give --webhook-address (an address of this machine that the API server can reach); only `unreachable` webhooks need none".into());
    }
    None
}

/// Built-in resources that are cluster-scoped, by (API group, resource). Others (a
/// CRD's, say) are found through discovery before a run starts
/// ([`cluster_scoped_rule_refusal`]).
pub const KNOWN_CLUSTER_SCOPED: &[(&str, &str)] = &[
    ("", "namespaces"),
    ("", "nodes"),
    ("", "persistentvolumes"),
    ("", "componentstatuses"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
    ("apiregistration.k8s.io", "apiservices"),
    (
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
    ),
    (
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
    ),
    (
        "admissionregistration.k8s.io",
        "validatingadmissionpolicies",
    ),
    (
        "admissionregistration.k8s.io",
        "validatingadmissionpolicybindings",
    ),
    ("admissionregistration.k8s.io", "mutatingadmissionpolicies"),
    (
        "admissionregistration.k8s.io",
        "mutatingadmissionpolicybindings",
    ),
    ("rbac.authorization.k8s.io", "clusterroles"),
    ("rbac.authorization.k8s.io", "clusterrolebindings"),
    ("storage.k8s.io", "storageclasses"),
    ("storage.k8s.io", "csidrivers"),
    ("storage.k8s.io", "csinodes"),
    ("storage.k8s.io", "volumeattachments"),
    ("storage.k8s.io", "volumeattributesclasses"),
    ("scheduling.k8s.io", "priorityclasses"),
    ("node.k8s.io", "runtimeclasses"),
    ("networking.k8s.io", "ingressclasses"),
    ("networking.k8s.io", "ipaddresses"),
    ("networking.k8s.io", "servicecidrs"),
    ("certificates.k8s.io", "certificatesigningrequests"),
    ("certificates.k8s.io", "clustertrustbundles"),
    ("flowcontrol.apiserver.k8s.io", "flowschemas"),
    (
        "flowcontrol.apiserver.k8s.io",
        "prioritylevelconfigurations",
    ),
    ("authentication.k8s.io", "tokenreviews"),
    ("authentication.k8s.io", "selfsubjectreviews"),
    ("authorization.k8s.io", "subjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectrulesreviews"),
    ("resource.k8s.io", "deviceclasses"),
    ("resource.k8s.io", "resourceslices"),
    ("internal.apiserver.k8s.io", "storageversions"),
    ("storagemigration.k8s.io", "storageversionmigrations"),
];

/// Why one webhook rule may not run on a shared cluster, if it may not: `*` in its
/// resources or API groups, `scope: Cluster`, or a resource that `cluster_scoped`
/// says is cluster-scoped without `scope: Namespaced` (a namespaceSelector does not
/// limit cluster-scoped objects, so such a rule reaches everyone's).
pub fn rule_refusal(
    rule: &crate::scenario::Rule,
    cluster_scoped: impl Fn(&str, &str) -> bool,
) -> Option<String> {
    let cluster_scoped = &cluster_scoped;
    if rule.api_groups.iter().any(|g| g.contains('*')) {
        return Some(
            "`*` in apiGroups matches every API group, cluster-scoped resources included".into(),
        );
    }
    if let Some(r) = rule.resources.iter().find(|r| r.contains('*')) {
        return Some(format!(
            "`{r}` in resources matches every resource, cluster-scoped ones included"
        ));
    }
    match rule.scope.as_deref() {
        Some("Namespaced") => None,
        Some("Cluster") => Some("`scope: Cluster` matches only cluster-scoped resources, which no namespaceSelector limits".into()),
        _ => {
            let scoped: Vec<String> = rule
                .api_groups
                .iter()
                .flat_map(|g| {
                    rule.resources.iter().filter_map(move |r| {
                        let base = r.split('/').next().unwrap_or(r);
                        cluster_scoped(g, base).then(|| {
                            if g.is_empty() {
                                base.to_string()
                            } else {
                                format!("{base}.{g}")
                            }
                        })
                    })
                })
                .collect();
            (!scoped.is_empty()).then(|| {
                format!(
                    "{} {} cluster-scoped ({}scope matches them), which no namespaceSelector limits",
                    scoped.join(", "),
                    if scoped.len() == 1 { "is" } else { "are" },
                    match rule.scope.as_deref() {
                        None => "the default `*` ",
                        Some(_) => "`*` ",
                    }
                )
            })
        }
    }
}

fn rule_refusal_text(
    scenario: &Scenario,
    webhook: &str,
    index: usize,
    rule: &crate::scenario::Rule,
    why: &str,
) -> String {
    let list = |v: &[String]| {
        v.iter()
            .map(|s| {
                if s.is_empty() {
                    "\"\"".to_string()
                } else {
                    s.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "scenario file {}, webhook `{webhook}`, rule {} (apiGroups: [{}], resources: [{}], scope: {}): {why}; on a shared cluster preflight's webhooks may affect only the run's own namespace: name the API groups and namespaced resources (and set `scope: Namespaced`)",
        scenario.origin,
        index + 1,
        list(&rule.api_groups),
        list(&rule.resources),
        rule.scope.as_deref().unwrap_or("*"),
    )
}

/// The rule refusal of [`refusal`] for resources only the cluster knows about (a
/// CRD's): asks discovery for every group and version a rule names, before anything
/// is created. Groups or versions the cluster does not serve are not judged here.
pub async fn cluster_scoped_rule_refusal(
    client: &kube::Client,
    scenario: &Scenario,
) -> Result<Option<String>, ClusterError> {
    let mut served: BTreeMap<(String, String), bool> = BTreeMap::new();
    for w in &scenario.webhooks {
        if w.kind == WebhookKind::Conversion {
            continue;
        }
        for rule in &w.rules {
            if rule.scope.as_deref() == Some("Namespaced") {
                continue;
            }
            for group in &rule.api_groups {
                if group.contains('*') {
                    continue;
                }
                let versions: Vec<String> = if rule.api_versions.iter().any(|v| v == "*") {
                    served_versions(client, group).await?
                } else {
                    rule.api_versions.clone()
                };
                for version in versions {
                    let gv = if group.is_empty() {
                        version.clone()
                    } else {
                        format!("{group}/{version}")
                    };
                    let list = if group.is_empty() {
                        client.list_core_api_resources(&version).await
                    } else {
                        client.list_api_group_resources(&gv).await
                    };
                    let list = match list {
                        Ok(l) => l,
                        Err(kube::Error::Api(e)) if e.code == 404 => continue,
                        Err(source) => {
                            return Err(ClusterError::Api {
                                action: format!("discovering the resources of {gv}"),
                                source,
                            });
                        }
                    };
                    for r in list.resources {
                        served.insert((group.clone(), r.name), !r.namespaced);
                    }
                }
            }
        }
    }
    for w in &scenario.webhooks {
        for (i, rule) in w.rules.iter().enumerate() {
            if let Some(why) = rule_refusal(rule, |g, r| {
                served
                    .get(&(g.to_string(), r.to_string()))
                    .copied()
                    .unwrap_or(false)
            }) {
                return Ok(Some(rule_refusal_text(scenario, &w.name, i, rule, &why)));
            }
        }
    }
    Ok(None)
}

async fn served_versions(client: &kube::Client, group: &str) -> Result<Vec<String>, ClusterError> {
    let err = |source| ClusterError::Api {
        action: format!("discovering the versions of API group `{group}`"),
        source,
    };
    if group.is_empty() {
        return Ok(client.list_core_api_versions().await.map_err(err)?.versions);
    }
    let groups = client.list_api_groups().await.map_err(err)?;
    Ok(groups
        .groups
        .into_iter()
        .filter(|g| g.name == group)
        .flat_map(|g| g.versions.into_iter().map(|v| v.version))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_versions_with_vendor_suffixes() {
        assert_eq!(
            parse_server_version("v1.30.7-aks.1"),
            Some(Version::new(1, 30, 7))
        );
        assert_eq!(
            parse_server_version("v1.29.15"),
            Some(Version::new(1, 29, 15))
        );
        assert_eq!(
            parse_server_version("v1.31.2+k3s1"),
            Some(Version::new(1, 31, 2))
        );
        assert_eq!(parse_server_version("garbage"), None);
    }

    fn rule(json: serde_json::Value) -> crate::scenario::Rule {
        serde_json::from_value(json).unwrap()
    }

    fn known(g: &str, r: &str) -> bool {
        KNOWN_CLUSTER_SCOPED.contains(&(g, r))
    }

    #[test]
    fn rules_that_reach_beyond_the_run_namespace_are_refused() {
        let refused = |j: serde_json::Value| rule_refusal(&rule(j), known);
        let ok = serde_json::json!({"operations": ["DELETE"], "apiGroups": ["apps", ""], "apiVersions": ["v1"], "resources": ["replicasets", "pods", "pods/status"]});
        assert_eq!(refused(ok), None);
        let why = refused(serde_json::json!({"operations": ["DELETE"], "apiGroups": ["*"], "apiVersions": ["v1"], "resources": ["pods"]})).unwrap();
        assert!(why.contains("`*` in apiGroups"), "{why}");
        let why = refused(serde_json::json!({"operations": ["DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["*"]})).unwrap();
        assert!(why.contains("`*` in resources"), "{why}");
        let why = refused(serde_json::json!({"operations": ["DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["*/status"]})).unwrap();
        assert!(why.contains("`*/status` in resources"), "{why}");
        let why = refused(serde_json::json!({"operations": ["DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Cluster"})).unwrap();
        assert!(why.contains("scope: Cluster"), "{why}");
        let why = refused(serde_json::json!({"operations": ["DELETE"], "apiGroups": ["", "apps"], "apiVersions": ["v1"], "resources": ["pods", "namespaces", "nodes/status"]})).unwrap();
        assert!(
            why.contains("namespaces, nodes are cluster-scoped (the default `*` scope"),
            "{why}"
        );
        let why = refused(serde_json::json!({"operations": ["CREATE"], "apiGroups": ["apiextensions.k8s.io"], "apiVersions": ["v1"], "resources": ["customresourcedefinitions"], "scope": "*"})).unwrap();
        assert!(
            why.contains(
                "customresourcedefinitions.apiextensions.k8s.io is cluster-scoped (`*` scope"
            ),
            "{why}"
        );
        // scope: Namespaced never matches a cluster-scoped object.
        assert_eq!(
            refused(
                serde_json::json!({"operations": ["DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods", "namespaces"], "scope": "Namespaced"})
            ),
            None
        );
        // The same resource name in another group is not the built-in one.
        assert_eq!(
            refused(
                serde_json::json!({"operations": ["DELETE"], "apiGroups": ["example.com"], "apiVersions": ["v1"], "resources": ["nodes"]})
            ),
            None
        );
    }

    #[test]
    fn a_refused_rule_names_the_file_webhook_and_rule() {
        let text = "name: wild\ndescription: d\nchart: {path: charts/preflight-test}\nwebhooks:\n  - name: guard\n    kind: validating\n    rules:\n      - {operations: [DELETE], apiGroups: [apps], apiVersions: [v1], resources: [replicasets]}\n      - {operations: [DELETE], apiGroups: [\"\"], apiVersions: [v1], resources: [namespaces]}\nsteps:\n  - helm: {action: install}\n";
        let s = crate::scenario::parse(text, "/tmp/wild.yaml", None).unwrap();
        let why = refusal(&s, Some("10.0.0.1".parse().unwrap())).unwrap();
        assert!(
            why.starts_with("scenario file /tmp/wild.yaml, webhook `guard`, rule 2 (apiGroups: [\"\"], resources: [namespaces], scope: *): namespaces is cluster-scoped"),
            "{why}"
        );
    }

    #[test]
    fn session_runs() {
        assert!(in_session("abcde0", "abcde"));
        assert!(in_session("abcde12", "abcde"));
        assert!(!in_session("abcde", "abcde"));
        assert!(!in_session("abcdef0", "abcde"));
        assert!(!in_session("xbcde0", "abcde"));
    }

    #[test]
    fn whole_cluster_steps_are_refused() {
        for name in ["incident-conversion", "incident-conversion-upgrade"] {
            let s = crate::scenario::embedded_named(name).unwrap();
            assert!(
                refusal(&s, Some("10.0.0.1".parse().unwrap())).is_some(),
                "{name}"
            );
        }
        let admission = crate::scenario::embedded_named("incident-admission").unwrap();
        assert!(refusal(&admission, Some("10.0.0.1".parse().unwrap())).is_none());
        let why = refusal(&admission, None).unwrap();
        assert!(why.contains("--webhook-address"), "{why}");
    }
}
