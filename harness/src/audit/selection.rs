//! Which admission webhooks the API server calls for a DELETE, decided the way the API
//! server decides it: the webhook's rules (operations, apiGroups, apiVersions,
//! resources with `*` and subresources, scope, matchPolicy), its namespaceSelector
//! against the namespace's real labels, its objectSelector against the object's
//! labels. matchConditions are CEL, which is not evaluated here: a webhook that has
//! them is "selected if its conditions hold", and the API server decides.
//!
//! Also: the resources the garbage collector can delete, from discovery.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingWebhook, RuleWithOperations, ValidatingWebhook, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::discovery::{ApiCapabilities, ApiResource, Scope, verbs};

/// Labels of an object or a namespace.
pub type Labels = BTreeMap<String, String>;

/// The label every namespace carries (set by the API server since 1.21).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A label selector the API server would not accept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("`{0}` is not a valid label selector operator")]
    Operator(String),
    #[error("operator {operator} on `{key}` needs at least one value")]
    NoValues { key: String, operator: String },
    #[error("operator {operator} on `{key}` takes no values")]
    Values { key: String, operator: String },
}

/// Whether `selector` selects `labels`, as `metav1.LabelSelectorAsSelector` and
/// `labels.Selector.Matches` do: every matchLabels pair and every matchExpression must
/// hold; `In` needs the key with one of the values, `NotIn` holds when the key is
/// absent or has another value, `Exists` / `DoesNotExist` test the key only. An empty
/// selector selects everything. A webhook's unset selector is defaulted to the empty
/// one by the API server, so `None` selects everything too.
pub fn selector_matches(
    selector: Option<&LabelSelector>,
    labels: &Labels,
) -> Result<bool, SelectorError> {
    let Some(selector) = selector else {
        return Ok(true);
    };
    let mut all = true;
    for (k, v) in selector.match_labels.iter().flatten() {
        all &= labels.get(k) == Some(v);
    }
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or_default();
        let has = labels.get(&e.key);
        let holds = match e.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(SelectorError::NoValues {
                    key: e.key.clone(),
                    operator: e.operator.clone(),
                });
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(SelectorError::Values {
                    key: e.key.clone(),
                    operator: e.operator.clone(),
                });
            }
            "In" => has.is_some_and(|v| values.contains(v)),
            "NotIn" => has.is_none_or(|v| !values.contains(v)),
            "Exists" => has.is_some(),
            "DoesNotExist" => has.is_none(),
            other => return Err(SelectorError::Operator(other.to_string())),
        };
        all &= holds;
    }
    Ok(all)
}

/// A resource type as discovery serves it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Resource {
    /// `""` for the core group.
    pub group: String,
    pub version: String,
    /// The plural, e.g. `pods`.
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
}

impl Resource {
    pub fn api_resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk(&self.group, &self.version, &self.kind),
            &self.plural,
        )
    }

    /// kubectl's short form: `pods`, `deployments.apps`.
    pub fn display(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The core group's namespaces: namespace selectors apply to the object itself.
    pub fn is_namespace(&self) -> bool {
        self.group.is_empty() && self.plural == "namespaces"
    }

    /// Requests for admission configuration objects are never sent to webhooks
    /// (`IsExemptAdmissionConfigurationResource`).
    pub fn exempt_from_webhooks(&self) -> bool {
        self.group == "admissionregistration.k8s.io"
            && matches!(
                self.kind.as_str(),
                "ValidatingWebhookConfiguration"
                    | "MutatingWebhookConfiguration"
                    | "ValidatingAdmissionPolicy"
                    | "ValidatingAdmissionPolicyBinding"
                    | "MutatingAdmissionPolicy"
                    | "MutatingAdmissionPolicyBinding"
            )
    }
}

/// What discovery says about the cluster's resource types, reduced to what webhook
/// matching needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Served {
    /// Every resource the garbage collector can delete, at the version it uses (the
    /// server's preferred version of each group, or the first version that serves the
    /// resource): those supporting `delete`, `list` and `watch`, which is what the
    /// garbage collector's `GetDeletableResources` asks of discovery.
    pub deletable: Vec<Resource>,
    /// Every served version of each `(group, plural)`, for `matchPolicy: Equivalent`.
    pub versions: BTreeMap<(String, String), BTreeSet<String>>,
}

