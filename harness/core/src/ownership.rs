//! The one orphan rule, with the garbage collector's semantics.
//!
//! The garbage collector (`attemptToDeleteItem` in kube-controller-manager) looks up
//! each ownerReference of a dependent by the owner's apiVersion and kind (a mapping
//! that must exist), then GETs the owner by name: in the dependent's namespace for a
//! namespaced owner kind, cluster-wide for a cluster-scoped one. A reference is
//! *dangling* (absent) when that GET finds nothing or an object with another uid. The
//! dependent is collected only when none of its owners is solid (present). A
//! cluster-scoped dependent that names a namespaced owner kind is never resolved (the
//! GC records an `OwnerRefInvalidNamespace` event and forgets the item), so it is never
//! collected; a namespaced dependent whose namespaced owner lives in another namespace
//! has that reference treated as absent.
//!
//! Here the lookups are answered from a [`Snapshot`]: an owner is absent only when
//! its kind was listed (in [`Snapshot::listed`]) where the GC would look for it.
//! Whatever was not listed (not served, unlistable, a noise type, or a cluster-scoped
//! kind in a namespaced snapshot) is [`OwnerState::Unknown`], and so is the dependent.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use crate::snapshot::{ListedType, ObjectRecord, Owner, Snapshot};

/// Why an owner reference could not be judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownWhy {
    /// The owner's group and kind were not listed in this snapshot.
    KindNotListed,
    /// The kind is listed, but not at the reference's apiVersion, which the server does
    /// not serve: the GC cannot map it and retries without collecting.
    VersionNotServed,
    /// A namespaced owner kind, but the dependent's namespace is outside the snapshot.
    NamespaceNotListed,
}

/// What the garbage collector would find for one owner reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnerState {
    /// An object of that kind, name and uid exists where the GC looks for it.
    Present,
    /// Its kind was listed where the GC looks and no such object exists.
    Absent,
    /// A namespaced owner whose uid exists only in another namespace: the GC looks in
    /// the dependent's namespace only, so the reference is absent.
    AbsentOtherNamespace { namespace: String },
    /// A cluster-scoped dependent naming a namespaced owner kind: the GC never resolves
    /// it and never collects the dependent.
    Invalid,
    /// Not judged.
    Unknown(UnknownWhy),
}

impl OwnerState {
    /// Whether the GC treats the reference as dangling.
    pub fn is_absent(&self) -> bool {
        matches!(
            self,
            OwnerState::Absent | OwnerState::AbsentOtherNamespace { .. }
        )
    }
}

/// What the garbage collector does with a dependent, judged on all its owners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collection {
    /// No owner references: the GC never collects it.
    NoOwners,
    /// At least one owner is present: the GC keeps it.
    Kept,
    /// Every owner is absent: the GC should have collected it (an orphan).
    Orphan,
    /// Cluster-scoped with a namespaced owner kind: the GC never collects it.
    NotCollectable,
    /// No owner is present and at least one could not be judged.
    Unknown,
}

/// One owner reference and what the GC would find.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerCheck<'a> {
    pub owner: &'a Owner,
    pub state: OwnerState,
}

/// The verdict on one dependent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judgement<'a> {
    pub collection: Collection,
    pub owners: Vec<OwnerCheck<'a>>,
}

impl Judgement<'_> {
    /// One line per owner reference: what was checked and found.
    pub fn evidence(&self) -> Vec<String> {
        self.owners
            .iter()
            .map(|c| {
                let o = c.owner;
                let who = format!("owner {}/{}", o.kind, o.name);
                match &c.state {
                    OwnerState::Present => format!("{who} exists"),
                    OwnerState::Absent => format!("{who} no longer exists"),
                    OwnerState::AbsentOtherNamespace { namespace } => format!(
                        "{who} exists only in namespace {namespace}: the garbage collector looks in the dependent's namespace, so it is absent"
                    ),
                    OwnerState::Invalid => format!(
                        "{who} is of a namespaced kind, named by a cluster-scoped object: the garbage collector never resolves it (OwnerRefInvalidNamespace) and never collects this object"
                    ),
                    OwnerState::Unknown(UnknownWhy::KindNotListed) => format!(
                        "{who} not checked: {} {} was not listed in this snapshot",
                        o.api_version, o.kind
                    ),
                    OwnerState::Unknown(UnknownWhy::VersionNotServed) => format!(
                        "{who} not checked: apiVersion {} is not served, so the garbage collector cannot resolve it either",
                        o.api_version
                    ),
                    OwnerState::Unknown(UnknownWhy::NamespaceNotListed) => {
                        format!("{who} not checked: its namespace is outside this snapshot")
                    }
                }
            })
            .collect()
    }
}

