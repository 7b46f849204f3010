//! External commands (docker, kind, helm, go, ...) run under a deadline.
//!
//! A hung Docker engine, registry or API server must not hang a run, and nothing a
//! command started may outlive it. So every command here:
//!
//! * runs through `tokio::process` in a process group of its own, registered with
//!   [`crate::child_groups`] while it runs (a signal to the harness, or its death,
//!   stops the group too);
//! * has a timeout: when it passes, the whole group gets SIGTERM, then SIGKILL after
//!   [`GRACE`], and the error ([`CommandError::TimedOut`]) names the command and the
//!   timeout;
//! * is stopped (SIGKILL to its group) when its future is dropped before it ends, e.g.
//!   on Ctrl-C;
//! * reads no standard input (a command waiting on a terminal would never end).
//!
//! The async functions are for async code. Code that already runs on a blocking
//! thread (component builds, helm under `spawn_blocking`) or in a `Drop` uses
//! [`blocking`], which never blocks a runtime worker thread.

use std::ffi::OsStr;
use std::io;
use std::process::{ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::Command;

/// How long a timed-out command's group has between SIGTERM and SIGKILL: enough for
/// helm or kind to release a lock, short enough that a stuck run ends promptly.
pub const GRACE: Duration = Duration::from_secs(2);

/// How many lines of standard error a [`CommandError::Failed`] quotes.
const STDERR_TAIL_LINES: usize = 20;

/// Why an external command did not give what was asked of it.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The program could not be started (not installed, not executable).
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },

    /// The command ran past its timeout; its whole process group was stopped.
    #[error("`{command}` did not finish within {}; it was stopped with everything it started", seconds(*timeout))]
    TimedOut { command: String, timeout: Duration },

    /// The command ended unsuccessfully.
    #[error("`{command}` failed ({status}){}", tail_suffix(stderr_tail))]
    Failed {
        command: String,
        status: ExitStatus,
        /// The last lines of its standard error.
        stderr_tail: String,
    },

    /// Waiting for the command or reading its output failed.
    #[error("waiting for `{command}`: {source}")]
    Wait {
        command: String,
        #[source]
        source: io::Error,
    },
}

impl CommandError {
    /// The command line the error is about.
    pub fn command(&self) -> &str {
        match self {
            CommandError::Spawn { command, .. }
            | CommandError::TimedOut { command, .. }
            | CommandError::Failed { command, .. }
            | CommandError::Wait { command, .. } => command,
        }
    }

    /// The exit code of a command that ended with one.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            CommandError::Failed { status, .. } => status.code(),
            _ => None,
        }
    }

    /// Whether the program itself could not be started.
    pub fn is_spawn(&self) -> bool {
        matches!(self, CommandError::Spawn { .. })
    }
}

fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

fn tail_suffix(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", tail.trim())
    }
}

/// The last [`STDERR_TAIL_LINES`] lines of `stderr`.
pub fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n")
}

/// The command line of `cmd`, for errors and logs.
pub fn command_line(cmd: &std::process::Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to its end within `timeout` and returns its output, whatever its exit
/// status (for callers that record failures, like helm's).
pub async fn output(cmd: Command, timeout: Duration) -> Result<Output, CommandError> {
    output_reporting_group(cmd, timeout, |_| {}).await
}

/// [`output`], telling `started` the command's process group id as soon as it runs
/// (for a caller that must also clean up after the command if the harness is killed,
/// like `kind create`, whose half-made cluster outlives its process group).
pub async fn output_reporting_group(
    cmd: Command,
    timeout: Duration,
    started: impl FnOnce(u32),
) -> Result<Output, CommandError> {
    let mut running = Running::spawn(cmd)?;
    started(running.group.pgid as u32);
    let (stdout, stderr) = (running.child.stdout.take(), running.child.stderr.take());
    let finished = async {
        let (status, out, err) =
            tokio::join!(running.child.wait(), read_all(stdout), read_all(stderr));
        Ok::<_, io::Error>(Output {
            status: status?,
            stdout: out?,
            stderr: err?,
        })
    };
    match tokio::time::timeout(timeout, finished).await {
        Ok(Ok(out)) => {
            running.ended();
            Ok(out)
        }
        Ok(Err(source)) => Err(running.failed_wait(source).await),
        Err(_) => Err(running.timed_out(timeout).await),
    }
}

/// Like [`output`], and an unsuccessful exit is a [`CommandError::Failed`] carrying
/// the exit status and the tail of standard error.
pub async fn run(cmd: Command, timeout: Duration) -> Result<Output, CommandError> {
    let command = command_line(cmd.as_std());
    let out = output(cmd, timeout).await?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(CommandError::Failed {
            command,
            status: out.status,
            stderr_tail: stderr_tail(&out.stderr),
        })
    }
}

