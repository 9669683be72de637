//! Kafka as the worker uses it: the [`Broker`] trait (the topics' partitions, produce, where a
//! partition ends, fetch for the read-backs), the dry-run broker, and the batch type.
//!
//! Production uses [`crate::kafka::KafkaBroker`]. A dry run uses [`DryRun`], which acknowledges
//! every batch at once, so the pipeline, its counters and its status row behave exactly as in
//! a real run. Unit tests use in-memory fakes behind the same trait.

use futures::future::BoxFuture;
use rskafka::record::Record;

/// Records for one topic, with the line numbers they came from (in order).
#[derive(Debug)]
pub struct Batch {
    /// Index into the router's topic list.
    pub topic: usize,
    pub records: Vec<Record>,
    pub lines: Vec<u64>,
    /// Sum of the record values, in bytes.
    pub value_bytes: usize,
    /// Upper bound of the batch's encoded size before compression, in bytes.
    pub encoded_bytes: usize,
}

/// One fetch.
#[derive(Debug, Default)]
pub struct Fetched {
    /// Records with their offsets, in order.
    pub records: Vec<(i64, Record)>,
    /// The partition's high watermark, as the broker answered.
    pub high_watermark: i64,
    /// Where the next fetch starts: past the last record, and past the transaction markers
    /// read (which are not records); the offset asked for when nothing was read.
    pub next: i64,
}

/// An error's source, kept as it came (rskafka's, a TLS error, a fake's).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong between the worker and Kafka, named for what happened.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot connect to Kafka at {bootstrap}: no broker answered within {after:?}")]
    ConnectTimeout { bootstrap: String, after: std::time::Duration },
    /// The broker refused the SASL login (wrong password, unknown user, mechanism).
    #[error("Kafka at {bootstrap} refused the {mechanism} login of user {user:?}")]
    LoginRefused {
        bootstrap: String,
        mechanism: &'static str,
        user: String,
        #[source]
        source: BoxError,
    },
    #[error("cannot connect to Kafka at {bootstrap}")]
    Connect {
        bootstrap: String,
        #[source]
        source: BoxError,
    },
    #[error("topic {topic}: metadata request failed")]
    Metadata {
        topic: String,
        #[source]
        source: BoxError,
    },
    #[error("topic {topic}: no metadata within {after:?}")]
    MetadataTimeout { topic: String, after: std::time::Duration },
    #[error("topic {topic} does not exist")]
    TopicMissing { topic: String },
    /// The cluster refuses this worker the topic (an authorizer hides such a topic from the
    /// listing of all topics; asked for by name, it answers with the error).
    #[error("topic {topic}: {code}")]
    TopicRefused { topic: String, code: String },
    #[error("{topic}[{partition}]: no leader found within {after:?}")]
    NoLeader { topic: String, partition: i32, after: std::time::Duration },
    #[error("produce to {topic}[{partition}] failed{}", code.as_deref().map(|c| format!(": {c}")).unwrap_or_default())]
    Produce {
        topic: String,
        partition: i32,
        failure: Failure,
        /// The error code's name: the broker's, or rskafka's `RETRY_FAILED` when its own
        /// retries gave up without an answer.
        code: Option<String>,
        /// Kafka answered the request (with `code`); false when the connection failed or no
        /// answer came.
        answered: bool,
        #[source]
        source: BoxError,
    },
    /// The broker answered and asked for a pause (a quota): the batch was most likely
    /// written; the producer waits the pause and looks for it before sending it again.
    #[error("produce to {topic}[{partition}]: throttled by Kafka for {pause:?}")]
    Throttled { topic: String, partition: i32, pause: std::time::Duration },
    #[error("produce to {topic}[{partition}]: not acknowledged within {after:?}")]
    NotAcknowledged { topic: String, partition: i32, after: std::time::Duration },
    /// Listing a partition's end offset, or reading it back, failed or timed out.
    #[error("reading {topic}[{partition}] back failed")]
    ReadBack {
        topic: String,
        partition: i32,
        #[source]
        source: BoxError,
    },
}

