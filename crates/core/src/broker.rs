//! Kafka as the worker uses it: the [`Broker`] trait (the topics' partitions, produce, where a
//! partition ends, fetch for the read-backs), the dry-run broker, and the batch type.
//!
//! Production uses the worker crate's `kafka::KafkaBroker` (rskafka). A dry run uses
//! [`DryRun`], which acknowledges every batch at once, so the pipeline, its counters and its
//! status row behave exactly as in a real run. Unit tests use in-memory fakes behind the same
//! trait. No Kafka client is a dependency here: records are this module's [`Record`].
//!
//! A batch keeps its records compact ([`Records`]): the values back to back in one buffer, a
//! fixed-size key each, and the `connection_ids` header once per run of equal ones. rskafka
//! takes the records it sends by value, one allocation per key, value and header; they are
//! built from the compact form for each attempt ([`Records::to_kafka`]), on the thread that
//! sends them and frees them, while the batch stays whole for the next attempt, a look in the
//! partition, or a dead letter.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use crate::route::HEADER;
use crate::sequence::{ProducerId, Sequence};

/// A Kafka record as produced and fetched: the fields of Kafka's record format that the
/// worker writes and reads back (the Kafka client converts to and from its own type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The key; `None` for a record without one (the worker's records always have one).
    pub key: Option<Vec<u8>>,
    /// The value; `None` for a record without one (the worker's hold a line's original bytes).
    pub value: Option<Vec<u8>>,
    /// The headers, name to value (the worker writes one, `connection_ids`).
    pub headers: BTreeMap<String, Vec<u8>>,
    /// The record's timestamp (the worker's records: when their batch was sent).
    pub timestamp: DateTime<Utc>,
}

/// Bytes of a record key: a hyphenated UUID (see [`crate::keys::LineKeys`]).
pub const KEY_LEN: usize = uuid::fmt::Hyphenated::LENGTH;

/// A record key.
pub(crate) type Key = [u8; KEY_LEN];

/// One record of [`Records`], borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The key, [`KEY_LEN`] bytes.
    pub key: &'a [u8],
    /// The value (a line's original bytes).
    pub value: &'a [u8],
    /// The `connection_ids` header's value.
    pub header: &'a [u8],
}

/// A batch's records, compact (see the module's documentation), all with one timestamp.
#[derive(Debug, Clone, Default)]
pub struct Records {
    /// The values, back to back.
    values: Vec<u8>,
    /// Where each value ends in `values`.
    ends: Vec<usize>,
    keys: Vec<Key>,
    /// Each header value with the index of the first record that carries it, until the next.
    headers: Vec<(usize, Arc<[u8]>)>,
    timestamp: DateTime<Utc>,
}

impl Records {
    /// Room for `records` records of `bytes` bytes of values in all.
    pub fn with_capacity(records: usize, bytes: usize, timestamp: DateTime<Utc>) -> Self {
        Self {
            values: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(records),
            keys: Vec::with_capacity(records),
            headers: Vec::new(),
            timestamp,
        }
    }

    /// Appends a record; `header` is kept only when it differs from the previous record's.
    pub fn push(&mut self, key: &Key, value: &[u8], header: &Arc<[u8]>) {
        if self.headers.last().is_none_or(|(_, last)| last[..] != header[..]) {
            self.headers.push((self.keys.len(), Arc::clone(header)));
        }
        self.keys.push(*key);
        self.values.extend_from_slice(value);
        self.ends.push(self.values.len());
    }

    /// How many records there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Bytes of the values.
    pub fn value_bytes(&self) -> usize {
        self.values.len()
    }

    /// The timestamp every record carries.
    pub fn timestamp(&self) -> DateTime<Utc> {
        self.timestamp
    }

    /// Gives every record the timestamp `at`.
    pub fn stamp(&mut self, at: DateTime<Utc>) {
        self.timestamp = at;
    }

