//! `preflight capture`: reads a live cluster (and only reads) and writes a twin.
//!
//! A twin is a directory a platform team can commit and replay in CI without any
//! credential to the live cluster: the deployed revision of each Helm release (its
//! chart and the user-supplied values, as Helm stored them), and the cluster's
//! admission surface (CRDs, webhook configurations, ValidatingAdmissionPolicies and
//! their bindings, APIServices, namespaces with their labels, the releases'
//! PodDisruptionBudgets). Every request is a GET or a LIST: a read the credentials do
//! not allow is recorded in `capture.json` and the capture goes on, so a partial
//! twin says what it lacks instead of silently looking complete.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::ApiResource;
use serde_json::Value;

use super::manifest::{
    self, AksFacts, CaptureManifest, CapturedConfig, CapturedRelease, Enforcer, Lacked, Read,
    RedactionEntry,
};
use super::{health, nodes, release, stored, values};
use crate::progress::Progress;

/// The label and type Helm 3 gives its release records.
const HELM_OWNER: &str = "owner=helm";
const HELM_SECRET_TYPE: &str = "type=helm.sh/release.v1";
/// AKS's admissions enforcer leaves a configuration alone when it carries this.
pub const AKS_ENFORCER_DISABLED: &str = "admissions.enforcer/disabled";

/// What to capture and where to write it.
#[derive(Clone, Debug, Default)]
pub struct CaptureOptions {
    pub out: PathBuf,
    /// Only releases in these namespaces (empty: every namespace).
    pub namespaces: Vec<String>,
    /// Only these releases, as `NS/NAME` (empty: every release).
    pub releases: Vec<(String, String)>,
    /// Keep user-supplied values as they are (default: redact credentials).
    pub keep_values: bool,
    /// Treat the cluster as AKS even when its server URL does not say so.
    pub aks: bool,
    /// The API server URL the kubeconfig points at (AKS is recognised by it).
    pub server_url: String,
    /// At most this many stored objects of each CRD are kept (the counts say how many
    /// there were).
    pub max_custom_resources: usize,
}

/// Why a capture could not be written (reads the cluster refuses are not errors:
/// they are recorded in the manifest).
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: already exists and is not an empty directory (choose another --out, or remove it)", .0.display())]
    OutNotEmpty(PathBuf),
    #[error("reading the cluster's version: {0}")]
    Version(#[source] kube::Error),
    #[error("release {namespace}/{name}: {source}")]
    Release {
        namespace: String,
        name: String,
        source: release::ReleaseError,
    },
    #[error("encoding {what}: {message}")]
    Encode { what: String, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CaptureError + '_ {
    move |source| CaptureError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A cluster-scoped kind the twin keeps, with the versions to try (newest first).
struct Surface {
    group: &'static str,
    versions: &'static [&'static str],
    kind: &'static str,
    plural: &'static str,
}

const SURFACE: &[Surface] = &[
    Surface {
        group: "apiextensions.k8s.io",
        versions: &["v1"],
        kind: "CustomResourceDefinition",
        plural: "customresourcedefinitions",
    },
    Surface {
        group: "admissionregistration.k8s.io",
        versions: &["v1"],
        kind: "ValidatingWebhookConfiguration",
        plural: "validatingwebhookconfigurations",
    },
    Surface {
        group: "admissionregistration.k8s.io",
        versions: &["v1"],
        kind: "MutatingWebhookConfiguration",
        plural: "mutatingwebhookconfigurations",
    },
    Surface {
        group: "admissionregistration.k8s.io",
        versions: &["v1", "v1beta1"],
        kind: "ValidatingAdmissionPolicy",
        plural: "validatingadmissionpolicies",
    },
    Surface {
        group: "admissionregistration.k8s.io",
        versions: &["v1", "v1beta1"],
        kind: "ValidatingAdmissionPolicyBinding",
        plural: "validatingadmissionpolicybindings",
    },
    Surface {
        group: "apiregistration.k8s.io",
        versions: &["v1"],
        kind: "APIService",
        plural: "apiservices",
    },
];

/// Reads the cluster behind `client` and writes the twin into `opts.out`. A capture
/// that fails part-way removes what it wrote (the directory was new or empty).
pub async fn capture(
    client: &kube::Client,
    opts: &CaptureOptions,
    progress: &Progress,
) -> Result<CaptureManifest, CaptureError> {
    prepare_out(&opts.out)?;
    let result = capture_into(client, opts, progress).await;
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&opts.out);
    }
    result
}

