//! Certificates and keys of one local control plane, generated per run.
//!
//! One CA signs the apiserver's serving certificate and the client certificates of
//! the admin (group `system:masters`) and of the controller manager (user
//! `system:kube-controller-manager`, whose RBAC role lets it mint the per-controller
//! service-account tokens that make the garbage collector appear to webhooks as
//! `system:serviceaccount:kube-system:generic-garbage-collector`). A separate key pair
//! signs service-account tokens. Everything is ECDSA P-256 and stays in the cluster's
//! directory, written with mode 0600.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::errors::ClusterError;

/// A certificate and its key, PEM-encoded.
#[derive(Clone, Debug)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Everything a local control plane needs, and where it was written.
#[derive(Clone, Debug)]
pub struct Pki {
    pub dir: PathBuf,
    pub ca: CertPair,
    pub admin: CertPair,
    pub controller_manager: CertPair,
}

impl Pki {
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn serving_cert(&self) -> PathBuf {
        self.dir.join("apiserver.crt")
    }
    pub fn serving_key(&self) -> PathBuf {
        self.dir.join("apiserver.key")
    }
    pub fn sa_public(&self) -> PathBuf {
        self.dir.join("sa.pub")
    }
    pub fn sa_private(&self) -> PathBuf {
        self.dir.join("sa.key")
    }

    /// Generates a fresh CA, certificates and service-account keys into `dir`.
    pub fn generate(dir: &Path) -> Result<Pki, ClusterError> {
        std::fs::create_dir_all(dir).map_err(|e| ClusterError::io("creating", dir, e))?;
        let (ca, issuer) = new_ca("preflight-local-ca")?;

        let serving = leaf(
            &issuer,
            "kube-apiserver",
            None,
            &[
                SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                SanType::IpAddress(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
                SanType::DnsName("localhost".try_into()?),
                SanType::DnsName("kubernetes".try_into()?),
                SanType::DnsName("kubernetes.default".try_into()?),
                SanType::DnsName("kubernetes.default.svc".try_into()?),
            ],
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let admin = leaf(
            &issuer,
            "preflight-admin",
            Some("system:masters"),
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        let controller_manager = leaf(
            &issuer,
            "system:kube-controller-manager",
            None,
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        let sa = KeyPair::generate()?;

        write_private(&dir.join("ca.crt"), &ca.cert_pem)?;
        write_private(&dir.join("ca.key"), &ca.key_pem)?;
        write_private(&dir.join("apiserver.crt"), &serving.cert_pem)?;
        write_private(&dir.join("apiserver.key"), &serving.key_pem)?;
        write_private(&dir.join("sa.key"), &sa.serialize_pem())?;
        write_private(&dir.join("sa.pub"), &sa.public_key_pem())?;
        Ok(Pki {
            dir: dir.to_path_buf(),
            ca,
            admin,
            controller_manager,
        })
    }
}

/// A fresh CA: its certificate (and key) as PEM, and the issuer that signs leaves.
pub fn new_ca(common_name: &str) -> Result<(CertPair, Issuer<'static, KeyPair>), rcgen::Error> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let pair = CertPair {
        cert_pem: ca_cert.pem(),
        key_pem: ca_key.serialize_pem(),
    };
    Ok((pair, Issuer::new(ca_params, ca_key)))
}

/// A certificate signed by `issuer`, for a server or a client.
pub fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    common_name: &str,
    organization: Option<&str>,
    sans: &[SanType],
    usage: ExtendedKeyUsagePurpose,
) -> Result<CertPair, ClusterError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    if let Some(org) = organization {
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
    }
    params.subject_alt_names = sans.to_vec();
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer)?;
    Ok(CertPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Writes a file readable only by its owner (keys never leave the run directory).
pub fn write_private(path: &Path, contents: &str) -> Result<(), ClusterError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| ClusterError::io("writing", path, e))?;
    f.write_all(contents.as_bytes())
        .map_err(|e| ClusterError::io("writing", path, e))
}
