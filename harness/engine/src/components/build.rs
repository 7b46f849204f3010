//! Building components from the upstream Go modules with this machine's Go.
//!
//! For each entry a small wrapper module is written into the cache's `build/`
//! directory: it requires the upstream module at the wanted version and, for
//! Kubernetes, replaces every `k8s.io/*` staging module (which `k8s.io/kubernetes`
//! itself points at `./staging/...`) by the published `v0.MINOR.PATCH` tag. The
//! wrapper's `go` line and any `godebug` lines are copied from the upstream `go.mod`,
//! so the binaries keep the runtime defaults their release was tested with even when
//! this machine's Go is newer. `-ldflags=-checklinkname=0` lets older dependencies
//! that pull runtime internals with `//go:linkname` link on Go >= 1.23.
//!
//! Binaries are static (`CGO_ENABLED=0`) and `-trimpath`; every command's output goes
//! to `build.log`, whose last lines are quoted when something fails.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{Entry, Options, Version};
use crate::command;
use crate::errors::{ComponentsError, log_tail};

/// The Go command to use: `$PREFLIGHT_GO`, else `go` on PATH (a program name without
/// a slash is looked up on PATH).
pub fn default_go() -> OsString {
    std::env::var_os("PREFLIGHT_GO")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "go".into())
}

/// The bound on `go version`.
const GO_VERSION_TIMEOUT: Duration = Duration::from_secs(30);
/// The bound on one `go mod download` (Kubernetes' module is large; the proxy may be
/// slow, but one that has not answered in this time is hung).
const GO_DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// The bound on `go mod tidy` of a wrapper module (it downloads every dependency).
const GO_TIDY_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// The bound on one `go build` or `go install`: compiling Kubernetes' control plane
/// from a cold cache takes about 15 minutes on 2 cores.
const GO_BUILD_TIMEOUT: Duration = Duration::from_secs(45 * 60);

/// Whether a Go toolchain can be run.
pub fn go_available(go_binary: &OsStr) -> bool {
    command::blocking::run(
        command::std_command(go_binary, ["version"]),
        GO_VERSION_TIMEOUT,
    )
    .is_ok()
}

