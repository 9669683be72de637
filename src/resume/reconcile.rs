//! Before anything is sent: the partitions' end offsets start the read-back ledger, and a
//! resumed run reads back what of its unsettled lines is already in the topic (see
//! [`super::readback`]), so that it does not send them again.
//!
//! - A **fresh start** (no row, or one set back to `pending`) reads nothing back, whatever an
//!   earlier run of the same job id stored, and stores the end offsets at once, so that even
//!   a crash before its first status write leaves a place to read back from.
//! - A **resume** with stored offsets reads back from them. The stored offsets are held as
//!   the ledger's floor until matching has ended, and the records found are handed to the
//!   pipeline to match. Partitions the read-back could not read to their end (a cap, Kafka,
//!   another producer's open transaction) are reported one by one (`read-back incomplete`):
//!   what was found there still counts, and the lines whose records lie past it are sent
//!   again. With the read-back off, every unsettled line is sent again.
//! - A resume without stored offsets (a crash before the first write, an older version) sends
//!   the unsettled lines again, and stores the end offsets at once.

use std::sync::Arc;

use super::readback::{read_back, Caps, Report};
use rw_core::resume::Fallback;
use rw_core::resume::Recovered;
use rw_core::resume::StartPoint;
use rw_core::resume::{Ledger, PartitionOffset};
use rw_core::{Broker, BrokerError, Ours};

/// Logged by a resume that has nothing to read back: no earlier run of this worker stored its
/// offsets, which each stores before it sends anything, and its row counts no line.
pub const NOTHING_SENT_BEFORE: &str =
    "nothing to read back: no earlier run of this worker stored its offsets, so none sent a line";

/// What the pipeline starts from.
#[derive(Debug)]
pub struct Reconciled {
    /// The read-back ledger: the partitions' ends as listed now, and a resumed run's floor.
    pub ledger: Ledger,
    /// The records of this worker's lines found in the topic, to match before sending.
    pub recovered: Option<Recovered>,
    /// Offsets to store before anything is sent (a fresh start, or none were stored).
    pub store_now: Option<Vec<PartitionOffset>>,
    /// What the read-back did (`None` without one).
    pub read_back: Option<Report>,
    /// Where it fell back to sending lines again unseen (each logged here), one per partition
    /// for [`Fallback::Partition`].
    pub fallbacks: Vec<Fallback>,
}

/// The topics as the resume sees them.
#[derive(Debug, Clone, Copy)]
pub struct Topics<'a> {
    /// Each topic and its partition count.
    pub all: &'a [(String, i32)],
    /// Each topic and the partitions this worker sends to (see [`rw_core::Spread`]).
    pub own: &'a [(String, Vec<i32>)],
}

/// Reconciles the run that starts at `start` with the topics and the offsets an earlier
/// run `stored`. `ours` admits the keys of this worker's lines after the resume point;
/// `window` is the unsettled-lines bound.
pub async fn reconcile(
    broker: &Arc<dyn Broker>,
    topics: Topics<'_>,
    start: &StartPoint,
    stored: &[PartitionOffset],
    ours: Ours,
    window: u64,
    caps: Caps,
) -> Result<Reconciled, BrokerError> {
    let mut ends = Vec::new();
    for (topic, partitions) in topics.own {
        for &partition in partitions {
            ends.push(broker.end_offset(topic, partition).await?);
        }
    }
    let mut ledger = Ledger::new(topics.own, &ends);
    if stored.is_empty() || !start.resumed {
        let mut fallbacks = Vec::new();
        if start.resumed && start.snapshot.counts.total > 0 {
            fallbacks.push(Fallback::NoOffsets);
            tracing::warn!(
                fallback = Fallback::NoOffsets.name(),
                "read-back incomplete: no read-back offsets stored for this worker; unsettled lines after the resume \
                 point are sent again"
            );
        }
        if start.resumed && start.snapshot.counts.total == 0 && stored.is_empty() {
            tracing::info!("{}", NOTHING_SENT_BEFORE);
        }
        if !start.resumed && !stored.is_empty() {
            tracing::info!("a fresh start: the read-back offsets an earlier run of this job stored are replaced");
        }
        let store_now = Some(ledger.starts(0));
        return Ok(Reconciled { ledger, recovered: None, store_now, read_back: None, fallbacks });
    }
    let found = match read_back(broker, topics.all, stored, &Arc::new(ours), window, caps).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(
                fallback = Fallback::Off.name(),
                error = %rw_core::Chain(&e),
                "read-back incomplete: unsettled lines after the resume point are sent again"
            );
            let fallbacks = vec![Fallback::Off];
            return Ok(Reconciled { ledger, recovered: None, store_now: None, read_back: None, fallbacks });
        }
    };
    for cut in &found.incomplete {
        tracing::warn!(
            fallback = Fallback::Partition.name(),
            topic = cut.at.topic,
            partition = cut.at.partition,
            at = cut.at.offset,
            end = cut.end,
            why = %cut.why,
            "read-back incomplete: this worker's lines whose records lie past `at` in this partition are sent again"
        );
    }
    tracing::info!(
        records = found.records,
        ours = found.ours,
        read_per_ours = format!("{:.1}", found.read_per_ours()),
        mib = found.bytes / (1 << 20),
        mib_per_sec = format!("{:.0}", found.bytes_per_sec() / f64::from(1 << 20)),
        partitions = found.partitions,
        incomplete = found.incomplete.len(),
        ms = found.took.as_millis() as u64,
        "read back the topic after the stored offsets; lines found there are not sent again"
    );
    let report = found.report();
    ledger.hold_floor(stored);
    let recovered = if found.recovered.is_empty() {
        ledger.release_floor(None);
        None
    } else {
        Some(found.recovered)
    };
    let fallbacks = vec![Fallback::Partition; found.incomplete.len()];
    Ok(Reconciled { ledger, recovered, store_now: None, read_back: Some(report), fallbacks })
}
