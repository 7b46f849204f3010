//! kind node images built here, without any container registry.
//!
//! `kind build node-image` pulls a base image and the control-plane images from
//! registries, which a CI machine with only package registries cannot reach. preflight
//! builds the same thing from what it can reach: every binary from its pinned Go module
//! (the control plane through the same wrapper-module build as the local provider's,
//! plus kubelet, kubeadm, kube-scheduler and kube-proxy; etcd, CoreDNS and pause at the
//! versions the release's own kubeadm asks for), a Debian root file system
//! (debootstrap) set up the way kind's base image is, and a small CNI daemon of its own
//! instead of kindnetd. The result is tagged `preflight/node:<version>`.
//!
//! The Docker steps live in `kind_node.sh` (embedded); this module resolves versions,
//! fills the components cache, locks, and records what it built, so a second call costs
//! one `docker image inspect`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Entry, Options, Version, build, ensure_entry};
use crate::command::{self, CommandError};
use crate::errors::{ComponentsError, log_tail};

/// The kind CLI preflight builds and drives.
pub const KIND_VERSION: &str = "v0.33.0";
/// crictl for the node (some cri-tools versions are refused by the module proxy).
pub const CRICTL_VERSION: &str = "v1.34.0";
/// The image the test chart's Pods and hook Jobs run on kind: a static busybox.
pub const WORKLOAD_IMAGE: &str = "preflight/workload:r1";
/// The CNI daemon that replaces kindnetd.
pub const CNI_IMAGE: &str = "preflight/cni:r1";
/// Version-independent bases, built once per machine. The suffix changes whenever
/// `kind_node.sh` changes what goes into them.
const NODE_BASE: &str = "preflight/node-base:kind-v0.33.0-bookworm-r1";
const PROXY_BASE: &str = "preflight/proxy-base:bookworm-r1";

const SCRIPT: &str = include_str!("kind_node.sh");

/// The node image preflight builds for `version`.
pub fn node_image(version: &Version) -> String {
    format!("preflight/node:{version}")
}

/// What was built, recorded in the cache (`kind-images/<version>.json`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub image: String,
    /// Docker's id of the image: a record whose image was removed or rebuilt is stale.
    pub image_id: String,
    pub kubernetes: String,
    pub etcd: String,
    pub coredns: String,
    pub pause: String,
    pub kind: String,
}

/// The image tags a release's kubeadm asks for (`kubeadm config images list`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageTags {
    pub etcd: String,
    pub coredns: String,
    pub pause: String,
}

/// Reads the etcd, CoreDNS and pause tags from `kubeadm config images list` output.
pub fn parse_image_list(text: &str) -> Option<ImageTags> {
    let tag = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().split_once(&format!("/{name}:")).map(|(_, t)| t))
            .map(str::to_string)
    };
    Some(ImageTags {
        etcd: tag("etcd")?,
        coredns: tag("coredns")?,
        pause: tag("pause")?,
    })
}

/// `3.5.15-0` -> etcd v3.5.15.
fn etcd_version(tag: &str) -> Result<Version, ComponentsError> {
    tag.split('-').next().unwrap_or(tag).parse()
}

/// The Debian mirror this machine's apt uses (debootstrap needs one), unless
/// `PREFLIGHT_DEBIAN_MIRROR` names another.
pub fn debian_mirror() -> String {
    if let Some(m) = std::env::var("PREFLIGHT_DEBIAN_MIRROR")
        .ok()
        .filter(|m| !m.is_empty())
    {
        return m;
    }
    // Only the files apt itself reads: a source switched off by renaming it
    // (`nodesource.sources.disabled`) is not a mirror this machine uses.
    let sources = std::fs::read_dir("/etc/apt/sources.list.d")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "list" || x == "sources"))
        .chain([PathBuf::from("/etc/apt/sources.list")])
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect::<Vec<_>>()
        .join("\n");
    mirror_from_sources(&sources).unwrap_or_else(|| "http://deb.debian.org/debian".into())
}

/// The first Debian archive among apt's sources (third-party repositories, such as
/// a vendor's, serve no `bookworm` suite for debootstrap).
fn mirror_from_sources(text: &str) -> Option<String> {
    let uris: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("URIs:")
                .map(|u| u.split_whitespace().next().unwrap_or_default())
                .or_else(|| {
                    l.strip_prefix("deb ").and_then(|rest| {
                        rest.split_whitespace()
                            .find(|w| w.starts_with("http") || w.starts_with("file:"))
                    })
                })
        })
        .filter(|u| !u.is_empty() && !u.contains("security"))
        .collect();
    uris.iter()
        .find(|u| u.trim_end_matches('/').ends_with("/debian"))
        .or(uris.first())
        .map(|u| u.to_string())
}

