//! Why an object stayed: the one vocabulary of verdicts, scenario expectations and
//! reports (a leaf module, so `scenario` and `verdict` do not depend on each other).

use serde::{Deserialize, Serialize};

/// Why an object stayed.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// A webhook refused, timed out or could not be called on the DELETE.
    WebhookBlockedDelete,
    /// The garbage collector stopped collecting: a resource type could not be synced.
    GarbageCollectorStalled,
    /// Its owner is gone and nothing explains why it was not collected.
    OwnerGone,
    /// A finalizer holds its deletion.
    BlockedByFinalizer,
    /// Left by a Helm hook that Helm does not delete.
    HookLeftover,
    /// `helm.sh/resource-policy: keep`: on purpose.
    KeptByPolicy,
    /// Kept by design (StatefulSet PVCs, CRDs from a chart's `crds/`).
    KeptByDesign,
    /// Created by the release and not deleted, cause unknown.
    NotDeleted,
}

impl Reason {
    /// The kebab-case name used in reports and scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::WebhookBlockedDelete => "webhook-blocked-delete",
            Reason::GarbageCollectorStalled => "garbage-collector-stalled",
            Reason::OwnerGone => "owner-gone",
            Reason::BlockedByFinalizer => "blocked-by-finalizer",
            Reason::HookLeftover => "hook-leftover",
            Reason::KeptByPolicy => "kept-by-policy",
            Reason::KeptByDesign => "kept-by-design",
            Reason::NotDeleted => "not-deleted",
        }
    }

    /// A sentence for people.
    pub fn describe(self) -> &'static str {
        match self {
            Reason::WebhookBlockedDelete => {
                "admission refused its DELETE: a webhook that denied, timed out or could not be called, or a ValidatingAdmissionPolicy"
            }
            Reason::GarbageCollectorStalled => {
                "the garbage collector stopped collecting: a resource type could not be synced"
            }
            Reason::OwnerGone => "its owner is gone but it was not garbage-collected",
            Reason::BlockedByFinalizer => "a finalizer holds its deletion",
            Reason::HookLeftover => "a Helm hook that Helm does not delete",
            Reason::KeptByPolicy => "kept on purpose (helm.sh/resource-policy: keep)",
            Reason::KeptByDesign => "kept by design (StatefulSet PVCs, CRDs from crds/)",
            Reason::NotDeleted => "created by the release and not deleted; cause unknown",
        }
    }

    /// Whether this reason counts as a failure (kept-on-purpose ones do not).
    pub fn is_failure(self) -> bool {
        !matches!(self, Reason::KeptByPolicy | Reason::KeptByDesign)
    }
}