/// What a failed request means for the records in it, and so what the pipeline does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The cluster is moving or busy (leader moves, replicas behind, full disks, time-outs,
    /// disconnects): send the same batch again, with backoff, until the delivery deadline.
    Transient,
    /// The broker refused the records for what they are (too large, invalid): split the
    /// batch; a single record refused is an error, and the rest of the file goes on.
    Rejected,
    /// The cluster refuses this worker (authorization, login, a missing topic): stop the run.
    Fatal,
}

impl BrokerError {
    /// How the pipeline treats this error.
    pub fn failure(&self) -> Failure {
        match self {
            BrokerError::Produce { failure, .. } => *failure,
            BrokerError::NotAcknowledged { .. }
            | BrokerError::Throttled { .. }
            | BrokerError::NoLeader { .. }
            | BrokerError::MetadataTimeout { .. } => Failure::Transient,
            BrokerError::Metadata { .. } | BrokerError::ReadBack { .. } => Failure::Transient,
            BrokerError::ConnectTimeout { .. }
            | BrokerError::Connect { .. }
            | BrokerError::LoginRefused { .. }
            | BrokerError::TopicMissing { .. }
            | BrokerError::TopicRefused { .. } => Failure::Fatal,
        }
    }

    /// Whether Kafka answered the request (with an error code, or a pause): false when the
    /// connection failed or no answer came in time.
    pub fn answered(&self) -> bool {
        match self {
            BrokerError::Produce { answered, .. } => *answered,
            BrokerError::Throttled { .. } | BrokerError::TopicRefused { .. } => true,
            _ => false,
        }
    }

    /// Why a request failed, for the retries' metric: the error code name Kafka answered
    /// with, else the kind of failure (`connection`, `timeout`, `no_leader`, `metadata`, ...).
    pub fn reason(&self) -> &str {
        if let (true, Some(code)) = (self.answered(), self.code()) {
            return code;
        }
        match self {
            BrokerError::Produce { .. } | BrokerError::Connect { .. } => "connection",
            BrokerError::ConnectTimeout { .. } | BrokerError::NotAcknowledged { .. } => "timeout",
            BrokerError::NoLeader { .. } => "no_leader",
            BrokerError::Metadata { .. } | BrokerError::MetadataTimeout { .. } => "metadata",
            BrokerError::ReadBack { .. } => "read_back",
            BrokerError::Throttled { .. } => "throttled",
            BrokerError::LoginRefused { .. } => "login",
            BrokerError::TopicMissing { .. } | BrokerError::TopicRefused { .. } => "topic",
        }
    }

    /// The broker's error code name, if it gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            BrokerError::Produce { code, .. } => code.as_deref(),
            BrokerError::TopicRefused { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// The Kafka cluster as the worker uses it: what the topics are, where record batches go
/// (`produce` resolves once the batch is acknowledged), and the partitions' logs read back.
pub trait Broker: Send + Sync + 'static {
    /// The partition count of each of `topics`, from one metadata request at start-up. A
    /// topic that does not exist is [`BrokerError::TopicMissing`]; one the cluster does not let
    /// this worker see is [`BrokerError::TopicRefused`], with the broker's error.
    fn topics<'a>(&'a self, topics: &'a [String]) -> BoxFuture<'a, Result<Vec<i32>, BrokerError>>;
    /// Sends `records` to one partition and waits for the acknowledgement; returns the offset
    /// of the first record. The records are borrowed: a batch that fails transiently is sent
    /// again, and the dry run copies nothing.
    fn produce<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        records: &'a [Record],
    ) -> BoxFuture<'a, Result<i64, BrokerError>>;
    /// The end offset (the offset the next record gets) of partition `partition`.
    fn end_offset<'a>(&'a self, topic: &'a str, partition: i32) -> BoxFuture<'a, Result<i64, BrokerError>>;
    /// Some records of one partition from `offset` on, with their offsets, in order (empty at
    /// the end), and the partition's high watermark as the response gives it.
    fn fetch<'a>(&'a self, topic: &'a str, partition: i32, offset: i64) -> BoxFuture<'a, Result<Fetched, BrokerError>>;
}

