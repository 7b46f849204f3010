//! The drain half of an AKS node-pool upgrade, rehearsed on a real control plane:
//! cordon a node, evict its Pods through the Eviction API as `kubectl drain
//! --ignore-daemonsets --delete-emptydir-data` does, and say from the API's answers
//! alone whether the drain finishes, fails, or would wait out its timeout.
//!
//! AKS drains each old node within a drain timeout (30 min by default) and fails the
//! upgrade (or quarantines the node) when it cannot (docs/aks-upgrade.md). Waiting 30
//! minutes to learn that a PodDisruptionBudget allows no disruption is the expensive
//! way; [`drain`] keeps every eviction answer and budget reading and stops as soon as
//! they settle the question ([`verdict`]), reporting how long AKS would have waited.
//!
//! * [`cordon`]: `spec.unschedulable` on and off;
//! * [`select`]: which Pods a drain evicts (kubectl's filters);
//! * [`evict`]: one eviction and kubectl's decision on its answer;
//! * [`budget`]: a budget's status as read from the API;
//! * [`verdict`]: whether a refusing budget can ever allow the eviction.
//!
//! Nothing here decides from configuration preflight wrote: a verdict rests on the
//! Eviction API's answers and on budget statuses the disruption controller computed.

pub mod budget;
pub mod cordon;
pub mod evict;
pub mod select;

/// The drain's records and pure decisions live in the core (the report reads them).
pub use preflight_core::drain::{
    AKS_DRAIN_TIMEOUT, BlockedBy, DrainOutcome, PodEnd, PodRef, PodResult, outcome, secs, verdict,
};

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use serde::Serialize;

pub use budget::BudgetReading;
pub use cordon::{cordon, uncordon};
pub use evict::{Answer, Eviction};
pub use select::{Flags, PodDecision, Selection};

/// How long one API request may take before preflight stops waiting for it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Failures at the boundary: the API did not answer a read the drain needs.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("{what}: no answer within {timeout:?}")]
    Timeout { what: String, timeout: Duration },
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("building a client that does not retry 429s: {0}")]
    Client(#[source] kube::Error),
    /// kubectl's filters refuse to drain the node (`cannot delete ...`).
    #[error("kubectl's drain would refuse the node: {}", .pods.iter().map(|(p, why)| format!("{p}: {why}")).collect::<Vec<_>>().join("; "))]
    Unevictable { pods: Vec<(PodRef, String)> },
}

/// A client for [`drain`]: one that hands every 429 back to the caller.
///
/// kube's `Client` retries 429 (and 503, 504) answers itself by default
/// (`Config::default_retry`, on since kube 4: up to 15 retries, exponential backoff,
/// honouring `Retry-After`). On a drain that hides exactly the evidence: the budget's
/// refusals never reach the caller and each eviction ends as a request timeout instead
/// (observed on a local control plane: every eviction "no answer within 10s"). kubectl's
/// client-go does not retry them either: its drain loop does, every 5 s.
pub fn client_without_retries(mut config: kube::Config) -> Result<kube::Client, DrainError> {
    config.default_retry = false;
    kube::Client::try_from(config).map_err(DrainError::Client)
}

/// Runs one API call under `timeout`.
pub(crate) async fn call<T>(
    timeout: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, DrainError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(DrainError::Api {
            what: what.into(),
            source,
        }),
        Err(_) => Err(DrainError::Timeout {
            what: what.into(),
            timeout,
        }),
    }
}

/// The [`PodRef`] of a Pod read from the API.
pub fn pod_ref(pod: &Pod) -> PodRef {
    PodRef {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
    }
}

/// How a drain runs. The defaults are AKS's and `kubectl drain`'s.
#[derive(Clone, Debug, Serialize)]
pub struct DrainOptions {
    /// The whole drain's deadline (AKS: 30 min per node).
    #[serde(with = "secs")]
    pub timeout: Duration,
    /// Between retries of a 429 (`kubectl drain`'s `EvictErrorRetryDelay`, 5 s).
    #[serde(with = "secs")]
    pub retry_delay: Duration,
    /// Between reads of an evicted Pod while waiting for it to be gone (kubectl's
    /// `waitForDelete` interval, 1 s).
    #[serde(with = "secs")]
    pub poll_interval: Duration,
    /// How long a refusing budget's status must stay unchanged, with nothing that
    /// could change it, before the drain is called blocked.
    #[serde(with = "secs")]
    pub confirm_window: Duration,
    /// Per API request.
    #[serde(with = "secs")]
    pub request_timeout: Duration,
    /// Cordon the node first, as `kubectl drain` and AKS do.
    pub cordon: bool,
    pub flags: Flags,
}

