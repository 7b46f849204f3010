//! Loading a twin's captured files into validated values, so that replay never
//! indexes into YAML it has not checked.
//!
//! A twin is committed to a repository and handed around; its files may be edited,
//! truncated or hostile. Replay recreates CRDs and webhook configurations *as
//! captured* (unknown fields included), so each object is kept whole as a
//! [`serde_json::Value`]; but first it is read into a typed *view* of the fields replay
//! reads (names, annotations, each webhook entry as a mapping with its clientConfig,
//! rules and selectors, a CRD's group, names, versions and conversion, an APIService's
//! conditions). A file that does not fit is refused as `file:line:column: field:
//! what was expected` (the same form as scenario files), never a panic later on.
//!
//! Reading is bounded like a scenario file's ([`crate::scenario::limits`]), with
//! budgets sized for captured objects: a large CRD's schema is hundreds of KiB and
//! nests deeply, so the caps are larger, but still finite.
//!
//! **Adding a part** (a new folder under `cluster/`, or a new file): write a view
//! struct of the fields replay reads (serde, with [`Spanned`] where a message should
//! point), implement [`View`] for it, and read it with [`read_objects`] (one object per
//! file) or [`read_yaml`] (one typed file).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};

use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, RuleWithOperations, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_saphyr::{Location, Spanned};

use super::manifest::Twin;
use crate::audit::selection::{self, Labels};
use crate::scenario::ScenarioError;

/// The largest captured file read: 8 MiB. Kubernetes stores objects of at most
/// 1.5 MiB (etcd's request limit); written as YAML, indentation can double that.
pub const MAX_FILE_BYTES: usize = 8 << 20;

/// The deepest nesting read. A CRD's OpenAPI schema nests two levels per property
/// level (`properties: {x: {properties: ...}}`); the deepest real ones stay under 60.
pub const MAX_DEPTH: usize = 128;

/// Nodes after alias expansion: capture writes no aliases, so any number of them
/// expanding past this is an alias bomb, not a twin.
pub const MAX_EXPANDED_EVENTS: usize = 20_000;

/// The parser options every twin file is read with.
fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: Some(MAX_FILE_BYTES),
            max_events: 4_000_000,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_recorded_anchor_events: MAX_EXPANDED_EVENTS,
            max_recorded_anchor_bytes: MAX_FILE_BYTES,
            max_depth: MAX_DEPTH,
            flow_nesting_limit: MAX_DEPTH,
            max_documents: 1,
            max_nodes: 2_000_000,
            max_total_scalar_bytes: MAX_FILE_BYTES,
            max_merge_keys: 1_000,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_EXPANDED_EVENTS,
            max_replay_stack_depth: MAX_DEPTH,
            max_alias_expansions_per_anchor: 1_000,
        },
    }
}

fn error(file: &str, at: Option<Location>, message: String) -> ScenarioError {
    let (line, column) = at.map_or((0, 0), |l| (l.line(), l.column()));
    ScenarioError {
        file: file.to_string(),
        line,
        column,
        message,
    }
}

