//! Where in each partition a resumed run must start reading to find every record of its
//! unsettled lines: the per-partition read-back start offsets, kept by [`Ledger`].
//!
//! The rule. A line after the watermark may already be in the topic if its batch was
//! acknowledged, or was sent and its answer lost. Every batch is registered when it is
//! sent, with the highest sequence number among its lines and a lower bound of the offsets it
//! can land at: the partition's end offset as this run knows it (the end offset listed at
//! start-up, raised by every acknowledgement), which no later write can land below. The
//! acknowledgement replaces the bound with the batch's base offset. A partition's read-back
//! start is the lowest bound among the batches that still hold a line at or after the
//! watermark, else its known end offset. Batches wholly below the watermark are dropped.
//!
//! A run that resumed and matched lines against the topic (see [`crate::resume::recover`]) also
//! holds the offsets it read back from as a **floor**, because the lines it matched were
//! never sent by this run and so have no batch here: the floor stays until the matching is
//! over and the watermark has passed the last matched line.
//!
//! Offsets are written after the status row they belong to. Offsets older than the row are
//! lower, so always safe; the row is never older than its offsets.

use crate::tracker::Seq;

/// One partition's read-back start, as stored beside the worker's row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PartitionOffset {
    /// The topic's name.
    pub topic: String,
    /// The partition's number in the topic.
    pub partition: i32,
    /// The offset a resumed run starts reading this partition back from.
    pub offset: i64,
}

#[derive(Debug)]
struct Part {
    topic: String,
    partition: i32,
    /// The partition's end offset as far as this run knows: no later write lands below it.
    next: i64,
    /// The stored start this run read back from, while it still matters.
    floor: Option<i64>,
    /// Batches sent: (highest line, lowest offset it can be at). The bound stays the end
    /// known when it was sent, even after its acknowledgement: an earlier attempt whose
    /// answer was lost may have landed below the acknowledged base.
    batches: Vec<(Seq, i64)>,
}

/// The read-back start offsets of every partition this run can send to.
#[derive(Debug, Default)]
pub struct Ledger {
    parts: Vec<Part>,
    /// Index of each topic's partition 0 in `parts`.
    first: Vec<usize>,
    /// The floor is dropped once the watermark is past this line (set when matching ends).
    floor_until: Option<Seq>,
}

impl Ledger {
    /// A ledger for `topics` (name, and the partitions this worker sends to) whose
    /// partitions end at `ends` (one per partition, topic after topic), as listed at start-up.
    pub fn new(topics: &[(String, Vec<i32>)], ends: &[i64]) -> Self {
        let mut parts = Vec::new();
        let mut first = Vec::new();
        for (topic, partitions) in topics {
            first.push(parts.len());
            for &partition in partitions {
                let next = ends.get(parts.len()).copied().unwrap_or(0);
                parts.push(Part { topic: topic.clone(), partition, next, floor: None, batches: Vec::new() });
            }
        }
        Ledger { parts, first, floor_until: None }
    }

    /// The stored starts a resumed run read back from: they hold until [`Ledger::release_floor`].
    pub fn hold_floor(&mut self, stored: &[PartitionOffset]) {
        for s in stored {
            if let Some(p) = self.parts.iter_mut().find(|p| p.topic == s.topic && p.partition == s.partition) {
                p.floor = Some(s.offset);
            }
        }
    }

    /// Matching is over; the floor goes once the watermark is past `last_matched` (`None`:
    /// nothing was matched, so it goes now).
    pub fn release_floor(&mut self, last_matched: Option<Seq>) {
        self.floor_until = Some(last_matched.map_or(0, |s| s + 1));
    }

    /// Registers a batch of `topic` (by index) sent to `partition` whose highest line is `max_seq`.
    /// Returns the lowest offset it can land at (`None` when the ledger has no such partition).
    pub fn sent(&mut self, topic: usize, partition: i32, max_seq: Seq) -> Option<i64> {
        let p = self.part(topic, partition)?;
        p.batches.push((max_seq, p.next));
        Some(p.next)
    }

    /// A partition of the ledger; `None` when it was made without it (a run without Kafka
    /// offsets, such as the in-process tests that build an engine alone).
    fn part(&mut self, topic: usize, partition: i32) -> Option<&mut Part> {
        let from = *self.first.get(topic)?;
        let to = self.first.get(topic + 1).copied().unwrap_or(self.parts.len());
        self.parts[from..to].iter_mut().find(|p| p.partition == partition)
    }

    /// Records of `topic` (by index) were acknowledged in `partition` at `base`, `count` of
    /// them: the partition's end is at least past them.
    pub fn acked(&mut self, topic: usize, partition: i32, base: i64, count: usize) {
        if let Some(p) = self.part(topic, partition) {
            p.next = p.next.max(base + count as i64);
        }
    }