fn go(go_binary: &OsStr, args: &[&str]) -> std::process::Command {
    let mut cmd = command::std_command(go_binary, args);
    cmd.env("CGO_ENABLED", "0")
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod");
    cmd
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Download {
    #[serde(default)]
    path: String,
    #[serde(default)]
    dir: Option<PathBuf>,
    #[serde(default)]
    go_mod: Option<PathBuf>,
    #[serde(default)]
    error: Option<String>,
}

/// `go mod download -json MODULE@VERSION`: the module's source and go.mod in the
/// module cache.
fn download_module(
    go_binary: &OsStr,
    module: &str,
    version: &Version,
) -> Result<(PathBuf, PathBuf), String> {
    let out = command::blocking::output(
        go(
            go_binary,
            &["mod", "download", "-json", &format!("{module}@{version}")],
        ),
        GO_DOWNLOAD_TIMEOUT,
    )
    .map_err(|e| e.to_string())?;
    let parsed: Result<Download, _> = serde_json::from_slice(&out.stdout);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match parsed {
        Ok(Download {
            error: Some(error), ..
        }) => Err(error),
        Ok(Download {
            dir: Some(dir),
            go_mod: Some(go_mod),
            ..
        }) => Ok((dir, go_mod)),
        _ => Err(text.trim().to_string()),
    }
}

/// Downloads several `MODULE@VERSION`s in one `go mod download`; returns the modules
/// that could not be had (the proxy's "not available"), or why go could not be run.
pub fn download_each(go_binary: &OsStr, modules: &[String]) -> Result<Vec<String>, String> {
    let mut args = vec!["mod", "download", "-json"];
    args.extend(modules.iter().map(String::as_str));
    let out = command::blocking::output(go(go_binary, &args), GO_DOWNLOAD_TIMEOUT)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut failed = Vec::new();
    let mut answered = 0;
    for d in serde_json::Deserializer::from_str(&text).into_iter::<Download>() {
        let d = d.map_err(|e| format!("unreadable `go mod download -json` output: {e}"))?;
        answered += 1;
        if d.error.is_some() {
            failed.push(d.path);
        }
    }
    if answered < modules.len() {
        return Err(format!(
            "`go mod download` answered for {answered} of {} modules",
            modules.len()
        ));
    }
    Ok(failed)
}

/// A module's source directory in the module cache, downloaded if needed.
pub fn module_source(
    go_binary: &OsStr,
    module: &str,
    version: &Version,
) -> Result<PathBuf, String> {
    download_module(go_binary, module, version).map(|(dir, _)| dir)
}

/// The etcd version in a Kubernetes release's `build/dependencies.yaml`.
pub fn recommended_etcd(go_binary: &OsStr, version: &Version) -> Option<Version> {
    let (dir, _) = download_module(go_binary, "k8s.io/kubernetes", version).ok()?;
    let deps = std::fs::read_to_string(dir.join("build/dependencies.yaml")).ok()?;
    etcd_from_dependencies(&deps)
}

fn etcd_from_dependencies(deps: &str) -> Option<Version> {
    let mut lines = deps.lines();
    while let Some(line) = lines.next() {
        if line.trim().trim_start_matches("- ").trim() == "name: \"etcd\"" {
            let version = lines.next()?.trim().strip_prefix("version:")?.trim();
            return version.parse().ok();
        }
    }
    None
}

/// What to build for an entry: upstream module, main packages, linker flags.
struct Plan {
    module: &'static str,
    packages: Vec<&'static str>,
    ldflags: String,
    what: String,
    /// Built with `go install PACKAGE@VERSION` (the module's own go.mod and go.sum, as
    /// its authors build it) instead of a wrapper module.
    install: bool,
}

fn plan(entry: Entry, version: &Version) -> Plan {
    let mut ldflags = String::from("-s -w -checklinkname=0");
    let mut install = false;
    let (module, packages) = match entry {
        Entry::Kubernetes | Entry::Kubectl | Entry::Node => {
            for pkg in [
                "k8s.io/component-base/version",
                "k8s.io/client-go/pkg/version",
            ] {
                ldflags.push_str(&format!(
                    " -X {pkg}.gitVersion={version} -X {pkg}.gitMajor={} -X {pkg}.gitMinor={} \
                     -X {pkg}.gitTreeState=clean -X {pkg}.buildDate=1970-01-01T00:00:00Z",
                    version.major, version.minor
                ));
            }
            let pkgs = entry
                .binaries()
                .iter()
                .map(|b| match *b {
                    "kube-apiserver" => "k8s.io/kubernetes/cmd/kube-apiserver",
                    "kube-controller-manager" => "k8s.io/kubernetes/cmd/kube-controller-manager",
                    "kube-scheduler" => "k8s.io/kubernetes/cmd/kube-scheduler",
                    "kube-proxy" => "k8s.io/kubernetes/cmd/kube-proxy",
                    "kubelet" => "k8s.io/kubernetes/cmd/kubelet",
                    "kubeadm" => "k8s.io/kubernetes/cmd/kubeadm",
                    _ => "k8s.io/kubernetes/cmd/kubectl",
                })
                .collect();
            ("k8s.io/kubernetes", pkgs)
        }
        Entry::Kind => {
            install = true;
            ("sigs.k8s.io/kind", vec!["sigs.k8s.io/kind"])
        }
        Entry::Coredns => {
            install = true;
            (
                "github.com/coredns/coredns",
                vec!["github.com/coredns/coredns"],
            )
        }
        Entry::Crictl => {
            install = true;
            (
                "sigs.k8s.io/cri-tools",
                vec!["sigs.k8s.io/cri-tools/cmd/crictl"],
            )
        }
        Entry::Crane => {
            install = true;
            (
                "github.com/google/go-containerregistry",
                vec!["github.com/google/go-containerregistry/cmd/crane"],
            )
        }
        Entry::Etcd => (
            "go.etcd.io/etcd/server/v3",
            vec!["go.etcd.io/etcd/server/v3"],
        ),
        Entry::Helm => {
            ldflags.push_str(&format!(
                " -X helm.sh/helm/v3/internal/version.version={version}"
            ));
            ("helm.sh/helm/v3", vec!["helm.sh/helm/v3/cmd/helm"])
        }
    };
    Plan {
        module,
        packages,
        ldflags,
        what: format!("{} {version}", entry.binaries().join(", ")),
        install,
    }
}

/// The wrapper module's `go.mod` for an upstream module, given the upstream `go.mod`.
pub fn wrapper_go_mod(module: &str, version: &Version, upstream_go_mod: &str) -> String {
    let mut out = String::from(
        "// Generated by preflight: builds pinned upstream binaries.\nmodule preflight.local/build\n\n",
    );
    let go_line = upstream_go_mod
        .lines()
        .find_map(|l| l.strip_prefix("go ").map(str::trim))
        .unwrap_or("1.22.0");
    out.push_str(&format!("go {go_line}\n\n"));
    for line in upstream_go_mod
        .lines()
        .filter(|l| l.starts_with("godebug "))
    {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&format!("require {module} {version}\n"));
    let staging: Vec<&str> = upstream_go_mod
        .lines()
        .filter_map(|l| {
            let (from, to) = l.trim().split_once("=>")?;
            let from = from.trim();
            (from.starts_with("k8s.io/") && to.trim().starts_with("./staging/")).then_some(from)
        })
        .collect();
    if !staging.is_empty() {
        out.push_str("\nreplace (\n");
        for m in staging {
            out.push_str(&format!("\t{m} => {m} {}\n", version.staging()));
        }
        out.push_str(")\n");
    }
    out
}

/// Builds `entry` at `version` into `out_dir`: `go install` where the upstream module
/// builds as it is, else a wrapper module pinned to it ([`wrapper_module`]) and
/// `go build`; every line Go prints goes to the entry's `build.log`.
pub fn build(
    entry: Entry,
    version: &Version,
    out_dir: &Path,
    opts: &Options,
) -> Result<(), ComponentsError> {
    let plan = plan(entry, version);
    let work = opts.cache_dir.join("build").join(entry.dir_name(version));
    std::fs::create_dir_all(&work).map_err(|e| ComponentsError::io("creating", &work, e))?;
    let log_path = work.join("build.log");
    let mut log = std::fs::File::create(&log_path)
        .map_err(|e| ComponentsError::io("creating", &log_path, e))?;
    let failed = || ComponentsError::BuildFailed {
        what: plan.what.clone(),
        log: log_path.clone(),
        tail: log_tail(&log_path, 25),
    };

    // Go's work directories go inside the staging directory, not $TMPDIR: a build
    // that is killed leaves them where the next fill of this entry sweeps them.
    let gotmp = out_dir.join(".gotmp");
    std::fs::create_dir_all(&gotmp).map_err(|e| ComponentsError::io("creating", &gotmp, e))?;
    let mut step = opts
        .progress
        .step(format!("building {} from Go modules", plan.what));
    let go_cmd = if plan.install {
        step.detail("go install");
        go_install(&plan, version, out_dir, &opts.go, &mut log)
    } else {
        let at = Workspace {
            work: &work,
            gotmp: &gotmp,
        };
        if let Err(e) = wrapper_module(entry, &plan, version, &at, opts, &mut log, &mut step) {
            step.fail(e.note);
            return Err(e.error.unwrap_or_else(failed));
        }
        go_build(&plan, entry, out_dir, &opts.go, &mut log)
    };
    let compiled = run_go(go_cmd, &work, &gotmp, &mut log, &mut step);
    match compiled {
        Some(compiled) => {
            let _ = std::fs::remove_dir_all(&gotmp);
            step.done(format!("{compiled} packages"));
            Ok(())
        }
        None => {
            step.fail("go build failed");
            Err(failed())
        }
    }
}

/// Where a wrapper module is written and Go keeps its temporary files.
struct Workspace<'a> {
    work: &'a Path,
    gotmp: &'a Path,
}

