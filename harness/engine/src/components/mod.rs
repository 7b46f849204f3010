//! Where the Kubernetes binaries of a version come from.
//!
//! A run needs `etcd`, `kube-apiserver`, `kube-controller-manager` and `helm` (and
//! `kubectl` for the snapshot benchmark). They live in a per-user cache, one directory
//! per component and version, outside any repository:
//!
//! ```text
//! $PREFLIGHT_CACHE_DIR (default: ~/.cache/preflight)
//! ├── bin/kubernetes-v1.30.14/{kube-apiserver,kube-controller-manager}
//! ├── bin/kubectl-v1.30.14/kubectl
//! ├── bin/etcd-v3.5.15/etcd
//! ├── bin/helm-v3.19.0/helm
//! ├── bin/crane-v0.22.1/crane                (the tests' OCI registry)
//! ├── build/<entry>/{go.mod,go.sum,tools.go,build.log}   (Go wrapper modules)
//! └── locks/<entry>.lock
//! ```
//!
//! An entry is filled once, under a file lock (two runs never build the same thing at
//! once), into a temporary directory that is renamed into place only when complete, so
//! an interrupted build or a failed checksum leaves nothing half-installed. It is
//! filled by [`build`] (the upstream Go modules, with this machine's Go) or by
//! [`download`] (the official release binaries, checksums verified). Users who already
//! have binaries point `--bin-dir` at them and the cache is not touched.

pub mod build;
pub mod download;
pub mod integrity;
pub mod kind_image;
pub mod releases;
pub mod versions;

use std::path::{Path, PathBuf};

use crate::errors::ComponentsError;
use crate::progress::Progress;
pub use versions::{DEFAULT_SOURCE, DEFAULT_TARGET, HELM_VERSION, Version};

/// How an entry of the cache is filled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceKind {
    /// Build when a Go toolchain is on PATH, download otherwise.
    #[default]
    Auto,
    /// Build from the upstream Go modules.
    Build,
    /// Download the official release binaries and verify their checksums.
    Download,
}

/// Where to find or put binaries.
#[derive(Clone, Debug)]
pub struct Options {
    /// Root of the cache.
    pub cache_dir: PathBuf,
    /// A directory that already holds every binary (skips the cache).
    pub bin_dir: Option<PathBuf>,
    pub source: SourceKind,
    pub mirrors: download::Mirrors,
    pub helm_version: Version,
    /// Overrides the etcd version the Kubernetes release recommends.
    pub etcd_version: Option<Version>,
    /// The Go command used to build (`$PREFLIGHT_GO`, else `go`).
    pub go: std::ffi::OsString,
    pub progress: Progress,
}

impl Options {
    /// Defaults from the environment: `PREFLIGHT_CACHE_DIR`, `PREFLIGHT_BIN_DIR`,
    /// `PREFLIGHT_MIRROR_*` (see [`download::Mirrors::from_env`]).
    pub fn from_env(progress: Progress) -> Self {
        Options {
            cache_dir: default_cache_dir(),
            bin_dir: std::env::var_os("PREFLIGHT_BIN_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            source: SourceKind::Auto,
            mirrors: download::Mirrors::from_env(),
            helm_version: HELM_VERSION.parse().expect("pinned helm version parses"),
            etcd_version: None,
            go: build::default_go(),
            progress,
        }
    }
}

impl Options {
    /// Whether the cache is filled by building from Go modules (else by downloading).
    pub fn builds(&self) -> bool {
        match self.source {
            SourceKind::Build => true,
            SourceKind::Download => false,
            SourceKind::Auto => build::go_available(&self.go),
        }
    }
}

/// `$PREFLIGHT_CACHE_DIR`, else the user's cache directory (`~/.cache/preflight`).
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PREFLIGHT_CACHE_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("preflight")
}

/// The binaries of one Kubernetes version, ready to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Components {
    pub version: Version,
    pub etcd_version: Version,
    pub helm_version: Version,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub etcd: PathBuf,
    pub helm: PathBuf,
}

/// One cache entry: a named directory of binaries of one version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// kube-apiserver and kube-controller-manager.
    Kubernetes,
    Kubectl,
    Etcd,
    Helm,
    /// kubelet, kubeadm, kube-scheduler and kube-proxy: what a kind node adds to the
    /// control plane (with [`Entry::Kubernetes`] and [`Entry::Kubectl`]).
    Node,
    /// The kind CLI (`sigs.k8s.io/kind`).
    Kind,
    /// CoreDNS, at the version a release's kubeadm asks for.
    Coredns,
    /// crictl (`sigs.k8s.io/cri-tools`), which kind's node scripts use.
    Crictl,
    /// crane (`github.com/google/go-containerregistry`): the tests serve an OCI
    /// registry with `crane registry serve`, so charts from OCI are tested offline.
    Crane,
}

