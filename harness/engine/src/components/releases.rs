//! The Kubernetes releases preflight knows: every minor from v1.28 on, its newest
//! published patch, and how a version given on the command line (`v1.31`, `v1.31.4`,
//! an AKS `1.31.3`) becomes one that can actually be run here.
//!
//! The pins are data, checked against the Go module proxy when they were written
//! (`go list -m k8s.io/kubernetes@v1.MINOR.PATCH` for each patch). A minor without a
//! patch means its newest published patch. Whether that patch *builds here* is a fact
//! about this machine's module proxy, not about Kubernetes: several patch releases'
//! staging modules are missing from it (the proxy answers "not available" for, e.g.,
//! `k8s.io/endpointslice@v0.31.14`). [`probe`] asks the proxy for every staging
//! module of a release, once per machine (the answer is cached), and when the pinned
//! patch cannot be built the newest one of the same minor that can is used instead,
//! with the substitution said in the run's output and report.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Entry, Options, Version};
use crate::errors::ComponentsError;

/// One Kubernetes minor release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Release {
    pub minor: u32,
    /// The newest patch published as a Go module when the table was written.
    pub newest: u32,
    /// The etcd version the newest patch's `build/dependencies.yaml` names.
    pub etcd: (u32, u32, u32),
    /// Something about this minor that matters to install/delete cycles.
    pub note: &'static str,
}

/// Every minor preflight runs, oldest first (checked 2026-11-30).
pub const RELEASES: &[Release] = &[
    Release {
        minor: 28,
        newest: 15,
        etcd: (3, 5, 15),
        note: "ValidatingAdmissionPolicy beta, off by default",
    },
    Release {
        minor: 29,
        newest: 15,
        etcd: (3, 5, 16),
        note: "",
    },
    Release {
        minor: 30,
        newest: 14,
        etcd: (3, 5, 15),
        note: "ValidatingAdmissionPolicy GA, served by default",
    },
    Release {
        minor: 31,
        newest: 14,
        etcd: (3, 5, 24),
        note: "the last whose garbage collector waits for every informer (kubernetes#101078)",
    },
    Release {
        minor: 32,
        newest: 13,
        etcd: (3, 5, 24),
        note: "the garbage collector no longer waits for unsyncable types (kubernetes#125796)",
    },
    Release {
        minor: 33,
        newest: 13,
        etcd: (3, 5, 24),
        note: "",
    },
    Release {
        minor: 34,
        newest: 12,
        etcd: (3, 6, 5),
        note: "",
    },
    Release {
        minor: 35,
        newest: 8,
        etcd: (3, 6, 6),
        note: "",
    },
    Release {
        minor: 36,
        newest: 5,
        etcd: (3, 6, 8),
        note: "",
    },
    Release {
        minor: 37,
        newest: 2,
        etcd: (3, 7, 0),
        note: "",
    },
];

/// The release of a minor, if preflight knows it.
pub fn release(minor: u32) -> Option<&'static Release> {
    RELEASES.iter().find(|r| r.minor == minor)
}

/// What the user asked for: a minor (`v1.31`: its newest patch that runs here) or an
/// exact patch (`v1.31.4`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wanted {
    Minor(u32),
    Exact(Version),
}

impl Wanted {
    /// `v1.31`, `1.31`, `v1.31.4`, `1.31.4`.
    pub fn parse(s: &str) -> Result<Wanted, ComponentsError> {
        let t = s.trim();
        let rest = t.strip_prefix('v').unwrap_or(t);
        let parts: Vec<&str> = rest.split('.').collect();
        if parts.len() == 2 && parts[0] == "1" {
            let minor = parts[1]
                .parse::<u32>()
                .ok()
                .filter(|_| !parts[1].is_empty() && parts[1].bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| ComponentsError::BadWanted(s.to_string()))?;
            return Ok(Wanted::Minor(minor));
        }
        t.parse()
            .map(Wanted::Exact)
            .map_err(|_| ComponentsError::BadWanted(s.to_string()))
    }
}

/// A version that will run, and why it is not the one asked for when it is not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resolved {
    /// As given (`v1.31`, `1.31.3`).
    pub requested: String,
    pub version: Version,
    /// Why `version` differs from the pinned or exact patch, when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub substituted: Option<String>,
}

/// What the module proxy said about building a release here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    pub version: String,
    /// Staging modules (`k8s.io/...`) the proxy does not serve at this release's tag;
    /// empty when everything downloads.
    pub missing: Vec<String>,
    /// Why the release itself cannot be had (not published as a module).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Probe {
    pub fn buildable(&self) -> bool {
        self.missing.is_empty() && self.error.is_none()
    }

    /// One line: why it cannot be built.
    pub fn why_not(&self) -> String {
        match &self.error {
            Some(e) => e.clone(),
            None => format!(
                "the Go module proxy does not serve {} at v0.{}",
                self.missing.join(", "),
                self.version.trim_start_matches("v1.")
            ),
        }
    }
}

