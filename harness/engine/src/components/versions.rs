//! Versions: parsing, and the pins that make a run reproducible.
//!
//! The default pair is the incident's upgrade (1.29 -> 1.30) at the newest patches
//! that the Go module proxy reachable from CI serves completely. The incident's own
//! target, v1.30.7, cannot be built here: the proxy answers "not available" for
//! several of its staging modules (k8s.io/metrics, k8s.io/kube-controller-manager,
//! k8s.io/endpointslice and k8s.io/legacy-cloud-providers at v0.30.7). v1.30.14 is
//! the last 1.30 patch and behaves the same way for everything preflight exercises
//! (the garbage collector's handling of unsyncable resources only changed in 1.32).

use std::fmt;
use std::str::FromStr;

use crate::errors::ComponentsError;

/// Default source version: the newest 1.29 patch.
pub const DEFAULT_SOURCE: &str = "v1.29.15";
/// Default target version: the newest 1.30 patch (see the module docs for why not v1.30.7).
pub const DEFAULT_TARGET: &str = "v1.30.14";
/// The Helm release preflight drives (a v3 CLI; `--dry-run=server` exists since 3.13).
pub const HELM_VERSION: &str = "v3.19.0";

/// crane, whose `registry serve` is the tests' OCI registry (charts from `oci://`).
pub const CRANE_VERSION: &str = "v0.22.1";

/// A Kubernetes (or etcd, or Helm) release version `vMAJOR.MINOR.PATCH`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub fn new(major: u32, minor: u32, patch: u32) -> Self {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// `v0.MINOR.PATCH`: the tag of the `k8s.io/*` staging modules of a Kubernetes release.
    pub fn staging(&self) -> Version {
        Version::new(0, self.minor, self.patch)
    }

    /// The etcd release a Kubernetes minor recommends (its `build/dependencies.yaml`),
    /// used when the exact value cannot be read from the release's own module.
    pub fn default_etcd(&self) -> Version {
        let patch = match self.minor {
            0..=25 => 4,
            26 => 10,
            27 => 12,
            28 => 15,
            29 => 16,
            30 => 15,
            31 => 16,
            _ => 21,
        };
        Version::new(3, 5, patch)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl FromStr for Version {
    type Err = ComponentsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ComponentsError::BadVersion(s.to_string());
        let rest = s.trim().strip_prefix('v').unwrap_or(s.trim());
        let mut parts = rest.split('.');
        let mut next = || -> Result<u32, ComponentsError> {
            let p = parts.next().ok_or_else(bad)?;
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 6 {
                return Err(bad());
            }
            p.parse().map_err(|_| bad())
        };
        let v = Version::new(next()?, next()?, next()?);
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_and_without_v() {
        assert_eq!(
            "v1.30.14".parse::<Version>().unwrap(),
            Version::new(1, 30, 14)
        );
        assert_eq!(
            "1.29.15".parse::<Version>().unwrap().to_string(),
            "v1.29.15"
        );
    }

    #[test]
    fn rejects_partial_and_junk() {
        for bad in [
            "1.30",
            "v1.30.x",
            "latest",
            "",
            "v1.30.1.2",
            "v1..3",
            "v-1.2.3",
        ] {
            let err = bad.parse::<Version>().unwrap_err();
            assert!(
                err.to_string().contains("expected vMAJOR.MINOR.PATCH"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn staging_tag_follows_the_release() {
        assert_eq!(Version::new(1, 30, 14).staging().to_string(), "v0.30.14");
    }

    #[test]
    fn pins_are_versions_in_order() {
        let s: Version = DEFAULT_SOURCE.parse().unwrap();
        let t: Version = DEFAULT_TARGET.parse().unwrap();
        assert!(s < t);
        assert_eq!(
            t.minor,
            s.minor + 1,
            "the default pair is an adjacent upgrade"
        );
        HELM_VERSION.parse::<Version>().unwrap();
        CRANE_VERSION.parse::<Version>().unwrap();
    }
}
