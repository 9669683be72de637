//! The resume read-back: before a resumed run sends anything, it reads each partition it
//! had written to, from the stored read-back start (see [`rw_core::resume::Ledger`]) to the end
//! offset listed now, and collects the signatures of the records that can be its own (see
//! [`rw_core::resume::Recovered`]).
//!
//! **Its cost is the range's bytes; its memory is this worker's records.** On a live topic
//! the range holds everything other producers wrote between the stored start and the
//! restart: millions of records after a back-off of minutes. Each record's key is checked
//! as it streams by ([`Ours`]: a look-up of the file identity in the key, no hashing of
//! the value) and only this worker's lines after its resume point are kept, as 16-byte
//! signatures. Partitions are read side by side ([`PARALLEL`] at a time, each on a task of
//! its own, so that decompression uses every core).
//!
//! Bounded in time, not in records: [`Caps::timeout`] (`RESUME_READBACK_TIMEOUT_SECS`) for
//! the whole read-back, and [`Caps::max_records`] (`RESUME_READBACK_MAX_RECORDS`) for the
//! signatures held (memory; this worker's own records only, so only a long outage of the
//! status store, whose row then trails far behind the topic, comes near it). A partition
//! that fails, stalls or is cut by a cap is **incomplete** from where its reading stopped:
//! what was found is kept (a match is exact, see [`rw_core::resume::Recovered`]), and the lines
//! whose records lie past that point are sent again (duplicates, never a loss). Each
//! incomplete partition is logged once (`read-back incomplete`, with why).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use rw_core::resume::PartitionOffset;
use rw_core::resume::{Recovered, Signature, Signer};
use rw_core::{Backoff, Broker, BrokerError, Ours, Page, PartitionRange};

/// Partitions read at once. Each holds at most one fetch (4 MiB, and its records decoded:
/// rskafka decodes a fetch whole), so this bounds the read-back's memory besides the
/// signatures (peak RSS 170 MiB reading 7.3 GB of records, BENCHMARKS.md); four keep two
/// cores busy. Larger fetches would mean fewer round trips but more memory per partition.
pub const PARALLEL: usize = 4;

/// The read-back's caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// `RESUME_READBACK_MAX_RECORDS`: the most records of this worker's own to hold (other
    /// records are never held); 0 turns the read-back off.
    pub max_records: u64,
    /// `RESUME_READBACK_TIMEOUT_SECS`: the whole read-back, every partition.
    pub timeout: Duration,
}

/// Why the read-back did not run; the resume then sends the lines again.
#[derive(Debug, thiserror::Error)]
pub enum ReadBackError {
    #[error("RESUME_READBACK_MAX_RECORDS is 0: the read-back is off")]
    Off,
}

/// Why a partition could not be read to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cut {
    /// Pages came back empty before the end (another producer's open transaction, records
    /// removed by retention).
    Stalled,
    /// `RESUME_READBACK_TIMEOUT_SECS` passed.
    TimedOut,
    /// `RESUME_READBACK_MAX_RECORDS` of this worker's records were held.
    Capped,
    /// Kafka failed it until the deadline (the last error).
    Kafka(String),
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cut::Stalled => f.write_str(
                "nothing could be read before the end (another producer's open transaction, or removed records)",
            ),
            Cut::TimedOut => f.write_str("RESUME_READBACK_TIMEOUT_SECS passed"),
            Cut::Capped => f.write_str("RESUME_READBACK_MAX_RECORDS of this worker's records are held"),
            Cut::Kafka(e) => write!(f, "Kafka: {e}"),
        }
    }
}

/// A partition read back only up to `at.offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incomplete {
    pub at: PartitionOffset,
    /// Where it ends.
    pub end: i64,
    pub why: Cut,
}

/// What the read-back found.
#[derive(Debug)]
pub struct ReadBack {
    pub recovered: Recovered,
    /// Records read, this worker's or not.
    pub records: u64,
    /// Bytes of the records read (keys and values, as decoded).
    pub bytes: u64,
    /// Records kept: this worker's lines after its resume point.
    pub ours: u64,
    /// Partitions read.
    pub partitions: usize,
    /// Partitions that could not be read to their end: what was found there is still exact.
    pub incomplete: Vec<Incomplete>,
    pub took: Duration,
}

/// The read-back's figures, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Report {
    /// Records read, this worker's or not.
    pub records: u64,
    /// Bytes of those records.
    pub bytes: u64,
    /// This worker's records among them.
    pub ours: u64,
    pub seconds: f64,
    /// Partitions that could not be read to their end.
    pub incomplete: u64,
}

