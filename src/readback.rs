//! The resume read-back: before a resumed run sends anything, it reads each partition it
//! had written to, from the stored read-back start (see [`crate::offsets`]) to the end
//! offset listed now, and collects the signatures of the records it finds (see
//! [`crate::recover`]). Records without a key or without the `connection_ids` header cannot
//! be this worker's and are read past.
//!
//! Bounded: it stops at the end offsets taken when it starts, and it is capped in records
//! (`RESUME_READBACK_MAX_RECORDS`, checked against the ranges' sizes before anything is
//! read) and in time (`RESUME_READBACK_TIMEOUT_SECS`). Past a cap, or when Kafka fails it,
//! the resume falls back to sending the unsettled lines again (at least once, within the
//! unsettled-lines bound), and says so in the log.

use std::time::{Duration, Instant};

use crate::batcher::HEADER;
use crate::offsets::PartitionOffset;
use crate::recover::Recovered;
use crate::sink::{Sink, SinkError};

/// Consecutive empty fetches before `end` after which a partition counts as read (records
/// removed by compaction or retention leave nothing to read).
const EMPTY_FETCHES: u32 = 3;

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
    Kafka(#[from] SinkError),
}

/// What the read-back found.
#[derive(Debug)]
pub struct ReadBack {
    pub recovered: Recovered,
    /// Records read, this worker's or not.
    pub records: u64,
    /// Partitions read.
    pub partitions: usize,
    pub took: Duration,
}

/// Reads back the partitions of `stored` that are among `topics` (name, partition count).
/// `window` is the matching's miss window (the unsettled-lines bound).
pub async fn read_back(
    sink: &dyn Sink,
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
            let end = sink.end_offset(&s.topic, s.partition).await?;
            if end > s.offset {
                ranges.push((s, end));
            }
        }
        let records: u64 = ranges.iter().map(|(s, end)| (end - s.offset) as u64).sum();
        if records > caps.max_records {
            return Err(ReadBackError::TooManyRecords { records, max: caps.max_records });
        }
        let mut recovered = Recovered::new(window);
        let mut read = 0;
        for (s, end) in &ranges {
            read += read_partition(sink, s, *end, &mut recovered).await?;
        }
        Ok(ReadBack { recovered, records: read, partitions: ranges.len(), took: Duration::ZERO })
    };
    match tokio::time::timeout(caps.timeout, work).await {
        Ok(r) => r.map(|r| ReadBack { took: started.elapsed(), ..r }),
        Err(_) => Err(ReadBackError::TimedOut { after: caps.timeout }),
    }
}

/// Reads one partition from its stored start to `end`; returns the records read.
async fn read_partition(
    sink: &dyn Sink,
    from: &PartitionOffset,
    end: i64,
    into: &mut Recovered,
) -> Result<u64, SinkError> {
    let (mut at, mut read, mut empty) = (from.offset, 0, 0);
    while at < end && empty < EMPTY_FETCHES {
        let before = at;
        for (offset, record) in sink.fetch(&from.topic, from.partition, at).await? {
            if offset >= end {
                at = end;
                break;
            }
            at = offset + 1;
            read += 1;
            if let (Some(key), Some(header)) = (&record.key, record.headers.get(HEADER)) {
                into.insert(key, record.value.as_deref().unwrap_or_default(), header);
            }
        }
        empty = if at == before { empty + 1 } else { 0 };
    }
    if at < end {
        tracing::info!(topic = from.topic, partition = from.partition, at, end, "nothing more to read back");
    }
    Ok(read)
}
