//! Detached clusters (`preflight cluster up`) and how `cluster down` finds them.
//!
//! State files live in `$PREFLIGHT_STATE_DIR` (default: the user's state directory,
//! `~/.local/state/preflight`), one JSON file per cluster name.

use std::path::PathBuf;
use std::time::Duration;

use super::local::DetachedState;
use super::process::stop_foreign_group;
use crate::errors::ClusterError;

/// Where detached clusters are recorded (and, by default, where their files live).
pub fn state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PREFLIGHT_STATE_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    dirs::state_dir()
        .or_else(dirs::cache_dir)
        .unwrap_or_else(std::env::temp_dir)
        .join("preflight")
}

fn state_file(name: &str) -> PathBuf {
    state_dir().join("clusters").join(format!("{name}.json"))
}

/// Records a detached cluster.
pub fn save(state: &DetachedState) -> Result<PathBuf, ClusterError> {
    let path = state_file(&state.name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| ClusterError::io("creating", parent, e))?;
    }
    let json = serde_json::to_string_pretty(state).expect("state serialises");
    std::fs::write(&path, json).map_err(|e| ClusterError::io("writing", &path, e))?;
    Ok(path)
}

/// Whether a cluster of this name is recorded.
pub fn exists(name: &str) -> bool {
    state_file(name).exists()
}

/// Stops a detached cluster and removes its files.
pub fn down(name: &str) -> Result<DetachedState, ClusterError> {
    let path = state_file(name);
    let text = std::fs::read_to_string(&path).map_err(|_| ClusterError::NotRunning {
        name: name.to_string(),
        path: path.clone(),
    })?;
    let state: DetachedState = serde_json::from_str(&text).map_err(|e| ClusterError::Io {
        action: "parsing",
        path: path.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    // Reverse start order: controller manager, apiserver, etcd.
    for pgid in state.process_groups.iter().rev() {
        stop_foreign_group(*pgid, Duration::from_secs(10));
    }
    let _ = std::fs::remove_dir_all(&state.dir);
    std::fs::remove_file(&path).map_err(|e| ClusterError::io("removing", &path, e))?;
    Ok(state)
}
