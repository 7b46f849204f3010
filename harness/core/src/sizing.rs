//! Captured node sizes on a rehearsal's kind nodes.
//!
//! A production node has, say, 8 CPUs; a kind node on a 2-core machine reports 2. Left
//! as they are, Pods that fit every production node would not fit a kind node, and a
//! drain would report them unschedulable when AKS would not. So a rehearsal scales
//! both sides by the same factor per resource: each node's allocatable becomes the
//! captured allocatable times the factor (the kubelet reserves the rest), and each
//! Pod's requests are scaled by it when the Pod is admitted. A Pod then fits a kind
//! node exactly when it fits the production node it stands for, and the same Pods that
//! do not fit do not fit. The factor is the largest that lets every pool's nodes fit in
//! what one kind node has, never above 1; limits are left alone (they decide nothing
//! about placement, and scaled down they could kill a real process).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A Kubernetes quantity as a number (`100m` is 0.1, `4Gi` is 4·2³⁰, `16` is 16).
pub fn quantity(q: &str) -> f64 {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+' || c == 'e'))
        .unwrap_or(q.len());
    // `e` is a decimal exponent only when digits follow it (`1e3`); `E` is exa.
    let (num, suffix) = q.split_at(split);
    let base: f64 = num.parse().unwrap_or(0.0);
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => 1.0,
    };
    base * factor
}

/// CPUs and memory: a node's, a pool's or a Pod's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

/// What a kind worker keeps for what every node runs besides the twin's Pods (the
/// network plugin, kube-proxy, a CoreDNS replica): a production node's allocatable has
/// its own system Pods' share taken already, so this comes on top of the scaled size.
pub const HEADROOM: Resources = Resources {
    cpu_millis: 250,
    memory_bytes: 512 * 1024 * 1024,
};

/// The factor per resource that a rehearsal scales sizes by.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scale {
    pub cpu: f64,
    pub memory: f64,
}

impl Default for Scale {
    fn default() -> Scale {
        Scale {
            cpu: 1.0,
            memory: 1.0,
        }
    }
}

impl Scale {
    /// The largest factors (at most 1) with which every pool's allocatable, scaled,
    /// plus [`HEADROOM`] fits in one kind node's `capacity`.
    pub fn to_fit(pools: &[Resources], capacity: Resources) -> Scale {
        let factor = |have: u64, headroom: u64, want: fn(&Resources) -> u64| {
            let room = have.saturating_sub(headroom) as f64;
            pools
                .iter()
                .map(want)
                .filter(|&w| w > 0)
                .map(|w| room / w as f64)
                .fold(1.0f64, f64::min)
        };
        Scale {
            cpu: factor(capacity.cpu_millis, HEADROOM.cpu_millis, |r| r.cpu_millis),
            memory: factor(capacity.memory_bytes, HEADROOM.memory_bytes, |r| {
                r.memory_bytes
            }),
        }
    }

    pub fn is_identity(&self) -> bool {
        self.cpu >= 1.0 && self.memory >= 1.0
    }

    /// What a kind node of `capacity` reserves (`--system-reserved`) so that its
    /// allocatable is the `captured` allocatable scaled, plus [`HEADROOM`]; `None` for a
    /// resource the capture did not size.
    pub fn reserved(&self, captured: Resources, capacity: Resources) -> Resources {
        let keep = |c: u64, f: f64, h: u64, have: u64| {
            if c == 0 {
                return 0;
            }
            // (A hair over, so 7820 × 1750/7820 is 1750, not 1749.)
            let wanted = (c as f64 * f + 1e-6).floor() as u64 + h;
            have.saturating_sub(wanted)
        };
        Resources {
            cpu_millis: keep(
                captured.cpu_millis,
                self.cpu,
                HEADROOM.cpu_millis,
                capacity.cpu_millis,
            ),
            memory_bytes: keep(
                captured.memory_bytes,
                self.memory,
                HEADROOM.memory_bytes,
                capacity.memory_bytes,
            ),
        }
    }

