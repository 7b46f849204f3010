//! The audit's checks, one function per area. Each adds findings to the context and
//! says in `skipped` what it could not look at.

use std::collections::BTreeSet;
use std::io::Read;

use base64::Engine;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PropagationPolicy};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::Value;

use super::{AuditOptions, Finding, Severity, removed_apis};
use crate::exercise::dry_run::{GC_USER, classify};
use crate::snapshot::{self, SnapshotScope};

/// Resources the garbage collector and the namespace controller delete.
pub const GC_RESOURCES: &[&str] = &[
    "pods",
    "replicasets",
    "deployments",
    "statefulsets",
    "daemonsets",
    "jobs",
    "cronjobs",
    "controllerrevisions",
    "endpointslices",
    "persistentvolumeclaims",
    "namespaces",
];

/// The seed's triage, for webhooks that block deletes.
const WEBHOOK_TRIAGE: &str = "Set the webhook's failurePolicy to Ignore (or fix or remove it), clean up leftovers with `helm delete --no-hooks <release>`, then restore failurePolicy: Fail. Keep timeoutSeconds <= 5, exclude kube-system with a namespaceSelector, and exempt the control plane's service accounts with matchConditions.";

pub struct Context {
    pub client: kube::Client,
    /// A client impersonating the garbage collector, when the user may impersonate.
    pub gc_client: Option<kube::Client>,
    pub opts: AuditOptions,
    pub findings: Vec<Finding>,
    pub skipped: Vec<String>,
}

impl Context {
    fn add(
        &mut self,
        check: &str,
        severity: Severity,
        object: String,
        title: String,
        evidence: Vec<String>,
        fix: &str,
    ) {
        self.findings.push(Finding {
            check: check.into(),
            severity,
            object,
            title,
            evidence,
            fix: fix.into(),
        });
    }
}

fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

async fn list(
    client: &kube::Client,
    res: &ApiResource,
    lp: &ListParams,
) -> Result<Vec<Value>, kube::Error> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), res);
    Ok(api
        .list(lp)
        .await?
        .items
        .into_iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect())
}

fn forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(r) if r.code == 403)
}

/// The API's own message, without the client's debug dump.
fn short(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(r) => r.message.clone(),
        other => other.to_string(),
    }
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a namespace selector keeps the webhook away from kube-system.
pub fn spares_kube_system(selector: &Value) -> bool {
    const NAME: &str = "kubernetes.io/metadata.name";
    if let Some(name) = selector
        .pointer(&format!("/matchLabels/{}", NAME.replace('/', "~1")))
        .and_then(Value::as_str)
    {
        return name != "kube-system";
    }
    selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .is_some_and(|exprs| {
            exprs.iter().any(|e| {
                let values = strings(&e["values"]);
                e["key"] == NAME
                    && ((e["operator"] == "NotIn" && values.iter().any(|v| v == "kube-system"))
                        || (e["operator"] == "In" && !values.iter().any(|v| v == "kube-system")))
            })
        })
}

