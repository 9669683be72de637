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

#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    #[error("cannot connect to Kafka: {0}")]
    Connect(String),
    #[error("topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
    #[error("produce to {topic}[{partition}] failed: {reason}")]
    Produce { topic: String, partition: i32, reason: String },
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
