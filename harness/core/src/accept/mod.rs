//! What accepts a finding and what a gate said of it: the matchers of `--accept`
//! entries, the waivers the report carries, and the report's account of the gate
//! ([`render`]). The engine's `accept` module reads accept files and baselines and
//! applies the gate.

pub mod render;

use serde::{Deserialize, Serialize};

use crate::policy::Finding;
use crate::reason::Reason;
use crate::report::{FindingReport, LeftoverReport, Regression};

/// What kind of finding an entry accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// An object left behind that the scenario does not expect.
    Leftover,
    /// The target behaves worse than the source.
    Regression,
    StepFailed,
    SettleTimedOut,
    Unlistable,
    DiscoveryFailed,
    TeardownFailed,
    LeftoverNotReproduced,
    UnlistableNotReproduced,
    NodeUndrainable,
    NodesQuarantined,
    PodsNotBack,
    SurgeFailed,
    /// A finding of `preflight audit` (its check is `check`).
    Audit,
}

impl FindingKind {
    /// The name accept files use.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Leftover => "leftover",
            FindingKind::Regression => "regression",
            FindingKind::StepFailed => "step-failed",
            FindingKind::SettleTimedOut => "settle-timed-out",
            FindingKind::Unlistable => "unlistable",
            FindingKind::DiscoveryFailed => "discovery-failed",
            FindingKind::TeardownFailed => "teardown-failed",
            FindingKind::LeftoverNotReproduced => "leftover-not-reproduced",
            FindingKind::UnlistableNotReproduced => "unlistable-not-reproduced",
            FindingKind::NodeUndrainable => "node-undrainable",
            FindingKind::NodesQuarantined => "nodes-quarantined",
            FindingKind::PodsNotBack => "pods-not-back",
            FindingKind::SurgeFailed => "surge-failed",
            FindingKind::Audit => "audit",
        }
    }

    fn of(f: &Finding) -> FindingKind {
        match f {
            Finding::StepFailed { .. } => FindingKind::StepFailed,
            Finding::SettleTimedOut { .. } => FindingKind::SettleTimedOut,
            Finding::Unlistable { .. } => FindingKind::Unlistable,
            Finding::DiscoveryFailed { .. } => FindingKind::DiscoveryFailed,
            Finding::TeardownFailed { .. } => FindingKind::TeardownFailed,
            Finding::LeftoverNotReproduced { .. } => FindingKind::LeftoverNotReproduced,
            Finding::UnlistableNotReproduced { .. } => FindingKind::UnlistableNotReproduced,
            Finding::NodeUndrainable { .. } => FindingKind::NodeUndrainable,
            Finding::NodesQuarantined { .. } => FindingKind::NodesQuarantined,
            Finding::PodsNotBack { .. } => FindingKind::PodsNotBack,
            Finding::SurgeFailed { .. } => FindingKind::SurgeFailed,
        }
    }
}

/// What an entry accepts: every field given must match (`*` and `?` are wildcards in
/// the text fields).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Matcher {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding: Option<FindingKind>,
    /// The scenario, or the twin's pass (`web-pre-delete-unreachable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    /// The object's kind, exactly (`Job`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The object's name, its normalised name (`Pod of ReplicaSet of Deployment web`),
    /// an audit finding's object, or a regression's objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The object's top owner, `Kind/name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owned_by: Option<String>,
    /// Why the object stayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// An audit check (`webhook-timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// The finding's sentence as the report prints it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl Matcher {
    /// Whether every field given matches `s`.
    pub fn matches(&self, s: &Subject) -> bool {
        let glob_opt = |p: &Option<String>, v: Option<&str>| {
            p.as_ref().is_none_or(|p| v.is_some_and(|v| glob(p, v)))
        };
        self.finding.is_none_or(|f| f == s.finding)
            && glob_opt(&self.scenario, s.scenario.as_deref())
            && self
                .kind
                .as_ref()
                .is_none_or(|k| s.kind.as_ref() == Some(k))
            && self
                .name
                .as_ref()
                .is_none_or(|p| s.names.iter().any(|n| glob(p, n)))
            && glob_opt(&self.owned_by, s.owned_by.as_deref())
            && self.reason.is_none_or(|r| s.reason == Some(r))
            && glob_opt(&self.check, s.check.as_deref())
            && self.text.as_ref().is_none_or(|p| glob(p, &s.text))
    }
}

/// Whether `text` matches `pattern`, where `*` is any run of characters and `?` one.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // The last `*` seen and where in the text it started to match.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Who accepted a finding, why and until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedBy {
    /// `file:line:column` of the entry.
    pub at: String,
    pub owner: String,
    pub reason: String,
    pub expires: String,
}

/// What the accept file or the baseline said of one finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum Waiver {
    /// An entry in force accepts it: it does not count.
    Accepted(AcceptedBy),
    /// The entry that accepted it has expired: it counts again.
    Expired(AcceptedBy),
    /// The baseline report had it: not new, it does not count.
    Baseline,
}