/// Reads a twin file of at most [`MAX_FILE_BYTES`], never more than one byte past the
/// cap (a huge file or a device is not read into memory).
pub fn read_capped(path: &Path) -> Result<String, ScenarioError> {
    let shown = path.display().to_string();
    let fail = |message: String| error(&shown, None, message);
    let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(fail(format!(
            "the file is larger than {MAX_FILE_BYTES} bytes (8 MiB), the most a twin file may be"
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        fail(format!(
            "cannot read: not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Parses `text` (from `file`) as `T` under the twin's budgets. A mismatch is
/// `file:line:column: field.path: message`, the path as `webhooks[0].rules`.
pub fn parse<T: DeserializeOwned>(text: &str, file: &str) -> Result<T, ScenarioError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(error(
            file,
            None,
            format!(
                "the file is {} bytes; twin files are read up to {MAX_FILE_BYTES}",
                text.len()
            ),
        ));
    }
    let mut path = String::new();
    let parsed = serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = e.path().to_string();
            e.into_inner()
        })
    });
    parsed.map_err(|e| {
        let first = e.to_string();
        let mut message = first
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ");
        if let Some(rest) = message.strip_prefix("line ")
            && let Some((_, after)) = rest.split_once(": ")
        {
            message = after;
        }
        let message = explain_budget(&e, message).unwrap_or_else(|| match message {
            "expected mapping start" => "expected a mapping".to_string(),
            "expected sequence start" => "expected a list".to_string(),
            other => other.to_string(),
        });
        // A `Spanned` field shows in the path as `.value`: not a key of the file.
        let path = path
            .split('.')
            .filter(|segment| *segment != "value")
            .collect::<Vec<_>>()
            .join(".");
        let message = if path.is_empty() || path == "." {
            message
        } else {
            format!("{path}: {message}")
        };
        error(file, e.location(), message)
    })
}

/// The message for a parse error that hit a reading budget (see
/// [`crate::scenario::limits::Limit::of`]), the parser's own `message` kept; `None`
/// for any other error.
fn explain_budget(e: &serde_saphyr::Error, message: &str) -> Option<String> {
    crate::scenario::limits::Limit::of(e).map(|_| {
        format!(
            "refused: over the reading budget of a twin file (nested deeper than {MAX_DEPTH}, aliases expanding past {MAX_EXPANDED_EVENTS} nodes, more than one document, or too many nodes): {message}"
        )
    })
}

/// Reads and parses one typed twin file (`cluster/namespaces.yaml`, or a new part's).
pub fn read_yaml<T: DeserializeOwned>(path: &Path) -> Result<T, ScenarioError> {
    parse(&read_capped(path)?, &path.display().to_string())
}

// ---- Objects ----------------------------------------------------------------------

/// A captured object, validated: recreated as captured, so kept whole in `object`
/// (a mapping whose `metadata.name` is `name`), with the file it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct CapturedObject {
    pub file: PathBuf,
    pub name: String,
    pub object: Value,
}

/// The fields of one kind of captured object that replay reads, typed; what else the
/// object holds is kept in [`CapturedObject::object`] unread.
pub trait View: DeserializeOwned {
    /// The object's `metadata`.
    fn metadata(&self) -> &Metadata;
    /// Checks beyond the types (unique names, valid selectors): `(where, message)`.
    fn check(&self) -> Result<(), (Location, String)> {
        Ok(())
    }
}

/// `metadata`, as replay reads it (Helm's ownership and AKS's enforcer annotations).
#[derive(Clone, Debug, Deserialize)]
#[serde(expecting = "metadata: a mapping with a name")]
pub struct Metadata {
    pub name: Spanned<String>,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
}

/// Any object replay recreates as captured (admission policies and bindings).
#[derive(Debug, Deserialize)]
#[serde(expecting = "an object: a mapping with metadata.name")]
pub struct ObjectView {
    pub metadata: Metadata,
}

impl View for ObjectView {
    fn metadata(&self) -> &Metadata {
        &self.metadata
    }
}

/// A Validating- or MutatingWebhookConfiguration.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a webhook configuration: a mapping with metadata.name and webhooks")]
pub struct ConfigurationView {
    pub metadata: Metadata,
    #[serde(default)]
    pub webhooks: Option<Vec<Spanned<WebhookView>>>,
}

