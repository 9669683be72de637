//! The resume read-back: before a resumed run sends anything, it reads each partition it
//! had written to, from the stored read-back start (see [`crate::resume::offsets`]) to the end
//! offset listed now, and collects the signatures of the records it finds (see
//! [`crate::resume::recover`]). Records without a key or without the `connection_ids` header cannot
//! be this worker's and are read past.
//!
//! Bounded: it stops at the end offsets taken when it starts (the fetch that reaches one is
//! read whole, at most one page past it), and it is capped in records
//! (`RESUME_READBACK_MAX_RECORDS`, checked against the ranges' sizes before anything is
//! read) and in time (`RESUME_READBACK_TIMEOUT_SECS`). Past a cap, or when Kafka fails it,
//! the resume falls back to sending the unsettled lines again (at least once, within the
//! unsettled-lines bound), and says so in the log.

use std::time::{Duration, Instant};

use crate::broker::{Broker, BrokerError, Page, PartitionRange};
use crate::resume::offsets::PartitionOffset;
use crate::resume::recover::Recovered;

/// The read-back's caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// `RESUME_READBACK_MAX_RECORDS`: the most records to read; 0 turns the read-back off.
    pub max_records: u64,
    /// `RESUME_READBACK_TIMEOUT_SECS`.
    pub timeout: Duration,
}

