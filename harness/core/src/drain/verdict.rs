//! The early verdict: whether a budget that refuses an eviction (429) will go on
//! refusing it for the whole drain timeout, decided only from the budget's status as
//! the API reported it, read again across a confirmation window.
//!
//! kubectl (and AKS's drain) retries a 429 every 5 s until the timeout (30 min per node
//! on AKS). That wait ends differently only if `disruptionsAllowed` rises above 0,
//! which needs `currentHealthy` to rise above `desiredHealthy` (or the budget to be
//! edited, which bumps its generation). So the drain is called blocked when, over
//! consecutive readings at least the window apart, the budget was processed
//! (`observedGeneration` >= `generation`), allowed no disruption, had
//! `currentHealthy <= desiredHealthy`, had no eviction in flight, no Pod of its
//! selector that could still become Ready, no Pod it expects that does not exist yet
//! (its controller could create one), and every number stayed the same. Anything else
//! leaves the drain to retry, and says why.

use std::time::Duration;

use super::BudgetReading;

/// Why a reading leaves room for the budget to allow an eviction later; `None` when it
/// does not.
pub fn could_change(r: &BudgetReading) -> Option<String> {
    let generation = r.generation.unwrap_or(0);
    let observed = r.observed_generation.unwrap_or(0);
    if observed < generation {
        return Some(format!(
            "the disruption controller has observed generation {observed} of {generation}"
        ));
    }
    if r.disruptions_allowed > 0 {
        return Some(format!(
            "it allows {} disruption(s) now",
            r.disruptions_allowed
        ));
    }
    if r.current_healthy > r.desired_healthy {
        return Some(format!(
            "currentHealthy {} > desiredHealthy {}: the controller has not caught up",
            r.current_healthy, r.desired_healthy
        ));
    }
    if !r.disrupted_pods.is_empty() {
        return Some(format!(
            "evictions in flight: {}",
            r.disrupted_pods.join(", ")
        ));
    }
    if !r.could_become_healthy.is_empty() {
        return Some(format!(
            "Pods that could still become Ready: {}",
            r.could_become_healthy.join(", ")
        ));
    }
    if (r.selector_pods as i64) < i64::from(r.expected_pods) {
        return Some(format!(
            "it expects {} Pods and {} exist: their controller may create more",
            r.expected_pods, r.selector_pods
        ));
    }
    None
}

/// The numbers that must not move for the verdict to hold.
fn numbers(r: &BudgetReading) -> (Option<i64>, Option<i64>, i32, i32, i32, i32, usize) {
    (
        r.generation,
        r.observed_generation,
        r.expected_pods,
        r.current_healthy,
        r.desired_healthy,
        r.disruptions_allowed,
        r.selector_pods,
    )
}

/// The decision on one budget's readings, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BudgetVerdict {
    /// Blocked for good: the readings (oldest first) that confirm it.
    Blocked(Vec<BudgetReading>),
    /// Not settled: why.
    Open(String),
}

/// Decides from `readings` (one budget, oldest first) whether the budget blocks for
/// good: the last reading leaves no room for change ([`could_change`]), and so did
/// every reading back to one at least `window` older with the same numbers.
pub fn decide(readings: &[BudgetReading], window: Duration) -> BudgetVerdict {
    let Some(last) = readings.last() else {
        return BudgetVerdict::Open("the budget was not read".into());
    };
    if let Some(why) = could_change(last) {
        return BudgetVerdict::Open(why);
    }
    let mut first = readings.len() - 1;
    while first > 0 {
        let prev = &readings[first - 1];
        if could_change(prev).is_some() || numbers(prev) != numbers(last) {
            break;
        }
        first -= 1;
    }
    let held = Duration::from_millis(last.elapsed_ms.saturating_sub(readings[first].elapsed_ms));
    if readings.len() - first >= 2 && held >= window {
        BudgetVerdict::Blocked(readings[first..].to_vec())
    } else {
        BudgetVerdict::Open(format!(
            "unchanged for {held:?} of the {window:?} confirmation window"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(ms: u64, current: i32, desired: i32, allowed: i32) -> BudgetReading {
        BudgetReading {
            name: "web".into(),
            namespace: "ns".into(),
            at: String::new(),
            elapsed_ms: ms,
            generation: Some(1),
            observed_generation: Some(1),
            expected_pods: 3,
            current_healthy: current,
            desired_healthy: desired,
            disruptions_allowed: allowed,
            disrupted_pods: vec![],
            conditions: vec![],
            selector_pods: 3,
            could_become_healthy: vec![],
        }
    }

    const W: Duration = Duration::from_secs(5);

    #[test]
    fn min_available_equal_to_replicas_blocks_once_confirmed() {
        let readings = [r(0, 3, 3, 0), r(5_000, 3, 3, 0)];
        assert_eq!(
            decide(&readings, W),
            BudgetVerdict::Blocked(readings.to_vec())
        );
    }

    #[test]
    fn one_reading_or_a_short_window_is_not_enough() {
        assert!(matches!(
            decide(&[r(0, 3, 3, 0)], W),
            BudgetVerdict::Open(_)
        ));
        assert!(matches!(
            decide(&[r(0, 3, 3, 0), r(4_999, 3, 3, 0)], W),
            BudgetVerdict::Open(_)
        ));
        assert!(matches!(decide(&[], W), BudgetVerdict::Open(_)));
    }

    #[test]
    fn moving_numbers_restart_the_window() {
        // currentHealthy moved (a Pod became Ready, then went): the window restarts at
        // the first reading with today's numbers.
        let readings = [r(0, 2, 2, 0), r(5_000, 3, 3, 0), r(9_000, 3, 3, 0)];
        assert!(matches!(decide(&readings, W), BudgetVerdict::Open(_)));
        let later = [r(0, 2, 2, 0), r(5_000, 3, 3, 0), r(10_000, 3, 3, 0)];
        assert_eq!(
            decide(&later, W),
            BudgetVerdict::Blocked(later[1..].to_vec())
        );
    }

    #[test]
    fn anything_that_could_raise_current_healthy_keeps_the_drain_waiting() {
        let mut pending = r(5_000, 2, 2, 0);
        pending.could_become_healthy = vec!["web-new".into()];
        assert!(matches!(
            decide(&[r(0, 2, 2, 0), pending], W),
            BudgetVerdict::Open(why) if why.contains("web-new")
        ));

        let mut missing = r(5_000, 2, 2, 0);
        missing.selector_pods = 2;
        assert!(matches!(
            decide(&[r(0, 2, 2, 0), missing], W),
            BudgetVerdict::Open(why) if why.contains("expects 3")
        ));

        let mut in_flight = r(5_000, 3, 2, 0);
        in_flight.disrupted_pods = vec!["web-a".into()];
        in_flight.current_healthy = 2;
        assert!(matches!(
            decide(&[r(0, 2, 2, 0), in_flight], W),
            BudgetVerdict::Open(why) if why.contains("in flight")
        ));

        let mut unobserved = r(5_000, 3, 3, 0);
        unobserved.generation = Some(2);
        assert!(matches!(
            decide(&[r(0, 3, 3, 0), unobserved], W),
            BudgetVerdict::Open(why) if why.contains("generation 1 of 2")
        ));
    }

    #[test]
    fn a_budget_that_allows_a_disruption_is_not_blocking() {
        assert!(matches!(
            decide(&[r(0, 3, 3, 0), r(5_000, 3, 2, 1)], W),
            BudgetVerdict::Open(why) if why.contains("allows 1")
        ));
    }
}