    /// Record `i`; panics past the end, like a slice.
    pub fn get(&self, i: usize) -> RecordRef<'_> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        let run = self.headers.partition_point(|(from, _)| *from <= i) - 1;
        RecordRef { key: &self.keys[i], value: &self.values[start..self.ends[i]], header: &self.headers[run].1 }
    }

    /// The records in order, borrowed.
    pub fn iter(&self) -> impl Iterator<Item = RecordRef<'_>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Splits the records in two at `at`: these keep the first `at`, the rest are returned.
    pub fn split_off(&mut self, at: usize) -> Records {
        let at = at.min(self.len());
        let cut = if at == 0 { 0 } else { self.ends[at - 1] };
        let keep = self.headers.partition_point(|(from, _)| *from < at);
        let mut headers = Vec::with_capacity(self.headers.len() - keep + 1);
        if at < self.len() && self.headers.get(keep).is_none_or(|(from, _)| *from > at) {
            headers.push((0, Arc::clone(&self.headers[keep - 1].1)));
        }
        headers.extend(self.headers.drain(keep..).map(|(from, h)| (from - at, h)));
        Records {
            values: self.values.split_off(cut),
            ends: self.ends.split_off(at).into_iter().map(|end| end - cut).collect(),
            keys: self.keys.split_off(at),
            headers,
            timestamp: self.timestamp,
        }
    }

    /// The records one by one, as a Kafka client takes them: key, value, the
    /// `connection_ids` header, and the timestamp.
    pub fn to_kafka(&self) -> impl Iterator<Item = Record> + '_ {
        self.iter().map(|r| Record {
            key: Some(r.key.to_vec()),
            value: Some(r.value.to_vec()),
            headers: BTreeMap::from([(HEADER.to_owned(), r.header.to_vec())]),
            timestamp: self.timestamp,
        })
    }
}

/// Records for one topic, with the sequence numbers of the lines they came from (in order).
#[derive(Debug)]
pub struct Batch {
    /// Index into the router's topic list.
    pub topic: usize,
    /// The records, in the order of their lines.
    pub records: Records,
    /// The sequence number of each record's line (the tracker's [`crate::tracker::Seq`], over
    /// the whole run, not a line number in its file), in the same order.
    pub seqs: Vec<crate::tracker::Seq>,
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

/// A Kafka error code: by what the worker does with it where it acts on one, by Kafka's name
/// for it otherwise ([`ErrorCode::name`] is the name in either case, as the logs and the
/// retries' metric show it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `NOT_LEADER_OR_FOLLOWER`: the partition's leader moved; the metadata is refreshed.
    NotLeaderOrFollower,
    /// `LEADER_NOT_AVAILABLE`: an election is under way; the metadata is refreshed.
    LeaderNotAvailable,
    /// `NOT_ENOUGH_REPLICAS`: fewer in-sync replicas than `min.insync.replicas` (acks=all).
    NotEnoughReplicas,
    /// `MESSAGE_TOO_LARGE`: a record, or the batch, is over the topic's or broker's limit.
    MessageTooLarge,
    /// `TOPIC_AUTHORIZATION_FAILED`: this principal may not use the topic.
    TopicAuthorizationFailed,
    /// `CLUSTER_AUTHORIZATION_FAILED`: this principal may not do this on the cluster.
    ClusterAuthorizationFailed,
    /// `SASL_AUTHENTICATION_FAILED`: the login was refused.
    SaslAuthenticationFailed,
    /// `OUT_OF_ORDER_SEQUENCE_NUMBER`: the batch does not follow the last one the leader
    /// appended for this producer id (an earlier batch is still unsettled, or the leader lost
    /// batches it had acknowledged).
    OutOfOrderSequenceNumber,
    /// `DUPLICATE_SEQUENCE_NUMBER`: the leader says it holds the batch already, without its
    /// offset (Kafka answers a resend with the offset instead). Believed only once the batch
    /// is found in the partition: a broker that moved the sequence on before it stored the
    /// batch (tansu killed between the two writes) says the same of a batch it lost.
    DuplicateSequenceNumber,
    /// `UNKNOWN_PRODUCER_ID`: the leader holds no state for this producer id any more.
    UnknownProducerId,
    /// `INVALID_PRODUCER_EPOCH`: a newer epoch of this producer id exists.
    InvalidProducerEpoch,
    /// `RETRY_FAILED`: not Kafka's, the client's own retries gave up without an answer
    /// (connections refused or cut, no leader found).
    RetryFailed,
    /// Any other code, by Kafka's name for it (`INVALID_RECORD`, `UNKNOWN_ERROR_CODE_123`).
    Other(String),
}

