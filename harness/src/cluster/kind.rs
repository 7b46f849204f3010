//! The `kind` provider: a kind cluster per run (`kind create cluster`), deleted at
//! teardown, also on errors and Ctrl-C (the guard's drop).
//!
//! Not exercised on preflight's own CI machine, which has no Docker engine: the nightly
//! workflow under `ci/` runs it. The tests here cover the commands, the names and the
//! error messages.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::components::Version;
use crate::errors::ClusterError;

/// What to install when a tool is missing.
pub const INSTALL_HINT: &str = "the kind provider needs a running Docker engine and the kind CLI: install Docker (https://docs.docker.com/engine/install/) and kind (`go install sigs.k8s.io/kind@v0.33.0`, or a release binary from https://kind.sigs.k8s.io/docs/user/quick-start/#installation), or use `--provider local`";

/// A unique cluster name for a run: parallel runs never collide.
pub fn cluster_name(run_id: &str, role: &str) -> String {
    let mut name = format!("preflight-{run_id}-{role}");
    name.truncate(40);
    name
}

/// The node image for a version: `kindest/node:<version>`, or the user's template
/// (`--kind-image`, where `{version}` stands for the version).
pub fn node_image(version: &Version, template: Option<&str>) -> String {
    template
        .unwrap_or("kindest/node:{version}")
        .replace("{version}", &version.to_string())
}

pub fn create_args(name: &str, image: &str, kubeconfig: &Path) -> Vec<String> {
    vec![
        "create".into(),
        "cluster".into(),
        format!("--name={name}"),
        format!("--image={image}"),
        format!("--kubeconfig={}", kubeconfig.display()),
        "--wait=180s".into(),
    ]
}

pub fn delete_args(name: &str) -> Vec<String> {
    vec!["delete".into(), "cluster".into(), format!("--name={name}")]
}

/// `docker exec` arguments that restart the controller manager's container (the
/// kubelet starts a new one from its static pod).
pub fn restart_controller_manager_args(name: &str) -> Vec<String> {
    vec![
        "exec".into(),
        format!("{name}-control-plane"),
        "sh".into(),
        "-c".into(),
        "crictl stop $(crictl ps -q --name kube-controller-manager)".into(),
    ]
}

