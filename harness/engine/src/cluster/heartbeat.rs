//! A run's heartbeat on a shared cluster: a `coordination.k8s.io/v1` Lease that says
//! "this run is alive", so that the sweep of other preflight processes (which removes
//! what interrupted runs left) never removes a run that is still going.
//!
//! * The Lease lives in the run's own namespace (`pf-<scenario>-<run>`) and is named
//!   `preflight-run-<run>`: preflight needs no namespace or cluster-wide permission
//!   beyond the ones it already has in the namespaces it creates (create, get, patch
//!   and delete `leases` there); the sweep only `get`s a Lease by name in the
//!   namespaces labelled with the run (no cluster-wide `list leases`).
//! * A background task renews `spec.renewTime` every [`RENEW_EVERY`] while the run
//!   lives; teardown stops it and deletes the Lease. An interrupted process stops
//!   renewing, and its Lease expires after [`LEASE_DURATION_SECONDS`].
//! * Times are the API server's: the renewer writes `renewTime` on the server's clock
//!   (its own clock corrected by the offset to the `Date` of a fresh server response),
//!   and the sweep compares against a fresh server `Date` too, with a margin
//!   ([`SKEW_MARGIN`]) for second-precision dates and round trips. A `renewTime` that
//!   lies further ahead than the margin is not trusted; the Lease's server-written
//!   timestamps (its creation and `managedFields` times) count then.
//! * Objects of a run without any Lease (older preflight versions, or a run that has
//!   created its namespace but not yet its Lease) count as abandoned only
//!   [`NO_LEASE_GRACE`] after the newest of their creation timestamps.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

use crate::errors::ClusterError;

/// How long a Lease holds without renewal.
pub const LEASE_DURATION_SECONDS: i32 = 30;
/// How often a live run renews its Lease.
pub const RENEW_EVERY: Duration = Duration::from_secs(10);
/// Slack for clock skew, second-precision `Date` headers and round trips.
pub const SKEW_MARGIN: Duration = Duration::from_secs(15);
/// How long objects of a run without a Lease are left alone after their creation.
pub const NO_LEASE_GRACE: Duration = Duration::from_secs(10 * 60);
/// A Lease cannot claim more than this (a bogus duration must not protect forever).
pub const MAX_LEASE_SECONDS: i64 = 3600;

/// The Lease of run `run_id`.
pub fn lease_name(run_id: &str) -> String {
    format!("preflight-run-{run_id}")
}

/// What a Lease says, as far as expiry goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseTimes {
    /// `spec.renewTime` (written by the holder, on the server's clock).
    pub renew: Option<Timestamp>,
    /// `spec.acquireTime`, used when there is no `renewTime`.
    pub acquire: Option<Timestamp>,
    /// `spec.leaseDurationSeconds`.
    pub duration_seconds: Option<i32>,
    /// The newest timestamp the API server itself wrote on the Lease (creation,
    /// `managedFields[].time`).
    pub server_written: Option<Timestamp>,
}

impl LeaseTimes {
    pub fn of(lease: &Lease) -> LeaseTimes {
        let spec = lease.spec.as_ref();
        let mut server: Vec<Timestamp> = lease
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter_map(|m| m.time.as_ref().map(|t| t.0))
            .collect();
        server.extend(lease.metadata.creation_timestamp.as_ref().map(|t| t.0));
        LeaseTimes {
            renew: spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0),
            acquire: spec.and_then(|s| s.acquire_time.as_ref()).map(|t| t.0),
            duration_seconds: spec.and_then(|s| s.lease_duration_seconds),
            server_written: server.into_iter().max(),
        }
    }
}