impl ErrorCode {
    /// Kafka's name for the code (`NOT_LEADER_OR_FOLLOWER`).
    pub fn name(&self) -> &str {
        match self {
            ErrorCode::NotLeaderOrFollower => "NOT_LEADER_OR_FOLLOWER",
            ErrorCode::LeaderNotAvailable => "LEADER_NOT_AVAILABLE",
            ErrorCode::NotEnoughReplicas => "NOT_ENOUGH_REPLICAS",
            ErrorCode::MessageTooLarge => "MESSAGE_TOO_LARGE",
            ErrorCode::TopicAuthorizationFailed => "TOPIC_AUTHORIZATION_FAILED",
            ErrorCode::ClusterAuthorizationFailed => "CLUSTER_AUTHORIZATION_FAILED",
            ErrorCode::SaslAuthenticationFailed => "SASL_AUTHENTICATION_FAILED",
            ErrorCode::OutOfOrderSequenceNumber => "OUT_OF_ORDER_SEQUENCE_NUMBER",
            ErrorCode::DuplicateSequenceNumber => "DUPLICATE_SEQUENCE_NUMBER",
            ErrorCode::UnknownProducerId => "UNKNOWN_PRODUCER_ID",
            ErrorCode::InvalidProducerEpoch => "INVALID_PRODUCER_EPOCH",
            ErrorCode::RetryFailed => "RETRY_FAILED",
            ErrorCode::Other(name) => name,
        }
    }

    /// Kafka refuses this principal something (any `*_AUTHORIZATION_FAILED` code).
    pub fn is_authorization(&self) -> bool {
        self.name().ends_with("_AUTHORIZATION_FAILED")
    }

    /// The producer id's sequence cannot go on as it is: the leader lost its state for it, or
    /// a newer epoch exists (`OUT_OF_ORDER_SEQUENCE_NUMBER` is one only for the oldest unsettled
    /// batch of a partition, which the producer tells).
    pub fn ends_the_sequence(&self) -> bool {
        matches!(self, ErrorCode::UnknownProducerId | ErrorCode::InvalidProducerEpoch)
    }

