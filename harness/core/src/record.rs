//! What one run of a scenario produced, step by step: the record every verdict and
//! report is computed from (the engine's `exercise` module fills it).

use serde::Serialize;

use crate::dry_run::DryRunReport;
use crate::evidence::EvidenceLog;
use crate::helm::HelmRun;
use crate::settle::SettleReport;
use crate::snapshot::{self, Snapshot};
use crate::webhook::Record;

/// What one step did.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    pub index: usize,
    /// e.g. `helm uninstall`, `setWebhook delete-guard -> unreachable`.
    pub title: String,
    /// The Kubernetes version running when the step ran.
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub helm: Option<HelmRun>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<DryRunReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settle: Option<SettleReport>,
    /// The node pools' roll (a `rollNodes` step).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<crate::rollout::RolloutRecord>,
    /// An error that ended the step (the run goes on with the next step).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// Everything one run of a scenario produced.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub scenario: String,
    pub namespace: String,
    /// Further namespaces the run worked in (a twin's releases live in several).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_namespaces: Vec<String>,
    pub release: String,
    /// The version the run started on.
    pub start_version: String,
    /// The version it ended on (differs after an in-place upgrade).
    pub end_version: String,
    pub steps: Vec<StepRecord>,
    #[serde(skip)]
    pub before: Snapshot,
    #[serde(skip)]
    pub after: Snapshot,
    pub webhook_requests: Vec<Record>,
    /// The release's manifest as installed (`helm get manifest`), empty if never installed.
    #[serde(skip)]
    pub manifest: String,
    /// Objects in the run's namespace after each step (the timeline).
    pub objects_after_step: Vec<usize>,
    /// Every object seen in the run's namespace after any step, by uid: owners that
    /// are gone by the end (a ReplicaSet collected during uninstall) are still known,
    /// so a leftover's ownership chain reaches a stably named owner.
    #[serde(skip)]
    pub seen: std::collections::BTreeMap<String, snapshot::ObjectRecord>,
    /// The control plane's evidence about webhooks and the garbage collector (its
    /// logs, the audit log, the verification probe), every piece, by object.
    pub log_evidence: EvidenceLog,
    /// Teardown problems (never silent).
    pub teardown_errors: Vec<String>,
    /// Containers that ran preflight's stand-in instead of an image no node held (kind
    /// clusters preflight owns; see [`crate::images`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub substitutions: Vec<crate::images::Substitution>,
}

impl Outcome {
    /// Whether the run worked in namespace `ns`.
    pub fn works_in(&self, ns: &str) -> bool {
        self.namespace == ns || self.other_namespaces.iter().any(|o| o == ns)
    }
}
