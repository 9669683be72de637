//! The CPU stage's core, pure: one line in, its state out, and full record batches handed to
//! a callback. No IO; nothing here can fail on IO.
//!
//! Per line: blank → skipped; too long or not one valid JSON object → error; filtered out →
//! skipped; unroutable → error; else a record (key: the line's identity, the job, the file
//! and the line number, see [`crate::keys::LineKeys`]; value the line's
//! original bytes; header `connection_ids`) appended to its topic's open batch.
//! A batch is handed over when it reaches `batch_size` records or `batch_max_bytes` bytes,
//! or when the pipeline flushes every open batch because too many lines are unsettled (a
//! topic that gets few lines must not pin the watermark; see `pipeline`).

use chrono::Utc;

use crate::broker::{Batch, Records};
use crate::extract::{extract_with, ExtractError, Fields};
use crate::filter::{is_blank, Filter, SkipReason};
use crate::keys::{FileKeys, LineKeys};
use crate::lines::Line;
use crate::resume::recover::{Ended, Recovered};
use crate::route::{RouteError, Router, HEADER};
use crate::tracker::{LineState, Seq};

/// Bytes of a v2 record batch besides its records (base offset, length, epoch, magic, CRC,
/// attributes, offsets, timestamps, producer id and epoch, sequence, count).
pub(crate) const BATCH_OVERHEAD: usize = 61;

/// Bytes of values a topic's first batch reserves room for; later ones reserve what the
/// topic's batch before held, and an eighth more (a topic that gets few lines keeps small
/// batches small).
const MIN_RESERVE: usize = 64 * 1024;

/// Bytes of `v` as a zigzag varint, the way the v2 record format writes lengths and deltas.
pub(crate) fn varint_len(v: i64) -> usize {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    (64 - z.leading_zeros() as usize).div_ceil(7).max(1)
}

/// One record's encoded size in a v2 record batch, before compression, when it is record
/// number `index` of its batch and carries the batch's timestamp (the batcher gives every
/// record of a batch the same one, so the timestamp delta is 0): the length, the attributes
/// byte, the timestamp and offset deltas, the key, the value and the headers.
pub(crate) fn record_size(index: usize, key: usize, value: usize, headers: &[(&str, &[u8])]) -> usize {
    let field = |n: usize| varint_len(n as i64) + n;
    let body = 1
        + varint_len(0)
        + varint_len(index as i64)
        + field(key)
        + field(value)
        + varint_len(headers.len() as i64)
        + headers.iter().map(|(k, v)| field(k.len()) + field(v.len())).sum::<usize>();
    varint_len(body as i64) + body
}

/// Where the batcher's current file starts: line numbers for [`FileKeys`].
#[derive(Debug, Clone, Copy)]
struct FileAt {
    keys: FileKeys,
    start: u64,
    first_line: u64,
}

/// When a batch is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Records per batch (`batch_size`).
    pub records: usize,
    /// Bytes of record values per batch (`KAFKA_BATCH_BYTES`).
    pub value_bytes: usize,
    /// Encoded bytes per batch before compression (`KAFKA_MAX_MESSAGE_BYTES`, the broker's
    /// `max.message.bytes`): a batch is closed before it would pass this, and a record that
    /// alone would pass it is an error.
    pub message_bytes: usize,
}

/// Why a line counted as an error (for logs and dead letters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    /// The line is longer than the longest accepted line: its length in bytes.
    TooLong(u64),
    /// The line is not one valid JSON object.
    Json(ExtractError),
    /// The line cannot be routed (a line is never sent without its `connection_ids` header).
    Route(RouteError),
    /// Its record alone would pass `KAFKA_MAX_MESSAGE_BYTES`: (encoded bound, limit).
    TooLargeForKafka(usize, usize),
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineError::TooLong(n) => write!(f, "line of {n} bytes is longer than the limit"),
            LineError::Json(e) => e.fmt(f),
            LineError::Route(e) => e.fmt(f),
            LineError::TooLargeForKafka(n, max) => {
                write!(f, "too large for Kafka: a record of {n} bytes, KAFKA_MAX_MESSAGE_BYTES is {max}")
            }
        }
    }
}

/// What happened to one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Counted as skipped, and not sent, for this reason.
    Skipped(SkipReason),
    /// Counted as an error, and not sent, for this reason.
    Error(LineError),
    /// Added to an open batch.
    Queued,
    /// Found in the topic by a resumed run's read-back: delivered before, not sent again.
    Found,
}