/// `docker info`, asking for the one field that proves the engine answers.
pub const DOCKER_INFO_ARGS: [&str; 3] = ["info", "--format", "{{.ServerVersion}}"];
/// The bound on a `docker` query: an engine that does not answer in this time is hung.
const DOCKER_QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// The bound on building the workload image (a static busybox, no network).
const WORKLOAD_BUILD_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// The bound on building a node image from scratch (debootstrap of a Debian root
/// file system, then the base and node images).
const NODE_BUILD_TIMEOUT: Duration = Duration::from_secs(90 * 60);

/// Fails with what to do when no Docker engine answers.
pub fn check_docker() -> Result<(), ComponentsError> {
    command::blocking::run(
        command::std_command("docker", DOCKER_INFO_ARGS),
        DOCKER_QUERY_TIMEOUT,
    )
    .map(drop)
    .map_err(|e| match e {
        CommandError::Failed { stderr_tail, .. } => ComponentsError::Docker(stderr_tail),
        other => ComponentsError::Docker(other.to_string()),
    })
}

/// Docker's id of an image, if it exists.
pub fn image_id(image: &str) -> Option<String> {
    let out = command::blocking::run(
        command::std_command("docker", ["image", "inspect", "--format", "{{.Id}}", image]),
        DOCKER_QUERY_TIMEOUT,
    )
    .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|id| !id.is_empty())
}

/// Removes build containers that a killed earlier build left (we hold the build lock,
/// so none of them is in use).
fn remove_stale_build_containers() {
    let listed = command::blocking::run(
        command::std_command(
            "docker",
            ["ps", "-aq", "--filter", "name=^preflight-node-build-"],
        ),
        DOCKER_QUERY_TIMEOUT,
    );
    if let Ok(out) = listed {
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = command::blocking::run(
                command::std_command("docker", ["rm", "-f", id]),
                DOCKER_QUERY_TIMEOUT * 2,
            );
        }
    }
}

/// Runs `kind_node.sh <what>` with `env` within `timeout`, every line of its output
/// appended to `log` and handed to `on_line`; whether it succeeded.
fn run_script(
    what: &str,
    env: &[(&str, &OsStr)],
    log: &Path,
    timeout: Duration,
    mut on_line: impl FnMut(&str) + Send,
) -> Result<bool, ComponentsError> {
    let file = std::fs::File::create(log).map_err(|e| ComponentsError::io("creating", log, e))?;
    let mut out = std::io::LineWriter::new(file);
    let mut cmd = command::std_command("bash", ["-c", SCRIPT, "kind_node.sh", what]);
    cmd.envs(env.iter().copied());
    let status = command::blocking::stream(cmd, timeout, |line| {
        use std::io::Write;
        let _ = writeln!(out, "{line}");
        on_line(line);
    });
    match status {
        Ok(status) => Ok(status.success()),
        Err(e @ CommandError::Spawn { .. }) => Err(ComponentsError::io(
            "running the image script for",
            log,
            std::io::Error::other(e),
        )),
        // Timed out: the log says how far it got; the caller reports it as failed.
        Err(e) => {
            use std::io::Write;
            let _ = writeln!(out, "preflight: {e}");
            Ok(false)
        }
    }
}

/// The kind CLI, built from its Go module once per machine.
pub fn ensure_kind(opts: &Options) -> Result<PathBuf, ComponentsError> {
    let v: Version = KIND_VERSION.parse()?;
    Ok(ensure_entry(Entry::Kind, &v, opts)?.join("kind"))
}

/// The workload image alone (for node images that are not preflight's, which get it
/// with `kind load docker-image`).
pub fn ensure_workload(opts: &Options) -> Result<(), ComponentsError> {
    check_docker()?;
    if image_id(WORKLOAD_IMAGE).is_some() {
        return Ok(());
    }
    let work = opts.cache_dir.join("kind-work");
    std::fs::create_dir_all(&work).map_err(|e| ComponentsError::io("creating", &work, e))?;
    let log_path = work.join("workload.log");
    let ok = run_script(
        "workload",
        &[
            ("WORK", work.as_os_str()),
            ("WORKLOAD_IMAGE", OsStr::new(WORKLOAD_IMAGE)),
        ],
        &log_path,
        WORKLOAD_BUILD_TIMEOUT,
        |_| {},
    )?;
    if ok && image_id(WORKLOAD_IMAGE).is_some() {
        Ok(())
    } else {
        Err(ComponentsError::BuildFailed {
            what: format!("workload image {WORKLOAD_IMAGE}"),
            log: log_path.clone(),
            tail: log_tail(&log_path, 25),
        })
    }
}