fn probe_path(cache_dir: &Path, version: &Version) -> PathBuf {
    cache_dir.join("probes").join(format!("{version}.json"))
}

/// A probe answered before (the module proxy's content for a published tag does not
/// change, so the answer is kept).
pub fn cached_probe(cache_dir: &Path, version: &Version) -> Option<Probe> {
    let text = std::fs::read_to_string(probe_path(cache_dir, version)).ok()?;
    serde_json::from_str(&text).ok()
}

/// What is known here without asking the proxy: built already (so it builds), or
/// answered by an earlier probe.
pub fn known_probe(version: &Version, opts: &Options) -> Option<Probe> {
    if super::cached(Entry::Kubernetes, version, &opts.cache_dir).is_some() {
        return Some(Probe {
            version: version.to_string(),
            missing: Vec::new(),
            error: None,
        });
    }
    cached_probe(&opts.cache_dir, version)
}

/// Asks the Go module proxy whether `version` and all its staging modules can be
/// downloaded (what a build needs), once per machine.
pub fn probe(version: &Version, opts: &Options) -> Probe {
    if let Some(p) = known_probe(version, opts) {
        return p;
    }
    let p = probe_proxy(&opts.go, version);
    keep(&p, version, opts);
    p
}

/// Keeps a definite answer; a network failure is asked again next time.
fn keep(p: &Probe, version: &Version, opts: &Options) {
    if p.error.is_some() {
        return;
    }
    let path = probe_path(&opts.cache_dir, version);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(&path, serde_json::to_string(p).unwrap_or_default());
}

/// Probes `candidate`, another patch of the minor whose probe `first` said it cannot be
/// built. The modules `first` lacked are asked for alone before anything else: a minor's
/// staging modules are the same at every patch, and when one of them is missing at the
/// candidate too, those few small answers settle it without downloading the whole
/// Kubernetes module (about a quarter of a minute per patch here, ten patches and more
/// to walk for some minors). Such a probe's `missing` names what was asked, which is
/// enough to say no.
fn probe_after(first: &Probe, candidate: &Version, opts: &Options) -> Probe {
    if let Some(p) = known_probe(candidate, opts) {
        return p;
    }
    if first.error.is_none() && !first.missing.is_empty() {
        let modules: Vec<String> = first
            .missing
            .iter()
            .map(|m| format!("{m}@{}", candidate.staging()))
            .collect();
        if let Ok(failed) = super::build::download_each(&opts.go, &modules)
            && !failed.is_empty()
        {
            let p = Probe {
                version: candidate.to_string(),
                missing: failed,
                error: None,
            };
            keep(&p, candidate, opts);
            return p;
        }
    }
    probe(candidate, opts)
}

fn probe_proxy(go: &OsStr, version: &Version) -> Probe {
    let mut p = Probe {
        version: version.to_string(),
        missing: Vec::new(),
        error: None,
    };
    let dir = match super::build::module_source(go, "k8s.io/kubernetes", version) {
        Ok(d) => d,
        Err(e) => {
            p.error = Some(format!(
                "k8s.io/kubernetes@{version} is not served: {}",
                e.lines().next().unwrap_or("")
            ));
            return p;
        }
    };
    let go_mod = std::fs::read_to_string(dir.join("go.mod")).unwrap_or_default();
    let modules: Vec<String> = staging_modules(&go_mod)
        .into_iter()
        // Examples nothing preflight builds imports.
        .filter(|m| !m.starts_with("k8s.io/sample-"))
        .map(|m| format!("{m}@{}", version.staging()))
        .collect();
    match super::build::download_each(go, &modules) {
        Ok(failed) => p.missing = failed,
        Err(e) => p.error = Some(e),
    }
    p
}

/// The `k8s.io/*` modules a release's `go.mod` points at `./staging/`.
pub fn staging_modules(go_mod: &str) -> Vec<String> {
    go_mod
        .lines()
        .filter_map(|l| {
            let (from, to) = l.trim().split_once("=>")?;
            let from = from.trim();
            (from.starts_with("k8s.io/") && to.trim().starts_with("./staging/"))
                .then(|| from.to_string())
        })
        .collect()
}