    /// A leader moved or is being elected, or no broker answered: the leaders the client
    /// knows may be stale.
    pub fn leaders_may_have_moved(&self) -> bool {
        matches!(self, ErrorCode::NotLeaderOrFollower | ErrorCode::LeaderNotAvailable | ErrorCode::RetryFailed)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What went wrong between the worker and Kafka, named for what happened.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// No broker of the bootstrap list answered within the connect timeout.
    #[error("cannot connect to Kafka at {bootstrap}: no broker answered within {after:?}")]
    ConnectTimeout {
        /// The bootstrap servers, as configured (comma-separated).
        bootstrap: String,
        /// How long the worker tried (`KAFKA_CONNECT_TIMEOUT_SECS`).
        after: std::time::Duration,
    },
    /// The broker refused the SASL login (wrong password, unknown user, mechanism).
    #[error("Kafka at {bootstrap} refused the {mechanism} login of user {user:?}")]
    LoginRefused {
        /// The bootstrap servers, as configured (comma-separated).
        bootstrap: String,
        /// The SASL mechanism, as configured (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`).
        mechanism: &'static str,
        /// The SASL user name, as configured.
        user: String,
        /// The Kafka client's error for the refused login.
        #[source]
        source: BoxError,
    },
    /// No connection to the cluster could be made (refused, cut, TLS handshake failed), or
    /// the TLS settings (CA certificates, client certificate) could not be loaded.
    #[error("cannot connect to Kafka at {bootstrap}")]
    Connect {
        /// The bootstrap servers, as configured (comma-separated).
        bootstrap: String,
        /// The Kafka client's error, or the TLS setup's.
        #[source]
        source: BoxError,
    },
    /// The metadata request that lists the topics at start-up failed.
    #[error("topic {topic}: metadata request failed")]
    Metadata {
        /// The first of the topics asked for (one request lists them all).
        topic: String,
        /// The Kafka client's error.
        #[source]
        source: BoxError,
    },
    /// The metadata request that lists the topics at start-up got no answer within the
    /// request deadline.
    #[error("topic {topic}: no metadata within {after:?}")]
    MetadataTimeout {
        /// The first of the topics asked for (one request lists them all).
        topic: String,
        /// How long the worker waited (the request deadline).
        after: std::time::Duration,
    },
    /// The cluster has no such topic: it is not listed (or has no partitions), and asked for
    /// by name it is not refused either.
    #[error("topic {topic} does not exist")]
    TopicMissing {
        /// The topic asked for.
        topic: String,
    },
    /// The cluster refuses this worker the topic (an authorizer hides such a topic from the
    /// listing of all topics; asked for by name, it answers with the error).
    #[error("topic {topic}: {code}")]
    TopicRefused {
        /// The topic refused.
        topic: String,
        /// The broker's error code (an `*_AUTHORIZATION_FAILED` one).
        code: ErrorCode,
    },
    /// The partition's client could not be made within the request deadline: no broker
    /// leading the partition was found.
    #[error("{topic}[{partition}]: no leader found within {after:?}")]
    NoLeader {
        /// The partition's topic.
        topic: String,
        /// The partition without a leader found.
        partition: i32,
        /// How long the worker waited (the request deadline).
        after: std::time::Duration,
    },
    /// Producing to the partition failed, or making the partition's client did: the broker
    /// answered with an error code, or the connection failed or gave no answer.
    #[error("produce to {topic}[{partition}] failed{}", code.as_ref().map(|c| format!(": {c}")).unwrap_or_default())]
    Produce {
        /// The topic produced to.
        topic: String,
        /// The partition produced to.
        partition: i32,
        /// What the failure means for the batch: send it again, split it, or stop the run.
        failure: Failure,
        /// The error code: the broker's, or [`ErrorCode::RetryFailed`] when the client's own
        /// retries gave up without an answer.
        code: Option<ErrorCode>,
        /// Kafka answered the request (with `code`); false when the connection failed or no
        /// answer came.
        answered: bool,
        /// The Kafka client's error.
        #[source]
        source: BoxError,
    },
    /// The broker answered and asked for a pause (a quota): the batch was most likely
    /// written; the producer waits the pause and looks for it before sending it again.
    #[error("produce to {topic}[{partition}]: throttled by Kafka for {pause:?}")]
    Throttled {
        /// The topic produced to.
        topic: String,
        /// The partition produced to.
        partition: i32,
        /// The pause the broker asked for.
        pause: std::time::Duration,
    },
    /// A produce request got no answer within the request deadline: the batch may have been
    /// written or not.
    #[error("produce to {topic}[{partition}]: not acknowledged within {after:?}")]
    NotAcknowledged {
        /// The topic produced to.
        topic: String,
        /// The partition produced to.
        partition: i32,
        /// How long the worker waited (the request deadline).
        after: std::time::Duration,
    },
    /// The cluster refuses this worker reading the topic back (no READ permission: an
    /// authorizer answers the fetch with its error).
    #[error("reading {topic}[{partition}] back: {code}")]
    ReadRefused {
        /// The topic read back.
        topic: String,
        /// The partition read back.
        partition: i32,
        /// The broker's error code (an `*_AUTHORIZATION_FAILED` one).
        code: ErrorCode,
    },
    /// Listing a partition's end offset, or reading it back, failed or timed out.
    #[error("reading {topic}[{partition}] back failed")]
    ReadBack {
        /// The topic read back.
        topic: String,
        /// The partition read back.
        partition: i32,
        /// The Kafka client's error, or the time-out's.
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
            | BrokerError::TopicRefused { .. }
            | BrokerError::ReadRefused { .. } => Failure::Fatal,
        }
    }

    /// Whether Kafka answered the request (with an error code, or a pause): false when the
    /// connection failed or no answer came in time.
    pub fn answered(&self) -> bool {
        match self {
            BrokerError::Produce { answered, .. } => *answered,
            BrokerError::Throttled { .. } | BrokerError::TopicRefused { .. } | BrokerError::ReadRefused { .. } => true,
            _ => false,
        }
    }

