//! Rate limiting of failed user authentications, for a listener's user-authentication
//! step ([`crate::user::step`]): what slows an online password guesser down.
//!
//! - Per source address: a budget of failures ([`FailureLimits::per_address`]) within a
//!   sliding window; once it is spent, that address's attempts are refused at once,
//!   without looking at their credentials, until its oldest failure leaves the window.
//!   An attempt counts from when it is admitted until it succeeds, so attempts made in
//!   parallel cannot outrun the budget. An IPv6 source counts by its /64, which one host
//!   usually holds whole.
//! - Per user name (canonical, whether or not the user exists, so that the pause tells
//!   nothing): a pause before each FAILURE answer, `delay × 2^(n−1)` for the n-th failure
//!   in a row, at most `delay_max`. A pause, never a refusal: failing in a user's name
//!   cannot lock that user out, and a right password is answered at once.
//!
//! Not here: sockets and sleeping (the front ends pause, each in its own way), and what
//! counts as a failure (the exchange decides). Time is an argument, so windows and pauses
//! are tested with a manual clock. Memory is bounded: at most [`MAX_SOURCES`] sources and
//! [`MAX_NAMES`] names are remembered; when full, those whose window has passed go first,
//! then the least recently failed.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::policy::FailureLimits;

/// Source addresses remembered at most.
pub(crate) const MAX_SOURCES: usize = 16_384;
/// User names remembered at most.
pub(crate) const MAX_NAMES: usize = 16_384;

