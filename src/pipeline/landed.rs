//! Did a batch whose answer was lost land anyway? A produce that fails with a disconnect or
//! a time-out may have been written by the broker; sending it again would write it twice.
//! Before each new attempt the producer reads the partition from the lowest offset the
//! batch could be at (see [`crate::resume::offsets::Ledger::sent`]) to its end, and looks for the
//! batch's records at consecutive offsets, in order — a batch is written whole or not at
//! all. Found: it counts as delivered at that base offset. Read to the end without it: it is
//! sent again.
//!
//! A record is recognised by its key, which is its line's identity (see
//! [`crate::resume::recover`]): no other line's record, whether of this run, of a batch whose answer
//! is still on the way, or of another worker, can pass for one of the batch's.
//!
//! Bounded: one check takes at most [`CHECK_TIMEOUT`]; a check that fails or times out (the
//! broker is still away) is asked again after the next pause, not answered by sending, so
//! the delivery deadline bounds it like any retry. A range longer than
//! [`CHECK_MAX_RECORDS`], or one that cannot be read to its end (a transaction marker at
//! the end, another producer's open transaction), is not searched further: the batch is sent
//! again (at least once), never waited on until the run stops.

use std::time::Duration;

use crate::broker::{Broker, Page, PartitionRange, Records};
use crate::resume::recover::{Signature, Signer};

/// The longest one check may take (a broker that is down fails it sooner or later).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// The most records one check reads.
pub const CHECK_MAX_RECORDS: u64 = 100_000;

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Landed {
    /// Written at this base offset.
    At(i64),
    /// Not in the partition: send it again.
    Absent,
    /// The partition could not be read (now): ask again later.
    Unknown,
}

/// Where `records` are in the partition at or after `from`.
pub(super) async fn find(broker: &dyn Broker, topic: &str, partition: i32, from: i64, records: &Records) -> Landed {
    let check = async {
        let Ok(mut range) = PartitionRange::open(broker, topic, partition, from).await else { return Landed::Unknown };
        if range.is_empty() || range.len() > CHECK_MAX_RECORDS {
            return Landed::Absent;
        }
        let signer = Signer::default();
        let want: Vec<Signature> = records.iter().map(|r| signer.sign(r.key, r.value, r.header)).collect();
        let mut run = Run::default();
        loop {
            match range.next().await {
                Err(_) => return Landed::Unknown,
                Ok(Page::End) => return Landed::Absent,
                Ok(Page::Stalled) => {
                    let (at, end) = (range.at, range.end);
                    tracing::info!(
                        topic,
                        partition,
                        at,
                        end,
                        "the partition could not be read to its end; the batch is sent again"
                    );
                    return Landed::Absent;
                }
                Ok(Page::Records(page)) => {
                    for (offset, record) in page {
                        if let Some(base) = run.next(offset, signer.sign_record(&record), &want) {
                            return Landed::At(base);
                        }
                    }
                }
            }
        }
    };
    tokio::time::timeout(CHECK_TIMEOUT, check).await.unwrap_or(Landed::Unknown)
}

/// A run of the wanted records at consecutive offsets.
#[derive(Debug, Default)]
struct Run {
    base: i64,
    len: usize,
}

impl Run {
    /// The record at `offset` (its signature, `None` when it cannot be one of them): the
    /// base offset once the whole batch was seen.
    fn next(&mut self, offset: i64, sig: Option<Signature>, want: &[Signature]) -> Option<i64> {
        let continues = self.len > 0 && offset == self.base + self.len as i64;
        if sig.is_some() && continues && want.get(self.len) == sig.as_ref() {
            self.len += 1;
        } else if sig.is_some() && want.first() == sig.as_ref() {
            (self.base, self.len) = (offset, 1);
        } else {
            self.len = 0;
        }
        (self.len == want.len()).then_some(self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FakeBroker;

    /// The records with these keys (padded to a key's length), in order.
    fn records(keys: &[&str]) -> Records {
        let mut out = Records::default();
        for k in keys {
            let mut key = [b'-'; crate::broker::KEY_LEN];
            key[..k.len()].copy_from_slice(k.as_bytes());
            out.push(&key, b"{}", &std::sync::Arc::from(&b"c1"[..]));
        }
        out
    }

    fn record(key: &str) -> rskafka::record::Record {
        records(&[key]).to_kafka().remove(0)
    }

    #[tokio::test]
    async fn a_batch_is_found_whole_at_consecutive_offsets() {
        let broker = FakeBroker::acking();
        let batch = records(&["a", "b"]);
        // 0: a, 1: x, 2: a, 3: x, 4: a, 5: b
        let log = ["a", "x", "a", "x", "a", "b"].map(record).to_vec();
        broker.append("t", 0, log);
        assert_eq!(find(broker.as_ref(), "t", 0, 0, &batch).await, Landed::At(4));
        assert_eq!(find(broker.as_ref(), "t", 0, 5, &batch).await, Landed::Absent, "not after 5");
        let reversed = records(&["b", "a"]);
        assert_eq!(find(broker.as_ref(), "t", 0, 0, &reversed).await, Landed::Absent, "order");
        assert_eq!(find(broker.as_ref(), "t", 1, 0, &batch).await, Landed::Absent, "empty partition");
    }

    #[tokio::test]
    async fn a_range_that_stalls_before_its_end_is_answered_absent_not_waited_on() {
        let broker = FakeBroker::acking();
        broker.append("t", 0, ["x", "y"].map(record).to_vec());
        // A transaction marker at the end: an offset that no fetch returns.
        broker.append_marker("t", 0);
        assert_eq!(find(broker.as_ref(), "t", 0, 0, &records(&["a"])).await, Landed::Absent);
        assert_eq!(find(broker.as_ref(), "t", 0, 2, &records(&["a"])).await, Landed::Absent);
    }
}
