//! `runs.json`: every run a job (or one shard of it) made, as the report reads them,
//! so that shards run on different CI machines merge into the report one machine
//! would have written for the same runs.
//!
//! A shard runs every N-th run of the whole plan (the engine's `runner::shard`); each
//! record keeps its index in that plan, and [`super::assemble_at`] orders and compares
//! records the same way whoever made them. Merging checks that the shards belong to
//! one job (same versions, scenarios, fail-on, provider, plan size) and that together
//! they hold every planned run exactly once: a missing shard is an error, never a pass.
//! The engine's `report::shard` reads and writes the files.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{FailOn, Report, RunRecord, ScenarioMeta, VersionInfo};

/// The identifier and version of `runs.json`.
pub const SCHEMA: &str = "preflight.runs/v1";
/// The file's name in a report directory.
pub const FILE: &str = "runs.json";

/// What a job, or shard `shard` of `of`, ran.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardFile {
    pub schema: String,
    pub shard: usize,
    pub of: usize,
    /// Runs in the whole plan (every shard's).
    pub planned: usize,
    pub provider: String,
    pub versions: Vec<VersionInfo>,
    pub fail_on: Vec<FailOn>,
    pub noise: Vec<String>,
    pub scenarios: Vec<ScenarioMeta>,
    pub records: Vec<RunRecord>,
}

/// Why shards do not merge.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{path}: cannot read it ({source}); is it a report directory of `preflight run`?", path = path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a preflight runs file: {detail}", path = path.display())]
    Parse { path: PathBuf, detail: String },
    #[error("{path} and {first} disagree on {field} ({b} vs {a}): the shards are of different jobs", path = path.display(), first = first.display())]
    Mismatch {
        path: PathBuf,
        first: PathBuf,
        field: &'static str,
        a: String,
        b: String,
    },
    #[error("shard {shard}/{of} is given twice ({a} and {b})", a = a.display(), b = b.display())]
    Duplicate {
        shard: usize,
        of: usize,
        a: PathBuf,
        b: PathBuf,
    },
    #[error("shard{s} {missing} of {of} missing: merging needs every shard's report directory", s = if missing.contains(',') { "s" } else { "" })]
    Missing { missing: String, of: usize },
    #[error("the shards hold {got} runs of the {planned} planned (run {index} {problem})")]
    Runs {
        got: usize,
        planned: usize,
        index: usize,
        problem: &'static str,
    },
    #[error("no report directory given")]
    Empty,
}

impl ShardFile {
    /// The report of these runs (a shard's share, or the whole job's), generated at
    /// `generated_at` (RFC 3339).
    pub fn report_at(&self, generated_at: String) -> Report {
        let mut r = super::assemble_at(
            &self.scenarios,
            self.records.clone(),
            &self.versions,
            &self.fail_on,
            generated_at,
        );
        r.provider = self.provider.clone();
        r.noise = self.noise.clone();
        r
    }

    /// Parses the text of `runs.json` read from `path` (named in errors): the reader
    /// of the engine's `ShardFile::read`, without the file system, for tests and the fuzz target.
    pub fn parse(path: &Path, text: &str) -> Result<ShardFile, MergeError> {
        let bad = |detail: String| MergeError::Parse {
            path: path.to_path_buf(),
            detail,
        };
        let file: ShardFile = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        if file.schema != SCHEMA {
            return Err(bad(format!(
                "schema `{}`, expected `{SCHEMA}`",
                file.schema
            )));
        }
        if file.shard == 0 || file.shard > file.of {
            return Err(bad(format!(
                "shard {} of {}: expected 1 <= shard <= of",
                file.shard, file.of
            )));
        }
        Ok(file)
    }
}

