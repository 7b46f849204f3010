//! Across versions: the same scenario's outcome on the source and on the target.
//!
//! Generated names are normalised ([`Leftover::normalized`]), so the comparison reads
//! as "the target leaves 1 ReplicaSet and 3 Pods that the source cleaned up". Helm's
//! exit codes, the server-side dry run's answers and the rendered manifests are
//! compared too. A difference is a regression when the target is worse, an
//! improvement when it is better, and neutral otherwise.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::record::Outcome;
use crate::verdict::Leftover;

/// What a difference is about.
#[derive(Clone, Copy, Debug, Serialize, serde::Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Aspect {
    Leftovers,
    HelmExit,
    DryRun,
    Manifest,
}

/// One difference between source and target.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Difference {
    pub aspect: Aspect,
    pub text: String,
    /// The normalised objects concerned (for leftovers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<String>,
}

/// The comparison of one scenario.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    pub regressions: Vec<Difference>,
    pub improvements: Vec<Difference>,
    pub differences: Vec<Difference>,
}

/// `1 ReplicaSet and 3 Pods`.
pub fn count_phrase(kinds: &BTreeMap<String, usize>) -> String {
    let parts: Vec<String> = kinds
        .iter()
        .map(|(k, n)| format!("{n} {}", if *n == 1 { k.clone() } else { plural(k) }))
        .collect();
    match parts.len() {
        0 => String::new(),
        1 => parts[0].clone(),
        _ => format!(
            "{} and {}",
            parts[..parts.len() - 1].join(", "),
            parts[parts.len() - 1]
        ),
    }
}

fn plural(kind: &str) -> String {
    if let Some(stem) = kind.strip_suffix('y') {
        format!("{stem}ies")
    } else if kind.ends_with('s') {
        format!("{kind}es")
    } else {
        format!("{kind}s")
    }
}

/// Normalised failure leftovers as a multiset.
fn multiset(left: &[Leftover]) -> BTreeMap<String, (String, usize)> {
    let mut m: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for l in left.iter().filter(|l| l.reason.is_failure()) {
        m.entry(l.normalized()).or_insert((l.kind.clone(), 0)).1 += 1;
    }
    m
}

/// Objects in `a` beyond those in `b`, and their kinds counted.
fn excess(
    a: &BTreeMap<String, (String, usize)>,
    b: &BTreeMap<String, (String, usize)>,
) -> (Vec<String>, BTreeMap<String, usize>) {
    let mut objects = Vec::new();
    let mut kinds = BTreeMap::new();
    for (key, (kind, n)) in a {
        let other = b.get(key).map_or(0, |(_, m)| *m);
        if *n > other {
            objects.push(format!("{} x {key}", n - other));
            *kinds.entry(kind.clone()).or_insert(0) += n - other;
        }
    }
    (objects, kinds)
}

/// The same objects left on both versions for different reasons: a difference worth
/// reading (the cause changed), neither better nor worse.
fn reason_changes(source: &[Leftover], target: &[Leftover]) -> Vec<Difference> {
    let reasons = |left: &[Leftover]| {
        let mut m: BTreeMap<String, std::collections::BTreeSet<&'static str>> = BTreeMap::new();
        for l in left.iter().filter(|l| l.reason.is_failure()) {
            m.entry(l.normalized())
                .or_default()
                .insert(l.reason.as_str());
        }
        m
    };
    let (s, t) = (reasons(source), reasons(target));
    s.iter()
        .filter_map(|(object, sr)| {
            let tr = t.get(object)?;
            (sr != tr).then(|| Difference {
                aspect: Aspect::Leftovers,
                text: format!(
                    "{object} stays on both versions, for a different reason: {} on the source, {} on the target",
                    sr.iter().copied().collect::<Vec<_>>().join(", "),
                    tr.iter().copied().collect::<Vec<_>>().join(", ")
                ),
                objects: vec![object.clone()],
            })
        })
        .collect()
}

/// What the comparison reads of one run: its leftovers, helm's exit codes, the
/// server-side dry runs' answers and the rendered manifest. Serialisable, so runs made
/// on different machines (shards) compare exactly as runs made on one.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Facts {
    pub leftovers: Vec<Leftover>,
    pub steps: Vec<StepFacts>,
    /// `Kind name` -> the object as rendered, namespace replaced by `NAMESPACE`.
    pub manifest: BTreeMap<String, String>,
}

/// One step, as compared.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StepFacts {
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<HelmFacts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<crate::dry_run::DryRunReport>,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HelmFacts {
    pub exit_code: i32,
    pub stderr: String,
}

impl Facts {
    /// The facts of a finished run whose leftovers are `left`.
    pub fn of(o: &Outcome, left: &[Leftover]) -> Facts {
        // Namespaces differ between runs by design; compare manifests without them.
        let manifest = crate::helm::split_manifest(&o.manifest.replace(&o.namespace, "NAMESPACE"))
            .unwrap_or_default()
            .into_iter()
            .map(|v| {
                let key = format!(
                    "{} {}",
                    v["kind"].as_str().unwrap_or("?"),
                    v["metadata"]["name"].as_str().unwrap_or("?")
                );
                (key, v.to_string())
            })
            .collect();
        Facts {
            // What is compared: the evidence stays in the run's report, cut for showing.
            leftovers: left
                .iter()
                .map(|l| Leftover {
                    evidence: Vec::new(),
                    ..l.clone()
                })
                .collect(),
            steps: o
                .steps
                .iter()
                .map(|s| StepFacts {
                    title: s.title.clone(),
                    helm: s.helm.as_ref().map(|h| HelmFacts {
                        exit_code: h.exit_code,
                        stderr: h.stderr.clone(),
                    }),
                    dry_run: s.dry_run.clone(),
                })
                .collect(),
            manifest,
        }
    }
}