/// One webhook of a configuration: what replay registers and matches with. Required
/// here is what the API server's v1 requires (`name`, `sideEffects`,
/// `admissionReviewVersions`); `clientConfig` is replaced at registration.
#[derive(Debug, Deserialize)]
#[serde(
    rename_all = "camelCase",
    expecting = "a webhook: a mapping with name, sideEffects, admissionReviewVersions, rules"
)]
pub struct WebhookView {
    pub name: Spanned<String>,
    #[serde(default)]
    pub client_config: Option<WebhookClientConfig>,
    #[serde(default)]
    pub rules: Option<Vec<RuleWithOperations>>,
    #[serde(default)]
    pub namespace_selector: Option<Spanned<LabelSelector>>,
    #[serde(default)]
    pub object_selector: Option<Spanned<LabelSelector>>,
    #[serde(default)]
    pub match_conditions: Option<Vec<MatchCondition>>,
    #[serde(default)]
    pub failure_policy: Option<String>,
    #[serde(default)]
    pub match_policy: Option<String>,
    pub side_effects: String,
    pub admission_review_versions: Vec<String>,
    #[serde(default)]
    pub timeout_seconds: Option<i32>,
}

impl View for ConfigurationView {
    fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    fn check(&self) -> Result<(), (Location, String)> {
        let mut seen = BTreeSet::new();
        for (i, w) in self.webhooks.iter().flatten().enumerate() {
            let name = &w.value.name;
            if name.value.is_empty() || !seen.insert(name.value.as_str()) {
                return Err((
                    name.referenced,
                    format!(
                        "webhooks[{i}].name `{}`: expected a name, unique in the configuration",
                        name.value
                    ),
                ));
            }
            for (field, s) in [
                ("namespaceSelector", &w.value.namespace_selector),
                ("objectSelector", &w.value.object_selector),
            ] {
                if let Some(s) = s
                    && let Err(e) = selection::selector_matches(Some(&s.value), &Labels::new())
                {
                    return Err((s.referenced, format!("webhooks[{i}].{field}: {e}")));
                }
            }
        }
        Ok(())
    }
}

/// A CustomResourceDefinition: what replay reads to register it and to find the
/// objects its conversion webhook converts.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a CustomResourceDefinition: a mapping with metadata and spec")]
pub struct CrdView {
    pub metadata: Metadata,
    pub spec: CrdSpec,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "spec: a mapping with group, names and versions")]
pub struct CrdSpec {
    pub group: String,
    pub names: CrdNames,
    #[serde(default)]
    pub versions: Vec<CrdVersion>,
    #[serde(default)]
    pub conversion: Option<CrdConversion>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "spec.names: a mapping with kind and plural")]
pub struct CrdNames {
    pub kind: String,
    pub plural: String,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "spec.versions[]: a mapping with name")]
pub struct CrdVersion {
    pub name: String,
    #[serde(default)]
    pub served: bool,
    #[serde(default)]
    pub storage: bool,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "spec.conversion: a mapping with strategy")]
pub struct CrdConversion {
    pub strategy: Spanned<String>,
    /// Replay points its `clientConfig` at its own server.
    #[serde(default)]
    pub webhook: Option<ConversionWebhook>,
}

#[derive(Debug, Deserialize)]
#[serde(
    rename_all = "camelCase",
    expecting = "spec.conversion.webhook: a mapping"
)]
pub struct ConversionWebhook {
    #[serde(default)]
    pub client_config: Option<WebhookClientConfig>,
}

impl View for CrdView {
    fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    fn check(&self) -> Result<(), (Location, String)> {
        if let Some(c) = &self.spec.conversion
            && !matches!(c.strategy.value.as_str(), "None" | "Webhook")
        {
            return Err((
                c.strategy.referenced,
                format!(
                    "spec.conversion.strategy `{}`: expected None or Webhook",
                    c.strategy.value
                ),
            ));
        }
        Ok(())
    }
}

/// An aggregated APIService with its captured availability.
#[derive(Debug, Deserialize)]
#[serde(expecting = "an APIService: a mapping with metadata.name")]
pub struct ApiServiceView {
    pub metadata: Metadata,
    #[serde(default)]
    pub status: Option<ApiServiceStatus>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "status: a mapping")]
pub struct ApiServiceStatus {
    #[serde(default)]
    pub conditions: Option<Vec<Condition>>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "status.conditions[]: a mapping with type and status")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
}