/// Why the read-back did not complete; the resume then sends the lines again.
#[derive(Debug, thiserror::Error)]
pub enum ReadBackError {
    #[error("RESUME_READBACK_MAX_RECORDS is 0: the read-back is off")]
    Off,
    #[error("{records} records to read back, more than RESUME_READBACK_MAX_RECORDS ({max})")]
    TooManyRecords { records: u64, max: u64 },
    #[error("the read-back took longer than RESUME_READBACK_TIMEOUT_SECS ({after:?})")]
    TimedOut { after: Duration },
    #[error(transparent)]
    Kafka(#[from] BrokerError),
}

/// What the read-back found.
#[derive(Debug)]
pub struct ReadBack {
    pub recovered: Recovered,
    /// Records read, this worker's or not.
    pub records: u64,
    /// Partitions read.
    pub partitions: usize,
    /// Partitions that could not be read to their end, and where reading stopped: the
    /// read-back is incomplete there (what it found is still exact, see [`crate::resume::recover`]).
    pub stalled: Vec<PartitionOffset>,
    pub took: Duration,
}

/// Reads back the partitions of `stored` that are among `topics` (name, partition count).
/// `window` is the matching's miss window (the unsettled-lines bound).
pub async fn read_back(
    broker: &dyn Broker,
    topics: &[(String, i32)],
    stored: &[PartitionOffset],
    window: u64,
    caps: Caps,
) -> Result<ReadBack, ReadBackError> {
    if caps.max_records == 0 {
        return Err(ReadBackError::Off);
    }
    let started = Instant::now();
    let work = async {
        let known = |s: &&PartitionOffset| topics.iter().any(|(t, n)| *t == s.topic && s.partition < *n);
        let mut ranges = Vec::new();
        for s in stored.iter().filter(known) {
            let range = PartitionRange::open(broker, &s.topic, s.partition, s.offset).await?;
            if !range.is_empty() {
                ranges.push(range);
            }
        }
        let records: u64 = ranges.iter().map(PartitionRange::len).sum();
        if records > caps.max_records {
            return Err(ReadBackError::TooManyRecords { records, max: caps.max_records });
        }
        let mut found = ReadBack {
            recovered: Recovered::new(window),
            records: 0,
            partitions: ranges.len(),
            stalled: Vec::new(),
            took: Duration::ZERO,
        };
        for range in &mut ranges {
            read_partition(range, &mut found).await?;
            // Checked again as read: the ends may have been listed low (see `PartitionRange`).
            if found.records > caps.max_records {
                return Err(ReadBackError::TooManyRecords { records: found.records, max: caps.max_records });
            }
        }
        Ok(found)
    };
    match tokio::time::timeout(caps.timeout, work).await {
        Ok(r) => r.map(|r| ReadBack { took: started.elapsed(), ..r }),
        Err(_) => Err(ReadBackError::TimedOut { after: caps.timeout }),
    }
}

/// Reads one partition to its end into `found`. Records past the end are read too (pages
/// come whole): nothing of this run is sent before the read-back ends, so they are only
/// other producers' records, and those are never matched.
async fn read_partition(range: &mut PartitionRange<'_>, found: &mut ReadBack) -> Result<(), BrokerError> {
    loop {
        match range.next().await? {
            Page::Records(page) => {
                for (_, record) in page {
                    found.records += 1;
                    found.recovered.insert(&record);
                }
            }
            Page::End => return Ok(()),
            Page::Stalled => {
                let (topic, partition, at, end) = (range.topic, range.partition, range.at, range.end);
                tracing::warn!(
                    topic,
                    partition,
                    at,
                    end,
                    "read-back incomplete: nothing could be read before the end (a transaction marker, another \
                     producer's open transaction, or removed records); lines whose records lie past it are sent again"
                );
                found.stalled.push(PartitionOffset { topic: topic.to_owned(), partition, offset: at });
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::HEADER;
    use crate::testutil::FakeBroker;

    fn record(key: &str, header: Option<&str>) -> rskafka::record::Record {
        rskafka::record::Record {
            key: Some(key.as_bytes().to_vec()),
            value: Some(b"{}".to_vec()),
            headers: header.map(|h| (HEADER.to_owned(), h.as_bytes().to_vec())).into_iter().collect(),
            timestamp: chrono::Utc::now(),
        }
    }

    fn start(topic: &str, partition: i32, offset: i64) -> PartitionOffset {
        PartitionOffset { topic: topic.into(), partition, offset }
    }

    const CAPS: Caps = Caps { max_records: 1_000, timeout: Duration::from_secs(5) };

    #[tokio::test]
    async fn reads_from_the_stored_starts_and_keeps_only_records_that_can_be_ours() {
        let broker = FakeBroker::acking();
        let records: Vec<_> = (0..250).map(|i| record(&format!("k{i}"), (i % 5 != 0).then_some("c1"))).collect();
        broker.append("t", 0, records);
        broker.append("t", 1, vec![record("x", Some("c1"))]);
        let topics = [("t".to_string(), 2), ("gone".to_string(), 1)];
        let stored = [start("t", 0, 50), start("t", 1, 1), start("gone", 3, 0), start("other", 0, 0)];
        let found = read_back(broker.as_ref(), &topics, &stored, 10, CAPS).await.unwrap();
        assert_eq!((found.records, found.partitions), (200, 1), "pages of 100 from offset 50; nothing after 1");
        assert_eq!(found.recovered.len(), 160, "records without the header are not ours");
        assert_eq!(found.recovered.window(), 10);
    }

    #[tokio::test]
    async fn the_record_cap_is_checked_before_reading_and_zero_turns_it_off() {
        let broker = FakeBroker::acking();
        broker.append("t", 0, (0..30).map(|i| record(&format!("k{i}"), Some("c1"))).collect());
        let topics = [("t".to_string(), 1)];
        let caps = Caps { max_records: 29, ..CAPS };
        let e = read_back(broker.as_ref(), &topics, &[start("t", 0, 0)], 10, caps).await.unwrap_err();
        assert!(matches!(e, ReadBackError::TooManyRecords { records: 30, max: 29 }), "{e}");
        assert!(e.to_string().contains("RESUME_READBACK_MAX_RECORDS"));
        let off = Caps { max_records: 0, ..CAPS };
        assert!(matches!(read_back(broker.as_ref(), &topics, &[], 10, off).await, Err(ReadBackError::Off)));
    }

    #[tokio::test]
    async fn transaction_markers_are_read_past_and_an_open_transaction_is_reported_incomplete() {
        let broker = FakeBroker::acking();
        broker.append("t", 0, (0..5).map(|i| record(&format!("k{i}"), Some("c1"))).collect());
        broker.append_marker("t", 0);
        broker.append("t", 0, vec![record("k5", Some("c1"))]);
        broker.append_marker("t", 0);
        let topics = [("t".to_string(), 1)];
        let found = read_back(broker.as_ref(), &topics, &[start("t", 0, 0)], 10, CAPS).await.unwrap();
        assert_eq!((found.records, found.recovered.len()), (6, 6), "every record is found");
        assert!(found.stalled.is_empty(), "markers, even the last one, are read past: {:?}", found.stalled);

        // Another producer's transaction open at offset 3: reads stop there (the last stable
        // offset), below the end.
        broker.open_transaction_at(3);
        let found = read_back(broker.as_ref(), &topics, &[start("t", 0, 0)], 10, CAPS).await.unwrap();
        assert_eq!(found.records, 3, "what is there before it is found");
        assert_eq!(found.stalled, vec![start("t", 0, 3)], "and where it could not read on is reported");
    }
}
