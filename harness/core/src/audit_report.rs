//! What `preflight audit` reports: its findings and their severities, as records (the
//! checks that produce them read a live cluster, in the `preflight` crate; `--accept`
//! and `--baseline` read these back).

use serde::Serialize;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// One thing found, with what to do about it.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// A stable identifier of the check, e.g. `webhook-fail-closed-on-gc-delete`.
    pub check: String,
    pub severity: Severity,
    /// `Kind/name` or `Kind/namespace/name`.
    pub object: String,
    pub title: String,
    pub evidence: Vec<String>,
    pub fix: String,
    /// What `--accept` or `--baseline` said of it (absent without them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceptance: Option<crate::accept::Waiver>,
}

/// The audit's result.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditReport {
    pub schema: String,
    pub verdict: crate::report::Verdict,
    pub exit_code: i32,
    pub fail_on: Severity,
    pub server_version: String,
    pub target_version: Option<String>,
    pub generated_at: String,
    /// Checks that could not run (missing rights), said plainly.
    pub skipped: Vec<String>,
    pub findings: Vec<Finding>,
    /// What `--accept` and `--baseline` waived, and their entries (absent without them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceptance: Option<crate::accept::render::Acceptance>,
}