impl Served {
    /// From discovery's groups: each group's versions in order of preference (preferred
    /// first), each with its resources.
    pub fn from_groups(groups: Vec<Vec<GroupVersion>>) -> Served {
        let mut served = Served::default();
        for versions in groups {
            let mut seen = BTreeSet::new();
            for (version, resources) in versions {
                for (ar, caps) in resources {
                    served
                        .versions
                        .entry((ar.group.clone(), ar.plural.clone()))
                        .or_default()
                        .insert(version.clone());
                    let deletable = [verbs::DELETE, verbs::LIST, verbs::WATCH]
                        .iter()
                        .all(|v| caps.supports_operation(v));
                    if deletable && seen.insert(ar.plural.clone()) {
                        served.deletable.push(Resource {
                            group: ar.group.clone(),
                            version: ar.version.clone(),
                            plural: ar.plural.clone(),
                            kind: ar.kind.clone(),
                            namespaced: caps.scope == Scope::Namespaced,
                        });
                    }
                }
            }
        }
        served.deletable.sort();
        served
    }

    fn versions_of<'a>(&'a self, r: &'a Resource) -> Vec<&'a str> {
        self.versions
            .get(&(r.group.clone(), r.plural.clone()))
            .map(|v| v.iter().map(String::as_str).collect())
            .unwrap_or_else(|| vec![r.version.as_str()])
    }
}

/// One served version of a group and its resources, as discovery lists them.
pub type GroupVersion = (String, Vec<(ApiResource, ApiCapabilities)>);

/// Which configuration a webhook belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigKind {
    Validating,
    Mutating,
}

impl ConfigKind {
    pub fn kind(self) -> &'static str {
        match self {
            ConfigKind::Validating => "ValidatingWebhookConfiguration",
            ConfigKind::Mutating => "MutatingWebhookConfiguration",
        }
    }
}

/// `matchPolicy`: whether a rule also matches a request for the same resource at
/// another served version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchPolicy {
    Exact,
    Equivalent,
}

/// One admission webhook, as the API server holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Webhook {
    pub config_kind: ConfigKind,
    pub config: String,
    pub name: String,
    pub rules: Vec<RuleWithOperations>,
    pub namespace_selector: Option<LabelSelector>,
    pub object_selector: Option<LabelSelector>,
    pub match_conditions: Vec<MatchCondition>,
    pub match_policy: MatchPolicy,
    /// `failurePolicy: Fail` (the default).
    pub fails_closed: bool,
    pub timeout_seconds: Option<i32>,
    pub side_effects: String,
    pub client_config: WebhookClientConfig,
}

fn match_policy(p: Option<&str>) -> MatchPolicy {
    match p {
        Some("Exact") => MatchPolicy::Exact,
        _ => MatchPolicy::Equivalent,
    }
}

impl Webhook {
    pub fn validating(config: &str, w: ValidatingWebhook) -> Webhook {
        Webhook {
            config_kind: ConfigKind::Validating,
            config: config.into(),
            name: w.name,
            rules: w.rules.unwrap_or_default(),
            namespace_selector: w.namespace_selector,
            object_selector: w.object_selector,
            match_conditions: w.match_conditions.unwrap_or_default(),
            match_policy: match_policy(w.match_policy.as_deref()),
            fails_closed: w.failure_policy.as_deref().unwrap_or("Fail") == "Fail",
            timeout_seconds: w.timeout_seconds,
            side_effects: w.side_effects,
            client_config: w.client_config,
        }
    }

    pub fn mutating(config: &str, w: MutatingWebhook) -> Webhook {
        Webhook {
            config_kind: ConfigKind::Mutating,
            config: config.into(),
            name: w.name,
            rules: w.rules.unwrap_or_default(),
            namespace_selector: w.namespace_selector,
            object_selector: w.object_selector,
            match_conditions: w.match_conditions.unwrap_or_default(),
            match_policy: match_policy(w.match_policy.as_deref()),
            fails_closed: w.failure_policy.as_deref().unwrap_or("Fail") == "Fail",
            timeout_seconds: w.timeout_seconds,
            side_effects: w.side_effects,
            client_config: w.client_config,
        }
    }

