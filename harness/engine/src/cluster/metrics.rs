//! The controller manager's own account of its garbage collector: its work queues,
//! from its `/metrics` (local control planes, on loopback), and the log lines that say
//! whether its informers synced.

pub use preflight_core::gc::{GC_PROCEEDING, GC_SYNCED, GC_WAITING};

/// Whether the garbage collector collects, by the last of its start-up lines in the
/// controller manager's log: waiting for its informers (no, not yet), synced or
/// proceeding (yes); `None` when the log has none of them.
pub fn gc_collecting(log: &str) -> Option<bool> {
    log.lines().rev().find_map(|l| {
        if l.contains(GC_PROCEEDING) || l.contains(GC_SYNCED) {
            Some(true)
        } else if l.contains(GC_WAITING) {
            Some(false)
        } else {
            None
        }
    })
}

/// The controller manager's garbage-collector work queues, read from its `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcQueues {
    pub attempt_to_delete: u64,
    pub attempt_to_orphan: u64,
    pub graph_changes: u64,
}

impl GcQueues {
    pub fn idle(&self) -> bool {
        self.attempt_to_delete == 0 && self.attempt_to_orphan == 0 && self.graph_changes == 0
    }

    /// Reads `workqueue_depth{name="garbage_collector_*"}` from Prometheus text;
    /// `None` when the garbage collector's queues are not there (not started yet).
    pub fn parse(metrics: &str) -> Option<GcQueues> {
        let depth = |queue: &str| -> Option<u64> {
            let key = format!("workqueue_depth{{name=\"{queue}\"}}");
            metrics.lines().find_map(|l| {
                let rest = l.strip_prefix(&key)?;
                rest.trim().parse::<f64>().ok().map(|v| v as u64)
            })
        };
        Some(GcQueues {
            attempt_to_delete: depth("garbage_collector_attempt_to_delete")?,
            attempt_to_orphan: depth("garbage_collector_attempt_to_orphan")?,
            graph_changes: depth("garbage_collector_graph_changes")?,
        })
    }
}

/// Where to read the controller manager's `/metrics`: on loopback (local control
/// planes), or inside a kind node, whose controller manager listens on the node's own
/// loopback (`docker exec` of the node's curl, see [`NODE_METRICS`]).
#[derive(Clone, Debug)]
pub enum GcMetrics {
    Url(String),
    Node(String),
}

/// Reads the controller manager's `/metrics` inside a kubeadm node. Its authorizer asks
/// the API server about every other caller, which kubeadm's RBAC does not let it do;
/// `system:masters` it allows without asking. So the client is the cluster's own
/// `system:masters` certificate (`super-admin.conf` from 1.29, `admin.conf` before),
/// written to a temporary directory in the node for the one call and removed after:
/// the key never leaves the node.
const NODE_METRICS: &str = r#"f=/etc/kubernetes/super-admin.conf; [ -f "$f" ] || f=/etc/kubernetes/admin.conf
d=$(mktemp -d); trap 'rm -rf "$d"' EXIT
sed -n 's/^ *client-certificate-data: *//p' "$f" | base64 -d >"$d/c"
sed -n 's/^ *client-key-data: *//p' "$f" | base64 -d >"$d/k"
curl -sfk --max-time 2 --cert "$d/c" --key "$d/k" https://127.0.0.1:10257/metrics"#;

/// The bound on one read of the metrics through a node.
const NODE_READ: std::time::Duration = std::time::Duration::from_secs(5);

impl GcMetrics {
    /// The controller manager's metrics text, or `None` when it does not answer.
    pub async fn text(&self, http: &reqwest::Client) -> Option<String> {
        match self {
            GcMetrics::Url(url) => http.get(url).send().await.ok()?.text().await.ok(),
            GcMetrics::Node(node) => {
                let mut cmd = tokio::process::Command::new("docker");
                cmd.args(["exec", node, "sh", "-c", NODE_METRICS]);
                let out = crate::command::run(cmd, NODE_READ).await.ok()?;
                String::from_utf8(out.stdout).ok()
            }
        }
    }

    pub async fn queues(&self, http: &reqwest::Client) -> Option<GcQueues> {
        GcQueues::parse(&self.text(http).await?)
    }
}

/// An HTTP client for a local control plane's own endpoints on loopback (etcd's
/// `/health`, the controller manager's `/healthz` and `/metrics`): never through a proxy
/// (`HTTP_PROXY` and friends are for the way out, and a proxy cannot reach this
/// machine's loopback), self-signed serving certificates accepted, 2 s per request.
pub fn loopback_http() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .tls_danger_accept_invalid_certs(true)
        .timeout(std::time::Duration::from_secs(2))
        .build()
}