fn dur(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

/// Until when a Lease protects its run, judged at `now` (the server's clock): its last
/// renewal (`renewTime`, else `acquireTime`) plus its duration plus [`SKEW_MARGIN`]. A
/// holder-written time further in the future than the margin is not trusted (a clock
/// far ahead, or a bogus Lease); the server-written times count then. `None`: the Lease carries no usable time at all.
pub fn lease_valid_until(lease: &LeaseTimes, now: Timestamp) -> Option<Timestamp> {
    let trustworthy = |t: Timestamp| t <= now + dur(SKEW_MARGIN);
    // The holder's last word (renewTime, or acquireTime where it never renewed) if it
    // is believable; otherwise what the server itself wrote.
    let last = match lease.renew.or(lease.acquire) {
        Some(t) if trustworthy(t) => t,
        _ => lease.server_written?,
    };
    let seconds = i64::from(lease.duration_seconds.unwrap_or(LEASE_DURATION_SECONDS))
        .clamp(1, MAX_LEASE_SECONDS);
    Some(last + SignedDuration::from_secs(seconds) + dur(SKEW_MARGIN))
}

/// Whether the run holding `lease` is gone, at `now` (the server's clock).
pub fn lease_expired(lease: &LeaseTimes, now: Timestamp) -> bool {
    lease_valid_until(lease, now).is_none_or(|until| until < now)
}

/// Whether objects of a run without a Lease, the newest created at `newest_creation`,
/// count as abandoned at `now` (the server's clock).
pub fn unleased_expired(newest_creation: Option<Timestamp>, now: Timestamp) -> bool {
    // Without any creation time there is nothing to go by: leave it alone.
    newest_creation.is_some_and(|t| t + dur(NO_LEASE_GRACE) + dur(SKEW_MARGIN) < now)
}

/// The API server's clock, from the `Date` of a fresh response (`/version`), with
/// whether it really came from the server (`false`: this machine's clock, when the
/// response carries no readable `Date`).
pub async fn server_now(client: &kube::Client) -> (Timestamp, bool) {
    let request = http::Request::get("/version")
        .body(kube::client::Body::from(Vec::new()))
        .expect("a static request");
    if let Ok(response) = client.send(request).await
        && let Some(date) = response
            .headers()
            .get(http::header::DATE)
            .and_then(|d| d.to_str().ok())
        && let Some(t) = parse_http_date(date)
    {
        return (t, true);
    }
    (Timestamp::now(), false)
}

/// `Tue, 15 Nov 1994 08:12:31 GMT` (RFC 9110's IMF-fixdate, a form of RFC 2822).
pub fn parse_http_date(date: &str) -> Option<Timestamp> {
    k8s_openapi::jiff::fmt::rfc2822::parse(date.trim())
        .ok()
        .map(|z| z.timestamp())
}

/// A running heartbeat: the Lease of one run and the task renewing it.
pub struct Heartbeat {
    client: kube::Client,
    namespace: String,
    name: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    problems: Arc<Mutex<Vec<String>>>,
}

impl std::fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heartbeat")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .finish()
    }
}

/// Who holds a Lease: this machine, this process, this run.
pub fn holder_identity(run_id: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let host = if host.is_empty() {
        "unknown-host".to_string()
    } else {
        host
    };
    format!("preflight@{host}/pid-{}/run-{run_id}", std::process::id())
}

fn lease_object(
    name: &str,
    run_id: &str,
    holder: &str,
    now: Timestamp,
) -> Result<Lease, serde_json::Error> {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "labels": {
            "app.kubernetes.io/managed-by": "preflight",
            "preflight.dev/run": run_id,
        }},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "acquireTime": MicroTime(now),
            "renewTime": MicroTime(now),
        },
    }))
}