/// Turns what was asked into a version to run. A minor means its newest pinned patch;
/// when `nearest` is set (a minor, or an AKS version) and building is how the cache is
/// filled, a patch the proxy cannot serve gives way to the newest of the same minor
/// that it can, said in `substituted`. An exact patch asked for by hand is kept as is:
/// its build fails with the proxy's own answer.
pub fn resolve(
    requested: &str,
    nearest: bool,
    opts: &Options,
) -> Result<Resolved, ComponentsError> {
    let wanted = Wanted::parse(requested)?;
    let (pinned, nearest) = match &wanted {
        Wanted::Minor(m) => {
            let r = release(*m).ok_or_else(|| ComponentsError::UnknownMinor {
                requested: requested.to_string(),
                known: known_minors(),
            })?;
            (Version::new(1, r.minor, r.newest), true)
        }
        Wanted::Exact(v) => (v.clone(), nearest),
    };
    let mut out = Resolved {
        requested: requested.to_string(),
        version: pinned.clone(),
        substituted: None,
    };
    // Only a build depends on what the proxy serves.
    if !nearest || opts.bin_dir.is_some() || !opts.builds() {
        return Ok(out);
    }
    let first = probe(&pinned, opts);
    if first.buildable() {
        return Ok(out);
    }
    let newest = release(pinned.minor).map_or(pinned.patch, |r| r.newest);
    let what = match wanted {
        Wanted::Minor(_) => "newest",
        Wanted::Exact(_) => "nearest",
    };
    let step = opts.progress.step(format!(
        "{pinned} cannot be built here; looking for the {what} {}.{} patch that can",
        pinned.major, pinned.minor
    ));
    let order = match wanted {
        Wanted::Minor(_) => (0..pinned.patch).rev().collect(),
        Wanted::Exact(_) => nearest_patches(pinned.patch, newest),
    };
    for patch in order {
        let candidate = Version::new(pinned.major, pinned.minor, patch);
        if probe_after(&first, &candidate, opts).buildable() {
            step.done(candidate.to_string());
            out.substituted = Some(format!(
                "{candidate} instead of {pinned}: {} (the {what} {}.{} patch that builds here)",
                first.why_not(),
                pinned.major,
                pinned.minor
            ));
            out.version = candidate;
            return Ok(out);
        }
    }
    step.done("none");
    Err(ComponentsError::Unbuildable {
        version: pinned.to_string(),
        detail: first.why_not(),
    })
}

/// Patches of a minor by their distance from `patch`, the older first at equal
/// distance (it has no fix the wanted one lacks), never past `newest`.
pub fn nearest_patches(patch: u32, newest: u32) -> Vec<u32> {
    let newest = newest.max(patch);
    (1..=newest)
        .flat_map(|d| {
            [
                patch.checked_sub(d),
                Some(patch + d).filter(|p| *p <= newest),
            ]
        })
        .flatten()
        .collect()
}

fn known_minors() -> String {
    let first = RELEASES.first().map(|r| r.minor).unwrap_or(0);
    let last = RELEASES.last().map(|r| r.minor).unwrap_or(0);
    format!("v1.{first} to v1.{last}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minors_and_patches_parse() {
        assert_eq!(Wanted::parse("v1.31").unwrap(), Wanted::Minor(31));
        assert_eq!(Wanted::parse("1.32").unwrap(), Wanted::Minor(32));
        assert_eq!(
            Wanted::parse("1.31.4").unwrap(),
            Wanted::Exact(Version::new(1, 31, 4))
        );
        for bad in ["v1", "v1.", "v2.3", "v1.x", "1.31.a", ""] {
            assert!(Wanted::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_table_is_ordered_and_covers_1_28_to_at_least_1_35() {
        let minors: Vec<u32> = RELEASES.iter().map(|r| r.minor).collect();
        assert_eq!(minors.first(), Some(&28));
        assert!(*minors.last().unwrap() >= 35);
        assert!(minors.windows(2).all(|w| w[1] == w[0] + 1), "{minors:?}");
        for pinned in [super::super::DEFAULT_SOURCE, super::super::DEFAULT_TARGET] {
            let v: Version = pinned.parse().unwrap();
            assert_eq!(release(v.minor).unwrap().newest, v.patch, "{pinned}");
        }
    }

    #[test]
    fn staging_modules_come_from_the_replace_block() {
        let go_mod = "module k8s.io/kubernetes\nreplace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n\tk8s.io/sample-controller => ./staging/src/k8s.io/sample-controller\n\tgithub.com/x/y => github.com/x/y v1.0.0\n)\n";
        assert_eq!(
            staging_modules(go_mod),
            ["k8s.io/api", "k8s.io/sample-controller"]
        );
    }

    #[test]
    fn an_unknown_minor_names_what_is_known() {
        let opts = Options::from_env(crate::progress::Progress::quiet());
        let err = resolve("v1.12", false, &opts).unwrap_err().to_string();
        assert!(err.contains("v1.28 to v1.37"), "{err}");
    }

    #[test]
    fn the_nearest_patch_comes_first_the_older_at_equal_distance() {
        assert_eq!(nearest_patches(7, 9), [6, 8, 5, 9, 4, 3, 2, 1, 0]);
        assert_eq!(nearest_patches(0, 2), [1, 2]);
        assert_eq!(nearest_patches(3, 3), [2, 1, 0]);
    }

    #[test]
    fn a_probe_says_what_is_missing() {
        let p = Probe {
            version: "v1.31.14".into(),
            missing: vec!["k8s.io/endpointslice".into()],
            error: None,
        };
        assert!(!p.buildable());
        assert_eq!(
            p.why_not(),
            "the Go module proxy does not serve k8s.io/endpointslice at v0.31.14"
        );
    }
}