/// Where failures are counted: an IPv4 address, or the first 64 bits of an IPv6 address.
/// An IPv4-mapped IPv6 address counts as its IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4(Ipv4Addr),
    V6Prefix(u64),
}

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Source::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4),
                None => Source::V6Prefix((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// A user name's failures in a row.
#[derive(Debug, Clone, Copy)]
struct Streak {
    failures: u32,
    last: Instant,
}

#[derive(Default)]
struct Tables {
    /// Each source's failures within the window, oldest first (at most `per_address`).
    sources: HashMap<Source, VecDeque<Instant>>,
    names: HashMap<String, Streak>,
}

/// The failure bookkeeping of one listener's platform; shared by its connections.
pub(crate) struct FailureThrottle {
    limits: FailureLimits,
    capacity: (usize, usize),
    tables: Mutex<Tables>,
}

impl std::fmt::Debug for FailureThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureThrottle")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl FailureThrottle {
    pub(crate) fn new(limits: FailureLimits) -> Self {
        Self::with_capacity(limits, MAX_SOURCES, MAX_NAMES)
    }

    fn with_capacity(limits: FailureLimits, sources: usize, names: usize) -> Self {
        Self {
            limits,
            capacity: (sources.max(1), names.max(1)),
            tables: Mutex::default(),
        }
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `source` may try to authenticate at `now`: `Err` with the time until it
    /// may, when its attempts within the window have spent its budget. An admitted attempt
    /// counts against the budget at once, as a failure until [`succeeded`](Self::succeeded)
    /// gives it back: attempts made in parallel cannot outrun the limit, and a client that
    /// hangs up after the challenge has used one.
    pub(crate) fn admit(&self, source: IpAddr, now: Instant) -> Result<(), Duration> {
        let budget = self.limits.per_address as usize;
        if budget == 0 {
            return Ok(());
        }
        let window = self.limits.window;
        let mut tables = self.tables();
        if let Some(attempts) = tables.sources.get_mut(&Source::from(source)) {
            forget_before(attempts, now, window);
            if let (Some(&oldest), true) = (attempts.front(), attempts.len() >= budget) {
                return Err((oldest + window).saturating_duration_since(now));
            }
        }
        self.count(&mut tables, source, now);
        Ok(())
    }

    /// Counts a failure from `source` that no admitted attempt stands for (a client that
    /// broke the exchange before asking to prove anything).
    pub(crate) fn failed_unadmitted(&self, source: IpAddr, now: Instant) {
        if self.limits.per_address > 0 {
            let mut tables = self.tables();
            self.count(&mut tables, source, now);
        }
    }

    /// Counts a failure in the name of `user` (canonical), whether or not it exists, and
    /// returns how long to pause before answering it.
    pub(crate) fn failed_as(&self, user: &str, now: Instant) -> Duration {
        let window = self.limits.window;
        let mut tables = self.tables();
        if !tables.names.contains_key(user) && tables.names.len() >= self.capacity.1 {
            let names = &mut tables.names;
            names.retain(|_, s| within(s.last, now, window));
            if names.len() >= self.capacity.1 {
                evict_oldest(names, |s| Some(s.last));
            }
        }
        let streak = tables.names.entry(user.to_owned()).or_insert(Streak {
            failures: 0,
            last: now,
        });
        if !within(streak.last, now, window) {
            streak.failures = 0;
        }
        streak.failures = streak.failures.saturating_add(1);
        streak.last = now;
        self.pause(streak.failures)
    }

    /// The attempt `source` was admitted for at `admitted` succeeded, in the name of
    /// `user` if it named one: the attempt no longer counts, and the name's run of
    /// failures ends. The source's failures stay: a guesser with an account of its own
    /// must not refill its budget by logging in.
    pub(crate) fn succeeded(&self, source: IpAddr, admitted: Instant, user: Option<&str>) {
        let mut tables = self.tables();
        if let Some(attempts) = tables.sources.get_mut(&Source::from(source)) {
            if let Some(at) = attempts.iter().rposition(|&t| t == admitted) {
                attempts.remove(at);
            }
        }
        if let Some(user) = user {
            tables.names.remove(user);
        }
    }

    /// Adds an attempt at `now` to `source`'s window (making room in a full table).
    fn count(&self, tables: &mut Tables, source: IpAddr, now: Instant) {
        let (window, budget) = (self.limits.window, self.limits.per_address as usize);
        let source = Source::from(source);
        let sources = &mut tables.sources;
        if !sources.contains_key(&source) && sources.len() >= self.capacity.0 {
            sources.retain(|_, f| f.back().is_some_and(|&t| within(t, now, window)));
            if sources.len() >= self.capacity.0 {
                evict_oldest(sources, |f| f.back().copied());
            }
        }
        let attempts = sources.entry(source).or_default();
        forget_before(attempts, now, window);
        attempts.push_back(now);
        while attempts.len() > budget {
            attempts.pop_front();
        }
    }

    /// The pause before answering the `failures`-th failure in a row.
    fn pause(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.limits
            .delay
            .saturating_mul(1u32 << doublings)
            .min(self.limits.delay_max)
    }
}

/// Whether something that happened at `t` is within `window` of `now`.
fn within(t: Instant, now: Instant, window: Duration) -> bool {
    now.saturating_duration_since(t) < window
}

/// Drops the failures that left the window.
fn forget_before(failures: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while failures.front().is_some_and(|&t| !within(t, now, window)) {
        failures.pop_front();
    }
}

/// Removes the entry whose last activity is the oldest.
fn evict_oldest<K: Clone + Eq + std::hash::Hash, V>(
    table: &mut HashMap<K, V>,
    last: impl Fn(&V) -> Option<Instant>,
) {
    if let Some(key) = table
        .iter()
        .min_by_key(|(_, v)| last(v))
        .map(|(k, _)| k.clone())
    {
        table.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn limits(per_address: u32) -> FailureLimits {
        FailureLimits {
            per_address,
            window: 60 * SECOND,
            delay: SECOND,
            delay_max: 8 * SECOND,
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// A failed attempt: admitted (which counts it), never given back.
    fn fail(throttle: &FailureThrottle, from: IpAddr, now: Instant) -> Result<(), Duration> {
        throttle.admit(from, now)
    }

    #[test]
    fn an_address_that_spent_its_failures_waits_until_the_window_slides() {
        let throttle = FailureThrottle::new(limits(3));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let a = ip("192.0.2.1");
        for (i, s) in [0, 10, 20].into_iter().enumerate() {
            assert_eq!(fail(&throttle, a, at(s)), Ok(()), "attempt {i}");
        }
        // The fourth attempt is refused until the first failure is 60 s old.
        assert_eq!(throttle.admit(a, at(20)), Err(40 * SECOND));
        assert_eq!(throttle.admit(a, at(59)), Err(SECOND));
        assert_eq!(fail(&throttle, a, at(60)), Ok(()));
        // That failure spends the budget again, until the second one leaves.
        assert_eq!(throttle.admit(a, at(61)), Err(9 * SECOND));
        assert_eq!(
            throttle.admit(ip("192.0.2.2"), at(61)),
            Ok(()),
            "others may try"
        );
        // A success gives its own attempt back, not the failures before it.
        assert_eq!(throttle.admit(a, at(70)), Ok(()));
        assert!(throttle.admit(a, at(70)).is_err());
        throttle.succeeded(a, at(70), Some("alice@EXAMPLE.TEST"));
        assert_eq!(throttle.admit(a, at(71)), Ok(()));
        assert_eq!(throttle.admit(a, at(71)), Err(9 * SECOND));
    }

    /// Attempts count when they start: a guesser that opens many connections at once gets
    /// no more guesses than one that tries in turn.
    #[test]
    fn attempts_in_parallel_cannot_outrun_the_budget() {
        let throttle = FailureThrottle::new(limits(3));
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        let admitted = (0..10).filter(|_| throttle.admit(a, t0).is_ok()).count();
        assert_eq!(admitted, 3);
        // Failures outside an admitted attempt count too.
        let b = ip("192.0.2.2");
        for _ in 0..3 {
            throttle.failed_unadmitted(b, t0);
        }
        assert!(throttle.admit(b, t0).is_err());
        // With no limit, everything is admitted and nothing is kept.
        let open = FailureThrottle::new(limits(0));
        assert!((0..100).all(|_| open.admit(a, t0).is_ok()));
        open.failed_unadmitted(a, t0);
        assert!(open.tables().sources.is_empty());
    }

    #[test]
    fn ipv6_sources_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        let throttle = FailureThrottle::new(limits(2));
        let t0 = Instant::now();
        fail(&throttle, ip("2001:db8:1:2::1"), t0).unwrap();
        fail(&throttle, ip("2001:db8:1:2:ffff::9"), t0).unwrap();
        assert!(throttle.admit(ip("2001:db8:1:2::77"), t0).is_err());
        assert_eq!(throttle.admit(ip("2001:db8:1:3::1"), t0), Ok(()));
        fail(&throttle, ip("::ffff:192.0.2.7"), t0).unwrap();
        fail(&throttle, ip("192.0.2.7"), t0).unwrap();
        assert!(throttle.admit(ip("192.0.2.7"), t0).is_err());
    }

    #[test]
    fn a_user_names_failures_in_a_row_double_the_pause_up_to_the_maximum() {
        let throttle = FailureThrottle::new(limits(0));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let pauses: Vec<u64> = (0..6)
            .map(|i| throttle.failed_as("alice@EXAMPLE.TEST", at(i)).as_secs())
            .collect();
        assert_eq!(pauses, [1, 2, 4, 8, 8, 8]);
        // Another name has its own run.
        assert_eq!(throttle.failed_as("bob@EXAMPLE.TEST", at(6)), SECOND);
        // A success ends the run; so does a window without failures.
        throttle.succeeded(ip("192.0.2.1"), at(7), Some("alice@EXAMPLE.TEST"));
        assert_eq!(throttle.failed_as("alice@EXAMPLE.TEST", at(7)), SECOND);
        assert_eq!(
            throttle.failed_as("bob@EXAMPLE.TEST", at(6 + 59)),
            2 * SECOND
        );
        assert_eq!(
            throttle.failed_as("bob@EXAMPLE.TEST", at(6 + 59 + 60)),
            SECOND
        );
        // A pause is never a refusal: the address limit is off here, so every attempt is
        // admitted however many failures the name has.
        assert_eq!(throttle.admit(ip("192.0.2.1"), at(200)), Ok(()));
    }

    #[test]
    fn no_delay_means_no_pause_and_huge_runs_do_not_overflow() {
        let mut l = limits(0);
        l.delay = Duration::ZERO;
        let throttle = FailureThrottle::new(l);
        assert_eq!(throttle.failed_as("a@B", Instant::now()), Duration::ZERO);
        let throttle = FailureThrottle::new(limits(0));
        assert_eq!(throttle.pause(u32::MAX), 8 * SECOND);
        assert_eq!(throttle.pause(40), 8 * SECOND);
    }

    #[test]
    fn the_tables_are_bounded_and_forget_the_oldest_first() {
        let throttle = FailureThrottle::with_capacity(limits(1), 3, 2);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        for (i, s) in [0, 1, 2].into_iter().enumerate() {
            let from = IpAddr::V4(Ipv4Addr::new(192, 0, 2, i as u8));
            fail(&throttle, from, at(s)).unwrap();
            throttle.failed_as(&format!("user{i}@X"), at(s));
        }
        assert_eq!(throttle.tables().sources.len(), 3);
        // Full: a new source pushes out the least recently failed one (192.0.2.0).
        fail(&throttle, ip("192.0.2.9"), at(3)).unwrap();
        assert_eq!(throttle.tables().sources.len(), 3);
        assert!(throttle.admit(ip("192.0.2.1"), at(3)).is_err());
        assert_eq!(throttle.admit(ip("192.0.2.0"), at(3)), Ok(()));
        // Names too: user2 pushed out user0, the least recently failed.
        let names = throttle.tables().names.keys().cloned().collect::<Vec<_>>();
        assert!(!names.contains(&"user0@X".to_string()), "{names:?}");
        assert_eq!(names.len(), 2);
        // Entries whose window has passed go before any live one.
        throttle.failed_as("user2@X", at(100));
        throttle.failed_as("user3@X", at(100));
        fail(&throttle, ip("192.0.2.10"), at(100)).unwrap();
        let tables = throttle.tables();
        assert_eq!(tables.sources.len(), 1, "only the live source is left");
        assert!(tables.sources.contains_key(&Source::from(ip("192.0.2.10"))));
        assert!(tables.names.contains_key("user2@X") && tables.names.contains_key("user3@X"));
    }
}