/// A snapshot indexed for the rule.
pub struct Index<'a> {
    snap: &'a Snapshot,
    by_uid: BTreeMap<&'a str, &'a ObjectRecord>,
    /// `(group, kind)` -> the listed type.
    listed: BTreeMap<(&'a str, &'a str), &'a ListedType>,
}

impl<'a> Index<'a> {
    pub fn new(snap: &'a Snapshot) -> Self {
        Index {
            snap,
            by_uid: snap.by_uid(),
            listed: snap
                .listed
                .iter()
                .map(|t| ((t.group.as_str(), t.kind.as_str()), t))
                .collect(),
        }
    }

    /// The object with `uid`, if the snapshot has it.
    pub fn get(&self, uid: &str) -> Option<&'a ObjectRecord> {
        self.by_uid.get(uid).copied()
    }

    /// The listed type of an owner reference. A reference without an apiVersion (a
    /// snapshot written before it was kept) matches by kind alone, when that is unique.
    fn listed_type(&self, owner: &Owner) -> Option<&'a ListedType> {
        if owner.api_version.is_empty() {
            let mut found = self.snap.listed.iter().filter(|t| t.kind == owner.kind);
            return match (found.next(), found.next()) {
                (Some(t), None) => Some(t),
                _ => None,
            };
        }
        self.listed
            .get(&(owner.group(), owner.kind.as_str()))
            .copied()
    }

    /// What the garbage collector would find for `owner`, a reference of `dependent`.
    pub fn owner_state(&self, dependent: &ObjectRecord, owner: &Owner) -> OwnerState {
        let Some(t) = self.listed_type(owner) else {
            return OwnerState::Unknown(UnknownWhy::KindNotListed);
        };
        let version = owner.api_version.rsplit('/').next().unwrap_or_default();
        if !version.is_empty()
            && !t.served_versions.is_empty()
            && !t.served_versions.iter().any(|v| v == version)
        {
            return OwnerState::Unknown(UnknownWhy::VersionNotServed);
        }
        if t.namespaced && dependent.namespace.is_none() {
            return OwnerState::Invalid;
        }
        // Where the GC looks: the dependent's namespace, or cluster-wide.
        let looks_in = if t.namespaced {
            dependent.namespace.as_deref()
        } else {
            None
        };
        if let Some(found) = self.get(&owner.uid)
            && found.kind == t.kind
            && found.group() == t.group
        {
            if found.namespace.as_deref() == looks_in && found.name == owner.name {
                return OwnerState::Present;
            }
            if t.namespaced && found.namespace.as_deref() != looks_in {
                return OwnerState::AbsentOtherNamespace {
                    namespace: found.namespace.clone().unwrap_or_default(),
                };
            }
        }
        if let (Some(scope), Some(ns)) = (&self.snap.namespace, looks_in)
            && scope != ns
        {
            return OwnerState::Unknown(UnknownWhy::NamespaceNotListed);
        }
        OwnerState::Absent
    }

    /// The verdict on `dependent`: every owner reference judged, then the GC's rule.
    pub fn judge<'o>(&self, dependent: &'o ObjectRecord) -> Judgement<'o> {
        let owners: Vec<OwnerCheck<'o>> = dependent
            .owners
            .iter()
            .map(|owner| OwnerCheck {
                owner,
                state: self.owner_state(dependent, owner),
            })
            .collect();
        let any = |f: fn(&OwnerState) -> bool| owners.iter().any(|c| f(&c.state));
        let collection = if owners.is_empty() {
            Collection::NoOwners
        } else if any(|s| *s == OwnerState::Invalid) {
            Collection::NotCollectable
        } else if any(|s| *s == OwnerState::Present) {
            Collection::Kept
        } else if any(|s| matches!(s, OwnerState::Unknown(_))) {
            Collection::Unknown
        } else {
            Collection::Orphan
        };
        Judgement { collection, owners }
    }

    /// Whether `o` stays because an owner is gone: it is an orphan itself, or every
    /// owner that keeps it stays for that reason (a Pod whose ReplicaSet is an orphan).
    /// With the evidence, nearest first.
    pub fn stays_for_gone_owner(&self, o: &ObjectRecord) -> Option<Vec<String>> {
        self.gone_owner_path(o, 0)
    }

    fn gone_owner_path(&self, o: &ObjectRecord, depth: usize) -> Option<Vec<String>> {
        if depth > 8 {
            return None;
        }
        let j = self.judge(o);
        match j.collection {
            Collection::Orphan => Some(j.evidence()),
            Collection::Kept => {
                let mut evidence = Vec::new();
                for c in j.owners.iter().filter(|c| c.state == OwnerState::Present) {
                    let parent = self.get(&c.owner.uid)?;
                    let why = self.gone_owner_path(parent, depth + 1)?;
                    evidence.push(format!(
                        "owner {}/{} exists, but stays itself: {}",
                        c.owner.kind,
                        c.owner.name,
                        why.join("; ")
                    ));
                }
                Some(evidence)
            }
            _ => None,
        }
    }
}