impl Default for DrainOptions {
    fn default() -> Self {
        DrainOptions {
            timeout: AKS_DRAIN_TIMEOUT,
            retry_delay: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
            confirm_window: Duration::from_secs(5),
            request_timeout: REQUEST_TIMEOUT,
            cordon: true,
            flags: Flags::default(),
        }
    }
}

/// The drain of one node, with its evidence.
#[derive(Clone, Debug, Serialize)]
pub struct DrainReport {
    pub node: String,
    /// RFC 3339.
    pub started: String,
    #[serde(with = "secs")]
    pub duration: Duration,
    pub options: DrainOptions,
    /// Whether this drain cordoned the node (false: it already was, or was not asked).
    pub cordoned: bool,
    /// Every Pod on the node and what the filters decided for it.
    pub selection: Selection,
    /// Every eviction attempt with the API server's answer, in time order.
    pub evictions: Vec<Eviction>,
    /// Every budget reading taken after a 429, in time order.
    pub budget_readings: Vec<BudgetReading>,
    pub pods: Vec<PodResult>,
    pub outcome: DrainOutcome,
}

/// The Pods bound to `node` that `kubectl drain --ignore-daemonsets
/// --delete-emptydir-data` evicts (see [`select`]); errors when kubectl would refuse
/// to drain.
pub async fn pods_to_evict(client: &kube::Client, node: &str) -> Result<Vec<Pod>, DrainError> {
    let selection = select::select(client, node, Flags::default(), REQUEST_TIMEOUT).await?;
    let refused = selection.refused();
    if !refused.is_empty() {
        return Err(DrainError::Unevictable { pods: refused });
    }
    Ok(selection.evict)
}

/// What the Pod tasks share.
struct Ctx<'a> {
    client: &'a kube::Client,
    opts: &'a DrainOptions,
    start: Instant,
    deadline: Instant,
    /// Set once a Pod settles the drain's outcome: the others stop.
    settled: tokio::sync::watch::Sender<bool>,
}

impl Ctx<'_> {
    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Sleeps `d` (never past the deadline); true when the drain was settled meanwhile.
    async fn pause(&self, d: Duration) -> bool {
        let mut rx = self.settled.subscribe();
        if *rx.borrow() {
            return true;
        }
        let d = d.min(self.remaining());
        tokio::select! {
            _ = tokio::time::sleep(d) => *self.settled.borrow(),
            _ = rx.wait_for(|s| *s) => true,
        }
    }

    fn settle(&self) {
        self.settled.send_replace(true);
    }
}

/// One Pod's evictions, readings and end.
struct Trace {
    pod: PodRef,
    evictions: Vec<Eviction>,
    readings: Vec<BudgetReading>,
}

/// Cordons `node` (unless told not to), evicts every Pod kubectl's drain would, and
/// reports the outcome with every answer it rests on. `Err` only when the API did not
/// answer a read the drain needs before its first eviction.
///
/// `client` must not retry 429s itself: build it with [`client_without_retries`]. The
/// node stays cordoned whatever the outcome, as after `kubectl drain` (AKS's
/// `Schedule` behaviour fails the upgrade; its `Cordon` behaviour quarantines the
/// node): [`uncordon`] is the caller's decision.
pub async fn drain(
    client: &kube::Client,
    node: &str,
    opts: &DrainOptions,
) -> Result<DrainReport, DrainError> {
    let start = Instant::now();
    let started = crate::now_rfc3339();
    let cordoned = if opts.cordon {
        cordon::set(client, node, true, opts.request_timeout).await?
    } else {
        false
    };
    let selection = select::select(client, node, opts.flags, opts.request_timeout).await?;
    let mut report = DrainReport {
        node: node.into(),
        started,
        duration: Duration::ZERO,
        options: opts.clone(),
        cordoned,
        evictions: Vec::new(),
        budget_readings: Vec::new(),
        pods: Vec::new(),
        outcome: DrainOutcome::Drained,
        selection,
    };
    let refused = report.selection.refused();
    if !refused.is_empty() {
        report.outcome = DrainOutcome::Unevictable { pods: refused };
        report.duration = start.elapsed();
        return Ok(report);
    }
    let (settled, _) = tokio::sync::watch::channel(false);
    let ctx = Ctx {
        client,
        opts,
        start,
        deadline: start + opts.timeout,
        settled,
    };
    let results = futures::future::join_all(
        report
            .selection
            .evict
            .iter()
            .map(|pod| evict_until_gone(&ctx, pod.clone())),
    )
    .await;
    for (trace, end) in results {
        report.evictions.extend(trace.evictions);
        report.budget_readings.extend(trace.readings);
        report.pods.push(PodResult {
            pod: trace.pod,
            end,
        });
    }
    report.evictions.sort_by_key(|e| e.elapsed_ms);
    report.budget_readings.sort_by_key(|r| r.elapsed_ms);
    report.outcome = outcome(&report.pods, opts.timeout);
    report.duration = start.elapsed();
    Ok(report)
}