    /// How findings name it: `ValidatingWebhookConfiguration/cfg webhook name`.
    pub fn object(&self) -> String {
        format!(
            "{}/{} webhook {}",
            self.config_kind.kind(),
            self.config,
            self.name
        )
    }

    /// Whether its rules send a DELETE of `resource` (at `resource.version`) to it.
    /// With `matchPolicy: Equivalent` a rule naming another served version of the same
    /// resource matches too (the API server converts the request).
    pub fn rules_match_delete(&self, resource: &Resource, served: &Served) -> bool {
        if resource.exempt_from_webhooks() {
            return false;
        }
        let versions = match self.match_policy {
            MatchPolicy::Exact => vec![resource.version.as_str()],
            MatchPolicy::Equivalent => served.versions_of(resource),
        };
        self.rules.iter().any(|rule| {
            versions.iter().any(|v| {
                rule_matches(
                    rule,
                    &Request {
                        operation: "DELETE",
                        group: &resource.group,
                        version: v,
                        resource: &resource.plural,
                        subresource: "",
                        namespaced: resource.namespaced && !resource.is_namespace(),
                        is_namespace: resource.is_namespace(),
                    },
                )
            })
        })
    }

    /// Whether the API server calls it for a DELETE of this object. `namespaces` holds
    /// every namespace's real labels.
    pub fn selects(
        &self,
        resource: &Resource,
        served: &Served,
        object: &ObjectMeta,
        namespaces: &BTreeMap<String, Labels>,
    ) -> Selection {
        if !self.rules_match_delete(resource, served) {
            return Selection::NotSelected;
        }
        // The namespace selector: the object's namespace, the namespace itself for a
        // Namespace, nothing for other cluster-scoped objects.
        let ns_labels = if resource.is_namespace() {
            Some(&object.labels)
        } else if let Some(ns) = &object.namespace {
            match namespaces.get(ns) {
                Some(l) => Some(l),
                None => {
                    return Selection::Undecidable(format!(
                        "the labels of namespace {ns} are unknown"
                    ));
                }
            }
        } else {
            None
        };
        if let Some(labels) = ns_labels {
            match selector_matches(self.namespace_selector.as_ref(), labels) {
                Ok(true) => {}
                Ok(false) => return Selection::NotSelected,
                Err(e) => return Selection::Undecidable(format!("namespaceSelector: {e}")),
            }
        }
        match selector_matches(self.object_selector.as_ref(), &object.labels) {
            Ok(true) => {}
            Ok(false) => return Selection::NotSelected,
            Err(e) => return Selection::Undecidable(format!("objectSelector: {e}")),
        }
        if self.match_conditions.is_empty() {
            Selection::Selected
        } else {
            Selection::IfConditionsHold
        }
    }

    /// Whether a namespace selector keeps it away from kube-system, given kube-system's
    /// real labels.
    pub fn spares_namespace(&self, labels: &Labels) -> Result<bool, SelectorError> {
        selector_matches(self.namespace_selector.as_ref(), labels).map(|m| !m)
    }

    /// Whether a matchCondition mentions the control plane's service accounts.
    pub fn exempts_control_plane(&self) -> bool {
        self.match_conditions.iter().any(|c| {
            c.expression.contains("system:serviceaccount:kube-system")
                || c.expression.contains("generic-garbage-collector")
        })
    }
}

/// An existing object, as far as selection is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub namespace: Option<String>,
    pub name: String,
    pub labels: Labels,
    /// Already being deleted.
    pub deleting: bool,
}

/// Whether a webhook is called for a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Its rules and selectors select the request: the API server calls it.
    Selected,
    /// Its rules and selectors select the request; its matchConditions (CEL, not
    /// evaluated here) decide whether it is called.
    IfConditionsHold,
    NotSelected,
    /// Cannot be told (a selector the API server would refuse, a namespace not seen).
    Undecidable(String),
}

impl Selection {
    /// Whether the webhook is, or may be, called.
    pub fn may_call(&self) -> bool {
        !matches!(self, Selection::NotSelected)
    }
}

/// The attributes of an admission request that rules look at.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub operation: &'a str,
    pub group: &'a str,
    pub version: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    /// The request is for a namespaced object (not a Namespace itself).
    pub namespaced: bool,
    /// The request is for a Namespace object.
    pub is_namespace: bool,
}