/// One link of an ownership chain: an owner and what the GC would find for it.
///
/// It is identified by namespace and uid (what [`OwnerLink::object_key`] gives):
/// the same `Kind/name` may be another release's object in another namespace.
/// Reports show `Kind/name` only; a link read back from a report has no uid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerLink {
    pub kind: String,
    pub name: String,
    /// The owner's uid, from the owner reference (empty when read from a report).
    pub uid: String,
    /// Where the owner lives: the dependent's namespace for a namespaced owner, none
    /// for a cluster-scoped one (as far as the snapshots tell).
    pub namespace: Option<String>,
    pub state: OwnerState,
}

impl OwnerLink {
    /// Whether the owner is gone (absent where the GC looks for it).
    pub fn gone(&self) -> bool {
        self.state.is_absent()
    }

    /// `Kind/name`: how reports name the owner (not unique in a run across namespaces;
    /// see [`OwnerLink::object_key`]).
    pub fn key(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }

    /// The owner's identity in a run: namespace and uid.
    pub fn object_key(&self) -> (Option<String>, String) {
        (self.namespace.clone(), self.uid.clone())
    }
}

impl std::fmt::Display for OwnerLink {
    /// `Kind/name`, with ` (gone)`, ` (unresolvable)` or ` (not checked)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)?;
        match self.state {
            OwnerState::Present => Ok(()),
            OwnerState::Absent | OwnerState::AbsentOtherNamespace { .. } => write!(f, " (gone)"),
            OwnerState::Invalid => write!(f, " (unresolvable)"),
            OwnerState::Unknown(_) => write!(f, " (not checked)"),
        }
    }
}

