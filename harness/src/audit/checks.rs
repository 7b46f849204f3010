//! The audit's checks, one function per area. Each adds findings to the context and
//! says in `skipped` what it could not look at.

use std::collections::BTreeMap;
use std::io::Read;

use base64::Engine;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PropagationPolicy};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::Value;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};

use super::probe::{Answer, Verdict, judge};
use super::selection::{
    Labels, NAMESPACE_NAME_LABEL, ObjectMeta, Resource, Selection, Served, Webhook,
};
use super::{AuditOptions, Finding, Severity, removed_apis};
use crate::exercise::dry_run::GC_USER;
use crate::pager;
use crate::snapshot::{self, SnapshotScope};

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
            acceptance: None,
        });
    }
}

fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// Every object of `res` that `lp` selects, page by page (see [`crate::pager`]).
async fn list(
    client: &kube::Client,
    res: &ApiResource,
    lp: &ListParams,
) -> Result<Vec<Value>, kube::Error> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), res);
    Ok(pager::list_all(&api, lp)
        .await?
        .into_iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect())
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

/// Every admission webhook, validating and mutating; what could not be listed is said
/// in `skipped`.
async fn list_webhooks(ctx: &mut Context) -> Vec<Webhook> {
    let mut hooks = Vec::new();
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(ctx.client.clone());
    match pager::list_all(&validating, &ListParams::default()).await {
        Ok(list) => {
            for cfg in list {
                let name = cfg.metadata.name.unwrap_or_default();
                hooks.extend(
                    cfg.webhooks
                        .into_iter()
                        .flatten()
                        .map(|w| Webhook::validating(&name, w)),
                );
            }
        }
        Err(e) => ctx.skipped.push(format!(
            "ValidatingWebhookConfigurations not checked: {}",
            short(&e)
        )),
    }
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(ctx.client.clone());
    match pager::list_all(&mutating, &ListParams::default()).await {
        Ok(list) => {
            for cfg in list {
                let name = cfg.metadata.name.unwrap_or_default();
                hooks.extend(
                    cfg.webhooks
                        .into_iter()
                        .flatten()
                        .map(|w| Webhook::mutating(&name, w)),
                );
            }
        }
        Err(e) => ctx.skipped.push(format!(
            "MutatingWebhookConfigurations not checked: {}",
            short(&e)
        )),
    }
    hooks
}

/// Discovery reduced to what webhook matching needs: each group's versions, preferred
/// first.
pub(crate) fn served_from(d: &kube::Discovery) -> Served {
    Served::from_groups(
        d.groups()
            .map(|g| {
                let preferred = g.preferred_version_or_latest().to_string();
                let mut versions = vec![preferred.clone()];
                versions.extend(g.versions().filter(|v| *v != preferred).map(String::from));
                versions
                    .into_iter()
                    .map(|v| {
                        let resources = g.versioned_resources(&v);
                        (v, resources)
                    })
                    .collect()
            })
            .collect(),
    )
}

/// The metadata of every object of `resource`, page by page (see [`crate::pager`]).
async fn list_metadata(
    client: &kube::Client,
    resource: &Resource,
) -> Result<Vec<ObjectMeta>, kube::Error> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource.api_resource());
    let items = pager::list_all_metadata(&api, &ListParams::default(), pager::PAGE).await?;
    Ok(items
        .into_iter()
        .map(|o| ObjectMeta {
            namespace: o.metadata.namespace,
            name: o.metadata.name.unwrap_or_default(),
            labels: o.metadata.labels.unwrap_or_default(),
            deleting: o.metadata.deletion_timestamp.is_some(),
        })
        .collect())
}

/// Every namespace's real labels.
async fn namespace_labels(client: &kube::Client) -> Result<BTreeMap<String, Labels>, kube::Error> {
    let namespaces = Resource {
        group: String::new(),
        version: "v1".into(),
        plural: "namespaces".into(),
        kind: "Namespace".into(),
        namespaced: false,
    };
    Ok(list_metadata(client, &namespaces)
        .await?
        .into_iter()
        .map(|o| (o.name, o.labels))
        .collect())
}

