//! The namespace a run works in: created by the run, labelled as its own
//! (`app.kubernetes.io/managed-by: preflight`, `preflight.dev/run: <id>`), deleted at
//! its end, and swept by label if the run is killed.
//!
//! A scenario may name its namespace (`release.namespace`). A run never adopts a
//! namespace it did not create: on a shared cluster that one is someone else's, and
//! the run's teardown would delete it with everything in it. The only namespace that
//! may exist already is one of an earlier preflight run that is being deleted (the same
//! scenario run again while its last teardown finishes): that one is waited for.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};

use crate::cluster::existing::RUN_LABEL;

/// How long a run waits for an earlier preflight run's namespace of the same name to
/// finish terminating.
pub const TERMINATING_WAIT: Duration = Duration::from_secs(120);

const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// Why a run cannot have its namespace.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error(
        "namespace `{name}` already exists on the cluster and is not this run's ({owner}): a run creates its namespace and deletes it at the end, so it never works in one it did not create; name another release.namespace (or delete `{name}` if it is a leftover of yours)"
    )]
    Taken { name: String, owner: String },
    #[error(
        "namespace `{name}` of an earlier preflight run is still being deleted after {} s; run again once it is gone",
        waited.as_secs()
    )]
    StillTerminating { name: String, waited: Duration },
    #[error("creating namespace `{name}`: {source}")]
    Api {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Who a namespace that exists belongs to, in words.
fn owner(ns: &Namespace) -> String {
    let labels = ns.metadata.labels.clone().unwrap_or_default();
    let deleting = if ns.metadata.deletion_timestamp.is_some() {
        ", being deleted"
    } else {
        ""
    };
    match (
        labels.get(MANAGED_BY).map(String::as_str),
        labels.get(RUN_LABEL),
    ) {
        (Some("preflight"), Some(run)) => {
            format!("it is preflight run {run}'s, which may still be going{deleting}")
        }
        _ => format!("preflight did not create it{deleting}"),
    }
}

/// Creates namespace `name` labelled as run `run_id`'s. Succeeds when it exists already
/// as this very run's; waits up to `wait` while an earlier preflight run's namespace of
/// that name terminates; refuses any other namespace that exists.
pub async fn claim(
    client: &kube::Client,
    name: &str,
    run_id: &str,
    wait: Duration,
) -> Result<(), NamespaceError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {MANAGED_BY: "preflight", RUN_LABEL: run_id}}
    }))
    .map_err(|e| NamespaceError::Api {
        name: name.to_string(),
        source: kube::Error::SerdeError(e),
    })?;
    let api_error = |source| NamespaceError::Api {
        name: name.to_string(),
        source,
    };
    let started = Instant::now();
    loop {
        match api.create(&PostParams::default(), &ns).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(api_error(e)),
        }
        // Gone between the two calls (None): create it again after the pause.
        if let Some(existing) = api.get_opt(name).await.map_err(api_error)? {
            let labels = existing.metadata.labels.clone().unwrap_or_default();
            let preflights = labels.get(MANAGED_BY).map(String::as_str) == Some("preflight");
            if preflights && labels.get(RUN_LABEL).map(String::as_str) == Some(run_id) {
                return Ok(());
            }
            if !(preflights && existing.metadata.deletion_timestamp.is_some()) {
                return Err(NamespaceError::Taken {
                    name: name.to_string(),
                    owner: owner(&existing),
                });
            }
        }
        if started.elapsed() >= wait {
            return Err(NamespaceError::StillTerminating {
                name: name.to_string(),
                waited: started.elapsed(),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(labels: serde_json::Value, deleting: bool) -> Namespace {
        let mut meta = serde_json::json!({"name": "shop", "labels": labels});
        if deleting {
            meta["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
        }
        serde_json::from_value(
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta}),
        )
        .unwrap()
    }

    #[test]
    fn an_existing_namespace_says_whose_it_is() {
        assert_eq!(
            owner(&ns(serde_json::json!({}), false)),
            "preflight did not create it"
        );
        assert_eq!(
            owner(&ns(
                serde_json::json!({"app.kubernetes.io/managed-by": "preflight", "preflight.dev/run": "abcde0"}),
                true
            )),
            "it is preflight run abcde0's, which may still be going, being deleted"
        );
    }
}