/// The dry-run broker: every batch is acknowledged at once and dropped.
#[derive(Debug, Default)]
pub struct DryRun;

impl Broker for DryRun {
    fn topics<'a>(&'a self, topics: &'a [String]) -> BoxFuture<'a, Result<Vec<i32>, BrokerError>> {
        Box::pin(async move { Ok(vec![1; topics.len()]) })
    }
    fn produce<'a>(&'a self, _: &'a str, _: i32, _: &'a [Record]) -> BoxFuture<'a, Result<i64, BrokerError>> {
        Box::pin(async { Ok(0) })
    }
    fn end_offset<'a>(&'a self, _: &'a str, _: i32) -> BoxFuture<'a, Result<i64, BrokerError>> {
        Box::pin(async { Ok(0) })
    }
    fn fetch<'a>(&'a self, _: &'a str, _: i32, _: i64) -> BoxFuture<'a, Result<Fetched, BrokerError>> {
        Box::pin(async { Ok(Fetched::default()) })
    }
}

/// How many empty pages in a row, before the end, stop a [`PartitionRange`].
pub const EMPTY_PAGES: u32 = 3;

/// One partition read from an offset to its end, page by page: the one place that knows
/// where a partition ends. The end is the larger of the listed end offset and the first
/// fetch's high watermark, because some brokers list less than the end (tansu lists the
/// first offset of its last batch plus one); a first fetch that fails although the listing
/// worked is taken as nothing there (tansu answers a fetch past its end with no topic).
///
/// Pages are returned whole, past the end too: the fetch that reaches the end may return
/// the last batch whole. What a page that comes back empty before the end means is the
/// caller's: another producer's open transaction (reads stop at the last stable offset), or
/// records removed by retention or compaction. (Transaction markers are read past: a fetch's
/// `next` moves beyond them.) After [`EMPTY_PAGES`] of them in a row the range is
/// [`Page::Stalled`].
pub struct PartitionRange<'a> {
    broker: &'a dyn Broker,
    pub topic: &'a str,
    pub partition: i32,
    /// The next offset to read.
    pub at: i64,
    /// The end, as found when the range was opened.
    pub end: i64,
    first: Option<Fetched>,
    empty: u32,
}

/// One step of a [`PartitionRange`].
#[derive(Debug)]
pub enum Page {
    Records(Vec<(i64, Record)>),
    /// Read to the end.
    End,
    /// Pages came back empty before the end: the range could not be read to its end.
    Stalled,
}

impl<'a> PartitionRange<'a> {
    /// The range of `partition` from `from` to its end.
    pub async fn open(broker: &'a dyn Broker, topic: &'a str, partition: i32, from: i64) -> Result<Self, BrokerError> {
        let listed = broker.end_offset(topic, partition).await?;
        let first = broker.fetch(topic, partition, from).await.unwrap_or_default();
        let end = listed.max(first.high_watermark);
        Ok(PartitionRange { broker, topic, partition, at: from, end, first: Some(first), empty: 0 })
    }

    /// Offsets left to read (at least).
    pub fn len(&self) -> u64 {
        (self.end - self.at).max(0) as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next page.
    pub async fn next(&mut self) -> Result<Page, BrokerError> {
        loop {
            if self.at >= self.end {
                return Ok(Page::End);
            }
            if self.empty >= EMPTY_PAGES {
                return Ok(Page::Stalled);
            }
            let page = match self.first.take() {
                Some(p) => p,
                None => self.broker.fetch(self.topic, self.partition, self.at).await?,
            };
            if page.next <= self.at {
                self.empty += 1;
                continue;
            }
            self.at = page.next;
            self.empty = 0;
            if !page.records.is_empty() {
                return Ok(Page::Records(page.records));
            }
        }
    }
}