/// One rule against one request, as the API server's `rules.Matcher` does: each of
/// operations, apiGroups, apiVersions holds the value or `*`; a resource entry
/// `res/sub` matches when `res` is `*` or the resource and `sub` is `*` or the
/// subresource (`pods/*` therefore also matches `pods`, and `*` matches no
/// subresource); scope `Namespaced` matches namespaced objects, `Cluster` cluster-scoped
/// ones and Namespaces, `*` or unset both.
pub fn rule_matches(rule: &RuleWithOperations, req: &Request<'_>) -> bool {
    let has = |list: &Option<Vec<String>>, value: &str| {
        list.iter().flatten().any(|x| x == "*" || x == value)
    };
    let resource = rule.resources.iter().flatten().any(|r| {
        let (res, sub) = r.split_once('/').unwrap_or((r.as_str(), ""));
        (res == "*" || res == req.resource) && (sub == "*" || sub == req.subresource)
    });
    let scope = match rule.scope.as_deref() {
        None | Some("*") => true,
        Some("Namespaced") => req.namespaced && !req.is_namespace,
        Some("Cluster") => req.is_namespace || !req.namespaced,
        Some(_) => false,
    };
    has(&rule.operations, req.operation)
        && has(&rule.api_groups, req.group)
        && has(&rule.api_versions, req.version)
        && resource
        && scope
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sel(json: serde_json::Value) -> LabelSelector {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn selectors_are_evaluated_as_the_api_server_does() {
        use serde_json::json;
        let kube_system = labels(&[(NAMESPACE_NAME_LABEL, "kube-system")]);
        let platform = labels(&[(NAMESPACE_NAME_LABEL, "platform-a"), ("team", "platform")]);
        let other = labels(&[(NAMESPACE_NAME_LABEL, "apps"), ("team", "apps")]);
        let none = Labels::new();
        let expr = |key: &str, op: &str, values: &[&str]| json!({"matchExpressions": [{"key": key, "operator": op, "values": values}]});
        let cases: Vec<(&str, serde_json::Value, &Labels, bool)> = vec![
            ("empty selects all", json!({}), &kube_system, true),
            ("empty selects no labels", json!({}), &none, true),
            (
                "matchLabels hit",
                json!({"matchLabels": {"team": "platform"}}),
                &platform,
                true,
            ),
            (
                "matchLabels other value",
                json!({"matchLabels": {"team": "platform"}}),
                &other,
                false,
            ),
            (
                "matchLabels missing key (kube-system)",
                json!({"matchLabels": {"team": "platform"}}),
                &kube_system,
                false,
            ),
            (
                "matchLabels all must hold",
                json!({"matchLabels": {"team": "platform", "tier": "x"}}),
                &platform,
                false,
            ),
            (
                "In hit",
                expr("team", "In", &["apps", "platform"]),
                &platform,
                true,
            ),
            (
                "In missing key",
                expr("team", "In", &["platform"]),
                &kube_system,
                false,
            ),
            (
                "NotIn other value",
                expr("team", "NotIn", &["platform"]),
                &other,
                true,
            ),
            (
                "NotIn missing key holds",
                expr("team", "NotIn", &["platform"]),
                &kube_system,
                true,
            ),
            (
                "NotIn listed value",
                expr("team", "NotIn", &["platform"]),
                &platform,
                false,
            ),
            (
                "NotIn kube-system by name",
                expr(NAMESPACE_NAME_LABEL, "NotIn", &["kube-system"]),
                &kube_system,
                false,
            ),
            (
                "NotIn kube-system by name, others",
                expr(NAMESPACE_NAME_LABEL, "NotIn", &["kube-system"]),
                &other,
                true,
            ),
            ("Exists", expr("team", "Exists", &[]), &other, true),
            (
                "Exists missing",
                expr("team", "Exists", &[]),
                &kube_system,
                false,
            ),
            (
                "DoesNotExist",
                expr("team", "DoesNotExist", &[]),
                &kube_system,
                true,
            ),
            (
                "DoesNotExist present",
                expr("team", "DoesNotExist", &[]),
                &platform,
                false,
            ),
            (
                "labels and expressions together",
                json!({"matchLabels": {"team": "platform"}, "matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}),
                &platform,
                true,
            ),
        ];
        for (what, s, l, want) in cases {
            assert_eq!(
                selector_matches(Some(&sel(s.clone())), l),
                Ok(want),
                "{what}: {s} on {l:?}"
            );
        }
        assert_eq!(
            selector_matches(None, &none),
            Ok(true),
            "unset is defaulted to {{}}"
        );
    }

    #[test]
    fn selectors_the_api_server_would_refuse_are_errors() {
        let bad = |op: &str, values: Option<Vec<String>>| LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "team".into(),
                operator: op.into(),
                values,
            }]),
            ..Default::default()
        };
        let l = Labels::new();
        assert_eq!(
            selector_matches(Some(&bad("Gt", Some(vec!["1".into()]))), &l),
            Err(SelectorError::Operator("Gt".into()))
        );
        assert!(matches!(
            selector_matches(Some(&bad("In", None)), &l),
            Err(SelectorError::NoValues { .. })
        ));
        assert!(matches!(
            selector_matches(Some(&bad("Exists", Some(vec!["x".into()]))), &l),
            Err(SelectorError::Values { .. })
        ));
    }

    fn rule(
        ops: &[&str],
        groups: &[&str],
        versions: &[&str],
        resources: &[&str],
        scope: Option<&str>,
    ) -> RuleWithOperations {
        let v = |x: &[&str]| Some(x.iter().map(|s| s.to_string()).collect());
        RuleWithOperations {
            operations: v(ops),
            api_groups: v(groups),
            api_versions: v(versions),
            resources: v(resources),
            scope: scope.map(String::from),
        }
    }

    fn delete<'a>(
        group: &'a str,
        version: &'a str,
        resource: &'a str,
        sub: &'a str,
        namespaced: bool,
    ) -> Request<'a> {
        Request {
            operation: "DELETE",
            group,
            version,
            resource,
            subresource: sub,
            namespaced: namespaced && resource != "namespaces",
            is_namespace: group.is_empty() && resource == "namespaces",
        }
    }

    #[test]
    fn rules_match_as_the_api_server_matches() {
        let pods = delete("", "v1", "pods", "", true);
        let eviction = delete("", "v1", "pods", "eviction", true);
        let deploy = delete("apps", "v1", "deployments", "", true);
        let ns = delete("", "v1", "namespaces", "", false);
        let pv = delete("", "v1", "persistentvolumes", "", false);
        let cases = [
            (
                "exact",
                rule(&["DELETE"], &[""], &["v1"], &["pods"], None),
                &pods,
                true,
            ),
            (
                "other operation",
                rule(&["CREATE", "UPDATE"], &[""], &["v1"], &["pods"], None),
                &pods,
                false,
            ),
            (
                "operation *",
                rule(&["*"], &[""], &["v1"], &["pods"], None),
                &pods,
                true,
            ),
            (
                "other group",
                rule(&["DELETE"], &["apps"], &["v1"], &["pods"], None),
                &pods,
                false,
            ),
            (
                "group *",
                rule(&["DELETE"], &["*"], &["v1"], &["deployments"], None),
                &deploy,
                true,
            ),
            (
                "other version",
                rule(&["DELETE"], &["apps"], &["v1beta1"], &["deployments"], None),
                &deploy,
                false,
            ),
            (
                "version *",
                rule(&["DELETE"], &["apps"], &["*"], &["deployments"], None),
                &deploy,
                true,
            ),
            (
                "resource *",
                rule(&["DELETE"], &["*"], &["*"], &["*"], None),
                &deploy,
                true,
            ),
            (
                "resource * is not a subresource",
                rule(&["DELETE"], &["*"], &["*"], &["*"], None),
                &eviction,
                false,
            ),
            (
                "*/* is everything",
                rule(&["DELETE"], &["*"], &["*"], &["*/*"], None),
                &eviction,
                true,
            ),
            (
                "pods/* matches pods itself",
                rule(&["DELETE"], &[""], &["v1"], &["pods/*"], None),
                &pods,
                true,
            ),
            (
                "pods/eviction is not pods",
                rule(&["DELETE"], &[""], &["v1"], &["pods/eviction"], None),
                &pods,
                false,
            ),
            (
                "pods/eviction",
                rule(&["DELETE"], &[""], &["v1"], &["pods/eviction"], None),
                &eviction,
                true,
            ),
            (
                "Namespaced scope, pods",
                rule(&["DELETE"], &["*"], &["*"], &["*"], Some("Namespaced")),
                &pods,
                true,
            ),
            (
                "Namespaced scope, namespace",
                rule(&["DELETE"], &["*"], &["*"], &["*"], Some("Namespaced")),
                &ns,
                false,
            ),
            (
                "Cluster scope, namespace",
                rule(&["DELETE"], &["*"], &["*"], &["*"], Some("Cluster")),
                &ns,
                true,
            ),
            (
                "Cluster scope, pv",
                rule(&["DELETE"], &["*"], &["*"], &["*"], Some("Cluster")),
                &pv,
                true,
            ),
            (
                "Cluster scope, pods",
                rule(&["DELETE"], &["*"], &["*"], &["*"], Some("Cluster")),
                &pods,
                false,
            ),
            (
                "scope *",
                rule(&["DELETE"], &["*"], &["*"], &["*"], Some("*")),
                &pv,
                true,
            ),
        ];
        for (what, r, req, want) in cases {
            assert_eq!(rule_matches(&r, req), want, "{what}");
        }
    }

    fn res(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Resource {
        Resource {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            kind: kind.into(),
            namespaced,
        }
    }

    fn webhook(rules: Vec<RuleWithOperations>) -> Webhook {
        Webhook {
            config_kind: ConfigKind::Validating,
            config: "cfg".into(),
            name: "w.example.com".into(),
            rules,
            namespace_selector: None,
            object_selector: None,
            match_conditions: vec![],
            match_policy: MatchPolicy::Equivalent,
            fails_closed: true,
            timeout_seconds: Some(5),
            side_effects: "None".into(),
            client_config: Default::default(),
        }
    }

    fn caps(ops: &[&str], scope: Scope) -> ApiCapabilities {
        ApiCapabilities {
            scope,
            subresources: vec![],
            operations: ops.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk(group, version, kind),
            plural,
        )
    }

    #[test]
    fn deletable_resources_come_from_discovery() {
        let all = ["get", "list", "watch", "create", "delete"];
        let served = Served::from_groups(vec![
            vec![(
                "v1".into(),
                vec![
                    (ar("", "v1", "Pod", "pods"), caps(&all, Scope::Namespaced)),
                    (
                        ar("", "v1", "Namespace", "namespaces"),
                        caps(&all, Scope::Cluster),
                    ),
                    (
                        ar("", "v1", "Binding", "bindings"),
                        caps(&["create"], Scope::Namespaced),
                    ),
                ],
            )],
            vec![
                (
                    "v1".into(),
                    vec![(
                        ar("example.com", "v1", "Widget", "widgets"),
                        caps(&all, Scope::Namespaced),
                    )],
                ),
                (
                    "v1alpha1".into(),
                    vec![
                        (
                            ar("example.com", "v1alpha1", "Widget", "widgets"),
                            caps(&all, Scope::Namespaced),
                        ),
                        // Served only at a non-preferred version: still deletable there.
                        (
                            ar("example.com", "v1alpha1", "Gadget", "gadgets"),
                            caps(&all, Scope::Cluster),
                        ),
                    ],
                ),
            ],
        ]);
        let names: Vec<String> = served
            .deletable
            .iter()
            .map(|r| format!("{}/{}/{}", r.group, r.version, r.plural))
            .collect();
        assert_eq!(
            names,
            [
                "/v1/namespaces",
                "/v1/pods",
                "example.com/v1/widgets",
                "example.com/v1alpha1/gadgets"
            ]
        );
        assert_eq!(
            served.versions[&("example.com".to_string(), "widgets".to_string())],
            ["v1".to_string(), "v1alpha1".to_string()]
                .into_iter()
                .collect()
        );

        // matchPolicy: a rule at v1alpha1 matches the GC's DELETE at v1 only when Equivalent.
        let widgets = &served.deletable[2];
        let mut w = webhook(vec![rule(
            &["DELETE"],
            &["example.com"],
            &["v1alpha1"],
            &["widgets"],
            None,
        )]);
        assert!(w.rules_match_delete(widgets, &served));
        w.match_policy = MatchPolicy::Exact;
        assert!(!w.rules_match_delete(widgets, &served));
        // Admission configuration objects never go to webhooks.
        let vwc = res(
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            false,
        );
        assert!(
            !webhook(vec![rule(&["*"], &["*"], &["*"], &["*"], None)])
                .rules_match_delete(&vwc, &served)
        );
    }

    #[test]
    fn selection_uses_the_namespaces_real_labels_and_the_objects_labels() {
        let served = Served::default();
        let pods = res("", "v1", "pods", "Pod", true);
        let namespaces_res = res("", "v1", "namespaces", "Namespace", false);
        let pvs = res("", "v1", "persistentvolumes", "PersistentVolume", false);
        let namespaces: BTreeMap<String, Labels> = [
            (
                "kube-system",
                labels(&[(NAMESPACE_NAME_LABEL, "kube-system")]),
            ),
            (
                "platform-a",
                labels(&[(NAMESPACE_NAME_LABEL, "platform-a"), ("team", "platform")]),
            ),
            ("apps", labels(&[(NAMESPACE_NAME_LABEL, "apps")])),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let obj = |ns: Option<&str>, name: &str, l: &[(&str, &str)]| ObjectMeta {
            namespace: ns.map(String::from),
            name: name.into(),
            labels: labels(l),
            deleting: false,
        };
        let mut scoped = webhook(vec![rule(&["DELETE"], &["*"], &["*"], &["*"], None)]);
        scoped.namespace_selector = Some(sel(
            serde_json::json!({"matchLabels": {"team": "platform"}}),
        ));
        let in_platform = obj(Some("platform-a"), "p", &[]);
        let in_apps = obj(Some("apps"), "a", &[]);
        let cases = [
            ("platform pod", &pods, &in_platform, Selection::Selected),
            ("apps pod", &pods, &in_apps, Selection::NotSelected),
            (
                "unknown namespace",
                &pods,
                &obj(Some("gone"), "x", &[]),
                Selection::Undecidable("the labels of namespace gone are unknown".into()),
            ),
            (
                "the platform namespace itself",
                &namespaces_res,
                &obj(
                    None,
                    "platform-a",
                    &[(NAMESPACE_NAME_LABEL, "platform-a"), ("team", "platform")],
                ),
                Selection::Selected,
            ),
            (
                "kube-system itself",
                &namespaces_res,
                &obj(
                    None,
                    "kube-system",
                    &[(NAMESPACE_NAME_LABEL, "kube-system")],
                ),
                Selection::NotSelected,
            ),
            (
                "cluster-scoped: namespaceSelector does not apply",
                &pvs,
                &obj(None, "pv", &[]),
                Selection::Selected,
            ),
        ];
        for (what, r, o, want) in cases {
            assert_eq!(scoped.selects(r, &served, o, &namespaces), want, "{what}");
        }
        assert_eq!(
            scoped.spares_namespace(&namespaces["kube-system"]),
            Ok(true)
        );

        let mut by_object = webhook(vec![rule(&["DELETE"], &[""], &["v1"], &["pods"], None)]);
        by_object.object_selector = Some(sel(
            serde_json::json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}),
        ));
        assert_eq!(
            by_object.selects(
                &pods,
                &served,
                &obj(Some("apps"), "w", &[("app", "web")]),
                &namespaces
            ),
            Selection::Selected
        );
        assert_eq!(
            by_object.selects(
                &pods,
                &served,
                &obj(Some("apps"), "d", &[("app", "db")]),
                &namespaces
            ),
            Selection::NotSelected
        );
        assert_eq!(
            by_object.spares_namespace(&namespaces["kube-system"]),
            Ok(false)
        );

        let mut conditional = webhook(vec![rule(&["DELETE"], &[""], &["v1"], &["pods"], None)]);
        conditional.match_conditions = vec![MatchCondition {
            name: "not-gc".into(),
            expression:
                "!request.userInfo.username.startsWith('system:serviceaccount:kube-system:')".into(),
        }];
        assert_eq!(
            conditional.selects(&pods, &served, &in_apps, &namespaces),
            Selection::IfConditionsHold
        );
        assert!(conditional.exempts_control_plane());
        assert_eq!(
            conditional.selects(&pvs, &served, &obj(None, "pv", &[]), &namespaces),
            Selection::NotSelected
        );
    }
}