impl View for ApiServiceView {
    fn metadata(&self) -> &Metadata {
        &self.metadata
    }
}

/// Parses one captured object of view `V` from `text` (read from `file`).
pub fn parse_object<V: View>(text: &str, file: &Path) -> Result<CapturedObject, ScenarioError> {
    let shown = file.display().to_string();
    let view: V = parse(text, &shown)?;
    let name = &view.metadata().name;
    if name.value.is_empty() {
        return Err(error(
            &shown,
            Some(name.referenced),
            "metadata.name: expected a name, found an empty one".into(),
        ));
    }
    view.check()
        .map_err(|(at, message)| error(&shown, Some(at), message))?;
    // The same text, whole: it parsed as the view, so it parses as a mapping.
    let object: Value = parse(text, &shown)?;
    if !object.is_object() {
        return Err(error(&shown, None, "expected a mapping".into()));
    }
    Ok(CapturedObject {
        file: file.to_path_buf(),
        name: name.value.clone(),
        object,
    })
}

/// Every `*.yaml` object in `dir` as view `V`, by file name (none if `dir` does not
/// exist: a part the capture did not find).
pub fn read_objects<V: View>(dir: &Path) -> Result<Vec<CapturedObject>, ScenarioError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| parse_object::<V>(&read_capped(f)?, f))
        .collect()
}

// ---- The surface ------------------------------------------------------------------

/// `cluster/namespaces.yaml`: every namespace with its labels.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a namespace: a mapping with name and labels")]
pub struct CapturedNamespace {
    pub name: Spanned<String>,
    #[serde(default)]
    pub labels: Option<Labels>,
}

/// The captured admission surface, read from the twin's files and validated.
#[derive(Clone, Debug, Default)]
pub struct Surface {
    pub namespaces: Vec<(String, Labels)>,
    pub crds: Vec<CapturedObject>,
    pub validating: Vec<CapturedObject>,
    pub mutating: Vec<CapturedObject>,
    pub policies: Vec<CapturedObject>,
    pub bindings: Vec<CapturedObject>,
    pub apiservices: Vec<CapturedObject>,
    /// Stored custom resources (metadata), recreated around the installs.
    pub stored: Vec<super::stored::StoredObjects>,
}

impl Surface {
    /// Reads `twin.namespaces` and every object under `twin.surface`.
    pub fn load(twin: &Twin) -> Result<Surface, ScenarioError> {
        let listed: Vec<CapturedNamespace> = read_yaml(&twin.namespaces)?;
        let mut namespaces = Vec::with_capacity(listed.len());
        for n in listed {
            if n.name.value.is_empty() {
                return Err(error(
                    &twin.namespaces.display().to_string(),
                    Some(n.name.referenced),
                    "name: expected a namespace name, found an empty one".into(),
                ));
            }
            namespaces.push((n.name.value, n.labels.unwrap_or_default()));
        }
        let dir = |d: &str| twin.surface.join(d);
        Ok(Surface {
            namespaces,
            crds: read_objects::<CrdView>(&dir("customresourcedefinitions"))?,
            validating: read_objects::<ConfigurationView>(&dir("validatingwebhookconfigurations"))?,
            mutating: read_objects::<ConfigurationView>(&dir("mutatingwebhookconfigurations"))?,
            policies: read_objects::<ObjectView>(&dir("validatingadmissionpolicies"))?,
            bindings: read_objects::<ObjectView>(&dir("validatingadmissionpolicybindings"))?,
            apiservices: read_objects::<ApiServiceView>(&dir("apiservices"))?,
            stored: match &twin.custom_resources {
                Some(d) => read_stored(d)?,
                None => Vec::new(),
            },
        })
    }
}

/// Every CRD's stored objects under `dir` (one `*.yaml` per CRD), typed.
fn read_stored(dir: &Path) -> Result<Vec<super::stored::StoredObjects>, ScenarioError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut files: Vec<std::path::PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files.iter().map(|f| read_yaml(f)).collect()
}

