//! Reports: one result model, four renderers (nextest style: no renderer re-derives a
//! fact).
//!
//! * `report.json`: the machine contract, [`SCHEMA`], described by
//!   `harness/schema/report.v1.json`;
//! * `report.md`: fits a pull-request comment or a change ticket;
//! * `junit.xml`: one test case per scenario and version, for CI systems;
//! * `report.html`: one self-contained page for people.

pub mod shard;

pub use preflight_core::report::*;

use std::path::Path;

/// Builds the report of a whole job from its runs on `versions` (the path; results
/// in plan order), generated now.
pub fn build(
    scenarios: &[crate::scenario::Scenario],
    results: &[crate::runner::RunResult],
    versions: &[VersionInfo],
    fail_on: &[FailOn],
) -> Report {
    build_at(scenarios, results, versions, fail_on, crate::now_rfc3339())
}

/// The report of runs recorded anywhere (one machine, or the shards of a CI matrix),
/// generated now (see [`assemble_at`]).
pub fn assemble(
    scenarios: &[ScenarioMeta],
    records: Vec<RunRecord>,
    versions: &[VersionInfo],
    fail_on: &[FailOn],
) -> Report {
    assemble_at(scenarios, records, versions, fail_on, crate::now_rfc3339())
}

/// Writes the four reports into `dir`; returns their paths.
pub fn write_all(report: &Report, dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let files = [
        ("report.json", render_json(report)),
        ("report.md", markdown::render(report)),
        ("junit.xml", junit::render(report)),
        ("report.html", html::render(report)),
    ];
    let mut out = Vec::new();
    for (name, text) in files {
        out.push(write_file(dir, name, &text)?);
    }
    Ok(out)
}

/// Writes `dir/name` whole or not at all: into a temporary file beside it, renamed
/// over it once complete. A full disk or a kill half-way leaves no half report that a
/// gate could read as a verdict (the temporary file goes with the error, or on a
/// kill stays as `.<name>.tmp-*`, never as `name`).
pub fn write_file(dir: &Path, name: &str, text: &str) -> std::io::Result<std::path::PathBuf> {
    use std::io::Write;
    let path = dir.join(name);
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.tmp-"))
        .tempfile_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(&path).map_err(|e| e.error)?;
    Ok(path)
}

/// Fails early, before any cluster starts, when reports could not be written into
/// `dir`: it must take a 1 MiB file (reports of a large run are about that size),
/// which is removed again, as are the directories created for the check: a run
/// that fails later leaves no empty report directory.
pub fn check_writable(dir: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let created: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    std::fs::create_dir_all(dir)?;
    let result = (|| {
        let mut probe = tempfile::Builder::new()
            .prefix(".preflight-probe-")
            .tempfile_in(dir)?;
        probe.write_all(&vec![0u8; 1 << 20])?;
        probe.as_file().sync_all()?;
        probe.close()
    })();
    for d in created {
        let _ = std::fs::remove_dir(d);
    }
    result
}

#[cfg(test)]
mod accept_tests;
#[cfg(test)]
mod fixture_tests;
#[cfg(test)]
mod hostile_text_tests;
#[cfg(test)]
mod rollout_tests;
#[cfg(test)]
mod substitution_tests;