/// Runs `cmd` within `timeout`, handing every line of its standard output and
/// standard error (interleaved as they come, without the line end) to `on_line`;
/// returns the exit status (for long builds that log and report progress).
pub async fn stream(
    cmd: Command,
    timeout: Duration,
    mut on_line: impl FnMut(&str),
) -> Result<ExitStatus, CommandError> {
    let mut running = Running::spawn(cmd)?;
    let (stdout, stderr) = (running.child.stdout.take(), running.child.stderr.take());
    let finished = async {
        let mut out = stdout.map(BufReader::new);
        let mut err = stderr.map(BufReader::new);
        let (mut out_line, mut err_line) = (Vec::new(), Vec::new());
        while out.is_some() || err.is_some() {
            tokio::select! {
                n = next_line(&mut out, &mut out_line), if out.is_some() => {
                    deliver(n?, &mut out, &mut out_line, &mut on_line);
                }
                n = next_line(&mut err, &mut err_line), if err.is_some() => {
                    deliver(n?, &mut err, &mut err_line, &mut on_line);
                }
            }
        }
        running.child.wait().await
    };
    match tokio::time::timeout(timeout, finished).await {
        Ok(Ok(status)) => {
            running.ended();
            Ok(status)
        }
        Ok(Err(source)) => Err(running.failed_wait(source).await),
        Err(_) => Err(running.timed_out(timeout).await),
    }
}

async fn next_line<R: AsyncRead + Unpin>(
    reader: &mut Option<BufReader<R>>,
    line: &mut Vec<u8>,
) -> io::Result<usize> {
    match reader {
        Some(r) => r.read_until(b'\n', line).await,
        None => Ok(0),
    }
}

/// Hands a complete line to `on_line`; at the end of the stream (`n == 0`), closes it.
fn deliver<R>(
    n: usize,
    reader: &mut Option<BufReader<R>>,
    line: &mut Vec<u8>,
    on_line: &mut impl FnMut(&str),
) {
    if n == 0 {
        *reader = None;
    }
    if !line.is_empty() {
        let text = String::from_utf8_lossy(line);
        on_line(text.trim_end_matches(['\n', '\r']));
        line.clear();
    }
}

async fn read_all<R: AsyncRead + Unpin>(pipe: Option<R>) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if let Some(mut p) = pipe {
        p.read_to_end(&mut buf).await?;
    }
    Ok(buf)
}

/// A started command: its child, its registered process group, and what stops the
/// group if the command is abandoned.
struct Running {
    command: String,
    child: tokio::process::Child,
    group: Group,
}

