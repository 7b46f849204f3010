//! The download path, against a small local HTTP server that plays the three release
//! channels: checksums verified, a wrong one rejected with nothing installed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;

use preflight::components::{self, Entry, SourceKind, Version, download};
use preflight::errors::ComponentsError;
use preflight::progress::Progress;
use sha2::{Digest, Sha256};

/// Serves `files` (path -> body) on loopback until the process ends.
fn serve(files: HashMap<String, Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let files = Arc::new(files);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let files = files.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    return;
                }
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
                let mut stream = stream;
                match files.get(&path) {
                    Some(body) => {
                        let _ = write!(
                            stream,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = stream.write_all(body);
                    }
                    None => {
                        let _ = write!(
                            stream,
                            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        );
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn tar_gz(dir: &str, name: &str, body: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut header = tar::Header::new_gnu();
    header.set_size(body.len() as u64);
    header.set_mode(0o755);
    header.set_cksum();
    builder
        .append_data(&mut header, format!("{dir}/{name}"), body)
        .unwrap();
    builder.into_inner().unwrap().finish().unwrap()
}

/// A fake release set for Kubernetes v1.30.14, etcd v3.5.15 and Helm v3.19.0.
fn release_files(corrupt_apiserver: bool) -> HashMap<String, Vec<u8>> {
    let arch = download::arch();
    let mut files = HashMap::new();
    for bin in ["kube-apiserver", "kube-controller-manager"] {
        let body = format!("#!/bin/sh\necho {bin}\n").into_bytes();
        let mut sum = sha(&body);
        if corrupt_apiserver && bin == "kube-apiserver" {
            sum = sha(b"something else");
        }
        files.insert(
            format!("/k8s/v1.30.14/bin/linux/{arch}/{bin}.sha256"),
            sum.into_bytes(),
        );
        files.insert(format!("/k8s/v1.30.14/bin/linux/{arch}/{bin}"), body);
    }
    let etcd = tar_gz(
        &format!("etcd-v3.5.15-linux-{arch}"),
        "etcd",
        b"#!/bin/sh\necho etcd\n",
    );
    let etcd_name = format!("etcd-v3.5.15-linux-{arch}.tar.gz");
    files.insert(
        "/etcd/v3.5.15/SHA256SUMS".into(),
        format!(
            "0000  etcd-v3.5.15-linux-other.tar.gz\n{}  {etcd_name}\n",
            sha(&etcd)
        )
        .into_bytes(),
    );
    files.insert(format!("/etcd/v3.5.15/{etcd_name}"), etcd);
    let helm = tar_gz(&format!("linux-{arch}"), "helm", b"#!/bin/sh\necho helm\n");
    let helm_name = format!("helm-v3.19.0-linux-{arch}.tar.gz");
    files.insert(
        format!("/helm/{helm_name}.sha256sum"),
        format!("{}  {helm_name}\n", sha(&helm)).into_bytes(),
    );
    files.insert(format!("/helm/{helm_name}"), helm);
    files
}

fn options(base: &str, cache: &std::path::Path) -> components::Options {
    let mut opts = components::Options::from_env(Progress::quiet());
    opts.cache_dir = cache.to_path_buf();
    opts.bin_dir = None;
    opts.source = SourceKind::Download;
    opts.helm_version = "v3.19.0".parse().unwrap();
    opts.etcd_version = Some("v3.5.15".parse().unwrap());
    opts.mirrors = download::Mirrors {
        kubernetes: format!("{base}/k8s"),
        etcd: format!("{base}/etcd"),
        helm: format!("{base}/helm"),
    };
    opts
}

#[test]
fn downloads_verify_checksums_and_fill_the_cache() {
    let base = serve(release_files(false));
    let cache = tempfile::tempdir().unwrap();
    let opts = options(&base, cache.path());
    let version: Version = "v1.30.14".parse().unwrap();
    let c = components::ensure(&version, &opts).unwrap();
    for (path, word) in [
        (&c.kube_apiserver, "kube-apiserver"),
        (&c.kube_controller_manager, "kube-controller-manager"),
        (&c.etcd, "etcd"),
        (&c.helm, "helm"),
    ] {
        let out = std::process::Command::new(path).output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            word,
            "{}",
            path.display()
        );
        assert!(path.starts_with(cache.path().join("bin")));
    }
    assert!(components::cached(Entry::Kubernetes, &version, cache.path()).is_some());
    // A second call uses the cache: the server may be gone.
    let again = components::ensure(&version, &options("http://127.0.0.1:9", cache.path())).unwrap();
    assert_eq!(again, c);
}

#[test]
fn a_wrong_checksum_is_a_clear_error_and_installs_nothing() {
    let base = serve(release_files(true));
    let cache = tempfile::tempdir().unwrap();
    let opts = options(&base, cache.path());
    let err = components::ensure(&"v1.30.14".parse().unwrap(), &opts).unwrap_err();
    assert!(
        matches!(err, ComponentsError::ChecksumMismatch { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("checksum mismatch for"), "{msg}");
    assert!(msg.contains("/kube-apiserver"), "{msg}");
    assert!(msg.contains("nothing was installed"), "{msg}");
    let left: Vec<_> = std::fs::read_dir(cache.path().join("bin"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        left.is_empty(),
        "nothing may be left in the cache: {left:?}"
    );
}

#[test]
fn a_missing_file_names_the_url() {
    let base = serve(HashMap::new());
    let cache = tempfile::tempdir().unwrap();
    let err = components::ensure(&"v1.30.14".parse().unwrap(), &options(&base, cache.path()))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("kube-apiserver.sha256 failed: HTTP 404"),
        "{msg}"
    );
}