    /// Why a request failed, for the retries' metric: the error code name Kafka answered
    /// with, else the kind of failure (`connection`, `timeout`, `no_leader`, `metadata`, ...).
    pub fn reason(&self) -> &str {
        if let (true, Some(code)) = (self.answered(), self.code()) {
            return code.name();
        }
        match self {
            BrokerError::Produce { .. } | BrokerError::Connect { .. } => "connection",
            BrokerError::ConnectTimeout { .. } | BrokerError::NotAcknowledged { .. } => "timeout",
            BrokerError::NoLeader { .. } => "no_leader",
            BrokerError::Metadata { .. } | BrokerError::MetadataTimeout { .. } => "metadata",
            BrokerError::ReadBack { .. } | BrokerError::ReadRefused { .. } => "read_back",
            BrokerError::Throttled { .. } => "throttled",
            BrokerError::LoginRefused { .. } => "login",
            BrokerError::TopicMissing { .. } | BrokerError::TopicRefused { .. } => "topic",
        }
    }

    /// The broker's error code, if it gave one.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            BrokerError::Produce { code, .. } => code.as_ref(),
            BrokerError::TopicRefused { code, .. } | BrokerError::ReadRefused { code, .. } => Some(code),
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
    /// again, and the dry run builds nothing.
    ///
    /// With `sequence` (the idempotent producer, see [`crate::Sequencer`]) the batch is
    /// written under that producer id and first sequence number, and a batch the partition
    /// already holds is answered with its offset, not written again.
    fn produce<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        records: &'a Records,
        sequence: Option<Sequence>,
    ) -> BoxFuture<'a, Result<i64, BrokerError>>;
    /// A new producer id for idempotent produce (Kafka's `InitProducerId`); `None` when this
    /// broker produces without idempotence (it is off, or the cluster does not offer it). The
    /// default: without.
    fn producer_id(&self) -> BoxFuture<'_, Result<Option<ProducerId>, BrokerError>> {
        Box::pin(async { Ok(None) })
    }
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
    fn produce<'a>(
        &'a self,
        _: &'a str,
        _: i32,
        _: &'a Records,
        _: Option<Sequence>,
    ) -> BoxFuture<'a, Result<i64, BrokerError>> {
        Box::pin(async { Ok(0) })
    }
    fn end_offset<'a>(&'a self, _: &'a str, _: i32) -> BoxFuture<'a, Result<i64, BrokerError>> {
        Box::pin(async { Ok(0) })
    }
    fn fetch<'a>(&'a self, _: &'a str, _: i32, _: i64) -> BoxFuture<'a, Result<Fetched, BrokerError>> {
        Box::pin(async { Ok(Fetched::default()) })
    }
}

/// Which partitions of a topic a worker sends to (`KAFKA_PARTITIONS`).
///
/// A resumed worker reads back the partitions it wrote to, and on a live topic everything
/// other producers wrote there since. A job's N pods that all write to every partition read
/// each other's records too; confined to a share each ([`Spread::Own`]), a pod reads only
/// its own partitions, and the pods of the job together still cover every partition. The
/// cost: one pod's lines go to its share only, so while fewer pods run than the job has
/// (`parallel_workers` below the worker count), the partitions of the pods not running get
/// no replayed lines, and consumers of those partitions idle meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spread {
    /// Every partition, round-robin.
    All,
    /// Worker `worker` of `workers`: the partitions `p` with `p mod workers = worker` when
    /// the topic has at least as many partitions as the job has workers, else the one
    /// partition `worker mod n`.
    Own {
        /// This worker's index in the job, from 0 (`WORKER_INDEX`).
        worker: u32,
        /// How many workers the job has.
        workers: u32,
    },
}

impl Spread {
    /// The partitions this worker sends to, of a topic of `n` partitions (never empty).
    pub fn partitions(&self, n: i32) -> Vec<i32> {
        let n = n.max(1);
        match *self {
            Spread::All => (0..n).collect(),
            Spread::Own { worker, workers } => {
                let (worker, workers) = (i64::from(worker), i64::from(workers.max(1)));
                if i64::from(n) >= workers {
                    (0..n).filter(|p| i64::from(*p) % workers == worker % workers).collect()
                } else {
                    vec![(worker % i64::from(n)) as i32]
                }
            }
        }
    }
}

/// How many empty pages in a row, before the end, stop a [`PartitionRange`].
pub(crate) const EMPTY_PAGES: u32 = 3;

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
/// `next` moves beyond them.) After `EMPTY_PAGES` of them in a row the range is
/// [`Page::Stalled`].
pub struct PartitionRange<'a> {
    broker: &'a dyn Broker,
    /// The topic read.
    pub topic: &'a str,
    /// The partition read.
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
    /// The next records, with their offsets, in order (the page that reaches the end may go
    /// past it).
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

    /// Whether nothing is left to read (`at` has reached `end`).
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

