//! Request rate limits: token buckets in memory, one for the whole server and one per
//! recipient with a limit. Each process limits its own traffic, with no catalog round trip: a
//! recipient's limit comes with its principal, which the catalog holds in memory. They count
//! API calls, not file downloads: a client fetches a table's files in parallel right after one
//! `/query`, and the connection limits bound those.
//!
//! A bucket holds up to `burst` tokens and refills at the limit's rate; a request takes one.
//! A request that finds the bucket empty gets 429 with `Retry-After`: the seconds until a token
//! is back (the official clients back off on 429).

use std::collections::HashMap;
use std::time::Instant;

use d2o_catalog::{Principal, RateLimit};
use parking_lot::Mutex;

use crate::ApiError;

/// Buckets kept before idle, full ones are dropped.
const MAX_IDLE_BUCKETS: usize = 10_000;

#[derive(Debug)]
struct Bucket {
    limit: RateLimit,
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn new(limit: RateLimit, now: Instant) -> Bucket {
        Bucket { limit, tokens: f64::from(limit.burst), updated: now }
    }

    fn refill(&mut self, now: Instant) {
        let earned = now.saturating_duration_since(self.updated).as_secs_f64() * self.limit.rate.per_second();
        self.tokens = (self.tokens + earned).min(f64::from(self.limit.burst));
        self.updated = now;
    }

    /// Takes a token, or says how many whole seconds until one is back.
    fn take(&mut self, now: Instant) -> Result<(), u64> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(((1.0 - self.tokens) / self.limit.rate.per_second()).ceil().max(1.0) as u64)
    }
}

/// The server's rate limits.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    server: Option<Mutex<Bucket>>,
    recipients: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// Limits with a server-wide limit, if any.
    pub(crate) fn new(server: Option<RateLimit>) -> RateLimiter {
        let now = Instant::now();
        RateLimiter { server: server.map(|l| Mutex::new(Bucket::new(l, now))), recipients: Mutex::default() }
    }

    /// Counts a request against the server-wide limit.
    pub(crate) fn check_server(&self) -> Result<(), ApiError> {
        let Some(bucket) = &self.server else { return Ok(()) };
        bucket.lock().take(Instant::now()).map_err(|retry_after_secs| ApiError::TooManyRequests {
            message: "the server is receiving more requests than it accepts; retry later".to_owned(),
            retry_after_secs,
        })
    }

    /// Counts a request of `who` against its own limit, if it has one. A changed limit starts
    /// a full bucket.
    pub(crate) fn check(&self, who: &Principal) -> Result<(), ApiError> {
        let Some(limit) = who.rate_limit else { return Ok(()) };
        let now = Instant::now();
        let mut buckets = self.recipients.lock();
        if buckets.len() >= MAX_IDLE_BUCKETS && !buckets.contains_key(&who.id) {
            buckets.retain(|_, b| {
                b.refill(now);
                b.tokens < f64::from(b.limit.burst)
            });
        }
        let bucket = buckets.entry(who.id.clone()).or_insert_with(|| Bucket::new(limit, now));
        if bucket.limit != limit {
            *bucket = Bucket::new(limit, now);
        }
        bucket.take(now).map_err(|retry_after_secs| ApiError::TooManyRequests {
            message: format!(
                "too many requests: this recipient may make {} (burst {}); retry in {retry_after_secs} s",
                limit.rate, limit.burst
            ),
            retry_after_secs,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;

    fn limit(rate: &str, burst: u32) -> RateLimit {
        RateLimit::new(rate.parse().expect("rate"), Some(burst)).expect("limit")
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let start = Instant::now();
        let mut bucket = Bucket::new(limit("2/s", 3), start);
        for _ in 0..3 {
            assert_eq!(bucket.take(start), Ok(()));
        }
        assert_eq!(bucket.take(start), Err(1));
        assert_eq!(bucket.take(start + Duration::from_millis(500)), Ok(()), "one token back after 0.5 s");
        assert!(bucket.take(start + Duration::from_millis(600)).is_err());
        let mut slow = Bucket::new(limit("1/min", 1), start);
        assert_eq!(slow.take(start), Ok(()));
        assert_eq!(slow.take(start + Duration::from_secs(1)), Err(59));
    }

    #[test]
    fn recipients_have_their_own_buckets_and_a_changed_limit_starts_afresh() {
        let limiter = RateLimiter::new(None);
        let mut a = Principal::new("a", "a", BTreeMap::new());
        let b = Principal { rate_limit: Some(limit("1/h", 1)), ..Principal::new("b", "b", BTreeMap::new()) };
        for _ in 0..100 {
            assert!(limiter.check(&a).is_ok(), "no limit, no bucket");
        }
        assert!(limiter.check(&b).is_ok());
        match limiter.check(&b) {
            Err(ApiError::TooManyRequests { retry_after_secs, .. }) => assert!(retry_after_secs > 3000),
            other => panic!("{other:?}"),
        }
        a.rate_limit = Some(limit("1/h", 1));
        assert!(limiter.check(&a).is_ok(), "a's bucket is not b's");
        a.rate_limit = Some(limit("1/h", 2));
        assert!(limiter.check(&a).is_ok() && limiter.check(&a).is_ok(), "a new limit, a full bucket");
        assert!(RateLimiter::new(Some(limit("1/h", 1))).check_server().is_ok());
    }
}