/// `go install PKG@VERSION` into `out_dir`: builds with the module's own `go.mod`.
fn go_install(
    plan: &Plan,
    version: &Version,
    out_dir: &Path,
    go_bin: &OsStr,
    log: &mut std::fs::File,
) -> std::process::Command {
    let mut args = vec![
        "install",
        "-v",
        "-trimpath",
        "-ldflags",
        plan.ldflags.as_str(),
    ];
    let targets: Vec<String> = plan
        .packages
        .iter()
        .map(|p| format!("{p}@{version}"))
        .collect();
    args.extend(targets.iter().map(String::as_str));
    let _ = writeln!(log, "$ GOBIN={} go {}", out_dir.display(), args.join(" "));
    // `go install PKG@VERSION` refuses -mod=mod.
    let mut cmd = go(go_bin, &args);
    cmd.env("GOBIN", out_dir).env_remove("GOFLAGS");
    cmd
}

/// Writes the wrapper module (its `go.mod` pinned to the upstream module's own, and a
/// `tools.go` naming the packages) and tidies it.
fn wrapper_module(
    entry: Entry,
    plan: &Plan,
    version: &Version,
    at: &Workspace<'_>,
    opts: &Options,
    log: &mut std::fs::File,
    step: &mut crate::progress::Step,
) -> Result<(), WrapperFailed> {
    step.detail("resolving modules");
    let (_, upstream_mod) = match download_module(&opts.go, plan.module, version) {
        Ok(found) => found,
        Err(detail) => {
            let _ = writeln!(log, "go mod download {}@{version}: {detail}", plan.module);
            if matches!(entry, Entry::Kubernetes | Entry::Kubectl | Entry::Node) {
                return Err(WrapperFailed::error(ComponentsError::UnknownVersion {
                    version: version.to_string(),
                    detail,
                }));
            }
            return Err(WrapperFailed::logged(""));
        }
    };
    let upstream = std::fs::read_to_string(&upstream_mod)
        .map_err(|e| WrapperFailed::error(ComponentsError::io("reading", &upstream_mod, e)))?;
    let go_mod = wrapper_go_mod(plan.module, version, &upstream);
    let tools: String = plan
        .packages
        .iter()
        .map(|p| format!("\t_ \"{p}\"\n"))
        .collect();
    let tools = format!(
        "//go:build tools\n\n// Package build pins the binaries preflight builds.\npackage build\n\nimport (\n{tools})\n"
    );
    for (name, text) in [("go.mod", go_mod.as_str()), ("tools.go", tools.as_str())] {
        let p = at.work.join(name);
        std::fs::write(&p, text)
            .map_err(|e| WrapperFailed::error(ComponentsError::io("writing", &p, e)))?;
    }
    let _ = std::fs::remove_file(at.work.join("go.sum"));

    step.detail("go mod tidy");
    let _ = writeln!(log, "$ go mod tidy");
    let mut tidy = go(&opts.go, &["mod", "tidy"]);
    tidy.env("GOTMPDIR", at.gotmp).current_dir(at.work);
    let status = command::blocking::stream(tidy, GO_TIDY_TIMEOUT, |line| {
        let _ = writeln!(log, "{line}");
    });
    if let Err(e) = &status {
        let _ = writeln!(log, "preflight: {e}");
    }
    if !status.is_ok_and(|s| s.success()) {
        return Err(WrapperFailed::logged("go mod tidy failed"));
    }
    Ok(())
}

