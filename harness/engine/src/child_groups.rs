//! Short-lived children (`helm`, `go`, `docker`, `kind`) that must not outlive the
//! harness.
//!
//! Control-plane components are [`crate::cluster::process::Supervised`] and their
//! cluster's sentinel stops them. The commands a run waits on ([`crate::command`])
//! stop their own process group at their timeout or when their future is dropped;
//! what they cannot cover is the harness itself ending: a `helm install` waiting on a
//! hook or a `go build` compiling Kubernetes would go on alone. Here each of them:
//!
//! * runs in its own process group, so one signal reaches everything it spawned
//!   (`go build` runs many compilers);
//! * is registered while it runs ([`track`]); the binary calls [`stop_all`] after a
//!   signal, before it exits;
//! * is listed in a file that one process-wide [`Sentinel`] reads if the harness dies
//!   without running any code (SIGKILL): it then kills every listed group and removes
//!   the file's directory.
//!
//! A child that the harness spawns and the kernel kills it before it is registered
//! (a window of microseconds) is the one case not covered.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::cluster::process::Sentinel;

struct Registry {
    groups: Vec<i32>,
    /// Holds the group file; removed by [`stop_all`] or by the sentinel.
    dir: Option<PathBuf>,
    sentinel: Option<Sentinel>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    groups: Vec::new(),
    dir: None,
    sentinel: None,
});

/// Registered process groups; unregistered when dropped (after the wait).
#[must_use = "the groups are unregistered when this is dropped"]
pub struct Tracked(Vec<i32>);

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut reg = lock();
        reg.groups.retain(|g| !self.0.contains(g));
        write_file(&reg);
    }
}

/// Registers the groups led by `pids` (each started in a process group of its own).
pub fn track(pids: &[u32]) -> Tracked {
    let groups: Vec<i32> = pids.iter().map(|p| *p as i32).collect();
    let mut reg = lock();
    if reg.sentinel.is_none() {
        start_sentinel(&mut reg);
    }
    reg.groups.extend(&groups);
    write_file(&reg);
    Tracked(groups)
}

/// Stops every tracked group (SIGTERM, then SIGKILL after `grace`) and removes the
/// sentinel's directory. Called by the binary before it exits after a signal.
pub fn stop_all(grace: Duration) {
    let mut reg = lock();
    let groups = std::mem::take(&mut reg.groups);
    stop_groups(&groups, grace);
    if let Some(mut s) = reg.sentinel.take() {
        s.disarm();
    }
    if let Some(dir) = reg.dir.take() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// SIGTERM to each group, SIGKILL to what remains after `grace`.
fn stop_groups(groups: &[i32], grace: Duration) {
    for g in groups {
        let _ = killpg(Pid::from_raw(*g), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline
        && groups
            .iter()
            .any(|g| killpg(Pid::from_raw(*g), None).is_ok())
    {
        std::thread::sleep(Duration::from_millis(25));
    }
    for g in groups {
        let _ = killpg(Pid::from_raw(*g), Signal::SIGKILL);
    }
}

fn lock() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

fn start_sentinel(reg: &mut Registry) {
    let Ok(dir) = tempfile::Builder::new()
        .prefix("preflight-children-")
        .tempdir()
    else {
        return;
    };
    let dir = dir.keep();
    let file = dir.join(".pgids");
    if let Ok(s) = Sentinel::start(&file, Some(&dir)) {
        reg.sentinel = Some(s);
        reg.dir = Some(dir);
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn write_file(reg: &Registry) {
    if let Some(dir) = &reg.dir {
        let text: String = reg.groups.iter().map(|g| format!("{g}\n")).collect();
        let _ = std::fs::write(dir.join(".pgids"), text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Processes of group `pgid` that are not zombies (`/proc/PID/stat`: state, then
    /// the parent, then the group).
    fn live_members(pgid: u32) -> Vec<u32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let rest: Vec<&str> = stat
                    .rsplit_once(')')
                    .map(|(_, r)| r.split_whitespace().collect())
                    .unwrap_or_default();
                rest.len() > 2 && rest[0] != "Z" && rest[2] == pgid.to_string()
            })
            .collect()
    }

    #[test]
    fn a_tracked_child_is_stopped_with_its_own_children() {
        // `sh` starts a `sleep` of its own: both are in the tracked group.
        use std::os::unix::process::CommandExt;
        let mut handle = std::process::Command::new("sh")
            .args(["-c", "sleep 300 & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pids = vec![handle.id()];
        let group = pids[0] as i32;
        let tracked = track(&pids);
        assert!(!live_members(pids[0]).is_empty(), "the group runs");
        // What the sentinel would read if the harness died now.
        let listed = lock()
            .dir
            .as_ref()
            .map(|d| std::fs::read_to_string(d.join(".pgids")).unwrap_or_default())
            .unwrap_or_default();
        assert!(listed.lines().any(|l| l == group.to_string()), "{listed}");
        // Only this test's group: other tests of this process may be running helm.
        stop_groups(&[group], Duration::from_secs(2));
        let status = handle.wait().unwrap();
        assert!(!status.success(), "stopped by a signal: {status:?}");
        assert_eq!(
            live_members(pids[0]),
            Vec::<u32>::new(),
            "nothing of the group is left"
        );
        drop(tracked);
        assert!(
            !lock().groups.contains(&group),
            "unregistered after the wait"
        );
    }
}