/// Admission webhooks: configuration risks, then live dry-run DELETEs as the garbage collector.
pub async fn webhooks(ctx: &mut Context) {
    let mut risky: Vec<(String, Vec<String>)> = Vec::new();
    for (kind, plural) in [
        (
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
        ),
        (
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
        ),
    ] {
        let configs = match list(
            &ctx.client,
            &ar("admissionregistration.k8s.io", "v1", kind, plural),
            &ListParams::default(),
        )
        .await
        {
            Ok(c) => c,
            Err(e) => {
                ctx.skipped
                    .push(format!("{kind}s not checked: {}", short(&e)));
                continue;
            }
        };
        for cfg in configs {
            let cfg_name = s(&cfg, "/metadata/name").to_string();
            for wh in cfg["webhooks"].as_array().cloned().unwrap_or_default() {
                let object = format!("{kind}/{cfg_name} webhook {}", s(&wh, "/name"));
                let fail = wh
                    .get("failurePolicy")
                    .and_then(Value::as_str)
                    .unwrap_or("Fail")
                    == "Fail";
                let mut gc_resources = BTreeSet::new();
                for rule in wh["rules"].as_array().cloned().unwrap_or_default() {
                    let ops = strings(&rule["operations"]);
                    if !ops.iter().any(|o| o == "DELETE" || o == "*") {
                        continue;
                    }
                    for r in strings(&rule["resources"]) {
                        let base = r.split('/').next().unwrap_or_default().to_string();
                        if base == "*" {
                            gc_resources.extend(GC_RESOURCES.iter().map(|g| g.to_string()));
                        } else if GC_RESOURCES.contains(&base.as_str()) {
                            gc_resources.insert(base);
                        }
                    }
                }
                let gc_resources: Vec<String> = gc_resources.into_iter().collect();
                if fail && !gc_resources.is_empty() {
                    ctx.add("webhook-fail-closed-on-gc-delete", Severity::High, object.clone(),
                        format!("failurePolicy Fail on DELETE of {}: if it breaks, the garbage collector's deletes fail and dependents are orphaned while `helm delete` exits 0", gc_resources.join(", ")),
                        vec![format!("rules: {}", wh["rules"])], WEBHOOK_TRIAGE);
                    if !wh.get("namespaceSelector").is_some_and(spares_kube_system) {
                        ctx.add("webhook-selects-kube-system", Severity::Medium, object.clone(),
                            "its namespaceSelector does not spare kube-system".into(),
                            vec![format!("namespaceSelector: {}", wh.get("namespaceSelector").cloned().unwrap_or(Value::Null))],
                            "Add a namespaceSelector with kubernetes.io/metadata.name NotIn [kube-system].");
                    }
                    let exempt = wh["matchConditions"]
                        .to_string()
                        .contains("system:serviceaccount:kube-system");
                    if !exempt {
                        ctx.add("webhook-no-control-plane-exemption", Severity::Low, object.clone(),
                            "no matchCondition exempts the control plane's service accounts (e.g. the garbage collector)".into(),
                            vec![], "Add a matchCondition such as `!request.userInfo.username.startsWith('system:serviceaccount:kube-system:')`.");
                    }
                    risky.push((object.clone(), gc_resources.clone()));
                }
                match wh.get("timeoutSeconds").and_then(Value::as_i64) {
                    None => ctx.add(
                        "webhook-timeout",
                        Severity::Medium,
                        object.clone(),
                        "timeoutSeconds is unset: the API server waits 10 s".into(),
                        vec![],
                        "Set timeoutSeconds to 5 or less.",
                    ),
                    Some(t) if t > 5 => ctx.add(
                        "webhook-timeout",
                        Severity::Medium,
                        object.clone(),
                        format!("timeoutSeconds is {t}: above 5 s"),
                        vec![],
                        "Set timeoutSeconds to 5 or less.",
                    ),
                    _ => {}
                }
                let effects = s(&wh, "/sideEffects");
                if effects == "Some" || effects == "Unknown" {
                    ctx.add("webhook-side-effects-break-dry-run", Severity::Medium, object.clone(), format!("sideEffects {effects}: every dry-run request it matches is rejected"), vec![], "Use sideEffects: None (or NoneOnDryRun) if the webhook has no side effects on dry runs.");
                }
                check_client_config(ctx, &object, &wh["clientConfig"], fail).await;
            }
        }
    }
    if ctx.opts.live {
        live_gc_deletes(ctx, &risky).await;
    }
}