impl Entry {
    pub fn name(self) -> &'static str {
        match self {
            Entry::Kubernetes => "kubernetes",
            Entry::Kubectl => "kubectl",
            Entry::Etcd => "etcd",
            Entry::Helm => "helm",
            Entry::Node => "node",
            Entry::Kind => "kind",
            Entry::Coredns => "coredns",
            Entry::Crictl => "crictl",
            Entry::Crane => "crane",
        }
    }

    /// The binaries this entry holds.
    pub fn binaries(self) -> &'static [&'static str] {
        match self {
            Entry::Kubernetes => &["kube-apiserver", "kube-controller-manager"],
            Entry::Kubectl => &["kubectl"],
            Entry::Etcd => &["etcd"],
            Entry::Helm => &["helm"],
            Entry::Node => &["kubelet", "kubeadm", "kube-scheduler", "kube-proxy"],
            Entry::Kind => &["kind"],
            Entry::Coredns => &["coredns"],
            Entry::Crictl => &["crictl"],
            Entry::Crane => &["crane"],
        }
    }

    fn dir_name(self, version: &Version) -> String {
        format!("{}-{version}", self.name())
    }
}

/// Makes sure the binaries of `version` exist and returns their paths.
pub fn ensure(version: &Version, opts: &Options) -> Result<Components, ComponentsError> {
    if let Some(dir) = &opts.bin_dir {
        return from_bin_dir(dir, version, opts);
    }
    let kube = ensure_entry(Entry::Kubernetes, version, opts)?;
    let etcd_version = match &opts.etcd_version {
        Some(v) => v.clone(),
        None => recommended_etcd(version, opts),
    };
    let etcd = ensure_entry(Entry::Etcd, &etcd_version, opts)?;
    let helm = ensure_entry(Entry::Helm, &opts.helm_version, opts)?;
    Ok(Components {
        version: version.clone(),
        etcd_version,
        helm_version: opts.helm_version.clone(),
        kube_apiserver: kube.join("kube-apiserver"),
        kube_controller_manager: kube.join("kube-controller-manager"),
        etcd: etcd.join("etcd"),
        helm: helm.join("helm"),
    })
}

/// `helm` alone (the kubeconfig provider needs no control-plane binaries).
pub fn ensure_helm(opts: &Options) -> Result<PathBuf, ComponentsError> {
    if let Some(dir) = &opts.bin_dir {
        return executable_in(dir, "helm");
    }
    Ok(ensure_entry(Entry::Helm, &opts.helm_version, opts)?.join("helm"))
}

/// `crane`, built from its Go module once per machine: the tests' local OCI registry
/// (`crane registry serve`).
pub fn ensure_crane(opts: &Options) -> Result<PathBuf, ComponentsError> {
    let v: Version = versions::CRANE_VERSION.parse()?;
    Ok(ensure_entry(Entry::Crane, &v, opts)?.join("crane"))
}

/// `kubectl` of `version` (used by the snapshot benchmark as the by-hand baseline).
pub fn ensure_kubectl(version: &Version, opts: &Options) -> Result<PathBuf, ComponentsError> {
    if let Some(dir) = &opts.bin_dir {
        return executable_in(dir, "kubectl");
    }
    Ok(ensure_entry(Entry::Kubectl, version, opts)?.join("kubectl"))
}

/// Binaries from `--bin-dir` (`{version}` in the path stands for the version), each
/// control-plane binary checked with `--version`: source and target must not be the
/// same binaries under two labels.
fn from_bin_dir(
    dir: &Path,
    version: &Version,
    opts: &Options,
) -> Result<Components, ComponentsError> {
    let dir = PathBuf::from(
        dir.to_string_lossy()
            .replace("{version}", &version.to_string()),
    );
    let dir = dir.as_path();
    for binary in ["kube-apiserver", "kube-controller-manager"] {
        check_version(&executable_in(dir, binary)?, version)?;
    }
    Ok(Components {
        version: version.clone(),
        etcd_version: opts
            .etcd_version
            .clone()
            .unwrap_or_else(|| version.default_etcd()),
        helm_version: opts.helm_version.clone(),
        kube_apiserver: executable_in(dir, "kube-apiserver")?,
        kube_controller_manager: executable_in(dir, "kube-controller-manager")?,
        etcd: executable_in(dir, "etcd")?,
        helm: executable_in(dir, "helm")?,
    })
}

