//! The `kubeconfig` provider: an existing cluster (a staging AKS cluster, say) that
//! other people use too.
//!
//! preflight is a guest there. It writes only into namespaces it creates and labels
//! with its run id, scopes every webhook it registers to those namespaces, refuses
//! steps that would affect the whole cluster (controller-manager restart, upgrade,
//! unscoped or conversion webhooks), removes everything it created at the end, and
//! sweeps what an earlier interrupted run left (anything carrying its labels).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;

use crate::behaviour::{Behaviour, WebhookKind};
use crate::components::Version;
use crate::errors::ClusterError;
use crate::scenario::{Scenario, Step};

/// The label selector of everything preflight creates on a shared cluster.
pub const OWNED: &str = "app.kubernetes.io/managed-by=preflight,preflight.dev/run";

/// A cluster preflight did not create.
pub struct ExistingCluster {
    kubeconfig: PathBuf,
    context: Option<String>,
    version: Version,
    helm: PathBuf,
    dir: tempfile::TempDir,
    client: kube::Client,
    /// Where the cluster's API server can reach preflight's webhook server.
    webhook_address: Option<IpAddr>,
}

impl std::fmt::Debug for ExistingCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExistingCluster")
            .field("kubeconfig", &self.kubeconfig)
            .field("version", &self.version)
            .finish()
    }
}

/// `v1.30.7-aks.1` -> v1.30.7.
pub fn parse_server_version(git_version: &str) -> Option<Version> {
    let core: String = git_version
        .trim_start_matches('v')
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    core.trim_end_matches('.').parse().ok()
}

impl ExistingCluster {
    pub async fn connect(
        kubeconfig: &Path,
        context: Option<&str>,
        helm: &Path,
        webhook_address: Option<IpAddr>,
    ) -> Result<ExistingCluster, ClusterError> {
        crate::init_crypto();
        let client = super::local::client_from_kubeconfig(kubeconfig, context).await?;
        let info = client
            .apiserver_version()
            .await
            .map_err(|source| ClusterError::Api {
                action: format!("asking {} for its version", kubeconfig.display()),
                source,
            })?;
        let version =
            parse_server_version(&info.git_version).ok_or_else(|| ClusterError::Kubeconfig {
                path: kubeconfig.to_path_buf(),
                detail: format!(
                    "the server reports version `{}`, which is not vMAJOR.MINOR.PATCH",
                    info.git_version
                ),
            })?;
        let dir = tempfile::Builder::new()
            .prefix("preflight-existing-")
            .tempdir()
            .map_err(|e| {
                ClusterError::io("creating a temporary directory", std::env::temp_dir(), e)
            })?;
        Ok(ExistingCluster {
            kubeconfig: kubeconfig.to_path_buf(),
            context: context.map(String::from),
            version,
            helm: helm.to_path_buf(),
            dir,
            client,
            webhook_address,
        })
    }

    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }
    pub fn version(&self) -> &Version {
        &self.version
    }
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }
    pub fn context(&self) -> Option<&str> {
        self.context.as_deref()
    }
    pub fn helm(&self) -> &Path {
        &self.helm
    }
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn webhook_address(&self) -> Option<IpAddr> {
        self.webhook_address
    }

    pub async fn impersonating(&self, user: &str) -> Result<kube::Client, ClusterError> {
        super::local::client_from_kubeconfig_as(
            &self.kubeconfig,
            self.context.as_deref(),
            Some(user),
        )
        .await
    }

    /// Removes what earlier, interrupted runs left: namespaces and webhook
    /// configurations carrying preflight's run label. Returns what was removed.
    pub async fn sweep(&self) -> Result<Vec<String>, ClusterError> {
        sweep(&self.client).await
    }
}

/// Deletes every namespace and webhook configuration labelled as a preflight run's.
pub async fn sweep(client: &kube::Client) -> Result<Vec<String>, ClusterError> {
    sweep_selected(client, OWNED).await
}

/// Deletes the namespace and webhook configurations of one run (`preflight.dev/run=<id>`).
pub async fn cleanup_run(client: &kube::Client, run_id: &str) -> Result<Vec<String>, ClusterError> {
    sweep_selected(
        client,
        &format!("app.kubernetes.io/managed-by=preflight,preflight.dev/run={run_id}"),
    )
    .await
}

/// Sweeps from a thread of its own when dropped (armed): a run interrupted by Ctrl-C
/// or SIGTERM drops its futures, and no async teardown runs then. Used on shared
/// clusters, where nothing preflight made may stay.
pub struct SweepOnDrop {
    pub kubeconfig: PathBuf,
    pub context: Option<String>,
    pub armed: bool,
}

