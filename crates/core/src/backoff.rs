//! One backoff policy type for every retry in the worker: a file attempt, a cut S3 read, the
//! final status write, and rskafka's own retries. Pure: it computes delays, it never sleeps.
//!
//! The delay before retry `n` (1-based) is `initial × factor^(n-1)`, capped at `max`. Each
//! policy also says how many retries it allows, so that every retry loop is bounded.
//!
//! Where a whole fleet fails at the same moment (a broker or the database restarting: every
//! pod of every job loses it at once), the pauses are spread ([`Backoff::delay_spread`]):
//! each drawn between half and all of the policy's delay, by the worker's own seed
//! ([`spread_seed`]: its job and index), so that a hundred pods do not come back in
//! lockstep, and a worker's pauses are still the same in every run and in the simulation.

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

    /// The delay before retry `n` of the worker whose seed is `seed` ([`spread_seed`]):
    /// between half and all of [`Backoff::delay`]'s, the same for the same seed and `n`.
    pub fn delay_spread(&self, n: u32, seed: u64) -> Option<Duration> {
        let whole = self.delay(n)?;
        let half = whole / 2;
        let span = (whole - half).as_nanos() as u64 + 1;
        Some(half + Duration::from_nanos(mix(seed ^ u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15)) % span))
    }
}

/// A worker's seed for [`Backoff::delay_spread`], from its job and its index: the pods of one
/// job, and those of two jobs, pause apart.
pub fn spread_seed(job_id: &str, worker_index: u32) -> u64 {
    // FNV-1a over the job id, then the index: stable across builds and platforms.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in job_id.bytes().chain(worker_index.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// splitmix64's finaliser: every bit of the input moves about half the output's.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spread_delay_lies_between_half_and_all_of_the_policy_s_and_repeats_for_its_seed() {
        let b = Backoff::DELIVERY;
        for seed in [0, 1, spread_seed("job", 0), spread_seed("job", 1)] {
            for n in 1..12 {
                let whole = b.delay(n).unwrap();
                let d = b.delay_spread(n, seed).unwrap();
                assert!(d >= whole / 2 && d <= whole, "retry {n}: {d:?} against {whole:?}");
                assert_eq!(b.delay_spread(n, seed), Some(d), "the same seed, the same pause");
            }
        }
        assert_eq!(Backoff::S3_READ.delay_spread(7, 1), None, "past the retries");
    }

    /// The promise: a fleet that failed together comes back spread over the pause, not at
    /// once. A hundred pods of one job, their fifth retry (1.6 s): no tenth of the window
    /// [0.8 s, 1.6 s] gets more than twice its share, and no two pods of a job share a seed.
    #[test]
    fn a_hundred_pods_retry_spread_over_the_window() {
        let b = Backoff::DELIVERY;
        let whole = b.delay(5).unwrap();
        let mut buckets = [0u32; 10];
        let mut seeds = std::collections::BTreeSet::new();
        for pod in 0..100 {
            let seed = spread_seed("6f2c1d9e-reprocess", pod);
            assert!(seeds.insert(seed), "pod {pod} shares a seed");
            let d = b.delay_spread(5, seed).unwrap();
            let at = (d - whole / 2).as_secs_f64() / (whole / 2).as_secs_f64();
            buckets[((at * 10.0) as usize).min(9)] += 1;
        }
        assert!(buckets.iter().all(|&n| n <= 20), "{buckets:?}");
        assert!(spread_seed("a", 0) != spread_seed("b", 0), "two jobs' pods pause apart");
    }

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
