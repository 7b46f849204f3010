//! Stored custom resources: captured as metadata, recreated as minimal objects.
//!
//! A CRD with objects is not the same as a CRD without: its conversion webhook is
//! called for them (by every list at another version, and by the garbage collector's
//! informer), and the garbage collector follows their owner links. So `capture`
//! records, per CRD, the objects it serves, metadata only (name, namespace, labels,
//! annotations that are not credentials, owner references, finalizers; never spec or
//! status), at most [`DEFAULT_LIMIT`] per CRD (`--max-custom-resources`), and how many
//! there were. The replay recreates them at the storage version with the same metadata
//! and owner links resolved to the replayed objects, and a body that only fills what
//! the CRD's schema requires.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::{GroupVersionKind, ObjectMeta};
use kube::discovery::ApiResource;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::manifest::RedactionEntry;

/// How many objects of one CRD a capture keeps by default.
pub const DEFAULT_LIMIT: usize = 500;

/// One CRD's stored objects, as `cluster/customresources/CRD.yaml` holds them.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoredObjects {
    /// The CRD's name (`widgets.example.com`).
    pub crd: String,
    /// `group/version` of the storage version, where the replay recreates them.
    pub api_version: String,
    pub kind: String,
    pub namespaced: bool,
    /// How many objects the CRD served when captured, the captured releases' own left
    /// out (more than `objects` when the limit cut them).
    pub total: usize,
    pub objects: Vec<StoredObject>,
}

/// One object's metadata.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoredObject {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<OwnerLink>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
}

/// An owner reference without the live uid (the replayed owner has another).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OwnerLink {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub controller: bool,
    #[serde(default)]
    pub block_owner_deletion: bool,
}

/// A CRD's stored objects in `capture.json`: how many, how many kept.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StoredCount {
    pub crd: String,
    pub api_version: String,
    pub total: usize,
    pub kept: usize,
    /// The twin file that holds them (relative to the twin).
    pub file: String,
}

/// The storage version of a CRD as an API resource, and whether it is namespaced.
pub fn storage_resource(crd: &Value) -> Option<(ApiResource, bool)> {
    let spec = crd.get("spec")?;
    let group = spec.get("group")?.as_str()?;
    let version = spec
        .get("versions")?
        .as_array()?
        .iter()
        .find(|v| v.get("storage") == Some(&Value::Bool(true)))?
        .get("name")?
        .as_str()?;
    Some((
        ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: format!("{group}/{version}"),
            kind: spec.pointer("/names/kind")?.as_str()?.into(),
            plural: spec.pointer("/names/plural")?.as_str()?.into(),
        },
        spec.get("scope").and_then(Value::as_str) == Some("Namespaced"),
    ))
}

/// Reads one CRD's objects (metadata-only lists at the storage version, which never
/// needs the conversion webhook), keeping at most `limit`.
/// One CRD's capture.
pub struct Captured {
    pub objects: StoredObjects,
    /// `(object, annotation path)` of every annotation value redacted.
    pub redacted: Vec<(String, String)>,
    /// Every object the CRD served, the releases' included.
    pub all: usize,
}

/// Objects a captured release owns (Helm's ownership annotations name it) are left
/// out: the replay's install of that release creates them.
pub async fn capture(
    client: &kube::Client,
    crd: &Value,
    limit: usize,
    releases: &BTreeSet<(String, String)>,
) -> Result<Option<Captured>, kube::Error> {
    let Some((ar, namespaced)) = storage_resource(crd) else {
        return Ok(None);
    };
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let mut out = StoredObjects {
        crd: crd["metadata"]["name"].as_str().unwrap_or_default().into(),
        api_version: ar.api_version.clone(),
        kind: ar.kind.clone(),
        namespaced,
        ..Default::default()
    };
    let listed = crate::pager::list_all_metadata(&api, &ListParams::default(), 500).await?;
    let all = listed.len();
    let mut redacted = Vec::new();
    for o in listed
        .into_iter()
        .filter(|o| !released(&o.metadata, releases))
    {
        out.total += 1;
        if out.objects.len() < limit {
            let (obj, r) = of_meta(o.metadata);
            redacted.extend(r);
            out.objects.push(obj);
        }
    }
    Ok(Some(Captured {
        objects: out,
        redacted,
        all,
    }))
}

