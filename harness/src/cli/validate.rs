//! `preflight validate`: scenario files and twins, read as `run` reads them.

use std::path::PathBuf;

use super::{EXIT_ERROR, EXIT_OK, scenario};

/// One line per file; exit 2 when any is refused.
pub(super) fn validate(files: &[PathBuf]) -> i32 {
    let mut failed = 0;
    for f in files {
        let ok = if crate::twin::manifest::is_twin_path(f) {
            twin(f)
        } else {
            match scenario::load_file(f) {
                Ok(s) => {
                    println!(
                        "ok    {} ({}: {} webhooks, {} steps)",
                        f.display(),
                        s.name,
                        s.webhooks.len(),
                        s.steps.len()
                    );
                    true
                }
                Err(e) => {
                    eprintln!("error {e}");
                    false
                }
            }
        };
        if !ok {
            failed += 1;
        }
    }
    if failed == 0 { EXIT_OK } else { EXIT_ERROR }
}

/// twin.yaml and every captured file it names, as replay reads them, with the health
/// of each webhook at capture.
fn twin(f: &std::path::Path) -> bool {
    let loaded = crate::twin::manifest::load(f)
        .and_then(|t| crate::twin::load::Surface::load(&t).map(|_| t));
    match loaded {
        Ok(t) => {
            println!(
                "ok    {} (twin of Kubernetes {}: {} releases)",
                f.display(),
                t.kubernetes_version,
                t.releases.len()
            );
            for w in &t.webhooks {
                println!(
                    "      webhook {}: {} ({})",
                    w.hook,
                    w.health.word(),
                    w.evidence
                );
            }
            true
        }
        Err(e) => {
            eprintln!("error {e}");
            false
        }
    }
}