fn json_of<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// `Pod apps/web-0`, `Namespace platform-a`.
fn describe(resource: &Resource, o: &ObjectMeta) -> String {
    match &o.namespace {
        Some(ns) => format!("{} {ns}/{}", resource.kind, o.name),
        None => format!("{} {}", resource.kind, o.name),
    }
}

/// At most `n` names, then how many more.
fn some_of(names: &[String], n: usize) -> String {
    if names.len() <= n {
        names.join(", ")
    } else {
        format!("{} and {} more", names[..n].join(", "), names.len() - n)
    }
}

/// Admission webhooks: configuration risks, then live dry-run DELETEs as the garbage
/// collector, each aimed at an object the webhook really selects.
pub async fn webhooks(ctx: &mut Context) {
    let hooks = list_webhooks(ctx).await;
    if hooks.is_empty() {
        return;
    }
    let served = match snapshot::discover(&ctx.client).await {
        Ok(d) => served_from(&d),
        Err(e) => {
            ctx.skipped.push(format!(
                "webhooks not matched against the garbage collector's resources (discovery failed): {}",
                short(&e)
            ));
            Served::default()
        }
    };
    let namespaces = match namespace_labels(&ctx.client).await {
        Ok(n) => Some(n),
        Err(e) => {
            ctx.skipped.push(format!(
                "namespaces not listed, so namespace selectors are judged against kube-system's guaranteed label only and no live DELETE is sent: {}",
                short(&e)
            ));
            None
        }
    };
    // Every namespace carries its name as a label; kube-system's real labels when seen.
    let kube_system: Labels = namespaces
        .as_ref()
        .and_then(|n| n.get("kube-system").cloned())
        .unwrap_or_else(|| {
            [(NAMESPACE_NAME_LABEL.to_string(), "kube-system".to_string())]
                .into_iter()
                .collect()
        });
    let mut deleting: Vec<(usize, Vec<Resource>)> = Vec::new();
    for (i, wh) in hooks.iter().enumerate() {
        let object = wh.object();
        let resources: Vec<Resource> = served
            .deletable
            .iter()
            .filter(|r| wh.rules_match_delete(r, &served))
            .cloned()
            .collect();
        if wh.fails_closed && !resources.is_empty() {
            let names: Vec<String> = resources.iter().map(Resource::display).collect();
            ctx.add("webhook-fail-closed-on-gc-delete", Severity::High, object.clone(),
                format!("failurePolicy Fail on DELETE of {}: if it breaks, the garbage collector's deletes fail and dependents are orphaned while `helm delete` exits 0", some_of(&names, 8)),
                vec![format!("rules: {}", json_of(&wh.rules)), format!("deletable resources (from discovery) its rules match: {}", names.join(", "))], WEBHOOK_TRIAGE);
            match wh.spares_namespace(&kube_system) {
                Ok(true) => {}
                Ok(false) => ctx.add(
                    "webhook-selects-kube-system",
                    Severity::Medium,
                    object.clone(),
                    "its namespaceSelector does not spare kube-system".into(),
                    vec![
                        format!(
                            "namespaceSelector: {}",
                            wh.namespace_selector
                                .as_ref()
                                .map(json_of)
                                .unwrap_or_else(|| "{}".into())
                        ),
                        format!("kube-system's labels: {}", json_of(&kube_system)),
                    ],
                    "Add a namespaceSelector with kubernetes.io/metadata.name NotIn [kube-system].",
                ),
                Err(e) => ctx.skipped.push(format!(
                    "{object}: its namespaceSelector cannot be evaluated: {e}"
                )),
            }
            if !wh.exempts_control_plane() {
                ctx.add("webhook-no-control-plane-exemption", Severity::Low, object.clone(),
                    "no matchCondition exempts the control plane's service accounts (e.g. the garbage collector)".into(),
                    vec![], "Add a matchCondition such as `!request.userInfo.username.startsWith('system:serviceaccount:kube-system:')`.");
            }
        }
        match wh.timeout_seconds {
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
        let effects = wh.side_effects.as_str();
        if effects == "Some" || effects == "Unknown" {
            ctx.add("webhook-side-effects-break-dry-run", Severity::Medium, object.clone(), format!("sideEffects {effects}: every dry-run request it matches is rejected"), vec![], "Use sideEffects: None (or NoneOnDryRun) if the webhook has no side effects on dry runs.");
        }
        check_client_config(ctx, &object, &wh.client_config, wh.fails_closed).await;
        if !resources.is_empty() {
            deleting.push((i, resources));
        }
    }
    if ctx.opts.live
        && let Some(n) = &namespaces
    {
        live_gc_deletes(ctx, &hooks, &deleting, &served, n).await;
    }
}

async fn check_client_config(
    ctx: &mut Context,
    object: &str,
    cc: &WebhookClientConfig,
    fail: bool,
) {
    if let Some(svc) = &cc.service {
        let (ns, name) = (svc.namespace.as_str(), svc.name.as_str());
        let sev = if fail { Severity::High } else { Severity::Low };
        match list(
            &ctx.client,
            &ar("", "v1", "Service", "services"),
            &ListParams::default().fields(&format!("metadata.namespace={ns},metadata.name={name}")),
        )
        .await
        {
            Err(e) if crate::api_error::denied(&e) => ctx
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
    } else if let Some(url) = &cc.url {
        ctx.add(
            "webhook-url-target",
            Severity::Low,
            object.into(),
            "it calls a URL: its health cannot be checked from the cluster".into(),
            vec![format!("url: {url}")],
            "Prefer a service reference, whose endpoints the cluster can report on.",
        );
    }
    if let Some(bundle) = &cc.ca_bundle
        && !bundle.0.is_empty()
    {
        check_ca_bundle(ctx, object, &bundle.0);
    }
}

/// Expiry of the certificates in a caBundle (PEM).
fn check_ca_bundle(ctx: &mut Context, object: &str, pem_bytes: &[u8]) {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let window = now + ctx.opts.upgrade_window_days * 86_400;
    let mut certificates = 0;
    for pem in x509_parser::pem::Pem::iter_from_buffer(pem_bytes).flatten() {
        let Ok(cert) = pem.parse_x509() else { continue };
        certificates += 1;
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
    if certificates == 0 {
        ctx.add(
            "webhook-ca-invalid",
            Severity::High,
            object.into(),
            "its caBundle holds no PEM certificate: the API server cannot verify the webhook"
                .into(),
            vec![],
            "Fix the caBundle.",
        );
    }
}

/// An object a webhook selects, and the other webhooks that may be called for its
/// DELETE too.
struct Candidate<'a> {
    resource: &'a Resource,
    object: &'a ObjectMeta,
    selection: Selection,
    others: Vec<String>,
}

/// How many objects the probe tries per webhook before it says `unknown`.
const PROBES_PER_WEBHOOK: usize = 3;

/// Would the garbage collector's DELETE be admitted right now? For each webhook whose
/// rules match DELETE of a deletable resource: a dry-run DELETE, as the garbage
/// collector, of an existing object the webhook really selects (rules, namespace and
/// object selectors), preferring objects no other webhook selects. Only an answer that
/// names the webhook is credited to it.
async fn live_gc_deletes(
    ctx: &mut Context,
    hooks: &[Webhook],
    deleting: &[(usize, Vec<Resource>)],
    served: &Served,
    namespaces: &BTreeMap<String, Labels>,
) {
    if deleting.is_empty() {
        return;
    }
    let (client, as_user) = match &ctx.gc_client {
        Some(c) => (c.clone(), GC_USER.to_string()),
        None => {
            ctx.skipped.push("impersonating the garbage collector is not allowed: live dry-run DELETEs were sent with your own identity".into());
            (ctx.client.clone(), "you".to_string())
        }
    };
    let prober = Prober { client, as_user };
    let mut objects: BTreeMap<Resource, Result<Vec<ObjectMeta>, String>> = BTreeMap::new();
    for (i, resources) in deleting {
        for r in resources {
            if !objects.contains_key(r) {
                let listed = list_metadata(&ctx.client, r).await.map_err(|e| short(&e));
                objects.insert(r.clone(), listed);
            }
        }
        let wh = &hooks[*i];
        let scope = Scope {
            hooks,
            index: *i,
            served,
            namespaces,
        };
        let (mut candidates, checked) = candidates(&scope, resources, &objects);
        let selectors = selectors_text(wh);
        if candidates.is_empty() {
            let unlisted = resources.iter().any(|r| objects[r].is_err());
            ctx.add(
                "gc-delete-probe-no-object",
                Severity::Info,
                wh.object(),
                if unlisted {
                    "no object this webhook selects exists among the resources that could be listed: nothing was probed".into()
                } else {
                    "no object this webhook selects exists: nothing was probed".into()
                },
                std::iter::once(format!("checked: {selectors}"))
                    .chain(checked)
                    .collect(),
                "Nothing to do now; a DELETE of an object it selects is judged when one exists.",
            );
            continue;
        }
        // Objects no other webhook may be called for first, then unconditional
        // selection, objects not already being deleted, objects outside kube-system.
        candidates.sort_by_key(|c| {
            (
                c.others.len(),
                c.selection != Selection::Selected,
                c.object.deleting,
                c.object.namespace.as_deref() == Some("kube-system"),
                c.resource.clone(),
                c.object.namespace.clone(),
                c.object.name.clone(),
            )
        });
        prober
            .probe(ctx, wh, &candidates, &selectors, checked)
            .await;
    }
}

/// Where one webhook's candidates are looked for: every webhook (the others are
/// named beside a candidate they also select), and what the selectors are judged on.
struct Scope<'a> {
    hooks: &'a [Webhook],
    index: usize,
    served: &'a Served,
    namespaces: &'a BTreeMap<String, Labels>,
}

/// The objects the webhook `scope.index` selects among `resources`, with what was
/// checked for each resource (counts, undecidable selections, what could not be
/// listed, resources without objects).
fn candidates<'o>(
    scope: &Scope,
    resources: &'o [Resource],
    objects: &'o BTreeMap<Resource, Result<Vec<ObjectMeta>, String>>,
) -> (Vec<Candidate<'o>>, Vec<String>) {
    let wh = &scope.hooks[scope.index];
    let (served, namespaces) = (scope.served, scope.namespaces);
    let mut checked = Vec::new();
    let mut candidates = Vec::new();
    for r in resources {
        let list = match &objects[r] {
            Ok(l) => l,
            Err(e) => {
                checked.push(format!("{}: not listed: {e}", r.display()));
                continue;
            }
        };
        let (mut selected, mut undecidable) = (0, Vec::new());
        for o in list {
            let selection = wh.selects(r, served, o, namespaces);
            match &selection {
                Selection::Selected | Selection::IfConditionsHold => selected += 1,
                Selection::Undecidable(why) => {
                    undecidable.push(why.clone());
                    continue;
                }
                Selection::NotSelected => continue,
            }
            let others = scope
                .hooks
                .iter()
                .enumerate()
                .filter(|(j, w)| {
                    *j != scope.index && w.selects(r, served, o, namespaces).may_call()
                })
                .map(|(_, w)| w.name.clone())
                .collect();
            candidates.push(Candidate {
                resource: r,
                object: o,
                selection,
                others,
            });
        }
        if !list.is_empty() {
            checked.push(format!(
                "{}: {} objects, {selected} selected{}",
                r.display(),
                list.len(),
                if undecidable.is_empty() {
                    String::new()
                } else {
                    format!(", {} undecidable ({})", undecidable.len(), undecidable[0])
                }
            ));
        }
    }
    let empty: Vec<String> = resources
        .iter()
        .filter(|r| objects[*r].as_ref().is_ok_and(Vec::is_empty))
        .map(|r| r.display())
        .collect();
    if !empty.is_empty() {
        checked.push(format!("no objects at all: {}", some_of(&empty, 12)));
    }
    (candidates, checked)
}

