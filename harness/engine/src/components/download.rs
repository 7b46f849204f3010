//! Downloading the official release binaries, for machines that reach the internet.
//!
//! Every file is checked against the checksum its project publishes beside it
//! (Kubernetes: `<binary>.sha256`; etcd: `SHA256SUMS`; Helm: `<archive>.sha256sum`)
//! before anything is written into the cache. The base URLs can be pointed at a
//! mirror (an internal artifact store, or the test suite's local server).

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{Entry, Options, Version};
use crate::errors::ComponentsError;

/// Base URLs of the three release channels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirrors {
    /// `{kubernetes}/{version}/bin/linux/{arch}/{binary}`.
    pub kubernetes: String,
    /// `{etcd}/{version}/etcd-{version}-linux-{arch}.tar.gz` and `SHA256SUMS`.
    pub etcd: String,
    /// `{helm}/helm-{version}-linux-{arch}.tar.gz` and `.sha256sum`.
    pub helm: String,
}

impl Default for Mirrors {
    fn default() -> Self {
        Mirrors {
            kubernetes: "https://dl.k8s.io/release".into(),
            etcd: "https://github.com/etcd-io/etcd/releases/download".into(),
            helm: "https://get.helm.sh".into(),
        }
    }
}

impl Mirrors {
    /// Defaults, overridden by `PREFLIGHT_MIRROR_KUBERNETES`, `PREFLIGHT_MIRROR_ETCD`
    /// and `PREFLIGHT_MIRROR_HELM`.
    pub fn from_env() -> Self {
        let mut m = Mirrors::default();
        for (var, slot) in [
            ("PREFLIGHT_MIRROR_KUBERNETES", &mut m.kubernetes),
            ("PREFLIGHT_MIRROR_ETCD", &mut m.etcd),
            ("PREFLIGHT_MIRROR_HELM", &mut m.helm),
        ] {
            if let Ok(v) = std::env::var(var)
                && !v.is_empty()
            {
                *slot = v.trim_end_matches('/').to_string();
            }
        }
        m
    }
}

/// The release artefacts' name for this machine's architecture.
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn get(url: &str) -> Result<Vec<u8>, ComponentsError> {
    let err = |detail: String| ComponentsError::Download {
        url: url.to_string(),
        detail,
    };
    // reqwest's rustls has no built-in provider: a download may be the first TLS use
    // of the process (the `components` command, the download tests alone).
    crate::init_crypto();
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(15))
        .timeout(std::time::Duration::from_secs(600))
        .build()
        .map_err(|e| err(e.to_string()))?;
    let resp = client.get(url).send().map_err(|e| err(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(err(format!("HTTP {}", resp.status())));
    }
    let mut body = Vec::new();
    resp.take(u64::MAX)
        .read_to_end(&mut body)
        .map_err(|e| err(e.to_string()))?;
    Ok(body)
}

/// Fetches `url` and checks it against `expected` (hex sha256).
fn get_verified(url: &str, expected: &str) -> Result<Vec<u8>, ComponentsError> {
    let body = get(url)?;
    let actual = hex::encode(Sha256::digest(&body));
    if !actual.eq_ignore_ascii_case(expected.trim()) {
        return Err(ComponentsError::ChecksumMismatch {
            url: url.to_string(),
            expected: expected.trim().to_string(),
            actual,
        });
    }
    Ok(body)
}

/// The checksum for `file` in a `sha256sum`-style listing (or a bare hash).
pub fn checksum_for(listing: &str, file: &str) -> Option<String> {
    let mut lines = listing.lines().filter(|l| !l.trim().is_empty());
    let all: Vec<&str> = lines.by_ref().collect();
    if all.len() == 1 && !all[0].trim().contains(char::is_whitespace) {
        return Some(all[0].trim().to_string());
    }
    all.iter().find_map(|l| {
        let mut parts = l.split_whitespace();
        let hash = parts.next()?;
        let name = parts.next()?.trim_start_matches('*');
        (name == file || name.ends_with(&format!("/{file}"))).then(|| hash.to_string())
    })
}