    /// The read-back start of every partition, for a status row whose watermark is at least
    /// `watermark` (the first unsettled line). Drops the batches wholly below it.
    pub fn starts(&mut self, watermark: Seq) -> Vec<PartitionOffset> {
        if self.floor_until.is_some_and(|until| watermark >= until) {
            for p in &mut self.parts {
                p.floor = None;
            }
        }
        self.parts
            .iter_mut()
            .map(|p| {
                p.batches.retain(|(max_seq, _)| *max_seq >= watermark);
                let low = p.batches.iter().map(|(_, low)| *low).min().unwrap_or(p.next);
                let offset = p.floor.map_or(low, |f| f.min(low));
                PartitionOffset { topic: p.topic.clone(), partition: p.partition, offset }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> Ledger {
        Ledger::new(&[("a".into(), vec![0, 1]), ("b".into(), vec![0])], &[10, 20, 30])
    }

    fn offsets(l: &mut Ledger, watermark: Seq) -> Vec<i64> {
        l.starts(watermark).into_iter().map(|p| p.offset).collect()
    }

    #[test]
    fn without_batches_the_start_is_the_listed_end() {
        let mut l = ledger();
        assert_eq!(offsets(&mut l, 0), [10, 20, 30]);
        let s = l.starts(0);
        assert_eq!((s[2].topic.as_str(), s[2].partition), ("b", 0));
    }

    #[test]
    fn a_batch_holds_its_partition_until_the_watermark_passes_its_last_line() {
        let mut l = ledger();
        l.sent(0, 1, 99);
        // In flight: it can land anywhere from the known end on.
        assert_eq!(offsets(&mut l, 50), [10, 20, 30]);
        l.acked(0, 1, 25, 100);
        assert_eq!(offsets(&mut l, 50), [10, 20, 30], "acknowledged at 25, but the bound stays the lowest");
        // The watermark passed line 99: the batch is settled below it, the start moves on.
        assert_eq!(offsets(&mut l, 100), [10, 125, 30]);
    }

    #[test]
    fn the_lowest_unsettled_batch_wins_and_later_sends_start_at_the_known_end() {
        let mut l = ledger();
        l.sent(1, 0, 9);
        l.acked(1, 0, 30, 10);
        l.sent(1, 0, 19);
        l.acked(1, 0, 40, 10);
        l.sent(1, 0, 29); // sent after both acks: lands at 50 or later
        assert_eq!(offsets(&mut l, 5)[2], 30);
        assert_eq!(offsets(&mut l, 10)[2], 40);
        assert_eq!(offsets(&mut l, 20)[2], 50);
        l.acked(1, 0, 50, 10);
        assert_eq!(offsets(&mut l, 30)[2], 60);
    }

    #[test]
    fn the_floor_holds_until_matching_ends_and_the_watermark_passes_the_last_match() {
        let mut l = ledger();
        l.hold_floor(&[PartitionOffset { topic: "a".into(), partition: 0, offset: 3 }]);
        assert_eq!(offsets(&mut l, 500), [3, 20, 30]);
        l.release_floor(Some(600));
        assert_eq!(offsets(&mut l, 600), [3, 20, 30]);
        assert_eq!(offsets(&mut l, 601), [10, 20, 30]);
    }

    #[test]
    fn nothing_matched_releases_the_floor_at_once() {
        let mut l = ledger();
        l.hold_floor(&[PartitionOffset { topic: "b".into(), partition: 0, offset: 1 }]);
        l.release_floor(None);
        assert_eq!(offsets(&mut l, 0), [10, 20, 30]);
    }

    /// One step of the property below.
    #[derive(Debug, Clone)]
    enum Op {
        /// A batch to `partition` whose highest line is the watermark plus `ahead`.
        Send { partition: usize, ahead: u64 },
        /// The broker appends the oldest batch still pending (`count` records).
        Ack { count: usize },
        /// The watermark moves on by `by` lines, and the starts are read.
        Advance { by: u64 },
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (0usize..3, 0u64..20).prop_map(|(partition, ahead)| Op::Send { partition, ahead }),
            (1usize..5).prop_map(|count| Op::Ack { count }),
            (0u64..8).prop_map(|by| Op::Advance { by }),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]
        /// Whatever the order of sends, acknowledgements and watermark moves, each start is
        /// exactly what the rule in the module docs gives, computed here from the history
        /// alone (the end known when each batch was sent, the batches still holding a line at
        /// or after the watermark), and every acknowledged batch that holds such a line lies
        /// at or after it.
        #[test]
        fn each_start_is_the_rule_exactly(
            listed in proptest::collection::vec(0i64..100, 3),
            ops in proptest::collection::vec(op(), 1..80),
        ) {
            let mut l = Ledger::new(&[("t".to_string(), vec![0, 1, 2])], &listed);
            // The model: the log's real end, the end this run knows, and every batch sent
            // as (partition, highest line, end known when sent, base offset once acknowledged).
            let mut log_end = listed.clone();
            let mut known = listed.clone();
            let mut batches: Vec<(usize, u64, i64, Option<i64>)> = Vec::new();
            let mut pending = std::collections::VecDeque::new();
            let mut watermark = 0u64;
            for op in ops {
                match op {
                    Op::Send { partition, ahead } => {
                        let max_seq = watermark + ahead;
                        let bound = l.sent(0, partition as i32, max_seq);
                        proptest::prop_assert_eq!(bound, Some(known[partition]));
                        pending.push_back(batches.len());
                        batches.push((partition, max_seq, known[partition], None));
                    }
                    Op::Ack { count } => {
                        let Some(b) = pending.pop_front() else { continue };
                        let p = batches[b].0;
                        let base = log_end[p];
                        log_end[p] += count as i64;
                        known[p] = known[p].max(base + count as i64);
                        batches[b].3 = Some(base);
                        l.acked(0, p as i32, base, count);
                    }
                    Op::Advance { by } => {
                        watermark += by;
                        let starts = l.starts(watermark);
                        for (p, start) in starts.iter().enumerate() {
                            let holding = batches.iter().filter(|b| b.0 == p && b.1 >= watermark);
                            let want = holding.clone().map(|b| b.2).min().unwrap_or(known[p]);
                            proptest::prop_assert_eq!(start.offset, want, "partition {}", p);
                            for b in holding {
                                if let Some(base) = b.3 {
                                    proptest::prop_assert!(start.offset <= base);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