/// What the webhook's selection was judged on, for the evidence.
fn selectors_text(wh: &Webhook) -> String {
    format!(
        "namespaceSelector {} against the namespaces' labels, objectSelector {} against the objects' labels{}",
        wh.namespace_selector
            .as_ref()
            .map(json_of)
            .unwrap_or_else(|| "{}".into()),
        wh.object_selector
            .as_ref()
            .map(json_of)
            .unwrap_or_else(|| "{}".into()),
        if wh.match_conditions.is_empty() {
            String::new()
        } else {
            format!(
                "; matchConditions {} are CEL and not evaluated here: the API server decides",
                json_of(&wh.match_conditions)
            )
        }
    )
}

/// Sends the dry-run DELETEs, as the garbage collector when it may be impersonated.
struct Prober {
    client: kube::Client,
    as_user: String,
}

impl Prober {
    /// Probes up to [`PROBES_PER_WEBHOOK`] candidates until an answer is about this
    /// webhook: refused (a critical finding) or admitted; else the finding is
    /// `unknown`, with every probe and why it did not settle the question.
    async fn probe(
        &self,
        ctx: &mut Context,
        wh: &Webhook,
        candidates: &[Candidate<'_>],
        selectors: &str,
        checked: Vec<String>,
    ) {
        let mut unsettled = Vec::new();
        for c in candidates.iter().take(PROBES_PER_WEBHOOK) {
            let (line, answer) = self.dry_run_delete(c).await;
            match judge(&wh.name, &c.selection, &answer) {
                Verdict::Refused(kind) => {
                    let mut evidence = vec![line];
                    evidence.push(format!(
                        "the API server's answer names this webhook; it selects the object by {selectors}"
                    ));
                    if !c.others.is_empty() {
                        evidence.push(format!("also selected by: {}", c.others.join(", ")));
                    }
                    ctx.add(
                        "gc-delete-refused-now",
                        Severity::Critical,
                        wh.object(),
                        format!(
                            "right now the garbage collector's DELETE of a {} is {kind}",
                            c.resource.kind
                        ),
                        evidence,
                        WEBHOOK_TRIAGE,
                    );
                    return;
                }
                Verdict::Admitted => return,
                Verdict::Unknown(why) => {
                    unsettled.push(format!("{line} (for this webhook: {why})"))
                }
            }
        }
        let mut evidence = unsettled;
        evidence.push(format!("checked: {selectors}"));
        evidence.extend(checked);
        ctx.add(
            "gc-delete-probe-unknown",
            Severity::Info,
            wh.object(),
            if wh.match_conditions.is_empty() {
                "whether it lets the garbage collector's DELETE through right now is unknown: no probe's answer was about this webhook".into()
            } else {
                "whether it lets the garbage collector's DELETE through right now is unknown: its matchConditions cannot be evaluated here, so the probe cannot be aimed exactly and no answer was about this webhook".into()
            },
            evidence,
            "Probe it where it alone selects an object (e.g. a namespace or object only it selects), or check its own logs for the garbage collector's requests.",
        );
    }

    /// One dry-run DELETE (background propagation, as the collector sends) and the
    /// line that says what was asked and answered.
    async fn dry_run_delete(&self, c: &Candidate<'_>) -> (String, Answer) {
        let ar = c.resource.api_resource();
        let api: Api<DynamicObject> = match &c.object.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        };
        let dp = DeleteParams {
            dry_run: true,
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        let answer = Answer::from_result(api.delete(&c.object.name, &dp).await.map(|_| ()));
        let line = format!(
            "dry-run DELETE of {} as {}: {}{}",
            describe(c.resource, c.object),
            self.as_user,
            answer.outcome(),
            if answer.message().is_empty() {
                String::new()
            } else {
                format!(": {}", answer.message())
            }
        );
        (line, answer)
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
            // One page is enough: whether the type can be listed at all is the question.
            let api: Api<DynamicObject> =
                Api::all_with(ctx.client.clone(), &ar(group, version, kind, plural));
            if let Err(e) = api.list(&ListParams::default().limit(100)).await {
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
    let (denied, broken): (Vec<_>, Vec<_>) = snap.unlistable.iter().partition(|u| u.denied());
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
    for (o, gone) in crate::ownership::orphans(&snap) {
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
