//! Did a batch whose answer was lost land anyway? A produce that fails with a disconnect or
//! a time-out may have been written by the broker; sending it again would write it twice.
//! Before each new attempt the producer reads the partition from the lowest offset the
//! batch could be at (see [`rw_core::resume::Ledger::sent`]) to its end, and looks for the
//! batch's records at consecutive offsets, in order — a batch is written whole or not at
//! all. Found: it counts as delivered at that base offset. Read to the end without it: it is
//! sent again.
//!
//! A record is recognised by its key, which is its line's identity (see
//! [`rw_core::resume::Recovered`]), then its value and header, compared as bytes: no other line's
//! record, whether of this run, of a batch whose answer is still on the way, or of another
//! worker, can pass for one of the batch's. A record whose key is not the one looked for
//! costs one comparison of 36 bytes, so a range full of other producers' records (a live
//! topic during a broker outage) streams by at the speed of the fetches.
//!
//! Bounded in time, not in records: one check takes at most [`CHECK_TIMEOUT`]. A check that
//! fails or times out (the broker is still away, or the range is long) is asked again after
//! the next pause, from where it got to ([`Landed::Unknown`]), not answered by sending, so
//! the delivery deadline bounds it like any retry. A range that cannot be read to its end (a
//! transaction marker at the end, another producer's open transaction) is not searched
//! further: the batch is sent again (at least once), never waited on until the run stops.

use std::time::Duration;

use rw_core::{Broker, Page, PartitionRange, Record, RecordRef, Records, HEADER};

/// The longest one check may take before it is asked again (from where it got to).
pub(super) const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Landed {
    /// Written at this base offset.
    At(i64),
    /// Not in the partition: send it again.
    Absent,
    /// The partition could not be read to its end (now): ask again later, from this offset
    /// (the batch does not start below it).
    Unknown(i64),
}

impl Landed {
    /// The result's name, for the metrics.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Landed::At(_) => "found",
            Landed::Absent => "absent",
            Landed::Unknown(_) => "unknown",
        }
    }
}

/// Where `records` are in the partition at or after `from`.
pub(super) async fn find(broker: &dyn Broker, topic: &str, partition: i32, from: i64, records: &Records) -> Landed {
    let deadline = tokio::time::Instant::now() + CHECK_TIMEOUT;
    let open = tokio::time::timeout_at(deadline, PartitionRange::open(broker, topic, partition, from));
    let Ok(Ok(mut range)) = open.await else { return Landed::Unknown(from) };
    if range.is_empty() {
        return Landed::Absent;
    }
    let mut run = Run::default();
    loop {
        let page = match tokio::time::timeout_at(deadline, range.next()).await {
            Ok(Ok(page)) => page,
            // The records from `run.base` on may be the batch's first ones.
            Err(_) | Ok(Err(_)) => return Landed::Unknown(if run.len > 0 { run.base } else { range.at }),
        };
        match page {
            Page::End => return Landed::Absent,
            Page::Stalled => {
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
            Page::Records(page) => {
                for (offset, record) in page {
                    if let Some(base) = run.next(offset, &record, records) {
                        return Landed::At(base);
                    }
                }
            }
        }
    }
}

/// Whether `record` is `want`: key first (most records differ there), then value and header.
fn is(record: &Record, want: RecordRef<'_>) -> bool {
    record.key.as_deref() == Some(want.key)
        && record.value.as_deref().unwrap_or_default() == want.value
        && record.headers.get(HEADER).map(Vec::as_slice) == Some(want.header)
}

/// A run of the wanted records at consecutive offsets.
#[derive(Debug, Default)]
struct Run {
    base: i64,
    len: usize,
}

impl Run {
    /// The record at `offset`: the base offset once the whole batch was seen.
    fn next(&mut self, offset: i64, record: &Record, want: &Records) -> Option<i64> {
        let continues = self.len > 0 && offset == self.base + self.len as i64;
        if continues && self.len < want.len() && is(record, want.get(self.len)) {
            self.len += 1;
        } else if !want.is_empty() && is(record, want.get(0)) {
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
            let mut key = [b'-'; rw_core::KEY_LEN];
            key[..k.len()].copy_from_slice(k.as_bytes());
            out.push(&key, b"{}", &std::sync::Arc::from(&b"c1"[..]));
        }
        out
    }

    fn record(key: &str) -> rw_core::Record {
        records(&[key]).to_kafka().next().unwrap()
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
    async fn a_batch_behind_more_other_records_than_the_old_cap_is_found() {
        let broker = FakeBroker::acking();
        // A live topic during an outage: 250,000 records of other producers (the check gave
        // up past 100,000 before), then the batch, then more of theirs.
        let theirs = |n: usize| (0..n).map(|i| record(&format!("other-{i}"))).collect::<Vec<_>>();
        broker.append("t", 0, theirs(250_000));
        broker.append("t", 0, ["a", "b", "c"].map(record).to_vec());
        broker.append("t", 0, theirs(1_000));
        assert_eq!(find(broker.as_ref(), "t", 0, 0, &records(&["a", "b", "c"])).await, Landed::At(250_000));
        assert_eq!(find(broker.as_ref(), "t", 0, 0, &records(&["a", "c"])).await, Landed::Absent);
    }

    #[tokio::test]
    async fn the_same_key_with_other_bytes_is_not_the_batch() {
        let broker = FakeBroker::acking();
        let mut other = Records::default();
        let mut key = [b'-'; rw_core::KEY_LEN];
        key[0] = b'a';
        other.push(&key, b"{\"x\":1}", &std::sync::Arc::from(&b"c1"[..]));
        broker.append("t", 0, other.to_kafka().collect());
        assert_eq!(find(broker.as_ref(), "t", 0, 0, &records(&["a"])).await, Landed::Absent, "another value");
        let mut other = Records::default();
        other.push(&key, b"{}", &std::sync::Arc::from(&b"c2"[..]));
        broker.append("t", 0, other.to_kafka().collect());
        assert_eq!(find(broker.as_ref(), "t", 0, 0, &records(&["a"])).await, Landed::Absent, "another header");
        broker.append("t", 0, vec![record("a")]);
        assert_eq!(find(broker.as_ref(), "t", 0, 0, &records(&["a"])).await, Landed::At(2));
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