/// Whether Helm's ownership annotations name one of `releases` (namespace, name).
fn released(meta: &ObjectMeta, releases: &BTreeSet<(String, String)>) -> bool {
    let a = meta.annotations.as_ref();
    let get = |k: &str| a.and_then(|a| a.get(k)).cloned();
    match (
        get("meta.helm.sh/release-namespace"),
        get("meta.helm.sh/release-name"),
    ) {
        (Some(ns), Some(name)) => releases.contains(&(ns, name)),
        _ => false,
    }
}

/// The metadata the twin keeps, and `(object, annotation path)` of every annotation
/// value redacted (by the same rules as values: key names and PEM content).
fn of_meta(meta: ObjectMeta) -> (StoredObject, Vec<(String, String)>) {
    let name = meta.name.unwrap_or_default();
    let mut annotations: BTreeMap<String, String> = meta.annotations.unwrap_or_default();
    annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    let mut as_value = serde_json::to_value(&annotations).unwrap_or_default();
    let redactions = super::values::redact(&mut as_value);
    let annotations = serde_json::from_value(as_value).unwrap_or_default();
    let at = match &meta.namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.clone(),
    };
    let redacted = redactions
        .into_iter()
        .map(|r| {
            let sep = if r.path.starts_with('[') { "" } else { "." };
            (at.clone(), format!("annotations{sep}{}", r.path))
        })
        .collect();
    let object = StoredObject {
        name,
        namespace: meta.namespace,
        labels: meta.labels.unwrap_or_default(),
        annotations,
        owner_references: meta
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .map(|o| OwnerLink {
                api_version: o.api_version,
                kind: o.kind,
                name: o.name,
                controller: o.controller.unwrap_or(false),
                block_owner_deletion: o.block_owner_deletion.unwrap_or(false),
            })
            .collect(),
        finalizers: meta.finalizers.unwrap_or_default(),
    };
    (object, redacted)
}

/// Writes one CRD's objects under `cluster/customresources/` and returns its count
/// entry and its redactions.
pub fn write(
    out: &Path,
    stored: &StoredObjects,
    redacted: Vec<(String, String)>,
) -> Result<(StoredCount, Vec<RedactionEntry>), super::capture::CaptureError> {
    let file =
        PathBuf::from(super::capture::CUSTOM_RESOURCES_DIR).join(format!("{}.yaml", stored.crd));
    let value = serde_json::to_value(stored).map_err(|e| super::capture::CaptureError::Encode {
        what: file.display().to_string(),
        message: e.to_string(),
    })?;
    super::capture::write_yaml(&out.join(&file), &value)?;
    let redactions = redacted
        .into_iter()
        .map(|(object, path)| RedactionEntry {
            file: file.display().to_string(),
            path: format!("{object}: {path}"),
            reason: "annotation value that may be a credential".into(),
        })
        .collect();
    Ok((
        StoredCount {
            crd: stored.crd.clone(),
            api_version: stored.api_version.clone(),
            total: stored.total,
            kept: stored.objects.len(),
            file: file.display().to_string(),
        },
        redactions,
    ))
}

/// Which object of a twin's stored objects: (file, object) indices.
pub type ObjectId = (usize, usize);

/// What recreating stored objects did.
#[derive(Debug, Default)]
pub struct Recreated {
    pub created: usize,
    /// Objects left for after the installs: an owner of theirs is not there yet
    /// (a release's object, presumably).
    pub deferred: Vec<ObjectId>,
    /// uids of objects recreated without an owner link that nothing in the replay
    /// could resolve: for the replay they are objects the cluster already had.
    pub unowned: Vec<String>,
    /// Objects not recreated, or recreated without an owner link, and why.
    pub notes: Vec<String>,
}