/// Merges shards already read (each with the path it was read from, for errors).
pub fn merge_files(mut files: Vec<(PathBuf, ShardFile)>) -> Result<ShardFile, MergeError> {
    files.sort_by_key(|(_, f)| f.shard);
    let (first_path, first) = files.first().cloned().ok_or(MergeError::Empty)?;
    for (path, f) in &files[1..] {
        let checks: [(&'static str, String, String); 6] = [
            ("the shard count", first.of.to_string(), f.of.to_string()),
            (
                "the plan size",
                first.planned.to_string(),
                f.planned.to_string(),
            ),
            ("the provider", first.provider.clone(), f.provider.clone()),
            ("the versions", text(&first.versions), text(&f.versions)),
            ("--fail-on", text(&first.fail_on), text(&f.fail_on)),
            ("the scenarios", text(&first.scenarios), text(&f.scenarios)),
        ];
        for (field, a, b) in checks {
            if a != b {
                return Err(MergeError::Mismatch {
                    path: path.clone(),
                    first: first_path.clone(),
                    field,
                    a,
                    b,
                });
            }
        }
        if f.noise != first.noise {
            return Err(MergeError::Mismatch {
                path: path.clone(),
                first: first_path.clone(),
                field: "--noise",
                a: first.noise.join(","),
                b: f.noise.join(","),
            });
        }
    }
    for w in files.windows(2) {
        if w[0].1.shard == w[1].1.shard {
            return Err(MergeError::Duplicate {
                shard: w[0].1.shard,
                of: first.of,
                a: w[0].0.clone(),
                b: w[1].0.clone(),
            });
        }
    }
    // The shard numbers are sorted and distinct here. Only the first few missing ones
    // are named, and only those are looked for: `of` comes from the file, and a
    // corrupted or hostile one (`"of": 10^18`) must not make this loop for ever.
    let present: Vec<usize> = files.iter().map(|(_, f)| f.shard).collect();
    let valid = |s: &&usize| (1..=first.of).contains(*s);
    if present.len() != first.of || !present.iter().all(|s| valid(&s)) {
        const NAMED: usize = 10;
        let absent = first.of - present.iter().filter(valid).count();
        let mut missing: Vec<String> = (1..=first.of)
            .filter(|i| present.binary_search(i).is_err())
            .take(NAMED)
            .map(|i| i.to_string())
            .collect();
        if absent > NAMED {
            missing.push(format!("and {} more", absent - NAMED));
        }
        return Err(MergeError::Missing {
            missing: missing.join(", "),
            of: first.of,
        });
    }
    let mut records: Vec<RunRecord> = files.into_iter().flat_map(|(_, f)| f.records).collect();
    records.sort_by_key(|r| r.index);
    for (expected, r) in records.iter().enumerate() {
        if r.index != expected {
            return Err(MergeError::Runs {
                got: records.len(),
                planned: first.planned,
                index: expected.min(r.index),
                problem: if r.index > expected {
                    "is missing"
                } else {
                    "is there twice"
                },
            });
        }
    }
    if records.len() != first.planned {
        return Err(MergeError::Runs {
            got: records.len(),
            planned: first.planned,
            index: records.len(),
            problem: "is missing",
        });
    }
    Ok(ShardFile {
        shard: 1,
        of: 1,
        records,
        ..first
    })
}

/// Compact JSON of a value (for comparing shard headers).
fn text<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(shard: usize, of: usize, indices: &[usize]) -> (PathBuf, ShardFile) {
        let run: super::super::RunReport = serde_json::from_value(serde_json::json!({
            "role": "source", "version": "v1.29.15", "endVersion": "v1.29.15",
            "verdict": "pass", "headline": "clean", "namespace": null, "release": null,
            "steps": [], "leftovers": [], "unlistable": [], "findings": [],
            "webhookRequests": 0, "webhookRefusals": 0, "teardownErrors": []
        }))
        .expect("a run report parses");
        (
            PathBuf::from(format!("shard-{shard}")),
            ShardFile {
                schema: SCHEMA.into(),
                shard,
                of,
                planned: 4,
                provider: "local".into(),
                versions: vec![VersionInfo::new("v1.29.15"), VersionInfo::new("v1.30.14")],
                fail_on: vec![FailOn::Leftovers],
                noise: vec![],
                scenarios: vec![],
                records: indices
                    .iter()
                    .map(|i| RunRecord {
                        scenario: "s".into(),
                        index: *i,
                        at: i % 2,
                        run: run.clone(),
                        facts: None,
                    })
                    .collect(),
            },
        )
    }

    #[test]
    fn shards_merge_in_plan_order() {
        let merged = merge_files(vec![file(2, 2, &[1, 3]), file(1, 2, &[0, 2])]).unwrap();
        let order: Vec<usize> = merged.records.iter().map(|r| r.index).collect();
        assert_eq!(order, [0, 1, 2, 3]);
        assert_eq!((merged.shard, merged.of), (1, 1));
    }

    #[test]
    fn a_missing_or_doubled_shard_is_an_error() {
        let err = merge_files(vec![file(1, 3, &[0, 3]), file(3, 3, &[2])]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "shard 2 of 3 missing: merging needs every shard's report directory"
        );
        let err = merge_files(vec![file(1, 2, &[0, 2]), file(1, 2, &[0, 2])]).unwrap_err();
        assert!(
            err.to_string().contains("shard 1/2 is given twice"),
            "{err}"
        );
        let err = merge_files(vec![file(1, 2, &[0, 2]), file(2, 2, &[1])]).unwrap_err();
        assert!(err.to_string().contains("run 3 is missing"), "{err}");
    }

    #[test]
    fn a_hostile_shard_count_is_refused_without_counting_to_it() {
        let started = std::time::Instant::now();
        let (p, mut huge) = file(1, 2, &[0, 1, 2, 3]);
        huge.of = usize::MAX;
        let err = merge_files(vec![(p, huge)]).unwrap_err().to_string();
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(
            err.starts_with("shards 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, and 18446744073709551604 more of 18446744073709551615 missing"),
            "{err}"
        );
        let text = serde_json::to_string(&file(3, 2, &[0]).1).unwrap();
        let err = ShardFile::parse(Path::new("d/runs.json"), &text)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "d/runs.json: not a preflight runs file: shard 3 of 2: expected 1 <= shard <= of"
        );
    }

    #[test]
    fn shards_of_different_jobs_do_not_merge() {
        let (p, mut other) = file(2, 2, &[1, 3]);
        other.versions[1] = VersionInfo::new("v1.31.4");
        let err = merge_files(vec![file(1, 2, &[0, 2]), (p, other)]).unwrap_err();
        assert!(
            err.to_string().contains("disagree on the versions"),
            "{err}"
        );
    }
}
