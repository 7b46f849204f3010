//! Typed errors at the boundaries of the library.
//!
//! Each variant says what failed in words a platform engineer can act on; the binary
//! prints the whole chain (`anyhow`), so variants carry the facts (paths, versions,
//! the last lines of a component's log) rather than prose about where they came from.

use std::path::PathBuf;

pub use preflight_core::log_text::{first_meaningful_line, mentions_port_clash, summary_line};

/// Errors of the components cache: resolving, building or downloading binaries.
#[derive(Debug, thiserror::Error)]
pub enum ComponentsError {
    /// The version string is not `vMAJOR.MINOR.PATCH`.
    #[error("`{0}` is not a Kubernetes version: expected vMAJOR.MINOR.PATCH, e.g. v1.30.14")]
    BadVersion(String),

    /// Neither a minor nor a patch.
    #[error("`{0}` is not a Kubernetes version: expected a minor (v1.30) or a patch (v1.30.14)")]
    BadWanted(String),

    /// A minor preflight has no pins for.
    #[error(
        "`{requested}`: preflight knows Kubernetes {known} (`preflight versions` lists them); give an exact patch, e.g. v1.31.4, for another"
    )]
    UnknownMinor { requested: String, known: String },

    /// No patch of a minor can be built from what the module proxy serves.
    #[error(
        "no patch of {version}'s minor can be built here: {detail}; use --components-from download or --bin-dir"
    )]
    Unbuildable { version: String, detail: String },

    /// The Go module proxy does not know this Kubernetes release.
    #[error(
        "Kubernetes {version} is not published as a Go module (k8s.io/kubernetes@{version}); check the version\n{detail}"
    )]
    UnknownVersion { version: String, detail: String },

    /// Building from the upstream Go modules failed; the log has the whole story.
    #[error(
        "building {what} failed (log: {log}); last lines:\n{tail}",
        log = log.display()
    )]
    BuildFailed {
        what: String,
        log: PathBuf,
        tail: String,
    },

    /// Neither a Go toolchain nor a download source is usable.
    #[error(
        "cannot provide {what}: no Go toolchain on PATH (install Go >= 1.22 or set PREFLIGHT_GO) and downloading failed: {detail}"
    )]
    NoSource { what: String, detail: String },

    /// A downloaded file does not match its published checksum.
    #[error(
        "checksum mismatch for {url}: expected sha256 {expected}, got {actual}; nothing was installed"
    )]
    ChecksumMismatch {
        url: String,
        expected: String,
        actual: String,
    },

    /// An HTTP download failed.
    #[error("downloading {url} failed: {detail}")]
    Download { url: String, detail: String },

    /// A `--bin-dir` binary is not the version it is asked to be.
    #[error("{} says it is {actual}, but the run needs {expected}: a --bin-dir holds one version's binaries; use `--bin-dir DIR/{{version}}` with one directory per version, or the components cache", binary.display())]
    WrongVersion {
        binary: PathBuf,
        expected: String,
        actual: String,
    },

    /// `--bin-dir` lacks a binary.
    #[error("{dir} has no executable `{binary}` (given with --bin-dir or PREFLIGHT_BIN_DIR)", dir = dir.display())]
    MissingBinary { dir: PathBuf, binary: String },

    /// A build or download finished without producing a binary it should have.
    #[error("filling {what} produced no `{binary}`; nothing was installed")]
    Incomplete { what: String, binary: String },

    /// No Docker engine answers (kind node images and the kind provider need one).
    #[error(
        "no Docker engine answers ({0}): start Docker, or on a Debian machine run `sudo ci/docker-engine.sh` from preflight's repository, which installs and starts one that keeps container traffic on the machine"
    )]
    Docker(String),

    /// File system trouble in the cache.
    #[error("{action} {path}: {source}", path = path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Errors of a cluster provider: starting, checking and stopping control planes.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A component exited while it should be running, e.g. a busy port or a bad flag.
    /// The log lines go on lines of their own, so the first line reads on its own
    /// (see [`summary_line`]).
    #[error(
        "{component} exited during start-up ({status})\nlast lines of {log}:\n{tail}",
        log = log.display()
    )]
    ComponentExited {
        component: String,
        status: String,
        log: PathBuf,
        tail: String,
    },

    /// A component did not become ready before the deadline.
    #[error(
        "{component} was not ready after {secs}s ({detail})\nlast lines of {log}:\n{tail}",
        log = log.display()
    )]
    NotReady {
        component: String,
        secs: u64,
        detail: String,
        log: PathBuf,
        tail: String,
    },

    /// A component cannot bind its port again after being stopped (an in-place upgrade),
    /// and the port cannot move because kubeconfigs already handed out point at it.
    #[error(
        "{component} cannot listen on 127.0.0.1:{port} again: another process took the port while {component} was stopped, and it cannot move (kubeconfigs point at it)"
    )]
    PortTaken {
        component: String,
        port: u16,
        #[source]
        source: Box<ClusterError>,
    },

    /// A process could not be started at all.
    #[error("cannot start {component} ({binary}): {source}", binary = binary.display())]
    Spawn {
        component: String,
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Certificates or keys could not be generated.
    #[error("generating the cluster's certificates: {0}")]
    Pki(#[from] rcgen::Error),

    /// The kubeconfig could not be used.
    #[error("kubeconfig {path}: {detail}", path = path.display())]
    Kubeconfig { path: PathBuf, detail: String },

    /// A Kubernetes API call failed.
    #[error("{action}: {source}")]
    Api {
        action: String,
        #[source]
        source: kube::Error,
    },

    /// A provider cannot do what was asked, or cannot run here; the message says what
    /// to do instead (install a tool, use another provider).
    #[error("{0}")]
    Unsupported(String),

    /// A provider's command failed.
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },

    /// A provider's command ran past its timeout, or could not be waited for.
    #[error(transparent)]
    External(crate::command::CommandError),

    /// No cluster with this name is running (for `cluster down`).
    #[error("no cluster named `{name}` is running (no state file {path})", path = path.display())]
    NotRunning { name: String, path: PathBuf },

    /// File system trouble in the run directory.
    #[error("{action} {path}: {source}", path = path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ClusterError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        ClusterError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

impl ClusterError {
    /// Whether a component failed because its port was taken: the one start-up failure
    /// that trying again on other ports cures.
    pub fn is_port_clash(&self) -> bool {
        match self {
            ClusterError::ComponentExited { tail, .. } | ClusterError::NotReady { tail, .. } => {
                tail.lines().any(mentions_port_clash)
            }
            ClusterError::PortTaken { .. } => true,
            _ => false,
        }
    }
}

impl ComponentsError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        ComponentsError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// The last `n` lines of a log file, for error messages; empty when unreadable.
pub fn log_tail(path: &std::path::Path, n: usize) -> String {
    log_tail_from(path, 0, n)
}

/// The last `n` lines of a log file written at or after byte `offset`: a process that
/// appends to a log shared with earlier runs (a restart, a retry) is judged by its own
/// lines only. Empty when unreadable.
pub fn log_tail_from(path: &std::path::Path, offset: u64, n: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let from = usize::try_from(offset).map_or(text.len(), |o| o.min(text.len()));
    let text = String::from_utf8_lossy(&text[from..]);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..]
        .iter()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// etcd (zap JSON, `--log-level=warn`) whose peer port was taken.
    const ETCD_CLASH: &str = r#"{"level":"warn","ts":"2024-11-30T10:11:12.345Z","caller":"embed/config.go:679","msg":"Running http and grpc server on single port. This is not recommended for production."}
{"level":"error","ts":"2024-11-30T10:11:12.346Z","caller":"embed/etcd.go:537","msg":"creating peer listener failed","error":"listen tcp 127.0.0.1:41235: bind: address already in use"}
{"level":"warn","ts":"2024-11-30T10:11:12.346Z","caller":"embed/etcd.go:377","msg":"closing etcd server","name":"preflight"}
{"level":"fatal","ts":"2024-11-30T10:11:12.347Z","caller":"etcdmain/etcd.go:204","msg":"discovery failed","error":"listen tcp 127.0.0.1:41235: bind: address already in use","stacktrace":"go.etcd.io/etcd/server/v3/etcdmain.startEtcdOrProxyV2\n\tgo.etcd.io/etcd/server/v3/etcdmain/etcd.go:204"}"#;

    /// kube-apiserver (klog, `--v=1`) whose secure port was taken.
    const APISERVER_CLASH: &str = r#"I1130 10:11:12.000000   4242 options.go:220] external host was not specified, using 127.0.0.1
I1130 10:11:12.001000   4242 server.go:148] Version: v1.29.15
I1130 10:11:12.001100   4242 server.go:150] "Golang settings" GOGC="" GOMAXPROCS="" GOTRACEBACK=""
E1130 10:11:12.500000   4242 run.go:74] "command failed" err="failed to create listener: failed to listen on 127.0.0.1:43211: listen tcp 127.0.0.1:43211: bind: address already in use""#;

    /// kube-apiserver that lost its etcd: warnings mention errors, the fatal line says why.
    const APISERVER_NO_ETCD: &str = r#"I1130 10:11:12.001000   4242 server.go:148] Version: v1.30.14
