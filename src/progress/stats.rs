//! What the run counts for `/metrics` beyond the row's counts: bumped per batch, per retry or
//! per record read back, never per line, with relaxed atomics (the retries' maps take a lock,
//! and retries are rare). The produce latency and the rate limit's waits go straight into
//! histogram handles of the worker's metrics recorder (no-op ones when `METRICS_ADDR` is
//! unset), once per request or batch. `metrics` reads it
//! all when Prometheus scrapes; `/readyz` reads whether Kafka answers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// The run's counters for the metrics; one per run, shared by the source, the producer and
/// the read-back.
#[derive(Debug)]
pub struct Stats {
    /// Lines in the batches handed to Kafka, each batch counted once, when it is first sent.
    pub lines_sent: AtomicU64,
    /// Produce requests in flight (a batch waiting for the rate limit holds its slot, and is
    /// counted here).
    pub batches_in_flight: AtomicU64,
    /// What the resume's read-back did.
    read_back: Mutex<crate::resume::readback::Report>,
    /// Looks for a batch whose answer was lost, by result.
    lost_answer_checks: Mutex<BTreeMap<&'static str, u64>>,
    /// Falls back to sending lines again unseen, by kind.
    fallbacks: Mutex<BTreeMap<rw_core::resume::Fallback, u64>>,
    /// Dead letters written.
    dead_letters_written: AtomicU64,
    /// Dead letters that could not be written (the row's `error` says how many).
    dead_letters_lost: AtomicU64,
    /// Batches that waited for the rate limit (the live progress line shows when it holds).
    rate_limited: AtomicU64,
    /// New producer ids after the sequences of one ended (idempotent produce).
    producer_renewals: AtomicU64,
    /// Produce requests sent again, by Kafka error code (or the kind of failure when Kafka
    /// gave none).
    produce_retries: Mutex<BTreeMap<String, u64>>,
    /// Ranged reads resumed after a failure, by source (`s3`, `gcs`).
    read_retries: Mutex<BTreeMap<&'static str, u64>>,
    /// False from a produce request Kafka did not answer until the next one it answers.
    kafka_answers: AtomicBool,
    /// Each produce request's time to its answer, in seconds.
    produce_latency: metrics::Histogram,
    /// Each held-back batch's wait for the rate limit, in seconds.
    rate_limit_wait: metrics::Histogram,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new(metrics::Histogram::noop(), metrics::Histogram::noop())
    }
}

impl Stats {
    /// Counters at zero; produce latencies go to `produce_latency`, rate-limit waits to
    /// `rate_limit_wait`.
    pub fn new(produce_latency: metrics::Histogram, rate_limit_wait: metrics::Histogram) -> Self {
        Stats {
            lines_sent: AtomicU64::new(0),
            batches_in_flight: AtomicU64::new(0),
            read_back: Mutex::new(Default::default()),
            lost_answer_checks: Mutex::new(BTreeMap::new()),
            fallbacks: Mutex::new(BTreeMap::new()),
            dead_letters_written: AtomicU64::new(0),
            dead_letters_lost: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            producer_renewals: AtomicU64::new(0),
            produce_retries: Mutex::new(BTreeMap::new()),
            read_retries: Mutex::new(BTreeMap::new()),
            kafka_answers: AtomicBool::new(true),
            produce_latency,
            rate_limit_wait,
        }
    }

    /// The resume's read-back ended.
    pub fn read_back(&self, report: &crate::resume::readback::Report) {
        *self.read_back.lock() = *report;
    }

    /// What the resume's read-back did (zeros without one).
    pub fn read_back_report(&self) -> crate::resume::readback::Report {
        *self.read_back.lock()
    }

    /// A look for a batch whose answer was lost ended with `result`.
    pub fn lost_answer_checked(&self, result: &'static str) {
        *self.lost_answer_checks.lock().entry(result).or_default() += 1;
    }