async fn capture_into(
    client: &kube::Client,
    opts: &CaptureOptions,
    progress: &Progress,
) -> Result<CaptureManifest, CaptureError> {
    let version = client
        .apiserver_version()
        .await
        .map_err(CaptureError::Version)?
        .git_version;
    let mut m = CaptureManifest {
        preflight_version: env!("CARGO_PKG_VERSION").to_string(),
        captured_at: crate::now_rfc3339(),
        server: crate::redact::redact(&opts.server_url),
        kubernetes_version: version,
        aks: aks_facts(&opts.server_url, opts.aks),
        values_kept: opts.keep_values,
        ..Default::default()
    };

    let mut step = progress.step("capture: the admission surface");
    // The live objects, for the health checks and stored objects read after.
    let mut live_configs: Vec<(health::HookKind, DynamicObject)> = Vec::new();
    let mut live_crds: Vec<DynamicObject> = Vec::new();
    for s in SURFACE {
        step.detail(s.plural);
        let Some(objects) = list_surface(client, s, &mut m).await else {
            continue;
        };
        let dir = opts.out.join("cluster").join(s.plural);
        for mut o in objects {
            let name = o.metadata.name.clone().unwrap_or_default();
            // Only aggregated APIs (served by a Service) are part of the surface; the
            // API server's own local APIServices come back by themselves. Their
            // availability is kept: an unavailable one stalls discovery and the
            // garbage collector.
            let aggregated = s.kind == "APIService"
                && o.data
                    .pointer("/spec/service")
                    .is_some_and(|v| !v.is_null());
            if s.kind == "APIService" && !aggregated {
                continue;
            }
            let status = aggregated.then(|| o.data.get("status").cloned()).flatten();
            if s.plural.ends_with("webhookconfigurations") {
                m.configurations
                    .push(configuration_facts(s.kind, &o, &m.aks));
                let kind = if s.kind.starts_with("Validating") {
                    health::HookKind::Validating
                } else {
                    health::HookKind::Mutating
                };
                live_configs.push((kind, o.clone()));
            }
            if s.kind == "CustomResourceDefinition" {
                live_crds.push(o.clone());
            }
            clean(&mut o.data, &mut o.metadata);
            if let (Some(status), Some(data)) = (status, o.data.as_object_mut()) {
                data.insert("status".into(), status);
            }
            let path = dir.join(format!("{}.yaml", file_name(&name)));
            write_yaml(&path, &to_value(&o, s.kind)?)?;
        }
    }
    step.done(format!(
        "{} types read",
        m.reads.iter().filter(|r| r.count.is_some()).count()
    ));

    let step = progress.step("capture: namespaces");
    capture_namespaces(client, opts, &mut m).await?;
    step.done("");

    let mut step = progress.step("capture: Helm releases");
    let records = release_records(client, opts, &mut m).await;
    let total = records.len();
    for (i, ((ns, name), record)) in records.into_iter().enumerate() {
        step.detail(format!("{}/{} {ns}/{name}", i + 1, total));
        let from = record.object.clone();
        match write_release(&opts.out, &ns, &name, record, opts.keep_values) {
            Ok((release, redactions)) => {
                m.redactions.extend(redactions);
                m.releases.push(release);
            }
            // A record Helm itself could not read back: said, and the others go on.
            Err(e @ CaptureError::Release { .. }) => m.lacked.push(Lacked {
                what: format!("release {ns}/{name} ({from})"),
                error: e.to_string(),
            }),
            Err(e) => return Err(e),
        }
    }
    step.done(format!("{} releases", m.releases.len()));

    capture_pdbs(client, opts, &mut m).await?;

    let counts = capture_stored(client, opts, &live_crds, &mut m, progress).await?;
    let step = progress.step("capture: webhook health (reads only)");
    m.webhook_health = health::admission(client, &live_configs).await;
    m.webhook_health
        .extend(health::conversion(client, &live_crds, &counts).await);
    let failing = m
        .webhook_health
        .iter()
        .filter(|h| h.health.is_failing())
        .count();
    step.done(format!(
        "{} webhooks, {failing} failing now",
        m.webhook_health.len()
    ));
    capture_nodes(client, opts, &mut m).await?;

    m.releases
        .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    manifest::write(&opts.out, &m)?;
    Ok(m)
}