fn run(program: &str, args: &[String]) -> Result<String, ClusterError> {
    let command = format!("{program} {}", args.join(" "));
    let out = duct::cmd(program, args)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .map_err(|e| {
            ClusterError::Unsupported(format!("cannot run `{program}` ({e}): {INSTALL_HINT}"))
        })?;
    if !out.status.success() {
        return Err(ClusterError::Command {
            command,
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Checks that kind and a Docker engine are there, with an actionable message if not.
pub fn check_tools() -> Result<(), ClusterError> {
    run("kind", &["version".into()])?;
    run(
        "docker",
        &[
            "info".into(),
            "--format".into(),
            "{{.ServerVersion}}".into(),
        ],
    )
    .map_err(|e| {
        ClusterError::Unsupported(format!("Docker is not usable ({e}): {INSTALL_HINT}"))
    })?;
    Ok(())
}

/// A kind cluster, deleted when dropped.
pub struct KindCluster {
    name: String,
    version: Version,
    helm: PathBuf,
    dir: tempfile::TempDir,
    client: kube::Client,
    gateway: IpAddr,
}

impl std::fmt::Debug for KindCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KindCluster")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish()
    }
}

impl KindCluster {
    pub async fn start(
        name: &str,
        version: &Version,
        image: &str,
        helm: &Path,
    ) -> Result<KindCluster, ClusterError> {
        crate::init_crypto();
        check_tools()?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir()
            .map_err(|e| {
                ClusterError::io("creating a temporary directory", std::env::temp_dir(), e)
            })?;
        let kubeconfig = dir.path().join("kubeconfig");
        let args = create_args(name, image, &kubeconfig);
        let created = tokio::task::spawn_blocking(move || run("kind", &args))
            .await
            .map_err(|e| ClusterError::Unsupported(e.to_string()))?;
        if let Err(e) = created {
            let _ = run("kind", &delete_args(name));
            return Err(e);
        }
        let guard = KindDelete(name.to_string());
        let client = super::local::client_from_kubeconfig(&kubeconfig, None).await?;
        // The sample webhook server listens on the kind network's gateway, which the
        // nodes (and so the API server) reach.
        let gateway = run(
            "docker",
            &[
                "network".into(),
                "inspect".into(),
                "kind".into(),
                "--format".into(),
                "{{range .IPAM.Config}}{{.Gateway}} {{end}}".into(),
            ],
        )?
        .split_whitespace()
        .find_map(|g| g.parse::<IpAddr>().ok().filter(IpAddr::is_ipv4))
        .ok_or_else(|| {
            ClusterError::Unsupported(
                "the kind network has no IPv4 gateway for the webhook server to listen on".into(),
            )
        })?;
        std::mem::forget(guard);
        Ok(KindCluster {
            name: name.to_string(),
            version: version.clone(),
            helm: helm.to_path_buf(),
            dir,
            client,
            gateway,
        })
    }

    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }
    pub fn version(&self) -> &Version {
        &self.version
    }
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }
    pub fn helm(&self) -> &Path {
        &self.helm
    }
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn gateway(&self) -> IpAddr {
        self.gateway
    }

    pub async fn impersonating(&self, user: &str) -> Result<kube::Client, ClusterError> {
        super::local::client_from_kubeconfig_as(&self.kubeconfig(), None, Some(user)).await
    }

    /// Stops the controller manager's container; the kubelet starts a fresh one. Waits
    /// (polling, with a deadline) until it runs again.
    pub async fn restart_controller_manager(&mut self) -> Result<(), ClusterError> {
        let name = self.name.clone();
        tokio::task::spawn_blocking(move || run("docker", &restart_controller_manager_args(&name)))
            .await
            .map_err(|e| ClusterError::Unsupported(e.to_string()))??;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let check = vec![
            "exec".to_string(),
            format!("{}-control-plane", self.name),
            "crictl".into(),
            "ps".into(),
            "-q".into(),
            "--state=running".into(),
            "--name=kube-controller-manager".into(),
        ];
        while std::time::Instant::now() < deadline {
            if run("docker", &check).is_ok_and(|out| !out.trim().is_empty()) {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        Err(ClusterError::Unsupported(
            "kube-controller-manager did not come back within 120 s".into(),
        ))
    }
}

struct KindDelete(String);

impl Drop for KindDelete {
    fn drop(&mut self) {
        let _ = run("kind", &delete_args(&self.0));
    }
}

impl Drop for KindCluster {
    fn drop(&mut self) {
        let _ = run("kind", &delete_args(&self.name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_names() {
        let v = Version::new(1, 30, 14);
        assert_eq!(node_image(&v, None), "kindest/node:v1.30.14");
        assert_eq!(
            node_image(&v, Some("registry.example/node:custom")),
            "registry.example/node:custom"
        );
        let a = cluster_name("abcde1", "source");
        assert_eq!(a, "preflight-abcde1-source");
        assert_ne!(
            a,
            cluster_name("abcde2", "source"),
            "runs never share a name"
        );
        assert!(cluster_name(&"x".repeat(80), "target").len() <= 40);
        assert_eq!(
            create_args("n", "kindest/node:v1.30.14", Path::new("/run/kc")),
            [
                "create",
                "cluster",
                "--name=n",
                "--image=kindest/node:v1.30.14",
                "--kubeconfig=/run/kc",
                "--wait=180s"
            ]
        );
        assert_eq!(delete_args("n"), ["delete", "cluster", "--name=n"]);
        assert_eq!(restart_controller_manager_args("n")[1], "n-control-plane");
    }
}