    /// A container's requests scaled, as its new `resources.requests` and the change in
    /// words; `None` when it requests nothing this scale changes.
    pub fn requests(&self, container: &Value) -> Option<(Value, String)> {
        let requests = container["resources"]["requests"].as_object()?;
        let mut out = requests.clone();
        let mut said = Vec::new();
        for (key, f) in [("cpu", self.cpu), ("memory", self.memory)] {
            if f >= 1.0 {
                continue;
            }
            let Some(q) = requests.get(key).and_then(Value::as_str) else {
                continue;
            };
            let scaled = match key {
                "cpu" => format!("{}m", (quantity(q) * 1000.0 * f).ceil() as u64),
                _ => format!("{}", (quantity(q) * f).ceil() as u64),
            };
            said.push(format!("{key} {q} → {scaled}"));
            out.insert(key.into(), json!(scaled));
        }
        if said.is_empty() {
            return None;
        }
        Some((
            Value::Object(out),
            format!(
                "requests scaled to the kind nodes' size: {}",
                said.join(", ")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GI: u64 = 1024 * 1024 * 1024;

    #[test]
    fn quantities_read_as_kubernetes_writes_them() {
        assert!(quantity("3800m") < quantity("4"));
        assert!(quantity("1Gi") > quantity("1G"));
        assert_eq!(quantity("110"), 110.0);
        assert_eq!(quantity("1e3"), 1000.0);
        assert_eq!(quantity("250m"), 0.25);
    }

    #[test]
    fn the_factor_fits_the_largest_pool_in_one_kind_node() {
        let machine = Resources {
            cpu_millis: 2000,
            memory_bytes: 24 * GI,
        };
        let pools = [
            Resources {
                cpu_millis: 1900,
                memory_bytes: 5 * GI,
            },
            Resources {
                cpu_millis: 7820,
                memory_bytes: 28 * GI,
            },
        ];
        let s = Scale::to_fit(&pools, machine);
        assert!((s.cpu - 1750.0 / 7820.0).abs() < 1e-9, "{s:?}");
        assert!(s.memory < 1.0 && s.memory > 0.8, "{s:?}");
        // Each pool's node keeps the captured size scaled, plus the headroom.
        let r = s.reserved(pools[1], machine);
        assert_eq!(
            r.cpu_millis, 0,
            "the largest pool's node is the whole kind node"
        );
        let small = s.reserved(pools[0], machine);
        assert!(small.cpu_millis > r.cpu_millis);
        // Smaller than the machine: nothing scales.
        let tiny = [Resources {
            cpu_millis: 1000,
            memory_bytes: GI,
        }];
        assert!(Scale::to_fit(&tiny, machine).is_identity());
    }

    #[test]
    fn requests_scale_and_a_pod_fits_exactly_when_it_fit_the_captured_node() {
        let s = Scale {
            cpu: 0.25,
            memory: 1.0,
        };
        let c = json!({"resources": {"requests": {"cpu": "1500m", "memory": "1Gi"}, "limits": {"cpu": "2"}}});
        let (requests, said) = s.requests(&c).unwrap();
        assert_eq!(requests, json!({"cpu": "375m", "memory": "1Gi"}));
        assert!(said.contains("cpu 1500m → 375m"), "{said}");
        assert!(s.requests(&json!({"name": "x"})).is_none());
        assert!(
            s.requests(&json!({"resources": {"requests": {"memory": "1Gi"}}}))
                .is_none()
        );
        // 8-CPU nodes on 2-CPU kind nodes: 6 CPUs fit (1.5 scaled, under 2 - headroom
        // scaled node of 2000 - 250 = 1750: 8000 x 0.21875), 9 CPUs do not.
        let s = Scale::to_fit(
            &[Resources {
                cpu_millis: 8000,
                memory_bytes: 0,
            }],
            Resources {
                cpu_millis: 2000,
                memory_bytes: 0,
            },
        );
        let node = (8000.0 * s.cpu + 1e-6).floor();
        let fits = |cpu: &str| {
            let (r, _) = s
                .requests(&json!({"resources": {"requests": {"cpu": cpu}}}))
                .unwrap();
            quantity(r["cpu"].as_str().unwrap()) * 1000.0 <= node
        };
        assert!(fits("6"));
        assert!(fits("7900m"));
        assert!(!fits("9"));
    }
}