/// Why a wrapper module could not be made: an error of its own, or (`error` `None`)
/// what the build log says; `note` ends the progress line.
struct WrapperFailed {
    error: Option<ComponentsError>,
    note: &'static str,
}

impl WrapperFailed {
    fn error(error: ComponentsError) -> Self {
        WrapperFailed {
            error: Some(error),
            note: "",
        }
    }

    fn logged(note: &'static str) -> Self {
        WrapperFailed { error: None, note }
    }
}

/// `go build` of the wrapper module's packages into `out_dir`.
fn go_build(
    plan: &Plan,
    entry: Entry,
    out_dir: &Path,
    go_bin: &OsStr,
    log: &mut std::fs::File,
) -> std::process::Command {
    // One package: name the binary (etcd's main package is `.../server/v3`, which Go
    // would call `server`); several: let Go name them after their directories.
    let out = match entry.binaries() {
        [single] => out_dir.join(single).display().to_string(),
        _ => format!("{}/", out_dir.display()),
    };
    let mut args = vec![
        "build",
        "-v",
        "-trimpath",
        "-ldflags",
        plan.ldflags.as_str(),
        "-o",
        out.as_str(),
    ];
    args.extend(plan.packages.iter().copied());
    let _ = writeln!(log, "$ go {}", args.join(" "));
    go(go_bin, &args)
}