/// Recreates stored objects at their storage version (`only`: these; else all).
/// Owners come first (an owner that is itself a stored object is created before its
/// dependents), owner links are resolved to the replayed objects by kind and name.
/// Before the installs (`last` false) an object with an owner not there yet is
/// deferred; after them (`last` true) such a link is dropped and said (kept, the
/// garbage collector would delete the object at once, which the captured cluster did
/// not) and the object counts as one the cluster already had. Finalizers are
/// recorded, not recreated: no controller runs here to remove them.
pub async fn recreate(
    client: &kube::Client,
    stored: &[StoredObjects],
    only: Option<&[ObjectId]>,
    crds: &[super::load::CapturedObject],
    last: bool,
) -> Recreated {
    let mut done = Recreated::default();
    let mut pending: Vec<ObjectId> = match only {
        Some(ids) => ids.to_vec(),
        None => stored
            .iter()
            .enumerate()
            .flat_map(|(f, s)| (0..s.objects.len()).map(move |o| (f, o)))
            .collect(),
    };
    let key = |(f, o): ObjectId| {
        let (s, x) = (&stored[f], &stored[f].objects[o]);
        (s.kind.clone(), x.name.clone(), x.namespace.clone())
    };
    let stored_keys: BTreeSet<_> = stored
        .iter()
        .enumerate()
        .flat_map(|(f, s)| (0..s.objects.len()).map(move |o| (f, o)))
        .map(key)
        .collect();
    let mut uids: BTreeMap<(String, String, Option<String>), String> = BTreeMap::new();
    while !pending.is_empty() {
        // Each round creates what has every stored owner created.
        let (ready, waiting): (Vec<ObjectId>, Vec<ObjectId>) =
            pending.into_iter().partition(|&(f, o)| {
                let x = &stored[f].objects[o];
                x.owner_references.iter().all(|r| {
                    let k = (r.kind.clone(), r.name.clone(), x.namespace.clone());
                    !stored_keys.contains(&k) || uids.contains_key(&k)
                })
            });
        if ready.is_empty() {
            if last {
                for &(f, o) in &waiting {
                    done.notes.push(format!(
                        "{} {}: not recreated: its owners are not recreated (a cycle, or owners that failed)",
                        stored[f].kind,
                        at(&stored[f].objects[o])
                    ));
                }
            } else {
                done.deferred.extend(waiting);
            }
            break;
        }
        for id in ready {
            let (s, o) = (&stored[id.0], &stored[id.0].objects[id.1]);
            let owners = match resolve_owners(client, s, o, &uids, last).await {
                Some(owners) => owners,
                None => {
                    done.deferred.push(id);
                    continue;
                }
            };
            match create_one(client, s, o, crds, &owners.links).await {
                Ok(uid) => {
                    done.created += 1;
                    done.notes.extend(owners.dropped);
                    if owners.any_dropped {
                        done.unowned.push(uid.clone());
                    }
                    uids.insert(key(id), uid);
                }
                Err(e) => done
                    .notes
                    .push(format!("{} {}: not recreated: {e:#}", s.kind, at(o))),
            }
        }
        pending = waiting;
    }
    done
}

/// An object's owner links resolved in the replay.
struct Owners {
    links: Vec<Value>,
    dropped: Vec<String>,
    any_dropped: bool,
}

