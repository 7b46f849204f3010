//! `preflight audit`: what on a live cluster would break an upgrade, and why.

use anyhow::Context;

use super::run::load_gate;
use super::*;

pub(super) async fn audit(args: AuditArgs) -> anyhow::Result<i32> {
    let gate = load_gate(
        args.accept.as_deref(),
        args.baseline.as_deref(),
        crate::accept::BaselineFor::Audit,
    )?;
    let target = args
        .target
        .as_deref()
        .map(|t| parse_version("--target", t))
        .transpose()?;
    let client = args.cluster.client(None).await?;
    // Impersonating the garbage collector needs the `impersonate` right; without it the
    // live checks run as the user, and the report says so.
    let gc = args
        .cluster
        .client(Some(crate::exercise::dry_run::GC_USER))
        .await?;
    let ns: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(gc.clone());
    let gc = ns
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .ok()
        .map(|_| gc);
    let opts = crate::audit::AuditOptions {
        target,
        upgrade_window_days: args.upgrade_window,
        live: !args.no_live,
    };
    let mut report = crate::audit::run(&client, gc.as_ref(), &opts, args.fail_on).await?;
    if let Some(gate) = &gate {
        crate::accept::apply_audit(&mut report, gate);
    }
    let dir = args
        .report_dir
        .clone()
        .unwrap_or_else(|| default_report_dir("audit-", ""));
    let written = crate::audit::render::write_all(&report, &dir)
        .with_context(|| format!("writing reports into {}", dir.display()))?;
    for f in &report.findings {
        println!(
            "{:<9} {:<36} {}: {}",
            f.severity.as_str(),
            f.check,
            f.object,
            f.title
        );
    }
    for s in &report.skipped {
        println!("not checked: {s}");
    }
    if let Some(a) = &report.acceptance {
        println!("{}", a.summary());
    }
    println!(
        "
{} findings; verdict {:?}",
        report.findings.len(),
        report.verdict
    );
    for p in written {
        println!("  {}", p.display());
    }
    Ok(report.exit_code)
}