/// Runs `binary --version` and compares its `Kubernetes vX.Y.Z` with `version`.
fn check_version(binary: &Path, version: &Version) -> Result<(), ComponentsError> {
    let wrong = |actual: String| ComponentsError::WrongVersion {
        binary: binary.to_path_buf(),
        expected: version.to_string(),
        actual,
    };
    let out = crate::command::blocking::output(
        crate::command::std_command(binary, ["--version"]),
        std::time::Duration::from_secs(30),
    )
    .map_err(|e| wrong(format!("nothing readable ({e})")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let said = text
        .split_whitespace()
        .find(|w| w.starts_with('v'))
        .unwrap_or("")
        .to_string();
    let exact = version.to_string();
    let matches = said == exact
        || said
            .strip_prefix(&exact)
            .is_some_and(|rest| rest.starts_with('+') || rest.starts_with('-'));
    if out.status.success() && matches {
        Ok(())
    } else if said.is_empty() {
        Err(wrong(format!(
            "no version (`--version` printed {:?})",
            text.trim().chars().take(80).collect::<String>()
        )))
    } else {
        Err(wrong(said))
    }
}

fn executable_in(dir: &Path, binary: &str) -> Result<PathBuf, ComponentsError> {
    let path = dir.join(binary);
    if is_executable(&path) {
        Ok(path)
    } else {
        Err(ComponentsError::MissingBinary {
            dir: dir.to_path_buf(),
            binary: binary.to_string(),
        })
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The etcd version that the Kubernetes release itself recommends, read from its
/// `build/dependencies.yaml` when its module is at hand, else the per-minor table.
fn recommended_etcd(version: &Version, opts: &Options) -> Version {
    let from_module = (opts.source != SourceKind::Download)
        .then(|| build::recommended_etcd(&opts.go, version))
        .flatten();
    from_module.unwrap_or_else(|| version.default_etcd())
}

/// The cache directory of an entry if it is complete and intact (see [`integrity`]).
pub fn cached(entry: Entry, version: &Version, cache_dir: &Path) -> Option<PathBuf> {
    let dir = cache_dir.join("bin").join(entry.dir_name(version));
    integrity::check(&dir, entry.binaries()).ok().map(|()| dir)
}

/// Fills one entry of the cache unless it is there already; returns its directory.
pub(crate) fn ensure_entry(
    entry: Entry,
    version: &Version,
    opts: &Options,
) -> Result<PathBuf, ComponentsError> {
    if let Some(dir) = cached(entry, version, &opts.cache_dir) {
        return Ok(dir);
    }
    let locks = opts.cache_dir.join("locks");
    std::fs::create_dir_all(&locks).map_err(|e| ComponentsError::io("creating", &locks, e))?;
    let lock_path = locks.join(format!("{}.lock", entry.dir_name(version)));
    let lock = std::fs::File::create(&lock_path)
        .map_err(|e| ComponentsError::io("creating", &lock_path, e))?;
    if lock.try_lock().is_err() {
        let step = opts.progress.step(format!(
            "waiting for another preflight to fill {}",
            entry.dir_name(version)
        ));
        lock.lock()
            .map_err(|e| ComponentsError::io("locking", &lock_path, e))?;
        step.done("");
    }
    // Someone else may have filled it while we waited.
    if let Some(dir) = cached(entry, version, &opts.cache_dir) {
        return Ok(dir);
    }
    let bin = opts.cache_dir.join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| ComponentsError::io("creating", &bin, e))?;
    // Under the lock nobody else fills this entry: staging directories of it are what
    // an interrupted (killed) fill left.
    integrity::remove_stale_staging(&bin, &entry.dir_name(version));
    // A damaged entry (a truncated binary, a half-written directory) is never used:
    // it is removed and filled again.
    let final_dir = bin.join(entry.dir_name(version));
    if final_dir.exists() {
        let why = integrity::check(&final_dir, entry.binaries())
            .err()
            .unwrap_or_default();
        opts.progress.println(format!(
            "the cached {} is damaged ({why}): removing it and filling it again",
            entry.dir_name(version)
        ));
        std::fs::remove_dir_all(&final_dir)
            .map_err(|e| ComponentsError::io("removing the damaged", &final_dir, e))?;
    }
    let staging = tempfile::Builder::new()
        .prefix(&format!(".tmp-{}-", entry.dir_name(version)))
        .tempdir_in(&bin)
        .map_err(|e| ComponentsError::io("creating a temporary directory in", &bin, e))?;

    if opts.builds() {
        build::build(entry, version, staging.path(), opts)?;
    } else {
        download::download(entry, version, staging.path(), opts).map_err(|e| match e {
            ComponentsError::Download { detail, .. } if opts.source == SourceKind::Auto => {
                ComponentsError::NoSource {
                    what: entry.dir_name(version),
                    detail,
                }
            }
            other => other,
        })?;
    }
    for b in entry.binaries() {
        if !is_executable(&staging.path().join(b)) {
            return Err(ComponentsError::Incomplete {
                what: entry.dir_name(version),
                binary: b.to_string(),
            });
        }
    }
    integrity::seal(staging.path(), entry.binaries())
        .map_err(|e| ComponentsError::io("sealing", staging.path(), e))?;
    let staged = staging.keep();
    std::fs::rename(&staged, &final_dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&staged);
        ComponentsError::io("installing into", &final_dir, e)
    })?;
    Ok(final_dir)
}