/// Compares a scenario's runs on two versions (`source` the earlier).
pub fn compare(source: &Facts, target: &Facts) -> Comparison {
    let mut c = Comparison::default();
    let (source_left, target_left) = (&source.leftovers, &target.leftovers);
    let (s, t) = (multiset(source_left), multiset(target_left));
    let (worse, worse_kinds) = excess(&t, &s);
    if !worse.is_empty() {
        c.regressions.push(Difference {
            aspect: Aspect::Leftovers,
            text: format!(
                "the target leaves {} that the source cleaned up",
                count_phrase(&worse_kinds)
            ),
            objects: worse,
        });
    }
    let (better, better_kinds) = excess(&s, &t);
    if !better.is_empty() {
        c.improvements.push(Difference {
            aspect: Aspect::Leftovers,
            text: format!(
                "the target cleans up {} that the source left behind",
                count_phrase(&better_kinds)
            ),
            objects: better,
        });
    }

    c.differences
        .extend(reason_changes(source_left, target_left));

    for (ss, ts) in source.steps.iter().zip(&target.steps) {
        if let (Some(sh), Some(th)) = (&ss.helm, &ts.helm)
            && sh.exit_code != th.exit_code
        {
            let why = th
                .stderr
                .lines()
                .chain(sh.stderr.lines())
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim();
            let d = Difference {
                aspect: Aspect::HelmExit,
                text: format!(
                    "`{}` exits {} on the target and {} on the source: {why}",
                    ts.title, th.exit_code, sh.exit_code
                ),
                objects: Vec::new(),
            };
            if sh.exit_code == 0 {
                c.regressions.push(d)
            } else if th.exit_code == 0 {
                c.improvements.push(d)
            } else {
                c.differences.push(d)
            }
        }
        if let (Some(sd), Some(td)) = (&ss.dry_run, &ts.dry_run) {
            let refused = |d: &crate::dry_run::DryRunReport| {
                let mut m: BTreeMap<String, usize> = BTreeMap::new();
                for o in d.refused() {
                    *m.entry(format!(
                        "{} {} as {} ({})",
                        o.operation, o.kind, o.as_user, o.outcome
                    ))
                    .or_insert(0) += 1;
                }
                m
            };
            let (sr, tr) = (refused(sd), refused(td));
            for (key, n) in &tr {
                let m = sr.get(key).copied().unwrap_or(0);
                if *n > m {
                    c.regressions.push(Difference {
                        aspect: Aspect::DryRun,
                        text: format!("{}: the target refuses {} more: {key}", ts.title, n - m),
                        objects: Vec::new(),
                    });
                }
            }
            for (key, n) in &sr {
                let m = tr.get(key).copied().unwrap_or(0);
                if *n > m {
                    c.improvements.push(Difference {
                        aspect: Aspect::DryRun,
                        text: format!("{}: the target refuses {} fewer: {key}", ts.title, n - m),
                        objects: Vec::new(),
                    });
                }
            }
        }
    }

    let (sm, tm) = (&source.manifest, &target.manifest);
    let changed: Vec<String> = sm
        .keys()
        .chain(tm.keys())
        .filter(|k| sm.get(*k) != tm.get(*k))
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if !changed.is_empty() {
        c.differences.push(Difference {
            aspect: Aspect::Manifest,
            text: format!("the rendered manifests differ in {}", changed.join(", ")),
            objects: changed,
        });
    }
    // Differences quote helm's output and webhooks' messages: never a credential.
    for d in c
        .regressions
        .iter_mut()
        .chain(&mut c.improvements)
        .chain(&mut c.differences)
    {
        d.text = crate::redact::redact(&d.text);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn left(kind: &str, name: &str, reason: crate::reason::Reason) -> Leftover {
        Leftover {
            api_version: "v1".into(),
            kind: kind.into(),
            namespace: Some("pf-a".into()),
            name: name.into(),
            uid: String::new(),
            reason,
            owner_chain: Vec::new(),
            evidence: Vec::new(),
            claim: None,
        }
    }

    #[test]
    fn the_same_leftover_for_another_reason_is_a_difference() {
        use crate::reason::Reason::*;
        let source = [
            left("ConfigMap", "held", BlockedByFinalizer),
            left("Secret", "s", NotDeleted),
        ];
        let target = [
            left("ConfigMap", "held", WebhookBlockedDelete),
            left("Secret", "s", NotDeleted),
        ];
        let d = reason_changes(&source, &target);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(
            d[0].text,
            "ConfigMap held stays on both versions, for a different reason: blocked-by-finalizer on the source, webhook-blocked-delete on the target"
        );
        assert!(reason_changes(&source, &source).is_empty());
        // Only on one side: that is a regression or an improvement, not a reason change.
        assert!(reason_changes(&source[..1], &target[1..]).is_empty());
    }

    #[test]
    fn phrases_count_and_pluralise() {
        let mut m = BTreeMap::new();
        m.insert("Pod".to_string(), 3);
        m.insert("ReplicaSet".to_string(), 1);
        assert_eq!(count_phrase(&m), "3 Pods and 1 ReplicaSet");
        m.insert("NetworkPolicy".to_string(), 2);
        m.insert("Ingress".to_string(), 2);
        assert_eq!(
            count_phrase(&m),
            "2 Ingresses, 2 NetworkPolicies, 3 Pods and 1 ReplicaSet"
        );
    }
}
