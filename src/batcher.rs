//! The CPU stage's core, pure: one line in, its state out, and full record batches handed to
//! a callback. No IO; nothing here can fail on IO.
//!
//! Per line: blank → skipped; too long or not one valid JSON object → error; filtered out →
//! skipped; unroutable → error; else a record (key `messageId` or a random UUID, value the
//! line's original bytes, header `connection_ids`) appended to its topic's open batch.
//! A batch is handed over when it reaches `batch_size` records or `batch_max_bytes` bytes,
//! or when the pipeline flushes every open batch because too many lines are unsettled (a
//! topic that gets few lines must not pin the watermark; see `pipeline`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rskafka::record::Record;

use crate::extract::{extract, ExtractError};
use crate::filter::{is_blank, Filter, SkipReason};
use crate::lines::Line;
use crate::route::{RouteError, Router};
use crate::sink::Batch;
use crate::tracker::LineState;

/// The Kafka header that carries the destinations.
pub const HEADER: &str = "connection_ids";

/// Why a line counted as an error (for logs and dead letters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    TooLong(u64),
    Json(ExtractError),
    Route(RouteError),
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineError::TooLong(n) => write!(f, "line of {n} bytes is longer than the limit"),
            LineError::Json(e) => e.fmt(f),
            LineError::Route(e) => e.fmt(f),
        }
    }
}

/// What happened to one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Skipped(SkipReason),
    Error(LineError),
    /// Added to an open batch.
    Queued,
}

impl Decision {
    pub fn state(&self) -> LineState {
        match self {
            Decision::Skipped(_) => LineState::Skipped,
            Decision::Error(_) => LineState::Error,
            Decision::Queued => LineState::Pending,
        }
    }
}

struct Open {
    records: Vec<Record>,
    lines: Vec<u64>,
    bytes: usize,
    timestamp: DateTime<Utc>,
}

/// Builds batches from lines.
pub struct Batcher<'a> {
    filter: &'a Filter,
    router: &'a Router,
    batch_size: usize,
    batch_max_bytes: usize,
    open: Vec<Option<Open>>,
    /// `messageCreated` of the latest line that had one.
    pub last_created: String,
}

impl<'a> Batcher<'a> {
    pub fn new(filter: &'a Filter, router: &'a Router, batch_size: usize, batch_max_bytes: usize) -> Self {
        let open = (0..router.topics().len()).map(|_| None).collect();
        Self { filter, router, batch_size: batch_size.max(1), batch_max_bytes, open, last_created: String::new() }
    }

    /// Decides line `no`. When `allow_send` is false (the limit is reached) a line that would
    /// be queued is not; `None` is returned and nothing is recorded.
    pub fn line(&mut self, no: u64, line: Line<'_>, allow_send: bool, mut emit: impl FnMut(Batch)) -> Option<Decision> {
        let text = match line {
            Line::TooLong { len } => return Some(Decision::Error(LineError::TooLong(len))),
            Line::Text(t) => t,
        };
        if is_blank(text) {
            return Some(Decision::Skipped(SkipReason::Blank));
        }
        let env = match extract(text) {
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
            Ok(t) => t,
            Err(e) => return Some(Decision::Error(LineError::Route(e))),
        };
        if !allow_send {
            return None;
        }
        let key = match env.message_id.as_deref() {
            Some(id) if !id.is_empty() => id.as_bytes().to_vec(),
            _ => uuid::Uuid::new_v4().hyphenated().to_string().into_bytes(),
        };
        let topic = target.topic;
        let open = self.open[topic].get_or_insert_with(|| Open {
            records: Vec::with_capacity(self.batch_size.min(4096)),
            lines: Vec::with_capacity(self.batch_size.min(4096)),
            bytes: 0,
            timestamp: Utc::now(),
        });
        open.records.push(Record {
            key: Some(key),
            value: Some(text.to_vec()),
            headers: BTreeMap::from([(HEADER.to_owned(), target.header.to_vec())]),
            timestamp: open.timestamp,
        });
        open.lines.push(no);
        open.bytes += text.len();
        if open.records.len() >= self.batch_size || open.bytes >= self.batch_max_bytes {
            if let Some(b) = self.take(topic) {
                emit(b);
            }
        }
        Some(Decision::Queued)
    }

    fn take(&mut self, topic: usize) -> Option<Batch> {
        self.open[topic].take().map(|o| Batch { topic, records: o.records, lines: o.lines, value_bytes: o.bytes })
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

    fn run(lines: &[&str], router: &Router, batch_size: usize) -> (Vec<Option<Decision>>, Vec<Batch>) {
        let filter = Filter::new(&["s1".into(), "s2".into()], None, None);
        let mut b = Batcher::new(&filter, router, batch_size, 1 << 20);
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
        assert_eq!(b.lines, vec![1, 5]);
        assert_eq!(b.records[0].key.as_deref(), Some(&b"m1"[..]));
        assert_eq!(b.records[0].value.as_deref(), Some(lines[0].as_bytes()));
        assert_eq!(b.records[0].headers[HEADER], b"c1,c2");
        let generated = String::from_utf8(b.records[1].key.clone().unwrap()).unwrap();
        assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
    }

    #[test]
    fn batches_split_by_count_and_topic() {
        let repo = br#"[{"stream":{"id":"s1"},"destinations":[{"id":"d","connectionId":"c","destinationType":"x"}]},
                        {"stream":{"id":"s2"},"shard":1,"destinations":[{"id":"d","connectionId":"k","destinationType":"x"}]}]"#;
        let router = Router::from_repository("t", repo).unwrap();
        let l1 = r#"{"origin":{"sourceId":"s1"}}"#;
        let l2 = r#"{"origin":{"sourceId":"s2"}}"#;
        let (_, batches) = run(&[l1, l2, l1, l1, l2, l1], &router, 2);
        let shape: Vec<(usize, Vec<u64>)> = batches.iter().map(|b| (b.topic, b.lines.clone())).collect();
        assert_eq!(shape, vec![(0, vec![1, 3]), (1, vec![2, 5]), (0, vec![4, 6])]);
        assert_eq!(batches[1].records[0].headers[HEADER], b"k");
    }

    #[test]
    fn limit_stops_queueing_but_not_deciding() {
        let router = Router::fixed("t", &["c".into()]);
        let filter = Filter::default();
        let mut b = Batcher::new(&filter, &router, 10, 1 << 20);
        assert_eq!(b.line(1, Line::Text(b"{}"), false, |_| {}), None);
        assert_eq!(b.line(2, Line::Text(b"x"), false, |_| {}).map(|d| d.state()), Some(LineState::Error));
    }
}
