//! Where the reliability tests stop a run: `PREFLIGHT_PAUSE_AT=<phase>`.
//!
//! Signals at a given phase (Ctrl-C while helm uninstalls, SIGKILL while reports are
//! written) must leave nothing behind. A test cannot hit a phase that lasts
//! milliseconds by timing alone, so a run started with `PREFLIGHT_PAUSE_AT` set to
//! one of [`PHASES`] prints `paused at <phase>` on stderr when it reaches that phase
//! and waits there, with everything of the phase set up, until it is signalled. It
//! changes nothing else: unset (always, outside the tests), [`pause_at`] returns at
//! once.

/// The phases a run can be paused at, in the order a run reaches them.
pub const PHASES: &[&str] = &[
    "cluster-start",
    "install",
    "webhook-switch",
    "uninstall",
    "settle",
    "report-writing",
];

/// Waits forever if `PREFLIGHT_PAUSE_AT` names `phase` (see the module doc).
pub async fn pause_at(phase: &str) {
    debug_assert!(PHASES.contains(&phase), "unknown phase {phase}");
    if std::env::var("PREFLIGHT_PAUSE_AT").is_ok_and(|p| p == phase) {
        eprintln!("paused at {phase} (PREFLIGHT_PAUSE_AT)");
        std::future::pending::<()>().await;
    }
}
