//! Long-lived child processes that can never outlive the harness.
//!
//! Each component runs in its own process group, so one signal stops it and anything
//! it spawned. Three layers make sure nothing is left running:
//!
//! 1. [`Supervised`] stops its group when dropped (SIGTERM, then SIGKILL after a grace
//!    period), which covers errors, panics that unwind and normal ends;
//! 2. the binary turns Ctrl-C and SIGTERM into an orderly drop of every guard;
//! 3. a [`Sentinel`] covers what no destructor can: the harness being killed with
//!    SIGKILL or dying. It is a tiny `sh` process holding the read end of a pipe whose
//!    write end only the harness holds; when the harness dies the kernel closes the
//!    pipe, `read` returns, and the sentinel kills every process group listed in the
//!    cluster's `.pgids` file and removes the cluster's directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::errors::ClusterError;

/// A child process in its own process group, stopped when dropped.
#[derive(Debug)]
pub struct Supervised {
    pub name: String,
    pub log: PathBuf,
    /// Where this process's lines start in `log`, which earlier runs of the same
    /// component (a restart, a retry) may have appended to.
    pub log_offset: u64,
    child: Option<Child>,
}

impl Supervised {
    /// Starts `binary args...` with stdout and stderr appended to `log`, and records
    /// its process group in `pgid_file` (read by the [`Sentinel`]).
    pub fn spawn(
        name: &str,
        binary: &Path,
        args: &[String],
        log: &Path,
        pgid_file: &Path,
    ) -> Result<Supervised, ClusterError> {
        use std::os::unix::process::CommandExt;
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(|e| ClusterError::io("opening", log, e))
        };
        let (out, err) = (open()?, open()?);
        let log_offset = out
            .metadata()
            .map_err(|e| ClusterError::io("reading", log, e))?
            .len();
        let child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|source| ClusterError::Spawn {
                component: name.to_string(),
                binary: binary.to_path_buf(),
                source,
            })?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(pgid_file)
            .map_err(|e| ClusterError::io("opening", pgid_file, e))?;
        writeln!(f, "{}", child.id()).map_err(|e| ClusterError::io("writing", pgid_file, e))?;
        Ok(Supervised {
            name: name.to_string(),
            log: log.to_path_buf(),
            log_offset,
            child: Some(child),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Stops the process group: SIGTERM, then SIGKILL after `grace`. Blocks the
    /// calling thread while it waits: for destructors and synchronous code. On the
    /// async runtime use [`Supervised::stop_async`].
    pub fn stop(&mut self, grace: Duration) {
        if let Some(mut child) = self.child.take() {
            stop_group(&mut child, grace);
        }
    }

    /// Stops the process group without blocking the runtime: SIGTERM, then polls for
    /// the exit (every 25 ms, a timer, not a sleeping thread) and sends SIGKILL to the
    /// group once `grace` passed or the leader exited (the leader may be gone while
    /// others in its group remain). Returns how the stop ended.
    pub async fn stop_async(&mut self, grace: Duration) -> Stopped {
        let Some(mut child) = self.child.take() else {
            return Stopped::NotRunning;
        };
        let pgid = Pid::from_raw(child.id() as i32);
        let mut how = Stopped::NotRunning;
        if child.try_wait().ok().flatten().is_none() {
            let _ = killpg(pgid, Signal::SIGTERM);
            how = match wait_for_exit(&mut child, grace).await {
                true => Stopped::Terminated,
                false => Stopped::Killed,
            };
        }
        let _ = killpg(pgid, Signal::SIGKILL);
        // SIGKILL cannot be ignored: the leader is reaped within moments. Should the
        // kernel take longer (a process in uninterruptible sleep), the reaping moves
        // off the runtime rather than blocking it.
        if !wait_for_exit(&mut child, Duration::from_secs(2)).await {
            tokio::task::spawn_blocking(move || {
                let _ = child.wait();
            });
        }
        how
    }

    /// Lets the process run on after the harness exits (for `preflight cluster up`).
    pub fn detach(mut self) -> Option<u32> {
        self.child.take().map(|c| c.id())
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

fn stop_group(child: &mut Child, grace: Duration) {
    let pgid = Pid::from_raw(child.id() as i32);
    if child.try_wait().ok().flatten().is_none() {
        let _ = killpg(pgid, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
    // The leader may be gone while others in its group remain: always sweep the group.
    let _ = killpg(pgid, Signal::SIGKILL);
    let _ = child.wait();
}

/// How [`Supervised::stop_async`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// The process had exited already, or was never running.
    NotRunning,
    /// It exited on SIGTERM within its grace period.
    Terminated,
    /// The grace period passed: SIGKILL ended it.
    Killed,
}

/// Polls `child` for its exit every 25 ms for up to `within`; `true` once it exited.
async fn wait_for_exit(child: &mut Child, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if child.try_wait().ok().flatten().is_some() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Stops a process group that this process did not start (`preflight cluster down`).
pub fn stop_foreign_group(pgid: i32, grace: Duration) {
    let pid = Pid::from_raw(pgid);
    let _ = killpg(pid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if killpg(pid, None).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = killpg(pid, Signal::SIGKILL);
}

const SENTINEL_SCRIPT: &str = r#"read _ignored
pgids=$1 dir=$2
shift 2
for g in $(cat "$pgids" 2>/dev/null); do kill -TERM "-$g" 2>/dev/null; done
if [ $# -gt 0 ]; then "$@" >/dev/null 2>&1; fi
sleep 2
for g in $(cat "$pgids" 2>/dev/null); do kill -KILL "-$g" 2>/dev/null; done
if [ -n "$dir" ]; then rm -rf -- "$dir"; fi
"#;

/// Cleans up after the harness if it dies without running its destructors.
#[derive(Debug)]
pub struct Sentinel {
    child: Option<Child>,
    _pipe: Option<ChildStdin>,
}

impl Sentinel {
    /// Watches this process; on its death stops every group in `pgid_file` and
    /// removes `remove_dir` (if given).
    pub fn start(pgid_file: &Path, remove_dir: Option<&Path>) -> Result<Sentinel, ClusterError> {
        Self::start_with(pgid_file, remove_dir, &[])
    }

    /// Like [`Sentinel::start`], and also runs `on_death` (a program and its
    /// arguments, e.g. `kind delete cluster --name ...`) when the harness dies.
    pub fn start_with(
        pgid_file: &Path,
        remove_dir: Option<&Path>,
        on_death: &[String],
    ) -> Result<Sentinel, ClusterError> {
        use std::os::unix::process::CommandExt;
        let remove = remove_dir
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(SENTINEL_SCRIPT)
            .arg("preflight-sentinel")
            .arg(pgid_file)
            .arg(remove)
            .args(on_death)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|source| ClusterError::Spawn {
                component: "sentinel".into(),
                binary: "sh".into(),
                source,
            })?;
        let pipe = child.stdin.take();
        Ok(Sentinel {
            child: Some(child),
            _pipe: pipe,
        })
    }

    /// Stops the sentinel without letting it act (orderly teardown does the work).
    pub fn disarm(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self._pipe = None;
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        self.disarm();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spawn(dir: &Path, script: &str) -> Supervised {
        Supervised::spawn(
            "test",
            Path::new("/bin/sh"),
            &["-c".into(), script.into()],
            &dir.join("test.log"),
            &dir.join(".pgids"),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_stop_ends_as_soon_as_the_process_exits_on_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = spawn(dir.path(), "sleep 30");
        let started = Instant::now();
        assert_eq!(
            p.stop_async(Duration::from_secs(10)).await,
            Stopped::Terminated
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "polled, not the grace"
        );
        assert_eq!(
            p.stop_async(Duration::from_secs(10)).await,
            Stopped::NotRunning
        );
    }

    #[tokio::test]
    async fn a_process_ignoring_sigterm_is_killed_after_its_grace() {
        let dir = tempfile::tempdir().unwrap();
        // `exec` so the group's leader is what ignores SIGTERM; ready once it wrote.
        let mut p = spawn(dir.path(), "trap '' TERM; echo ready; exec sleep 30");
        let log = dir.path().join("test.log");
        let ready = Instant::now() + Duration::from_secs(5);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("ready")
        {
            assert!(Instant::now() < ready, "the script never started");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let pid = p.pid().unwrap() as i32;
        let started = Instant::now();
        assert_eq!(
            p.stop_async(Duration::from_millis(300)).await,
            Stopped::Killed
        );
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            killpg(Pid::from_raw(pid), None).is_err(),
            "the group is gone"
        );
    }
}
