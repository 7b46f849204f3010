//! `runs.json` read from and written to report directories (the format and the merge
//! are [`preflight_core::report::shard`]'s).

use std::path::{Path, PathBuf};

pub use preflight_core::report::shard::*;

/// What the engine does with a `runs.json`: report it now, write it, read it.
pub trait ShardFiles: Sized {
    /// The report of these runs (a shard's share, or the whole job's), generated now.
    fn report(&self) -> super::Report;
    /// Writes `runs.json` into `dir`.
    fn write(&self, dir: &Path) -> std::io::Result<PathBuf>;
    /// Reads `runs.json` from a report directory.
    fn read(dir: &Path) -> Result<Self, MergeError>;
}

impl ShardFiles for ShardFile {
    fn report(&self) -> super::Report {
        self.report_at(crate::now_rfc3339())
    }

    fn write(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let mut text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        text.push('\n');
        super::write_file(dir, FILE, &text)
    }

    fn read(dir: &Path) -> Result<ShardFile, MergeError> {
        let path = dir.join(FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| MergeError::Read {
            path: path.clone(),
            source,
        })?;
        ShardFile::parse(&path, &text)
    }
}

/// Merges the shards of one job read from `dirs` into the job's runs.
pub fn merge(dirs: &[PathBuf]) -> Result<ShardFile, MergeError> {
    let mut files = Vec::new();
    for d in dirs {
        files.push((d.join(FILE), ShardFile::read(d)?));
    }
    merge_files(files)
}
