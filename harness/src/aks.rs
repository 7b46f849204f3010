//! AKS upgrade paths from what the Azure CLI prints.
//!
//! `az aks get-upgrades -o json` names the cluster's current version
//! (`controlPlaneProfile.kubernetesVersion`) and the versions it may move to
//! (`controlPlaneProfile.upgrades[].kubernetesVersion`, some `isPreview`). AKS moves
//! one minor at a time, so the path is the current version, then the newest offered
//! patch of each newer minor, in order. `az aks get-versions -o json` lists a region's
//! versions (`values[].patchVersions.<patch>.upgrades`) without a current one: the path
//! then starts at `--source` and follows, minor by minor, the newest patch each patch
//! may upgrade to, up to `--target`'s minor or the newest generally available one.
//! Preview versions are never chosen.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::components::Version;

/// Why an AKS file gives no path.
#[derive(Debug, thiserror::Error)]
pub enum AksError {
    #[error("{path}: cannot read it: {source}", path = path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {detail}", path = path.display())]
    Invalid {
        path: std::path::PathBuf,
        detail: String,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetUpgrades {
    control_plane_profile: ControlPlane,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ControlPlane {
    kubernetes_version: String,
    #[serde(default)]
    upgrades: Option<Vec<Offered>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Offered {
    kubernetes_version: String,
    #[serde(default)]
    is_preview: Option<bool>,
}

#[derive(Deserialize)]
struct GetVersions {
    values: Vec<MinorEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MinorEntry {
    version: String,
    #[serde(default)]
    is_preview: Option<bool>,
    #[serde(default)]
    patch_versions: BTreeMap<String, PatchEntry>,
}

#[derive(Deserialize)]
struct PatchEntry {
    #[serde(default)]
    upgrades: Vec<String>,
}

/// The path (AKS versions, oldest first) that `file` describes. `source` is the
/// current version for a `get-versions` file; `target` bounds the path's last minor.
pub fn upgrade_path(
    file: &Path,
    source: Option<&str>,
    target: Option<&str>,
) -> Result<Vec<String>, AksError> {
    let text = std::fs::read_to_string(file).map_err(|source| AksError::Read {
        path: file.to_path_buf(),
        source,
    })?;
    let invalid = |detail: String| AksError::Invalid {
        path: file.to_path_buf(),
        detail,
    };
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| invalid(format!("not JSON ({e}); expected what `az aks get-upgrades -o json` or `az aks get-versions -o json` prints")))?;
    let parse = |field: &str, v: &str| -> Result<Version, AksError> {
        v.parse()
            .map_err(|_| invalid(format!("{field}: `{v}` is not a version MAJOR.MINOR.PATCH")))
    };
    let target_minor = target
        .map(|t| {
            crate::components::releases::Wanted::parse(t)
                .map(|w| match w {
                    crate::components::releases::Wanted::Minor(m) => m,
                    crate::components::releases::Wanted::Exact(v) => v.minor,
                })
                .map_err(|e| invalid(format!("--target: {e}")))
        })
        .transpose()?;
    let path: Vec<Version> = if value.get("controlPlaneProfile").is_some() {
        let u: GetUpgrades = serde_json::from_value(value)
            .map_err(|e| invalid(format!("controlPlaneProfile: {e}")))?;
        let current = parse(
            "controlPlaneProfile.kubernetesVersion",
            &u.control_plane_profile.kubernetes_version,
        )?;
        let mut newest: BTreeMap<u32, Version> = BTreeMap::new();
        for o in u.control_plane_profile.upgrades.unwrap_or_default() {
            if o.is_preview == Some(true) {
                continue;
            }
            let v = parse(
                "controlPlaneProfile.upgrades[].kubernetesVersion",
                &o.kubernetes_version,
            )?;
            if v.minor > current.minor && target_minor.is_none_or(|t| v.minor <= t) {
                let e = newest.entry(v.minor).or_insert_with(|| v.clone());
                if v > *e {
                    *e = v;
                }
            }
        }
        if newest.is_empty() {
            return Err(invalid(format!(
                "no generally available upgrade to a newer minor is offered from {current}: nothing to compare"
            )));
        }
        std::iter::once(current)
            .chain(newest.into_values())
            .collect()
    } else if value.get("values").is_some() {
        let v: GetVersions =
            serde_json::from_value(value).map_err(|e| invalid(format!("values: {e}")))?;
        let source = source.ok_or_else(|| {
            invalid("a `get-versions` file has no current version: give it with --source (the cluster's AKS version)".into())
        })?;
        let mut current = parse("--source", source)?;
        let mut upgrades: BTreeMap<Version, Vec<Version>> = BTreeMap::new();
        for m in v.values.iter().filter(|m| m.is_preview != Some(true)) {
            for (patch, entry) in &m.patch_versions {
                let p = parse(&format!("values[{}].patchVersions", m.version), patch)?;
                let ups = entry
                    .upgrades
                    .iter()
                    .map(|u| {
                        parse(
                            &format!("values[{}].patchVersions.{patch}.upgrades", m.version),
                            u,
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                upgrades.insert(p, ups);
            }
        }
        let ga: Vec<Version> = upgrades.keys().cloned().collect();
        if !upgrades.contains_key(&current) {
            return Err(invalid(format!(
                "--source {current} is not among the file's versions ({})",
                ga.iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut path = vec![current.clone()];
        loop {
            let next_minor = current.minor + 1;
            if target_minor.is_some_and(|t| next_minor > t) {
                break;
            }
            let next = upgrades
                .get(&current)
                .into_iter()
                .flatten()
                .filter(|u| u.minor == next_minor && ga.contains(u))
                .max()
                .cloned();
            match next {
                Some(n) => {
                    path.push(n.clone());
                    current = n;
                }
                None => break,
            }
        }
        if path.len() < 2 {
            return Err(invalid(format!(
                "no generally available upgrade to a newer minor from {current}: nothing to compare"
            )));
        }
        path
    } else {
        return Err(invalid(
            "neither `controlPlaneProfile` (az aks get-upgrades -o json) nor `values` (az aks get-versions -o json)".into(),
        ));
    };
    Ok(path.iter().map(|v| v.to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn get_upgrades_gives_current_then_newest_ga_patch_of_each_newer_minor() {
        let f = write(include_str!("../tests/fixtures/aks/get-upgrades.json"));
        assert_eq!(
            upgrade_path(f.path(), None, None).unwrap(),
            ["v1.29.9", "v1.30.7"]
        );
    }

    #[test]
    fn get_versions_walks_minor_by_minor_from_the_source() {
        let f = write(include_str!("../tests/fixtures/aks/get-versions.json"));
        assert_eq!(
            upgrade_path(f.path(), Some("1.29.9"), None).unwrap(),
            ["v1.29.9", "v1.30.7", "v1.31.3"]
        );
        assert_eq!(
            upgrade_path(f.path(), Some("1.29.9"), Some("v1.30")).unwrap(),
            ["v1.29.9", "v1.30.7"]
        );
        let err = upgrade_path(f.path(), None, None).unwrap_err().to_string();
        assert!(err.contains("give it with --source"), "{err}");
        let err = upgrade_path(f.path(), Some("1.27.1"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--source v1.27.1 is not among"), "{err}");
    }

    #[test]
    fn bad_files_name_the_file_and_the_field() {
        let f = write("{\"controlPlaneProfile\": {\"kubernetesVersion\": \"1.29\"}}");
        let err = upgrade_path(f.path(), None, None).unwrap_err().to_string();
        assert!(
            err.contains("controlPlaneProfile.kubernetesVersion: `1.29`"),
            "{err}"
        );
        let f = write("[1,2]");
        let err = upgrade_path(f.path(), None, None).unwrap_err().to_string();
        assert!(err.starts_with(&f.path().display().to_string()), "{err}");
        assert!(err.contains("neither `controlPlaneProfile`"), "{err}");
        let f = write(
            "{\"controlPlaneProfile\": {\"kubernetesVersion\": \"1.29.9\", \"upgrades\": [{\"kubernetesVersion\": \"1.30.0\", \"isPreview\": true}]}}",
        );
        let err = upgrade_path(f.path(), None, None).unwrap_err().to_string();
        assert!(err.contains("no generally available upgrade"), "{err}");
    }
}