/// The output directory must be new or empty: a capture never mixes with old files.
fn prepare_out(out: &Path) -> Result<(), CaptureError> {
    if out.exists() {
        let mut entries = std::fs::read_dir(out).map_err(io(out))?;
        if entries.next().is_some() {
            return Err(CaptureError::OutNotEmpty(out.to_path_buf()));
        }
    }
    std::fs::create_dir_all(out).map_err(io(out))
}

/// AKS, as the server URL (or the user) says.
fn aks_facts(server_url: &str, forced: bool) -> AksFacts {
    let host = server_url
        .split("://")
        .nth(1)
        .unwrap_or(server_url)
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    let by_url = host.ends_with(".azmk8s.io");
    AksFacts {
        detected: by_url || forced,
        by: if by_url {
            Some(format!("server host `{host}` ends in azmk8s.io"))
        } else if forced {
            Some("--aks".into())
        } else {
            None
        },
    }
}

/// Lists one kind of the admission surface at the first version the cluster serves.
/// `None` when it is not served or not readable (recorded in `m`).
async fn list_surface(
    client: &kube::Client,
    s: &Surface,
    m: &mut CaptureManifest,
) -> Option<Vec<DynamicObject>> {
    let mut last = String::new();
    for v in s.versions {
        let ar = ApiResource {
            group: s.group.into(),
            version: (*v).into(),
            api_version: format!("{}/{v}", s.group),
            kind: s.kind.into(),
            plural: s.plural.into(),
        };
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        match list_all(&api).await {
            Ok(list) => {
                m.reads.push(Read {
                    what: s.plural.into(),
                    api_version: ar.api_version,
                    count: Some(list.len()),
                });
                return Some(list);
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {
                last = format!("{}/{v}: not served", s.group);
            }
            Err(e) => {
                m.lacked.push(Lacked {
                    what: format!("list {}", s.plural),
                    error: crate::redact::redact(&e.to_string()),
                });
                return None;
            }
        }
    }
    m.reads.push(Read {
        what: s.plural.into(),
        api_version: last,
        count: None,
    });
    None
}

/// Every item of a list, page by page (an expired `continue` token is recovered from:
/// see [`crate::pager`]).
pub(super) async fn list_all<K>(api: &Api<K>) -> Result<Vec<K>, kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    list_all_with(api, ListParams::default()).await
}

pub(super) async fn list_all_with<K>(
    api: &Api<K>,
    params: ListParams,
) -> Result<Vec<K>, kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    crate::pager::list_all(api, &params).await
}

/// What a webhook configuration tells about AKS's admissions enforcer.
fn configuration_facts(kind: &str, o: &DynamicObject, aks: &AksFacts) -> CapturedConfig {
    let disabled = o
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(AKS_ENFORCER_DISABLED))
        .is_some_and(|v| v == "true");
    let webhooks = o
        .data
        .get("webhooks")
        .and_then(Value::as_array)
        .map(|w| {
            w.iter()
                .filter_map(|h| h.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    CapturedConfig {
        kind: kind.into(),
        name: o.metadata.name.clone().unwrap_or_default(),
        webhooks,
        aks_enforcer: match (aks.detected, disabled) {
            (false, _) => Enforcer::NotAks,
            (true, true) => Enforcer::Disabled,
            (true, false) => Enforcer::Applies,
        },
    }
}

/// Drops what belongs to the live object and not to its definition: identity, status,
/// managed fields, CA bundles (replay supplies its own), and the last-applied copy
/// (it repeats the object, credentials and all).
fn clean(data: &mut Value, meta: &mut kube::core::ObjectMeta) {
    meta.uid = None;
    meta.resource_version = None;
    meta.generation = None;
    meta.creation_timestamp = None;
    meta.managed_fields = None;
    meta.self_link = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
        if a.is_empty() {
            meta.annotations = None;
        }
    }
    if let Some(o) = data.as_object_mut() {
        o.remove("status");
    }
    strip_ca_bundles(data);
}

fn strip_ca_bundles(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.remove("caBundle");
            map.values_mut().for_each(strip_ca_bundles);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_ca_bundles),
        _ => {}
    }
}