fn text(url: &str) -> Result<String, ComponentsError> {
    String::from_utf8(get(url)?).map_err(|_| ComponentsError::Download {
        url: url.to_string(),
        detail: "checksum file is not text".into(),
    })
}

fn write_executable(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ComponentsError> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, bytes).map_err(|e| ComponentsError::io("writing", &path, e))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| ComponentsError::io("making executable", &path, e))
}

/// Extracts the files named `wanted` (by base name) from a `.tar.gz`.
fn extract(archive: &[u8], wanted: &[&str], dir: &Path, url: &str) -> Result<(), ComponentsError> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let mut found = Vec::new();
    let entries = tar.entries().map_err(|e| ComponentsError::Download {
        url: url.into(),
        detail: format!("not a tar.gz: {e}"),
    })?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ComponentsError::Download {
            url: url.into(),
            detail: format!("corrupt archive: {e}"),
        })?;
        let name = entry
            .path()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        if let Some(name) = name.filter(|n| wanted.contains(&n.as_str())) {
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| ComponentsError::io("extracting", dir.join(&name), e))?;
            write_executable(dir, &name, &bytes)?;
            found.push(name);
        }
    }
    for w in wanted {
        if !found.iter().any(|f| f == w) {
            return Err(ComponentsError::Download {
                url: url.into(),
                detail: format!("archive has no `{w}`"),
            });
        }
    }
    Ok(())
}

/// Downloads `entry` at `version` into `out_dir`, verifying every checksum.
pub fn download(
    entry: Entry,
    version: &Version,
    out_dir: &Path,
    opts: &Options,
) -> Result<(), ComponentsError> {
    let arch = arch();
    let m = &opts.mirrors;
    let step = opts.progress.step(format!(
        "downloading {} {version}",
        entry.binaries().join(", ")
    ));
    let result = (|| match entry {
        Entry::Kubernetes | Entry::Kubectl | Entry::Node => {
            for binary in entry.binaries() {
                let url = format!("{}/{version}/bin/linux/{arch}/{binary}", m.kubernetes);
                let sum = text(&format!("{url}.sha256"))?;
                let expected = checksum_for(&sum, binary).unwrap_or_default();
                write_executable(out_dir, binary, &get_verified(&url, &expected)?)?;
            }
            Ok(())
        }
        Entry::Etcd => {
            let file = format!("etcd-{version}-linux-{arch}.tar.gz");
            let base = format!("{}/{version}", m.etcd);
            let sums = text(&format!("{base}/SHA256SUMS"))?;
            let expected = checksum_for(&sums, &file).ok_or_else(|| ComponentsError::Download {
                url: format!("{base}/SHA256SUMS"),
                detail: format!("no checksum listed for {file}"),
            })?;
            let url = format!("{base}/{file}");
            extract(&get_verified(&url, &expected)?, &["etcd"], out_dir, &url)
        }
        Entry::Helm => {
            let file = format!("helm-{version}-linux-{arch}.tar.gz");
            let url = format!("{}/{file}", m.helm);
            let sums = text(&format!("{url}.sha256sum"))?;
            let expected = checksum_for(&sums, &file).unwrap_or_default();
            extract(&get_verified(&url, &expected)?, &["helm"], out_dir, &url)
        }
        Entry::Kind | Entry::Coredns | Entry::Crictl | Entry::Crane => {
            Err(ComponentsError::Download {
                url: entry.name().to_string(),
                detail: "only built from its Go module (needs Go on PATH)".into(),
            })
        }
    })();
    match &result {
        Ok(()) => step.done("checksums verified"),
        Err(_) => step.fail(""),
    };
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_listing_formats() {
        let bare = "abc123\n";
        assert_eq!(checksum_for(bare, "x").as_deref(), Some("abc123"));
        let listing =
            "111  etcd-v3.5.16-linux-arm64.tar.gz\n222  etcd-v3.5.16-linux-amd64.tar.gz\n";
        assert_eq!(
            checksum_for(listing, "etcd-v3.5.16-linux-amd64.tar.gz").as_deref(),
            Some("222")
        );
        assert_eq!(checksum_for(listing, "nope.tar.gz"), None);
    }
}