impl Drop for SweepOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (kubeconfig, context) = (self.kubeconfig.clone(), self.context.clone());
        let worker = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let work = async {
                    let client = super::local::client_from_kubeconfig(&kubeconfig, context.as_deref()).await.ok()?;
                    sweep(&client).await.ok()
                };
                match tokio::time::timeout(std::time::Duration::from_secs(30), work).await {
                    Ok(Some(removed)) if !removed.is_empty() => eprintln!("interrupted: removed {}", removed.join(", ")),
                    Ok(_) => {}
                    Err(_) => eprintln!("interrupted: could not finish removing preflight's objects within 30 s; the next run sweeps them"),
                }
            });
        });
        let _ = worker.join();
    }
}

async fn sweep_selected(
    client: &kube::Client,
    selector: &str,
) -> Result<Vec<String>, ClusterError> {
    let mut removed = Vec::new();
    let kinds = [
        // Webhook configurations first: a namespace being deleted must not meet them.
        (
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
        ),
        (
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
        ),
        ("", "v1", "Namespace", "namespaces"),
    ];
    for (group, version, kind, plural) in kinds {
        let ar =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let list = api
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|source| ClusterError::Api {
                action: format!("listing preflight's {kind}s"),
                source,
            })?;
        for obj in list.items {
            let name = obj.metadata.name.unwrap_or_default();
            if obj.metadata.deletion_timestamp.is_some() {
                continue;
            }
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => removed.push(format!("{kind}/{name}")),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(source) => {
                    return Err(ClusterError::Api {
                        action: format!("deleting {kind} {name}"),
                        source,
                    });
                }
            }
        }
    }
    Ok(removed)
}

/// Why a scenario cannot run on a shared cluster, if it cannot.
pub fn refusal(scenario: &Scenario, webhook_address: Option<IpAddr>) -> Option<String> {
    for step in &scenario.steps {
        match step {
            Step::RestartControllerManager => return Some("`restartControllerManager` affects the whole cluster: it needs the local or kind provider".into()),
            Step::RestartApiServer => return Some("`restartApiServer` affects the whole cluster: it needs the local or kind provider".into()),
            Step::Upgrade => return Some("`upgrade` (in place) needs the local provider".into()),
            _ => {}
        }
    }
    for w in &scenario.webhooks {
        if w.kind == WebhookKind::Conversion {
            return Some(format!(
                "webhook `{}`: a conversion webhook changes a CRD for the whole cluster: it needs the local or kind provider",
                w.name
            ));
        }
        if w.namespace_selector.is_some() {
            return Some(format!(
                "webhook `{}` sets its own namespaceSelector: on a shared cluster every webhook is scoped to preflight's namespace",
                w.name
            ));
        }
    }
    let needs_address = scenario
        .webhooks
        .iter()
        .any(|w| w.initial.behaviour != Behaviour::Unreachable)
        || scenario
            .steps
            .iter()
            .any(|s| matches!(s, Step::SetWebhook(set) if set.behaviour != Behaviour::Unreachable));
    if needs_address && webhook_address.is_none() {
        return Some("its webhooks must answer, so the cluster's API server must reach preflight: give --webhook-address (an address of this machine that the API server can reach); only `unreachable` webhooks need none".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_versions_with_vendor_suffixes() {
        assert_eq!(
            parse_server_version("v1.30.7-aks.1"),
            Some(Version::new(1, 30, 7))
        );
        assert_eq!(
            parse_server_version("v1.29.15"),
            Some(Version::new(1, 29, 15))
        );
        assert_eq!(
            parse_server_version("v1.31.2+k3s1"),
            Some(Version::new(1, 31, 2))
        );
        assert_eq!(parse_server_version("garbage"), None);
    }

    #[test]
    fn whole_cluster_steps_are_refused() {
        for name in ["incident-conversion", "incident-conversion-upgrade"] {
            let s = crate::scenario::embedded_named(name).unwrap();
            assert!(
                refusal(&s, Some("10.0.0.1".parse().unwrap())).is_some(),
                "{name}"
            );
        }
        let admission = crate::scenario::embedded_named("incident-admission").unwrap();
        assert!(refusal(&admission, Some("10.0.0.1".parse().unwrap())).is_none());
        let why = refusal(&admission, None).unwrap();
        assert!(why.contains("--webhook-address"), "{why}");
    }
}