impl Decision {
    /// The state the tracker gives the line: a queued one is pending, a found one a success.
    pub fn state(&self) -> LineState {
        match self {
            Decision::Skipped(_) => LineState::Skipped,
            Decision::Error(_) => LineState::Error,
            Decision::Queued => LineState::Pending,
            Decision::Found => LineState::Success,
        }
    }
}

struct Open {
    records: Records,
    seqs: Vec<Seq>,
    /// Encoded size of the batch so far.
    encoded: usize,
}

/// Builds batches from lines.
pub struct Batcher<'a> {
    filter: &'a Filter,
    router: &'a Router,
    /// What the filter needs extracted.
    fields: Fields,
    limits: BatchLimits,
    /// Bytes of values a new batch of each topic reserves room for.
    reserve: Vec<usize>,
    file: FileAt,
    open: Vec<Option<Open>>,
    /// `messageCreated` of the latest line that had one.
    pub last_created: String,
    /// A resumed run's records found in the topic, while matching goes on.
    recovered: Option<Recovered>,
    /// How the matching ended, once it has, until the pipeline takes it.
    recovery_ended: Option<Ended>,
}

impl<'a> Batcher<'a> {
    /// A batcher with no open batch, filtering with `filter` and routing with `router`; a
    /// batch holds at least one record whatever `limits.records` says.
    pub fn new(filter: &'a Filter, router: &'a Router, limits: BatchLimits) -> Self {
        let open = (0..router.topics().len()).map(|_| None).collect();
        let limits = BatchLimits { records: limits.records.max(1), ..limits };
        let file = FileAt { keys: LineKeys::for_job("").file(0, ""), start: 1, first_line: 1 };
        Self {
            filter,
            router,
            fields: filter.fields(),
            limits,
            reserve: vec![MIN_RESERVE; router.topics().len()],
            file,
            open,
            last_created: String::new(),
            recovered: None,
            recovery_ended: None,
        }
    }

    /// Lines that would be sent are first looked up in `recovered` (see [`crate::resume::Recovered`]).
    pub fn match_against(&mut self, recovered: Recovered) {
        self.recovered = Some(recovered);
    }

    /// How the matching against the read-back ended, once, when it has.
    pub fn take_recovery_ended(&mut self) -> Option<Ended> {
        self.recovery_ended.take()
    }

    /// The file whose lines come next: its keys, and the sequence number of its line
    /// `first_line`.
    pub fn start_file(&mut self, keys: FileKeys, start: u64, first_line: u64) {
        self.file = FileAt { keys, start, first_line };
    }

    /// Decides the line whose sequence number is `seq` (see [`Batcher::start_file`] for its
    /// line number in its file). When `allow_send` is false (the limit is reached) a line that
    /// would be queued is not; `None` is returned and nothing is recorded.
    pub fn line(
        &mut self,
        seq: Seq,
        line: Line<'_>,
        allow_send: bool,
        mut emit: impl FnMut(Batch),
    ) -> Option<Decision> {
        let text = match line {
            Line::TooLong { len } => return Some(Decision::Error(LineError::TooLong(len))),
            Line::Text(t) => t,
        };
        if is_blank(text) {
            return Some(Decision::Skipped(SkipReason::Blank));
        }
        let env = match extract_with(text, self.fields) {
            Ok(e) => e,
            Err(e) => return Some(Decision::Error(LineError::Json(e))),
        };
        if let Some(c) = env.message_created.as_deref() {
            self.last_created.clear();
            self.last_created.push_str(c);
        }
        if let Err(r) = self.filter.check(&env) {
            return Some(Decision::Skipped(r));
        }
        let target = match self.router.route(&env) {
            Ok(Some(t)) => t,
            Ok(None) => return Some(Decision::Skipped(SkipReason::Stream)),
            Err(e) => return Some(Decision::Error(LineError::Route(e))),
        };
        if !allow_send {
            return None;
        }
        let key = self.file.keys.key(self.file.first_line + (seq - self.file.start));
        let headers = [(HEADER, &target.header[..])];
        let alone = record_size(0, key.len(), text.len(), &headers);
        if BATCH_OVERHEAD + alone > self.limits.message_bytes {
            return Some(Decision::Error(LineError::TooLargeForKafka(alone, self.limits.message_bytes)));
        }
        if let Some(r) = &mut self.recovered {
            let found = r.take(seq, &key, text, &target.header);
            if r.is_over() {
                self.recovery_ended = Some(r.ended());
                self.recovered = None;
            }
            if found {
                return Some(Decision::Found);
            }
        }
        let topic = target.topic;
        // The record's size where it would go; the open batch is closed first if this record
        // would take it past the limit, and the record starts the next one.
        let size = match self.open[topic].as_ref().map(|o| (o.records.len(), o.encoded)) {
            None => alone,
            Some((n, encoded)) => match record_size(n, key.len(), text.len(), &headers) {
                size if encoded + size <= self.limits.message_bytes => size,
                _ => {
                    if let Some(b) = self.take(topic) {
                        emit(b);
                    }
                    alone
                }
            },
        };
        let capacity = self.limits.records.min(4096);
        let bytes = self.reserve[topic];
        let open = self.open[topic].get_or_insert_with(|| Open {
            records: Records::with_capacity(capacity, bytes, Utc::now()),
            seqs: Vec::with_capacity(capacity),
            encoded: BATCH_OVERHEAD,
        });
        open.records.push(&key, text, &target.header);
        open.seqs.push(seq);
        open.encoded += size;
        if open.records.len() >= self.limits.records || open.records.value_bytes() >= self.limits.value_bytes {
            if let Some(b) = self.take(topic) {
                emit(b);
            }
        }
        Some(Decision::Queued)
    }