/// Resolves `o`'s owner links; `None` (not `last`) when one is not there yet.
async fn resolve_owners(
    client: &kube::Client,
    s: &StoredObjects,
    o: &StoredObject,
    uids: &BTreeMap<(String, String, Option<String>), String>,
    last: bool,
) -> Option<Owners> {
    let mut owners = Owners {
        links: Vec::new(),
        dropped: Vec::new(),
        any_dropped: false,
    };
    for r in &o.owner_references {
        let key = (r.kind.clone(), r.name.clone(), o.namespace.clone());
        let uid = match uids.get(&key) {
            Some(uid) => Some(uid.clone()),
            None => owner_uid(client, r, o.namespace.as_deref()).await,
        };
        match uid {
            Some(uid) => owners.links.push(json!({
                "apiVersion": r.api_version, "kind": r.kind, "name": r.name, "uid": uid,
                "controller": r.controller, "blockOwnerDeletion": r.block_owner_deletion,
            })),
            None if !last => return None,
            None => {
                owners.any_dropped = true;
                owners.dropped.push(format!(
                    "{} {}: owner {} {} is not in the replay: recreated without that owner link",
                    s.kind,
                    at(o),
                    r.kind,
                    r.name
                ));
            }
        }
    }
    Some(owners)
}

fn at(o: &StoredObject) -> String {
    match &o.namespace {
        Some(ns) => format!("{ns}/{}", o.name),
        None => o.name.clone(),
    }
}

/// The OpenAPI schema of `crd`'s version in `api_version`, from the captured CRDs.
fn crd_schema<'a>(
    crds: &'a [super::load::CapturedObject],
    crd: &str,
    api_version: &str,
) -> Option<&'a Value> {
    let version = api_version.rsplit('/').next()?;
    crds.iter()
        .find(|c| c.name == crd)?
        .object
        .pointer("/spec/versions")?
        .as_array()?
        .iter()
        .find(|v| v["name"] == version)?
        .pointer("/schema/openAPIV3Schema")
}

/// Creates one object with the owner links given; returns its new uid.
async fn create_one(
    client: &kube::Client,
    s: &StoredObjects,
    o: &StoredObject,
    crds: &[super::load::CapturedObject],
    owners: &[Value],
) -> anyhow::Result<String> {
    let schema = crd_schema(crds, &s.crd, &s.api_version);
    let mut body = schema.map(minimal).unwrap_or_else(|| json!({}));
    if !body.is_object() {
        body = json!({});
    }
    body["apiVersion"] = json!(s.api_version);
    body["kind"] = json!(s.kind);
    body["metadata"] = json!({
        "name": o.name,
        "labels": o.labels,
        "annotations": o.annotations,
        "ownerReferences": owners,
    });
    if let Some(ns) = &o.namespace {
        body["metadata"]["namespace"] = json!(ns);
    }
    let (group, version) = match s.api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", s.api_version.as_str()),
    };
    // The captured CRD names its plural (no discovery request per object).
    let ar = match crds
        .iter()
        .find(|c| c.name == s.crd)
        .and_then(|c| storage_resource(&c.object))
    {
        Some((ar, _)) => ar,
        None => {
            kube::discovery::pinned_kind(client, &GroupVersionKind::gvk(group, version, &s.kind))
                .await
                .context("the CRD is not served here")?
                .0
        }
    };
    let api: Api<DynamicObject> = match &o.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    let obj: DynamicObject = serde_json::from_value(body)?;
    let created = api.create(&PostParams::default(), &obj).await?;
    Ok(created.metadata.uid.unwrap_or_default())
}

/// The uid of a replayed object by kind and name (in `namespace` when it is
/// namespaced there), if the replay has it.
async fn owner_uid(
    client: &kube::Client,
    r: &OwnerLink,
    namespace: Option<&str>,
) -> Option<String> {
    let (group, version) = match r.api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", r.api_version.as_str()),
    };
    let (ar, caps) =
        kube::discovery::pinned_kind(client, &GroupVersionKind::gvk(group, version, &r.kind))
            .await
            .ok()?;
    let api: Api<DynamicObject> = match (caps.scope, namespace) {
        (kube::discovery::Scope::Namespaced, Some(ns)) => {
            Api::namespaced_with(client.clone(), ns, &ar)
        }
        _ => Api::all_with(client.clone(), &ar),
    };
    api.get_opt(&r.name).await.ok()??.metadata.uid
}