impl ReadBack {
    /// Its figures.
    pub fn report(&self) -> Report {
        Report {
            records: self.records,
            bytes: self.bytes,
            ours: self.ours,
            seconds: self.took.as_secs_f64(),
            incomplete: self.incomplete.len() as u64,
        }
    }

    /// Records read per record kept (how much of the range was other records).
    pub fn read_per_ours(&self) -> f64 {
        self.records as f64 / self.ours.max(1) as f64
    }

    /// Bytes read a second.
    pub fn bytes_per_sec(&self) -> f64 {
        self.bytes as f64 / self.took.as_secs_f64().max(1e-6)
    }
}

/// One partition's share.
#[derive(Debug, Default)]
struct Found {
    signatures: Vec<Signature>,
    records: u64,
    bytes: u64,
    partition: bool,
    incomplete: Option<Incomplete>,
}

/// Reads back the partitions of `stored` that are among `topics` (name, partition count),
/// keeping the records `ours` admits. `window` is the matching's miss window (the
/// unsettled-lines bound).
pub async fn read_back(
    broker: &Arc<dyn Broker>,
    topics: &[(String, i32)],
    stored: &[PartitionOffset],
    ours: &Arc<Ours>,
    window: u64,
    caps: Caps,
) -> Result<ReadBack, ReadBackError> {
    if caps.max_records == 0 {
        return Err(ReadBackError::Off);
    }
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + caps.timeout;
    let mut found = ReadBack {
        recovered: Recovered::new(window),
        records: 0,
        bytes: 0,
        ours: 0,
        partitions: 0,
        incomplete: Vec::new(),
        took: Duration::ZERO,
    };
    let held = Arc::new(AtomicU64::new(0));
    let signer = found.recovered.signer().clone();
    let known = |s: &&PartitionOffset| topics.iter().any(|(t, n)| *t == s.topic && s.partition < *n);
    let tasks = stored.iter().filter(known).cloned().map(|start| {
        let reader = Reader {
            broker: Arc::clone(broker),
            ours: Arc::clone(ours),
            signer: signer.clone(),
            held: Arc::clone(&held),
            max: caps.max_records,
            deadline,
        };
        async move {
            match tokio::spawn(reader.read(start.clone())).await {
                Ok(found) => found,
                // A panic in the task: nothing of it is trusted.
                Err(e) => Found {
                    incomplete: Some(Incomplete { end: start.offset, at: start, why: Cut::Kafka(e.to_string()) }),
                    ..Found::default()
                },
            }
        }
    });
    let mut parts = futures::stream::iter(tasks).buffer_unordered(PARALLEL);
    while let Some(part) = parts.next().await {
        found.records += part.records;
        found.bytes += part.bytes;
        found.ours += part.signatures.len() as u64;
        found.partitions += usize::from(part.partition);
        for sig in part.signatures {
            found.recovered.insert_signature(sig);
        }
        found.incomplete.extend(part.incomplete);
    }
    found.incomplete.sort_by(|a, b| a.at.cmp(&b.at));
    found.took = started.elapsed();
    Ok(found)
}

/// What one partition's task needs.
struct Reader {
    broker: Arc<dyn Broker>,
    ours: Arc<Ours>,
    signer: Signer,
    /// Signatures held over all partitions.
    held: Arc<AtomicU64>,
    max: u64,
    deadline: tokio::time::Instant,
}

impl Reader {
    /// Reads one partition from `start` to its end. Kafka's errors are retried with
    /// [`Backoff::KAFKA`] until the deadline.
    async fn read(self, start: PartitionOffset) -> Found {
        let mut found = Found::default();
        let (topic, partition) = (start.topic.as_str(), start.partition);
        let mut attempt = 0;
        let mut range = loop {
            match tokio::time::timeout_at(
                self.deadline,
                PartitionRange::open(self.broker.as_ref(), topic, partition, start.offset),
            )
            .await
            {
                Err(_) => return self.cut(found, &start, start.offset, start.offset, Cut::TimedOut),
                Ok(Ok(range)) => break range,
                Ok(Err(e)) => match self.pause(&e, &mut attempt).await {
                    Some(why) => return self.cut(found, &start, start.offset, start.offset, why),
                    None => continue,
                },
            }
        };
        if range.is_empty() {
            return found;
        }
        found.partition = true;
        loop {
            let page = match tokio::time::timeout_at(self.deadline, range.next()).await {
                Err(_) => Err(Cut::TimedOut),
                Ok(Ok(page)) => Ok(page),
                Ok(Err(e)) => match self.pause(&e, &mut attempt).await {
                    Some(why) => Err(why),
                    None => continue,
                },
            };
            let (at, end) = (range.at, range.end);
            match page {
                Err(why) => return self.cut(found, &start, at, end, why),
                Ok(Page::End) => return found,
                Ok(Page::Stalled) => return self.cut(found, &start, at, end, Cut::Stalled),
                Ok(Page::Records(page)) => {
                    attempt = 0;
                    let before = found.signatures.len();
                    for (_, record) in &page {
                        found.records += 1;
                        let key = record.key.as_deref().unwrap_or_default();
                        found.bytes += (key.len() + record.value.as_ref().map_or(0, Vec::len)) as u64;
                        if self.ours.admits(key) {
                            found.signatures.extend(self.signer.sign_record(record));
                        }
                    }
                    let added = (found.signatures.len() - before) as u64;
                    if self.held.fetch_add(added, Ordering::Relaxed) + added > self.max {
                        // The page is kept whole: its records are found; what follows is not read.
                        return self.cut(found, &start, at, end, Cut::Capped);
                    }
                }
            }
        }
    }