    fn take(&mut self, topic: usize) -> Option<Batch> {
        let o = self.open[topic].take()?;
        // The next batch's values are likely about as large as this one's.
        let bytes = o.records.value_bytes();
        self.reserve[topic] =
            (bytes + bytes / 8).max(MIN_RESERVE).min(self.limits.value_bytes.min(self.limits.message_bytes));
        Some(Batch { topic, records: o.records, seqs: o.seqs, encoded_bytes: o.encoded })
    }

    /// Hands over every open batch.
    pub fn flush_all(&mut self, mut emit: impl FnMut(Batch)) {
        for topic in 0..self.open.len() {
            if let Some(b) = self.take(topic) {
                emit(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(records: usize) -> BatchLimits {
        BatchLimits { records, value_bytes: 1 << 20, message_bytes: 1_000_000 }
    }

    fn run(lines: &[&str], router: &Router, batch_size: usize) -> (Vec<Option<Decision>>, Vec<Batch>) {
        let filter = Filter::new(&crate::select::StreamSelector::List(vec!["s1".into(), "s2".into()]), None, None);
        let mut b = Batcher::new(&filter, router, limits(batch_size));
        let mut batches = Vec::new();
        let mut out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            out.push(b.line(i as u64 + 1, Line::Text(l.as_bytes()), true, |x| batches.push(x)));
        }
        b.flush_all(|x| batches.push(x));
        (out, batches)
    }

    #[test]
    fn decisions_and_records() {
        let router = Router::fixed("t", &["c1".into(), "c2".into()]);
        let lines = [
            r#"{"messageId":"m1","origin":{"sourceId":"s1"},"messageCreated":"2024-01-01T00:00:00Z"}"#,
            "  ",
            r#"{"origin":{"sourceId":"other"}}"#,
            r#"{"origin":{"slug":"s2"}} x"#,
            r#"{"origin":{"slug":"s2"}}"#,
        ];
        let (d, batches) = run(&lines, &router, 10);
        assert_eq!(d[0], Some(Decision::Queued));
        assert_eq!(d[1], Some(Decision::Skipped(SkipReason::Blank)));
        assert_eq!(d[2], Some(Decision::Skipped(SkipReason::Stream)));
        assert!(matches!(d[3], Some(Decision::Error(LineError::Json(_)))));
        assert_eq!(d[4], Some(Decision::Queued));
        assert_eq!(batches.len(), 1);
        let b = &batches[0];
        assert_eq!(b.seqs, vec![1, 5]);
        let key = |i: usize| String::from_utf8(b.records.get(i).key.to_vec()).unwrap();
        assert_eq!(key(0).as_bytes(), LineKeys::for_job("").file(0, "").key(1), "not messageId");
        assert_eq!(b.records.get(0).value, lines[0].as_bytes());
        assert_eq!(b.records.get(0).header, b"c1,c2");
        assert_eq!(b.records.to_kafka().next().unwrap().headers[HEADER], b"c1,c2", "sent as connection_ids");
        assert!(uuid::Uuid::parse_str(&key(1)).is_ok(), "{}", key(1));
    }

    #[test]
    fn every_line_has_a_key_of_its_own_the_same_on_every_run() {
        let keys = LineKeys::for_job("job-1");
        let k = |job: &LineKeys, i: usize, path: &str, line: u64| {
            String::from_utf8(job.file(i, path).key(line).to_vec()).unwrap()
        };
        let a = k(&keys, 0, "s3://b/f.ndjson", 7);
        assert_eq!(a, k(&LineKeys::for_job("job-1"), 0, "s3://b/f.ndjson", 7), "deterministic");
        let id = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(id.get_version_num(), 8);
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        assert_ne!(a, k(&keys, 0, "s3://b/f.ndjson", 8), "another line");
        assert_ne!(a, k(&keys, 0, "s3://b/g.ndjson", 7), "another file");
        assert_ne!(a, k(&keys, 1, "s3://b/f.ndjson", 7), "the same path listed twice");
        assert_ne!(a, k(&LineKeys::for_job("job-2"), 0, "s3://b/f.ndjson", 7), "another job");
        // Distinct over many lines, up to the largest line number a key holds.
        let f = keys.file(0, "p");
        let many: std::collections::HashSet<crate::broker::Key> =
            (1..=100_000u64).chain([(1 << 62) - 1, (1 << 40) + 3]).map(|l| f.key(l)).collect();
        assert_eq!(many.len(), 100_002);
        // The batcher numbers a file's lines from its first line, whatever the sequence.
        let router = Router::fixed("t", &["c".into()]);
        let filter = Filter::default();
        let mut b = Batcher::new(&filter, &router, limits(10));
        b.start_file(keys.file(0, "s3://b/f.ndjson"), 1_000, 5);
        let mut batches = Vec::new();
        b.line(1_002, Line::Text(br#"{"messageId":"m"}"#), true, |x| batches.push(x));
        b.line(1_003, Line::Text(br#"{"messageId":"m"}"#), true, |x| batches.push(x));
        b.flush_all(|x| batches.push(x));
        assert_eq!(batches[0].records.get(0).key, a.as_bytes());
        assert_ne!(batches[0].records.get(0).key, batches[0].records.get(1).key, "identical lines, two keys");
    }

    #[test]
    fn batches_split_by_count_and_topic() {
        let repo = br#"[{"stream":{"id":"s1"},"destinations":[{"id":"d","connectionId":"c","destinationType":"x"}]},
                        {"stream":{"id":"s2"},"shard":1,"destinations":[{"id":"d","connectionId":"k","destinationType":"x"}]}]"#;
        let router = Router::from_repository("t", repo).unwrap();
        let l1 = r#"{"origin":{"sourceId":"s1"}}"#;
        let l2 = r#"{"origin":{"sourceId":"s2"}}"#;
        let (_, batches) = run(&[l1, l2, l1, l1, l2, l1], &router, 2);
        let shape: Vec<(usize, Vec<u64>)> = batches.iter().map(|b| (b.topic, b.seqs.clone())).collect();
        assert_eq!(shape, vec![(0, vec![1, 3]), (1, vec![2, 5]), (0, vec![4, 6])]);
        assert_eq!(batches[1].records.get(0).header, b"k");
    }

    #[test]
    fn limit_stops_queueing_but_not_deciding() {
        let router = Router::fixed("t", &["c".into()]);
        let filter = Filter::default();
        let mut b = Batcher::new(&filter, &router, limits(10));
        assert_eq!(b.line(1, Line::Text(b"{}"), false, |_| {}), None);
        assert_eq!(b.line(2, Line::Text(b"x"), false, |_| {}).map(|d| d.state()), Some(LineState::Error));
    }

    /// Zigzag varint length, counted byte by byte as an encoder writes it.
    fn written_varint_len(v: i64) -> usize {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        let mut n = 1;
        while z >= 0x80 {
            z >>= 7;
            n += 1;
        }
        n
    }

    #[test]
    fn varint_lengths() {
        for v in [0i64, 1, -1, 63, 64, -64, -65, 8191, 8192, i64::from(i32::MAX), i64::MAX, i64::MIN] {
            assert_eq!(varint_len(v), written_varint_len(v), "{v}");
        }
    }

    /// The exact encoded size of records in a v2 batch (uncompressed), written from the
    /// format's description, independently of rskafka.
    fn encoded_size(records: &[crate::broker::Record]) -> usize {
        let vl = written_varint_len;
        let first = records[0].timestamp.timestamp_millis();
        let mut total = BATCH_OVERHEAD;
        for (i, r) in records.iter().enumerate() {
            let opt = |b: &Option<Vec<u8>>| b.as_ref().map_or(1, |b| vl(b.len() as i64) + b.len());
            let headers: usize =
                r.headers.iter().map(|(k, v)| vl(k.len() as i64) + k.len() + vl(v.len() as i64) + v.len()).sum();
            let body = 1
                + vl(r.timestamp.timestamp_millis() - first)
                + vl(i as i64)
                + opt(&r.key)
                + opt(&r.value)
                + vl(r.headers.len() as i64)
                + headers;
            total += vl(body as i64) + body;
        }
        total
    }

    proptest::proptest! {
        /// Whatever the lines, each line lands in exactly one batch, as one record whose value
        /// is its bytes unchanged, in order; every batch's size is its exact encoded size,
        /// within the limit, and no batch could have taken the next record.
        #[test]
        fn batches_stay_within_the_message_limit(sizes in proptest::collection::vec(0usize..3_000, 1..200)) {
            let router = Router::fixed("t", &["c1".into(), "c2".into()]);
            let filter = Filter::default();
            let limits = BatchLimits { records: 1_000, value_bytes: 1 << 20, message_bytes: 20_000 };
            let mut b = Batcher::new(&filter, &router, limits);
            let mut batches = Vec::new();
            for (i, n) in sizes.iter().enumerate() {
                let line = format!(r#"{{"messageId":"m{i}","pad":"{}"}}"#, "x".repeat(*n));
                b.line(i as u64 + 1, Line::Text(line.as_bytes()), true, |x| batches.push(x));
            }
            b.flush_all(|x| batches.push(x));
            let sent: Vec<u64> = batches.iter().flat_map(|b| b.seqs.iter().copied()).collect();
            proptest::prop_assert_eq!(sent, (1..=sizes.len() as u64).collect::<Vec<_>>(), "each line once, in order");
            for batch in &batches {
                proptest::prop_assert_eq!(batch.seqs.len(), batch.records.len());
                for (seq, r) in batch.seqs.iter().zip(batch.records.iter()) {
                    let line = format!(r#"{{"messageId":"m{}","pad":"{}"}}"#, seq - 1, "x".repeat(sizes[*seq as usize - 1]));
                    proptest::prop_assert_eq!(r.value, line.as_bytes());
                }
            }
            for (i, batch) in batches.iter().enumerate() {
                let exact = encoded_size(&batch.records.to_kafka().collect::<Vec<_>>());
                proptest::prop_assert_eq!(batch.encoded_bytes, exact);
                proptest::prop_assert!(batch.encoded_bytes <= 20_000);
                // Closed only when the next record of its topic would not fit.
                if let Some(next) = batches[i + 1..].iter().find(|b| b.topic == batch.topic) {
                    let mut with: Vec<_> = batch.records.to_kafka().collect();
                    with.extend(next.records.to_kafka().next());
                    proptest::prop_assert!(encoded_size(&with) > 20_000 || batch.records.len() == 1_000);
                }
            }
        }
    }

    #[test]
    fn a_record_too_large_for_kafka_is_an_error_and_the_rest_go_on() {
        let router = Router::fixed("t", &["c".into()]);
        let filter = Filter::default();
        let mut b =
            Batcher::new(&filter, &router, BatchLimits { records: 100, value_bytes: 1 << 20, message_bytes: 2_000 });
        let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(2_000));
        let mut batches = Vec::new();
        let d = b.line(1, Line::Text(big.as_bytes()), true, |x| batches.push(x));
        let Some(Decision::Error(e @ LineError::TooLargeForKafka(..))) = d else { panic!("{d:?}") };
        assert!(e.to_string().starts_with("too large for Kafka"), "{e}");
        // Lines that fit are batched, and a batch is closed before it would pass the limit.
        for i in 2..=40 {
            assert_eq!(
                b.line(
                    i,
                    Line::Text(br#"{"messageId":"ok","v":"0123456789012345678901234567890123456789"}"#),
                    true,
                    |x| batches.push(x)
                ),
                Some(Decision::Queued)
            );
        }
        b.flush_all(|x| batches.push(x));
        assert!(batches.len() > 1);
        assert!(batches
            .iter()
            .all(|x| x.encoded_bytes <= 2_000 && encoded_size(&x.records.to_kafka().collect::<Vec<_>>()) <= 2_000));
        assert_eq!(batches.iter().map(|x| x.records.len()).sum::<usize>(), 39);
    }
}