impl Running {
    fn spawn(mut cmd: Command) -> Result<Running, CommandError> {
        let command = command_line(cmd.as_std());
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|source| CommandError::Spawn {
            command: command.clone(),
            source,
        })?;
        let pgid = child.id().ok_or_else(|| CommandError::Wait {
            command: command.clone(),
            source: io::Error::other("the child ended before its id was read"),
        })?;
        Ok(Running {
            command,
            child,
            group: Group {
                pgid: pgid as i32,
                _tracked: Some(crate::child_groups::track(&[pgid])),
                armed: true,
            },
        })
    }

    /// The command ended by itself: its group is left alone (its id may be reused).
    fn ended(&mut self) {
        self.group.armed = false;
    }

    async fn timed_out(mut self, timeout: Duration) -> CommandError {
        self.stop().await;
        CommandError::TimedOut {
            command: self.command,
            timeout,
        }
    }

    async fn failed_wait(mut self, source: io::Error) -> CommandError {
        self.stop().await;
        CommandError::Wait {
            command: self.command,
            source,
        }
    }

    /// SIGTERM to the group; SIGKILL to whatever of it remains after [`GRACE`].
    async fn stop(&mut self) {
        let pgid = Pid::from_raw(self.group.pgid);
        let _ = killpg(pgid, Signal::SIGTERM);
        let deadline = Instant::now() + GRACE;
        let mut leader_done = false;
        while Instant::now() < deadline {
            leader_done = leader_done || self.child.try_wait().ok().flatten().is_some();
            // Once the leader is reaped, the group exists only while others are in it.
            if leader_done && killpg(pgid, None).is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = self.child.wait().await;
        self.group.armed = false;
    }
}

/// Kills the command's group with SIGKILL if dropped while armed: the command's
/// future was dropped (an error elsewhere, Ctrl-C) before it ended. SIGKILL because a
/// destructor cannot wait out a grace period.
struct Group {
    pgid: i32,
    _tracked: Option<crate::child_groups::Tracked>,
    armed: bool,
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.armed {
            let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
        }
    }
}

/// The same commands for synchronous code: each call runs on a thread of its own with
/// a small runtime, and when made from a multi-thread runtime's worker thread (a
/// `Drop`, for instance), inside [`tokio::task::block_in_place`], so the worker's
/// other tasks move to another thread meanwhile.
pub mod blocking {
    use super::*;

    /// [`super::output`] from synchronous code.
    pub fn output(cmd: std::process::Command, timeout: Duration) -> Result<Output, CommandError> {
        off_runtime(move || super::output(Command::from(cmd), timeout))
    }

    /// [`super::run`] from synchronous code.
    pub fn run(cmd: std::process::Command, timeout: Duration) -> Result<Output, CommandError> {
        off_runtime(move || super::run(Command::from(cmd), timeout))
    }

    /// [`super::stream`] from synchronous code.
    pub fn stream(
        cmd: std::process::Command,
        timeout: Duration,
        on_line: impl FnMut(&str) + Send,
    ) -> Result<ExitStatus, CommandError> {
        off_runtime(move || super::stream(Command::from(cmd), timeout, on_line))
    }

    fn off_runtime<F, Fut, T>(make: F) -> Result<T, CommandError>
    where
        F: FnOnce() -> Fut + Send,
        Fut: std::future::Future<Output = Result<T, CommandError>>,
        T: Send,
    {
        unblocked(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| CommandError::Spawn {
                    command: "(a runtime for an external command)".into(),
                    source,
                })?;
            rt.block_on(make())
        })
    }

    /// Runs `work` (synchronous, possibly slow: a `Drop` that deletes a kind cluster)
    /// to its end on a thread of its own. On a multi-thread runtime's worker the wait
    /// happens inside [`tokio::task::block_in_place`], so the worker's other tasks go on
    /// elsewhere; on a current-thread runtime the caller's thread waits (a destructor
    /// has no other choice), but `work` never depends on that runtime being driven.
    pub fn unblocked<T: Send>(work: impl FnOnce() -> T + Send) -> T {
        let on_thread = || {
            std::thread::scope(|s| {
                s.spawn(work)
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
        };
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
                tokio::task::block_in_place(on_thread)
            }
            _ => on_thread(),
        }
    }
}