impl Heartbeat {
    /// Creates the Lease of run `run_id` in `namespace` (the run's own) and starts
    /// renewing it. Fails when the Lease cannot be created: a run without a heartbeat
    /// could be swept by another preflight as abandoned.
    pub async fn start(
        client: &kube::Client,
        namespace: &str,
        run_id: &str,
    ) -> Result<Heartbeat, ClusterError> {
        let name = lease_name(run_id);
        let holder = holder_identity(run_id);
        let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
        // This machine's clock, corrected to the server's (whole seconds: `Date`).
        let (server, from_server) = server_now(client).await;
        let offset = if from_server {
            server.duration_since(Timestamp::now())
        } else {
            SignedDuration::ZERO
        };
        let lease =
            lease_object(&name, run_id, &holder, Timestamp::now() + offset).map_err(|e| {
                ClusterError::Api {
                    action: format!("building Lease {namespace}/{name}"),
                    source: kube::Error::SerdeError(e),
                }
            })?;
        match api.create(&PostParams::default(), &lease).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {
                renew(&api, &name, &holder, Timestamp::now() + offset)
                    .await
                    .map_err(|source| ClusterError::Api {
                        action: format!("taking over the existing Lease {namespace}/{name}"),
                        source,
                    })?;
            }
            Err(source) => {
                return Err(ClusterError::Api {
                    action: format!(
                        "creating the run's heartbeat (Lease {namespace}/{name}; preflight needs create, patch and delete on leases.coordination.k8s.io in its own namespaces)"
                    ),
                    source,
                });
            }
        }
        let problems = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = {
            let (api, name, run_id, problems) = (
                api.clone(),
                name.clone(),
                run_id.to_string(),
                problems.clone(),
            );
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(RENEW_EVERY);
                ticks.tick().await;
                loop {
                    tokio::select! {
                        _ = &mut stopped => return,
                        _ = ticks.tick() => {}
                    }
                    let now = Timestamp::now() + offset;
                    let result = match renew(&api, &name, &holder, now).await {
                        // Gone (removed by someone): put it back while the run lives.
                        Err(kube::Error::Api(e)) if e.code == 404 => {
                            match lease_object(&name, &run_id, &holder, now) {
                                Ok(l) => api.create(&PostParams::default(), &l).await.map(|_| ()),
                                Err(e) => Err(kube::Error::SerdeError(e)),
                            }
                        }
                        other => other,
                    };
                    if let Err(e) = result {
                        let mut p = problems.lock().unwrap_or_else(|p| p.into_inner());
                        // Keep the first few: a long outage must not grow this without bound.
                        if p.len() < 5 {
                            p.push(format!("renewing Lease {name} at {now}: {e}"));
                        }
                    }
                }
            })
        };
        Ok(Heartbeat {
            client: client.clone(),
            namespace: namespace.to_string(),
            name,
            stop: Some(stop),
            task: Some(task),
            problems,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops renewing and deletes the Lease. Returns every problem met while the run
    /// lived (failed renewals) and in deleting.
    pub async fn stop(mut self) -> Vec<String> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let mut problems =
            std::mem::take(&mut *self.problems.lock().unwrap_or_else(|p| p.into_inner()));
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &self.namespace);
        match api.delete(&self.name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => problems.push(format!(
                "deleting Lease {}/{}: {e}",
                self.namespace, self.name
            )),
        }
        problems
    }
}