fn to_value(o: &DynamicObject, kind: &str) -> Result<Value, CaptureError> {
    serde_json::to_value(o).map_err(|e| CaptureError::Encode {
        what: kind.into(),
        message: e.to_string(),
    })
}

/// A Kubernetes name as a file name (names may contain ':' in some kinds).
fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub(super) fn write_yaml(path: &Path, value: &Value) -> Result<(), CaptureError> {
    let text = serde_saphyr::to_string(value).map_err(|e| CaptureError::Encode {
        what: path.display().to_string(),
        message: e.to_string(),
    })?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    std::fs::write(path, text).map_err(io(path))
}

/// Every namespace's name and labels (webhooks select namespaces by label).
async fn capture_namespaces(
    client: &kube::Client,
    opts: &CaptureOptions,
    m: &mut CaptureManifest,
) -> Result<(), CaptureError> {
    let api: Api<Namespace> = Api::all(client.clone());
    match list_all(&api).await {
        Ok(list) => {
            m.reads.push(Read {
                what: "namespaces".into(),
                api_version: "v1".into(),
                count: Some(list.len()),
            });
            let items: Vec<Value> = list
                .into_iter()
                .map(|n| {
                    serde_json::json!({
                        "name": n.metadata.name.unwrap_or_default(),
                        "labels": n.metadata.labels.unwrap_or_default(),
                    })
                })
                .collect();
            write_yaml(
                &opts.out.join("cluster/namespaces.yaml"),
                &Value::Array(items),
            )?;
        }
        Err(e) => m.lacked.push(Lacked {
            what: "list namespaces".into(),
            error: crate::redact::redact(&e.to_string()),
        }),
    }
    Ok(())
}

/// One stored release revision.
struct Record {
    driver: &'static str,
    revision: u64,
    status: String,
    stored: Vec<u8>,
    object: String,
}

