//! Bounds on the handshakes a listener has in progress, per source address: the pure
//! bookkeeping behind both front ends' listeners.
//!
//! A handshake in progress costs the server a socket, TLS state and (blocking front end) a
//! thread, for up to the policy's handshake timeout. Without a bound per source, one host
//! opening idle connections faster than they time out holds every slot and starves honest
//! clients. So a listener admits at most [`DEFAULT_MAX_HANDSHAKES_PER_SOURCE`] handshakes
//! in progress from one source — an IPv4 address, or an IPv6 /64 (one site's hosts, which an
//! attacker gets by the billion) — and closes further connections from it at once.
//!
//! No I/O here; the listeners accept, count with `SourceCounts` and close.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How many handshakes a listener's `accept` runs at once by default (both front ends).
pub const DEFAULT_MAX_HANDSHAKES: usize = 1024;

/// How many handshakes one source may have in progress at a listener by default.
pub const DEFAULT_MAX_HANDSHAKES_PER_SOURCE: usize = 64;

/// How often a listener logs the connections it closed over the per-source limit.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Where handshakes come from, for counting: an IPv4 address (IPv4-mapped IPv6 included),
/// or the /64 an IPv6 address is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SourceKey {
    /// One IPv4 address.
    V4(u32),
    /// The first 64 bits of an IPv6 address.
    V6(u64),
}

impl SourceKey {
    /// The source `ip` counts as.
    pub(crate) fn of(ip: IpAddr) -> SourceKey {
        match ip {
            IpAddr::V4(v4) => SourceKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SourceKey::V4(u32::from(v4)),
                None => SourceKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// The handshakes in progress per source, and the refusals not yet logged.
#[derive(Debug)]
pub(crate) struct SourceCounts {
    limit: usize,
    in_progress: HashMap<SourceKey, usize>,
    refused_since_log: u64,
    last_log: Option<Instant>,
}

impl SourceCounts {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            in_progress: HashMap::new(),
            refused_since_log: 0,
            last_log: None,
        }
    }

    /// Changes the limit (at least 1); handshakes already in progress are not affected.
    pub(crate) fn set_limit(&mut self, limit: usize) {
        self.limit = limit.max(1);
    }

    /// Counts a new handshake from `key` if the source is below its limit.
    pub(crate) fn try_start(&mut self, key: SourceKey) -> bool {
        let count = self.in_progress.entry(key).or_insert(0);
        if *count >= self.limit {
            return false;
        }
        *count += 1;
        true
    }

    /// A handshake from `key` ended.
    pub(crate) fn end(&mut self, key: SourceKey) {
        if let Some(count) = self.in_progress.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                self.in_progress.remove(&key);
            }
        }
    }

    /// Records a connection closed over the limit at `now`; returns how many were closed
    /// since the last report when it is time to log again (at most once a second).
    pub(crate) fn refused(&mut self, now: Instant) -> Option<u64> {
        self.refused_since_log += 1;
        let due = self
            .last_log
            .is_none_or(|last| now.saturating_duration_since(last) >= REFUSAL_LOG_INTERVAL);
        if !due {
            return None;
        }
        self.last_log = Some(now);
        Some(std::mem::take(&mut self.refused_since_log))
    }

    /// The handshakes in progress from `key`.
    #[cfg(test)]
    fn in_progress(&self, key: SourceKey) -> usize {
        self.in_progress.get(&key).copied().unwrap_or(0)
    }

    /// The limit per source.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ip: &str) -> SourceKey {
        SourceKey::of(ip.parse().unwrap())
    }

    #[test]
    fn sources_are_addresses_and_ipv6_slash_64s() {
        assert_eq!(key("192.0.2.1"), key("::ffff:192.0.2.1"));
        assert_ne!(key("192.0.2.1"), key("192.0.2.2"));
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }

    #[test]
    fn each_source_gets_its_limit_and_no_more() {
        let mut counts = SourceCounts::new(2);
        let (a, b) = (key("127.0.0.2"), key("127.0.0.1"));
        assert!(counts.try_start(a));
        assert!(counts.try_start(a));
        assert!(!counts.try_start(a), "a third from the same source");
        assert!(counts.try_start(b), "another source is not affected");
        counts.end(a);
        assert_eq!(counts.in_progress(a), 1);
        assert!(counts.try_start(a), "room again once one ended");
        counts.end(a);
        counts.end(a);
        counts.end(a); // more ends than starts change nothing
        assert_eq!(counts.in_progress(a), 0);
        counts.set_limit(0);
        assert_eq!(counts.limit(), 1, "never below one");
    }

    #[test]
    fn refusals_are_logged_at_most_once_a_second() {
        let mut counts = SourceCounts::new(1);
        let t0 = Instant::now();
        assert_eq!(counts.refused(t0), Some(1));
        assert_eq!(counts.refused(t0 + Duration::from_millis(10)), None);
        assert_eq!(counts.refused(t0 + Duration::from_millis(900)), None);
        assert_eq!(counts.refused(t0 + Duration::from_secs(1)), Some(3));
        assert_eq!(counts.refused(t0 + Duration::from_secs(3)), Some(1));
    }
}
