//! One backoff policy type for every retry in the worker: a file attempt, a cut S3 read, the
//! final status write, and rskafka's own retries. Pure: it computes delays, it never sleeps.
//!
//! The delay before retry `n` (1-based) is `initial × factor^(n-1)`, capped at `max`. Each
//! policy also says how many retries it allows, so that every retry loop is bounded.

use std::time::Duration;

/// An exponential backoff with a cap and a bounded number of retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Growth per retry.
    pub factor: u32,
    /// Retries allowed after the first try.
    pub retries: u32,
}

impl Backoff {
    /// File attempts: 0.4 s, 0.8 s, 1.6 s, … (the retry count comes from the job's
    /// `retry_attempts`, which counts the first attempt too).
    pub const FILE: Backoff = Backoff {
        initial: Duration::from_millis(400),
        max: Duration::from_secs(6),
        factor: 2,
        retries: crate::jobfile::DEFAULT_RETRY_ATTEMPTS - 1,
    };
    /// A cut or failed S3 ranged read, retried from the same byte: 0.2 s doubling up to 5 s,
    /// six times in a row at most.
    pub const S3_READ: Backoff =
        Backoff { initial: Duration::from_millis(200), max: Duration::from_secs(5), factor: 2, retries: 6 };
    /// A write of dead letters (an S3 PUT, a local append and sync): 0.2 s doubling up to
    /// 5 s, five times; then those letters count as lost (and the row says so).
    pub const DEAD_LETTER: Backoff =
        Backoff { initial: Duration::from_millis(200), max: Duration::from_secs(5), factor: 2, retries: 5 };
    /// The final status row, which matters most: 0.5 s doubling up to 5 s, until its deadline
    /// (`STATUS_FINAL_TIMEOUT_SECS`) rather than a count.
    pub const FINAL_ROW: Backoff =
        Backoff { initial: Duration::from_millis(500), max: Duration::from_secs(5), factor: 2, retries: u32::MAX };
    /// One batch's transient produce failures: 0.1 s doubling up to 5 s, until the delivery
    /// deadline (`KAFKA_DELIVERY_TIMEOUT_SECS`) rather than a count.
    pub const DELIVERY: Backoff =
        Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(5), factor: 2, retries: u32::MAX };
    /// rskafka's internal retries (connection errors, leader changes), bounded by its deadline.
    pub const KAFKA: Backoff =
        Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(2), factor: 2, retries: u32::MAX };

    /// The same policy with `retries` retries.
    pub const fn with_retries(self, retries: u32) -> Backoff {
        Backoff { retries, ..self }
    }

    /// The delay before retry `n` (1-based), or `None` once the retries are used up.
    pub fn delay(&self, n: u32) -> Option<Duration> {
        if n == 0 || n > self.retries {
            return None;
        }
        let grow = self.factor.max(1).checked_pow(n - 1).unwrap_or(u32::MAX);
        Some(self.initial.checked_mul(grow).unwrap_or(self.max).min(self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_then_stops() {
        let b = Backoff { initial: Duration::from_millis(100), max: Duration::from_millis(500), factor: 2, retries: 5 };
        let d: Vec<_> = (0..=6).map(|n| b.delay(n).map(|d| d.as_millis())).collect();
        assert_eq!(d, vec![None, Some(100), Some(200), Some(400), Some(500), Some(500), None]);
    }

    #[test]
    fn huge_retry_numbers_do_not_overflow() {
        assert_eq!(Backoff::KAFKA.delay(1_000), Some(Duration::from_secs(2)));
        assert_eq!(Backoff::FILE.with_retries(0).delay(1), None);
    }
}