/// kubectl's per-Pod eviction loop (`evictPods`), with the early verdict after each
/// 429.
async fn evict_until_gone(ctx: &Ctx<'_>, pod: Pod) -> (Trace, PodEnd) {
    let mut trace = Trace {
        pod: pod_ref(&pod),
        evictions: Vec::new(),
        readings: Vec::new(),
    };
    let end = evict_loop(ctx, pod, &mut trace).await;
    if matches!(end, PodEnd::Blocked { .. } | PodEnd::Failed { .. }) {
        ctx.settle();
    }
    (trace, end)
}

async fn evict_loop(ctx: &Ctx<'_>, mut pod: Pod, trace: &mut Trace) -> PodEnd {
    let mut last_cause = BlockedBy::Unknown {
        checked: vec!["no eviction was answered before the deadline".into()],
    };
    let mut attempt = 0;
    loop {
        if ctx.remaining().is_zero() {
            return PodEnd::TimedOut { by: last_cause };
        }
        attempt += 1;
        let answer = evict::attempt(
            ctx.client,
            &trace.pod,
            ctx.opts.request_timeout.min(ctx.remaining()),
        )
        .await;
        trace.evictions.push(Eviction {
            pod: trace.pod.clone(),
            attempt,
            at: crate::now_rfc3339(),
            elapsed_ms: ctx.elapsed().as_millis() as u64,
            answer: answer.clone(),
        });
        if matches!(answer, Answer::NoAnswer { .. }) && ctx.remaining().is_zero() {
            // Cut short by the drain's deadline, not refused.
            return PodEnd::TimedOut { by: last_cause };
        }
        let deleting = pod.metadata.deletion_timestamp.is_some();
        match evict::next_step(&answer, deleting) {
            evict::Next::Gone => return PodEnd::Gone,
            evict::Next::WaitForDeletion => return wait_deleted(ctx, &trace.pod).await,
            evict::Next::Fail => {
                let by = match answer {
                    Answer::Refused {
                        code,
                        reason,
                        message,
                        ..
                    } => BlockedBy::Refused {
                        code,
                        reason,
                        message,
                    },
                    Answer::NoAnswer { error } => BlockedBy::Unknown {
                        checked: vec![format!(
                            "the eviction got no answer: {error} (a client that retries 429s itself, as kube's does by default, answers only after its retries: see client_without_retries)"
                        )],
                    },
                    Answer::Evicted { .. } => unreachable!("an admitted eviction is waited on"),
                };
                return PodEnd::Failed { by };
            }
            evict::Next::Retry(evict::Retry::TooManyRequests) => {
                match budget_evidence(ctx, &pod, &answer, trace).await {
                    Ok(by) => return PodEnd::Blocked { by },
                    Err(open) => last_cause = open,
                }
            }
            evict::Next::Retry(evict::Retry::NamespaceTerminating) => {
                last_cause = BlockedBy::Unknown {
                    checked: vec![format!(
                        "its namespace is terminating and the Pod is not yet being deleted: {answer:?}"
                    )],
                };
            }
        }
        if ctx.pause(ctx.opts.retry_delay).await {
            return PodEnd::Stopped {
                state: format!("retrying after: {}", describe(&answer)),
            };
        }
        // kubectl reads the Pod again before the next attempt, ignoring errors.
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &trace.pod.namespace);
        if let Ok(Ok(fresh)) =
            tokio::time::timeout(ctx.opts.request_timeout, api.get(&trace.pod.name)).await
        {
            pod = fresh;
        }
    }
}

