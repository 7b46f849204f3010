//! `preflight audit`: a read-only look at a live cluster for everything that can make
//! deletions silently fail after an upgrade. It only reads and sends dry-run requests.
//!
//! Each check degrades on its own: missing rights (impersonation, Secrets) turn into an
//! `info` finding that says which check could not run, never a crash.

pub mod checks;
pub mod probe;
pub mod removed_apis;
pub mod render;
pub mod selection;

use crate::components::Version;

pub use preflight_core::audit_report::{AuditReport, Finding, Severity};

/// What to audit against.
#[derive(Clone, Debug)]
pub struct AuditOptions {
    /// The version the cluster will be upgraded to (consequences depend on it).
    pub target: Option<Version>,
    /// Certificates expiring within this many days are findings.
    pub upgrade_window_days: i64,
    /// Send dry-run requests (no object is changed either way).
    pub live: bool,
}

/// Runs every check.
pub async fn run(
    client: &kube::Client,
    gc_client: Option<&kube::Client>,
    opts: &AuditOptions,
    fail_on: Severity,
) -> anyhow::Result<AuditReport> {
    let server_version = client.apiserver_version().await?.git_version;
    let mut ctx = checks::Context {
        client: client.clone(),
        gc_client: gc_client.cloned(),
        opts: opts.clone(),
        findings: Vec::new(),
        skipped: Vec::new(),
    };
    checks::webhooks(&mut ctx).await;
    checks::conversion(&mut ctx).await;
    checks::api_services(&mut ctx).await;
    checks::objects(&mut ctx).await;
    checks::helm_releases(&mut ctx).await;
    checks::pdbs(&mut ctx).await;
    let mut findings = ctx.findings;
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.check.cmp(&b.check))
            .then(a.object.cmp(&b.object))
    });
    let failing = findings.iter().any(|f| f.severity >= fail_on);
    Ok(AuditReport {
        schema: crate::accept::AUDIT_SCHEMA.into(),
        verdict: if failing {
            crate::report::Verdict::Fail
        } else {
            crate::report::Verdict::Pass
        },
        exit_code: if failing {
            crate::policy::EXIT_FINDINGS
        } else {
            crate::policy::EXIT_OK
        },
        fail_on,
        server_version,
        target_version: opts.target.as_ref().map(ToString::to_string),
        generated_at: crate::now_rfc3339(),
        skipped: ctx.skipped,
        findings,
        acceptance: None,
    })
}