// ---- Fuzzing ----------------------------------------------------------------------

/// One kind of captured object's loader ([`parse_object`] at a view).
type Loader = fn(&str, &Path) -> Result<CapturedObject, ScenarioError>;

/// A property of a loaded object (panics when it fails).
type Writable = fn(&Value);

/// Every loader of twin files on one `text`, asserting what replay relies on: the text
/// as each kind of surface object, as `namespaces.yaml`, and as a whole twin (written
/// into `scratch` as `twin.yaml` and as every file it names) loaded the way `run` and
/// `validate` load it. Panics when a property fails: a panic anywhere, an object that
/// is not a mapping, a webhook entry or a conversion webhook replay cannot write into,
/// a refusal without the file's name or with a position outside the text. The fuzz
/// target `twin` and the seed test call it.
#[doc(hidden)]
pub fn check_every_loader(text: &str, scratch: &Path) {
    let file = Path::new("cluster/x/object.yaml");
    let lines = text.replace("\r\n", "\n").split(['\n', '\r']).count() as u64;
    let refusal = |e: &ScenarioError, file: &str| {
        assert_eq!(e.file, file, "{e}");
        assert!(!e.message.is_empty(), "an empty message for {text:?}");
        assert!(e.line <= lines + 1, "line {} of {lines}: {e}", e.line);
        if e.line == 0 {
            assert!(
                e.message.starts_with("the file is") || e.message.starts_with("cannot read"),
                "no position: {e}"
            );
        }
    };
    let shown = file.display().to_string();
    let loaders: [(Loader, Writable); 4] = [
        (parse_object::<CrdView>, crd_can_be_written),
        (
            parse_object::<ConfigurationView>,
            configuration_can_be_written,
        ),
        (parse_object::<ObjectView>, object_can_be_written),
        (parse_object::<ApiServiceView>, object_can_be_written),
    ];
    for (load, writable) in loaders {
        match load(text, file) {
            Ok(o) => writable(&o.object),
            Err(e) => refusal(&e, &shown),
        }
    }
    if let Err(e) = parse::<Vec<CapturedNamespace>>(text, "namespaces.yaml") {
        refusal(&e, "namespaces.yaml");
    }
    let cluster = scratch.join("cluster");
    for part in [
        "customresourcedefinitions",
        "validatingwebhookconfigurations",
        "apiservices",
    ] {
        std::fs::create_dir_all(cluster.join(part)).expect("a scratch folder");
        std::fs::write(cluster.join(part).join("x.yaml"), text).expect("a scratch file");
    }
    std::fs::write(cluster.join("namespaces.yaml"), text).expect("a scratch file");
    std::fs::write(scratch.join("twin.yaml"), text).expect("a scratch file");
    let twin_file = scratch.join("twin.yaml").display().to_string();
    match super::manifest::load(scratch) {
        Ok(twin) => {
            if let Ok(s) = Surface::load(&twin) {
                s.crds.iter().for_each(|o| crd_can_be_written(&o.object));
                s.validating
                    .iter()
                    .for_each(|o| configuration_can_be_written(&o.object));
                s.apiservices
                    .iter()
                    .for_each(|o| object_can_be_written(&o.object));
            }
        }
        Err(e) => refusal(&e, &twin_file),
    }
}

/// What replay assigns into (`serde_json`'s `IndexMut` panics on anything but a
/// mapping or null there): the object itself (an admission policy's `apiVersion`)...
fn object_can_be_written(object: &Value) {
    assert!(object.is_object(), "{object}");
}

/// ... each webhook of a configuration (its `clientConfig`, `namespaceSelector`)...
fn configuration_can_be_written(object: &Value) {
    object_can_be_written(object);
    for w in object["webhooks"].as_array().into_iter().flatten() {
        assert!(w.is_object(), "a webhook entry {w}");
    }
}