/// Runs the Go build, its lines into the log and the count of compiled packages onto
/// the progress line; the count, or `None` when it failed.
fn run_go(
    mut cmd: std::process::Command,
    work: &Path,
    gotmp: &Path,
    log: &mut std::fs::File,
    step: &mut crate::progress::Step,
) -> Option<usize> {
    cmd.env("GOTMPDIR", gotmp).current_dir(work);
    let mut compiled = 0usize;
    let status = command::blocking::stream(cmd, GO_BUILD_TIMEOUT, |line| {
        let _ = writeln!(log, "{line}");
        if !line.starts_with('#') && !line.contains(' ') && !line.is_empty() {
            compiled += 1;
            step.detail(format!("{compiled} packages compiled, {}", line.trim()));
        }
    });
    if let Err(e) = &status {
        let _ = writeln!(log, "preflight: {e}");
    }
    status.is_ok_and(|s| s.success()).then_some(compiled)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPSTREAM: &str = "module k8s.io/kubernetes\n\ngo 1.22.0\n\ngodebug default=go1.20\n\nrequire (\n\tk8s.io/api v0.0.0\n)\n\nreplace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n\tk8s.io/client-go => ./staging/src/k8s.io/client-go\n\tgithub.com/x/y => github.com/x/y v1.0.0\n)\n";

    #[test]
    fn wrapper_pins_every_staging_module_to_the_release_tag() {
        let v = Version::new(1, 30, 14);
        let out = wrapper_go_mod("k8s.io/kubernetes", &v, UPSTREAM);
        assert!(
            out.contains("require k8s.io/kubernetes v1.30.14\n"),
            "{out}"
        );
        assert!(
            out.contains("\tk8s.io/api => k8s.io/api v0.30.14\n"),
            "{out}"
        );
        assert!(
            out.contains("\tk8s.io/client-go => k8s.io/client-go v0.30.14\n"),
            "{out}"
        );
        assert!(
            !out.contains("github.com/x/y"),
            "only staging modules are replaced: {out}"
        );
        assert!(out.contains("go 1.22.0\n"), "{out}");
        assert!(
            out.contains("godebug default=go1.20\n"),
            "godebug lines are kept: {out}"
        );
    }

    #[test]
    fn etcd_version_is_read_from_dependencies_yaml() {
        let deps = "dependencies:\n  - name: \"etcd\"\n    version: 3.5.16\n    refPaths:\n  - name: \"etcd-image\"\n    version: 3.5.16\n";
        assert_eq!(etcd_from_dependencies(deps), Some(Version::new(3, 5, 16)));
        assert_eq!(etcd_from_dependencies("dependencies: []"), None);
    }
}
