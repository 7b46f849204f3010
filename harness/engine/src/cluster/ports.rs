//! Loopback ports for local control planes.
//!
//! A port can be chosen but not reserved: a component binds it a moment after it was
//! picked, and any other listener may take it in between. Three things keep that
//! window small and harmless:
//!
//! * ports come from outside the kernel's ephemeral range, where neither outgoing
//!   connections (every apiserver holds many to its etcd) nor `bind(port 0)` listeners
//!   (the webhook servers, other tools) ever land;
//! * a process-wide registry never hands out a port again while a lease holds it, so
//!   control planes started side by side in one process cannot pick the same port;
//! * what still clashes (another process binding the same port) is cured by starting
//!   again on fresh ports (see `LocalCluster::start`).

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};
use std::ops::RangeInclusive;
use std::sync::{Mutex, MutexGuard};

use rand::Rng;

use crate::errors::ClusterError;

/// Below this, ports belong to well-known services more often than not.
const LOWEST: u16 = 10_000;

/// A range smaller than this is not worth picking from (too easy to exhaust).
const MIN_RANGE: u32 = 1_000;

/// Candidates tried per port before giving up.
const TRIES_PER_PORT: usize = 200;

/// Ports leased by this process and not yet released.
static LEASED: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

fn leased() -> MutexGuard<'static, BTreeSet<u16>> {
    // A panic while holding the lock leaves a set that is still a valid set.
    LEASED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Loopback ports that this process hands out to no one else until dropped.
#[derive(Debug, Default)]
pub struct PortLease {
    ports: Vec<u16>,
}

impl PortLease {
    /// `n` distinct ports, each free a moment ago and leased to no one else.
    pub fn new(n: usize) -> Result<PortLease, ClusterError> {
        let mut lease = PortLease::default();
        // Hold every probe until all are chosen: the ports are then distinct and were
        // all free at one instant.
        let mut probes = Vec::with_capacity(n);
        for _ in 0..n {
            let (port, probe) = take_one()?;
            probes.push(probe);
            lease.ports.push(port);
        }
        Ok(lease)
    }

    /// The leased ports, in the order they were taken.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// Replaces `old` (released) with a fresh port, e.g. after another process took
    /// `old`. The fresh port is taken before `old` is released, so it differs.
    pub fn replace(&mut self, old: u16) -> Result<u16, ClusterError> {
        let (port, _probe) = take_one()?;
        self.ports.push(port);
        self.release(old);
        Ok(port)
    }

    /// Keeps the ports leased for the rest of the process (for ports handed to
    /// callers that hold no lease, e.g. `Ports::free`).
    pub fn keep_forever(mut self) {
        self.ports.clear();
    }

    fn release(&mut self, port: u16) {
        if let Some(i) = self.ports.iter().position(|p| *p == port) {
            self.ports.remove(i);
            leased().remove(&port);
        }
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        let mut set = leased();
        for p in &self.ports {
            set.remove(p);
        }
    }
}

/// One fresh port, registered, with the listener that proved it free.
fn take_one() -> Result<(u16, TcpListener), ClusterError> {
    let ranges = candidate_ranges(ephemeral_range());
    if ranges.is_empty() {
        return take_any();
    }
    let mut rng = rand::rng();
    for _ in 0..TRIES_PER_PORT {
        let port = pick(&ranges, rng.random_range(0..total(&ranges)));
        if let Some(probe) = claim(port) {
            return Ok((port, probe));
        }
    }
    Err(ClusterError::io(
        "finding a free port on",
        "127.0.0.1",
        std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("{TRIES_PER_PORT} candidates outside the ephemeral range were all taken"),
        ),
    ))
}

/// Registers `port` and proves it free by listening on it; `None` (and nothing
/// registered) when this process leased it already or anyone listens on it.
fn claim(port: u16) -> Option<TcpListener> {
    if !leased().insert(port) {
        return None;
    }
    let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).ok();
    if probe.is_none() {
        leased().remove(&port);
    }
    probe
}

/// Without room outside the ephemeral range: a port the kernel picks, registered.
fn take_any() -> Result<(u16, TcpListener), ClusterError> {
    loop {
        let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| ClusterError::io("finding a free port on", "127.0.0.1", e))?;
        let port = probe
            .local_addr()
            .map_err(|e| ClusterError::io("finding a free port on", "127.0.0.1", e))?
            .port();
        // The kernel may hand out a port this process leased and released the probe of.
        if leased().insert(port) {
            return Ok((port, probe));
        }
    }
}