/// A value that satisfies what `schema` requires and nothing more: each required
/// property with the least value of its type (an enum's first value, a minimum, a
/// string of the minimum length), objects and arrays walked for their own required
/// parts. What cannot be satisfied this way makes the API server refuse the object,
/// which the replay says.
pub fn minimal(schema: &Value) -> Value {
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    if let Some(d) = schema.get("default") {
        return d.clone();
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") | None => {
            let mut out = serde_json::Map::new();
            let required = schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str);
            for key in required {
                if matches!(key, "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let sub = schema
                    .pointer(&format!(
                        "/properties/{}",
                        key.replace('~', "~0").replace('/', "~1")
                    ))
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "string"}));
                out.insert(key.to_string(), minimal(&sub));
            }
            Value::Object(out)
        }
        Some("array") => {
            let n = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0);
            let item = schema.get("items").map(minimal).unwrap_or(Value::Null);
            Value::Array((0..n.min(16)).map(|_| item.clone()).collect())
        }
        Some("string") => {
            let n = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0);
            Value::String("x".repeat(n.min(256) as usize))
        }
        Some("integer") | Some("number") => {
            schema.get("minimum").cloned().unwrap_or_else(|| json!(0))
        }
        Some("boolean") => json!(false),
        Some(_) => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_bodies_fill_only_what_the_schema_requires() {
        let schema = json!({
            "type": "object",
            "required": ["spec"],
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["size", "mode", "name", "ports", "on"],
                    "properties": {
                        "size": {"type": "integer", "minimum": 2},
                        "mode": {"type": "string", "enum": ["fast", "slow"]},
                        "name": {"type": "string", "minLength": 3},
                        "ports": {"type": "array", "minItems": 1, "items": {"type": "integer"}},
                        "on": {"type": "boolean"},
                        "optional": {"type": "string"},
                    },
                },
                "status": {"type": "object"},
            },
        });
        assert_eq!(
            minimal(&schema),
            json!({"spec": {"size": 2, "mode": "fast", "name": "xxx", "ports": [0], "on": false}})
        );
        assert_eq!(
            minimal(&json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})),
            json!({})
        );
    }

    #[test]
    fn the_storage_version_is_where_objects_are_read_and_recreated() {
        let crd = json!({
            "metadata": {"name": "widgets.x.dev"},
            "spec": {
                "group": "x.dev", "scope": "Namespaced",
                "names": {"kind": "Widget", "plural": "widgets"},
                "versions": [
                    {"name": "v2", "served": true, "storage": false},
                    {"name": "v1", "served": true, "storage": true},
                ],
            },
        });
        let (ar, namespaced) = storage_resource(&crd).unwrap();
        assert_eq!((ar.api_version.as_str(), namespaced), ("x.dev/v1", true));
    }

    #[test]
    fn credentials_in_annotations_never_reach_the_twin() {
        let meta = ObjectMeta {
            name: Some("w".into()),
            namespace: Some("shop".into()),
            annotations: Some(
                [
                    ("example.com/api-token".to_string(), "tok-123".to_string()),
                    ("example.com/owner".to_string(), "team-a".to_string()),
                    (
                        "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                        "{\"password\":\"x\"}".to_string(),
                    ),
                ]
                .into(),
            ),
            owner_references: Some(vec![
                k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    name: "web".into(),
                    uid: "live-uid".into(),
                    controller: Some(true),
                    block_owner_deletion: None,
                },
            ]),
            finalizers: Some(vec!["x.dev/cleanup".into()]),
            ..Default::default()
        };
        let (o, redacted) = of_meta(meta);
        let text = serde_json::to_string(&o).unwrap();
        assert!(
            !text.contains("tok-123") && !text.contains("live-uid"),
            "{text}"
        );
        assert!(!text.contains("last-applied"), "{text}");
        assert_eq!(o.annotations["example.com/owner"], "team-a");
        assert_eq!(redacted.len(), 1, "{redacted:?}");
        assert_eq!(o.owner_references[0].kind, "Deployment");
        assert!(o.owner_references[0].controller);
        assert_eq!(o.finalizers, ["x.dev/cleanup"]);
    }
}
