//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use preflight::cluster::{LocalCluster, LocalConfig};
use preflight::components::{self, Components, Version};
use preflight::progress::Progress;

/// Both pinned versions: every control-plane test runs on each.
pub fn versions() -> [Version; 2] {
    [
        components::DEFAULT_SOURCE.parse().unwrap(),
        components::DEFAULT_TARGET.parse().unwrap(),
    ]
}

/// The binaries of `version`, from the cache (built once if missing).
pub fn components(version: &Version) -> Components {
    static LOCK: OnceLock<std::sync::Mutex<()>> = OnceLock::new();
    let _guard = LOCK.get_or_init(Default::default).lock().unwrap();
    let opts = components::Options::from_env(Progress::quiet());
    components::ensure(version, &opts).unwrap_or_else(|e| panic!("components {version}: {e}"))
}

/// A local control plane at `version`, in a fresh temporary directory.
pub async fn cluster(name: &str, version: &Version) -> LocalCluster {
    preflight::init_crypto();
    let mut config = LocalConfig::new(name, components(version));
    config.ready_timeout = Duration::from_secs(90);
    LocalCluster::start(config)
        .await
        .unwrap_or_else(|e| panic!("starting {name} at {version}: {e}"))
}

/// Processes whose command line mentions `needle` (zombies excluded).
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        if state == Some("Z") {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// Whether process `pid` is gone (or a zombie waiting for a reaper).
pub fn process_gone(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.is_empty()
        || stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
            == Some("Z")
}

/// Polls `cond` every 100 ms until it holds or `deadline` passes.
pub async fn eventually(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + deadline;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `preflight` binary built for these tests.
pub fn preflight_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_preflight"))
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The run of `scenario` in `role` (`source`, `target`, `upgrade`) in a report.json.
pub fn run_of<'a>(doc: &'a serde_json::Value, scenario: &str, role: &str) -> &'a serde_json::Value {
    doc["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == scenario)
        .and_then(|s| {
            s["runs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["role"] == role)
        })
        .unwrap_or_else(|| panic!("no {role} run of {scenario}"))
}

/// A run's leftovers of one kind.
pub fn leftovers<'a>(run: &'a serde_json::Value, kind: &str) -> Vec<&'a serde_json::Value> {
    run["leftovers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] == kind)
        .collect()
}

/// What a run in a report.json left that counts as a failure: (normalised identity,
/// reason).
pub fn failures(run: &serde_json::Value) -> std::collections::BTreeSet<(String, String)> {
    run["leftovers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| {
            !matches!(
                l["reason"].as_str(),
                Some("kept-by-policy" | "kept-by-design")
            )
        })
        .map(|l| {
            (
                l["normalized"].as_str().unwrap_or_default().to_string(),
                l["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The parent process of `pid`.
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
