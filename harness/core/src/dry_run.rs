//! What a server-side dry run of a lifecycle half would have done, request by request,
//! as recorded (the engine's `exercise::dry_run` sends the requests).

use serde::Serialize;

/// The garbage collector's identity when it deletes dependents.
pub const GC_USER: &str = "system:serviceaccount:kube-system:generic-garbage-collector";

/// What one dry-run request would have done.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DryRunObject {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    /// `CREATE` or `DELETE`.
    pub operation: String,
    /// The user the request was sent as (`helm` for preflight's own credentials).
    pub as_user: String,
    pub outcome: DryRunOutcome,
    /// The webhook the API server's answer names, for a refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// What the API server answered one dry-run request.
#[derive(Clone, Copy, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DryRunOutcome {
    Admitted,
    /// A webhook answered `allowed: false`.
    Denied,
    /// A fail-closed webhook could not be called (unreachable, TLS, HTTP error).
    WebhookFailed,
    /// A fail-closed webhook did not answer within its timeout.
    TimedOut,
    /// A webhook with side effects cannot judge a dry run: a real request would call it.
    DryRunUnsupported,
    /// Any other error (no webhook named).
    Error,
    /// Not sent (e.g. its kind is not served).
    Skipped,
}

impl DryRunOutcome {
    /// Whether a webhook refused (the answer names it).
    pub fn is_refusal(self) -> bool {
        matches!(
            self,
            DryRunOutcome::Denied
                | DryRunOutcome::WebhookFailed
                | DryRunOutcome::TimedOut
                | DryRunOutcome::DryRunUnsupported
        )
    }
}

impl std::fmt::Display for DryRunOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DryRunOutcome::Admitted => "admitted",
            DryRunOutcome::Denied => "denied",
            DryRunOutcome::WebhookFailed => "webhook-failed",
            DryRunOutcome::TimedOut => "timed-out",
            DryRunOutcome::DryRunUnsupported => "dry-run-unsupported",
            DryRunOutcome::Error => "error",
            DryRunOutcome::Skipped => "skipped",
        })
    }
}

/// The dry run of one lifecycle half.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DryRunReport {
    pub action: String,
    pub objects: Vec<DryRunObject>,
}

impl DryRunReport {
    /// Requests that would not have been admitted.
    pub fn refused(&self) -> impl Iterator<Item = &DryRunObject> {
        self.objects
            .iter()
            .filter(|o| !matches!(o.outcome, DryRunOutcome::Admitted | DryRunOutcome::Skipped))
    }
}