/// All of the controller manager's work queues at one moment: their summed depth and
/// how many items were ever added to any of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControllerWork {
    pub depth: u64,
    pub adds: u64,
}

impl ControllerWork {
    /// `None` until the garbage collector's queues exist (its controller started).
    pub fn parse(metrics: &str) -> Option<ControllerWork> {
        GcQueues::parse(metrics)?;
        let sum = |metric: &str| -> u64 {
            metrics
                .lines()
                .filter_map(|l| {
                    let rest = l.strip_prefix(metric)?.strip_prefix("{name=\"")?;
                    let (_, value) = rest.split_once("} ")?;
                    value.trim().parse::<f64>().ok().map(|v| v as u64)
                })
                .sum()
        };
        Some(ControllerWork {
            depth: sum("workqueue_depth"),
            adds: sum("workqueue_adds_total"),
        })
    }
}

impl GcMetrics {
    /// Waits until the controllers have nothing left to do: every work queue empty
    /// and nothing added to any for two reads in a row, 500 ms apart (a Deployment's
    /// ReplicaSet and Pods are created by then; after a restart, every informer has
    /// synced and its first pass is done). `false` when `deadline` passed first.
    pub async fn wait_idle(&self, deadline: std::time::Duration) -> bool {
        let Ok(http) = loopback_http() else {
            return false;
        };
        let end = std::time::Instant::now() + deadline;
        let mut last: Option<ControllerWork> = None;
        let mut still = 0;
        while std::time::Instant::now() < end {
            let now = self
                .text(&http)
                .await
                .and_then(|t| ControllerWork::parse(&t));
            match (&last, &now) {
                (Some(a), Some(b)) if b.depth == 0 && a.adds == b.adds => still += 1,
                _ => still = 0,
            }
            if still >= 2 {
                return true;
            }
            last = now;
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_start_up_line_says_whether_the_collector_collects() {
        let waiting =
            "I1130 shared_informer.go:313] Waiting for caches to sync for garbage collector";
        let proceeding = "I1130 garbagecollector.go:157] Proceeding to collect garbage";
        assert_eq!(gc_collecting("nothing here"), None);
        assert_eq!(gc_collecting(waiting), Some(false));
        assert_eq!(
            gc_collecting(&format!("{waiting}\n{proceeding}\nother")),
            Some(true)
        );
        assert_eq!(
            gc_collecting(&format!("{proceeding}\n{waiting}")),
            Some(false)
        );
    }

    #[test]
    fn the_garbage_collectors_queues_are_read_from_its_metrics() {
        let text = "# HELP workqueue_depth [STABLE] Current depth of workqueue\n# TYPE workqueue_depth gauge\nworkqueue_depth{name=\"deployment\"} 4\nworkqueue_depth{name=\"garbage_collector_attempt_to_delete\"} 2\nworkqueue_depth{name=\"garbage_collector_attempt_to_orphan\"} 0\nworkqueue_depth{name=\"garbage_collector_graph_changes\"} 0\n";
        let q = GcQueues::parse(text).unwrap();
        assert_eq!(q.attempt_to_delete, 2);
        assert!(!q.idle());
        let idle = text.replace("attempt_to_delete\"} 2", "attempt_to_delete\"} 0");
        assert!(GcQueues::parse(&idle).unwrap().idle());
        assert_eq!(
            GcQueues::parse("workqueue_depth{name=\"deployment\"} 0\n"),
            None
        );
    }

    #[test]
    fn the_controllers_work_sums_every_queue() {
        let text = "workqueue_adds_total{name=\"deployment\"} 7\nworkqueue_adds_total{name=\"replicaset\"} 5\nworkqueue_depth{name=\"deployment\"} 1\nworkqueue_depth{name=\"replicaset\"} 0\nworkqueue_depth{name=\"garbage_collector_attempt_to_delete\"} 0\nworkqueue_depth{name=\"garbage_collector_attempt_to_orphan\"} 0\nworkqueue_depth{name=\"garbage_collector_graph_changes\"} 2\n";
        assert_eq!(
            ControllerWork::parse(text),
            Some(ControllerWork { depth: 3, adds: 12 })
        );
        assert_eq!(
            ControllerWork::parse("workqueue_adds_total{name=\"deployment\"} 7\n"),
            None,
            "not before the garbage collector runs"
        );
    }
}