    /// The looks for lost answers so far, by result.
    pub fn lost_answer_checks(&self) -> Vec<(&'static str, u64)> {
        self.lost_answer_checks.lock().iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// The worker fell back to sending lines again unseen (and said so in its log).
    pub fn fell_back(&self, fallback: rw_core::resume::Fallback) {
        *self.fallbacks.lock().entry(fallback).or_default() += 1;
    }

    /// The fallbacks so far, by name.
    pub fn fallbacks(&self) -> Vec<(&'static str, u64)> {
        self.fallbacks.lock().iter().map(|(k, v)| (k.name(), *v)).collect()
    }

    /// One batch waited `wait` for the rate limit.
    pub fn rate_limit_waited(&self, wait: Duration) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
        self.rate_limit_wait.record(wait.as_secs_f64());
    }

    /// Batches that waited for the rate limit so far.
    pub fn rate_limited(&self) -> u64 {
        self.rate_limited.load(Ordering::Relaxed)
    }

    /// The idempotent producer's sequences ended, and a new producer id took over.
    pub fn producer_renewed(&self) {
        self.producer_renewals.fetch_add(1, Ordering::Relaxed);
    }

    /// New producer ids so far.
    pub fn producer_renewals(&self) -> u64 {
        self.producer_renewals.load(Ordering::Relaxed)
    }

    /// The dead letters of `n` lines were written (`written`), or could not be.
    pub fn letters_settled(&self, n: u64, written: bool) {
        let counter = if written { &self.dead_letters_written } else { &self.dead_letters_lost };
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Dead letters written so far.
    pub fn dead_letters_written(&self) -> u64 {
        self.dead_letters_written.load(Ordering::Relaxed)
    }

    /// Dead letters that could not be written so far.
    pub fn dead_letters_lost(&self) -> u64 {
        self.dead_letters_lost.load(Ordering::Relaxed)
    }

    /// A produce request ended after `took`; `answered`: Kafka answered it (with the
    /// records' offsets or an error code), rather than the connection failing or timing out.
    pub fn produced(&self, took: Duration, answered: bool) {
        self.produce_latency.record(took.as_secs_f64());
        self.kafka_answers.store(answered, Ordering::Relaxed);
    }

    /// Whether the last produce request was answered (true before the first).
    pub fn kafka_answers(&self) -> bool {
        self.kafka_answers.load(Ordering::Relaxed)
    }

    /// A produce request failed with `code` and will be sent again.
    pub fn produce_retried(&self, code: &str) {
        let mut m = self.produce_retries.lock();
        match m.get_mut(code) {
            Some(n) => *n += 1,
            None => {
                m.insert(code.to_owned(), 1);
            }
        }
    }

    /// A ranged read of `source` (`s3`, `gcs`) failed and is resumed.
    pub fn read_retried(&self, source: &'static str) {
        *self.read_retries.lock().entry(source).or_default() += 1;
    }

    /// The produce retries so far, by code.
    pub fn produce_retries(&self) -> Vec<(String, u64)> {
        self.produce_retries.lock().iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// The read retries so far, by source.
    pub fn read_retries(&self) -> Vec<(&'static str, u64)> {
        self.read_retries.lock().iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// A batch took a slot of the requests in flight.
    pub fn batch_started(&self) {
        self.batches_in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A batch gave its slot back.
    pub fn batch_ended(&self) {
        self.batches_in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_answers_until_a_request_is_not_answered_and_again_after_one_is() {
        let s = Stats::default();
        assert!(s.kafka_answers(), "before the first request");
        s.produced(Duration::from_millis(3), false);
        assert!(!s.kafka_answers());
        s.produced(Duration::from_millis(3), true);
        assert!(s.kafka_answers());
    }

    #[test]
    fn retries_are_counted_by_code_and_by_source() {
        let s = Stats::default();
        s.produce_retried("NOT_LEADER_OR_FOLLOWER");
        s.produce_retried("connection");
        s.produce_retried("NOT_LEADER_OR_FOLLOWER");
        s.read_retried("s3");
        assert_eq!(s.produce_retries(), vec![("NOT_LEADER_OR_FOLLOWER".to_owned(), 2), ("connection".to_owned(), 1)]);
        assert_eq!(s.read_retries(), vec![("s3", 1)]);
    }
}