#[cfg(test)]
mod tests {
    use super::*;

    type Model = Vec<(Key, Vec<u8>, Vec<u8>)>;

    #[test]
    fn a_job_s_workers_share_every_partition_and_each_keeps_to_its_own() {
        for workers in 1..=9u32 {
            for n in 1..=12 {
                let shares: Vec<Vec<i32>> =
                    (0..workers).map(|worker| Spread::Own { worker, workers }.partitions(n)).collect();
                let mut all: Vec<i32> = shares.concat();
                all.sort_unstable();
                all.dedup();
                assert_eq!(all, (0..n).collect::<Vec<_>>(), "{workers} workers cover {n} partitions");
                for share in &shares {
                    assert!(!share.is_empty());
                }
                if n >= workers as i32 {
                    assert_eq!(shares.iter().map(Vec::len).sum::<usize>(), n as usize, "no partition shared");
                }
            }
        }
        assert_eq!(Spread::Own { worker: 1, workers: 4 }.partitions(8), vec![1, 5]);
        assert_eq!(Spread::Own { worker: 5, workers: 8 }.partitions(3), vec![2]);
        assert_eq!(Spread::All.partitions(3), vec![0, 1, 2]);
        assert_eq!(Spread::Own { worker: 0, workers: 1 }.partitions(3), vec![0, 1, 2]);
    }

    fn records(model: &Model) -> Records {
        let mut out = Records::with_capacity(2, 10, Utc::now());
        let mut header: Arc<[u8]> = Arc::from(&b""[..]);
        for (key, value, h) in model {
            // A fresh Arc when the bytes change, as the router gives a map's lines.
            if header[..] != h[..] {
                header = Arc::from(&h[..]);
            }
            out.push(key, value, &header);
        }
        out
    }

    fn same(records: &Records, model: &[(Key, Vec<u8>, Vec<u8>)]) -> Result<(), proptest::test_runner::TestCaseError> {
        proptest::prop_assert_eq!(records.len(), model.len());
        proptest::prop_assert_eq!(records.value_bytes(), model.iter().map(|m| m.1.len()).sum::<usize>());
        for (r, (key, value, header)) in records.iter().zip(model) {
            proptest::prop_assert_eq!((r.key, r.value, r.header), (&key[..], &value[..], &header[..]));
        }
        // As rskafka gets them: each record whole, with the connection_ids header only.
        let sent: Vec<Record> = records.to_kafka().collect();
        proptest::prop_assert_eq!(sent.len(), model.len());
        for (r, (key, value, header)) in sent.iter().zip(model) {
            proptest::prop_assert_eq!(r.key.as_deref(), Some(&key[..]));
            proptest::prop_assert_eq!(r.value.as_deref(), Some(&value[..]));
            proptest::prop_assert_eq!(r.headers.len(), 1);
            proptest::prop_assert_eq!(&r.headers[HEADER], header);
            proptest::prop_assert_eq!(r.timestamp, records.timestamp());
        }
        Ok(())
    }

    proptest::proptest! {
        /// Against a plain list of (key, value, header): what goes in comes out, in order, and
        /// any split (the producer halves a rejected batch, and halves the halves) keeps each
        /// record whole, with its own header, on the side it belongs to.
        #[test]
        fn records_hold_what_was_pushed_and_split_anywhere(
            parts in proptest::collection::vec(
                (proptest::num::u8::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..40), 0u8..3),
                0..60,
            ),
            cuts in proptest::collection::vec(0usize..70, 1..4),
        ) {
            let model: Model = parts
                .iter()
                .map(|(k, v, h)| ([*k; KEY_LEN], v.clone(), format!("c{h}").into_bytes()))
                .collect();
            let whole = records(&model);
            same(&whole, &model)?;
            // Split at each cut in turn, the second part again and again.
            let (mut rest, mut at) = (whole.clone(), 0);
            for cut in cuts {
                let first_len = cut.min(rest.len());
                let second = rest.split_off(cut);
                same(&rest, &model[at..at + first_len])?;
                at += first_len;
                same(&second, &model[at..])?;
                rest = second;
            }
            same(&whole, &model)?;
        }
    }
}
