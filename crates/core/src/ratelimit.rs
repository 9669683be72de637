//! Rate limits (`MAX_EVENTS_PER_SEC`, `MAX_BYTES_PER_SEC`), as token buckets, pure: the
//! caller passes the time.
//!
//! A bucket refills at `rate` tokens a second and holds at most what the batch being sent
//! needs: after a pause, one batch goes at once, never more (the burst is one batch).
//! [`Bucket::take`] takes what a batch needs and says how long to wait before sending it;
//! tokens go below zero, so every batch that comes after it waits for that debt too. Over any
//! interval `t`, what is sent is at most `rate × t` plus one batch.
//! [`Limits`] holds both buckets; the longer wait wins, so the lower limit is the one that
//! holds.

use std::time::Duration;

/// A worker's effective limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// Lines sent a second.
    pub events_per_sec: Option<u64>,
    /// Bytes of values sent a second.
    pub bytes_per_sec: Option<u64>,
}

impl RateLimits {
    /// True when neither limit is set.
    pub fn is_unlimited(&self) -> bool {
        self.events_per_sec.is_none() && self.bytes_per_sec.is_none()
    }
}

impl std::fmt::Display for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.events_per_sec, self.bytes_per_sec) {
            (None, None) => f.write_str("none"),
            (Some(e), None) => write!(f, "{e} lines/s"),
            (None, Some(b)) => write!(f, "{b} bytes/s"),
            (Some(e), Some(b)) => write!(f, "{e} lines/s and {b} bytes/s"),
        }
    }
}

/// One worker's limit: the pod's own setting when there is one, else its share of the job's
/// limit, divided among the workers that run at once (`parallel_workers`, else all of them).
pub fn worker_limit(
    pod: Option<u64>,
    job: Option<u64>,
    parallel_workers: Option<u64>,
    total_workers: u32,
) -> Option<u64> {
    pod.or_else(|| job.map(|j| (j / parallel_workers.unwrap_or(total_workers as u64).max(1)).max(1)))
}

/// One token bucket.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    /// Tokens a second.
    rate: f64,
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Duration,
}

impl Bucket {
    /// A bucket at time `now` that lets its first batch go at once.
    pub(crate) fn new(rate: u64, now: Duration) -> Self {
        Bucket { rate: rate.max(1) as f64, tokens: f64::INFINITY, at: now }
    }

    /// Takes `n` tokens at `now`; returns how long to wait before using them.
    pub(crate) fn take(&mut self, n: u64, now: Duration) -> Duration {
        let elapsed = now.saturating_sub(self.at).as_secs_f64();
        self.at = self.at.max(now);
        let n = n as f64;
        self.tokens = (self.tokens + elapsed * self.rate).min(n) - n;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// The limits of one worker: lines sent a second, bytes of values sent a second, either or both.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    events: Option<Bucket>,
    bytes: Option<Bucket>,
}

impl Limits {
    /// A bucket at time `now` for each limit that is set, each letting its first batch go at once.
    pub fn new(limits: RateLimits, now: Duration) -> Self {
        Limits {
            events: limits.events_per_sec.map(|r| Bucket::new(r, now)),
            bytes: limits.bytes_per_sec.map(|r| Bucket::new(r, now)),
        }
    }

    /// True when there is no limit at all.
    pub fn is_unlimited(&self) -> bool {
        self.events.is_none() && self.bytes.is_none()
    }