/// The kernel's ephemeral port range (`net.ipv4.ip_local_port_range`), Linux's default
/// when it cannot be read.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| parse_range(&s))
        .unwrap_or((32_768, 60_999))
}

fn parse_range(text: &str) -> Option<(u16, u16)> {
    let mut it = text.split_whitespace().map(str::parse::<u16>);
    match (it.next()?, it.next()?) {
        (Ok(lo), Ok(hi)) if lo <= hi => Some((lo, hi)),
        _ => None,
    }
}

/// `LOWEST..=65535` without the ephemeral range, leaving out pieces too small to use.
fn candidate_ranges((lo, hi): (u16, u16)) -> Vec<RangeInclusive<u16>> {
    let mut out = Vec::new();
    if lo > LOWEST {
        out.push(LOWEST..=lo - 1);
    }
    if hi < u16::MAX {
        out.push(hi.max(LOWEST - 1) + 1..=u16::MAX);
    }
    out.retain(|r| len(r) >= MIN_RANGE);
    out
}

fn len(r: &RangeInclusive<u16>) -> u32 {
    u32::from(*r.end()) - u32::from(*r.start()) + 1
}

fn total(ranges: &[RangeInclusive<u16>]) -> u32 {
    ranges.iter().map(len).sum()
}

/// The `i`-th port of `ranges` taken one after the other.
fn pick(ranges: &[RangeInclusive<u16>], mut i: u32) -> u16 {
    for r in ranges {
        if i < len(r) {
            return (u32::from(*r.start()) + i) as u16;
        }
        i -= len(r);
    }
    unreachable!("index below the total length")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_avoid_the_ephemeral_range() {
        assert_eq!(
            candidate_ranges((32_768, 60_999)),
            vec![10_000..=32_767, 61_000..=65_535]
        );
        // A range reaching the top leaves one piece; one covering everything, none.
        assert_eq!(candidate_ranges((40_000, 65_535)), vec![10_000..=39_999]);
        assert_eq!(candidate_ranges((1_024, 65_535)), vec![]);
        // Pieces too small to pick from are left out.
        assert_eq!(candidate_ranges((10_500, 65_000)), vec![]);
        assert_eq!(parse_range("32768\t60999\n"), Some((32_768, 60_999)));
        assert_eq!(parse_range("nonsense"), None);
    }

    #[test]
    fn pick_walks_the_ranges_in_order() {
        let r = vec![10..=19, 100..=104];
        assert_eq!(total(&r), 15);
        assert_eq!(pick(&r, 0), 10);
        assert_eq!(pick(&r, 9), 19);
        assert_eq!(pick(&r, 10), 100);
        assert_eq!(pick(&r, 14), 104);
    }

    #[test]
    fn leases_are_distinct_outside_the_ephemeral_range_and_released_on_drop() {
        let (lo, hi) = ephemeral_range();
        let a = PortLease::new(4).unwrap();
        let b = PortLease::new(4).unwrap();
        let all: BTreeSet<u16> = a.ports().iter().chain(b.ports()).copied().collect();
        assert_eq!(all.len(), 8, "{a:?} {b:?}");
        if !candidate_ranges((lo, hi)).is_empty() {
            assert!(all.iter().all(|p| *p < lo || *p > hi), "{all:?}");
        }
        let first = a.ports()[0];
        assert!(leased().contains(&first));
        drop(a);
        assert!(!leased().contains(&first));
        assert!(leased().is_superset(&b.ports().iter().copied().collect()));
    }

    #[test]
    fn a_port_leased_or_listened_on_is_never_handed_out() {
        let busy = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = busy.local_addr().unwrap().port();
        assert!(claim(port).is_none());
        assert!(
            !leased().contains(&port),
            "a failed claim registers nothing"
        );
        drop(busy);
        let probe = claim(port).expect("free now");
        drop(probe);
        assert!(claim(port).is_none(), "leased already");
        leased().remove(&port);
    }

    #[test]
    fn a_replacement_differs_and_the_old_port_is_released() {
        let mut lease = PortLease::new(1).unwrap();
        let old = lease.ports()[0];
        let fresh = lease.replace(old).unwrap();
        assert_ne!(fresh, old);
        assert_eq!(lease.ports(), &[fresh]);
        assert!(!leased().contains(&old));
        assert!(leased().contains(&fresh));
    }
}
