//! Failed-credential limiting per client IP (SPEC `limits`).
//!
//! A fixed window per address: the first failure opens a window of
//! [`FailureLimiter::window`]; once `limit` failures fell inside it, requests
//! from that address that present a credential get 429 with `Retry-After`
//! until the window ends. Memory is bounded by [`MAX_TRACKED`] addresses: when
//! full, expired windows are swept and, failing that, the oldest is evicted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Addresses tracked at once.
pub const MAX_TRACKED: usize = 16_384;

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

/// Counts failed credentials per client address.
#[derive(Debug)]
pub struct FailureLimiter {
    map: Mutex<HashMap<IpAddr, Window>>,
    /// Whether `map` has ever held an entry. Every request with a credential
    /// asks [`Self::blocked`]; until some credential has failed there is
    /// nothing to find, and the answer needs no lock shared by every core.
    used: AtomicBool,
    window: Duration,
    max_tracked: usize,
}

impl FailureLimiter {
    pub fn new(window: Duration) -> Self {
        Self::with_capacity(window, MAX_TRACKED)
    }

    pub fn with_capacity(window: Duration, max_tracked: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            used: AtomicBool::new(false),
            window,
            max_tracked: max_tracked.max(1),
        }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// If `ip` is over `limit` failures in its window: how long until it may
    /// try again (at least one second, as `Retry-After` counts in seconds).
    pub fn blocked(&self, ip: IpAddr, limit: u32) -> Option<Duration> {
        if !self.used.load(Ordering::Acquire) {
            return None;
        }
        let ip = key(ip);
        let map = self.map.lock();
        let w = map.get(&ip)?;
        let elapsed = w.start.elapsed();
        if elapsed >= self.window || w.failures < limit {
            return None;
        }
        Some((self.window - elapsed).max(Duration::from_secs(1)))
    }

    /// Count one failed credential from `ip`.
    pub fn record_failure(&self, ip: IpAddr) {
        self.record(&mut self.map.lock(), key(ip));
    }

    /// Start a slow credential check (a password): unless `ip` is blocked,
    /// count the attempt as a failure at once, under the same lock as the
    /// check, so attempts sent all at once cannot all be checked before the
    /// first failure is counted. Call [`FailureLimiter::forgive`] when the
    /// attempt succeeds (or turns out to be no attempt at all).
    ///
    /// # Errors
    /// How long until `ip` may try again, when it is blocked.
    pub fn begin_attempt(&self, ip: IpAddr, limit: u32) -> Result<(), Duration> {
        let ip = key(ip);
        let mut map = self.map.lock();
        if let Some(w) = map.get(&ip) {
            let elapsed = w.start.elapsed();
            if elapsed < self.window && w.failures >= limit {
                return Err((self.window - elapsed).max(Duration::from_secs(1)));
            }
        }
        self.record(&mut map, ip);
        Ok(())
    }

    /// Take back one failure counted by [`FailureLimiter::begin_attempt`].
    pub fn forgive(&self, ip: IpAddr) {
        if let Some(w) = self.map.lock().get_mut(&key(ip)) {
            w.failures = w.failures.saturating_sub(1);
        }
    }

    fn record(&self, map: &mut HashMap<IpAddr, Window>, ip: IpAddr) {
        // Under the map's lock, before the entry exists: a `blocked` that
        // reads `false` cannot be missing a failure already recorded.
        self.used.store(true, Ordering::Release);
        let now = Instant::now();
        if !map.contains_key(&ip) && map.len() >= self.max_tracked {
            let window = self.window;
            map.retain(|_, w| now.duration_since(w.start) < window);
            if map.len() >= self.max_tracked {
                if let Some(oldest) = map.iter().min_by_key(|(_, w)| w.start).map(|(k, _)| *k) {
                    map.remove(&oldest);
                }
            }
        }
        let w = map.entry(ip).or_insert(Window {
            start: now,
            failures: 0,
        });
        if now.duration_since(w.start) >= self.window {
            *w = Window {
                start: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }

    /// Addresses tracked right now.
    pub fn tracked(&self) -> usize {
        self.map.lock().len()
    }
}

/// The address failures are counted under: an IPv6 client is its /64, since
/// one host usually holds a whole /64 and could otherwise spread guesses
/// over 2^64 addresses.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_after_limit_and_only_that_address() {
        let l = FailureLimiter::new(Duration::from_secs(60));
        for _ in 0..3 {
            assert!(l.blocked(ip("10.0.0.1"), 3).is_none());
            l.record_failure(ip("10.0.0.1"));
        }
        let retry = l.blocked(ip("10.0.0.1"), 3).expect("blocked");
        assert!(retry <= Duration::from_secs(60) && retry >= Duration::from_secs(1));
        assert!(l.blocked(ip("10.0.0.2"), 3).is_none());
    }

    #[test]
    fn an_ipv6_slash_64_counts_as_one_client() {
        let l = FailureLimiter::new(Duration::from_secs(60));
        l.record_failure(ip("2001:db8:1:2::1"));
        l.record_failure(ip("2001:db8:1:2::ffff"));
        assert!(l.blocked(ip("2001:db8:1:2:abcd::9"), 2).is_some());
        assert!(l.blocked(ip("2001:db8:1:3::1"), 2).is_none());
        l.record_failure(ip("::ffff:10.0.0.1"));
        assert!(l.blocked(ip("10.0.0.1"), 1).is_some());
        assert!(l.blocked(ip("10.0.0.2"), 1).is_none());
    }

    #[test]
    fn recovers_after_window() {
        let l = FailureLimiter::new(Duration::from_millis(50));
        l.record_failure(ip("10.0.0.1"));
        assert!(l.blocked(ip("10.0.0.1"), 1).is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(l.blocked(ip("10.0.0.1"), 1).is_none());
    }

    #[test]
    fn attempts_count_before_they_are_checked() {
        let l = FailureLimiter::new(Duration::from_secs(60));
        let a = ip("10.0.0.1");
        assert!(l.begin_attempt(a, 2).is_ok());
        assert!(l.begin_attempt(a, 2).is_ok());
        assert!(l.begin_attempt(a, 2).is_err(), "two attempts in flight");
        l.forgive(a);
        assert!(l.blocked(a, 2).is_none());
        assert!(l.begin_attempt(a, 2).is_ok());
        assert!(l.blocked(a, 2).is_some());
    }

    #[test]
    fn memory_is_bounded() {
        let l = FailureLimiter::with_capacity(Duration::from_secs(60), 100);
        for i in 0..1000u32 {
            l.record_failure(IpAddr::from(i.to_be_bytes()));
        }
        assert_eq!(l.tracked(), 100);
        // The newest address is still tracked.
        assert!(l.blocked(IpAddr::from(999u32.to_be_bytes()), 1).is_some());
    }
}
