//! A finished run of a scenario on a version, as the report reads it (the engine's
//! `runner` plans and runs them).

use crate::record::Outcome;

/// What a run was on the path: on the source, the target, a version between, or an
/// upgrade in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    Source,
    Target,
    /// A version between source and target on a path of more than two.
    Via,
    /// Source upgraded in place to target (through every version between).
    Upgrade,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Target => "target",
            Role::Via => "via",
            Role::Upgrade => "upgrade",
        }
    }
}

/// A finished run (or why it could not run).
#[derive(Clone, Debug)]
pub struct RunResult {
    pub scenario: String,
    pub role: Role,
    /// The version it started on (an index into the path).
    pub at: usize,
    pub outcome: Result<Outcome, String>,
    pub timings: Timings,
}

/// Where a run's time went.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timings {
    /// Starting the control plane until ready.
    pub start: std::time::Duration,
    /// The scenario's steps, snapshots and webhook set-up.
    pub exercise: std::time::Duration,
    /// Stopping the control plane and removing its files.
    pub stop: std::time::Duration,
}