    /// Takes a batch of `events` lines and `bytes` bytes of values at `now`; returns how long
    /// to wait before sending it.
    pub fn take(&mut self, events: u64, bytes: u64, now: Duration) -> Duration {
        let e = self.events.as_mut().map_or(Duration::ZERO, |b| b.take(events, now));
        let b = self.bytes.as_mut().map_or(Duration::ZERO, |b| b.take(bytes, now));
        e.max(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: Duration = Duration::from_secs(1);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn each_worker_takes_its_share_and_the_pod_setting_wins() {
        assert_eq!(worker_limit(None, Some(20_000), Some(4), 10), Some(5_000), "parallel_workers");
        assert_eq!(worker_limit(None, Some(20_000), None, 10), Some(2_000), "TOTAL_WORKERS");
        assert_eq!(worker_limit(Some(700), Some(20_000), Some(4), 10), Some(700), "the pod's own");
        assert_eq!(worker_limit(None, Some(3), Some(4), 4), Some(1), "never zero");
        assert_eq!(worker_limit(None, None, Some(4), 4), None);
    }

    #[test]
    fn the_first_batch_goes_at_once_then_the_rate_holds() {
        let mut b = Bucket::new(1000, Duration::ZERO);
        assert_eq!(b.take(100, Duration::ZERO), Duration::ZERO, "one batch at once");
        assert_eq!(b.take(100, Duration::ZERO), ms(100), "then 100 tokens at 1000/s");
        assert_eq!(b.take(100, Duration::ZERO), ms(200), "and the next waits for both");
        // After a long idle pause the bucket holds one batch, not more.
        assert_eq!(b.take(100, Duration::from_secs(10)), Duration::ZERO);
        assert_eq!(b.take(100, Duration::from_secs(10)), ms(100));
        assert_eq!(b.take(10, Duration::from_secs(10)), ms(110));
    }

    #[test]
    fn after_a_pause_a_larger_batch_goes_at_once_and_the_next_waits_for_it() {
        let mut b = Bucket::new(100, Duration::ZERO);
        assert_eq!(b.take(10, Duration::ZERO), Duration::ZERO);
        assert_eq!(b.take(50, Duration::from_secs(5)), Duration::ZERO);
        assert_eq!(b.take(10, Duration::from_secs(5)), ms(100));
    }

    #[test]
    fn both_limits_together_the_lower_one_holds() {
        // 1000 lines/s and 10 KB/s: with 100-byte lines the bytes limit is the lower (100 lines/s).
        let both = RateLimits { events_per_sec: Some(1000), bytes_per_sec: Some(10_000) };
        let mut l = Limits::new(both, Duration::ZERO);
        assert_eq!(l.take(10, 1_000, Duration::ZERO), Duration::ZERO);
        assert_eq!(l.take(10, 1_000, Duration::ZERO), ms(100));
        // With 1-byte lines the events limit is the lower.
        let mut l = Limits::new(both, Duration::ZERO);
        l.take(10, 10, Duration::ZERO);
        assert_eq!(l.take(10, 10, Duration::ZERO), ms(10));
        assert!(Limits::default().is_unlimited());
        assert_eq!(Limits::default().take(1 << 40, 1 << 40, Duration::ZERO), Duration::ZERO);
    }

    proptest! {
            /// Whatever the batches and their timing, what is sent within any window of `w` after
            /// its waits is at most `rate × w` plus one batch.
            #[test]
            fn never_more_than_rate_times_time_plus_one_batch(
                rate in 1u64..5_000,
                batches in proptest::collection::vec((1u64..600, 0u64..300), 1..200),
            ) {
                let mut b = Bucket::new(rate, Duration::ZERO);
                let mut now = Duration::ZERO;
                let mut sent: Vec<(Duration, u64)> = Vec::new();
                for (n, gap_ms) in batches {
                    now += ms(gap_ms);
                    let wait = b.take(n, now);
                    sent.push((now + wait, n));
                }
                sent.sort();
                for (i, &(start, _)) in sent.iter().enumerate() {
                    for w in [ms(100), S, S * 3] {
                        let inside: u64 = sent[i..].iter().take_while(|(t, _)| *t < start + w).map(|(_, n)| n).sum();
                        let largest = sent[i..].iter().take_while(|(t, _)| *t < start + w).map(|(_, n)| *n).max().unwrap_or(0);
                        let allowed = rate as f64 * w.as_secs_f64() + largest as f64 + 1.0;
                        prop_assert!(inside as f64 <= allowed, "{inside} in {w:?} (allowed {allowed})");
                    }
                }
            }

            /// And never less nor more than that: against a model of the schedule written without
            /// tokens (the first batch goes when it comes; each later one when it comes, or once
            /// its own lines' time at `rate` has passed since the batch before it went, whichever
            /// is later), every batch goes at the model's time, to the microsecond. A limiter that
            /// over-throttled (waited for the previous batch's lines as well, or a whole second)
            /// would fail here.
            #[test]
            fn each_batch_waits_only_for_its_own_lines(
                rate in 1u64..5_000,
                batches in proptest::collection::vec((1u64..600, 0u64..300), 1..200),
            ) {
                let mut b = Bucket::new(rate, Duration::ZERO);
                let mut now = Duration::ZERO;
                let mut model: Option<f64> = None;
                for (i, (n, gap_ms)) in batches.into_iter().enumerate() {
                    now += ms(gap_ms);
                    let went = (now + b.take(n, now)).as_secs_f64();
                    let want = model.map_or(now.as_secs_f64(), |prev| now.as_secs_f64().max(prev + n as f64 / rate as f64));
                    prop_assert!((went - want).abs() < 1e-6, "batch {i}: went at {went}, the model says {want}");
                    model = Some(want);
                }
            }
    }
}