fn record_path(opts: &Options, version: &Version) -> PathBuf {
    opts.cache_dir
        .join("kind-images")
        .join(format!("{version}.json"))
}

/// The recorded image for `version` if it still exists as recorded.
pub fn cached(version: &Version, opts: &Options) -> Option<Record> {
    let text = std::fs::read_to_string(record_path(opts, version)).ok()?;
    let record: Record = serde_json::from_str(&text).ok()?;
    (image_id(&record.image).as_deref() == Some(record.image_id.as_str())).then_some(record)
}

/// Makes sure `preflight/node:<version>` exists (building it if not) and returns its record.
pub fn ensure(version: &Version, opts: &Options) -> Result<Record, ComponentsError> {
    check_docker()?;
    if let Some(r) = cached(version, opts) {
        return Ok(r);
    }
    let locks = opts.cache_dir.join("locks");
    std::fs::create_dir_all(&locks).map_err(|e| ComponentsError::io("creating", &locks, e))?;
    // One image build at a time per machine: builds share the base images and the disk.
    let lock_path = locks.join("kind-image.lock");
    let lock = std::fs::File::create(&lock_path)
        .map_err(|e| ComponentsError::io("creating", &lock_path, e))?;
    if lock.try_lock().is_err() {
        let step = opts
            .progress
            .step("waiting for another preflight to build a kind node image");
        lock.lock()
            .map_err(|e| ComponentsError::io("locking", &lock_path, e))?;
        step.done("");
    }
    if let Some(r) = cached(version, opts) {
        return Ok(r);
    }
    remove_stale_build_containers();
    let record = build_image(version, opts)?;
    let path = record_path(opts, version);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ComponentsError::io("creating", dir, e))?;
    }
    let text = serde_json::to_string_pretty(&record).expect("record serialises");
    std::fs::write(&path, text).map_err(|e| ComponentsError::io("writing", &path, e))?;
    Ok(record)
}