impl Drop for Heartbeat {
    /// An interrupted run stops renewing: its Lease then expires (or goes with the
    /// run's namespace, which the interrupted run's own clean-up removes).
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn renew(
    api: &Api<Lease>,
    name: &str,
    holder: &str,
    now: Timestamp,
) -> Result<(), kube::Error> {
    let patch = serde_json::json!({"spec": {
        "holderIdentity": holder,
        "leaseDurationSeconds": LEASE_DURATION_SECONDS,
        "renewTime": MicroTime(now),
    }});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const NOW: &str = "2025-01-01T12:00:00Z";

    fn renewed(t: &str) -> LeaseTimes {
        LeaseTimes {
            renew: Some(at(t)),
            acquire: Some(at("2025-01-01T11:00:00Z")),
            duration_seconds: Some(30),
            server_written: Some(at("2025-01-01T11:00:00Z")),
        }
    }

    #[test]
    fn a_fresh_lease_is_live() {
        assert!(!lease_expired(&renewed("2025-01-01T11:59:55Z"), at(NOW)));
    }

    #[test]
    fn a_lease_within_duration_plus_margin_is_live() {
        // 30 s duration + 15 s margin: renewed 44 s ago is still live, 46 s ago is not.
        assert!(!lease_expired(&renewed("2025-01-01T11:59:16Z"), at(NOW)));
        assert!(lease_expired(&renewed("2025-01-01T11:59:14Z"), at(NOW)));
        assert_eq!(
            lease_valid_until(&renewed("2025-01-01T11:59:00Z"), at(NOW)),
            Some(at("2025-01-01T11:59:45Z"))
        );
    }

    #[test]
    fn an_old_lease_is_expired() {
        assert!(lease_expired(&renewed("2025-01-01T10:00:00Z"), at(NOW)));
    }

    #[test]
    fn the_lease_duration_counts_and_is_bounded() {
        let mut l = renewed("2025-01-01T11:55:00Z");
        l.duration_seconds = Some(600);
        assert!(!lease_expired(&l, at(NOW)), "10 minutes claimed, 5 gone");
        l.duration_seconds = Some(i32::MAX);
        l.renew = Some(at("2025-01-01T09:00:00Z"));
        assert!(lease_expired(&l, at(NOW)), "no Lease holds beyond an hour");
        l.duration_seconds = None;
        l.renew = Some(at("2025-01-01T11:59:30Z"));
        assert!(!lease_expired(&l, at(NOW)), "the default duration");
    }

    #[test]
    fn a_renew_time_far_ahead_is_not_trusted() {
        // A holder's clock an hour ahead: its renewTime would protect it for an hour
        // after it died; the server-written time counts instead.
        let mut l = renewed("2025-01-01T13:00:00Z");
        assert!(lease_expired(&l, at(NOW)), "server-written 11:00 is old");
        l.server_written = Some(at("2025-01-01T11:59:50Z"));
        assert!(!lease_expired(&l, at(NOW)));
        // Slightly ahead (within the margin) is a live holder with a skewed clock.
        assert!(!lease_expired(&renewed("2025-01-01T12:00:10Z"), at(NOW)));
    }

    #[test]
    fn without_renew_time_acquire_then_server_times_count() {
        let mut l = LeaseTimes {
            renew: None,
            acquire: Some(at("2025-01-01T11:59:50Z")),
            duration_seconds: Some(30),
            server_written: Some(at("2025-01-01T10:00:00Z")),
        };
        assert!(!lease_expired(&l, at(NOW)));
        l.acquire = None;
        assert!(lease_expired(&l, at(NOW)));
        l.server_written = None;
        assert_eq!(lease_valid_until(&l, at(NOW)), None);
        assert!(lease_expired(&l, at(NOW)), "a Lease without any time");
    }

    #[test]
    fn runs_without_a_lease_get_a_grace_period() {
        assert!(!unleased_expired(Some(at("2025-01-01T11:59:00Z")), at(NOW)));
        assert!(!unleased_expired(Some(at("2025-01-01T11:50:00Z")), at(NOW)));
        assert!(unleased_expired(Some(at("2025-01-01T11:49:00Z")), at(NOW)));
        assert!(!unleased_expired(None, at(NOW)));
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Wed, 01 Jan 2025 12:00:00 GMT"),
            Some(at(NOW))
        );
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn lease_times_from_a_lease() {
        let lease: Lease = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "preflight-run-abcde0", "creationTimestamp": "2025-01-01T11:00:00Z",
                "managedFields": [{"manager": "preflight", "operation": "Update", "time": "2025-01-01T11:59:00Z"}]},
            "spec": {"holderIdentity": "x", "leaseDurationSeconds": 30, "renewTime": "2025-01-01T11:59:58.123456Z"}
        }))
        .unwrap();
        let t = LeaseTimes::of(&lease);
        assert_eq!(t.renew, Some(at("2025-01-01T11:59:58.123456Z")));
        assert_eq!(t.server_written, Some(at("2025-01-01T11:59:00Z")));
        assert_eq!(t.duration_seconds, Some(30));
        assert_eq!(lease_name("abcde0"), "preflight-run-abcde0");
    }
}