    /// Waits before the next attempt after `e`; `Some` when there is none (a fatal error, or
    /// the deadline comes first).
    async fn pause(&self, e: &BrokerError, attempt: &mut u32) -> Option<Cut> {
        let why = Cut::Kafka(rw_core::Chain(e).to_string());
        if e.failure() == rw_core::Failure::Fatal {
            return Some(why);
        }
        let delay = Backoff::KAFKA.delay(*attempt).unwrap_or(Backoff::KAFKA.max);
        *attempt += 1;
        if tokio::time::Instant::now() + delay >= self.deadline {
            return Some(why);
        }
        tokio::time::sleep(delay).await;
        None
    }

    fn cut(&self, mut found: Found, start: &PartitionOffset, at: i64, end: i64, why: Cut) -> Found {
        let at = PartitionOffset { offset: at, ..start.clone() };
        found.incomplete = Some(Incomplete { at, end, why });
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FakeBroker;
    use rw_core::{FileKeys, LineKeys, HEADER};

    fn record(key: &[u8], header: Option<&str>) -> rw_core::Record {
        rw_core::Record {
            key: Some(key.to_vec()),
            value: Some(b"{}".to_vec()),
            headers: header.map(|h| (HEADER.to_owned(), h.as_bytes().to_vec())).into_iter().collect(),
            timestamp: chrono::Utc::now(),
        }
    }

    fn start(topic: &str, partition: i32, offset: i64) -> PartitionOffset {
        PartitionOffset { topic: topic.into(), partition, offset }
    }

    const CAPS: Caps = Caps { max_records: 1_000, timeout: Duration::from_secs(5) };

    /// This worker's file and what it admits: every line of it.
    fn ours() -> (FileKeys, Arc<Ours>) {
        let file = LineKeys::for_job("j").file(0, "a");
        (file, Arc::new(Ours::new([(file, 1)])))
    }

    fn fake() -> (Arc<FakeBroker>, Arc<dyn Broker>) {
        let fake = FakeBroker::acking();
        let broker: Arc<dyn Broker> = fake.clone();
        (fake, broker)
    }

    #[tokio::test]
    async fn reads_from_the_stored_starts_and_keeps_only_this_worker_s_records() {
        let (fake, broker) = fake();
        let (file, ours) = ours();
        let other_job = LineKeys::for_job("other").file(0, "a");
        let records: Vec<_> = (0..250u64)
            .map(|i| match i % 5 {
                0 => record(&file.key(i + 1), None),
                1 => record(&other_job.key(i + 1), Some("c1")),
                2 => record(format!("live-{i}").as_bytes(), Some("c1")),
                _ => record(&file.key(i + 1), Some("c1")),
            })
            .collect();
        fake.append("t", 0, records);
        fake.append("t", 1, vec![record(&file.key(999), Some("c1"))]);
        let topics = [("t".to_string(), 2), ("gone".to_string(), 1)];
        let stored = [start("t", 0, 50), start("t", 1, 1), start("gone", 3, 0), start("other", 0, 0)];
        let found = read_back(&broker, &topics, &stored, &ours, 10, CAPS).await.unwrap();
        assert_eq!((found.records, found.partitions), (200, 1), "pages of 100 from offset 50; nothing after 1");
        assert_eq!(
            found.recovered.len(),
            80,
            "another job's, live records and records without the header are not ours"
        );
        assert_eq!(found.ours, 80);
        assert_eq!(found.recovered.window(), 10);
        assert!(found.incomplete.is_empty());
        let bytes: usize = (50..250u64).map(|i| 2 + if i % 5 == 2 { format!("live-{i}").len() } else { 36 }).sum();
        assert_eq!(found.bytes, bytes as u64, "keys and values of every record read");
    }

    #[tokio::test]
    async fn a_range_of_other_records_far_past_the_held_cap_costs_time_not_memory() {
        let (fake, broker) = fake();
        let (file, ours) = ours();
        // Far more than the held cap of 1,000: all someone else's, and 3 of ours in between.
        let live = |from: usize, n: usize| (from..from + n).map(|i| record(format!("live-{i}").as_bytes(), Some("c1")));
        fake.append("t", 0, live(0, 60_000).collect());
        fake.append("t", 0, (1..=3).map(|l| record(&file.key(l), Some("c1"))).collect());
        fake.append("t", 0, live(60_000, 60_000).collect());
        let found = read_back(&broker, &[("t".into(), 1)], &[start("t", 0, 0)], &ours, 10, CAPS).await.unwrap();
        assert_eq!((found.records, found.ours, found.recovered.len()), (120_003, 3, 3));
        assert!(found.incomplete.is_empty(), "{:?}", found.incomplete);
        assert!(found.read_per_ours() > 40_000.0);
    }

    #[tokio::test]
    async fn the_held_cap_stops_at_a_page_and_keeps_what_was_found_and_zero_turns_it_off() {
        let (fake, broker) = fake();
        let (file, ours) = ours();
        fake.append("t", 0, (1..=300).map(|l| record(&file.key(l), Some("c1"))).collect());
        let topics = [("t".to_string(), 1)];
        let caps = Caps { max_records: 150, ..CAPS };
        let found = read_back(&broker, &topics, &[start("t", 0, 0)], &ours, 10, caps).await.unwrap();
        assert_eq!(found.recovered.len(), 200, "pages of 100 are kept whole: the one that passed the cap too");
        assert_eq!(
            found.incomplete,
            vec![Incomplete { at: start("t", 0, 200), end: 300, why: Cut::Capped }],
            "incomplete from where it stopped"
        );
        let off = Caps { max_records: 0, ..CAPS };
        assert!(matches!(read_back(&broker, &topics, &[], &ours, 10, off).await, Err(ReadBackError::Off)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_partition_kafka_keeps_failing_is_incomplete_at_the_deadline_and_the_others_are_read() {
        let (fake, broker) = fake();
        let (file, ours) = ours();
        fake.append("t", 0, (1..=5).map(|l| record(&file.key(l), Some("c1"))).collect());
        fake.append("t", 1, (6..=9).map(|l| record(&file.key(l), Some("c1"))).collect());
        fake.fail_fetches("t", 1);
        let topics = [("t".to_string(), 2)];
        let found = read_back(&broker, &topics, &[start("t", 0, 0), start("t", 1, 0)], &ours, 10, CAPS).await.unwrap();
        assert_eq!(found.recovered.len(), 5, "partition 0 whole");
        assert_eq!(found.incomplete.len(), 1);
        let cut = &found.incomplete[0];
        assert_eq!(cut.at, start("t", 1, 0));
        assert!(matches!(cut.why, Cut::Kafka(_)), "{:?}", cut.why);
    }

    #[tokio::test]
    async fn transaction_markers_are_read_past_and_an_open_transaction_is_reported_incomplete() {
        let (fake, broker) = fake();
        let (file, ours) = ours();
        fake.append("t", 0, (1..=5).map(|l| record(&file.key(l), Some("c1"))).collect());
        fake.append_marker("t", 0);
        fake.append("t", 0, vec![record(&file.key(6), Some("c1"))]);
        fake.append_marker("t", 0);
        let topics = [("t".to_string(), 1)];
        let found = read_back(&broker, &topics, &[start("t", 0, 0)], &ours, 10, CAPS).await.unwrap();
        assert_eq!((found.records, found.recovered.len()), (6, 6), "every record is found");
        assert!(found.incomplete.is_empty(), "markers, even the last one, are read past: {:?}", found.incomplete);

        // Another producer's transaction open at offset 3: reads stop there (the last stable
        // offset), below the end.
        fake.open_transaction_at(3);
        let found = read_back(&broker, &topics, &[start("t", 0, 0)], &ours, 10, CAPS).await.unwrap();
        assert_eq!(found.records, 3, "what is there before it is found");
        assert_eq!(found.incomplete.len(), 1);
        assert_eq!((&found.incomplete[0].at, &found.incomplete[0].why), (&start("t", 0, 3), &Cut::Stalled));
    }
}