/// A `std` command for `program` with `args` (the usual start for [`blocking`]).
pub fn std_command<I, S>(program: impl AsRef<OsStr>, args: I) -> std::process::Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Live (not zombie) processes whose command line contains `marker`.
    fn live_with(marker: &str) -> Vec<u32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let state = stat
                    .rsplit_once(')')
                    .and_then(|(_, r)| r.split_whitespace().next().map(str::to_string))
                    .unwrap_or_default();
                state != "Z"
                    && String::from_utf8_lossy(&cmdline)
                        .replace('\0', " ")
                        .contains(marker)
            })
            .collect()
    }

    /// A `sleep` whose argument marks it as this test's (e.g. `30.0417`).
    fn marker_sleep(tag: u32) -> String {
        format!("30.{tag:04}")
    }

    #[tokio::test]
    async fn a_command_past_its_timeout_is_stopped_with_its_grandchildren() {
        let secs = marker_sleep(4171);
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(format!("sleep {secs} & sleep {secs}"));
        let started = Instant::now();
        let err = output(cmd, Duration::from_secs(1)).await.unwrap_err();
        let took = started.elapsed();
        match &err {
            CommandError::TimedOut { command, timeout } => {
                assert!(command.starts_with("sh -c sleep"), "{command}");
                assert_eq!(*timeout, Duration::from_secs(1));
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        let message = err.to_string();
        assert!(
            message.contains("sh -c sleep") && message.contains("within 1 s"),
            "{message}"
        );
        assert!(
            took < Duration::from_secs(1) + GRACE + Duration::from_secs(2),
            "{took:?}"
        );
        assert_eq!(live_with(&secs), Vec::<u32>::new(), "nothing is left");
    }

    #[test]
    fn the_blocking_form_times_out_too_and_leaves_nothing() {
        let secs = marker_sleep(4172);
        let started = Instant::now();
        let err = blocking::run(
            std_command("sh", ["-c", &format!("sleep {secs} & sleep {secs}")]),
            Duration::from_millis(500),
        )
        .unwrap_err();
        assert!(matches!(err, CommandError::TimedOut { .. }), "{err:?}");
        assert!(err.to_string().contains("within 0.5 s"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(live_with(&secs), Vec::<u32>::new(), "nothing is left");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn the_blocking_form_may_be_called_on_a_worker_thread() {
        // As from a `Drop` on the runtime: block_in_place hands the worker on.
        let out = blocking::run(std_command("echo", ["hello"]), Duration::from_secs(10)).unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    }

    #[tokio::test]
    async fn a_failing_command_carries_its_exit_code_and_stderr() {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("echo first >&2; echo 'no such chart' >&2; exit 3");
        let err = run(cmd, Duration::from_secs(10)).await.unwrap_err();
        assert_eq!(err.exit_code(), Some(3), "{err:?}");
        match &err {
            CommandError::Failed { stderr_tail, .. } => {
                assert_eq!(stderr_tail, "first\nno such chart")
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains("exit status: 3"), "{message}");
        assert!(message.contains("no such chart"), "{message}");
    }

    #[tokio::test]
    async fn output_returns_a_failure_as_output() {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("echo out; echo err >&2; exit 2");
        let out = output(cmd, Duration::from_secs(10)).await.unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error() {
        let err = run(
            Command::new("/nonexistent/preflight-no-such-tool"),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(err.is_spawn(), "{err:?}");
        assert!(err.to_string().contains("preflight-no-such-tool"), "{err}");
    }

    #[tokio::test]
    async fn stream_hands_over_both_outputs_line_by_line() {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("echo one; echo two >&2; printf three");
        let mut lines = Vec::new();
        let status = stream(cmd, Duration::from_secs(10), |l| lines.push(l.to_string()))
            .await
            .unwrap();
        assert!(status.success());
        lines.sort();
        assert_eq!(lines, ["one", "three", "two"]);
    }

    #[tokio::test]
    async fn a_dropped_command_is_stopped() {
        let secs = marker_sleep(4173);
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(format!("sleep {secs} & sleep {secs}"));
        let pending = tokio::time::timeout(
            Duration::from_millis(300),
            output(cmd, Duration::from_secs(60)),
        )
        .await;
        assert!(pending.is_err(), "the outer timeout dropped the command");
        // SIGKILL is immediate, but the kernel takes a moment to reap.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !live_with(&secs).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(live_with(&secs), Vec::<u32>::new(), "nothing is left");
    }
}