impl Waiver {
    /// Whether the finding no longer counts.
    pub fn waives(&self) -> bool {
        !matches!(self, Waiver::Expired(_))
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            Waiver::Accepted(b) => format!(
                "accepted by {} until {}: {} ({})",
                b.owner, b.expires, b.reason, b.at
            ),
            Waiver::Expired(b) => format!(
                "acceptance expired on {} (by {}: {}; {}): counts again",
                b.expires, b.owner, b.reason, b.at
            ),
            Waiver::Baseline => "in the baseline: not new".to_string(),
        }
    }
}

/// Whether an optional waiver waives.
pub fn waived(w: &Option<Waiver>) -> bool {
    w.as_ref().is_some_and(Waiver::waives)
}

/// A finding as the matcher sees it, whatever its type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    pub finding: FindingKind,
    pub scenario: Option<String>,
    pub kind: Option<String>,
    /// Names an entry's `name` may match.
    pub names: Vec<String>,
    pub owned_by: Option<String>,
    pub reason: Option<Reason>,
    pub check: Option<String>,
    pub text: String,
    /// The same on every run of the same finding: no time, run id, namespace or
    /// generated name (generated names are replaced by the ownership path).
    pub identity: String,
}

impl Subject {
    /// A subject of `finding` in `scenario`, with nothing else to match.
    pub fn base(finding: FindingKind, scenario: &str, text: String, identity: String) -> Subject {
        Subject {
            finding,
            scenario: Some(scenario.to_string()),
            kind: None,
            names: Vec::new(),
            owned_by: None,
            reason: None,
            check: None,
            text,
            identity,
        }
    }

    /// An unexpected leftover of a run.
    pub fn leftover(scenario: &str, run: &str, l: &LeftoverReport) -> Subject {
        let text = format!("{} ({})", l.normalized, l.reason.as_str());
        let identity = format!(
            "leftover {scenario} {run}: {} ({})",
            l.normalized,
            l.reason.as_str()
        );
        Subject {
            kind: Some(l.kind.clone()),
            names: vec![l.name.clone(), l.normalized.clone()],
            owned_by: l
                .owner_chain
                .last()
                .map(|o| format!("{}/{}", o.kind, o.name)),
            reason: Some(l.reason),
            ..Subject::base(FindingKind::Leftover, scenario, text, identity)
        }
    }

    /// A finding of a run (failed step, unlistable type, ...).
    pub fn finding(scenario: &str, run: &str, f: &FindingReport) -> Subject {
        let kind = FindingKind::of(&f.finding);
        // What names the finding on every run; details that quote a namespace or a
        // time are left out.
        let key = match &f.finding {
            Finding::StepFailed { step, title, .. } => format!("step {step} ({title})"),
            Finding::SettleTimedOut { step, .. } => format!("step {step}"),
            Finding::Unlistable { resource, .. }
            | Finding::UnlistableNotReproduced { resource } => resource.clone(),
            Finding::DiscoveryFailed { group_version, .. } => group_version.clone(),
            Finding::TeardownFailed { .. } => String::new(),
            Finding::LeftoverNotReproduced { expected, .. } => expected.clone(),
            // A pool by its name: which node fails or which surge node is named can
            // differ between runs of the same roll.
            Finding::NodeUndrainable { step, pool, .. }
            | Finding::NodesQuarantined { step, pool, .. }
            | Finding::SurgeFailed { step, pool, .. } => format!("step {step} pool {pool}"),
            Finding::PodsNotBack {
                step,
                pool,
                workload,
                ..
            } => format!("step {step} pool {pool} {workload}"),
        };
        // What an entry's `name` matches: the pool, its nodes, the workload.
        let names = match &f.finding {
            Finding::NodeUndrainable { pool, node, .. } => vec![pool.clone(), node.clone()],
            Finding::NodesQuarantined { pool, nodes, .. } => {
                std::iter::once(pool.clone()).chain(nodes.clone()).collect()
            }
            Finding::PodsNotBack {
                pool,
                node,
                workload,
                ..
            } => vec![pool.clone(), node.clone(), workload.clone()],
            Finding::SurgeFailed { pool, .. } => vec![pool.clone()],
            _ => Vec::new(),
        };
        let identity = format!("{} {scenario} {run}: {key}", kind.as_str());
        Subject {
            names,
            ..Subject::base(kind, scenario, f.text.clone(), identity)
        }
    }

    /// A finding of `preflight audit` (its check, object and title).
    pub fn audit_finding(check: &str, object: &str, title: &str) -> Subject {
        Subject {
            finding: FindingKind::Audit,
            scenario: None,
            kind: object.split('/').next().map(str::to_string),
            names: vec![object.to_string()],
            owned_by: None,
            reason: None,
            check: Some(check.to_string()),
            text: title.to_string(),
            identity: format!("audit {check}: {object}"),
        }
    }

    /// A regression of a scenario.
    pub fn regression(g: &Regression) -> Subject {
        let d = &g.difference;
        let what = if d.objects.is_empty() {
            d.text.clone()
        } else {
            d.objects.join(", ")
        };
        let identity = format!("regression {}: {:?} {what}", g.scenario, d.aspect);
        Subject {
            names: d.objects.clone(),
            ..Subject::base(
                FindingKind::Regression,
                &g.scenario,
                d.text.clone(),
                identity,
            )
        }
    }
}