fn build_image(version: &Version, opts: &Options) -> Result<Record, ComponentsError> {
    let kube = ensure_entry(Entry::Kubernetes, version, opts)?;
    let node = ensure_entry(Entry::Node, version, opts)?;
    let kubectl = ensure_entry(Entry::Kubectl, version, opts)?;
    let kubeadm = node.join("kubeadm");
    let listed = command::blocking::output(
        command::std_command(
            &kubeadm,
            [
                "config".to_string(),
                "images".into(),
                "list".into(),
                format!("--kubernetes-version={version}"),
            ],
        ),
        DOCKER_QUERY_TIMEOUT * 2,
    )
    .map_err(|e| ComponentsError::io("running", &kubeadm, std::io::Error::other(e)))?;
    let listed = format!(
        "{}{}",
        String::from_utf8_lossy(&listed.stdout),
        String::from_utf8_lossy(&listed.stderr)
    );
    let tags = parse_image_list(&listed).ok_or_else(|| ComponentsError::BuildFailed {
        what: format!("the image list of kubeadm {version}"),
        log: kubeadm.clone(),
        tail: listed.clone(),
    })?;
    let etcd = ensure_entry(Entry::Etcd, &etcd_version(&tags.etcd)?, opts)?;
    let coredns = ensure_entry(Entry::Coredns, &tags.coredns.parse()?, opts)?;
    let crictl = ensure_entry(Entry::Crictl, &CRICTL_VERSION.parse()?, opts)?;
    let kind_src = module_dir(opts, "sigs.k8s.io/kind", &KIND_VERSION.parse()?)?;
    let k8s_src = module_dir(opts, "k8s.io/kubernetes", version)?;

    // One directory with every binary the script needs, as links into the cache.
    let work = opts.cache_dir.join("kind-work");
    std::fs::create_dir_all(&work).map_err(|e| ComponentsError::io("creating", &work, e))?;
    let bin = tempfile::Builder::new()
        .prefix(".bin-")
        .tempdir_in(&work)
        .map_err(|e| ComponentsError::io("creating a directory in", &work, e))?;
    let links: [(&Path, &str); 10] = [
        (&kube, "kube-apiserver"),
        (&kube, "kube-controller-manager"),
        (&node, "kube-scheduler"),
        (&node, "kube-proxy"),
        (&node, "kubelet"),
        (&node, "kubeadm"),
        (&kubectl, "kubectl"),
        (&etcd, "etcd"),
        (&coredns, "coredns"),
        (&crictl, "crictl"),
    ];
    for (dir, name) in links {
        let link = bin.path().join(name);
        std::os::unix::fs::symlink(dir.join(name), &link)
            .map_err(|e| ComponentsError::io("linking", &link, e))?;
    }

    let image = node_image(version);
    let log_path = work.join(format!("node-{version}.log"));
    let mut step = opts
        .progress
        .step(format!("building kind node image {image} (offline)"));
    let mirror = debian_mirror();
    let version_text = version.to_string();
    let pause_src = k8s_src.join("build/pause/linux/pause.c");
    let env: [(&str, &OsStr); 14] = [
        ("WORK", work.as_os_str()),
        ("KIND_SRC", kind_src.as_os_str()),
        ("MIRROR", OsStr::new(&mirror)),
        ("BASE_IMAGE", OsStr::new(NODE_BASE)),
        ("PROXY_BASE", OsStr::new(PROXY_BASE)),
        ("NODE_IMAGE", OsStr::new(&image)),
        ("K8S", OsStr::new(&version_text)),
        ("BIN", bin.path().as_os_str()),
        ("PAUSE_SRC", pause_src.as_os_str()),
        ("ETCD_TAG", OsStr::new(&tags.etcd)),
        ("COREDNS_TAG", OsStr::new(&tags.coredns)),
        ("PAUSE_TAG", OsStr::new(&tags.pause)),
        ("CNI_IMAGE", OsStr::new(CNI_IMAGE)),
        ("WORKLOAD_IMAGE", OsStr::new(WORKLOAD_IMAGE)),
    ];
    let ok = run_script("all", &env, &log_path, NODE_BUILD_TIMEOUT, |line| {
        if let Some(what) = line.strip_prefix("step: ") {
            step.detail(what);
        }
    })?;
    let image_id = image_id(&image).filter(|_| ok);
    let Some(image_id) = image_id else {
        step.fail("");
        return Err(ComponentsError::BuildFailed {
            what: format!("kind node image {image}"),
            log: log_path.clone(),
            tail: log_tail(&log_path, 25),
        });
    };
    step.done("");
    Ok(Record {
        image,
        image_id,
        kubernetes: version.to_string(),
        etcd: tags.etcd,
        coredns: tags.coredns,
        pause: tags.pause,
        kind: KIND_VERSION.into(),
    })
}

/// A Go module's source directory in the module cache (downloaded if needed).
fn module_dir(opts: &Options, module: &str, version: &Version) -> Result<PathBuf, ComponentsError> {
    build::module_source(&opts.go, module, version).map_err(|detail| ComponentsError::BuildFailed {
        what: format!("{module}@{version}"),
        log: PathBuf::from("go mod download"),
        tail: detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeadm_image_list_gives_the_tags() {
        let listed = "registry.k8s.io/kube-apiserver:v1.30.14\nregistry.k8s.io/kube-controller-manager:v1.30.14\nregistry.k8s.io/kube-scheduler:v1.30.14\nregistry.k8s.io/kube-proxy:v1.30.14\nregistry.k8s.io/coredns/coredns:v1.11.3\nregistry.k8s.io/pause:3.9\nregistry.k8s.io/etcd:3.5.15-0\n";
        let tags = parse_image_list(listed).unwrap();
        assert_eq!(
            tags,
            ImageTags {
                etcd: "3.5.15-0".into(),
                coredns: "v1.11.3".into(),
                pause: "3.9".into()
            }
        );
        assert_eq!(etcd_version(&tags.etcd).unwrap(), Version::new(3, 5, 15));
        assert!(parse_image_list("W1130 some warning\n").is_none());
    }

    #[test]
    fn mirror_comes_from_apt_sources() {
        let deb822 = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\n";
        assert_eq!(
            mirror_from_sources(deb822).as_deref(),
            Some("http://deb.debian.org/debian")
        );
        let classic = "deb http://security.debian.org/debian-security bookworm-security main\ndeb [arch=amd64] http://mirror.example/debian bookworm main\n";
        assert_eq!(
            mirror_from_sources(classic).as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(mirror_from_sources("# nothing"), None);
        let vendor_first = "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\n\nTypes: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n";
        assert_eq!(
            mirror_from_sources(vendor_first).as_deref(),
            Some("http://deb.debian.org/debian")
        );
    }
}