W1130 10:11:13.000000   4242 logging.go:59] [core] [Channel #1 SubChannel #2] grpc: addrConn.createTransport failed to connect to {Addr: "127.0.0.1:2379"}. Err: connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:2379: connect: connection refused"
E1130 10:11:14.000000   4242 controller.go:145] "Failed to ensure lease exists, will retry" err="context deadline exceeded"
F1130 10:11:32.000000   4242 instance.go:290] Error creating leases: error creating storage factory: context deadline exceeded
goroutine 1 [running]:
k8s.io/klog/v2.stacks(0x1)"#;

    /// A bad flag: cobra's `Error:` line, then the usage.
    const BAD_FLAG: &str = "Error: unknown flag: --bogus
Usage:
  kube-apiserver [flags]

Generic flags:
";

    #[test]
    fn a_taken_port_wins_over_everything_else() {
        assert_eq!(
            first_meaningful_line(ETCD_CLASH),
            Some(
                r#"{"level":"error","ts":"2024-11-30T10:11:12.346Z","caller":"embed/etcd.go:537","msg":"creating peer listener failed","error":"listen tcp 127.0.0.1:41235: bind: address already in use"}"#
            )
        );
        let line = first_meaningful_line(APISERVER_CLASH).unwrap();
        assert!(line.starts_with("E1130 10:11:12.500000"), "{line}");
        assert!(line.ends_with(r#"bind: address already in use""#), "{line}");
    }

    #[test]
    fn fatal_wins_over_error_and_warnings_do_not_count() {
        let line = first_meaningful_line(APISERVER_NO_ETCD).unwrap();
        assert!(line.starts_with("F1130 10:11:32.000000"), "{line}");
        let etcd_fatal = r#"{"level":"warn","msg":"x"}
{"level": "fatal","msg":"failed to open backend","error":"permission denied"}"#;
        assert_eq!(
            first_meaningful_line(etcd_fatal),
            Some(
                r#"{"level": "fatal","msg":"failed to open backend","error":"permission denied"}"#
            )
        );
    }

    #[test]
    fn cobra_errors_count_and_plain_lines_do_not() {
        assert_eq!(
            first_meaningful_line(BAD_FLAG),
            Some("Error: unknown flag: --bogus")
        );
        assert_eq!(
            first_meaningful_line(
                "fake kube-apiserver: refusing to start\nI1130 10:11:12.0 1 a.go:1] ok"
            ),
            None
        );
        assert_eq!(first_meaningful_line(""), None);
    }

    #[test]
    fn tail_prefixes_are_stripped() {
        let tail: String = APISERVER_CLASH
            .lines()
            .map(|l| format!("  | {l}\n"))
            .collect();
        let line = first_meaningful_line(&tail).unwrap();
        assert!(line.starts_with("E1130 "), "{line}");
    }

    #[test]
    fn port_clashes_are_recognised_in_component_errors_only() {
        let exited = |tail: &str| ClusterError::ComponentExited {
            component: "kube-apiserver".into(),
            status: "exit status: 1".into(),
            log: "/tmp/x/logs/kube-apiserver-v1.29.15.log".into(),
            tail: tail.into(),
        };
        assert!(exited(APISERVER_CLASH).is_port_clash());
        assert!(exited(ETCD_CLASH).is_port_clash());
        assert!(!exited(APISERVER_NO_ETCD).is_port_clash());
        assert!(!exited(BAD_FLAG).is_port_clash());
        let not_ready = ClusterError::NotReady {
            component: "kube-controller-manager".into(),
            secs: 60,
            detail: "GET /healthz: connection refused".into(),
            log: "/tmp/x/logs/kcm.log".into(),
            tail: "E1130 10:11:12.5 1 run.go:74] \"command failed\" err=\"listen tcp 127.0.0.1:10257: bind: address already in use\"".into(),
        };
        assert!(not_ready.is_port_clash());
        assert!(!ClusterError::Unsupported("address already in use".into()).is_port_clash());
        assert!(mentions_port_clash("listen: EADDRINUSE"));
    }

    #[test]
    fn the_summary_line_names_the_cause() {
        let err = exited_with(APISERVER_CLASH);
        let chained = format!("starting the control plane: {err}");
        let line = summary_line(&chained);
        assert!(
            line.starts_with(
                "starting the control plane: kube-apiserver exited during start-up (exit status: 1): E1130 "
            ),
            "{line}"
        );
        assert!(line.ends_with("bind: address already in use\""), "{line}");
        assert!(!line.contains('\n'), "{line}");
        // Nothing meaningful in the log: the first line alone.
        let plain = exited_with("fake kube-apiserver: refusing to start");
        assert_eq!(
            summary_line(&plain.to_string()),
            "kube-apiserver exited during start-up (exit status: 1)"
        );
        // A first line that already says it is not repeated.
        assert_eq!(
            summary_line("Error: unknown flag: --bogus\nError: unknown flag: --bogus"),
            "Error: unknown flag: --bogus"
        );
    }

    fn exited_with(log: &str) -> ClusterError {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kube-apiserver-v1.29.15.log");
        std::fs::write(&path, log).unwrap();
        ClusterError::ComponentExited {
            component: "kube-apiserver".into(),
            status: "exit status: 1".into(),
            log: path.clone(),
            tail: log_tail(&path, 20),
        }
    }

    #[test]
    fn a_tail_from_an_offset_leaves_earlier_runs_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kcm.log");
        std::fs::write(&path, "old: bind: address already in use\n").unwrap();
        let offset = std::fs::metadata(&path).unwrap().len();
        std::fs::write(&path, "old: bind: address already in use\nnew line\n").unwrap();
        assert_eq!(log_tail_from(&path, offset, 20), "  | new line");
        assert_eq!(log_tail_from(&path, 10_000, 20), "");
        assert!(log_tail(&path, 20).contains("old"));
    }
}