/// ... and a CRD's `spec.conversion.webhook.clientConfig`.
fn crd_can_be_written(object: &Value) {
    object_can_be_written(object);
    let spec = &object["spec"];
    assert!(spec.is_object(), "{spec}");
    let conversion = &spec["conversion"];
    assert!(
        conversion.is_object() || conversion.is_null(),
        "{conversion}"
    );
    let webhook = &conversion["webhook"];
    assert!(webhook.is_object() || webhook.is_null(), "{webhook}");
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: guard
  annotations:
    meta.helm.sh/release-name: shop
webhooks:
- name: delete-guard.policy.corp
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Fail
  clientConfig:
    service: {name: guard, namespace: policy, port: 443}
  rules:
  - operations: [DELETE]
    apiGroups: ['*']
    apiVersions: ['*']
    resources: ['*']
  namespaceSelector:
    matchExpressions:
    - {key: team, operator: In, values: [shop]}
  futureField: {kept: true}
";

    fn config(text: &str) -> Result<CapturedObject, ScenarioError> {
        parse_object::<ConfigurationView>(text, Path::new("cluster/v/guard.yaml"))
    }

    #[test]
    fn a_captured_configuration_loads_whole() {
        let c = config(CONFIG).unwrap();
        assert_eq!(c.name, "guard");
        // Unknown fields are kept: the configuration is recreated as captured.
        assert_eq!(c.object["webhooks"][0]["futureField"]["kept"], true);
    }

    #[test]
    fn a_webhook_entry_that_is_not_a_mapping_is_refused_with_its_position() {
        let text = CONFIG.replace(
            "- name: delete-guard.policy.corp\n",
            "- just a string\n- name: delete-guard.policy.corp\n",
        );
        let err = config(&text).unwrap_err();
        eprintln!("{err}");
        assert_eq!(err.file, "cluster/v/guard.yaml");
        assert_eq!((err.line, err.column), (8, 3), "{err}");
        assert_eq!(err.message, "webhooks[0]: expected a mapping", "{err}");
    }

    #[test]
    fn wrong_shapes_name_the_field() {
        for (from, to, line, path) in [
            (
                "  rules:\n  - operations",
                "  rules: DELETE\n  x:\n  - operations",
                14,
                "webhooks[0].rules",
            ),
            (
                "    service: {name: guard, namespace: policy, port: 443}",
                "    service: [guard]",
                13,
                "webhooks[0].clientConfig.service",
            ),
            (
                "    - {key: team, operator: In, values: [shop]}",
                "    - {key: team, operator: Near, values: [shop]}",
                20,
                "webhooks[0].namespaceSelector",
            ),
            ("  name: guard\n", "  name: [guard]\n", 4, "metadata.name"),
            ("  sideEffects: None\n", "", 0, "webhooks[0]"),
        ] {
            let text = CONFIG.replace(from, to);
            assert_ne!(text, CONFIG, "{from}");
            let err = config(&text).unwrap_err();
            eprintln!("{err}");
            assert!(err.message.starts_with(path), "{path}: {err}");
            if line > 0 {
                assert_eq!(err.line, line, "{path}: {err}");
            }
        }
    }

    #[test]
    fn crds_and_apiservices_are_checked_where_replay_writes_into_them() {
        let crd = "metadata: {name: widgets.preflight.dev}\nspec:\n  group: preflight.dev\n  names: {kind: Widget, plural: widgets}\n  versions: [{name: v1, served: true, storage: true}]\n  conversion:\n    strategy: Webhook\n    webhook: {clientConfig: {url: 'https://x'}}\n  schemaKept: {deep: [1, 2]}\n";
        let ok = parse_object::<CrdView>(crd, Path::new("c.yaml")).unwrap();
        assert_eq!(ok.object["spec"]["schemaKept"]["deep"][1], 2);
        // Replay assigns into spec.conversion.webhook.clientConfig: a string there
        // would panic serde_json's IndexMut.
        let bad = crd.replace(
            "webhook: {clientConfig: {url: 'https://x'}}",
            "webhook: broken",
        );
        let err = parse_object::<CrdView>(&bad, Path::new("c.yaml")).unwrap_err();
        assert_eq!(err.line, 8, "{err}");
        assert!(err.message.starts_with("spec.conversion.webhook"), "{err}");
        let bad = crd.replace("strategy: Webhook", "strategy: Sometimes");
        let err = parse_object::<CrdView>(&bad, Path::new("c.yaml")).unwrap_err();
        assert!(err.message.contains("expected None or Webhook"), "{err}");

        let svc = "metadata: {name: v1.metrics.example}\nstatus:\n  conditions: [Available]\n";
        let err = parse_object::<ApiServiceView>(svc, Path::new("a.yaml")).unwrap_err();
        assert_eq!(
            (err.line, err.message.as_str()),
            (3, "status.conditions[0]: expected a mapping"),
            "{err}"
        );
        // Not a mapping at all: a list where an object should be.
        let err = parse_object::<ObjectView>("- a\n- b\n", Path::new("p.yaml")).unwrap_err();
        assert_eq!(err.line, 1, "{err}");
        let err =
            parse_object::<ObjectView>("metadata: {name: ''}\n", Path::new("p.yaml")).unwrap_err();
        assert!(err.message.starts_with("metadata.name"), "{err}");
    }

    #[test]
    fn reading_is_bounded() {
        let deep = format!(
            "metadata: {{name: x}}\nspec: {}{}\n",
            "[".repeat(MAX_DEPTH + 10),
            "]".repeat(MAX_DEPTH + 10)
        );
        let err = parse_object::<ObjectView>(&deep, Path::new("d.yaml")).unwrap_err();
        assert!(err.message.contains("refused"), "{err}");
        assert!(err.line > 0, "{err}");
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nmetadata: {name: x}\n";
        let err = parse_object::<ObjectView>(bomb, Path::new("b.yaml")).unwrap_err();
        assert!(err.message.contains("refused"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.yaml");
        std::fs::write(&big, vec![b'#'; MAX_FILE_BYTES + 1]).unwrap();
        let err = read_capped(&big).unwrap_err();
        assert!(err.message.contains("larger than"), "{err}");
    }

    /// A twin on disk: twin.yaml, namespaces and one configuration.
    fn twin_dir(namespaces: &str, config: &str) -> (tempfile::TempDir, Twin) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("cluster/validatingwebhookconfigurations")).unwrap();
        std::fs::write(d.join("cluster/namespaces.yaml"), namespaces).unwrap();
        std::fs::write(
            d.join("cluster/validatingwebhookconfigurations/guard.yaml"),
            config,
        )
        .unwrap();
        std::fs::write(d.join("twin.yaml"), "name: twin\ntwin:\n  kubernetesVersion: v1.30.7\n  namespaces: cluster/namespaces.yaml\n  surface: cluster\n  releases: []\n").unwrap();
        let twin = super::super::manifest::load(d).unwrap();
        (dir, twin)
    }

    #[test]
    fn the_surface_loads_validated_or_names_the_file() {
        let (_dir, twin) = twin_dir(
            "- name: shop\n  labels: {team: shop, 'on': 'true', n: '10'}\n",
            CONFIG,
        );
        let s = Surface::load(&twin).unwrap();
        assert_eq!(s.validating.len(), 1);
        assert_eq!(s.namespaces[0].1["on"], "true");
        assert_eq!(s.namespaces[0].1["n"], "10");

        // What the old loader accepted and replay then indexed into (a panic).
        let bad = CONFIG.replace(
            "- name: delete-guard.policy.corp\n",
            "- 42\n- name: delete-guard.policy.corp\n",
        );
        let (_dir, twin) = twin_dir("[]", &bad);
        let err = Surface::load(&twin).unwrap_err();
        assert!(
            err.file
                .ends_with("cluster/validatingwebhookconfigurations/guard.yaml"),
            "{err}"
        );
        assert_eq!((err.line, err.column), (8, 3), "{err}");

        let (_dir, twin) = twin_dir("- shop\n", CONFIG);
        let err = Surface::load(&twin).unwrap_err();
        assert!(err.file.ends_with("cluster/namespaces.yaml"), "{err}");
        assert_eq!(err.message, "[0]: expected a mapping", "{err}");
    }

    #[test]
    fn captured_label_values_round_trip_as_strings() {
        // capture writes namespaces with write_yaml; strings that look like other
        // scalars must come back as the same strings.
        let labels: Labels = [
            ("a", "true"),
            ("b", "10"),
            ("c", "null"),
            ("d", "1e3"),
            ("e", "~"),
            ("f", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let text =
            serde_saphyr::to_string(&serde_json::json!([{"name": "x", "labels": labels}])).unwrap();
        let back: Vec<CapturedNamespace> = parse(&text, "n.yaml").unwrap();
        assert_eq!(back[0].labels.as_ref(), Some(&labels), "{text}");
    }

    /// The fuzz target's seeds, on stable: each loads or is refused, never a panic.
    #[test]
    fn every_fuzz_seed_loads_or_is_refused() {
        let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/twin");
        let mut n = 0;
        for entry in std::fs::read_dir(&seeds).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let scratch = tempfile::tempdir().unwrap();
            check_every_loader(&text, scratch.path());
            n += 1;
        }
        assert!(n >= 8, "{n} seeds in {}", seeds.display());
        // The seeds mean what their names say.
        let seed = |name: &str| std::fs::read_to_string(seeds.join(name)).unwrap();
        assert!(
            parse_object::<ConfigurationView>(&seed("validating.yaml"), Path::new("v")).is_ok()
        );
        assert!(parse_object::<ConfigurationView>(&seed("mutating.yaml"), Path::new("m")).is_ok());
        assert!(parse_object::<CrdView>(&seed("crd.yaml"), Path::new("c")).is_ok());
        assert!(parse_object::<ApiServiceView>(&seed("apiservice.yaml"), Path::new("a")).is_ok());
        assert!(parse_object::<ObjectView>(&seed("policy.yaml"), Path::new("p")).is_ok());
        assert!(parse::<Vec<CapturedNamespace>>(&seed("namespaces.yaml"), "n").is_ok());
        assert!(
            parse_object::<ConfigurationView>(
                &seed("webhook-entry-not-a-mapping.yaml"),
                Path::new("b")
            )
            .is_err()
        );
        assert!(parse_object::<ObjectView>(&seed("alias-bomb.yaml"), Path::new("b")).is_err());
        // twin.yaml with its files in place loads.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("cluster")).unwrap();
        std::fs::write(
            dir.path().join("cluster/namespaces.yaml"),
            seed("namespaces.yaml"),
        )
        .unwrap();
        std::fs::write(dir.path().join("twin.yaml"), seed("twin.yaml")).unwrap();
        let twin = super::super::manifest::load(dir.path()).unwrap();
        assert_eq!(Surface::load(&twin).unwrap().namespaces.len(), 2);
    }

    #[test]
    fn twin_yaml_is_read_under_the_budgets() {
        // Not read past the cap (the old loader read any size into memory).
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("twin.yaml"), vec![b'#'; MAX_FILE_BYTES + 1]).unwrap();
        let err = super::super::manifest::load(dir.path()).unwrap_err();
        assert!(err.message.contains("larger than"), "{err}");
        // A mistake names the field's path and its place.
        let text = "name: twin\ntwin:\n  kubernetesVersion: v1.30.7\n  namespaces: [a]\n";
        std::fs::write(dir.path().join("twin.yaml"), text).unwrap();
        let err = super::super::manifest::load(dir.path()).unwrap_err();
        assert_eq!((err.line, err.column), (4, 15), "{err}");
        assert!(err.message.starts_with("twin.namespaces"), "{err}");
    }
}
