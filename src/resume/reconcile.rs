//! Before anything is sent: the partitions' end offsets start the read-back ledger, and a
//! resumed run reads back what of its unsettled lines is already in the topic (see
//! [`super::readback`]), so that it does not send them again.
//!
//! - A **fresh start** (no row, or one set back to `pending`) reads nothing back, whatever an
//!   earlier run of the same job id stored, and stores the end offsets at once, so that even
//!   a crash before its first status write leaves a place to read back from.
//! - A **resume** with stored offsets reads back from them. When the read-back completes (or
//!   stalls on some partitions, which it reports), the stored offsets are held as the
//!   ledger's floor until matching has ended, and the records found are handed to the
//!   pipeline to match. When it fails or passes a cap, the resume falls back to sending the
//!   unsettled lines again (at least once, within the unsettled-lines bound) and says so.
//! - A resume without stored offsets (a crash before the first write, an older version) sends
//!   the unsettled lines again, and stores the end offsets at once.

use super::offsets::{Ledger, PartitionOffset};
use super::readback::{read_back, Caps};
use super::recover::Recovered;
use super::rule::StartPoint;
use crate::broker::{Broker, BrokerError};

/// What the pipeline starts from.
#[derive(Debug)]
pub struct Reconciled {
    /// The read-back ledger: the partitions' ends as listed now, and a resumed run's floor.
    pub ledger: Ledger,
    /// The records of this worker's lines found in the topic, to match before sending.
    pub recovered: Option<Recovered>,
    /// Offsets to store before anything is sent (a fresh start, or none were stored).
    pub store_now: Option<Vec<PartitionOffset>>,
    /// Records read back (0 without a read-back, or when it failed).
    pub records_read_back: u64,
}

/// Reconciles the run that starts at `start` with the topics (name, partition count) and the
/// offsets an earlier run `stored`. `window` is the unsettled-lines bound.
pub async fn reconcile(
    broker: &dyn Broker,
    topics: &[(String, i32)],
    start: &StartPoint,
    stored: &[PartitionOffset],
    window: u64,
    caps: Caps,
) -> Result<Reconciled, BrokerError> {
    let mut ends = Vec::new();
    for (topic, n) in topics {
        for partition in 0..*n {
            ends.push(broker.end_offset(topic, partition).await?);
        }
    }
    let mut ledger = Ledger::new(topics, &ends);
    if stored.is_empty() || !start.resumed {
        if start.resumed && start.snapshot.counts.total > 0 {
            tracing::warn!(
                "no read-back offsets stored for this worker: unsettled lines after the resume point are sent again"
            );
        }
        if !start.resumed && !stored.is_empty() {
            tracing::info!("a fresh start: the read-back offsets an earlier run of this job stored are replaced");
        }
        let store_now = Some(ledger.starts(0));
        return Ok(Reconciled { ledger, recovered: None, store_now, records_read_back: 0 });
    }
    let mut records_read_back = 0;
    let recovered = match read_back(broker, topics, stored, window, caps).await {
        Ok(found) => {
            records_read_back = found.records;
            tracing::info!(
                records = found.records,
                candidates = found.recovered.len(),
                partitions = found.partitions,
                stalled = found.stalled.len(),
                ms = found.took.as_millis() as u64,
                "read back the topic after the stored offsets; lines found there are not sent again"
            );
            ledger.hold_floor(stored);
            if found.recovered.is_empty() {
                ledger.release_floor(None);
                None
            } else {
                Some(found.recovered)
            }
        }
        Err(e) => {
            tracing::warn!(
                error = %crate::error::Chain(&e),
                bound = window,
                "read-back incomplete: unsettled lines after the resume point are sent again (at least once, at most the bound)"
            );
            None
        }
    };
    Ok(Reconciled { ledger, recovered, store_now: None, records_read_back })
}
