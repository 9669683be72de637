//! Where record batches go: the [`Sink`] trait, the dry-run sink, and the batch type.
//!
//! Production uses [`crate::kafka::KafkaSink`]. A dry run uses [`DryRun`], which acknowledges
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
}

/// An error's source, kept as it came (rskafka's, a TLS error, a fake's).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong between the worker and Kafka, named for what happened.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot connect to Kafka at {bootstrap}: no broker answered within {after:?}")]
    ConnectTimeout { bootstrap: String, after: std::time::Duration },
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
    #[error("{topic}[{partition}]: no leader found within {after:?}")]
    NoLeader { topic: String, partition: i32, after: std::time::Duration },
    #[error("produce to {topic}[{partition}] failed")]
    Produce {
        topic: String,
        partition: i32,
        #[source]
        source: BoxError,
    },
    #[error("produce to {topic}[{partition}]: not acknowledged within {after:?}")]
    NotAcknowledged { topic: String, partition: i32, after: std::time::Duration },
}

/// A destination for record batches. `produce` resolves once the batch is acknowledged.
pub trait Sink: Send + Sync + 'static {
    /// Number of partitions of `topic`.
    fn partitions<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<i32, SinkError>>;
    /// Sends `records` to one partition and waits for the acknowledgement.
    fn produce<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        records: Vec<Record>,
    ) -> BoxFuture<'a, Result<(), SinkError>>;
}

/// The dry-run sink: every batch is acknowledged at once and dropped.
#[derive(Debug, Default)]
pub struct DryRun;

impl Sink for DryRun {
    fn partitions<'a>(&'a self, _topic: &'a str) -> BoxFuture<'a, Result<i32, SinkError>> {
        Box::pin(async { Ok(1) })
    }
    fn produce<'a>(
        &'a self,
        _topic: &'a str,
        _partition: i32,
        _records: Vec<Record>,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async { Ok(()) })
    }
}