fn describe(answer: &Answer) -> String {
    match answer {
        Answer::Evicted { .. } => "evicted".into(),
        Answer::Refused {
            code,
            message,
            causes,
            ..
        } => {
            let causes: Vec<_> = causes.iter().map(|c| c.message.as_str()).collect();
            format!("{code} {message} {}", causes.join("; "))
                .trim_end()
                .to_string()
        }
        Answer::NoAnswer { error } => error.clone(),
    }
}

/// After a 429: reads the budget the answer names (or, if it names none, the budgets
/// selecting the Pod) and decides. `Ok` when it blocks for good; `Err` with what is
/// known so far otherwise.
async fn budget_evidence(
    ctx: &Ctx<'_>,
    pod: &Pod,
    answer: &Answer,
    trace: &mut Trace,
) -> Result<BlockedBy, BlockedBy> {
    let said = describe(answer);
    let unknown = |why: String| BlockedBy::Unknown {
        checked: vec![format!("the eviction was answered: {said}"), why],
    };
    let causes = match answer {
        Answer::Refused { causes, .. } => causes.clone(),
        _ => Vec::new(),
    };
    let names =
        budget::names_in_causes(causes.iter().map(|c| (c.kind.as_str(), c.message.as_str())));
    let [name] = names.as_slice() else {
        // Not the Eviction API's budget refusal (it always names its budget): API
        // Priority and Fairness, say. What budgets select the Pod is recorded, but a
        // budget's status does not explain a 429 that does not name it.
        let selecting = match budget::selecting(ctx.client, pod, ctx.opts.request_timeout).await {
            Ok(names) => format!("budgets selecting the Pod: [{}]", names.join(", ")),
            Err(e) => format!("listing the budgets selecting the Pod: {e}"),
        };
        return Err(unknown(format!(
            "the 429 names {} budget(s) ({}); {selecting}",
            names.len(),
            names.join(", ")
        )));
    };
    let reading = budget::read(
        ctx.client,
        &trace.pod.namespace,
        name,
        ctx.opts.request_timeout,
        ctx.elapsed(),
    )
    .await
    .map_err(|e| unknown(format!("reading budget {name}: {e}")))?;
    trace.readings.push(reading.clone());
    let same: Vec<BudgetReading> = trace
        .readings
        .iter()
        .filter(|r| &r.name == name)
        .cloned()
        .collect();
    let budget = |readings: Vec<BudgetReading>| BlockedBy::Budget {
        name: name.clone(),
        namespace: trace.pod.namespace.clone(),
        status: Box::new(reading.clone()),
        readings,
        answer: said.clone(),
    };
    match verdict::decide(&same, ctx.opts.confirm_window) {
        verdict::BudgetVerdict::Blocked(readings) => Ok(budget(readings)),
        // Not settled: if the deadline comes first, the budget is what refused last.
        verdict::BudgetVerdict::Open(_) => Err(budget(same)),
    }
}

/// Polls the Pod until it is gone (404, or a Pod of the same name with another uid),
/// as kubectl's `waitForDelete` does, within the drain's deadline.
async fn wait_deleted(ctx: &Ctx<'_>, pod: &PodRef) -> PodEnd {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace);
    let mut seen = "evicted; not read since".to_string();
    loop {
        let read = tokio::time::timeout(
            ctx.opts.request_timeout.min(ctx.remaining()),
            api.get_opt(&pod.name),
        )
        .await;
        let state = match read {
            Ok(Ok(None)) => return PodEnd::Gone,
            Ok(Ok(Some(p))) if p.metadata.uid.as_deref() != Some(pod.uid.as_str()) => {
                return PodEnd::Gone;
            }
            Ok(Ok(Some(p))) => format!(
                "evicted; still present (deletionTimestamp {}): on a node, the kubelet confirms the deletion once the containers stop",
                p.metadata
                    .deletion_timestamp
                    .map(|t| t.0.to_string())
                    .unwrap_or_else(|| "unset".into())
            ),
            Ok(Err(e)) => {
                return PodEnd::Failed {
                    by: BlockedBy::Unknown {
                        checked: vec![format!("reading the evicted Pod: {e}")],
                    },
                };
            }
            // Cut short by the deadline: what was seen last stands.
            Err(_) if ctx.remaining().is_zero() => seen.clone(),
            Err(_) => format!("{seen}; then a read got no answer"),
        };
        seen = state.clone();
        if ctx.remaining().is_zero() {
            return PodEnd::TimedOut {
                by: BlockedBy::Unknown {
                    checked: vec![state],
                },
            };
        }
        if ctx.pause(ctx.opts.poll_interval).await {
            return PodEnd::Stopped { state };
        }
    }
}