/// Serialised as its display (`ReplicaSet/web-5d4 (gone)`), as reports always had it.
impl Serialize for OwnerLink {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Read back from its display (a shard's record): `(gone)` is an absent owner,
/// `(unresolvable)` an invalid reference, `(not checked)` an unknown state; what
/// reports show of a link survives the round trip.
impl<'de> serde::Deserialize<'de> for OwnerLink {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let (key, state) = if let Some(k) = text.strip_suffix(" (gone)") {
            (k, OwnerState::Absent)
        } else if let Some(k) = text.strip_suffix(" (unresolvable)") {
            (k, OwnerState::Invalid)
        } else if let Some(k) = text.strip_suffix(" (not checked)") {
            (k, OwnerState::Unknown(UnknownWhy::KindNotListed))
        } else {
            (text.as_str(), OwnerState::Present)
        };
        let (kind, name) = key
            .split_once('/')
            .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not Kind/name")))?;
        Ok(OwnerLink {
            kind: kind.to_string(),
            name: name.to_string(),
            uid: String::new(),
            namespace: None,
            state,
        })
    }
}

/// The chain of owners, nearest first, following each object's controller (or first)
/// owner. A present owner's own owners come from `index`; a gone one's from what the
/// run saw of it earlier (`seen`, by uid), so a Pod whose ReplicaSet was collected still
/// reaches its Deployment. Every link is judged against `index`'s snapshot.
pub fn chain(
    o: &ObjectRecord,
    index: &Index<'_>,
    seen: &BTreeMap<String, ObjectRecord>,
) -> Vec<OwnerLink> {
    let controller = |r: &ObjectRecord| {
        r.owners
            .iter()
            .find(|x| x.controller)
            .or(r.owners.first())
            .cloned()
    };
    let mut out = Vec::new();
    let mut dependent = o.clone();
    while let Some(owner) = controller(&dependent) {
        if out.len() > 8 {
            break;
        }
        let state = index.owner_state(&dependent, &owner);
        let next = match &state {
            OwnerState::Present => index.get(&owner.uid).cloned(),
            _ => seen.get(&owner.uid).cloned(),
        };
        // Where it lives: as last seen, else where the GC looks for it.
        let namespace = match (&next, &state) {
            (Some(n), _) => n.namespace.clone(),
            (None, OwnerState::AbsentOtherNamespace { namespace }) => Some(namespace.clone()),
            (None, _) => dependent.namespace.clone(),
        };
        out.push(OwnerLink {
            kind: owner.kind.clone(),
            name: owner.name.clone(),
            uid: owner.uid.clone(),
            namespace,
            state,
        });
        match next {
            Some(n) => dependent = n,
            None => break,
        }
    }
    out
}

/// Each object of `snap` that the garbage collector should have collected (every
/// owner reference absent, by [`crate::ownership`]'s rule), with those owners.
pub fn orphans(snap: &Snapshot) -> Vec<(&ObjectRecord, Vec<&Owner>)> {
    let index = Index::new(snap);
    snap.objects
        .iter()
        .filter_map(|o| {
            let j = index.judge(o);
            (j.collection == Collection::Orphan)
                .then(|| (o, j.owners.iter().map(|c| c.owner).collect()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(group: &str, kind: &str, namespaced: bool) -> ListedType {
        ListedType {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            resource: format!("{}s", kind.to_lowercase()),
            namespaced,
            served_versions: vec!["v1".into()],
            full_objects: false,
        }
    }

    fn api(group: &str) -> String {
        if group.is_empty() {
            "v1".into()
        } else {
            format!("{group}/v1")
        }
    }

    fn owner(group: &str, kind: &str, name: &str, uid: &str) -> Owner {
        Owner {
            api_version: api(group),
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
            controller: true,
        }
    }

    fn obj(
        group: &str,
        kind: &str,
        ns: Option<&str>,
        name: &str,
        uid: &str,
        owners: Vec<Owner>,
    ) -> ObjectRecord {
        ObjectRecord {
            api_version: api(group),
            kind: kind.into(),
            resource: format!("{group}/{}s", kind.to_lowercase()),
            namespace: ns.map(String::from),
            name: name.into(),
            uid: uid.into(),
            resource_version: String::new(),
            owners,
            finalizers: vec![],
            deletion_timestamp: None,
            labels: Default::default(),
            helm_annotations: Default::default(),
        }
    }

    /// The kinds every case lists: Deployment, ReplicaSet, Pod, ConfigMap (namespaced),
    /// ClusterRole (cluster-scoped).
    fn snap(objects: Vec<ObjectRecord>) -> Snapshot {
        Snapshot {
            objects,
            listed: vec![
                listed("apps", "Deployment", true),
                listed("apps", "ReplicaSet", true),
                listed("", "Pod", true),
                listed("", "ConfigMap", true),
                listed("rbac.authorization.k8s.io", "ClusterRole", false),
            ],
            ..Default::default()
        }
    }

    fn rs(ns: &str, uid: &str, owners: Vec<Owner>) -> ObjectRecord {
        obj("apps", "ReplicaSet", Some(ns), "web-5d4", uid, owners)
    }

    fn dep(ns: &str, uid: &str) -> ObjectRecord {
        obj("apps", "Deployment", Some(ns), "web", uid, vec![])
    }

    #[test]
    fn the_rule_on_each_case() {
        use Collection::{Kept, NoOwners, NotCollectable, Orphan};
        use OwnerState::{Absent, AbsentOtherNamespace, Invalid, Present};
        let d_owner = || owner("apps", "Deployment", "web", "d1");
        type Case = (
            &'static str,
            Vec<ObjectRecord>,
            ObjectRecord,
            Collection,
            Vec<OwnerState>,
        );
        let cases: Vec<Case> = vec![
            (
                "single owner gone",
                vec![],
                rs("a", "r1", vec![d_owner()]),
                Orphan,
                vec![Absent],
            ),
            (
                "owner present",
                vec![dep("a", "d1")],
                rs("a", "r1", vec![d_owner()]),
                Kept,
                vec![Present],
            ),
            (
                "several owners, one remaining",
                vec![obj("", "ConfigMap", Some("a"), "cfg", "c1", vec![])],
                rs(
                    "a",
                    "r1",
                    vec![d_owner(), owner("", "ConfigMap", "cfg", "c1")],
                ),
                Kept,
                vec![Absent, Present],
            ),
            (
                "several owners, all gone",
                vec![],
                rs(
                    "a",
                    "r1",
                    vec![d_owner(), owner("", "ConfigMap", "cfg", "c1")],
                ),
                Orphan,
                vec![Absent, Absent],
            ),
            (
                // No Deployment at all remains, but the kind was listed: absent.
                "owner of a kind with no remaining objects",
                vec![obj("", "ConfigMap", Some("a"), "other", "c9", vec![])],
                rs("a", "r1", vec![d_owner()]),
                Orphan,
                vec![Absent],
            ),
            (
                "owner kind not listed",
                vec![],
                obj(
                    "",
                    "ConfigMap",
                    Some("a"),
                    "c",
                    "c1",
                    vec![owner("x.example.com", "Widget", "w", "w1")],
                ),
                Collection::Unknown,
                vec![OwnerState::Unknown(UnknownWhy::KindNotListed)],
            ),
            (
                "owner kind not listed, another owner gone",
                vec![],
                rs(
                    "a",
                    "r1",
                    vec![d_owner(), owner("x.example.com", "Widget", "w", "w1")],
                ),
                Collection::Unknown,
                vec![Absent, OwnerState::Unknown(UnknownWhy::KindNotListed)],
            ),
            (
                "owner kind not listed, another owner present",
                vec![dep("a", "d1")],
                rs(
                    "a",
                    "r1",
                    vec![d_owner(), owner("x.example.com", "Widget", "w", "w1")],
                ),
                Kept,
                vec![Present, OwnerState::Unknown(UnknownWhy::KindNotListed)],
            ),
            (
                "apiVersion no longer served",
                vec![],
                rs(
                    "a",
                    "r1",
                    vec![Owner {
                        api_version: "apps/v1beta2".into(),
                        ..d_owner()
                    }],
                ),
                Collection::Unknown,
                vec![OwnerState::Unknown(UnknownWhy::VersionNotServed)],
            ),
            (
                "cross-namespace owner reference",
                vec![dep("b", "d1")],
                rs("a", "r1", vec![d_owner()]),
                Orphan,
                vec![AbsentOtherNamespace {
                    namespace: "b".into(),
                }],
            ),
            (
                "cluster-scoped dependent of a namespaced owner",
                vec![dep("a", "d1")],
                obj(
                    "rbac.authorization.k8s.io",
                    "ClusterRole",
                    None,
                    "cr",
                    "cr1",
                    vec![d_owner()],
                ),
                NotCollectable,
                vec![Invalid],
            ),
            (
                "cluster-scoped owner of a namespaced dependent, present",
                vec![obj(
                    "rbac.authorization.k8s.io",
                    "ClusterRole",
                    None,
                    "cr",
                    "cr1",
                    vec![],
                )],
                obj(
                    "",
                    "ConfigMap",
                    Some("a"),
                    "c",
                    "c1",
                    vec![owner(
                        "rbac.authorization.k8s.io",
                        "ClusterRole",
                        "cr",
                        "cr1",
                    )],
                ),
                Kept,
                vec![Present],
            ),
            (
                // The GC GETs the owner by name: another name with that uid is absent.
                "uid present under another name",
                vec![obj(
                    "apps",
                    "Deployment",
                    Some("a"),
                    "renamed",
                    "d1",
                    vec![],
                )],
                rs("a", "r1", vec![d_owner()]),
                Orphan,
                vec![Absent],
            ),
            ("no owners", vec![], dep("a", "d2"), NoOwners, vec![]),
        ];
        for (name, others, dependent, collection, states) in cases {
            let mut objects = others;
            objects.push(dependent.clone());
            let s = snap(objects);
            let index = Index::new(&s);
            let j = index.judge(&dependent);
            assert_eq!(j.collection, collection, "{name}: {j:?}");
            assert_eq!(
                j.owners.iter().map(|c| c.state.clone()).collect::<Vec<_>>(),
                states,
                "{name}"
            );
            assert_eq!(j.evidence().len(), states.len(), "{name}");
        }
    }

    #[test]
    fn cluster_scoped_kinds_are_unknown_in_a_namespaced_snapshot() {
        let cm = obj(
            "",
            "ConfigMap",
            Some("a"),
            "c",
            "c1",
            vec![owner(
                "rbac.authorization.k8s.io",
                "ClusterRole",
                "cr",
                "cr1",
            )],
        );
        // What a namespaced snapshot lists: namespaced kinds only.
        let mut s = snap(vec![cm.clone()]);
        s.namespace = Some("a".into());
        s.listed.retain(|t| t.namespaced);
        let j = Index::new(&s).judge(&cm);
        assert_eq!(j.collection, Collection::Unknown);
        assert!(j.evidence()[0].contains("not listed"), "{:?}", j.evidence());
    }

    #[test]
    fn orphans_follow_the_rule() {
        let s = snap(vec![
            rs("a", "r1", vec![owner("apps", "Deployment", "web", "gone")]),
            obj(
                "",
                "Pod",
                Some("a"),
                "p",
                "p1",
                vec![owner("apps", "ReplicaSet", "web-5d4", "r1")],
            ),
            obj(
                "",
                "ConfigMap",
                Some("a"),
                "c",
                "c1",
                vec![owner("x.example.com", "Widget", "w", "w1")],
            ),
        ]);
        let found: Vec<_> = orphans(&s)
            .into_iter()
            .map(|(o, owners)| (o.name.clone(), owners.len()))
            .collect();
        assert_eq!(found, [("web-5d4".to_string(), 1)]);
    }

    #[test]
    fn a_pod_of_an_orphaned_replicaset_stays_for_a_gone_owner() {
        let s = snap(vec![
            rs("a", "r1", vec![owner("apps", "Deployment", "web", "gone")]),
            obj(
                "",
                "Pod",
                Some("a"),
                "p",
                "p1",
                vec![owner("apps", "ReplicaSet", "web-5d4", "r1")],
            ),
        ]);
        let index = Index::new(&s);
        let why = index.stays_for_gone_owner(&s.objects[1]).unwrap();
        assert_eq!(
            why,
            [
                "owner ReplicaSet/web-5d4 exists, but stays itself: owner Deployment/web no longer exists"
            ]
        );
        // A healthy chain is not "owner gone".
        let s = snap(vec![
            dep("a", "d1"),
            rs("a", "r1", vec![owner("apps", "Deployment", "web", "d1")]),
        ]);
        assert!(Index::new(&s).stays_for_gone_owner(&s.objects[1]).is_none());
    }

    #[test]
    fn a_chain_goes_through_a_gone_owner_known_from_an_earlier_snapshot() {
        let pod = obj(
            "",
            "Pod",
            Some("a"),
            "web-5d4-x",
            "p1",
            vec![owner("apps", "ReplicaSet", "web-5d4", "r1")],
        );
        let s = snap(vec![pod.clone()]);
        let index = Index::new(&s);
        let seen: BTreeMap<String, ObjectRecord> = [(
            "r1".to_string(),
            rs("a", "r1", vec![owner("apps", "Deployment", "web", "d1")]),
        )]
        .into();
        let links = chain(&pod, &index, &seen);
        assert_eq!(
            links.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["ReplicaSet/web-5d4 (gone)", "Deployment/web (gone)"]
        );
        assert!(links.iter().all(OwnerLink::gone));
        assert_eq!(
            serde_json::to_value(&links).unwrap(),
            serde_json::json!(["ReplicaSet/web-5d4 (gone)", "Deployment/web (gone)"])
        );
        // The pod itself is an orphan by the rule.
        assert_eq!(index.judge(&pod).collection, Collection::Orphan);
        // An owner of a kind not listed is "not checked", never "gone".
        let cm = obj(
            "",
            "ConfigMap",
            Some("a"),
            "c",
            "c1",
            vec![owner("x.example.com", "Widget", "w", "w1")],
        );
        let links = chain(&cm, &index, &seen);
        assert_eq!(links[0].to_string(), "Widget/w (not checked)");
        assert!(!links[0].gone());
    }

    #[test]
    fn old_snapshots_without_api_versions_match_owners_by_kind() {
        let mut r = rs("a", "r1", vec![owner("apps", "Deployment", "web", "gone")]);
        r.owners[0].api_version.clear();
        let s = snap(vec![r.clone()]);
        assert_eq!(Index::new(&s).judge(&r).collection, Collection::Orphan);
        // Nothing listed (a snapshot written before `listed` existed): unknown.
        let s = Snapshot {
            objects: vec![r.clone()],
            ..Default::default()
        };
        assert_eq!(Index::new(&s).judge(&r).collection, Collection::Unknown);
    }
}
