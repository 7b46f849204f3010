//! Typed errors at the boundaries of the library.
//!
//! Each variant says what failed in words a platform engineer can act on; the binary
//! prints the whole chain (`anyhow`), so variants carry the facts (paths, versions,
//! the last lines of a component's log) rather than prose about where they came from.

use std::path::PathBuf;

/// Errors of the components cache: resolving, building or downloading binaries.
#[derive(Debug, thiserror::Error)]
pub enum ComponentsError {
    /// The version string is not `vMAJOR.MINOR.PATCH`.
    #[error("`{0}` is not a Kubernetes version: expected vMAJOR.MINOR.PATCH, e.g. v1.30.14")]
    BadVersion(String),

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
    #[error(
        "{component} exited during start-up ({status}); last lines of {log}:\n{tail}",
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
        "{component} was not ready after {secs}s ({detail}); last lines of {log}:\n{tail}",
        log = log.display()
    )]
    NotReady {
        component: String,
        secs: u64,
        detail: String,
        log: PathBuf,
        tail: String,
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
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..]
        .iter()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