async fn check_client_config(ctx: &mut Context, object: &str, cc: &Value, fail: bool) {
    if let Some(svc) = cc.get("service") {
        let (ns, name) = (s(svc, "/namespace"), s(svc, "/name"));
        let sev = if fail { Severity::High } else { Severity::Low };
        match list(
            &ctx.client,
            &ar("", "v1", "Service", "services"),
            &ListParams::default().fields(&format!("metadata.namespace={ns},metadata.name={name}")),
        )
        .await
        {
            Err(e) if forbidden(&e) => ctx
                .skipped
                .push(format!("webhook services not checked: {}", short(&e))),
            Err(e) => ctx
                .skipped
                .push(format!("service {ns}/{name}: {}", short(&e))),
            Ok(found) if found.is_empty() => ctx.add(
                "webhook-service-missing",
                sev,
                object.into(),
                format!("its Service {ns}/{name} does not exist: every call fails"),
                vec![],
                WEBHOOK_TRIAGE,
            ),
            Ok(_) => {
                let slices = list(
                    &ctx.client,
                    &ar("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
                    &ListParams::default().labels(&format!("kubernetes.io/service-name={name}")),
                )
                .await
                .unwrap_or_default();
                let ready = slices
                    .iter()
                    .filter(|sl| s(sl, "/metadata/namespace") == ns)
                    .flat_map(|sl| sl["endpoints"].as_array().cloned().unwrap_or_default())
                    .any(|e| {
                        e.pointer("/conditions/ready")
                            .and_then(Value::as_bool)
                            .unwrap_or(true)
                    });
                if !ready {
                    ctx.add(
                        "webhook-no-ready-endpoints",
                        sev,
                        object.into(),
                        format!("its Service {ns}/{name} has no ready endpoints: every call fails"),
                        vec![],
                        WEBHOOK_TRIAGE,
                    );
                }
            }
        }
    } else if let Some(url) = cc.get("url").and_then(Value::as_str) {
        ctx.add(
            "webhook-url-target",
            Severity::Low,
            object.into(),
            "it calls a URL: its health cannot be checked from the cluster".into(),
            vec![format!("url: {url}")],
            "Prefer a service reference, whose endpoints the cluster can report on.",
        );
    }
    if let Some(bundle) = cc.get("caBundle").and_then(Value::as_str) {
        check_ca_bundle(ctx, object, bundle);
    }
}

/// Expiry of the certificates in a caBundle.
fn check_ca_bundle(ctx: &mut Context, object: &str, bundle: &str) {
    let Ok(pem_bytes) = base64::engine::general_purpose::STANDARD.decode(bundle.trim()) else {
        ctx.add(
            "webhook-ca-invalid",
            Severity::High,
            object.into(),
            "its caBundle is not base64".into(),
            vec![],
            "Fix the caBundle.",
        );
        return;
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let window = now + ctx.opts.upgrade_window_days * 86_400;
    for pem in x509_parser::pem::Pem::iter_from_buffer(&pem_bytes).flatten() {
        let Ok(cert) = pem.parse_x509() else { continue };
        let not_after = cert.validity().not_after.timestamp();
        let subject = cert.subject().to_string();
        let when = time::OffsetDateTime::from_unix_timestamp(not_after)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        if not_after < now {
            ctx.add(
                "webhook-ca-expired",
                Severity::Critical,
                object.into(),
                format!("its CA certificate `{subject}` expired on {when}"),
                vec![],
                "Rotate the webhook's certificates and caBundle.",
            );
        } else if not_after < window {
            ctx.add("webhook-ca-expiring", Severity::High, object.into(), format!("its CA certificate `{subject}` expires on {when}, within the {}-day upgrade window", ctx.opts.upgrade_window_days), vec![], "Rotate the webhook's certificates before the upgrade.");
        }
    }
}

/// Would the garbage collector's DELETE be admitted right now? A dry-run DELETE of one
/// existing object of each risky resource, as the garbage collector.
async fn live_gc_deletes(ctx: &mut Context, risky: &[(String, Vec<String>)]) {
    let (client, as_user) = match &ctx.gc_client {
        Some(c) => (c.clone(), GC_USER.to_string()),
        None => {
            if !risky.is_empty() {
                ctx.skipped.push("impersonating the garbage collector is not allowed: live dry-run DELETEs were sent with your own identity".into());
            }
            (ctx.client.clone(), "you".to_string())
        }
    };
    let core = |kind: &str, plural: &str| ar("", "v1", kind, plural);
    let apps = |kind: &str, plural: &str| ar("apps", "v1", kind, plural);
    let mut tried = BTreeSet::new();
    for (webhook, resources) in risky {
        for r in resources {
            let res = match r.as_str() {
                "pods" => core("Pod", "pods"),
                "persistentvolumeclaims" => core("PersistentVolumeClaim", "persistentvolumeclaims"),
                "replicasets" => apps("ReplicaSet", "replicasets"),
                "deployments" => apps("Deployment", "deployments"),
                "statefulsets" => apps("StatefulSet", "statefulsets"),
                "daemonsets" => apps("DaemonSet", "daemonsets"),
                "jobs" => ar("batch", "v1", "Job", "jobs"),
                _ => continue,
            };
            let Ok(sample) = list(&ctx.client, &res, &ListParams::default().limit(20)).await else {
                continue;
            };
            let Some(obj) = sample
                .iter()
                .find(|o| s(o, "/metadata/namespace") != "kube-system")
                .or(sample.first())
            else {
                continue;
            };
            let (ns, name) = (
                s(obj, "/metadata/namespace").to_string(),
                s(obj, "/metadata/name").to_string(),
            );
            if !tried.insert((webhook.clone(), res.kind.clone(), ns.clone(), name.clone())) {
                continue;
            }
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &res);
            let dp = DeleteParams {
                dry_run: true,
                propagation_policy: Some(PropagationPolicy::Background),
                ..Default::default()
            };
            let (outcome, message) = classify(api.delete(&name, &dp).await.map(|_| ()));
            let evidence = vec![format!(
                "dry-run DELETE of {} {ns}/{name} as {as_user}: {outcome}{}",
                res.kind,
                if message.is_empty() {
                    String::new()
                } else {
                    format!(": {message}")
                }
            )];
            if outcome != "admitted" {
                ctx.add(
                    "gc-delete-refused-now",
                    Severity::Critical,
                    webhook.clone(),
                    format!(
                        "right now the garbage collector's DELETE of a {} is {outcome}",
                        res.kind
                    ),
                    evidence,
                    WEBHOOK_TRIAGE,
                );
            }
        }
    }
}

/// CRDs with webhook conversion: read their objects at every served version.
pub async fn conversion(ctx: &mut Context) {
    let crds = match list(
        &ctx.client,
        &ar(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
        ),
        &ListParams::default(),
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            ctx.skipped
                .push(format!("CRD conversion not checked: {}", short(&e)));
            return;
        }
    };
    let minor = ctx.opts.target.as_ref().map(|v| v.minor);
    for crd in crds
        .iter()
        .filter(|c| s(c, "/spec/conversion/strategy") == "Webhook")
    {
        let name = s(crd, "/metadata/name");
        let (group, plural, kind) = (
            s(crd, "/spec/group"),
            s(crd, "/spec/names/plural"),
            s(crd, "/spec/names/kind"),
        );
        for v in crd["spec"]["versions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|v| v["served"] == true)
        {
            let version = s(v, "/name");
            if let Err(e) = list(
                &ctx.client,
                &ar(group, version, kind, plural),
                &ListParams::default().limit(100),
            )
            .await
            {
                let consequence = match minor {
                    Some(m) if m >= 32 => "From Kubernetes 1.32 the garbage collector carries on for other types, but dependents of these objects are not collected.".to_string(),
                    _ => "Every upgrade restarts the controller manager; up to Kubernetes 1.31 its garbage collector then waits for every resource type and stops collecting while this one cannot be listed: Deployments' ReplicaSets and Pods are orphaned on every `helm delete`.".to_string(),
                };
                ctx.add("crd-conversion-failing", Severity::Critical, format!("CustomResourceDefinition/{name}"),
                    format!("listing {kind} at {group}/{version} fails: its conversion webhook is broken. {consequence}"),
                    vec![short(&e)], "Fix or remove the conversion webhook (or delete the objects that need conversion) before the upgrade.");
                break;
            }
        }
    }
}

/// APIServices that are unavailable.
pub async fn api_services(ctx: &mut Context) {
    let services = match list(
        &ctx.client,
        &ar("apiregistration.k8s.io", "v1", "APIService", "apiservices"),
        &ListParams::default(),
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            ctx.skipped
                .push(format!("APIServices not checked: {}", short(&e)));
            return;
        }
    };
    for svc in services {
        let available = svc["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Available"))
            .cloned();
        if let Some(c) = available.filter(|c| c["status"] != "True") {
            ctx.add(
                "apiservice-unavailable",
                Severity::High,
                format!("APIService/{}", s(&svc, "/metadata/name")),
                "unavailable: the garbage collector and namespace deletion stall on its resources"
                    .into(),
                vec![format!("{}: {}", s(&c, "/reason"), s(&c, "/message"))],
                "Fix the aggregated API server or remove the APIService.",
            );
        }
    }
}