/// The deployed revision of every release in scope, from Helm's own storage (Secrets,
/// and ConfigMaps for releases stored with that driver).
async fn release_records(
    client: &kube::Client,
    opts: &CaptureOptions,
    m: &mut CaptureManifest,
) -> BTreeMap<(String, String), Record> {
    let scopes: Vec<Option<&str>> = if opts.namespaces.is_empty() {
        vec![None]
    } else {
        opts.namespaces.iter().map(|n| Some(n.as_str())).collect()
    };
    let mut found: Vec<(String, String, Record)> = Vec::new();
    for scope in scopes {
        let where_ = scope.map_or("every namespace".to_string(), |n| format!("namespace {n}"));
        let secrets: Api<Secret> = match scope {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let params = ListParams::default()
            .labels(HELM_OWNER)
            .fields(HELM_SECRET_TYPE);
        match list_all_with(&secrets, params).await {
            Ok(list) => {
                m.reads.push(Read {
                    what: format!("Helm release Secrets in {where_}"),
                    api_version: "v1".into(),
                    count: Some(list.len()),
                });
                for s in list {
                    let stored = s
                        .data
                        .as_ref()
                        .and_then(|d| d.get("release"))
                        .map(|b| b.0.clone());
                    if let Some(r) = record_of(&s.metadata, "secret", stored) {
                        found.push(r);
                    }
                }
            }
            Err(e) => m.lacked.push(Lacked {
                what: format!("list Helm release Secrets in {where_}"),
                error: crate::redact::redact(&e.to_string()),
            }),
        }
        let maps: Api<ConfigMap> = match scope {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        match list_all_with(&maps, ListParams::default().labels(HELM_OWNER)).await {
            Ok(list) => {
                m.reads.push(Read {
                    what: format!("Helm release ConfigMaps in {where_}"),
                    api_version: "v1".into(),
                    count: Some(list.len()),
                });
                for c in list {
                    let stored = c
                        .data
                        .as_ref()
                        .and_then(|d| d.get("release"))
                        .map(|s| s.as_bytes().to_vec());
                    if let Some(r) = record_of(&c.metadata, "configmap", stored) {
                        found.push(r);
                    }
                }
            }
            Err(e) => m.lacked.push(Lacked {
                what: format!("list Helm release ConfigMaps in {where_}"),
                error: crate::redact::redact(&e.to_string()),
            }),
        }
    }
    pick_deployed(found, &opts.releases)
}

/// A Helm record's identity from its labels (`name`, `version`, `status`).
fn record_of(
    meta: &kube::core::ObjectMeta,
    driver: &'static str,
    stored: Option<Vec<u8>>,
) -> Option<(String, String, Record)> {
    let labels = meta.labels.as_ref()?;
    let name = labels.get("name")?.clone();
    let revision = labels.get("version")?.parse().ok()?;
    Some((
        meta.namespace.clone().unwrap_or_default(),
        name,
        Record {
            driver,
            revision,
            status: labels.get("status").cloned().unwrap_or_default(),
            stored: stored?,
            object: format!(
                "{} {}/{}",
                if driver == "secret" {
                    "Secret"
                } else {
                    "ConfigMap"
                },
                meta.namespace.as_deref().unwrap_or_default(),
                meta.name.as_deref().unwrap_or_default()
            ),
        },
    ))
}

/// Per release, the deployed revision (the newest one when several claim it), else its
/// newest revision whatever its status; only the releases asked for.
fn pick_deployed(
    found: Vec<(String, String, Record)>,
    only: &[(String, String)],
) -> BTreeMap<(String, String), Record> {
    let mut out: BTreeMap<(String, String), Record> = BTreeMap::new();
    for (ns, name, r) in found {
        if !only.is_empty() && !only.iter().any(|(n, x)| n == &ns && x == &name) {
            continue;
        }
        let key = (ns, name);
        let better = match out.get(&key) {
            None => true,
            Some(have) => {
                let rank = |r: &Record| (r.status == "deployed", r.revision);
                rank(&r) > rank(have)
            }
        };
        if better {
            out.insert(key, r);
        }
    }
    out
}

/// Decodes one release and writes its chart and values under `releases/NS/NAME/`.
fn write_release(
    out: &Path,
    ns: &str,
    name: &str,
    record: Record,
    keep_values: bool,
) -> Result<(CapturedRelease, Vec<RedactionEntry>), CaptureError> {
    let failed = |source| CaptureError::Release {
        namespace: ns.to_string(),
        name: name.to_string(),
        source,
    };
    let mut rel = release::decode(&record.stored).map_err(failed)?;
    let rel_dir = PathBuf::from("releases").join(ns).join(name);
    let chart_dir = rel_dir.join("chart");
    let values_file = rel_dir.join("values.yaml");
    let mut redactions = Vec::new();
    if !keep_values {
        for r in values::redact(&mut rel.config) {
            redactions.push(RedactionEntry {
                file: values_file.display().to_string(),
                path: r.path,
                reason: r.reason,
            });
        }
    }
    let chart_defaults = if keep_values {
        Vec::new()
    } else {
        values::redact(&mut rel.chart.values)
    };
    let origin = release::write_chart(&rel, &out.join(&chart_dir)).map_err(io(&chart_dir))?;
    // A rendered chart has no default values: nothing of them was written.
    if origin == release::ChartOrigin::Chart {
        redactions.extend(chart_defaults.into_iter().map(|r| RedactionEntry {
            file: chart_dir.join("values.yaml").display().to_string(),
            path: r.path,
            reason: r.reason,
        }));
    }
    if !keep_values {
        redactions.extend(super::scrub::scrub_dir(out, &chart_dir)?);
    }
    write_yaml(&out.join(&values_file), &rel.config)?;
    Ok((
        CapturedRelease {
            namespace: ns.to_string(),
            name: name.to_string(),
            revision: record.revision,
            status: record.status,
            driver: record.driver.to_string(),
            from: record.object,
            chart: format!("{}-{}", rel.chart.metadata.name, rel.chart.metadata.version),
            chart_dir: chart_dir.display().to_string(),
            values: values_file.display().to_string(),
            rendered: match origin {
                release::ChartOrigin::Chart => None,
                release::ChartOrigin::Rendered { reason } => Some(reason),
            },
            manifest_kinds: manifest_kinds(&rel.manifest),
        },
        redactions,
    ))
}

/// `Kind/name` of every object a release's manifest holds (what replay expects it to
/// create, and what decides which webhooks matter). A document that does not parse
/// names no object and is skipped: the capture's chart files keep it, and the replay's
/// own `helm install` is what reads it again.
fn manifest_kinds(manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    for doc in crate::yaml_stream::documents(manifest) {
        let Ok(v) = doc.parsed else {
            continue;
        };
        let kind = v.get("kind").and_then(Value::as_str);
        let name = v.pointer("/metadata/name").and_then(Value::as_str);
        if let (Some(k), Some(n)) = (kind, name) {
            out.push(format!("{k}/{n}"));
        }
    }
    out.sort();
    out
}

/// Every CRD's stored objects (metadata only, at most `opts.max_custom_resources`
/// each); returns each CRD's object count (the conversion health probe needs objects).
async fn capture_stored(
    client: &kube::Client,
    opts: &CaptureOptions,
    crds: &[DynamicObject],
    m: &mut CaptureManifest,
    progress: &Progress,
) -> Result<BTreeMap<String, usize>, CaptureError> {
    let mut step = progress.step("capture: stored custom resources (metadata only)");
    let mut counts = BTreeMap::new();
    let releases: std::collections::BTreeSet<(String, String)> = m
        .releases
        .iter()
        .map(|r| (r.namespace.clone(), r.name.clone()))
        .collect();
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        step.detail(&name);
        let value = to_value(crd, "CustomResourceDefinition")?;
        match stored::capture(client, &value, opts.max_custom_resources, &releases).await {
            Ok(Some(got)) => {
                counts.insert(name, got.all);
                if got.objects.total == 0 {
                    continue;
                }
                let (count, redactions) = stored::write(&opts.out, &got.objects, got.redacted)?;
                m.reads.push(Read {
                    what: format!("{} (metadata)", count.crd),
                    api_version: count.api_version.clone(),
                    count: Some(got.all),
                });
                m.redactions.extend(redactions);
                m.custom_resources.push(count);
            }
            Ok(None) => {}
            Err(e) => m.lacked.push(Lacked {
                what: format!("list {name} objects"),
                error: crate::redact::redact(&e.to_string()),
            }),
        }
    }
    let total: usize = m.custom_resources.iter().map(|c| c.total).sum();
    step.done(format!(
        "{total} objects of {} CRDs",
        m.custom_resources.len()
    ));
    Ok(counts)
}

/// The node pools (see [`nodes`]), written to `cluster/nodepools.yaml`.
async fn capture_nodes(
    client: &kube::Client,
    opts: &CaptureOptions,
    m: &mut CaptureManifest,
) -> Result<(), CaptureError> {
    let api: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    match list_all(&api).await {
        Ok(list) => {
            m.reads.push(Read {
                what: "nodes".into(),
                api_version: "v1".into(),
                count: Some(list.len()),
            });
            m.node_pools = nodes::pools(&list);
            write_yaml(
                &opts.out.join(NODE_POOLS_FILE),
                &nodes::to_value(&m.node_pools),
            )?;
        }
        Err(e) => m.lacked.push(Lacked {
            what: "list nodes".into(),
            error: crate::redact::redact(&e.to_string()),
        }),
    }
    Ok(())
}

/// Where the node pools are written, relative to the twin.
pub const NODE_POOLS_FILE: &str = "cluster/nodepools.yaml";
/// Where the stored custom resources are written, relative to the twin.
pub const CUSTOM_RESOURCES_DIR: &str = "cluster/customresources";

/// PodDisruptionBudgets that belong to a captured release (Helm's ownership
/// annotations say which).
async fn capture_pdbs(
    client: &kube::Client,
    opts: &CaptureOptions,
    m: &mut CaptureManifest,
) -> Result<(), CaptureError> {
    let namespaces: std::collections::BTreeSet<String> =
        m.releases.iter().map(|r| r.namespace.clone()).collect();
    for ns in namespaces {
        let api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
        let list = match list_all(&api).await {
            Ok(l) => l,
            Err(e) => {
                m.lacked.push(Lacked {
                    what: format!("list poddisruptionbudgets in namespace {ns}"),
                    error: crate::redact::redact(&e.to_string()),
                });
                continue;
            }
        };
        m.reads.push(Read {
            what: format!("poddisruptionbudgets in namespace {ns}"),
            api_version: "policy/v1".into(),
            count: Some(list.len()),
        });
        for mut pdb in list {
            let ann = pdb.metadata.annotations.clone().unwrap_or_default();
            let owner = ann.get("meta.helm.sh/release-name");
            let owner_ns = ann.get("meta.helm.sh/release-namespace");
            let ours = m
                .releases
                .iter()
                .any(|r| Some(&r.name) == owner && owner_ns.is_none_or(|o| o == &r.namespace));
            if !ours {
                continue;
            }
            let name = pdb.metadata.name.clone().unwrap_or_default();
            let mut data = Value::Null;
            clean(&mut data, &mut pdb.metadata);
            pdb.status = None;
            let value = serde_json::to_value(&pdb).map_err(|e| CaptureError::Encode {
                what: "PodDisruptionBudget".into(),
                message: e.to_string(),
            })?;
            write_yaml(
                &opts
                    .out
                    .join("cluster/poddisruptionbudgets")
                    .join(&ns)
                    .join(format!("{}.yaml", file_name(&name))),
                &value,
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aks_is_recognised_by_its_server_host_only() {
        assert!(aks_facts("https://shop-dns-1a2b.hcp.westeurope.azmk8s.io:443", false).detected);
        assert!(!aks_facts("https://azmk8s.io.example.com:6443", false).detected);
        assert!(!aks_facts("https://127.0.0.1:6443", false).detected);
        let forced = aks_facts("https://127.0.0.1:6443", true);
        assert!(forced.detected);
        assert_eq!(forced.by.as_deref(), Some("--aks"));
    }

    #[test]
    fn the_deployed_revision_wins_over_newer_failed_ones() {
        let rec = |revision, status: &str| Record {
            driver: "secret",
            revision,
            status: status.into(),
            stored: vec![],
            object: String::new(),
        };
        let found = vec![
            ("a".into(), "web".into(), rec(3, "superseded")),
            ("a".into(), "web".into(), rec(4, "deployed")),
            ("a".into(), "web".into(), rec(5, "failed")),
            ("b".into(), "db".into(), rec(1, "failed")),
            ("b".into(), "db".into(), rec(2, "pending-upgrade")),
        ];
        let picked = pick_deployed(found, &[]);
        assert_eq!(picked[&("a".into(), "web".into())].revision, 4);
        assert_eq!(picked[&("b".into(), "db".into())].revision, 2);
        let only = pick_deployed(
            vec![("a".into(), "web".into(), rec(1, "deployed"))],
            &[("b".into(), "web".into())],
        );
        assert!(only.is_empty());
    }

    #[test]
    fn cleaning_drops_identity_status_and_ca_bundles() {
        let mut meta = kube::core::ObjectMeta {
            name: Some("x".into()),
            uid: Some("u".into()),
            resource_version: Some("1".into()),
            annotations: Some(
                [(
                    "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                    "{}".to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        };
        let mut data = serde_json::json!({
            "status": {"x": 1},
            "webhooks": [{"name": "a", "clientConfig": {"caBundle": "LS0t", "url": "https://x"}}],
        });
        clean(&mut data, &mut meta);
        assert_eq!(meta.uid, None);
        assert_eq!(meta.annotations, None);
        assert_eq!(
            data,
            serde_json::json!({"webhooks": [{"name": "a", "clientConfig": {"url": "https://x"}}]})
        );
    }

    #[test]
    fn manifest_kinds_reads_every_document() {
        let m = "---\n# Source: c/templates/a.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n";
        assert_eq!(manifest_kinds(m), vec!["ConfigMap/a", "Deployment/web"]);
        let broken = "kind: ConfigMap\nmetadata:\n  name: a\n---\nkind: [x\n--- # b\nkind: Secret\nmetadata:\n  name: b\n";
        assert_eq!(manifest_kinds(broken), vec!["ConfigMap/a", "Secret/b"]);
    }
}
