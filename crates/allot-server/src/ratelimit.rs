//! The per-key rate limit (`allot serve --rate-limit N`, `N/s` or `N/min`; off by default): each
//! key may make `N` requests per second (or minute), in bursts of up to `N`, counted on this node;
//! past it the request gets `429 Too Many Requests` with `Retry-After` (whole seconds), which the
//! OFREP providers honour (they serve code defaults until then without calling). `/metrics` and
//! the OpenAPI document are not counted (a scraper must not starve the evaluations of its key).
//! The limiter is governor's GCRA, keyed by key id, so its memory is bounded by the key table.

use arc_swap::ArcSwapOption;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// A limit: `requests` per second, or per minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per period (also the largest burst).
    pub requests: NonZeroU32,
    /// The period is a minute (else a second).
    pub per_minute: bool,
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.requests, if self.per_minute { "min" } else { "s" })
    }
}

impl std::str::FromStr for RateLimit {
    type Err = String;
    fn from_str(s: &str) -> Result<RateLimit, String> {
        let (n, per_minute) = match s.trim().split_once('/') {
            None => (s.trim(), false),
            Some((n, p)) => match p.trim() {
                "s" => (n, false),
                "min" => (n, true),
                p => return Err(format!("`{p}`: the period is s or min (e.g. 100/s, 6000/min)")),
            },
        };
        let requests = n.trim().parse().map_err(|_| format!("`{n}`: expected a whole number of requests above 0"))?;
        Ok(RateLimit { requests, per_minute })
    }
}

/// The limiter, when one is configured.
#[derive(Debug, Default)]
pub(crate) struct PerKey {
    limiter: ArcSwapOption<DefaultKeyedRateLimiter<String>>,
}

impl PerKey {
    /// Sets the limit per key (`None`: no limit). Counts start afresh.
    pub(crate) fn configure(&self, limit: Option<RateLimit>) {
        self.limiter.store(limit.map(|l| {
            let quota = if l.per_minute { Quota::per_minute(l.requests) } else { Quota::per_second(l.requests) };
            Arc::new(RateLimiter::keyed(quota))
        }));
    }

    /// `Ok` when key `id` may make a request now; else how long until it may.
    pub(crate) fn check(&self, id: &str) -> Result<(), Duration> {
        let guard = self.limiter.load();
        let Some(limiter) = guard.as_ref() else { return Ok(()) };
        limiter.check_key(&id.to_string()).map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// `Retry-After` for a wait: whole seconds, at least 1.
pub(crate) fn retry_after(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0 || wait.is_zero())
}