/// Existing orphans, objects stuck in deletion, resource types that cannot be listed.
pub async fn objects(ctx: &mut Context) {
    let snap = match snapshot::take(&ctx.client, &SnapshotScope::default()).await {
        Ok(s) => s,
        Err(e) => {
            ctx.skipped
                .push(format!("objects not checked (discovery failed): {e}"));
            return;
        }
    };
    let (denied, broken): (Vec<_>, Vec<_>) = snap
        .unlistable
        .iter()
        .partition(|u| u.error.contains("forbidden") || u.error.contains("Forbidden"));
    if !denied.is_empty() {
        ctx.skipped.push(format!(
            "{} resource types not listed (forbidden), so not checked for orphans: {}",
            denied.len(),
            denied
                .iter()
                .map(|u| u.resource.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for u in broken {
        ctx.add(
            "resource-type-unlistable",
            Severity::High,
            u.resource.clone(),
            format!("{} cannot be listed", u.resource),
            vec![u.error.clone()],
            "Fix what serves it (conversion webhook, aggregated API server) before the upgrade.",
        );
    }
    for (o, gone) in snapshot::orphans(&snap) {
        ctx.add(
            "orphaned-object",
            Severity::Medium,
            o.display(),
            format!(
                "its owner {} no longer exists",
                gone.iter()
                    .map(|r| format!("{}/{}", r.kind, r.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            vec![format!("ownerReferences uid {}", gone[0].uid)],
            "Delete it (it predates the upgrade: record it as the baseline).",
        );
    }
    for o in &snap.objects {
        if let Some(ts) = &o.deletion_timestamp {
            ctx.add("stuck-in-deletion", if o.finalizers.is_empty() { Severity::Medium } else { Severity::High }, o.display(),
                format!("deletion requested at {ts} and still pending{}", if o.finalizers.is_empty() { String::new() } else { format!(" on finalizers {}", o.finalizers.join(", ")) }),
                vec![], "Find the controller that owns the finalizer; remove the finalizer only once you know why it stays.");
        }
    }
}

/// Helm releases in Helm's storage (Secrets of type helm.sh/release.v1).
pub async fn helm_releases(ctx: &mut Context) {
    let secrets = match list(
        &ctx.client,
        &ar("", "v1", "Secret", "secrets"),
        &ListParams::default().labels("owner=helm,status=deployed"),
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            ctx.skipped.push(format!(
                "Helm releases not checked (cannot read Secrets): {}",
                short(&e)
            ));
            return;
        }
    };
    let minor = ctx.opts.target.as_ref().map(|v| v.minor);
    for secret in secrets {
        let Some(release) = decode_release(s(&secret, "/data/release")) else {
            continue;
        };
        let name = format!("{}/{}", s(&release, "/namespace"), s(&release, "/name"));
        for obj in crate::helm::split_manifest(s(&release, "/manifest")).unwrap_or_default() {
            let (api, kind, oname) = (
                s(&obj, "/apiVersion"),
                s(&obj, "/kind"),
                s(&obj, "/metadata/name"),
            );
            if let Some(m) = minor
                && let Some((removed, replacement)) = removed_apis::removed_by(api, kind, m)
            {
                ctx.add("helm-release-removed-api", Severity::High, format!("HelmRelease/{name}"),
                    format!("{kind} {oname} uses {api}, removed in Kubernetes 1.{removed}: upgrades and deletes of the release fail on the target"),
                    vec![format!("source: Kubernetes deprecated API migration guide; use {replacement}")],
                    "Change the chart to the replacement API and upgrade the release before the cluster, or use helm-mapkubeapis.");
            }
            if obj
                .pointer("/metadata/annotations/helm.sh~1resource-policy")
                .and_then(Value::as_str)
                == Some("keep")
            {
                ctx.add("helm-release-keeps-objects", Severity::Info, format!("HelmRelease/{name}"),
                    format!("{kind} {oname} is annotated helm.sh/resource-policy: keep: `helm delete` leaves it"), vec![], "Expected if intended; delete it by hand when the release goes.");
            }
        }
    }
}

/// A Helm release record: base64, then gzip, then JSON.
pub fn decode_release(data: &str) -> Option<Value> {
    let b64 = base64::engine::general_purpose::STANDARD;
    // The Secret's data is base64 (the API's), and the value itself is base64 (Helm's).
    let once = b64.decode(data.trim()).ok()?;
    let twice = b64.decode(&once).ok()?;
    let mut json = Vec::new();
    if twice.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(&twice[..])
            .read_to_end(&mut json)
            .ok()?;
    } else {
        json = twice;
    }
    serde_json::from_slice(&json).ok()
}

/// PodDisruptionBudgets that allow no disruption block node drains during the upgrade.
pub async fn pdbs(ctx: &mut Context) {
    let pdbs = match list(
        &ctx.client,
        &ar(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
        ),
        &ListParams::default(),
    )
    .await
    {
        Ok(p) => p,
        Err(e) => {
            ctx.skipped
                .push(format!("PodDisruptionBudgets not checked: {}", short(&e)));
            return;
        }
    };
    for p in pdbs {
        let expected = p
            .pointer("/status/expectedPods")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let allowed = p
            .pointer("/status/disruptionsAllowed")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if expected > 0 && allowed == 0 {
            ctx.add("pdb-blocks-drain", Severity::Medium, format!("PodDisruptionBudget/{}/{}", s(&p, "/metadata/namespace"), s(&p, "/metadata/name")),
                format!("allows no disruption of its {expected} pods: node drains during the upgrade stall"), vec![], "Scale up or relax minAvailable/maxUnavailable for the upgrade.");
        }
    }
}
